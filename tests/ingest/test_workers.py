"""Text parsing in worker processes: real spawned workers give what the in-process parser gives."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sightglass.config import Config
from sightglass.ingest import workers
from sightglass.ingest.prometheus_text import ParseError, ParserLimits, TextParser
from sightglass.ingest.workers import TextParsePool
from sightglass.model import Matcher, SampleBatch
from sightglass.server import build_app
from sightglass.store.duckdb import DuckDBStore


def _body(t: int, gpus: range) -> bytes:
    return "".join(f'gpu_util{{gpu="{g}",host="n"}} {g % 7} {t}\n' for g in gpus).encode()


def _rows(batch: SampleBatch) -> list[Any]:
    return sorted((k.text(), t, v) for k, t, v in batch.rows())


@pytest.fixture(scope="module")
def pool() -> Iterator[TextParsePool]:
    p = TextParsePool(ParserLimits(), workers=2, min_bytes=0)
    yield p
    p.close()


def test_worker_results_equal_the_in_process_parser(pool: TextParsePool) -> None:
    inline = TextParser()

    async def go() -> None:
        # the first bodies bring new series, the later ones known and some new: several per worker
        for t, gpus in (
            (1, range(300)),
            (2, range(300)),
            (3, range(250, 400)),
            (4, range(400)),
            (5, range(5)),
        ):
            body = _body(t, gpus)
            got = await pool.parse(body, 0)
            assert got is not None
            want = inline.parse(body, default_ts_ms=0)
            assert _rows(got.batch) == _rows(want.batch)
            assert got.samples == want.samples

    asyncio.run(go())


def test_concurrent_requests_keep_each_workers_series_straight(pool: TextParsePool) -> None:
    async def go() -> None:
        bodies = [_body(t, range(t * 50, t * 50 + 200)) for t in range(12)]
        results = await asyncio.gather(*(pool.parse(b, 0) for b in bodies))
        for body, got in zip(bodies, results, strict=True):
            assert got is not None
            assert _rows(got.batch) == _rows(TextParser().parse(body, default_ts_ms=0).batch)

    asyncio.run(go())


def test_a_malformed_body_is_the_same_parse_error(pool: TextParsePool) -> None:
    bad = _body(1, range(10)) + b'gpu_util{gpu="x" 1 2\n'
    with pytest.raises(ParseError) as want:
        TextParser().parse(bad, default_ts_ms=0)

    async def go() -> None:
        with pytest.raises(ParseError) as got:
            await pool.parse(bad, 0)
        assert str(got.value) == str(want.value) and got.value.line == 11

    asyncio.run(go())


def test_a_killed_worker_falls_back_to_the_server_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "RETRY_AFTER_S", 0.0)
    pool = TextParsePool(ParserLimits(), workers=1, min_bytes=0)
    try:

        async def go() -> None:
            assert await pool.parse(_body(1, range(20)), 0) is not None
            (pid,) = pool._slots[0].executor._processes  # the real worker process
            os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.5)
            assert await pool.parse(_body(2, range(20)), 0) is None  # the caller parses in-process
            got = await pool.parse(_body(3, range(20)), 0)  # a fresh worker, with an empty cache
            assert got is not None and len(got.batch) == 20

        asyncio.run(go())
    finally:
        pool.close()


def test_text_push_parses_large_bodies_in_workers(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(workers.ENV_WORKERS, "1")
    monkeypatch.setattr(workers, "MIN_BYTES", 1000)
    app, ctx = build_app(Config(data=str(store.data_dir)), store)
    pool = ctx.extras["text_parse_pool"]
    assert pool.workers == 1

    async def go() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sg") as c:
            out = []
            for t in (1_790_000_000_000, 1_790_000_010_000):
                r = await c.post("/api/v1/import/prometheus", content=_body(t, range(100)))
                out.append(r.status_code)
            r = await c.post("/api/v1/import/prometheus", content=_body(3, range(100)) + b"bad line\n")
            out.append(r.status_code)
            return out

    try:
        assert asyncio.run(go()) == [204, 204, 400]
        assert pool._slots, "the large bodies went to a worker"
        got = store.select([Matcher("__name__", "=", "gpu_util")], 0, 2**62)
        assert len({s.key for s in got}) == 100 and sum(len(s) for s in got) == 200
    finally:
        pool.close()


@pytest.mark.parametrize(("env", "want"), [(None, 0), ("0", 0), ("2", 2), ("auto", None), ("lots", 0)])
def test_worker_count_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: str | None, want: int | None
) -> None:
    if env is None:
        monkeypatch.delenv(workers.ENV_WORKERS, raising=False)
    else:
        monkeypatch.setenv(workers.ENV_WORKERS, env)
    expected = max(0, min(4, (os.cpu_count() or 1) - 1)) if want is None else want
    assert workers.default_workers() == expected

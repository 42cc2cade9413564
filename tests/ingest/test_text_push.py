from __future__ import annotations

import asyncio
import gzip
from typing import Any

import httpx

from sightglass.config import Config, LimitsConfig
from sightglass.model import Matcher
from sightglass.server import build_app
from sightglass.store.duckdb import DuckDBStore

PATH = "/api/v1/import/prometheus"


def _post(
    store: DuckDBStore, requests: list[dict[str, Any]], limits: LimitsConfig | None = None
) -> list[httpx.Response]:
    app, _ = build_app(Config(data=str(store.data_dir), limits=limits or LimitsConfig()), store)

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sg") as c:
            return [await c.post(PATH, **kw) for kw in requests]

    return asyncio.run(go())


def _count(store: DuckDBStore, name: str) -> int:
    return sum(len(s) for s in store.select([Matcher("__name__", "=", name)], 0, 2**62))


def test_push_with_timestamps_extra_labels_and_gzip(store: DuckDBStore) -> None:
    body = b'gpu_temp{gpu="0"} 61 1700000000000\ngpu_temp{gpu="0"} 62 1700000010000\n'
    (r1, r2) = _post(
        store,
        [
            {"content": body, "params": {"extra_label": "cluster=a"}},
            {"content": gzip.compress(b"other 1\n"), "headers": {"Content-Encoding": "gzip"}},
        ],
    )
    assert r1.status_code == 204 and r2.status_code == 204
    (s,) = store.select([Matcher("__name__", "=", "gpu_temp")], 0, 2**62)
    assert s.key.label_dict() == {"gpu": "0", "cluster": "a"} and list(s.values) == [61.0, 62.0]
    assert _count(store, "other") == 1


def test_each_bad_request_is_refused_alone_and_the_next_good_one_lands(store: DuckDBStore) -> None:
    good = {"content": b"good 1\n"}
    bomb = gzip.compress(b"x" * (4 * 1024 * 1024))
    bad = [
        ({"content": b'm{a="1} 2\n'}, 400, "line 1"),
        ({"content": b"9bad 1\n"}, 400, "invalid metric name"),
        ({"content": b'm{a="' + b"x" * 20_000 + b'"} 1\n'}, 400, "over the limit"),
        ({"content": b"m 1 1000\nm 2 1000\n"}, 400, "duplicate sample"),
        ({"content": b"x" * 200_000}, 413, "exceeds"),
        ({"content": bomb, "headers": {"Content-Encoding": "gzip"}}, 413, "decompressed"),
        ({"content": b"not gzip", "headers": {"Content-Encoding": "gzip"}}, 400, ""),
        ({"content": b"m 1\n", "params": {"extra_label": "9x=y"}}, 400, "extra_label"),
        ({"content": "".join(f"s{i} 1\n" for i in range(50)).encode()}, 400, "new series"),
    ]
    reqs: list[dict[str, Any]] = []
    for kw, _, _ in bad:
        reqs += [kw, good]
    limits = LimitsConfig(
        max_body_bytes=100_000, max_decompressed_bytes=1_000_000, max_new_series_per_request=20
    )
    resps = _post(store, reqs, limits)
    for i, (_, status, reason) in enumerate(bad):
        r, ok = resps[2 * i], resps[2 * i + 1]
        assert r.status_code == status, (i, r.text)
        body = r.json()
        assert body["status"] == "error" and reason in body["error"], body
        assert ok.status_code == 204
    assert _count(store, "good") == len(bad)  # every good request after a bad one landed
    assert _count(store, "m") == 0 and _count(store, "s0") == 0


def test_nan_and_inf_values_land(store: DuckDBStore) -> None:
    (r,) = _post(store, [{"content": b"a NaN 1000\nb +Inf 1000\nc -Inf 1000\n"}])
    assert r.status_code == 204
    vals = {
        s.key.metric: float(s.values[0]) for s in store.select([Matcher("__name__", "=~", "a|b|c")], 0, 2**62)
    }
    assert vals["b"] == float("inf") and vals["c"] == float("-inf") and vals["a"] != vals["a"]

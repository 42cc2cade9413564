from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from exporter_helpers import Exporter

from sightglass.api.context import AppContext
from sightglass.config import Config, FileSDConfig, ScrapeConfig, StaticConfig
from sightglass.ingest.scrape import Scraper, apply_target_labels, discover
from sightglass.model import Matcher, SeriesKey
from sightglass.store.duckdb import DuckDBStore


def _ctx(store: DuckDBStore, jobs: list[ScrapeConfig]) -> AppContext:
    return AppContext.build(Config(data=str(store.data_dir), scrape_configs=jobs), store)


async def _scrape_all(scraper: Scraper) -> None:
    async with httpx.AsyncClient() as client:
        scraper._client = client
        for t in list(scraper.targets.values()):
            await scraper.scrape_once(t)


def _targets(scraper: Scraper) -> None:
    from sightglass.ingest.scrape import discover as _d

    for job in scraper.ctx.config.scrape_configs:
        for t in _d(job)[0]:
            scraper.targets.setdefault(t.key(), t)


def _values(store: DuckDBStore, *matchers: Matcher) -> dict[SeriesKey, list[float | None]]:
    out = {}
    for s in store.select(list(matchers), 0, 2**62):
        out[s.key] = [None if st else float(v) for v, st in zip(s.values, s.stale, strict=True)]
    return out


def test_scrape_up_synthetic_series_and_exported_labels(
    store: DuckDBStore, exporter_factory: Callable[[], Exporter]
) -> None:
    e = exporter_factory()
    e.body = (
        b'# TYPE DCGM_FI_DEV_GPU_TEMP gauge\nDCGM_FI_DEV_GPU_TEMP{gpu="0",job="dcgm-inner",instance="x"} 61\n'
        b'DCGM_FI_DEV_GPU_TEMP{gpu="1",pod="p1"} 62\n'
    )
    job = ScrapeConfig(
        job_name="dcgm", static_configs=[StaticConfig(targets=[e.address], labels={"pod": "target-pod"})]
    )
    scraper = Scraper(_ctx(store, [job]))
    _targets(scraper)
    asyncio.run(_scrape_all(scraper))
    up = _values(store, Matcher("__name__", "=", "up"))
    assert up == {SeriesKey.of("up", {"job": "dcgm", "instance": e.address, "pod": "target-pod"}): [1.0]}
    temps = {
        k.label_dict()["gpu"]: k.label_dict()
        for k in _values(store, Matcher("__name__", "=", "DCGM_FI_DEV_GPU_TEMP"))
    }
    assert temps["0"]["exported_job"] == "dcgm-inner" and temps["0"]["job"] == "dcgm"
    assert temps["0"]["exported_instance"] == "x" and temps["0"]["instance"] == e.address
    assert temps["1"]["exported_pod"] == "p1" and temps["1"]["pod"] == "target-pod"
    assert _values(store, Matcher("__name__", "=", "scrape_samples_scraped")).popitem()[1] == [2.0]
    assert _values(store, Matcher("__name__", "=", "scrape_series_added")).popitem()[1] == [2.0]
    assert "text/plain;version=0.0.4" in e.requests[0]["Accept"]


def test_honor_labels_keeps_exposed_labels() -> None:
    k = SeriesKey.of("m", {"job": "inner", "a": "1"})
    assert apply_target_labels(k, {"job": "outer", "instance": "i"}, True).label_dict() == {
        "job": "inner",
        "a": "1",
        "instance": "i",
    }
    assert apply_target_labels(
        SeriesKey.of("m", {"job": "j", "exported_job": "e"}), {"job": "o"}, False
    ).label_dict() == {
        "job": "o",
        "exported_job": "e",
        "exported_exported_job": "j",
    }  # as Prometheus: the free name gets it


def test_stale_markers_for_vanished_series_and_down_target(
    store: DuckDBStore, exporter_factory: Callable[[], Exporter]
) -> None:
    e = exporter_factory()
    job = ScrapeConfig(job_name="j", scrape_timeout="1s", static_configs=[StaticConfig(targets=[e.address])])
    scraper = Scraper(_ctx(store, [job]))
    _targets(scraper)
    e.body = b"a 1\nb 2\n"
    asyncio.run(_scrape_all(scraper))
    time.sleep(0.002)
    e.body = b"a 3\n"
    asyncio.run(_scrape_all(scraper))
    vals = {
        k.metric: v
        for k, v in _values(store, Matcher("job", "=", "j"), Matcher("__name__", "=~", "a|b")).items()
    }
    assert vals == {"a": [1.0, 3.0], "b": [2.0, None]}
    time.sleep(0.002)
    e.status = 500
    asyncio.run(_scrape_all(scraper))
    vals = {
        k.metric: v
        for k, v in _values(store, Matcher("job", "=", "j"), Matcher("__name__", "=~", "a|b|up")).items()
    }
    assert vals["a"] == [1.0, 3.0, None] and vals["up"] == [1.0, 1.0, 0.0]
    t = next(iter(scraper.targets.values()))
    assert t.health == "down" and "500" in t.last_error


def test_timeout_and_bad_body_mark_target_down(
    store: DuckDBStore, exporter_factory: Callable[[], Exporter]
) -> None:
    slow, broken = exporter_factory(), exporter_factory()
    slow.body, slow.delay_s = b"a 1\n", 1.5
    broken.body = b'bad{x="1} 2\n'
    job = ScrapeConfig(
        job_name="j",
        scrape_timeout="300ms",
        static_configs=[StaticConfig(targets=[slow.address, broken.address])],
    )
    scraper = Scraper(_ctx(store, [job]))
    _targets(scraper)
    asyncio.run(_scrape_all(scraper))
    errors = {t.address: t.last_error for t in scraper.targets.values()}
    assert "deadline exceeded" in errors[slow.address]
    assert "parse error" in errors[broken.address] and "line 1" in errors[broken.address]
    ups = _values(store, Matcher("__name__", "=", "up"))
    assert sorted(v[0] for v in ups.values() if v[0] is not None) == [0.0, 0.0]


def test_file_sd_json_and_errors(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        json.dumps([{"targets": ["h1:9400", "h2:9400"], "labels": {"rack": "r1"}}])
    )
    (tmp_path / "bad.json").write_text("{not json")
    job = ScrapeConfig(job_name="dcgm", file_sd_configs=[FileSDConfig(files=[str(tmp_path / "*.json")])])
    targets, errors = discover(job)
    assert sorted(t.address for t in targets) == ["h1:9400", "h2:9400"]
    assert targets[0].labels["rack"] == "r1" and targets[0].labels["job"] == "dcgm"
    assert len(errors) == 1 and "bad.json" in errors[0]


def test_real_server_scrapes_and_serves_targets(
    tmp_path: Path, exporter_factory: Callable[[], Exporter]
) -> None:
    """The real app with a scrape config: scrapes a live exporter on its own, answers /api/v1/targets."""
    import threading

    import uvicorn

    from sightglass.server import build_app

    e = exporter_factory()
    e.body = b"# TYPE node_load1 gauge\nnode_load1 0.5\n"
    config = Config(
        data=str(tmp_path),
        scrape_configs=[
            ScrapeConfig(
                job_name="node", scrape_interval="1s", static_configs=[StaticConfig(targets=[e.address])]
            )
        ],
    )
    store = DuckDBStore(tmp_path)
    app, _ = build_app(config, store)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    try:
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        body: dict = {}
        while time.time() < deadline:
            body = httpx.get(f"{base}/api/v1/query", params={"query": "node_load1"}).json()
            if body["data"]["result"]:
                break
            time.sleep(0.2)
        assert body["data"]["result"][0]["metric"]["job"] == "node"
        targets = httpx.get(f"{base}/api/v1/targets").json()["data"]["activeTargets"]
        assert targets[0]["health"] == "up" and targets[0]["labels"]["instance"] == e.address
    finally:
        server.should_exit = True
        th.join(10)
        store.close()


@pytest.mark.parametrize("bad", ["ftp"])
def test_config_rejects_bad_scheme(bad: str) -> None:
    with pytest.raises(ValueError):
        ScrapeConfig(job_name="x", scheme=bad)

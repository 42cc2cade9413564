"""The dashboard's pages and JSON twins through the real app, on hand-made and simulator data."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sightglass.config import Config
from sightglass.model import Event, SampleBatch
from sightglass.server import build_app
from sightglass.simulate.fast import run_ingest
from sightglass.store.duckdb import DuckDBStore
from sightglass.web.fleet import decode_reasons
from sightglass.web.routes import PAGES, _Shared

TWINS = ("overview", "topology", "heatmap", "inference", "training", "pipelines", "network",
         "cost", "incidents", "drift")  # fmt: skip


def _get(store: DuckDBStore, *paths: str, **params: Any) -> list[httpx.Response]:
    app, _ = build_app(Config(data=str(store.data_dir)), store)

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sg") as c:
            return [await (c.get(p, params=params) if params else c.get(p)) for p in paths]

    return asyncio.run(go())


def _post(store: DuckDBStore, path: str, content: bytes) -> httpx.Response:
    app, _ = build_app(Config(data=str(store.data_dir)), store)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sg") as c:
            return await c.post(path, content=content)

    return asyncio.run(go())


def _seed(store: DuckDBStore, now_ms: int) -> None:
    rows = []
    for g in range(5):
        labels = {"Hostname": "node-01", "gpu": str(g), "UUID": f"GPU-{g}"}
        for i in range(6):
            t = now_ms - 60_000 + i * 10_000
            if g == 4 and i > 0:  # GPU 4 stopped answering a minute ago, after an XID 79
                continue
            rows += [
                ("DCGM_FI_DEV_GPU_UTIL", labels, t, 90.0 if g < 3 else 0.0),
                ("DCGM_FI_PROF_SM_ACTIVE", labels, t, 0.6 if g < 3 else 0.01),
                ("DCGM_FI_DEV_POWER_USAGE", labels, t, 500.0),
                ("DCGM_FI_DEV_GPU_TEMP", labels, t, 70.0),
                ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", labels, t, 0x40 if g == 1 else 0x1),
            ]
    rows.append(
        (
            "DCGM_FI_DEV_XID_ERRORS",
            {"Hostname": "node-01", "gpu": "4", "UUID": "GPU-4", "err_code": "79", "err_msg": "fell off"},
            now_ms - 55_000,
            79.0,
        )
    )
    for t in (now_ms - 200_000, now_ms - 190_000):  # gone for 3 minutes: "not reporting"
        rows.append(("DCGM_FI_DEV_GPU_UTIL", {"Hostname": "node-02", "gpu": "0"}, t, 50.0))
    for i in range(7):
        rows.append(
            (
                "vllm:generation_tokens_total",
                {"model_name": "llama"},
                now_ms - 60_000 + i * 10_000,
                1000.0 * i,
            )
        )
    store.append(SampleBatch.from_rows(rows))
    store.append_events(
        [Event(now_ms - 1000, "gpu.xid", {"Hostname": "node-01", "gpu": "2"}, {"xid": 79}, "critical")]
    )


def test_overview_counts_busy_idle_throttled_failed_and_tokens(store: DuckDBStore) -> None:
    now = int(time.time() * 1000)
    _seed(store, now)
    (r,) = _get(store, "/api/v1/ui/overview")
    assert r.status_code == 200
    d = r.json()["data"]
    # node-01: 3 busy (1 throttled), 1 idle, GPU 4 had an XID 79 a minute ago (failed, whatever it
    # reports); node-02's GPU went quiet 3 minutes ago (failed: not reporting)
    assert d["gpus"] == {"total": 6, "busy": 3, "idle": 1, "idle_held": None, "throttled": 1, "failed": 2}
    assert abs(d["fleet_sm_active"] - (0.6 * 3 + 0.01 * 2) / 5) < 1e-9  # every GPU that reports
    assert abs(d["tokens_per_second"] - 100.0) < 1e-9
    failed = {(g["node"], g["gpu"]): g["failed_reasons"] for g in d["failed_gpus"]}
    assert failed[("node-01", "4")][0].startswith("XID 79") and failed[("node-02", "0")] == ["not reporting"]
    assert {n["node"]: n["health"] for n in d["nodes"]} == {"node-01": "failed", "node-02": "failed"}
    assert d["events"][0]["kind"] == "gpu.xid" and d["events"][0]["severity"] == "critical"
    # no cost or predictability series yet: null (the page shows "—"); incidents: 0 where the alerting
    # feature is on this server (none open), null where it is not
    assert d["cost_per_hour_usd"] is None and d["predictability"] is None
    assert d["open_incidents"] == (0 if d["features"]["incidents"] else None)


def test_missing_signals_are_missing_not_zero(store: DuckDBStore) -> None:
    responses = _get(store, *(f"/api/v1/ui/{t}" for t in TWINS))
    for name, r in zip(TWINS, responses, strict=True):
        assert r.status_code == 200, (name, r.text)
        assert r.json()["status"] == "success"
    d = {name: r.json()["data"] for name, r in zip(TWINS, responses, strict=True)}
    o = d["overview"]
    assert o["gpus"]["total"] == 0 and o["fleet_sm_active"] is None and o["tokens_per_second"] is None
    assert o["cost_per_hour_usd"] is None and o["predictability"] is None and o["nodes"] == []
    assert (
        d["inference"]["models"] == [] and d["training"]["jobs"] == [] and d["pipelines"]["pipelines"] == []
    )
    assert d["network"]["totals"]["rx_bytes_per_second"] is None
    assert d["heatmap"]["nodes"] == [] and d["heatmap"]["domain"] == [0.0, 1.0]


@pytest.fixture(scope="module")
def sim_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data = tmp_path_factory.mktemp("sim")
    store = DuckDBStore(str(data))
    now_ms = int(time.time() * 1000)
    run_ingest(store, nodes=4, duration_s=600, seed=3, start_ms=now_ms - 600_000, fault_every_s=180)
    yield store
    store.close()


def test_every_twin_on_a_simulated_factory(sim_store: DuckDBStore) -> None:
    rs = _get(sim_store, *(f"/api/v1/ui/{t}" for t in TWINS), range="15m")
    d = {name: r.json()["data"] for name, r in zip(TWINS, rs, strict=True)}
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs if r.status_code != 200]
    assert d["overview"]["gpus"]["total"] == 32
    assert d["overview"]["window"]["range_ms"] == 900_000
    m = d["inference"]["models"][0]
    assert m["model"] == "meta-llama/Llama-2-70b-chat-hf"
    assert 0 < m["ttft_p50_seconds"] <= m["ttft_p95_seconds"] and m["generation_tokens_per_second"] > 0
    assert d["inference"]["charts"]["ttft_p95_seconds"][0]["points"]
    job = d["training"]["jobs"][0]
    assert job["ranks"] > 0 and job["step_seconds"] > 0 and job["median_rank_compute_seconds"] > 0
    assert all(s["ratio_to_median"] > 1.15 for s in job["stragglers"])
    assert {p["pipeline"] for p in d["pipelines"]["pipelines"]} >= {"tokenize-web"}
    net = d["network"]
    assert net["totals"]["ports"] == 32 and net["totals"]["switches"] >= 1 and net["nfs"]
    racks = d["topology"]["racks"]
    assert sum(len(n["gpus"]) for r in racks for n in r["nodes"]) >= 32
    assert len(d["heatmap"]["nodes"]) == 4
    for name in ("cost", "incidents", "drift"):
        parts = [v for k, v in d[name].items() if isinstance(v, dict) and "available" in v]
        assert parts and all(isinstance(p["available"], bool) for p in parts)
        for p in parts:  # an absent feature says so; a present one hands its data through
            assert p["error"] == "not available on this server" if not p["available"] else True


def test_entity_twin_and_errors(sim_store: DuckDBStore) -> None:
    ok, missing, none, bad_metric = _get(
        sim_store,
        "/api/v1/ui/entity?id=node:node-01",
        "/api/v1/ui/entity?id=node:nope",
        "/api/v1/ui/entity",
        "/api/v1/ui/heatmap?metric=DROP TABLE",
    )
    d = ok.json()["data"]
    assert d["entity"]["kind"] == "node"
    assert any(n["relation"] == "gpu-in-node" for n in d["neighbours"])
    assert any(s["metric"] == "DCGM_FI_DEV_GPU_UTIL" for s in d["signals"])
    assert missing.status_code == 404 and missing.json()["errorType"] == "not_found"
    (by_index,) = _get(sim_store, "/api/v1/ui/entity?id=gpu:node-02/3")  # as a training rank names it
    e = by_index.json()["data"]["entity"]
    assert e["id"].startswith("gpu:GPU-") and e["labels"]["gpu"] == "3"
    assert none.status_code == 400 and "id" in none.json()["error"]
    assert bad_metric.status_code == 400 and "sm_active" in bad_metric.json()["error"]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"time": "whenever"}, '"time"'),
        ({"range": "forever"}, '"range"'),
        ({"range": "-5m"}, '"range"'),
        ({"range": "400d"}, "31d"),
        ({"time": "nan"}, '"time"'),
        ({"time": "x" * 5000}, '"time"'),
        ({"range": "9" * 5000}, '"range"'),
    ],
)
def test_bad_window_is_a_clear_error(store: DuckDBStore, params: dict[str, str], needle: str) -> None:
    for r in _get(store, "/api/v1/ui/overview", "/api/v1/ui/inference", **params):
        assert r.status_code == 400 and r.json()["errorType"] == "bad_data", r.text
        assert needle in r.json()["error"]


def test_rca_twin_rejects_hostile_bodies(store: DuckDBStore) -> None:
    assert _post(store, "/api/v1/ui/rca", b"{not json").status_code == 400
    assert _post(store, "/api/v1/ui/rca", b"[1, 2]").status_code == 400
    assert _post(store, "/api/v1/ui/rca", b"{" + b" " * 70_000 + b"}").status_code == 413
    r = _post(store, "/api/v1/ui/rca", b'{"symptom": "x"}')
    assert r.status_code == 200 and isinstance(r.json()["data"]["available"], bool)


def test_pages_and_static_assets_are_served(store: DuckDBStore) -> None:
    paths = ["/", *(f"/ui/{p}" for p in PAGES), "/ui/static/common.js", "/ui/static/style.css"]
    rs = _get(store, *paths)
    for p, r in zip(paths, rs, strict=True):
        assert r.status_code == 200, p
    by = dict(zip(paths, rs, strict=True))
    assert "overview" in by["/"].text and "/api/v1/query_range" in by["/ui/explore"].text
    assert "prefers-color-scheme" in by["/ui/static/style.css"].text
    for p in PAGES:  # every page script is a client of its twin (explore: the Prometheus API)
        if p not in ("explore",):
            assert f'SG.twin("{p}"' in by[f"/ui/{p}"].text, p


def test_static_files_do_not_escape_their_folder(store: DuckDBStore, tmp_path: Path) -> None:
    (r,) = _get(store, "/ui/static/../routes.py")
    assert r.status_code == 404


def test_throttle_reason_decoding() -> None:
    assert decode_reasons(0x1) == ["gpu_idle"]
    assert decode_reasons(0x4 | 0x80) == ["sw_power_cap", "hw_power_brake_slowdown"]


def test_shared_answers_one_computation_and_serves_stale_while_refreshing() -> None:
    calls: list[int] = []

    async def compute() -> int:
        calls.append(1)
        await asyncio.sleep(0.05)
        return len(calls)

    async def go() -> list[int]:
        shared = _Shared(ttl_s=0.1, stale_s=10.0)
        first = await asyncio.gather(*(shared.get("k", compute) for _ in range(5)))
        assert calls == [1]  # five viewers, one computation
        await asyncio.sleep(0.15)  # past the TTL: the old answer at once, a new one computed behind
        stale = await shared.get("k", compute)
        await asyncio.sleep(0.1)
        fresh = await shared.get("k", compute)
        return [*first, stale, fresh]

    assert asyncio.run(go()) == [1, 1, 1, 1, 1, 1, 2]


def test_store_counter_rates_match_promql_rate(sim_store: DuckDBStore) -> None:
    from sightglass.api.context import AppContext
    from sightglass.web.query import Queries, Window, counter_rates

    ctx = AppContext.build(Config(data=str(sim_store.data_dir)), sim_store)
    w = Window(sim_store.newest_ms - 15_000, 3_600_000)  # between two scrapes
    key = ("instance", "device", "port")
    metric = "node_infiniband_port_data_received_bytes_total"
    mine = counter_rates(Queries(ctx, w), metric, 60_000, key)
    prom = Queries(ctx, w).by(f"rate({metric}[1m])", *key)
    assert len(mine) == len(prom) == 32
    for k, v in prom.items():
        m = mine[k]
        assert v is not None and m is not None and abs(m - v) <= 1e-9 * max(1.0, abs(v)), (k, m, v)


def test_hostile_entity_ids_and_pass_through_parameters(sim_store: DuckDBStore) -> None:
    inject, cost = _get(
        sim_store,
        '/api/v1/ui/entity?id=node:a"}) or vector(1) #',
        "/api/v1/ui/cost?by=DROP&range=15m",
    )
    assert inject.status_code == 404 and inject.json()["errorType"] == "not_found"
    part = cost.json()["data"]["report"]
    if part["available"]:  # the cost feature validates what the page passes through, and says why
        assert part["data"] is None and '"by"' in part["error"]

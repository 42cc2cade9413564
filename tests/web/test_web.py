"""The dashboard's pages and JSON twins through the real app, on simulator data."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from sightglass.config import Config
from sightglass.model import Event, SampleBatch
from sightglass.server import build_app
from sightglass.store.duckdb import DuckDBStore
from sightglass.web.routes import decode_reasons


def _get(store: DuckDBStore, *paths: str, **params: Any) -> list[httpx.Response]:
    app, _ = build_app(Config(data=str(store.data_dir)), store)

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sg") as c:
            return [await c.get(p, params=params) for p in paths]

    return asyncio.run(go())


def _seed(store: DuckDBStore, now_ms: int) -> None:
    rows = []
    for g in range(4):
        labels = {"Hostname": "node-01", "gpu": str(g), "UUID": f"GPU-{g}"}
        for i in range(6):
            t = now_ms - 60_000 + i * 10_000
            rows += [
                ("DCGM_FI_DEV_GPU_UTIL", labels, t, 90.0 if g < 3 else 0.0),
                ("DCGM_FI_PROF_SM_ACTIVE", labels, t, 0.6 if g < 3 else 0.01),
                ("DCGM_FI_DEV_POWER_USAGE", labels, t, 500.0),
                ("DCGM_FI_DEV_GPU_TEMP", labels, t, 70.0),
                ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", labels, t, 0x40 if g == 1 else 0x0),
            ]
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


def test_overview_json_counts_busy_idle_throttled_and_tokens(store: DuckDBStore) -> None:
    now = int(time.time() * 1000)
    _seed(store, now)
    (r,) = _get(store, "/api/v1/ui/overview")
    assert r.status_code == 200
    d = r.json()["data"]
    assert d["gpus"] == {"total": 4, "busy": 3, "idle": 1, "throttled": 1}
    assert abs(d["fleet_sm_active"] - (0.6 * 3 + 0.01) / 4) < 1e-9
    assert d["power_watts"] == 2000.0
    assert abs(d["tokens_per_second"] - 100.0) < 1e-9
    gpu1 = next(x for x in d["heatmap"] if x["gpu"] == "1")
    assert gpu1["throttled"] and gpu1["throttle_reasons"] == ["hw_thermal_slowdown"]
    assert d["events"][0]["kind"] == "gpu.xid" and d["events"][0]["severity"] == "critical"


def test_missing_signals_are_missing_not_zero(store: DuckDBStore) -> None:
    (r,) = _get(store, "/api/v1/ui/overview")
    d = r.json()["data"]
    assert d["gpus"]["total"] == 0 and d["fleet_sm_active"] is None and d["tokens_per_second"] is None
    assert d["power_watts"] is None and d["heatmap"] == []


def test_pages_and_static_assets_are_served(store: DuckDBStore) -> None:
    home, overview, explore, js, css = _get(
        store, "/", "/ui/overview", "/ui/explore", "/ui/static/common.js", "/ui/static/style.css"
    )
    for r in (home, overview, explore, js, css):
        assert r.status_code == 200
    assert "/api/v1/ui/overview" in home.text and "/api/v1/query_range" in explore.text
    assert "prefers-color-scheme" in css.text


def test_bad_time_is_a_clear_error(store: DuckDBStore) -> None:
    (r,) = _get(store, "/api/v1/ui/overview", time="whenever")
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"


def test_throttle_reason_decoding() -> None:
    assert decode_reasons(0x1) == ["gpu_idle"]
    assert decode_reasons(0x4 | 0x80) == ["sw_power_cap", "hw_power_brake_slowdown"]

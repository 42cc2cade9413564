"""The analytics API (in the real app, next to PromQL) and CLI, with hostile and half-valid input."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from analytics_helpers import Analysed
from click.testing import CliRunner

from sightglass.analytics.commands import analytics
from sightglass.analytics.evaluate import START_MS
from sightglass.analytics.service import background_tasks
from sightglass.api.app import create_app
from sightglass.api.context import AppContext
from sightglass.config import Config
from sightglass.simulate.fast import run_ingest
from sightglass.simulate.faults import ScriptedFault
from sightglass.store.duckdb import DuckDBStore, StoreOptions


def test_api_and_promql(analysed: Analysed) -> None:
    ctx = AppContext.build(Config(data=str(analysed.path)), analysed.store)
    ctx.extras["analytics"] = analysed.service
    app = create_app(ctx)

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            await _api(c, analysed)

    asyncio.run(go())


async def _get(c: httpx.AsyncClient, url: str, status: int = 200) -> Any:
    r = await c.get(url)
    assert r.status_code == status, (url, r.text)
    body = r.json()
    assert body["status"] == ("success" if status == 200 else "error"), body
    return body.get("data", body)


async def _api(c: httpx.AsyncClient, a: Analysed) -> None:
    end = a.end_ms / 1000
    st = await _get(c, "/api/v1/analytics/status")
    assert st["enabled"] and st["steps"] >= 10 and st["part_errors"] == {}
    assert st["drift"]["open_drifts"] == 1
    # KPIs and predictability are series: PromQL sees them like any other metric
    q = await _get(c, f"/api/v1/query?query=sightglass_fleet_predictable_ratio&time={end}")
    assert len(q["result"]) == 1 and 0 <= float(q["result"][0]["value"][1]) <= 1
    expr = quote('max by (model_name) (sightglass_inference_time_to_first_token_seconds{quantile="0.95"})')
    q = await _get(c, f"/api/v1/query?query={expr}&time={end}")
    assert {r["metric"]["model_name"] for r in q["result"]} == {s.model_name for s in a.sim.services}
    expr = quote("min by (workload) (sightglass_workload_predictability_score)")
    q = await _get(c, f"/api/v1/query_range?query={expr}&start={end - 600}&end={end}&step=60")
    assert q["result"] and all(0 <= float(v) <= 1 for r in q["result"] for _, v in r["values"])
    # the feature endpoints
    an = await _get(c, f"/api/v1/anomalies?start={START_MS / 1000}&end={end}")
    assert an["total"]["anomalies"] >= 1 and an["anomalies"][0]["kind"] == "anomaly.entity"
    f = a.fault("driver_drift")
    node = f"node:{f.root['Hostname']}"
    dr = await _get(c, f"/api/v1/drift?time={end}")
    assert [(d["entity"], d["key"]) for d in dr["drifts"]] == [(node, "driver_version")]
    assert any(
        ch["entity"]["entity"] == node and ch["attributes"]["to"] == "535.183.01" for ch in dr["changes"]
    )
    before = await _get(c, f"/api/v1/drift?time={(f.start_ms - 60_000) / 1000}")  # as of before the fault
    assert before["drifts"] == []
    one = await _get(c, f"/api/v1/drift?entity={quote(node)}")
    assert one["config"]["driver_version"]["value"] == "535.183.01"
    pr = await _get(c, f"/api/v1/predictability?time={end}")
    assert pr["fleet"] is not None and {w["kind"] for w in pr["workloads"]} == {"training", "inference"}
    tr = await _get(c, f"/api/v1/predictability?time={end}&kind=training")
    assert all(w["kind"] == "training" for w in tr["workloads"])
    kp = await _get(c, "/api/v1/kpis")
    counts = {k["name"]: k["series"] for k in kp["kpis"]}
    assert (
        counts["sightglass_training_goodput_ratio"] >= 1 and counts["sightglass_inference_queue_depth"] >= 1
    )
    one_kpi = await _get(c, f"/api/v1/kpis?name=sightglass_pipeline_freshness_seconds&time={end}")
    assert one_kpi["total"] == len(a.sim.pipelines)
    # bad input: a clear 4xx naming the problem
    for url, status, words in [
        ("/api/v1/anomalies?start=yesterday", 400, 'parameter "start"'),
        ("/api/v1/anomalies?start=2000&end=1000", 400, "after"),
        ("/api/v1/anomalies?limit=0", 400, "limit"),
        ("/api/v1/anomalies?limit=ten", 400, "not an integer"),
        ("/api/v1/drift?time=" + "9" * 2000, 400, "too long"),
        ("/api/v1/drift?time=1e400", 400, 'parameter "time"'),
        ("/api/v1/kpis?name=nope", 404, "unknown KPI"),
        ("/api/v1/predictability?time=%00", 400, 'parameter "time"'),
    ]:
        err = await _get(c, url, status)
        assert words in err["error"], (url, err)


def test_cli_then_background_service(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = DuckDBStore(data, options=StoreOptions(compact_every_s=3600))
    scripted = [ScriptedFault("power_cap", 18 * 60_000, 10 * 60_000, {})]
    _, sim = run_ingest(
        store, nodes=4, duration_s=25 * 60, seed=5, start_ms=START_MS, scripted=scripted, fault_every_s=None
    )
    store.close()
    run = CliRunner().invoke
    r = run(analytics, ["status", "--data", str(data)])
    assert r.exit_code == 0 and "run `sightglass analytics run`" in r.output, r.output
    r = run(analytics, ["predictability", "--data", str(data)])
    assert r.exit_code == 0 and "no predictability scores" in r.output
    r = run(analytics, ["run", "--data", str(data), "--batch", "2m"])
    assert r.exit_code == 0, r.output
    assert "config changes" in r.output
    r = run(analytics, ["status", "--data", str(data), "-o", "json"])
    doc = json.loads(r.stdout)
    assert doc["kpis"]["sightglass_training_step_time_seconds"] >= 1 and doc["analysed_until_ms"]
    r = run(analytics, ["predictability", "--data", str(data), "-o", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["workloads"]
    r = run(analytics, ["predictability", "--data", str(data)])
    assert "highly predictable" in r.output
    host = sim.faults[0].root["Hostname"]
    r = run(analytics, ["drift", "--data", str(data), "-o", "json"])
    assert r.exit_code == 0, r.output
    ch = json.loads(r.stdout)["changes"]
    assert {
        (c["entity"], c["from"], c["to"])
        for c in ch
        if c["key"] == "power_limit_w" and c["entity"].startswith("node")
    } == {(f"node:{host}", "700", "400")}  # the cap outlasts the data
    r = run(analytics, ["anomalies", "--data", str(data), "--since", "1h"])
    assert r.exit_code == 0 and "anomalies" in r.output
    r = run(analytics, ["kpis", "--data", str(data), "sightglass_inference_kv_cache_pressure_ratio"])
    assert r.exit_code == 0 and "model_name=" in r.output
    # half-valid and hostile input
    bad = tmp_path / "golden.json"
    bad.write_text('{"node": {"driver_version": ["x"]}}')
    r = run(analytics, ["drift", "--data", str(data), "--golden", str(bad)])
    assert r.exit_code == 2 and "node.driver_version" in r.output
    for args, words in [
        (["kpis", "--data", str(data), "nope"], "unknown KPI"),
        (["anomalies", "--data", str(data), "--since", "soon"], "--since"),
        (["anomalies", "--data", str(data), "--time", "later"], "--time"),
        (["status", "--data", str(tmp_path / "none")], "no data directory"),
        (["run", "--data", str(data), "--batch", "0s"], "--batch"),
    ]:
        r = run(analytics, args)
        assert r.exit_code != 0 and words in r.output, (args, r.output)

    # the server's loop: the background task analyses what arrives, the status route says so
    store = DuckDBStore(data, options=StoreOptions(compact_every_s=3600))
    try:
        ctx = AppContext.build(Config(data=str(data), analytics={"interval": "1s"}), store)
        app = create_app(ctx, background=background_tasks(ctx))
        body = asyncio.run(_wait_for_a_step(app))
        assert body["data"]["steps"] >= 1 and body["data"]["part_errors"] == {}
        assert body["data"]["drift"]["entities"] > 0
    finally:
        store.close()


def test_status_without_the_loop(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "d", options=StoreOptions(compact_every_s=3600))
    try:
        ctx = AppContext.build(Config(data=str(tmp_path / "d"), analytics={"enabled": False}), store)
        assert background_tasks(ctx) == []
        app = create_app(ctx)

        async def go() -> None:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                body = (await c.get("/api/v1/analytics/status")).json()
                assert body["data"]["enabled"] is False
                r = await c.get("/api/v1/predictability")
                assert r.status_code == 404 and "no samples" in r.json()["error"]

        asyncio.run(go())
    finally:
        store.close()


async def _wait_for_a_step(app: Any) -> Any:
    """Run the app's lifespan (its background tasks) and poll the status route until a step ran."""
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as c,
    ):
        deadline = time.monotonic() + 90
        while True:
            body = (await c.get("/api/v1/analytics/status")).json()
            assert body["status"] == "success"
            if body["data"]["steps"] >= 1 or time.monotonic() > deadline:
                return body
            await asyncio.sleep(0.5)

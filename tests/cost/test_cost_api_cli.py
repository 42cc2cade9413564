"""The cost CLI and HTTP API through the real app, the KPIs through PromQL, and bad input."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cost_helpers import SimFactory

from sightglass.api.app import create_app
from sightglass.api.context import AppContext
from sightglass.cli import cli
from sightglass.config import Config, ConfigError
from sightglass.cost.config import cost_config
from sightglass.cost.kpis import CostKpiWriter
from sightglass.cost.prices import PriceSheet
from sightglass.cost.rollup import list_days
from sightglass.cost.service import CostService
from sightglass.promql.engine import Engine
from sightglass.store.duckdb import DuckDBStore
from sightglass.timeutil import format_ts

FACTORY_SHEET = """\
name = "simulator"
[[version]]
effective = "2020-01-01"
[version.gpu.H100]
on_demand_usd_per_gpu_hour = 2.49
[version.gpu.A100]
on_demand_usd_per_gpu_hour = 1.50
"""


def _fleet_micro(f: SimFactory) -> int:
    fac = f.sim.factory
    hours = (f.end_ms - f.start_ms) / 3_600_000
    return round(sum((1.5 if a else 2.49) * hours * 1e6 for a in fac.is_a100))


@pytest.fixture
def copy(sim_factory: SimFactory, tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(sim_factory.data, dst)
    (tmp_path / "prices.toml").write_text(FACTORY_SHEET)
    return dst


def _window(f: SimFactory) -> str:
    return f"start={format_ts(f.start_ms)}&end={format_ts(f.end_ms)}"


def test_http_endpoints_through_the_app(sim_factory: SimFactory, copy: Path) -> None:
    f = sim_factory
    config = Config.load(None, data=str(copy), cost={"price_sheet": str(copy.parent / "prices.toml")})
    store = DuckDBStore(copy)
    try:
        app = create_app(AppContext.build(config, store))

        async def go() -> None:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                await _http(c, f)

        asyncio.run(go())
    finally:
        store.close()


async def _get(c: httpx.AsyncClient, url: str, status: int = 200) -> Any:
    r = await c.get(url)
    assert r.status_code == status, (url, r.text)
    body = r.json()
    assert body["status"] == ("success" if status == 200 else "error")
    return body


async def _http(c: httpx.AsyncClient, f: SimFactory) -> None:
    w = _window(f)
    rep = (await _get(c, f"/api/v1/cost/report?by=team&{w}"))["data"]
    assert rep["reconciliation"]["exact"]
    assert rep["totals"]["fleet_micro_usd"] == _fleet_micro(f)
    assert sum(r["cost_micro_usd"] for r in rep["rows"]) == rep["totals"]["fleet_micro_usd"]
    charge = (await _get(c, f"/api/v1/cost/report?by=node&mode=chargeback&{w}"))["data"]
    assert charge["mode"] == "chargeback" and len(charge["rows"]) == 4
    r = await c.get(f"/api/v1/cost/report?by=project&format=csv&{w}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows[-1]["project"] == "(fleet)" and int(rows[-1]["cost_micro_usd"]) == _fleet_micro(f)
    r = await c.get(f"/api/v1/cost/report?by=model&format=html&{w}")
    assert r.status_code == 200 and "<table>" in r.text and "reconciles exactly" in r.text
    tokens = (await _get(c, f"/api/v1/cost/tokens?{w}"))["data"]
    served = {s.model_name for s in f.sim.services}
    assert {t["model"] for t in tokens} == served
    for t in tokens:
        assert t["input_tokens"] > 0 and t["output_tokens"] > 0 and t["replicas"] >= 1
        total = t["cost_per_1m_tokens_usd"]
        cost_micro = float(t["cost_usd"]) * 1e6
        assert total == pytest.approx(cost_micro / (t["input_tokens"] + t["output_tokens"]), rel=1e-6)
    per_svc = (await _get(c, f"/api/v1/cost/tokens?by=service&{w}"))["data"]
    assert {t["services"][0] for t in per_svc} == {s.name for s in f.sim.services}
    assert sum(t["input_tokens"] for t in per_svc) == sum(t["input_tokens"] for t in tokens)
    training = (await _get(c, f"/api/v1/cost/training?{w}"))["data"]
    assert {j["job"] for j in training["jobs"]} >= {f"job:{j.job_id}" for j in f.sim.jobs}
    assert all(j["steps"] > 0 for j in training["jobs"])
    idle = (await _get(c, f"/api/v1/cost/idle?top=3&{w}"))["data"]
    assert idle["top_idle_spenders"][0]["workload"]["id"] == f"pod:notebooks/{f.sim.holds[0].pod}"
    assert "cull notebook" in idle["top_idle_spenders"][0]["action"]
    prices = (await _get(c, "/api/v1/cost/prices"))["data"]
    assert prices["version"][0]["gpu_usd_per_hour"]["H100"] == "2.490000"
    assert (await _get(c, "/api/v1/cost/daily"))["data"] == []
    assert "price_sheet" in (await _get(c, "/api/v1/cost/status"))["data"]
    # bad input: a clear 4xx naming the parameter
    for url, needle in (
        (f"/api/v1/cost/report?by=colour&{w}", '"by"'),
        ("/api/v1/cost/report?start=yesterday-ish", '"start"'),
        (f"/api/v1/cost/report?start={format_ts(f.end_ms)}&end={format_ts(f.start_ms)}", '"end"'),
        ("/api/v1/cost/report?start=0&end=1e10", "window too large"),
        (f"/api/v1/cost/report?format=xlsx&{w}", '"format"'),
        (f"/api/v1/cost/report?mode=invoice&{w}", '"mode"'),
        (f"/api/v1/cost/idle?top=0&{w}", '"top"'),
        (f"/api/v1/cost/tokens?by=team&{w}", '"by"'),
        (f"/api/v1/cost/idle?top=%27;DROP%20TABLE&{w}", '"top"'),
        ("/api/v1/cost/daily/2026-99-99", "YYYY-MM-DD"),
        ("/api/v1/cost/daily/..etc..passwd", "YYYY-MM-DD"),
    ):
        body = await _get(c, url, 400)
        assert needle in body["error"], (url, body)
    assert (await _get(c, "/api/v1/cost/daily/2026-01-01", 404))["errorType"] == "not_found"
    r = await c.get("/api/v1/cost/daily/..%2F..%2Fetc%2Fpasswd")  # never reaches a file
    assert r.status_code == 404 and "root:" not in r.text


def test_kpis_are_queryable_in_promql(sim_factory: SimFactory, copy: Path) -> None:
    """Cost per 1M tokens per model through PromQL equals the tokens endpoint's figure."""
    f = sim_factory
    sheet = PriceSheet.from_toml(FACTORY_SHEET)
    with DuckDBStore(copy) as store:
        writer = CostKpiWriter(sheet, window_ms=2 * 3_600_000)
        t = f.start_ms
        while t < f.end_ms:
            writer.step(store, min(f.end_ms, t + 15 * 60_000), start_ms=t)
            t += 15 * 60_000
        engine = Engine(store)
        res = engine.instant('sightglass_cost_per_1m_tokens_dollars{direction="total"}', f.end_ms)
        got = {s.labels["model"]: s.value for s in res.vector}
        total = engine.instant("sum(sightglass_gpu_cost_dollars_total)", f.end_ms).vector[0].value
        by_cat = engine.instant("sum by (category) (sightglass_gpu_cost_dollars_total)", f.end_ms).vector
    assert total == pytest.approx(_fleet_micro(f) / 1e6, abs=1e-4)
    assert {s.labels["category"] for s in by_cat} == {"used", "idle_held", "unallocated"}
    config = Config.load(None, data=str(copy), cost={"price_sheet": str(copy.parent / "prices.toml")})
    store = DuckDBStore(copy)
    try:
        app = create_app(AppContext.build(config, store))

        async def go() -> tuple[Any, Any]:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                q = 'sightglass_cost_per_1m_tokens_dollars{direction="output"}'
                prom = (await _get(c, f"/api/v1/query?query={q}&time={f.end_ms / 1000}"))["data"]
                tok = (await _get(c, f"/api/v1/cost/tokens?{_window(f)}"))["data"]
                return prom, tok

        prom, tok = asyncio.run(go())
    finally:
        store.close()
    assert set(got) == {t["model"] for t in tok}
    for t in tok:
        assert got[t["model"]] == pytest.approx(t["cost_per_1m_tokens_usd"], rel=1e-5)
    out = {s["metric"]["model"]: float(s["value"][1]) for s in prom["result"]}
    for t in tok:
        assert out[t["model"]] == pytest.approx(t["cost_per_1m_output_tokens_usd"], rel=1e-5)


def test_service_step_writes_kpis_and_rollup(sim_factory: SimFactory, copy: Path) -> None:
    cfg = cost_config({"interval": "10m", "lag": "0s"})
    with DuckDBStore(copy) as store:
        svc = CostService(store, cfg, PriceSheet.default(), copy)
        assert svc.step() is not None
        assert svc.step() is None  # nothing new yet
        eng = Engine(store)
        assert eng.instant("sightglass_idle_held_gpus", store.newest_ms).vector
        assert eng.instant('sightglass_gpu_price_dollars_per_hour{gpu_model="H100"}', store.newest_ms).vector
    days = list_days(copy / "cost" / "daily")
    assert [d["day"] for d in days] == ["2026-11-16"] and days[0]["partial"] is True


def _run(args: list[str]) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_cli_report_formats_and_errors(sim_factory: SimFactory, copy: Path, tmp_path: Path) -> None:
    f = sim_factory
    win = ["--start", format_ts(f.start_ms), "--end", format_ts(f.end_ms)]
    prices = ["--prices", str(copy.parent / "prices.toml")]
    r = _run(["cost", "report", "--data", str(copy), *win, *prices, "--by", "team", "--format", "json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["reconciliation"]["exact"] and rep["totals"]["fleet_micro_usd"] == _fleet_micro(f)
    r = _run(["cost", "report", "--data", str(copy), *win, *prices, "--by", "job"])
    assert r.exit_code == 0 and "reconciles exactly" in r.stdout and "(unallocated)" in r.stdout
    out = tmp_path / "r.html"
    r = _run(["cost", "report", "--data", str(copy), *win, "--format", "html", "-o", str(out)])
    assert r.exit_code == 0 and out.read_text().startswith("<!doctype html>")
    for sub in ("tokens", "training", "idle"):
        r = _run(["cost", sub, "--data", str(copy), *win, *prices, "--format", "json"])
        assert r.exit_code == 0, (sub, r.output)
        json.loads(r.stdout)
    r = _run(["cost", "prices", "default"])
    assert r.exit_code == 0 and PriceSheet.from_toml(r.stdout).versions
    bad = tmp_path / "bad.toml"
    bad.write_text('[[version]]\neffective = "soon"\n[version.gpu.H100]\ntier = "spot"\n')
    for args, needle in (
        (["cost", "report", "--data", str(copy), *win, "--by", "colour"], "colour"),
        (
            [
                "cost",
                "report",
                "--data",
                str(copy),
                "--start",
                "2026-11-16T01:00:00Z",
                "--end",
                "2026-11-16T00:00:00Z",
            ],
            "after --start",
        ),
        (["cost", "report", "--data", str(copy), "--start", "last tuesday"], "last tuesday"),
        (["cost", "report", "--data", str(tmp_path / "nope"), *win], "no data directory"),
        (["cost", "report", "--data", str(copy), *win, "--prices", str(bad)], "effective"),
        (
            ["cost", "report", "--data", str(copy), *win, "--prices", str(tmp_path / "missing.toml")],
            "does not exist",
        ),
        (["cost", "prices", "check", str(bad)], "spot_usd_per_gpu_hour"),
        (["cost", "daily", "--data", str(copy), "--day", "2026-11-99"], "YYYY-MM-DD"),
    ):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code != 0, args
        assert needle in r.output, (args, r.output)


def test_kpis_backfill_command(sim_factory: SimFactory, copy: Path) -> None:
    f = sim_factory
    win = ["--start", format_ts(f.start_ms), "--end", format_ts(f.end_ms)]
    r = _run(["cost", "kpis", "--data", str(copy), *win, "--step", "15m"])
    assert r.exit_code == 0, r.output
    r = _run(["cost", "daily", "--data", str(copy), "--day", "2026-11-16"])
    doc = json.loads(r.stdout)
    assert doc["reconciliation"]["exact"] and doc["partial"] is True
    with DuckDBStore(copy, read_only=True) as store:
        v = Engine(store).instant("sum(sightglass_gpu_cost_dollars_total)", f.end_ms).vector
    assert v and v[0].value == pytest.approx(float(doc["totals"]["fleet_usd"]), abs=1e-4)


def test_cost_config_errors_name_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"cost\.interval"):
        cost_config({"interval": "soon"})
    with pytest.raises(ConfigError, match=r"cost\.colour"):
        cost_config({"colour": "blue"})
    with pytest.raises(ConfigError, match=r"cost\.output_token_weight"):
        cost_config({"output_token_weight": -1})


def test_up_refuses_a_bad_price_sheet_with_a_clear_message(tmp_path: Path) -> None:
    cfg = tmp_path / "sightglass.toml"
    (tmp_path / "prices.toml").write_text(
        '[[version]]\neffective = "2026-01-01"\n[version.gpu.H100]\ntier = "spot"\n'
    )
    cfg.write_text(f'[cost]\nprice_sheet = "{tmp_path / "prices.toml"}"\n')
    r = CliRunner().invoke(
        cli, ["up", "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0", "--config", str(cfg)]
    )
    assert r.exit_code != 0
    assert "[cost] price_sheet" in r.output and "spot_usd_per_gpu_hour" in r.output

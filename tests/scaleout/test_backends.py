"""The same feature checks on every backend: the embedded DuckDB store, and VictoriaMetrics or
Prometheus for metrics with PostgreSQL for the catalog (all real servers, started by the fixtures).

One small simulated factory (2 nodes, 16 GPUs, 24 minutes, a thermal fault on one GPU) is written
into each backend through its ordinary write path (remote-write for the TSDBs). The embedded store is
the reference: every scale-out backend must give the same raw samples, series, topology, signals,
anomalies and PromQL answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from scaleout_helpers import Peer, fresh_database

from sightglass.analytics.runner import AnomalyRunner
from sightglass.analytics.signals import load_signals
from sightglass.model import ConfigSnapshot, Entity, Event, Matcher, Relation
from sightglass.promql.engine import Engine
from sightglass.scaleout.config import BackendsConfig
from sightglass.scaleout.store import ScaleOutStore
from sightglass.server import build_app
from sightglass.simulate.fast import Capture, run_ingest
from sightglass.simulate.faults import ScriptedFault
from sightglass.store.duckdb import DuckDBStore, StoreOptions
from sightglass.store.postgres import PostgresCatalog
from sightglass.store.remote import RemoteEngine, RemoteMetricStore, RemoteOptions
from sightglass.topology.infer import TopologyBuilder

MIN = 60_000
NOW = int(time.time() * 1000)
START = NOW - NOW % 10_000 - 24 * MIN  # live data: the backends' "now" probes see it
FAULT = {"Hostname": "node-02", "gpu": "3"}


@pytest.fixture(scope="module")
def factory() -> Capture:
    cap = Capture()
    scripted = [ScriptedFault("gpu_thermal", 14 * MIN, 9 * MIN, FAULT)]
    run_ingest(
        cap, nodes=2, duration_s=24 * 60, seed=5, start_ms=START, scripted=scripted, fault_every_s=None
    )
    return cap


def _embedded(tmp: Path, cap: Capture) -> tuple[Any, Any]:
    s = DuckDBStore(tmp / "embedded", options=StoreOptions(compact_every_s=3600))
    cap.replay(s)
    return s, Engine(s)


def _remote(peer: Peer, dsn: str, cap: Capture) -> tuple[Any, Any]:
    writer = ScaleOutStore(
        RemoteMetricStore(RemoteOptions(peer.url, peer.write_url)), PostgresCatalog(dsn), BackendsConfig()
    )
    cap.replay(writer)
    writer.close()
    if peer.kind == "vm":
        _peers_flush(peer)
    # a fresh process' view: nothing known but what the backends hold
    reader = ScaleOutStore(
        RemoteMetricStore(RemoteOptions(peer.url, peer.write_url, refresh_every_s=3600)),  # KPIs write back
        PostgresCatalog(dsn),
        BackendsConfig(),
    )
    reader.refresh(force=True)
    return reader, RemoteEngine(reader.metrics)


def _peers_flush(peer: Peer) -> None:
    import _peers

    _peers.vm_flush(peer.server)
    time.sleep(1.5)


@pytest.fixture(scope="module")
def reference(factory: Capture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("ref")
    store, engine = _embedded(tmp, factory)
    try:
        feats = _features(store, engine)
        yield {**feats, "more": _more(store, engine, tmp)}
    finally:
        store.close()


# one write of the factory per backend for the whole module: the tests below share it, in file order
@pytest.fixture(scope="module", params=["embedded", "victoriametrics+postgres", "prometheus+postgres"])
def backend(
    request: pytest.FixtureRequest, factory: Capture, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, Any]]:
    tmp_path = tmp_path_factory.mktemp("backend")
    if request.param == "embedded":
        store, engine = _embedded(tmp_path, factory)
    else:
        peer = request.getfixturevalue("vm" if request.param.startswith("victoria") else "prom")
        if peer.kind == "vm":
            _VM_SERVERS["vm"] = peer
        dsn = fresh_database(request.getfixturevalue("pg_server"))
        store, engine = _remote(peer, dsn, factory)
    try:
        yield store, engine
    finally:
        store.close()


def _features(store: Any, engine: Any) -> dict[str, Any]:
    """What the features see of the store: every value that must agree across backends."""
    out: dict[str, Any] = {}
    temp = [Matcher("__name__", "=", "DCGM_FI_DEV_GPU_TEMP")]
    out["series"] = sorted(k.text() for k in store.series([temp], None, None))
    out["hosts"] = store.label_values("Hostname", [temp])
    raw = store.select(
        [*temp, Matcher("Hostname", "=", "node-02"), Matcher("gpu", "=", "3")], START, START + 20 * MIN
    )
    out["raw"] = [(s.key.text(), s.ts_ms.tolist(), s.values.tolist()) for s in raw]
    builder = TopologyBuilder()
    topo = builder.update(store)
    out["kinds"] = topo.kinds()
    out["relations"] = len(topo.relations(START + 20 * MIN))
    frame = load_signals(store, START + 10 * MIN, START + 20 * MIN, builder=TopologyBuilder())
    out["signals"] = (frame.names, frame.values)
    runner = AnomalyRunner(builder=builder, history_ms=10 * MIN)
    runner.step(store, START + 10 * MIN)
    anomalies = []
    for k in range(1, 3):
        anomalies += runner.step(store, START + (10 + 6 * k) * MIN).anomalies
    out["anomalies"] = sorted({a.entity for a in anomalies})
    out["root"] = builder._gpu_alias[("node-02", "3")]
    out["events"] = sorted(e.kind for e in store.query_events(START, START + 30 * MIN, kind="anomaly"))
    at = START + 20 * MIN
    res = engine.instant("sum by (Hostname) (DCGM_FI_DEV_POWER_USAGE)", at)
    out["promql"] = sorted((s.labels["Hostname"], round(s.value, 6)) for s in res.vector)
    rng = engine.range("max(DCGM_FI_DEV_GPU_TEMP)", START + 12 * MIN, at, 60_000)
    out["promql_range"] = [np.round(s.values, 6).tolist() for s in rng.matrix]
    return out


def test_features_agree_with_the_embedded_store(
    backend: tuple[Any, Any], reference: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    store, engine = backend
    backend_name = request.node.callspec.params["backend"]
    got = _features(store, engine)
    # absolute checks: the features work at all on this backend
    assert len(got["series"]) == 16 and got["hosts"] == ["node-01", "node-02"]
    assert got["raw"] and len(got["raw"][0][1]) == 121  # 20 minutes at 10 s, both ends included
    assert got["kinds"]["gpu"] == 16 and got["kinds"]["node"] == 2
    assert got["root"] in got["anomalies"], got["anomalies"]
    assert "anomaly.entity" in got["events"]
    assert len(got["promql"]) == 2 and got["promql_range"]
    # and the same answers as the embedded store
    for k in (
        "series",
        "hosts",
        "raw",
        "kinds",
        "relations",
        "anomalies",
        "events",
        "promql",
        "promql_range",
    ):
        assert got[k] == reference[k], k
    names, values = got["signals"]  # columns follow series ids, which each store assigns itself
    ref_names, ref_values = reference["signals"]
    assert sorted(names) == sorted(ref_names)
    order, ref_order = np.argsort(names), np.argsort(ref_names)
    # VictoriaMetrics keeps ~15 significant decimal digits: rates of large counters move in the 4th
    rtol = 1e-3 if "victoria" in backend_name else 1e-9
    np.testing.assert_allclose(
        values[:, order], ref_values[:, ref_order], rtol=rtol, atol=1e-6, equal_nan=True
    )


RULES = """groups:
  - name: backend-test
    interval: 30s
    rules:
      - alert: GpuTooHot
        expr: DCGM_FI_DEV_GPU_TEMP - DCGM_FI_DEV_GPU_TEMP offset 10m > 12
        for: 1m
        labels: {severity: critical}
"""


def _flush_if_vm(store: Any) -> None:
    """VictoriaMetrics makes fresh writes searchable after a flush (Prometheus at once)."""
    if isinstance(store, ScaleOutStore) and "vm" in _VM_SERVERS and store.metrics.url == _VM_SERVERS["vm"].url:
        _peers_flush(_VM_SERVERS["vm"])


_VM_SERVERS: dict[str, Peer] = {}


def _more(store: Any, engine: Any, tmp: Path) -> dict[str, Any]:
    """KPIs and cost written/computed on the store, an alert firing into an incident with its RCA,
    and the dashboard and analytics API answers: what must agree across backends."""
    from sightglass.alerting.service import AlertingService
    from sightglass.analytics.kpi import KpiComputer
    from sightglass.config import Config
    from sightglass.cost.analysis import CostAnalysis
    from sightglass.cost.config import CostConfig
    from sightglass.cost.prices import PriceSheet

    out: dict[str, Any] = {}
    until = START + 20 * MIN
    out["kpi_samples"] = KpiComputer().step(store, until, start_ms=START + 10 * MIN)
    _flush_if_vm(store)
    res = engine.instant("avg by (Hostname) (sightglass_gpu_sm_active_ratio)", until)
    out["kpi_avg"] = sorted((x.labels["Hostname"], round(x.value, 6)) for x in res.vector)
    an = CostAnalysis.run(store, START, until, prices=PriceSheet.default(), config=CostConfig())
    totals = an.report("team")["totals"]
    out["cost"] = {k: totals[k] for k in ("fleet_micro_usd", "gpus", "gpu_hours")}
    rules = tmp / "rules.yaml"
    rules.write_text(RULES)
    svc = AlertingService(store, engine, {"default_rules": False, "default_slos": False, "rule_files": [str(rules)]})
    try:
        for k in range(4):  # pending at 15 min, firing a minute later
            svc.step(START + 15 * MIN + k * 30_000)
        saved = svc.catalog.load_incidents()
    finally:
        svc.close()
    out["rule_errors"] = [rs.last_error for rs in svc.evaluator.rules() if rs.last_error]
    out["alerts"] = sorted((a.rule, a.labels["Hostname"], a.labels["gpu"], a.state) for a in svc.evaluator.alerts())
    out["incidents"] = [(d["title"], (d.get("cause") or {}).get("entity"), d["state"]) for d in saved]
    out["incident_has_rca"] = [d.get("rca") is not None for d in saved]
    app, _ = build_app(Config(data=str(tmp / "api")), store)
    at = f"{until / 1000:.3f}"

    async def get_all() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sg") as c:
            paths = [("/api/v1/ui/topology", {"time": at}), ("/api/v1/kpis", {"time": at}),
                     ("/api/v1/ui/heatmap", {"time": at}), ("/api/v1/query",
                     {"query": "max by (Hostname) (DCGM_FI_DEV_GPU_TEMP)", "time": at})]  # fmt: skip
            return [(await c.get(p, params=q)) for p, q in paths]

    topo, kpis, heat, query = asyncio.run(get_all())
    for r in (topo, kpis, heat, query):
        assert r.status_code == 200 and r.json()["status"] == "success", r.text[:300]
    t = topo.json()["data"]
    out["api_topology"] = sorted(t.keys()), len(t.get("nodes") or t.get("elements") or [])
    out["api_kpis"] = sorted((k["name"], k["series"]) for k in kpis.json()["data"]["kpis"])
    out["api_heatmap"] = sorted(heat.json()["data"].keys())
    out["api_query"] = sorted(
        (x["metric"]["Hostname"], x["value"][1]) for x in query.json()["data"]["result"]
    )
    return out


def test_kpis_cost_alerts_rca_and_api_agree(
    backend: tuple[Any, Any], reference: dict[str, Any], tmp_path: Path
) -> None:
    store, engine = backend
    got = _more(store, engine, tmp_path)
    ref = reference["more"]
    # absolute checks: each feature works at all on this backend
    assert got["kpi_samples"] > 0 and len(got["kpi_avg"]) == 2
    assert got["cost"]["gpus"] == 16 and got["cost"]["fleet_micro_usd"] > 0
    assert ("GpuTooHot", "node-02", "3", "firing") in got["alerts"], (got["alerts"], got["rule_errors"])
    root = reference["root"]
    assert got["incidents"] == [(got["incidents"][0][0], root, "open")] and got["incident_has_rca"] == [True]
    assert dict(got["api_kpis"])["sightglass_gpu_sm_active_ratio"] == 16
    # and the same answers as the embedded store
    for k in ("kpi_samples", "kpi_avg", "alerts", "incidents", "api_topology", "api_kpis", "api_heatmap", "api_query"):
        assert got[k] == ref[k], k
    for k, v in got["cost"].items():  # VictoriaMetrics keeps ~15 significant digits
        assert v == pytest.approx(ref["cost"][k], rel=1e-6), k


@pytest.fixture(params=["duckdb", "postgres"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    store: Any = (
        DuckDBStore(tmp_path / "c", options=StoreOptions(compact_every_s=3600))
        if request.param == "duckdb"
        else PostgresCatalog(fresh_database(request.getfixturevalue("pg_server")))
    )
    try:
        yield store
    finally:
        store.close()


def test_catalog_round_trip(catalog: Any) -> None:
    store = catalog
    ents = [Entity("gpu:x", "gpu", {"gpu": "0"}, {"model": "H100"}), Entity("node:n", "node", {"host": "n"})]
    assert store.upsert_entities(ents) == 2
    store.upsert_entities([Entity("gpu:x", "gpu", {"gpu": "0"}, {"model": "H200"})])
    got = {e.id: e for e in store.entities()}
    assert got["gpu:x"].attributes == {"model": "H200"} and "node:n" in got
    assert [e.id for e in store.entities("node")] == ["node:n"]
    store.append_relations([Relation("gpu:x", "gpu-in-node", "node:n", 5, None)])
    assert Relation("gpu:x", "gpu-in-node", "node:n", 5, None) in store.relations()
    weird = {"Hostname": 'n"1\\', "gpu": "ü 3"}
    store.append_events(
        [Event(NOW, "gpu.xid", weird, {"xid": 79, "nested": {"a": [1, 2]}}, "critical", "test")]
    )
    evs = store.query_events(NOW - 1, NOW + 1, kind="gpu", entity={"gpu": "ü 3"})
    assert [(e.entity, e.attributes["nested"], e.severity) for e in evs] == [
        (weird, {"a": [1, 2]}, "critical")
    ]
    assert store.query_events(NOW - 1, NOW + 1, kind="gp") == []  # a kind prefix is a whole segment
    assert store.append_configs([ConfigSnapshot(NOW, {"Hostname": "n1"}, {"driver": "550.54"})]) == 1

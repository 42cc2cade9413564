"""The same feature checks on every backend: the embedded DuckDB store, and VictoriaMetrics or
Prometheus for metrics with PostgreSQL for the catalog (all real servers, started by the fixtures).

One small simulated factory (2 nodes, 16 GPUs, 24 minutes, a thermal fault on one GPU) is written
into each backend through its ordinary write path (remote-write for the TSDBs). The embedded store is
the reference: every scale-out backend must give the same raw samples, series, topology, signals,
anomalies and PromQL answers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scaleout_helpers import Capture, Peer, fresh_database

from sightglass.analytics.runner import AnomalyRunner
from sightglass.analytics.signals import load_signals
from sightglass.model import ConfigSnapshot, Entity, Event, Matcher, Relation
from sightglass.promql.engine import Engine
from sightglass.scaleout.config import BackendsConfig
from sightglass.scaleout.store import ScaleOutStore
from sightglass.simulate.fast import run_ingest
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
        RemoteMetricStore(RemoteOptions(peer.url, None, refresh_every_s=3600)),
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
    store, engine = _embedded(tmp_path_factory.mktemp("ref"), factory)
    try:
        yield _features(store, engine)
    finally:
        store.close()


@pytest.fixture(params=["embedded", "victoriametrics+postgres", "prometheus+postgres"])
def backend(request: pytest.FixtureRequest, factory: Capture, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    if request.param == "embedded":
        store, engine = _embedded(tmp_path, factory)
    else:
        peer = request.getfixturevalue("vm" if request.param.startswith("victoria") else "prom")
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

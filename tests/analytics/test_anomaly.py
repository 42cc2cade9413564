"""Entity anomalies on a simulated factory with one injected fault, end to end through the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from sightglass.analytics.evaluate import START_MS, root_entity, run_case, summarise
from sightglass.analytics.runner import AnomalyRunner
from sightglass.simulate.fast import run_ingest
from sightglass.simulate.faults import ScriptedFault
from sightglass.store.duckdb import DuckDBStore, StoreOptions
from sightglass.topology.infer import TopologyBuilder


@pytest.mark.parametrize("fault", ["gpu_thermal", "power_brake"])
def test_fault_root_is_flagged(fault: str, tmp_path: Path) -> None:
    r = run_case(fault, 7, nodes=4, minutes=30, workdir=tmp_path)
    assert r.hit, r.to_dict()
    assert r.false_alarms_pre == 0
    assert r.ttd_s is not None and r.ttd_s <= 120
    row = summarise([r])[0]
    # a 2-node job: the other node's GPUs wait for the throttled ones and may be flagged too
    assert row["recall"] == 1.0 and row["precision"] >= 0.5
    assert not [e for e in r.flagged if e.startswith("nic:")]  # explained by their node


def test_runner_writes_events_incrementally(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "d", options=StoreOptions(compact_every_s=3600))
    try:
        scripted = [
            ScriptedFault("gpu_thermal", 15 * 60_000, 10 * 60_000, {"Hostname": "node-02", "gpu": "3"})
        ]
        run_ingest(
            store, nodes=4, duration_s=1800, seed=5, start_ms=START_MS, scripted=scripted, fault_every_s=None
        )
        b = TopologyBuilder()
        runner = AnomalyRunner(builder=b, history_ms=10 * 60_000)
        assert runner.step(store, START_MS + 10 * 60_000).anomalies == []  # the fit
        seen = []
        for k in range(1, 5):
            seen += runner.step(store, START_MS + (10 + 5 * k) * 60_000).anomalies
        root = b._gpu_alias[("node-02", "3")]  # the UUID the host/index resolves to
        assert root_entity({"Hostname": "node-02", "gpu": "3"}, "gpu") == "gpu:node-02/3"
        hit = [a for a in seen if a.entity == root]
        assert hit and START_MS + 15 * 60_000 <= hit[0].onset_ms <= START_MS + 17 * 60_000
        assert (
            "DCGM_FI_DEV_GPU_TEMP" in hit[0].signals or "DCGM_FI_DEV_CLOCKS_EVENT_REASONS" in hit[0].signals
        )
        evs = store.query_events(START_MS, START_MS + 3_600_000, kind="anomaly")
        assert any(e.kind == "anomaly.entity" and e.entity["entity"] == root for e in evs)
        assert hit[0].to_dict()["scope"] in ("series", "peer")
    finally:
        store.close()

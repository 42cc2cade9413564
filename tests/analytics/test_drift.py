"""Config snapshots, change events and drift: the simulator's injected driver drift, golden configs,
agent snapshots from the store's configs table, and malformed golden files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from analytics_helpers import Analysed

from sightglass.analytics.drift import (
    ConfigTracker,
    DriftConfig,
    entity_of_config_labels,
    load_golden,
    parse_golden,
)
from sightglass.analytics.evaluate import START_MS
from sightglass.model import ConfigSnapshot, SampleBatchBuilder, SeriesKey
from sightglass.store.duckdb import DuckDBStore, StoreOptions


def test_injected_driver_drift_is_a_change_and_a_drift(analysed: Analysed) -> None:
    f = analysed.fault("driver_drift")
    node = f"node:{f.root['Hostname']}"
    evs = analysed.store.query_events(START_MS, analysed.end_ms, kind="config")
    ours = [e for e in evs if e.source == "sightglass-analytics"]
    changes = [e for e in ours if e.kind == "config.change" and e.entity.get("entity") == node]
    assert len(changes) == 1
    ch = changes[0]
    assert ch.attributes["key"] == "driver_version" and ch.attributes["to"] == "535.183.01"
    assert ch.attributes["from"] == "550.144.03" and abs(ch.ts_ms - f.start_ms) <= 10_000
    assert ch.entity["Hostname"] == f.root["Hostname"]
    # every GPU of the node changed too (before/after per GPU), nothing else did
    gpu_changes = [e for e in ours if e.kind == "config.change" and e.entity["entity"].startswith("gpu:")]
    assert len(gpu_changes) == 8 and {e.entity["Hostname"] for e in gpu_changes} == {f.root["Hostname"]}
    drifts = [e for e in ours if e.kind == "config.drift"]
    assert [(d.entity["entity"], d.attributes["key"]) for d in drifts] == [(node, "driver_version")]
    d = drifts[0].attributes
    assert d["expected"] == "550.144.03" and d["reason"] == "peers" and d["peers"] >= 3
    assert f.start_ms <= d["detected_ms"] <= f.start_ms + 150_000  # the next 2.5-minute batch
    assert not [e for e in ours if e.ts_ms < f.start_ms]  # a healthy factory: no change, no drift
    snap = analysed.service.drift.snapshot(node)
    assert snap["driver_version"]["value"] == "535.183.01" and snap["gpu_model"]["source"] == "dcgm-exporter"


def _dcgm(b: SampleBatchBuilder, host: str, gpu: int, driver: str, t: int, limit: float = 700.0) -> None:
    labels = {
        "Hostname": host,
        "gpu": str(gpu),
        "UUID": f"GPU-{host}-{gpu}",
        "modelName": "NVIDIA H100 80GB HBM3",
        "DCGM_FI_DRIVER_VERSION": driver,
    }
    b.add(SeriesKey.of("DCGM_FI_DEV_GPU_TEMP", labels), t, 50.0)
    b.add(SeriesKey.of("DCGM_FI_DEV_POWER_MGMT_LIMIT", labels), t, limit)


def test_golden_config_agent_snapshots_and_power_limits(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "d", options=StoreOptions(compact_every_s=3600))
    try:
        b = SampleBatchBuilder()
        for i in range(6):
            t = START_MS + i * 10_000
            for h in ("n1", "n2", "n3", "n4"):
                _dcgm(b, h, 0, "550.144.03", t, limit=400.0 if (h == "n2" and i >= 3) else 700.0)
        store.append(b.build())
        store.append_configs(
            [
                ConfigSnapshot(
                    START_MS, {"Hostname": "n1"}, {"bios": {"version": "1.2"}, "mig": False}, "agent"
                ),
                ConfigSnapshot(START_MS + 30_000, {"Hostname": "n1"}, {"bios": {"version": "1.3"}}, "agent"),
            ]
        )
        golden = parse_golden({"node": {"driver_version": "560.35.03"}})
        tr = ConfigTracker(DriftConfig(golden=golden))
        rep = tr.step(store, START_MS + 60_000)
        by = {(d.entity, d.key): d for d in tr.drifts()}
        # pinned: every node is off the golden driver
        assert {e for e, k in by if k == "driver_version"} == {"node:n1", "node:n2", "node:n3", "node:n4"}
        assert by[("node:n1", "driver_version")].reason == "golden"
        assert by[("node:n1", "driver_version")].expected == "560.35.03"
        # a power cap on one node's GPU: a change and a peer drift of the node
        ch = [e for e in rep.changes if e.attributes["key"] == "power_limit_w"]
        assert {(e.entity["entity"], e.attributes["from"], e.attributes["to"]) for e in ch} == {
            ("gpu:GPU-n2-0", "700", "400"),
            ("node:n2", "700", "400"),
        }
        assert by[("node:n2", "power_limit_w")].reason == "peers"
        # the agent's snapshot: flattened keys, the BIOS update is a change with before/after
        bios = [e for e in rep.changes if e.attributes["key"] == "bios.version"]
        assert [(e.attributes["from"], e.attributes["to"], e.attributes["source"]) for e in bios] == [
            ("1.2", "1.3", "agent")
        ]
        assert tr.snapshot("node:n1")["mig"]["value"] == "false"
        stored = store.query_events(START_MS, START_MS + 120_000, kind="config.drift")
        assert len(stored) == len(by)
        # the next step with nothing new: no repeated events
        assert not tr.step(store, START_MS + 70_000).to_events(0)
    finally:
        store.close()


def test_entity_of_config_labels() -> None:
    assert entity_of_config_labels({"UUID": "GPU-1", "Hostname": "n"}) == "gpu:GPU-1"
    assert entity_of_config_labels({"hostname": "n"}) == "node:n"
    assert entity_of_config_labels({"entity": "service:x"}) == "service:x"
    assert entity_of_config_labels({"model_name": "m"}) == "model:m"
    assert entity_of_config_labels({}) is None


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("g.json", "{not json", "not valid json"),
        ("g.json", "[1, 2]", "expected a mapping"),
        ("g.json", json.dumps({"node": ["550"]}), "expected a mapping of key"),
        ("g.json", json.dumps({"node": {"driver_version": [1]}}), "node.driver_version: value must be"),
        ("g.json", json.dumps({"": {"a": "b"}}), "non-empty string"),
        ("g.yaml", "node: [unclosed", "not valid yaml"),
        ("g.toml", "node = ", "not valid toml"),
    ],
)
def test_malformed_golden_files(tmp_path: Path, name: str, text: str, match: str) -> None:
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_golden(p)


def test_golden_file_formats(tmp_path: Path) -> None:
    (tmp_path / "g.toml").write_text('[node]\ndriver_version = "550.144.03"\n[gpu]\npower_limit_w = 700\n')
    assert load_golden(tmp_path / "g.toml") == {
        "node": {"driver_version": "550.144.03"},
        "gpu": {"power_limit_w": "700"},
    }
    (tmp_path / "g.yaml").write_text("node:\n  driver_version: '550.144.03'\n")
    assert load_golden(tmp_path / "g.yaml") == {"node": {"driver_version": "550.144.03"}}
    with pytest.raises(ValueError, match="cannot read"):
        load_golden(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="min_peers"):
        DriftConfig(min_peers=1)

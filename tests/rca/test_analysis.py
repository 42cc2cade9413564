"""The analysis finds injected causes of different layers, with evidence that re-checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rca_helpers import Scenario, simulate_fault

from sightglass.model import Matcher
from sightglass.promql.engine import Engine
from sightglass.rca.engine import RcaError, _label_value, analyze
from sightglass.rca.evaluation import matches
from sightglass.rca.result import render_text


def test_finds_the_injected_cause(scenario: Scenario) -> None:
    res = analyze(scenario.store, scenario.symptom, scenario.at_ms, builder=scenario.builder)
    assert res.symptom_entities, res.warnings
    top = res.causes[0]
    assert matches(top.kind, top.labels, scenario.truth), [c.entity_id for c in res.causes]
    assert top.fault == scenario.fault
    assert top.action and top.summary
    # evidence: at least one signal or event, and a topology path to the symptom
    assert top.signals or top.events
    assert top.path and top.path[-1]["to"] in res.symptom_entities
    assert top.onset_ms is not None and top.onset_ms <= scenario.at_ms
    d = res.to_dict()
    json.dumps(d)  # the schema is plain JSON
    assert d["causes"][0]["entity"]["kind"] == scenario.truth["kind"]
    assert "action" in render_text(d)


def test_recheck_queries_evaluate(scenario: Scenario) -> None:
    res = analyze(scenario.store, scenario.symptom, scenario.at_ms, builder=scenario.builder)
    engine = Engine(scenario.store)
    queries = []
    for c in res.causes:
        queries += [s.query for s in c.signals]
        queries += [e.query for e in c.events if e.query]
        queries += [p.query for p in c.peers]
    assert queries
    for q in queries:
        r = engine.instant(q, scenario.at_ms)  # raises QueryError on a query that does not parse
        assert r.vector or r.matrix or r.scalar is not None, q


def test_peer_comparison_names_the_outlier(thermal: Scenario) -> None:
    res = analyze(thermal.store, thermal.symptom, thermal.at_ms, builder=thermal.builder)
    top = res.causes[0]
    assert top.kind == "gpu"
    assert any(p.outlier and p.peers >= 3 for p in top.peers)
    reasons = {e.attributes.get("reason") for e in top.events if e.kind == "throttle"}
    hot = any(s.metric == "DCGM_FI_DEV_GPU_TEMP" and s.value > s.baseline for s in top.signals)
    assert hot or reasons & {"SW_THERMAL", "HW_SLOWDOWN", "HW_THERMAL"}


def test_deterministic(thermal: Scenario) -> None:
    a = analyze(thermal.store, thermal.symptom, thermal.at_ms, builder=thermal.builder).to_dict()
    b = analyze(thermal.store, thermal.symptom, thermal.at_ms).to_dict()  # a fresh topology
    a.pop("seconds"), b.pop("seconds")
    assert a == b


@pytest.mark.parametrize(
    ("symptom", "message"),
    [
        ("", "empty"),
        ("rate(foo[5m]", "cannot evaluate"),
        ("x" * 20_000, "longer than"),
    ],
)
def test_bad_symptoms(thermal: Scenario, symptom: str, message: str) -> None:
    with pytest.raises(RcaError, match=message):
        analyze(thermal.store, symptom, thermal.at_ms)


def test_symptom_without_entity_warns(thermal: Scenario) -> None:
    res = analyze(thermal.store, "vector(1)", thermal.at_ms)
    assert res.causes == [] and res.warnings


def test_bad_arguments(thermal: Scenario) -> None:
    with pytest.raises(RcaError, match="top"):
        analyze(thermal.store, thermal.symptom, thermal.at_ms, top=0)
    with pytest.raises(RcaError, match="window"):
        analyze(thermal.store, thermal.symptom, thermal.at_ms, window_ms=1000)


def test_spine_congestion_walks_down_a_fleet_wide_symptom(scenarios: object) -> None:
    """Every node waits and every leaf links both spines: the leaf uplinks' transmit-wait names the
    spine that withholds credits, and a label-less fleet sum is walked down to its entities."""
    sc: Scenario = scenarios.get("ib_congestion")  # type: ignore[attr-defined]
    nic = 'rate(node_infiniband_port_transmit_wait_total{instance="node-01:9100",device="mlx5_0"}[5m])'
    for symptom in (sc.symptom, "sum(rate(node_infiniband_port_transmit_wait_total[5m]))", nic):
        res = analyze(sc.store, symptom, sc.at_ms, builder=sc.builder)
        assert res.symptom_entities, res.warnings
        top = res.causes[0]
        assert matches(top.kind, top.labels, sc.truth), [c.entity_id for c in res.causes]
        assert top.fault == "ib_congestion"
        waits = [s for s in top.signals if s.metric == "ib_switch_port_transmit_wait_total"]
        assert waits and all(s.value > s.baseline for s in waits)
        assert all(f'remote_switch="{sc.truth["match"]["switch"]}"' in s.query for s in waits)
        # the leaves waiting on it are its victims, not causes of their own
        assert any(m.startswith("switch:leaf-") for m in top.members)
    res = analyze(sc.store, "sum(rate(node_infiniband_port_transmit_wait_total[5m]))", sc.at_ms, builder=sc.builder)
    assert any("walked down" in w for w in res.warnings)


def test_aggregated_parts() -> None:
    from sightglass.rca.symptom import aggregated_parts

    assert aggregated_parts("sum(rate(x[5m]))") == ["rate(x{}[5m])"]
    assert aggregated_parts("sum(rate(a[5m])) / sum(rate(b[5m]))") == ["rate(a{}[5m])", "rate(b{}[5m])"]
    assert aggregated_parts("rate(a[5m])") == []


def test_silent_data_corruption_is_the_job_with_a_replay_runbook(scenarios: object) -> None:
    """No GPU reports anything (real SDC emits no hardware signal): the job is ranked with the SDC
    hypothesis and a replay runbook; the GPU level is an honest miss."""
    sc: Scenario = scenarios.get("silent_data_corruption")  # type: ignore[attr-defined]
    res = analyze(sc.store, sc.symptom, sc.at_ms, builder=sc.builder)
    top = res.causes[0]
    assert top.kind == "job" and top.fault == "silent_data_corruption"
    assert "replay" in top.action.lower()
    assert any(s.metric == "training_loss" for s in top.signals)


def test_reads_the_fabric_ports_on_the_neighbourhoods_paths_only(tmp_path: Path) -> None:
    """12 leaves, 2 spines: the switch-to-switch ports read are those among the neighbourhood's
    switches and a spread of peer leaves (both ways), not the whole fabric's; a congested spine is
    still found through the uplinks that feed it."""
    sc = simulate_fault(tmp_path / "data", "ib_congestion", nodes=48, seed=32)
    try:
        keys = sc.store.index.keys
        port = "ib_switch_port_transmit_wait_total"
        every = {keys[int(i)].text() for i in sc.store.select_ids([Matcher("__name__", "=", port)])}
        assert len(every) == 12 * 2 * 2
        res = analyze(sc.store, sc.symptom, sc.at_ms, builder=sc.builder)
        top = res.causes[0]
        assert matches(top.kind, top.labels, sc.truth), [c.entity_id for c in res.causes]
        read = {n for n, m in zip(res.frame.names, res.frame.metrics, strict=True) if m == port}
        assert read and read < every
        # every port of the neighbourhood's leaves, both directions, is read
        leaves = {c[len("switch:") :] for c in res.candidate_ids if c.startswith("switch:leaf-")}
        assert leaves
        mine = {n for n in every if any(f'switch="{lf}"' in n for lf in leaves)}
        assert mine <= read
        # each spine keeps a baseline of other leaves' uplinks
        spine = sc.truth["match"]["switch"]
        feeding = {_label_value(n, "switch") for n in read if f'remote_switch="{spine}"' in n}
        assert len(feeding - leaves) >= 2
    finally:
        sc.store.close()

"""The analysis finds injected causes of different layers, with evidence that re-checks."""

from __future__ import annotations

import json

import pytest
from rca_helpers import Scenario

from sightglass.promql.engine import Engine
from sightglass.rca.engine import RcaError, analyze
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

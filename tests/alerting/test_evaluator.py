"""The rule evaluator on a real store: pending → firing → resolved, keep_firing_for, recording rules
written back with stale markers, ALERTS series, broken rules isolated, replay == instant evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sightglass.alerting.evaluator import RuleEvaluator
from sightglass.alerting.rules import load_rule_text
from sightglass.model import SampleBatchBuilder, SeriesKey
from sightglass.promql.engine import Engine
from sightglass.store.duckdb import DuckDBStore, StoreOptions

T0 = 1_800_000_000_000
MIN = 60_000

RULES = """
groups:
  - name: g
    interval: 30s
    rules:
      - record: temp:max
        expr: max by (node) (temp)
      - alert: Hot
        expr: temp:max > 85
        for: 2m
        keep_firing_for: 1m
        labels: {severity: warning, kind: '{{ $labels.node }}-hot'}
        annotations: {summary: 'node {{ $labels.node }} at {{ $value }} degrees'}
      - alert: Cold
        expr: temp < 10
      - alert: Broken
        expr: temp > 0
        labels: {gpu: same}
"""


def _fill(store: Any, minutes: int = 25, drop_gpu1_at: int = 20) -> None:
    b = SampleBatchBuilder()
    for i in range(minutes * 6):  # every 10 s
        ts = T0 + i * 10_000
        hot = 5 * MIN <= ts - T0 < 15 * MIN
        b.add(SeriesKey.of("temp", {"node": "n1", "gpu": "0"}), ts, 90.0 if hot else 80.0)
        if ts - T0 < drop_gpu1_at * MIN:
            b.add(SeriesKey.of("temp", {"node": "n1", "gpu": "1"}), ts, 70.0)
    store.append(b.build())


@pytest.fixture(scope="module")
def instant_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Any, RuleEvaluator, dict[int, dict[str, str]]]]:
    """One instant evaluation every 30 s over 25 minutes of data (shared: each instant costs a query per rule)."""
    store = DuckDBStore(tmp_path_factory.mktemp("inst") / "d", options=StoreOptions(compact_every_s=3600))
    try:
        _fill(store)
        ev, states = _run_instant(store)
        yield store, ev, states
    finally:
        store.close()


def _run_instant(store: Any, end_min: int = 25) -> tuple[RuleEvaluator, dict[int, dict[str, str]]]:
    ev = RuleEvaluator(Engine(store), load_rule_text(RULES), interval_ms=30_000, store=store)
    states: dict[int, dict[str, str]] = {}
    for k in range(end_min * 2 + 1):
        ts = T0 + k * 30_000
        ev.evaluate(ts)
        states[ts] = {a.rule: a.state for a in ev.alerts(include_inactive=True)}
    return ev, states


def test_lifecycle_for_and_keep_firing_for(instant_run: Any) -> None:
    _, ev, states = instant_run
    assert states[T0 + 4 * MIN].get("Hot") is None
    assert states[T0 + 5 * MIN]["Hot"] == "pending"
    assert states[T0 + 6 * MIN + 30_000]["Hot"] == "pending"
    assert states[T0 + 7 * MIN]["Hot"] == "firing"  # for: 2m
    assert states[T0 + 15 * MIN + 30_000]["Hot"] == "firing"  # keep_firing_for: 1m
    assert states[T0 + 16 * MIN]["Hot"] == "inactive"
    hot = next(a for a in ev.alerts(include_inactive=True) if a.rule == "Hot")
    assert hot.active_at_ms == T0 + 5 * MIN and hot.fired_at_ms == T0 + 7 * MIN
    assert hot.resolved_at_ms == T0 + 16 * MIN
    assert hot.labels == {"node": "n1", "alertname": "Hot", "severity": "warning", "kind": "n1-hot"}
    assert hot.annotations["summary"] == "node n1 at 90 degrees"
    api = hot.to_api()
    assert api["state"] == "inactive" and api["value"] == "9e+01" and api["activeAt"].endswith("Z")


def test_recording_rules_are_written_with_stale_markers(instant_run: Any) -> None:
    store, _, _ = instant_run
    eng = Engine(store)
    r = eng.instant("temp:max", T0 + 10 * MIN)
    assert [(s.labels, s.value) for s in r.vector] == [({"__name__": "temp:max", "node": "n1"}, 90.0)]
    r = eng.range("temp:max", T0, T0 + 25 * MIN, 5 * MIN)
    assert [float(v) for v in r.matrix[0].values] == [80.0, 90.0, 90.0, 80.0, 80.0, 80.0]


def test_alerts_series_and_broken_rule_isolated(instant_run: Any) -> None:
    store, _, _ = instant_run
    ev = RuleEvaluator(Engine(store), load_rule_text(RULES), interval_ms=30_000)  # no store: no writes
    ev.evaluate(T0 + 8 * MIN)
    broken = next(rs for rs in ev.rules() if rs.rule.name == "Broken")
    assert broken.health == "err" and "same labelset" in broken.last_error  # gpu 0 and 1 collapse
    assert all(rs.health == "ok" for rs in ev.rules() if rs.rule.name != "Broken")
    r = Engine(store).instant('ALERTS{alertname="Hot"}', T0 + 8 * MIN)
    assert [s.labels["alertstate"] for s in r.vector] == ["firing"]


def test_replay_gives_the_same_alerts_as_instant_evaluation(instant_run: Any, tmp_path: Any) -> None:
    _, ev, _ = instant_run
    other = DuckDBStore(tmp_path / "other", options=StoreOptions(compact_every_s=3600))
    try:
        _fill(other)
        rev = RuleEvaluator(Engine(other), load_rule_text(RULES), interval_ms=30_000, store=other)
        sent: list[tuple[int, str, str]] = []
        rev.replay(T0, T0 + 25 * MIN, lambda ts, alerts: sent.extend((ts, a.rule, a.state) for a in alerts))

        def key(e: RuleEvaluator) -> list[tuple[Any, ...]]:
            return sorted(
                (a.rule, a.fingerprint, a.state, a.active_at_ms, a.fired_at_ms, a.resolved_at_ms)
                for a in e.alerts(include_inactive=True)
            )

        assert key(rev) == key(ev)
        # firing is sent at once and re-sent every minute; the resolution once
        hot_sent = [(ts - T0) // 1000 for ts, rule, _ in sent if rule == "Hot"]
        assert hot_sent[0] == 7 * 60 and hot_sent[1] == 8 * 60
        assert [s for ts, r, s in sent if r == "Hot"][-1] == "inactive"
    finally:
        other.close()


def test_resolved_alerts_are_kept_15_minutes_then_dropped(alert_store: Any) -> None:
    _fill(alert_store, minutes=40)
    ev = RuleEvaluator(Engine(alert_store), load_rule_text(RULES), interval_ms=30_000, store=alert_store)
    ev.replay(T0, T0 + 30 * MIN)
    assert [a.state for a in ev.alerts(include_inactive=True) if a.rule == "Hot"] == ["inactive"]
    ev.replay(T0 + 30 * MIN + 30_000, T0 + 40 * MIN)
    assert not [
        a for a in ev.alerts(include_inactive=True) if a.rule == "Hot"
    ]  # resolved at 16m, gone after 31m

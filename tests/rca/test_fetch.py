"""The fast neighbourhood read: the same frame as analytics' reader, and the cause-first read of
large neighbourhoods (forced here with a read budget of 0 on small simulated factories)."""

from __future__ import annotations

import numpy as np
import pytest
from rca_helpers import Scenario

from sightglass.analytics.signals import SignalConfig, load_signals, select_series
from sightglass.rca import fetch
from sightglass.rca.engine import DEFAULT_WINDOW_MS, RcaError, analyze
from sightglass.rca.evaluation import matches
from sightglass.topology.infer import host_of


def test_load_frame_matches_the_analytics_reader(thermal: Scenario) -> None:
    store = thermal.store
    ids = select_series(dict(store.index.keys))
    start = thermal.at_ms - DEFAULT_WINDOW_MS
    want = load_signals(store, start, thermal.at_ms, builder=thermal.builder, series_ids=ids)
    got = fetch.load_frame(store, start, thermal.at_ms, ids, builder=thermal.builder)
    assert got.names == want.names and got.metrics == want.metrics and got.entities == want.entities
    assert (got.ts_ms == want.ts_ms).all()
    assert got.values.shape == want.values.shape and got.values.shape[1] > 500
    assert np.array_equal(np.isnan(got.values), np.isnan(want.values))
    ok = ~np.isnan(want.values)
    np.testing.assert_allclose(got.values[ok], want.values[ok], rtol=1e-12, atol=1e-12)
    # what the reader must have exercised: per-CPU series summed, counters as rates, histogram means
    assert "node_cpu_seconds_total" in got.metrics and any(m.endswith(":mean") for m in got.metrics)
    # chunked reads give the same frame
    small = fetch.load_frame(store, start, thermal.at_ms, ids, builder=thermal.builder, config=_chunked(997))
    assert small.names == got.names
    assert np.array_equal(np.isnan(small.values), np.isnan(got.values))


def _chunked(n: int) -> SignalConfig:
    return SignalConfig(max_series_per_read=n)


def test_load_frame_empty(thermal: Scenario) -> None:
    f = fetch.load_frame(thermal.store, thermal.at_ms - 600_000, thermal.at_ms, [], builder=thermal.builder)
    assert f.values.shape == (61, 0) and f.names == []
    # series that have no sample in the window give no column
    g = fetch.load_frame(thermal.store, 0, 600_000, select_series(dict(thermal.store.index.keys))[:50])
    assert g.values.shape[1] == 0


def test_plan_read_splits_cause_signals_first(thermal: Scenario) -> None:
    store = thermal.store
    keys = store.index.keys
    ids = select_series(dict(keys))
    whole = fetch.plan_read(keys, ids, budget=len(ids))
    assert not whole.pruned and whole.first == ids
    plan = fetch.plan_read(keys, ids, budget=0)
    assert plan.pruned
    assert sorted(plan.first + plan.later) == sorted(ids)  # nothing lost, nothing twice
    assert not set(plan.first) & set(plan.later)
    for i in plan.first:  # first: the screening signals, and every series that is not per host
        m = keys[i].metric
        assert m in fetch.SCREEN_METRICS or not m.startswith(fetch.HOST_PREFIXES)
    assert all(keys[i].metric.startswith(fetch.HOST_PREFIXES) for i in plan.later)
    assert {keys[i].metric for i in plan.later} >= {"DCGM_FI_DEV_GPU_UTIL", "node_cpu_seconds_total"}
    # a host's series: its GPUs' (Hostname) and its exporters' (instance), nobody else's
    one = fetch.host_series(store, ["node-01"], plan.later)
    assert one and all(host_of(dict(keys[i].labels)) == "node-01" for i in one)
    assert fetch.host_series(store, [], plan.later) == []
    assert fetch.host_series(store, ["node-0"], plan.later) == []  # whole names only


def test_pruned_read_finds_the_cause_and_says_so(scenario: Scenario) -> None:
    full = analyze(scenario.store, scenario.symptom, scenario.at_ms, builder=scenario.builder)
    res = analyze(scenario.store, scenario.symptom, scenario.at_ms, builder=scenario.builder, read_budget=0)
    top = res.causes[0]
    assert matches(top.kind, top.labels, scenario.truth), [c.entity_id for c in res.causes]
    assert top.fault == scenario.fault
    note = [w for w in res.warnings if w.startswith("large neighbourhood")]
    assert len(note) == 1, res.warnings
    assert res.frame is not None and full.frame is not None
    if "were not read" in note[0]:
        assert res.frame.values.shape[1] < full.frame.values.shape[1]
    else:
        assert res.frame.values.shape[1] == full.frame.values.shape[1]
    assert not [w for w in full.warnings if w.startswith("large neighbourhood")]
    # evidence of the shown causes still carries its re-check queries
    assert all(s.query for c in res.causes for s in c.signals)
    assert all(p.query for c in res.causes for p in c.peers)


def test_nothing_explained_reads_everything(thermal: Scenario) -> None:
    """Before the fault nothing in the cause signals explains the job: every signal is read."""
    before = thermal.at_ms - 9 * 60_000
    full = analyze(thermal.store, thermal.symptom, before, builder=thermal.builder)
    res = analyze(thermal.store, thermal.symptom, before, builder=thermal.builder, read_budget=0)
    assert any("so every signal was read" in w for w in res.warnings), res.warnings
    assert res.frame is not None and full.frame is not None
    assert res.frame.values.shape == full.frame.values.shape
    assert [c.entity_id for c in res.causes] == [c.entity_id for c in full.causes]


def test_read_budget_is_checked(thermal: Scenario) -> None:
    with pytest.raises(RcaError, match="read budget"):
        analyze(thermal.store, thermal.symptom, thermal.at_ms, builder=thermal.builder, read_budget=-1)


def test_throttle_reasons_newly_set_for_all_columns_at_once() -> None:
    from sightglass.rca.engine import _newly_set

    rows, thermal, brake = 20, 0x040, 0x080
    base = np.arange(rows) < 10
    fault = ~base
    cols = np.zeros((rows, 6))
    cols[13:, 1] = thermal  # 7 of 10 fault rows: newly set
    cols[:, 2] = thermal  # set all along: not new
    cols[10:, 3] = np.nan  # no fault rows
    cols[18:, 4] = brake  # 2 of 10 fault rows: too few
    cols[:, 5] = np.nan
    cols[12:, 5] = brake | thermal  # no baseline rows at all, set in the fault: new
    got = _newly_set(cols, np.array([True] * 5 + [True]), base, fault)
    assert got.tolist() == [False, True, False, False, False, True]
    # only the columns marked as throttle reasons are looked at
    assert not _newly_set(cols, np.zeros(6, dtype=bool), base, fault).any()


def test_label_codes_name_each_series_metric(thermal: Scenario) -> None:
    """The index's per-series value codes (what the neighbourhood read tests per metric)."""
    index = thermal.store.index
    ids = np.asarray(sorted(index.keys), dtype=np.int64)
    codes, names = index.label_codes("__name__", ids)
    assert [names[c] for c in codes.tolist()] == [index.keys[int(i)].metric for i in ids]
    host, values = index.label_codes("Hostname", ids)
    assert [values[c] if c else None for c in host.tolist()] == [index.keys[int(i)].label_dict().get("Hostname") for i in ids]
    none, only = index.label_codes("no_such_label", ids[:5])
    assert none.tolist() == [0] * 5 and only == [""]
    assert index.label_codes("__name__", np.empty(0, dtype=np.int64))[0].size == 0
    for bad in ([-1], [len(index.keys) + 10**9]):  # hostile ids: out of range, not wrapped around
        with pytest.raises(IndexError):
            index.label_codes("__name__", np.asarray(bad, dtype=np.int64))


def test_positions_and_unique_ids_are_numpys() -> None:
    rng = np.random.default_rng(7)
    for n in (0, 1, 2, 7, 1000):
        a = rng.integers(0, 40, n)
        want_u, want_inv = np.unique(a, return_inverse=True)
        for arr in (np.sort(a), a):  # ascending (the store's order) and shuffled
            want_u, want_inv = np.unique(arr, return_inverse=True)
            got_u, got_inv = fetch._positions(arr)
            assert got_u.tolist() == want_u.tolist() and got_inv.tolist() == want_inv.reshape(-1).tolist()
        assert fetch.unique_ids(a).tolist() == np.unique(a).tolist()


def test_load_frame_without_labels_to_drop_matches_the_analytics_reader(thermal: Scenario) -> None:
    """No per-CPU series: each series is its own column (the fast path), as analytics' reader has it."""
    store = thermal.store
    keys = store.index.keys
    ids = [i for i in select_series(dict(keys)) if "cpu" not in keys[i].label_dict()]
    start = thermal.at_ms - DEFAULT_WINDOW_MS
    want = load_signals(store, start, thermal.at_ms, builder=thermal.builder, series_ids=ids)
    got = fetch.load_frame(store, start, thermal.at_ms, ids, builder=thermal.builder)
    assert got.names == want.names and got.metrics == want.metrics and got.entities == want.entities
    assert got.values.shape == want.values.shape and got.values.shape[1] > 500
    assert np.array_equal(np.isnan(got.values), np.isnan(want.values))
    ok = ~np.isnan(want.values)
    np.testing.assert_allclose(got.values[ok], want.values[ok], rtol=1e-12, atol=1e-12)

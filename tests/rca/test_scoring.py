"""Scoring over whole matrices: the fast median, column statistics carried from the cause-first
read's first pass into its second (the same answer as scoring the whole again), and the cyclic
collector paused for an analysis only; the exact shortcuts (one label read, short medians, one
dependency walk per symptom entity) against what they replace."""

from __future__ import annotations

import gc
import json
import warnings
from typing import Any

import numpy as np
import pytest
from rca_helpers import Scenario

from sightglass.analytics.signals import SignalFrame, select_series
from sightglass.rca import engine, fetch
from sightglass.rca.engine import DEFAULT_WINDOW_MS, _nanmedian, analyze, column_stats, extend_stats


def _np_nanmedian(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=0)


@pytest.mark.parametrize("rows", [0, 1, 2, 7, 8, 31])
def test_nanmedian_is_numpys(rows: int) -> None:
    rng = np.random.default_rng(rows)
    x = rng.normal(size=(rows, 40)).round(1)  # ties too
    x[rng.random(x.shape) < 0.3] = np.nan
    if rows:
        x[:, 0] = np.nan  # a column without any value
        x[0, 1] = np.inf
        x[-1, 2] = -np.inf
    got, want = _nanmedian(x), _np_nanmedian(x)
    assert got.shape == want.shape == (40,)
    assert np.array_equal(got, want, equal_nan=True)  # the same values, not just close ones


def _frame(sc: Scenario) -> tuple[SignalFrame, int, int, int]:
    start = sc.at_ms - DEFAULT_WINDOW_MS
    ids = select_series(dict(sc.store.index.keys))
    frame = fetch.load_frame(sc.store, start, sc.at_ms, ids, builder=sc.builder)
    return frame, start, sc.at_ms, sc.at_ms - 300_000


def _split(frame: SignalFrame, first: np.ndarray) -> tuple[SignalFrame, SignalFrame]:
    def part(cols: np.ndarray) -> SignalFrame:
        js = cols.tolist()
        return SignalFrame(frame.ts_ms, frame.values[:, cols], [frame.names[j] for j in js],
                           [frame.metrics[j] for j in js], [frame.entities[j] for j in js])

    return part(np.flatnonzero(first)), part(np.flatnonzero(~first))


def _same(a: Any, b: Any) -> None:
    for name in a.__slots__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            assert x.shape == y.shape and np.array_equal(x, y, equal_nan=True), name
        else:
            assert x == y, name


def test_extended_statistics_are_those_of_the_whole(thermal: Scenario) -> None:
    frame, start, at, t_on = _frame(thermal)
    # split by metric, as the cause-first read does: the screening signals first, the rest after
    first = np.asarray([m in fetch.SCREEN_METRICS or not m.startswith(fetch.HOST_PREFIXES) for m in frame.metrics])
    assert first.any() and (~first).any()
    a, b = _split(frame, first)
    whole = column_stats(fetch.concat(a, b), start, at, t_on)
    got = extend_stats(column_stats(a, start, at, t_on), b, start, at, t_on)
    assert got is not None
    _same(got, whole)
    assert whole.worth.any() and whole.reasons.any() and (~whole.usable).sum() < len(whole.usable)


def test_extending_refuses_what_would_differ(thermal: Scenario) -> None:
    frame, start, at, t_on = _frame(thermal)
    half = np.arange(len(frame.metrics)) % 2 == 0  # every metric on both sides
    a, b = _split(frame, half)
    assert extend_stats(column_stats(a, start, at, t_on), b, start, at, t_on) is None
    # rows with data only in the second part: the first part's "future" rows change
    first = np.asarray([m.startswith("DCGM_") for m in frame.metrics])
    a, b = _split(frame, first)
    cut = a.values.copy()
    cut[-10:] = np.nan
    a = SignalFrame(a.ts_ms, cut, a.names, a.metrics, a.entities)
    assert extend_stats(column_stats(a, start, at, t_on), b, start, at, t_on) is None


def _answer(res: Any) -> str:
    d = res.to_dict()
    d.pop("seconds", None)
    return json.dumps(d, sort_keys=True, default=str)


def test_pruned_answer_is_the_one_scoring_everything_again_gives(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    sc = scenario
    carried = analyze(sc.store, sc.symptom, sc.at_ms, builder=sc.builder, read_budget=0)
    calls: list[bool] = []
    real = engine.extend_stats

    def refuse(*a: Any, **k: Any) -> None:
        calls.append(real(*a, **k) is not None)  # it would have carried them over
        return None

    monkeypatch.setattr(engine, "extend_stats", refuse)
    again = analyze(sc.store, sc.symptom, sc.at_ms, builder=sc.builder, read_budget=0)
    assert calls == [True]
    assert _answer(carried) == _answer(again)


def test_collector_paused_during_an_analysis_only(thermal: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    real = engine._Ctx.rank

    def rank(self: Any, *a: Any, **k: Any) -> Any:
        seen.append(gc.isenabled())
        return real(self, *a, **k)

    monkeypatch.setattr(engine._Ctx, "rank", rank)
    assert gc.isenabled()
    analyze(thermal.store, thermal.symptom, thermal.at_ms, builder=thermal.builder)
    assert seen == [False] and gc.isenabled()
    with pytest.raises(engine.RcaError):  # back on after an error too
        analyze(thermal.store, "sum(", thermal.at_ms, builder=thermal.builder)
    assert gc.isenabled()
    gc.disable()
    try:  # left off when it was off
        analyze(thermal.store, thermal.symptom, thermal.at_ms, builder=thermal.builder)
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize(
    "name",
    [
        'ib_switch_port_transmit_wait_total{port="3",remote_switch="spine-01",switch="leaf-02"}',
        'ib_switch_port_transmit_wait_total{remote_switch="spine-01"}',
        'ib_switch_port_transmit_wait_total{port="3",switch="leaf-02"}',  # none
        'm{xremote_switch="a",remote_switch_x="b"}',  # only a label of that exact name
        'm{a="x,remote_switch=\\"fake\\"",remote_switch="real"}',  # an escaped quote: parsed whole
        'm{a="x,remote_switch=\\"fake\\""}',
        'm{remote_switch="a\\\\b"}',
        'm{remote_switch=""}',
        'm{remote_switch="s1"}:rate',
        "m",
    ],
)
def test_one_label_read_is_the_parsed_names(name: str) -> None:
    assert engine._label_value(name, "remote_switch") == engine._parse_name(name)[1].get("remote_switch")


def test_short_median_is_numpys() -> None:
    rng = np.random.default_rng(5)
    for n in range(1, 30):
        for _ in range(20):
            xs = (rng.normal(size=n) * 10.0 ** rng.integers(-6, 9)).round(int(rng.integers(0, 4))).tolist()
            assert engine._median(xs) == float(np.median(np.asarray(xs)))  # the same value, not a close one


def test_a_resumed_walk_gives_each_cause_the_path_a_fresh_walk_does(thermal: Scenario) -> None:
    """``_Ctx._path`` resumes one walk per symptom entity for every cause; walking afresh for each
    gives the same paths, in any order of causes."""
    sc = thermal
    res = analyze(sc.store, sc.symptom, sc.at_ms, builder=sc.builder, top=20)
    topo = sc.builder.update(sc.store)
    t_on = res.symptom_onset_ms or sc.at_ms - 300_000
    ids = sorted(res.candidate_ids)
    assert len(ids) > 10 and res.symptom_entities

    def ctx() -> Any:
        return engine._Ctx(topo, sc.builder, {i: 0 for i in ids}, {}, res.window_start_ms, sc.at_ms, t_on)

    shared = ctx()
    for order in (ids, ids[::-1]):
        got = [shared._path(i, res.symptom_entities) for i in order]
        fresh = [ctx()._path(i, res.symptom_entities) for i in order]
        assert got == fresh
    assert sum(1 for p in got if p) > 5  # most candidates have a path to the symptom

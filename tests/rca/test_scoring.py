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


class _PerColumn(engine._Ctx):
    """``score_columns`` as it was before session 18: every column that can carry evidence tested one
    at a time (the reference the whole-array version must equal)."""

    def score_columns(self, frame: SignalFrame, stats: Any = None) -> Any:
        """Score every column of ``frame`` on its candidate; ``stats``: its column statistics, when
        already computed (the cause-first read's second pass reuses the first read's)."""
        self.frame = frame
        st = stats if stats is not None else engine.column_stats(frame, self.start, self.at, self.t_on)
        ts, vals = frame.ts_ms, st.vals
        base, fault, F, za = st.base, st.fault, st.F, st.za
        med, scale, sustained, fmed, bmax, shift = st.med, st.scale, st.sustained, st.fmed, st.bmax, st.shift
        usable, gone, worth, reasons, dcgm, age = st.usable, st.gone, st.worth, st.reasons, st.dcgm, st.age
        nF = len(F)
        self.col_value, self.col_z = fmed, sustained
        ts_f = ts[fault]
        # every column joins the candidate of its entity (a credit wait: the switch withholding
        # the credits), the candidates made in the order of their first column
        ents = frame.entities
        mcode, mnames = engine._codes(frame.metrics)
        targets: list[str | None] = ents
        waits = [i for i, m in enumerate(mnames) if m in engine.knowledge.CREDIT_WAIT_METRICS]
        if waits:
            targets = list(ents)
            known: dict[str, bool] = {}
            for j in np.flatnonzero(np.isin(mcode, waits)).tolist():
                targets[j] = self._receiver(frame.names[j], ents[j], known)
        tcode, tnames = engine._codes(targets)
        of_target = [None if t is None else self.cand(t) for t in tnames]
        self.col_cands = [c for c in of_target if c is not None]
        pos = {id(c): i for i, c in enumerate(self.col_cands)}
        col_cand = np.asarray([-1 if c is None else pos[id(c)] for c in of_target], dtype=np.int64)[tcode]
        self.col_cand, self.col_mcode, self.mcode_of = col_cand, mcode, {m: i for i, m in enumerate(mnames)}
        for j in np.flatnonzero(worth & (col_cand >= 0)).tolist():
            metric, owner = frame.metrics[j], ents[j]
            c = self.col_cands[col_cand[j]]
            if reasons[j]:
                self._reasons(c, j, vals[:, j], base, fault, ts)
                continue
            if gone[j] and dcgm[j]:
                # hardware telemetry stopped while the rest of the factory still reports
                self._signal(c, j, metric, float(med[j]), float(med[j]), float(scale[j]), engine.Z_CAP, None, "absent", engine.knowledge.ABSENT_WEIGHT)
                c.absent = True
                continue
            if not usable[j]:
                continue
            zs, onset_z = float(sustained[j]), za[:, j]
            if age[j] and np.isfinite(bmax[j]):
                # an age: anomalous once it passes the highest value it reached while healthy
                over = np.nan_to_num((F[:, j] - bmax[j]) / max(0.1 * abs(float(bmax[j])), 1e-6), nan=0.0)
                onset_z = np.maximum(over, 0.0) * engine.Z_ONSET
                zs = float(min(engine.Z_CAP, max(0.0, float(np.nanmax(over)) if nF else 0.0) * engine.Z_ONSET))
                if zs < engine.Z_ONSET:
                    continue
            elif zs < engine.Z_ONSET or shift[j] < 2.0:
                continue
            direction = float(np.sign(fmed[j] - med[j])) if np.isfinite(fmed[j]) else 0.0
            # role_of reads the labels only for node_cpu_seconds_total (its mode)
            labels = engine._parse_name(frame.names[j])[1] if metric == "node_cpu_seconds_total" else None
            role, w = engine.knowledge.role_of(metric, direction, labels) if labels is not None else engine._role_of(metric, direction)
            if metric in engine.knowledge.STALL_METRICS and med[j] > 0 and fmed[j] < 0.1 * med[j]:
                role, w = "cause", 0.8  # stopped, not slower
            on_idx = np.flatnonzero((onset_z[:-1] > engine.Z_ONSET) & (onset_z[1:] > engine.Z_ONSET)) if nF > 1 else np.zeros(0, int)
            onset = int(ts_f[on_idx[0]]) if len(on_idx) else None
            self._signal(c, j, metric, float(fmed[j]), float(med[j]), float(scale[j]), zs, onset, role, w)
            if owner is not None and owner != c.id and role == "cause":
                self.waits_on[owner].add(c.id)  # the port's switch is starved of credits by c
        # strongest first; one stable sort of the signals in the order they came (the order sorting
        # after every signal gave: the keys are finite)
        for c in self._unsorted.values():
            c.signals.sort(key=lambda s: -s.z * s.weight)
        self._unsorted.clear()
        return st


def _evidence(ctx: Any) -> dict[str, Any]:
    return {
        eid: (c.signals, [e.to_dict() for e in c.events], c.metrics, c.reasons, c.event_kinds, c.absent, c.onset_ms,
              c.event_score)
        for eid, c in ctx.c.items()
    } | {"waits_on": dict(ctx.waits_on)}


def test_whole_array_scoring_is_the_per_column_one(scenario: Scenario) -> None:
    """The same signals, in the same order, throttle events, absences and credit waits on every
    candidate as testing each column alone (every simulated layer, and read cause signals first)."""
    sc = scenario
    res = analyze(sc.store, sc.symptom, sc.at_ms, builder=sc.builder)
    topo = sc.builder.update(sc.store)
    t_on = res.symptom_onset_ms or sc.at_ms - 300_000
    frame, start, at, _ = _frame(sc)
    cands = {i: 1 for i in res.candidate_ids}
    got, want = (cls(topo, sc.builder, dict(cands), {}, start, at, t_on) for cls in (engine._Ctx, _PerColumn))
    got.score_columns(frame)
    want.score_columns(frame)
    assert sum(len(c.signals) for c in want.c.values()) > 5
    assert _evidence(got) == _evidence(want)

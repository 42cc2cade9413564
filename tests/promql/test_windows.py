"""Window search over packed series (promql/values.py): series with the same timestamps (one
scrape's series) are searched once per group; every window must be what a search of each series gives."""

from __future__ import annotations

import numpy as np
import pytest

from sightglass.promql.values import Packed, RangeVector

T0 = 1_700_000_000_000


def _packed(series: list[np.ndarray]) -> Packed:
    off = np.concatenate([[0], np.cumsum([len(s) for s in series])]).astype(np.int64)
    t = np.concatenate(series).astype(np.int64) if series else np.empty(0, np.int64)
    return Packed([{"i": str(i)} for i in range(len(series))], off, t, np.arange(len(t), dtype=float))


def _naive(p: Packed, end: np.ndarray, range_ms: int) -> tuple[np.ndarray, np.ndarray]:
    lo = np.empty((len(p), len(end)), dtype=np.int64)
    hi = np.empty_like(lo)
    for i in range(len(p)):
        a, b = int(p.off[i]), int(p.off[i + 1])
        lo[i] = a + np.searchsorted(p.t[a:b], end - range_ms, side="left")
        hi[i] = a + np.searchsorted(p.t[a:b], end, side="right")
    return lo, hi


def _fleet(rng: np.random.Generator) -> list[np.ndarray]:
    """Targets of a few series each, scraped together (same times), with jitter between targets,
    gaps, a restarted target, empty and one-sample series, and neighbours equal only at their ends."""
    out: list[np.ndarray] = []
    grid = T0 + np.arange(0, 3 * 3_600_000, 10_000)
    for target in range(12):
        times = grid + int(rng.integers(0, 9_000))
        if target % 4 == 1:
            times = np.delete(times, rng.choice(len(times), 40, replace=False))  # missed scrapes
        for _ in range(int(rng.integers(1, 5))):
            out.append(times)
        if target % 5 == 2:
            odd = times.copy()
            odd[len(odd) // 3 : len(odd) // 2] += 4_000  # same length, first and last time
            out.append(odd)
        if target % 6 == 3:
            out.append(np.empty(0, np.int64))
            out.append(times[:1])
            out.append(times[:1])
    return out


@pytest.mark.parametrize("step, range_ms", [(60_000, 60_000), (60_000, 300_000), (300_000, 300_000), (37_000, 60_000)])
def test_windows_equal_a_search_per_series(step: int, range_ms: int) -> None:
    rng = np.random.default_rng(step + range_ms)
    p = _packed(_fleet(rng))
    groups = p.time_groups()
    assert groups is not None and len(groups[0]) < len(p)  # the groups are found
    end = np.arange(T0 - 600_000, T0 + 3 * 3_600_000 + 600_000, step, dtype=np.int64)
    lo, hi = RangeVector(p, range_ms, end, end).windows()
    want_lo, want_hi = _naive(p, end, range_ms)
    np.testing.assert_array_equal(hi, want_hi)
    np.testing.assert_array_equal(lo, want_lo)


def test_equal_length_series_differing_inside_are_not_grouped() -> None:
    a = T0 + np.arange(0, 600_000, 10_000)
    b = a.copy()
    b[7] += 3
    p = _packed([a, b, b, a])
    reps, of = p.time_groups() or (None, None)
    assert reps is not None and of is not None
    assert of[3] == of[0] and of[1] != of[0] and of[2] != of[0]  # b matches a at its ends only
    end = T0 + np.arange(0, 700_000, 15_000)
    lo, hi = RangeVector(p, 30_000, end, end).windows()
    want_lo, want_hi = _naive(p, end, 30_000)
    np.testing.assert_array_equal(lo, want_lo)
    np.testing.assert_array_equal(hi, want_hi)


def test_no_groups() -> None:
    assert _packed([T0 + np.arange(5), T0 + np.arange(6)]).time_groups() is None
    assert _packed([T0 + np.arange(5)]).time_groups() is None
    assert _packed([]).time_groups() is None


def test_answers_with_and_without_groups_are_identical(store: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a real store: targets whose series share their scrape times (gaps, counter resets, series
    that start late), every range function answers the same with the groups as without them."""
    from sightglass.model import SampleBatch, SeriesKey
    from sightglass.promql.engine import Engine

    rng = np.random.default_rng(9)
    keys, sid, ts, vals = [], [], [], []
    for target in range(6):
        times = T0 + np.arange(0, 2 * 3_600_000, 15_000) + int(rng.integers(0, 14_000))
        if target == 2:
            times = times[(times < T0 + 1_800_000) | (times > T0 + 2_400_000)]  # the target was down
        if target == 4:
            times = times[times > T0 + 3_000_000]  # a target that started late
        for gpu in range(4):
            keys.append(SeriesKey.of("c_total", {"host": f"h{target}", "gpu": str(gpu)}))
            v = np.cumsum(rng.integers(0, 50, len(times))).astype(float)
            if gpu == 1:
                v[len(v) // 2 :] -= v[len(v) // 2]  # a counter reset
            sid.append(np.full(len(times), len(keys) - 1))
            ts.append(times)
            vals.append(v)
    store.append(SampleBatch(keys, np.concatenate(sid), np.concatenate(ts), np.concatenate(vals)))  # type: ignore[attr-defined]
    eng = Engine(store)
    queries = [
        "rate(c_total[1m])", "increase(c_total[5m])", "delta(c_total[2m])", "irate(c_total[1m])",
        "sum by (host) (rate(c_total[5m]))", "avg_over_time(c_total[1m])", "max_over_time(c_total[3m])",
        "count_over_time(c_total[1m])", "resets(c_total[10m])", "last_over_time(c_total[1m])",
    ]  # fmt: skip
    grids = [(T0, T0 + 2 * 3_600_000, 60_000), (T0 - 120_000, T0 + 2 * 3_600_000, 37_000)]

    def answers() -> list[str]:
        out = [eng.range(q, a, b, s).to_json() for q in queries for a, b, s in grids]
        return out + [eng.instant(q, T0 + 3_000_000).to_json() for q in queries]

    found: list[int] = []
    find = Packed._find_groups

    def spy(self: Packed) -> tuple[np.ndarray, np.ndarray] | None:
        groups = find(self)
        found.append(len(self) - len(groups[0]) if groups is not None else 0)
        return groups

    monkeypatch.setattr(Packed, "_find_groups", spy)
    with_groups = answers()
    # 4 series per target share times (not neighbours in label order: gpu sorts before host)
    assert max(found) == 18
    monkeypatch.setattr(Packed, "_find_groups", lambda self: None)
    assert answers() == with_groups


def test_label_order_memo_follows_the_index() -> None:
    """ordered_ids keeps a selector's label order while the index's generation stands."""
    from sightglass.model import Matcher, SeriesKey
    from sightglass.promql.reader import ordered_ids
    from sightglass.store.index import SeriesIndex

    class _Store:
        def __init__(self) -> None:
            self.index = SeriesIndex()

        def select_ids(self, matchers: list[Matcher]) -> np.ndarray:
            return self.index.select(matchers)

    st = _Store()
    for sid, node in enumerate(["c", "a", "b"]):
        st.index.add(sid, SeriesKey.of("m", {"node": node}))
    sel = [Matcher("__name__", "=", "m")]
    _, known, lut = ordered_ids(st, sel)
    assert known == [1, 2, 0] and lut.tolist() == [2, 0, 1]
    again = ordered_ids(st, sel)
    assert again[1] is known  # from the memo
    st.index.remove([1])
    st.index.add(1, SeriesKey.of("m", {"node": "z"}))  # id 1 now names another series
    _, known, lut = ordered_ids(st, sel)
    assert known == [2, 0, 1] and lut.tolist() == [1, 2, 0]


@pytest.mark.parametrize("seed", range(4))
def test_equally_long_series_of_interleaved_groups(seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = T0 + np.arange(0, 1_200_000, 10_000)
    patterns = [base, base + 3_000, base.copy()]
    patterns[2][40:60] += 5_000  # same ends and middle as base, other times inside
    pick = rng.integers(0, 3, 150)
    p = _packed([patterns[k] for k in pick])
    reps, of = p.time_groups() or (None, None)
    assert reps is not None and of is not None
    for i in range(len(p)):  # grouped only with series of the very same times
        assert pick[reps[of[i]]] == pick[i]
    end = T0 + np.arange(0, 1_300_000, 20_000)
    lo, hi = RangeVector(p, 60_000, end, end).windows()
    want_lo, want_hi = _naive(p, end, 60_000)
    np.testing.assert_array_equal(lo, want_lo)
    np.testing.assert_array_equal(hi, want_hi)

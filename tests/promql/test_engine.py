"""Evaluator behaviour that the Prometheus comparison cannot cover: stale markers, limits, errors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from sightglass.model import Matcher, SampleBatchBuilder, SeriesKey
from sightglass.promql import engine as engine_mod
from sightglass.promql.engine import Engine
from sightglass.promql.reader import read_packed
from sightglass.promql.result import QueryError
from sightglass.store.duckdb import DuckDBStore

T0 = 1_700_000_000_000
S = 15_000


def _load(store: DuckDBStore, rows: list[tuple[str, dict[str, str], int, float | None]]) -> None:
    b = SampleBatchBuilder()
    for name, labels, ts, v in rows:
        b.add(SeriesKey.of(name, labels), ts, math.nan if v is None else v, stale=v is None)
    store.append(b.build())


def _values(res: object) -> dict[str, float]:
    return {s.labels.get("i", ""): s.value for s in res.vector}  # type: ignore[attr-defined]


def test_stale_marker_ends_series_at_once(store: DuckDBStore) -> None:
    # a scrape target disappears: Prometheus writes a stale marker and the series stops at once,
    # instead of lingering for the 5-minute lookback
    rows: list[tuple[str, dict[str, str], int, float | None]] = []
    for k in range(10):
        rows.append(("up", {"i": "a"}, T0 + k * S, 1.0))
        rows.append(("up", {"i": "b"}, T0 + k * S, 1.0))
    rows.append(("up", {"i": "a"}, T0 + 10 * S, None))
    _load(store, rows)
    eng = Engine(store)
    assert _values(eng.instant("up", T0 + 9 * S)) == {"a": 1.0, "b": 1.0}
    assert _values(eng.instant("up", T0 + 10 * S)) == {"b": 1.0}
    assert _values(eng.instant("up", T0 + 14 * S)) == {"b": 1.0}
    # without a marker the series lives for the lookback, inclusive of its edge (Prometheus 2.x)
    assert _values(eng.instant("up", T0 + 9 * S + 300_000)) == {"b": 1.0}
    assert _values(eng.instant("up", T0 + 9 * S + 300_001)) == {}
    # range functions skip the marker
    res = eng.instant('count_over_time(up{i="a"}[10m])', T0 + 20 * S)
    assert [s.value for s in res.vector] == [10.0]
    rng = eng.range("up", T0, T0 + 12 * S, S)
    counts = {s.labels["i"]: len(s.ts_ms) for s in rng.matrix}
    assert counts == {"a": 10, "b": 13}


def test_range_query_reads_each_selector_once(store: DuckDBStore, monkeypatch: pytest.MonkeyPatch) -> None:
    _load(store, [("g", {"i": str(k)}, T0 + j * S, float(j)) for k in range(3) for j in range(100)])
    calls: list[tuple[int, int]] = []
    orig = engine_mod.read_packed

    def spy(store_: Any, matchers: Any, lo: int, hi: int, limit: int | None) -> Any:
        calls.append((lo, hi))
        return orig(store_, matchers, lo, hi, limit)

    monkeypatch.setattr(engine_mod, "read_packed", spy)
    res = Engine(store).range("sum(rate(g[1m])) + avg(avg_over_time(g[5m]))", T0, T0 + 99 * S, S)
    assert sorted(calls) == [(T0 - 300_000, T0 + 99 * S), (T0 - 60_000, T0 + 99 * S)]
    assert len(res.matrix) == 1 and len(res.matrix[0].ts_ms) > 90


def test_packed_read_matches_store_select(store: DuckDBStore) -> None:
    rows: list[tuple[str, dict[str, str], int, float | None]] = []
    for k in range(4):
        rows += [("g", {"i": str(k)}, T0 + j * S, float(j * k)) for j in range(50)]
    _load(store, rows[::2])
    _load(store, [*rows[1::2], ("g", {"i": "1"}, T0, 42.0), ("g", {"i": "2"}, T0 + 60 * S, None)])
    ms = [Matcher("__name__", "=", "g")]
    labels, off, ts, vals, stale = read_packed(store, ms, T0, T0 + 100 * S, None)
    ref = store.select(ms, T0, T0 + 100 * S)
    assert labels == [s.key.all_labels() for s in ref]
    for i, s in enumerate(ref):
        a, b = off[i], off[i + 1]
        assert (ts[a:b] == s.ts_ms).all() and (stale[a:b] == s.stale).all()
        assert np.array_equal(vals[a:b], s.values, equal_nan=True)


def test_max_samples(store: DuckDBStore) -> None:
    _load(store, [("g", {"i": str(k)}, T0 + j * S, 1.0) for k in range(5) for j in range(100)])
    with pytest.raises(QueryError) as e:
        Engine(store, max_samples=100).range("g", T0, T0 + 99 * S, S)
    assert e.value.error_type == "execution"


def test_timeout(store: DuckDBStore) -> None:
    _load(store, [("g", {}, T0, 1.0)])
    with pytest.raises(QueryError) as e:
        Engine(store).instant("g + g", T0, timeout_s=-1)
    assert e.value.error_type == "timeout"


@pytest.mark.parametrize(
    "query",
    ["holt_winters(g[5m], 0.5, 0.5)", "histogram_count(g)", 'sort_by_label(g, "a")'],
)
def test_unsupported_is_an_error_not_a_guess(store: DuckDBStore, query: str) -> None:
    _load(store, [("g", {}, T0, 1.0)])
    with pytest.raises(QueryError):
        Engine(store).instant(query, T0)


def test_range_query_rejects_range_vector(store: DuckDBStore) -> None:
    with pytest.raises(QueryError, match="range vector"):
        Engine(store).range("g[5m]", T0, T0 + S, S)


def test_result_shapes(store: DuckDBStore) -> None:
    _load(store, [("g", {"i": "a"}, T0 + j * S, float(j)) for j in range(20)])
    eng = Engine(store)
    assert eng.instant("1 + 1", T0).scalar == (T0, 2.0)
    assert eng.instant('"x"', T0).string == (T0, "x")
    m = eng.instant("g[1m]", T0 + 19 * S).matrix
    assert len(m) == 1 and list(m[0].values) == [15.0, 16.0, 17.0, 18.0, 19.0]
    r = eng.range("time()", T0, T0 + 2 * S, S).matrix
    assert np.allclose(r[0].values, [(T0 + k * S) / 1000 for k in range(3)])
    assert [s.labels for s in eng.instant("sort_desc(g)", T0 + S).vector] == [{"__name__": "g", "i": "a"}]


def test_window_sums_do_not_leak_precision_between_series(store: DuckDBStore) -> None:
    rows: list[tuple[str, dict[str, str], int, float | None]] = []
    for j in range(200):
        rows.append(("g", {"i": "a"}, T0 + j * S, 1e15 + j))
        rows.append(("g", {"i": "b"}, T0 + j * S, 0.001))
        rows.append(("c", {"i": "a"}, T0 + j * S, 1e12 * (j % 7)))  # resets every 7 samples
        rows.append(("c", {"i": "b"}, T0 + j * S, float(j)))
    _load(store, rows)
    eng = Engine(store)
    res = eng.range('sum_over_time(g{i="b"}[1m])', T0 + 60 * S, T0 + 199 * S, S)
    assert np.allclose(res.matrix[0].values, 0.005, rtol=1e-12, atol=0)
    res = eng.range('increase(c{i="b"}[1m])', T0 + 60 * S, T0 + 199 * S, S)
    assert np.allclose(res.matrix[0].values, 4.0, rtol=1e-12, atol=0)  # [t-1m, t] holds 5 samples: +4


def _plain_search(off: np.ndarray, t: np.ndarray, bounds: np.ndarray, side: str) -> np.ndarray:
    return np.array(
        [off[i] + np.searchsorted(t[off[i] : off[i + 1]], bounds, side=side) for i in range(len(off) - 1)]  # type: ignore[call-overload]
    ).reshape(len(off) - 1, len(bounds))


def test_window_edges_match_a_plain_search_per_series() -> None:
    # the shortcuts (one composite key for instant queries over short series; window starts taken
    # from earlier steps' ends when the range is whole steps) against one searchsorted per series,
    # with samples exactly on window edges, empty series and grids that do not allow the shortcut
    from sightglass.promql.values import Packed, RangeVector

    rng = np.random.default_rng(7)
    for _ in range(2000):
        n = int(rng.integers(1, 6))
        series = [
            np.unique(rng.integers(-20, 60, int(rng.integers(0, 40))) * int(rng.choice([1, 5, 10])))
            for _ in range(n)
        ]
        off = np.concatenate([[0], np.cumsum([len(s) for s in series])]).astype(np.int64)
        t = np.concatenate(series).astype(np.int64)
        step = int(rng.choice([5, 10, 30]))
        range_ms = step * int(rng.integers(1, 8)) if rng.random() < 0.8 else int(rng.integers(1, 200))
        start = int(rng.integers(-100, 400))
        end = np.arange(start, start + step * int(rng.integers(1, 50)), step, dtype=np.int64)
        lo, hi = RangeVector(Packed([{}] * n, off, t, np.zeros(len(t))), range_ms, end, end).windows()
        assert np.array_equal(hi, _plain_search(off, t, end, "right"))
        assert np.array_equal(lo, _plain_search(off, t, end - range_ms, "left"))

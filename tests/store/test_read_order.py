"""``order_parts``: the columns of several sources in (series, time) order, last write winning."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from sightglass.store import read_order
from sightglass.store.duckdb import _in_row_order
from sightglass.store.read_order import order_parts


def _part(sid: list[int], ts: list[int], vals: list[float], stale: list[bool] | None = None) -> tuple[np.ndarray, ...]:
    return (
        np.array(sid, dtype=np.int64),
        np.array(ts, dtype=np.int64),
        np.array(vals, dtype=np.float64),
        np.array(stale if stale is not None else [False] * len(sid)),
    )


def test_runs_in_any_order_are_merged_and_the_last_write_wins() -> None:
    # a day table read back as two runs in the wrong order, then the head with a rewrite and late data
    day = _part([0, 0, 1, 1, 0, 0, 1], [30, 40, 30, 40, 10, 20, 10], [3, 4, 13, 14, 1, 2, 11])
    head = _part([1, 0, 1], [40, 20, 5], [99, 22, 10.5], [False, True, False])
    sid, ts, vals, stale = order_parts([day, head])
    assert sid.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert ts.tolist() == [10, 20, 30, 40, 5, 10, 30, 40]
    assert vals[[0, 2, 3, 4, 5, 6, 7]].tolist() == [1, 3, 4, 10.5, 11, 13, 99]
    assert stale.tolist() == [False, True, False, False, False, False, False, False]  # the stale rewrite won


def test_rank_reorders_series_and_drops_unranked_ones() -> None:
    part = _part([5, 5, 7, 9], [1, 2, 1, 1], [1, 2, 3, 4])
    rank = np.full(10, -1, dtype=np.int64)
    rank[7], rank[5] = 0, 1  # series 9 is not asked for
    sid, _, vals, stale = order_parts([part], rank)
    assert sid.tolist() == [0, 1, 1] and vals.tolist() == [3, 1, 2] and not stale.any()


def test_empty_and_sorted_input() -> None:
    assert all(len(c) == 0 for c in order_parts([]))
    sorted_part = _part([0, 0, 1], [1, 2, 1], [1, 2, 3])
    sid, ts, _, _ = order_parts([sorted_part])
    assert sid.tolist() == [0, 0, 1] and ts.tolist() == [1, 2, 1]
    # ids too large for a composite key still sort (by series, then time)
    big = _part([2**40, 3, 2**40], [2**60, 1, 5], [1, 2, 3])
    sid, ts, _, _ = order_parts([big])
    assert sid.tolist() == [3, 2**40, 2**40] and ts.tolist() == [1, 5, 2**60]
    # ...also from disjoint sources, where per-series counts would be too large
    sid, ts, _, _ = order_parts([_part([2**40, 3], [1, 2], [1, 2]), _part([3, 2**40], [5, 6], [3, 4])])
    assert sid.tolist() == [3, 3, 2**40, 2**40] and ts.tolist() == [2, 5, 1, 6]


def test_sorted_parts_merge_by_series_and_late_data_still_sorts() -> None:
    sealed = _part([0, 0, 1, 1], [10, 20, 10, 20], [1, 2, 11, 12])
    head = _part([1, 0, 1], [30, 30, 40], [13, 3, 14])
    sid, ts, vals, _ = order_parts([sealed, head])
    assert sid.tolist() == [0, 0, 0, 1, 1, 1, 1] and vals.tolist() == [1, 2, 3, 11, 12, 13, 14]
    late = _part([0, 1], [15, 20], [1.5, 99])  # sorted itself, but inside the earlier part's time
    sid, ts, vals, _ = order_parts([sealed, late])
    assert ts.tolist() == [10, 15, 20, 10, 20] and vals.tolist() == [1, 1.5, 2, 11, 99]
    rank = np.array([1, 0])  # the rank reverses the series: each part stays sorted by rank
    sid, ts, vals, _ = order_parts([sealed, head], rank)
    assert sid.tolist() == [0, 0, 0, 0, 1, 1, 1] and vals.tolist() == [11, 12, 13, 14, 1, 2, 3]


@pytest.mark.parametrize("block_rows", [1, 10**9])
def test_disjoint_sources_interleave_by_series_without_a_global_sort(
    block_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_order, "BLOCK_ROWS", block_rows)  # slices, or one row at a time
    # a sealed day (sorted, with a duplicate: the later row wins), a stage in two sorted slices, the
    # head unsorted; times increase from one source to the next
    day = _part([0, 0, 0, 1, 2, 2], [1, 2, 2, 1, 1, 3], [1, 2, 2.5, 11, 21, 23])
    stage = _part([1, 2, 0, 0, 1], [10, 10, 11, 12, 12], [110, 210, 11, 12, 120], [False, False, False, True, False])
    head = _part([2, 0, 1, 2], [25, 20, 20, 21], [250, 20, 200, 211])
    sid, ts, vals, stale = order_parts([day, stage, head])
    assert sid.tolist() == [0] * 5 + [1] * 4 + [2] * 5
    assert ts.tolist() == [1, 2, 11, 12, 20, 1, 10, 12, 20, 1, 3, 10, 21, 25]
    assert vals[~stale].tolist() == [1, 2.5, 11, 20, 11, 110, 120, 200, 21, 23, 210, 211, 250]
    assert stale.tolist() == [False, False, False, True] + [False] * 10
    # the same with a rank that reverses the series and drops series 1
    rank = np.array([1, -1, 0])
    sid, ts, vals, _ = order_parts([day, stage, head], rank)
    assert sid.tolist() == [0] * 5 + [1] * 5
    assert ts.tolist() == [1, 3, 10, 21, 25, 1, 2, 11, 12, 20]
    assert vals.tolist()[:5] == [21, 23, 210, 211, 250]
    # the same as a plain reference (all rows, a stable sort, the last duplicate kept) on random data
    rng = np.random.default_rng(7)
    parts = [
        _part(rng.integers(0, 50, 3_000).tolist(), (k * 1000 + rng.integers(0, 1000, 3_000)).tolist(),
              rng.random(3_000).tolist(), (rng.random(3_000) < 0.01).tolist())
        for k in range(3)
    ]  # fmt: skip
    rank = rng.permutation(50)
    rank[rank == 3] = -1
    got = order_parts(parts, rank)
    sid = rank[np.concatenate([p[0] for p in parts])]
    cols = [np.concatenate([p[i] for p in parts])[sid >= 0] for i in (1, 2, 3)]
    sid = sid[sid >= 0]
    order = np.lexsort((cols[0], sid))
    sid, ts, vals, stale = sid[order], cols[0][order], cols[1][order], cols[2][order]
    last = np.append((sid[1:] != sid[:-1]) | (ts[1:] != ts[:-1]), True)
    for a, b in zip(got, (sid[last], ts[last], vals[last], stale[last]), strict=True):
        assert np.array_equal(a, b)


def test_row_order_from_runs_of_a_parallel_scan() -> None:
    # row groups handed back out of order, a chunk holding the ends of two, gaps between series
    runs = [np.arange(100, 130), np.arange(0, 10), np.arange(40, 60), np.arange(200, 205)]
    chunks = [np.concatenate(runs[:2]), np.concatenate(runs[2:])]
    table = pa.Table.from_batches(
        [pa.record_batch({"r": pa.array(c), "v": pa.array(c * 2.0)}) for c in chunks]
    )
    out = _in_row_order(table)
    r = out.column("r").to_numpy()
    assert r.tolist() == sorted(np.concatenate(runs).tolist())
    assert (out.column("v").to_numpy() == r * 2.0).all()
    ordered = pa.table({"r": pa.array(np.arange(5)), "v": pa.array(np.arange(5.0))})
    assert _in_row_order(ordered) is ordered
    # too many runs: sorted row by row, same answer
    shuffled = np.random.default_rng(3).permutation(200_000)
    table = pa.table({"r": pa.array(shuffled * 2), "v": pa.array(shuffled.astype(float))})
    assert (_in_row_order(table).column("v").to_numpy() == np.arange(200_000)).all()


def test_ranges_parts_merge_like_their_columns() -> None:
    # a cached part cut to a range: series 0 rows 1:3, series 1 none, series 2 rows 5:7 of its columns
    ts = np.array([5, 10, 20, 30, 1, 8, 9, 12], dtype=np.int64)
    vals = np.arange(8, dtype=np.float64)
    stale = np.array([False, False, True, False, False, False, False, False])
    cut = read_order.Ranges(ts, vals, stale, np.array([1, 4, 5]), np.array([2, 0, 2]))
    assert cut.n == 4 and cut.bounds() == (8, 20)
    sid, t, v, st = cut.columns()
    assert sid.tolist() == [0, 0, 2, 2] and t.tolist() == [10, 20, 8, 9] and v.tolist() == [1, 2, 5, 6]
    assert st.tolist() == [False, True, False, False]
    head = _part([2, 1, 0, 2], [40, 41, 42, 30], [100, 101, 102, 103], [False, False, False, True])
    merged = order_parts([cut, head])
    plain = order_parts([cut.columns(), head])
    for a, b in zip(merged, plain, strict=True):
        assert a.tolist() == b.tolist()
    assert merged[0].tolist() == [0, 0, 0, 1, 2, 2, 2, 2] and merged[1].tolist() == [10, 20, 42, 41, 8, 9, 30, 40]
    assert merged[3].tolist() == [False, True, False, False, False, False, True, False]
    # overlapping times (late data in the head) fall back to the sort, the head's rewrite winning
    late = _part([0], [20], [-1.0])
    sid, t, v, _ = order_parts([cut, late])
    assert sid.tolist() == [0, 0, 2, 2] and t.tolist() == [10, 20, 8, 9] and v.tolist() == [1, -1, 5, 6]

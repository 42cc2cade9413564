"""``order_parts``: the columns of several sources in (series, time) order, last write winning."""

from __future__ import annotations

import numpy as np

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

"""Read a selector's samples from the store straight into packed arrays.

``DuckDBStore.read_arrays`` returns one array per column, sorted by (series id, time), duplicates
resolved (last write wins); here whole series are put in label order, as from Prometheus' storage,
so that sums over them add in the same order. Stores without ``read_arrays`` fall back to
``select``.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from sightglass.model import Matcher, SeriesKey
from sightglass.promql.result import QueryError
from sightglass.promql.values import NAME, LabelSet


def read_packed(
    store: Any, matchers: Sequence[Matcher], lo: int, hi: int, limit: int | None
) -> tuple[list[LabelSet], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, off, ts, values, stale)`` for the series matching ``matchers`` in ``[lo, hi]``."""
    if not all(hasattr(store, a) for a in ("select_ids", "read_arrays", "index")):
        return _via_select(store, matchers, lo, hi, limit)
    ids, known, lut = ordered_ids(store, matchers)
    if ids.size == 0:
        return [], np.zeros(1, dtype=np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, bool)
    keys = store.index.keys
    try:
        if hasattr(store, "read_packed_arrays"):
            present, off, ts, vals, stale = store.read_packed_arrays(ids, lo, hi, limit_samples=limit, rank=lut)
        else:
            rank, ts, vals, stale = store.read_arrays(ids, lo, hi, limit_samples=limit, rank=lut)
            starts = np.flatnonzero(np.r_[True, rank[1:] != rank[:-1]]) if len(rank) else np.empty(0, np.int64)
            present, off = rank[starts], np.append(starts, len(rank)).astype(np.int64)
    except Exception as e:
        if type(e).__name__ == "LimitExceeded":
            raise QueryError(str(e), "execution") from None
        raise
    labels: list[LabelSet] = [keys[known[r]].all_labels() for r in present.tolist()]
    return labels, off, ts, vals, stale


ORDER_MEMO_ENTRIES = 64  # selectors whose label order is kept per index (a dashboard's panels)
_order_memo: weakref.WeakKeyDictionary[Any, OrderedDict[tuple[int, bytes], tuple[list[int], np.ndarray]]]
_order_memo = weakref.WeakKeyDictionary()
_memo_lock = threading.Lock()


def ordered_ids(store: Any, matchers: Sequence[Matcher]) -> tuple[np.ndarray, list[int], np.ndarray]:
    """The matching ids; the known ones in label order, as Prometheus' storage returns series (so
    aggregations add in its order); and a lookup table from id to that rank (-1: not known).

    The order of a set of ids is kept per index while its ``generation`` stands (no id has changed
    its key), so a dashboard's refresh does not sort the same series again. Callers must not
    change what they get."""
    ids = store.select_ids(matchers)
    if ids.size == 0:
        return ids, [], np.empty(0, np.int64)
    index = store.index
    gen = getattr(index, "generation", None)
    memo_key = (gen, np.ascontiguousarray(ids, dtype=np.int64).tobytes()) if gen is not None else None
    if memo_key is not None:
        with _memo_lock:
            memo = _order_memo.get(index)
            hit = memo.get(memo_key) if memo is not None else None
            if hit is not None:
                memo.move_to_end(memo_key)  # type: ignore[union-attr]
                return ids, hit[0], hit[1]
    keys = index.keys
    known = [i for i in ids.tolist() if i in keys]
    known.sort(key=lambda i: sort_key(keys[i]))
    lut = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    lut[np.array(known, dtype=np.int64)] = np.arange(len(known), dtype=np.int64)
    if memo_key is not None:
        lut.flags.writeable = False
        with _memo_lock:
            memo = _order_memo.setdefault(index, OrderedDict())
            memo[memo_key] = (known, lut)
            while len(memo) > ORDER_MEMO_ENTRIES:
                memo.popitem(last=False)
    return ids, known, lut


def sort_key(key: SeriesKey) -> tuple[tuple[str, str], ...]:
    """``label_key(key.all_labels())`` without building the dict: the labels are already sorted and
    ``__name__`` goes in among them (after upper-case names, before lower-case ones)."""
    labels = key.labels
    at = bisect.bisect_left(labels, (NAME,))
    return (*labels[:at], (NAME, key.metric), *labels[at:])


def _via_select(
    store: Any, matchers: Sequence[Matcher], lo: int, hi: int, limit: int | None
) -> tuple[list[LabelSet], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        data = list(store.select(matchers, lo, hi, limit_samples=limit))
    except Exception as e:
        if type(e).__name__ == "LimitExceeded":
            raise QueryError(str(e), "execution") from None
        raise
    data.sort(key=lambda s: tuple(sorted(s.key.all_labels().items())))
    labels = [s.key.all_labels() for s in data]
    lens = np.array([len(s) for s in data], dtype=np.int64)
    off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    if not data:
        return labels, off, np.empty(0, np.int64), np.empty(0), np.empty(0, bool)
    return (
        labels,
        off,
        np.concatenate([s.ts_ms for s in data]).astype(np.int64),
        np.concatenate([s.values for s in data]).astype(np.float64),
        np.concatenate([s.stale for s in data]),
    )

"""Read a selector's samples from the store straight into packed arrays.

``DuckDBStore.read_ids`` sorts in SQL and returns one object per series; the evaluator wants one
array per column, sorted by (series, time). Scanning without ``ORDER BY`` and sorting the (already
nearly sorted) keys with numpy's stable sort is about twice as fast on large reads. Duplicate
(series, timestamp) rows keep the last written, as ``read_ids`` does. Series come out in label order,
as from Prometheus' storage, so that sums over them add in the same order. Stores without the
DuckDB internals fall back to ``select``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from sightglass.model import Matcher
from sightglass.promql.result import QueryError
from sightglass.promql.values import LabelSet


def read_packed(
    store: Any, matchers: Sequence[Matcher], lo: int, hi: int, limit: int | None
) -> tuple[list[LabelSet], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, off, ts, values, stale)`` for the series matching ``matchers`` in ``[lo, hi]``."""
    if not all(hasattr(store, a) for a in ("select_ids", "cursor", "_sample_sources", "index")):
        return _via_select(store, matchers, lo, hi, limit)
    ids = store.select_ids(matchers)
    if ids.size == 0:
        return [], np.zeros(1, dtype=np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, bool)
    sources = store._sample_sources(lo, hi)
    union = " UNION ALL ".join(
        f"SELECT series_id, ts, value FROM {t} WHERE ts >= $lo AND ts <= $hi" for t in sources
    )
    cap = f" LIMIT {int(limit) + 1}" if limit is not None else ""
    cur = store.cursor()
    cur.register("_q_ids", pa.table({"id": pa.array(ids.astype(np.int32))}))
    try:
        res = cur.sql(
            f"SELECT series_id, ts, value FROM ({union}) s SEMI JOIN _q_ids ON s.series_id = _q_ids.id{cap}",
            params={"lo": lo, "hi": hi},
        ).to_arrow_table()
    finally:
        cur.unregister("_q_ids")
        cur.close()
    if limit is not None and res.num_rows > limit:
        raise QueryError(
            f"query would load more than {limit} samples, over the limit (query.max_samples)", "execution"
        )
    # series in label order, as Prometheus' storage returns them (aggregations then add in its order)
    keys = store.index.keys
    known = [int(i) for i in ids.tolist() if int(i) in keys]
    known.sort(key=lambda i: tuple(sorted(keys[i].all_labels().items())))
    lut = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    lut[np.array(known, dtype=np.int64)] = np.arange(len(known), dtype=np.int64)
    sid = lut[res.column("series_id").to_numpy()]
    ts = res.column("ts").to_numpy().astype(np.int64, copy=False)
    vcol = res.column("value")
    stale = vcol.is_null().to_numpy(zero_copy_only=False)
    vals = vcol.fill_null(np.nan).to_numpy().astype(np.float64, copy=False)
    if len(ts):
        key = sid * (hi - lo + 2) + (ts - lo)
        if not (key[1:] >= key[:-1]).all():
            order = np.argsort(key, kind="stable")
            sid, ts, vals, stale, key = sid[order], ts[order], vals[order], stale[order], key[order]
        keep = np.ones(len(key), dtype=bool)
        keep[:-1] = key[1:] != key[:-1]  # last write wins
        if not keep.all():
            sid, ts, vals, stale = sid[keep], ts[keep], vals[keep], stale[keep]
    if len(sid) and sid[0] < 0:  # rows of series the index does not know (sorted first): drop
        first = int(np.searchsorted(sid, 0))
        sid, ts, vals, stale = sid[first:], ts[first:], vals[first:], stale[first:]
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]]) if len(sid) else np.empty(0, np.int64)
    labels: list[LabelSet] = [keys[known[r]].all_labels() for r in sid[starts].tolist()]
    off = np.append(starts, len(sid)).astype(np.int64)
    return labels, off, ts, vals, stale


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

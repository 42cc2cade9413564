"""Put the columns read from several sample sources in (series, time) order, last write winning.

``DuckDBStore.read_arrays`` reads each source (sealed days, unsealed days, the head) as it is stored
and hands the parts here, oldest source first. Each source is made of a few runs sorted by (series,
time) (DuckDB's parallel scan may hand them back in any order), so one stable sort of a composite
``series * span + time`` key, numpy's timsort, merges them in close to linear time; data already in
order is only checked. The stable sort keeps the write order of equal (series, time) rows, so the
last of them is the last write, and it is the one kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Columns = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _empty() -> Columns:
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, bool)


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def order_parts(parts: Sequence[Columns], rank: np.ndarray | None = None) -> Columns:
    """``(series, ts, value, stale)`` of all parts, sorted by (series, ts), duplicates resolved.

    ``series`` becomes ``rank[series]`` when ``rank`` is given; rows whose rank is negative are
    dropped. ``parts`` are in write order (a later part's row wins over an earlier one's).
    """
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return _empty()
    has_stale = any(bool(p[3].any()) for p in parts)
    sid = _cat([p[0] for p in parts])
    ts = _cat([p[1] for p in parts])
    vals = _cat([p[2] for p in parts])
    stale = _cat([p[3] for p in parts]) if has_stale else None
    if rank is not None:
        sid = rank[sid]
        if int(sid.min()) < 0:
            ok = sid >= 0
            sid, ts, vals = sid[ok], ts[ok], vals[ok]
            stale = stale[ok] if stale is not None else None
            if not len(sid):
                return _empty()
    if len(sid) > 1:
        sid, ts, vals, stale = _sorted(sid, ts, vals, stale)
    return sid, ts, vals, (stale if stale is not None else np.zeros(len(sid), dtype=bool))


def _sorted(
    sid: np.ndarray, ts: np.ndarray, vals: np.ndarray, stale: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    # comparisons only where possible: a large temporary int64 array costs more in first-touch page
    # faults than the arithmetic (see store/memory.py)
    same = sid[1:] == sid[:-1]
    ordered = bool((sid[1:] >= sid[:-1]).all()) and not bool((same & (ts[1:] < ts[:-1])).any())
    if not ordered:
        t0 = int(ts.min())
        span = int(ts.max()) - t0 + 2
        if int(sid.min()) >= 0 and (int(sid.max()) + 1) * span < 2**62:
            key = sid * span
            key += ts
            key -= t0
            # stable (a duplicate keeps its write order); numpy's timsort merges the sorted runs
            # the sources come in, so this is close to linear
            order = np.argsort(key, kind="stable")
        else:
            order = np.lexsort((ts, sid))  # stable too
        sid, ts, vals = sid[order], ts[order], vals[order]
        stale = stale[order] if stale is not None else None
        same = sid[1:] == sid[:-1]
    dup = same & (ts[1:] == ts[:-1])
    if bool(dup.any()):  # last write wins
        keep = np.append(~dup, True)
        sid, ts, vals = sid[keep], ts[keep], vals[keep]
        stale = stale[keep] if stale is not None else None
    return sid, ts, vals, stale

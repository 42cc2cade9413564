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
from typing import cast

import numpy as np

Columns = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
Packed = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
BLOCK_ROWS = 256  # (series, source) blocks this long on average are copied as slices, else row by row


def _empty() -> Columns:
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, bool)


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


class Ranges:
    """A part already sorted by (series, ts) without duplicates, as row ranges of its columns:
    series ``s`` is rows ``starts[s] : starts[s] + counts[s]`` (a read cache entry cut to a range
    without copying it)."""

    __slots__ = ("counts", "n", "stale", "starts", "ts", "vals")

    def __init__(
        self, ts: np.ndarray, vals: np.ndarray, stale: np.ndarray | None, starts: np.ndarray, counts: np.ndarray
    ) -> None:
        self.ts, self.vals, self.stale, self.starts, self.counts = ts, vals, stale, starts, counts
        self.n = int(counts.sum())

    @classmethod
    def of_sorted(cls, part: Columns) -> Ranges:
        """A part sorted by (series, ts) without duplicates, series numbered from 0, as ranges."""
        sid, ts, vals, stale = part
        counts = np.bincount(sid) if len(sid) else np.zeros(0, np.int64)
        return cls(ts, vals, stale if bool(stale.any()) else None, np.cumsum(counts) - counts, counts)

    def bounds(self) -> tuple[int, int]:
        has = self.counts > 0
        first = self.starts[has]
        return int(self.ts[first].min()), int(self.ts[first + self.counts[has] - 1].max())

    def columns(self) -> Columns:
        if not self.n:
            return _empty()
        has = np.flatnonzero(self.counts > 0)
        sid = np.repeat(has.astype(np.int64), self.counts[has])
        if len(has) == 1 or int(self.starts[has[-1]] + self.counts[has[-1]] - self.starts[has[0]]) == self.n:
            a = int(self.starts[has[0]])  # contiguous: one slice (copied: the cache keeps its arrays)
            sl = slice(a, a + self.n)
            stale = self.stale[sl].copy() if self.stale is not None else np.zeros(self.n, dtype=bool)
            return sid, self.ts[sl].copy(), self.vals[sl].copy(), stale
        idx = np.concatenate([np.arange(int(self.starts[s]), int(self.starts[s] + self.counts[s])) for s in has])
        stale = self.stale[idx] if self.stale is not None else np.zeros(self.n, dtype=bool)
        return sid, self.ts[idx], self.vals[idx], stale


Part = Columns | Ranges


def _size(p: Part) -> int:
    return p.n if isinstance(p, Ranges) else len(p[0])


def order_parts(parts: Sequence[Part], rank: np.ndarray | None = None) -> Columns:
    """``(series, ts, value, stale)`` of all parts, sorted by (series, ts), duplicates resolved.

    ``series`` becomes ``rank[series]`` when ``rank`` is given; rows whose rank is negative are
    dropped. ``parts`` are in write order (a later part's row wins over an earlier one's).
    """
    kept = [p for p in parts if _size(p)]
    if any(isinstance(p, Ranges) for p in kept):
        merged = _merge_ranges(kept) if rank is None else None
        if merged is not None:
            total, ts, vals, stale = merged
            return np.repeat(np.arange(len(total), dtype=np.int64), total), ts, vals, stale
        kept = [p.columns() if isinstance(p, Ranges) else p for p in kept]
    return _order_columns(cast(list[Columns], kept), rank)


def order_parts_packed(parts: Sequence[Part]) -> Packed:
    """:func:`order_parts` as ``(series, off, ts, value, stale)``: the series present, in order, and
    where each one's rows start (``off`` has one more entry, the row count), instead of a series
    number per row, which merged :class:`Ranges` never need to build."""
    kept = [p for p in parts if _size(p)]
    if any(isinstance(p, Ranges) for p in kept):
        merged = _merge_ranges(kept)
        if merged is not None:
            total, ts, vals, stale = merged
            present = np.flatnonzero(total)
            return present, np.concatenate([[0], np.cumsum(total[present])]).astype(np.int64), ts, vals, stale
    sid, ts, vals, stale = order_parts(kept)
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]]) if len(sid) else np.empty(0, np.int64)
    return sid[starts], np.append(starts, len(sid)).astype(np.int64), ts, vals, stale


def _merge_ranges(parts: Sequence[Part]) -> Columns | None:
    """Parts with disjoint increasing times, some of them :class:`Ranges`, merged series by series
    with one slice copy per (series, part): ``(rows per series number, ts, value, stale)``; None
    when they overlap or the blocks are short."""
    prev = None
    for p in parts:
        lo, hi = p.bounds() if isinstance(p, Ranges) else (int(p[1].min()), int(p[1].max()))
        if prev is not None and lo <= prev:
            return None
        prev = hi
    ranges: list[Ranges] = []
    for p in parts:
        if isinstance(p, Ranges):
            ranges.append(p)
            continue
        if int(p[0].min()) < 0:
            return None
        ranges.append(Ranges.of_sorted(sorted_part(p)))
    width = max(len(r.counts) for r in ranges)
    n = sum(r.n for r in ranges)
    counts = np.zeros((len(ranges), width), dtype=np.int64)
    for k, r in enumerate(ranges):
        counts[k, : len(r.counts)] = r.counts
    blocks = counts > 0
    if int(blocks.sum()) > n // BLOCK_ROWS + 16:
        return None
    total = counts.sum(axis=0)
    series_start = np.cumsum(total) - total
    before = np.cumsum(counts, axis=0) - counts
    ts = np.empty(n, dtype=np.int64)
    vals = np.empty(n, dtype=np.float64)
    stale = np.zeros(n, dtype=bool)
    for k, r in enumerate(ranges):
        to = (series_start + before[k]).tolist()
        src = r.starts.tolist()
        cnt = r.counts.tolist()
        rts, rv, rst = r.ts, r.vals, r.stale
        for s in np.flatnonzero(blocks[k]).tolist():
            a, c, m = src[s], to[s], cnt[s]
            ts[c : c + m] = rts[a : a + m]
            vals[c : c + m] = rv[a : a + m]
            if rst is not None:
                stale[c : c + m] = rst[a : a + m]
    return total, ts, vals, stale


def _order_columns(parts: Sequence[Columns], rank: np.ndarray | None = None) -> Columns:
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return _empty()
    if len(parts) > 1 and _disjoint(parts):
        numbered = [ranked(p, rank) for p in parts] if rank is not None else list(parts)
        numbered = [p for p in numbered if len(p[0])]
        if not numbered:
            return _empty()
        if len(numbered) > 1:
            ordered = []
            for p in numbered:
                if len(p[0]) > 1:
                    sid, ts, vals, stale = _sorted(p[0], p[1], p[2], p[3] if bool(p[3].any()) else None)
                    p = (sid, ts, vals, stale if stale is not None else np.zeros(len(sid), dtype=bool))
                ordered.append(p)
            out = _interleave(ordered)
            if out is not None:
                return out
        parts, rank = numbered, None
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


def sorted_part(p: Columns) -> Columns:
    """One part in (series, ts) order, duplicates resolved (the later row wins)."""
    if len(p[0]) <= 1:
        return p
    has_stale = bool(p[3].any())
    sid, ts, vals, stale = _sorted(p[0], p[1], p[2], p[3] if has_stale else None)
    return sid, ts, vals, (stale if stale is not None else np.zeros(len(sid), dtype=bool))


def _disjoint(parts: Sequence[Columns]) -> bool:
    """Each part's times all come after the previous part's (so no row of one can tie another's)."""
    prev = None
    for p in parts:
        lo, hi = int(p[1].min()), int(p[1].max())
        if prev is not None and lo <= prev:
            return False
        prev = hi
    return True


def ranked(p: Columns, rank: np.ndarray) -> Columns:
    """``p`` with its series numbered by ``rank``; rows whose rank is negative dropped."""
    sid = rank[p[0]]
    if int(sid.min()) < 0:
        ok = sid >= 0
        return sid[ok], p[1][ok], p[2][ok], p[3][ok]
    return sid, p[1], p[2], p[3]


def _interleave(parts: Sequence[Columns]) -> Columns | None:
    """Parts each sorted by (series, ts), with disjoint increasing times, merged: per series the
    first part's rows, then the second's... None when the series numbers are too sparse for counts."""
    n = sum(len(p[0]) for p in parts)
    width = max(int(p[0].max()) for p in parts) + 1
    if min(int(p[0].min()) for p in parts) < 0 or len(parts) * width > 2 * n + 65_536:
        return None  # the per-series counts would outweigh the rows
    counts = np.stack([np.bincount(p[0], minlength=width) for p in parts])
    total = counts.sum(axis=0)
    series_start = np.cumsum(total) - total
    before = np.cumsum(counts, axis=0) - counts  # a series' rows in the earlier parts
    sid = np.repeat(np.arange(width, dtype=np.int64), total)
    ts = np.empty(n, dtype=np.int64)
    vals = np.empty(n, dtype=np.float64)
    stale = np.zeros(n, dtype=bool)
    blocks = counts > 0
    if int(blocks.sum()) <= n // BLOCK_ROWS:  # long (series, part) blocks: copy each as a slice
        for k, p in enumerate(parts):
            in_part = np.cumsum(counts[k]) - counts[k]
            to = series_start + before[k]
            has_stale = bool(p[3].any())
            for s in np.flatnonzero(blocks[k]).tolist():
                a, c, m = int(in_part[s]), int(to[s]), int(counts[k, s])
                ts[c : c + m] = p[1][a : a + m]
                vals[c : c + m] = p[2][a : a + m]
                if has_stale:
                    stale[c : c + m] = p[3][a : a + m]
        return sid, ts, vals, stale
    for k, p in enumerate(parts):
        in_part = np.cumsum(counts[k]) - counts[k]  # where each series starts inside this part
        shift = series_start + before[k] - in_part
        dest = shift[p[0]]
        dest += np.arange(len(p[0]), dtype=np.int64)
        ts[dest] = p[1]
        vals[dest] = p[2]
        if bool(p[3].any()):
            stale[dest] = p[3]
    return sid, ts, vals, stale

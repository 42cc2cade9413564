"""Reading rollup buckets for exact PromQL answers (``sightglass.promql.rollup``).

A rollup bucket ``[ts, ts + width)`` keeps count, sum, min, max, the first and last values with their
times, the values before each drop inside it (``reset_sum``) and the number of duplicate timestamps.
Where a time span's rollup is complete it answers range functions over whole buckets exactly.

Which spans are complete (:func:`coverage`):

- ``1h``: every sealed day (the hourly rollup is written when a day is sealed and dropped when late
  data unseals it; it outlives the raw day), and every staged day whose stage keeps hourly buckets of
  its slices (``stage_rollups`` in the head file, see :mod:`sightglass.store.head`) and that has no
  sealed part in the main file;
- ``5m``: the days before the oldest raw day (the 5-minute rollup is written from the raw day when
  retention drops it; days without any data are trivially complete);
- neither covers another day with unsealed data (a stage in the head file) nor reaches past the
  oldest sample still in the head, which may be late data for a day already rolled up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from sightglass.store import head as _head

DAY_MS = 86_400_000
WIDTHS = {"1h": 3_600_000, "5m": 300_000}
_NEG = -(2**62)


def coverage(store: Any, resolution: str) -> list[tuple[int, int]]:
    """Half-open ``[lo, hi)`` time spans in which the ``resolution`` rollup is complete."""
    cur = store.cursor()
    try:
        row = cur.execute("SELECT min(ts) FROM samples_head").fetchone()
        head_min = int(row[0]) if row and row[0] is not None else 2**62
        # days with unsealed data (their stages in the head file): complete for 1h only where the
        # stage keeps buckets of its hours and the day has no sealed part
        staged = {_head.day_start(d) for d in _head.stage_days(cur)} if hasattr(store, "head_path") else set()
        if resolution == "1h":
            complete = {
                d
                for (k,) in cur.execute("SELECT key FROM meta WHERE key LIKE 'sealed:%'").fetchall()
                if (d := _head.day_start(k[len("sealed:") :])) not in staged
            }
            if staged:
                in_main = {t[len("samples_") :] for t in store.partitions()}
                complete |= {_head.day_start(d) for d in _head.rolled_days(cur) if d not in in_main}
            sealed = sorted(complete)
            spans: list[tuple[int, int]] = []
            for d in sealed:
                if spans and spans[-1][1] == d:
                    spans[-1] = (spans[-1][0], d + DAY_MS)
                else:
                    spans.append((d, d + DAY_MS))
        elif resolution == "5m":
            days = [_head.day_start(t[len("samples_") :]) for t in store.partitions()] + sorted(staged)
            spans = [(_NEG, min(days) if days else 2**62)]
        else:
            raise ValueError(f"unknown rollup resolution {resolution!r} (5m or 1h)")
    finally:
        cur.close()
    return [(lo, min(hi, head_min)) for lo, hi in spans if lo < min(hi, head_min)]


@dataclass(slots=True)
class Buckets:
    """Rollup rows sorted by (series, bucket start); ``sid`` as in ``read_arrays`` (rank if given)."""

    sid: np.ndarray
    ts: np.ndarray
    cnt: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    first: np.ndarray
    last: np.ndarray
    first_ts: np.ndarray
    last_ts: np.ndarray
    reset_sum: np.ndarray
    exact: bool  # False: some bucket lacks the exact columns, has duplicates or non-finite values

    def __len__(self) -> int:
        return len(self.sid)

    def take(self, rows: np.ndarray) -> Buckets:
        return _make([getattr(self, f)[rows] for f in _FIELDS], self.exact)

    @classmethod
    def of_samples(cls, sid: np.ndarray, ts: np.ndarray, v: np.ndarray) -> Buckets:
        """Raw samples as one-sample buckets starting at the sample."""
        one = np.ones(len(sid), dtype=np.int64)
        return cls(sid, ts, one, v, v, v, v, v, ts, ts, np.zeros(len(sid)), exact=True)

    @classmethod
    def concat(cls, parts: list[Buckets]) -> Buckets:
        """All parts, sorted by (series, start)."""
        cols = [np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS]
        order = np.lexsort((cols[1], cols[0]))
        return _make([c[order] for c in cols], all(p.exact for p in parts))


_FIELDS = ("sid", "ts", "cnt", "sum", "min", "max", "first", "last", "first_ts", "last_ts", "reset_sum")


def _make(c: list[np.ndarray], exact: bool) -> Buckets:
    return Buckets(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], exact=exact)


def read_buckets(
    store: Any, ids: np.ndarray, lo: int, hi: int, resolution: str, rank: np.ndarray | None = None
) -> Buckets:
    """Buckets of ``ids`` starting in ``[lo, hi)``."""
    width = WIDTHS[resolution]
    if resolution == "1h":
        times = "first_ts, last_ts"
    else:
        times = "ts + first_off AS first_ts, ts + last_off AS last_ts"
    cur = store.cursor()
    cur.register("_rids", pa.table({"id": pa.array(ids.astype(np.int32))}))
    try:
        cols = f"series_id, ts, cnt, sum, min, max, first, last, {times}, reset_sum, dups"
        source = f"rollup_{resolution}"
        if resolution == "1h" and hasattr(store, "head_path") and _head.rolled_days(cur):
            # staged hours' buckets; a day sealed but not yet dropped from the head has both, and its
            # repeated buckets make the answer go to raw samples (below)
            source = f"(SELECT {cols} FROM rollup_1h UNION ALL SELECT {cols} FROM {_head.ROLLUPS})"
        res = cur.sql(
            f"SELECT {cols} FROM {source} r SEMI JOIN _rids ON r.series_id = _rids.id "
            "WHERE ts >= $lo AND ts < $hi ORDER BY series_id, ts",
            params={"lo": lo, "hi": hi},
        ).to_arrow_table()
    finally:
        cur.unregister("_rids")
        cur.close()
    exact = all(res.column(c).null_count == 0 for c in res.column_names)
    col = {c: res.column(c).to_numpy(zero_copy_only=False) for c in res.column_names}
    sid = col["series_id"].astype(np.int64)
    ts = col["ts"].astype(np.int64)
    if exact and len(sid):
        exact = bool((col["dups"] == 0).all()) and bool(np.isfinite(col["sum"].astype(np.float64)).all())
        ft, lt = col["first_ts"].astype(np.int64), col["last_ts"].astype(np.int64)
        exact = exact and bool(((ft >= ts) & (lt >= ft) & (lt < ts + width)).all())
    if rank is not None and len(sid):
        sid = rank[sid]
        keep = sid >= 0
        order = np.lexsort((ts[keep], sid[keep]))
        idx = np.flatnonzero(keep)[order]
        sid, ts = sid[idx], ts[idx]
        col = {k: v[idx] for k, v in col.items()}
    if exact and len(sid) > 1:
        exact = not bool(((sid[1:] == sid[:-1]) & (ts[1:] == ts[:-1])).any())  # one row per bucket

    def f64(name: str) -> np.ndarray:
        return np.asarray(col[name], dtype=np.float64) if exact else np.empty(0)

    def i64(name: str) -> np.ndarray:
        return np.asarray(col[name], dtype=np.int64) if exact else np.empty(0, np.int64)

    if not exact:
        e, ei = np.empty(0), np.empty(0, np.int64)
        return Buckets(sid, ts, ei, e, e, e, e, e, ei, ei, e, exact=False)
    return Buckets(
        sid, ts, i64("cnt"), f64("sum"), f64("min"), f64("max"), f64("first"), f64("last"),
        i64("first_ts"), i64("last_ts"), f64("reset_sum"), exact=True,
    )  # fmt: skip

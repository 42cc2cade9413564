"""The read cache of decoded day tables (store/read_cache.py): reads through it are exactly the
uncached reads, before and after compaction, late data, re-sealing and retention change the tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sightglass.model import Matcher, SampleBatch, SeriesKey
from sightglass.promql.reader import ordered_ids
from sightglass.store.base import LimitExceeded
from sightglass.store.duckdb import DAY_MS, HOUR_MS, DuckDBStore, StoreOptions
from sightglass.store.read_cache import ReadCache

T0 = DAY_MS * 20_400  # a UTC midnight


def _rows(n_series: int, start: int, end: int, rng: np.random.Generator) -> SampleBatch:
    keys, sid, ts, vals = [], [], [], []
    for i in range(n_series):
        # labels whose order differs from the ids' (so the rank permutes series)
        keys.append(SeriesKey.of("m", {"node": f"n{(n_series - i) % 5}", "gpu": str(i)}))
        t = np.arange(start, end, 15_000, dtype=np.int64) + rng.integers(0, 40, 1 + (end - start - 1) // 15_000)
        t = t[t < end]
        sid.append(np.full(len(t), i))
        ts.append(t)
        vals.append(rng.normal(size=len(t)).round(3))
    return SampleBatch(keys, np.concatenate(sid), np.concatenate(ts), np.concatenate(vals))


def _both(s: DuckDBStore, lo: int, hi: int, limit: int | None = None) -> tuple[tuple[np.ndarray, ...], ...]:
    ids, _, lut = ordered_ids(s, [Matcher("__name__", "=", "m")])
    cached = s.read_arrays(ids, lo, hi, rank=lut, limit_samples=limit)
    again = s.read_arrays(ids, lo, hi, rank=lut, limit_samples=limit)
    _same(_packed(cached), s.read_packed_arrays(ids, lo, hi, rank=lut, limit_samples=limit))
    size, s._read_cache.max_bytes = s._read_cache.max_bytes, 0
    try:
        plain = s.read_arrays(ids, lo, hi, rank=lut, limit_samples=limit)
        _same(_packed(plain), s.read_packed_arrays(ids, lo, hi, rank=lut, limit_samples=limit))
    finally:
        s._read_cache.max_bytes = size
    return cached, again, plain


def _packed(cols: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """``read_arrays``' columns as ``read_packed_arrays`` gives them: series present, offsets, columns."""
    sid, ts, vals, stale = cols
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]]) if len(sid) else np.empty(0, np.int64)
    return sid[starts], np.append(starts, len(sid)), ts, vals, stale


def _same(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_cached_reads_equal_uncached_reads_as_the_tables_change(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    opts = StoreOptions(compact_every_s=10**9, retention_ms=3 * DAY_MS)
    with DuckDBStore(tmp_path, options=opts) as s:
        s.append(_rows(12, T0, T0 + DAY_MS + 7 * HOUR_MS + 1_000, rng))  # day 0 sealed, day 1 staged
        s.compact(force=False)
        assert len(s.partitions()) == 1 and s._delta_days and len(s.stats()["staged_days"]) == 1
        windows = [(T0 + 5 * HOUR_MS + 20 * 60_000 + 17, T0 + DAY_MS + 6 * HOUR_MS + 59_999),
                   (T0 + 30 * 60_000, T0 + 7 * HOUR_MS), (T0 + DAY_MS - 4 * HOUR_MS - 1, T0 + 2 * DAY_MS),
                   (T0 + 2 * HOUR_MS, T0 + 2 * HOUR_MS + 5 * 60_000)]  # fmt: skip
        for lo, hi in windows:
            cached, again, plain = _both(s, lo, hi)
            _same(cached, plain)
            _same(again, plain)
            assert len(plain[0]) and plain[1].min() >= lo and plain[1].max() <= hi
        assert s._read_cache.hits > 0 and 0 < s._read_cache.nbytes <= s._read_cache.max_bytes
        lo, hi = windows[0]
        before = _both(s, lo, hi)[2]

        # late data: a rewrite of a sealed sample (last write wins), new samples into the stage
        sid0 = int(np.flatnonzero(before[0] == 0)[3])
        t_rewrite = int(before[1][sid0])
        ids, known, lut = ordered_ids(s, [Matcher("__name__", "=", "m")])
        key = s.key_of(known[0])
        s.append(SampleBatch([key], np.array([0, 0]), np.array([t_rewrite, T0 + DAY_MS + 3 * HOUR_MS + 7]),
                             np.array([1234.5, -99.0])))  # fmt: skip
        s.append(_rows(12, T0 + DAY_MS + 7 * HOUR_MS + 1_000, T0 + DAY_MS + 10 * HOUR_MS, rng))
        s.compact(force=False)
        for lo, hi in windows:
            cached, again, plain = _both(s, lo, hi)
            _same(cached, plain)
            _same(again, plain)
        cached = _both(s, *windows[0])[0]
        at = np.flatnonzero((cached[0] == 0) & (cached[1] == t_rewrite))
        assert cached[2][at].tolist() == [1234.5]
        assert -99.0 in cached[2][(cached[0] == 0)].tolist()
        assert len(cached[0]) > len(before[0])

        # the limit counts the asked range (the rewritten sample twice), not the whole hours read
        exact = len(_both(s, *windows[0])[2][0]) + 1
        s._read_cache.clear()
        cached, _, plain = _both(s, *windows[0], limit=exact)
        _same(cached, plain)
        s._read_cache.clear()
        with pytest.raises(LimitExceeded):
            s.read_arrays(ids, *windows[0], rank=lut, limit_samples=exact - 2)

        # retention drops day 0: nothing of it is served from the cache afterwards
        _both(s, T0, T0 + 2 * DAY_MS)
        s.append(_rows(12, T0 + 4 * DAY_MS, T0 + 4 * DAY_MS + 2 * HOUR_MS, rng))
        s.compact(force=False)
        cached, again, plain = _both(s, T0, T0 + 5 * DAY_MS)
        _same(cached, plain)
        _same(again, plain)
        assert plain[1].min() >= T0 + DAY_MS


def test_cache_is_bounded_and_keeps_out_of_a_change() -> None:
    c = ReadCache(1000)
    part = (np.zeros(50, np.int64),)  # 400 bytes
    gen = c.generation()
    assert gen is not None
    c.put(gen, "a", part)
    c.put(gen, "b", part)
    c.put(gen, "c", part)  # over 1000 bytes: "a", the least recently used, goes
    assert c.get(gen, "a") is None and c.get(gen, "b") is not None and c.nbytes == 800
    c.put(gen, "big", (np.zeros(100, np.int64),))  # over half the size: not kept
    assert c.get(gen, "big") is None
    with c.changing():
        assert c.generation() is None and c.get(gen, "b") is None
        c.put(gen, "d", part)
    assert c.get(gen, "d") is None and c.nbytes == 0
    new = c.generation()
    assert new is not None and new != gen
    c.put(gen, "e", part)  # read under the old generation: never stored
    assert c.get(new, "e") is None

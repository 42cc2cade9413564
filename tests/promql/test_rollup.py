"""Range functions from rollup buckets (promql/rollup.py) answer as the raw samples do.

Two real stores get the same five days of data: one keeps every raw day, the other has a 2-day raw
retention, so its oldest days exist only as 5-minute rollups (and its sealed days also as hourly
ones). Every supported function at bucket-aligned steps must agree with the raw answer, including
counter resets, gaps, samples exactly on bucket edges, scrape jitter and series that start late.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sightglass.model import SampleBatch, SeriesKey
from sightglass.promql import rollup
from sightglass.promql.engine import Engine
from sightglass.promql.result import QueryResult
from sightglass.store.duckdb import DuckDBStore, StoreOptions

DAY = 86_400_000
HOUR = 3_600_000
T0 = 1_699_920_000_000  # a UTC midnight
DAYS = 5


def _data() -> SampleBatch:
    rng = np.random.default_rng(7)
    keys: list[SeriesKey] = []
    sidx, tss, vals = [], [], []

    def add(key: SeriesKey, ts: np.ndarray, v: np.ndarray) -> None:
        sidx.append(np.full(len(ts), len(keys), dtype=np.int64))
        keys.append(key)
        tss.append(ts)
        vals.append(v)

    grid = T0 + np.arange(0, DAYS * DAY - 30 * 60_000, 15_000, dtype=np.int64)  # on every bucket edge
    n = len(grid)
    for i in range(2):
        inc = rng.integers(0, 50, n).astype(float)
        c = np.cumsum(inc)
        for r in rng.integers(0, n, 6):  # counter resets
            c[r:] -= c[r] - rng.integers(0, 5)
        add(SeriesKey.of("req_total", {"i": str(i)}), grid, c)
    add(SeriesKey.of("temp", {"i": "0"}), grid, np.round(40 + rng.normal(0, 3, n), 2))
    add(SeriesKey.of("temp", {"i": "neg"}), grid, np.round(rng.normal(0, 3, n), 2))  # mixed signs
    jit = grid + rng.integers(-2000, 2000, n)
    keep = rng.random(n) > 0.1  # gaps
    add(SeriesKey.of("temp", {"i": "jitter"}), jit[keep], np.round(30 + rng.normal(0, 1, n)[keep], 1))
    late = grid[grid >= T0 + DAY + 7 * HOUR + 5 * 60_000]  # starts mid-day, on an edge
    add(SeriesKey.of("req_total", {"i": "late"}), late, np.arange(len(late), dtype=float))
    return SampleBatch(keys, np.concatenate(sidx), np.concatenate(tss), np.concatenate(vals))


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBStore, DuckDBStore]]:
    batch = _data()
    full = DuckDBStore(tmp_path_factory.mktemp("full"), options=StoreOptions(compact_every_s=10**9))
    short = DuckDBStore(
        tmp_path_factory.mktemp("short"), options=StoreOptions(compact_every_s=10**9, retention_ms=2 * DAY)
    )
    for s in (full, short):
        s.append(batch)
        s.compact(force=False)
    assert [p[-8:] for p in short.partitions()] == [p[-8:] for p in full.partitions()][2:]
    yield full, short
    full.close()
    short.close()


def _bucket_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make every rollup bucket read append its number of buckets to the returned list."""
    used: list[int] = []
    real = rollup.read_buckets

    def spy(*a: object, **k: object) -> object:
        b = real(*a, **k)  # type: ignore[arg-type]
        used.append(len(b))
        return b

    monkeypatch.setattr(rollup, "read_buckets", spy)
    return used


def _same(a: QueryResult, b: QueryResult) -> None:
    assert [s.labels for s in a.matrix] == [s.labels for s in b.matrix]
    for x, y in zip(a.matrix, b.matrix, strict=True):
        assert np.array_equal(x.ts_ms, y.ts_ms), x.labels
        np.testing.assert_allclose(x.values, y.values, rtol=1e-9, atol=1e-9, err_msg=str(x.labels))


QUERIES = [
    "rate(req_total[{r}])", "increase(req_total[{r}])", "delta(temp[{r}])", "count_over_time(temp[{r}])",
    'sum_over_time(temp{{i!="neg"}}[{r}])', 'avg_over_time(temp{{i!="neg"}}[{r}])', "min_over_time(temp[{r}])",
    "max_over_time(temp[{r}])", "last_over_time(temp[{r}])", "present_over_time(req_total[{r}])",
    "sum by (i) (rate(req_total[{r}] offset {r}))",
]  # fmt: skip


@pytest.mark.parametrize("q", QUERIES)
def test_five_minute_rollups_answer_days_past_raw_retention(
    stores: tuple[DuckDBStore, DuckDBStore], q: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    full, short = stores
    used = _bucket_reads(monkeypatch)
    for r in ("5m", "15m", "1h"):
        query = q.format(r=r)
        # days 0-1 exist only as rollups in the short store; the range runs on into raw day 2
        start, end = T0 + 2 * HOUR, T0 + 2 * DAY + 3 * HOUR
        want = Engine(full, use_rollups=False).range(query, start, end, 300_000)
        got = Engine(short).range(query, start, end, 300_000)
        _same(got, want)
    assert used and all(n > 0 for n in used)
    # without rollups the short store knows nothing of those days
    assert Engine(short, use_rollups=False).range(q.format(r="5m"), T0, T0 + DAY, 300_000).matrix == []


def test_sums_over_values_of_both_signs_stay_on_raw_samples(stores: tuple[DuckDBStore, DuckDBStore]) -> None:
    # bucket sums add in another order than Prometheus' Kahan sum; with cancellation that could
    # differ beyond the tolerance, so such selectors are answered from raw samples only
    full, short = stores
    q = ('sum_over_time(temp{i="neg"}[5m])', T0 + 2 * HOUR, T0 + 2 * DAY + 3 * HOUR, 300_000)
    assert len(Engine(short).range(*q).matrix[0].ts_ms) < len(Engine(full).range(*q).matrix[0].ts_ms)
    _same(Engine(full).range(*q), Engine(full, use_rollups=False).range(*q))


@pytest.mark.parametrize("q", QUERIES)
def test_hourly_rollups_answer_sealed_days_at_hour_steps(stores: tuple[DuckDBStore, DuckDBStore], q: str) -> None:
    full, _ = stores
    for r in ("1h", "3h"):
        query = q.format(r=r)
        start, end = T0 + 5 * HOUR, T0 + DAYS * DAY
        want = Engine(full, use_rollups=False).range(query, start, end, HOUR)
        _same(Engine(full).range(query, start, end, HOUR), want)
        # an instant query on an hour mark too
        a = Engine(full).instant(query, T0 + 3 * DAY)
        b = Engine(full, use_rollups=False).instant(query, T0 + 3 * DAY)
        assert [(s.labels, s.ts_ms) for s in a.vector] == [(s.labels, s.ts_ms) for s in b.vector]
        assert all(math.isclose(x.value, y.value, rel_tol=1e-9) for x, y in zip(a.vector, b.vector, strict=True))


def test_hourly_rollups_are_used_and_unaligned_steps_are_not(
    stores: tuple[DuckDBStore, DuckDBStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    full, _ = stores
    used: list[str] = []
    real = rollup.read_buckets

    def spy(store: object, ids: object, lo: int, hi: int, resolution: str, rank: object = None) -> object:
        used.append(resolution)
        return real(store, ids, lo, hi, resolution, rank=rank)  # type: ignore[arg-type]

    monkeypatch.setattr(rollup, "read_buckets", spy)
    Engine(full).range("rate(req_total[1h])", T0 + DAY, T0 + 3 * DAY, HOUR)
    assert used == ["1h"]
    used.clear()
    Engine(full).range("rate(req_total[1h])", T0 + DAY + 60_000, T0 + 3 * DAY, HOUR)  # steps off the hour
    Engine(full).range("rate(req_total[50m])", T0 + DAY, T0 + 3 * DAY, HOUR)  # not whole buckets
    Engine(full).range("quantile_over_time(0.5, temp[1h])", T0 + DAY, T0 + 3 * DAY, HOUR)  # unsupported
    assert used == []


def test_late_sample_for_a_rolled_up_day_sends_reads_back_to_raw(tmp_path: Path) -> None:
    rows = [("m_total", {}, T0 + k * 15_000, float(k)) for k in range(2 * 24 * 240)]
    with DuckDBStore(tmp_path, options=StoreOptions(compact_every_s=10**9)) as s:
        s.append(SampleBatch.from_rows(rows))
        s.compact()
        q = ("increase(m_total[1h])", T0 + HOUR, T0 + DAY, HOUR)
        before = Engine(s).range(*q)
        # a late sample lands in the head for the sealed first day: the rollup no longer covers it
        s.append(SampleBatch.from_rows([("m_total", {}, T0 + 5 * HOUR + 7_000, 1e6)]))
        after = Engine(s).range(*q)
        _same(after, Engine(s, use_rollups=False).range(*q))
        assert before.matrix[0].values.tolist() != after.matrix[0].values.tolist()
        for force in (False, True):  # the late row moves on (a stage of the head file), the day reseals
            s.compact(force=force)
            _same(Engine(s).range(*q), Engine(s, use_rollups=False).range(*q))


def test_buckets_with_nan_or_duplicates_fall_back_to_raw(tmp_path: Path) -> None:
    rows = [("g", {"k": "nan"}, T0 + k * 15_000, math.nan if k == 100 else 1.0) for k in range(24 * 240)]
    rows += [("g", {"k": "dup"}, T0 + (k // 2) * 15_000, float(k)) for k in range(2 * 24 * 240)]
    with DuckDBStore(tmp_path, options=StoreOptions(compact_every_s=10**9)) as s:
        s.append(SampleBatch.from_rows(rows))
        s.append(SampleBatch.from_rows([("g", {"k": "x"}, T0 + DAY + 1, 1.0)]))
        s.compact()
        for k in ("nan", "dup"):
            q = (f'sum_over_time(g{{k="{k}"}}[1h])', T0 + HOUR, T0 + DAY, HOUR)
            a, b = Engine(s).range(*q), Engine(s, use_rollups=False).range(*q)
            assert [x.labels for x in a.matrix] == [x.labels for x in b.matrix]
            np.testing.assert_array_equal(a.matrix[0].values, b.matrix[0].values)  # NaN where raw has NaN


def test_staged_hours_are_answered_from_their_buckets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a day still open (its hours in a stage of the head file) is answered from the stage's hourly
    # buckets, also after late slices for hours already staged, and after a reopen of a store whose
    # stage was written without buckets
    rng = np.random.default_rng(3)
    ts = T0 + np.arange(0, 20 * HOUR, 15_000, dtype=np.int64)
    c = np.cumsum(rng.integers(0, 9, len(ts)).astype(float))
    c[len(c) // 3 :] -= c[len(c) // 3] - 2  # a reset
    batch = SampleBatch(
        [SeriesKey.of("c_total", {}), SeriesKey.of("g", {})],
        np.repeat(np.arange(2), len(ts)), np.tile(ts, 2), np.concatenate([c, np.round(rng.normal(50, 5, len(ts)), 2)]),
    )  # fmt: skip
    used = _bucket_reads(monkeypatch)
    qs = ["increase(c_total[1h])", "rate(c_total[3h])", "max_over_time(g[1h])", "avg_over_time(g[2h])",
          "count_over_time(g[1h])", "last_over_time(c_total[1h])"]  # fmt: skip

    def check() -> None:
        for q in qs:
            used.clear()
            args = (q, T0 + 3 * HOUR, T0 + 20 * HOUR, HOUR)
            _same(Engine(s).range(*args), Engine(s, use_rollups=False).range(*args))
            assert used and used[0] > 0, q

    with DuckDBStore(tmp_path, options=StoreOptions(compact_every_s=10**9)) as s:
        s.append(batch)
        s.compact(force=False)  # hours 0-17 to the stage, the rest stays in the head
        assert s.partitions() == [] and s.cursor().execute("SELECT count(*) FROM sg_head.stage_rollups").fetchone() == (36,)
        check()
        # late data for staged hours: a drop in hour 4 and a duplicate timestamp in hour 6
        late = [("c_total", {}, T0 + 4 * HOUR + 7_000, 1.0), ("g", {}, int(ts[6 * 240]), 99.0)]
        s.append(SampleBatch.from_rows(late))
        check()  # in the head: those hours come from raw samples
        s.compact(force=False)
        check()
        cur = s.cursor()
        cur.execute("DELETE FROM sg_head.stage_rollups")
        cur.execute("DELETE FROM sg_head.head_meta WHERE key LIKE 'stage_rollup:%'")
    with DuckDBStore(tmp_path, options=StoreOptions(compact_every_s=10**9)) as s:
        assert s.cursor().execute("SELECT count(*) FROM sg_head.stage_rollups").fetchone() == (36,)
        check()
        s.compact()  # sealed: the day's buckets are rollup_1h's now, the stage's are gone
        assert s.cursor().execute("SELECT count(*) FROM sg_head.stage_rollups").fetchone() == (0,)
        check()

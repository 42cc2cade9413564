from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sightglass.model import Matcher, MetricMetadata, MetricType, SampleBatch, SampleBatchBuilder, SeriesKey
from sightglass.store.base import LimitExceeded, StoreError
from sightglass.store.duckdb import DAY_MS, MIGRATIONS, DuckDBStore, StoreOptions
from sightglass.store.duckdb import HOUR_MS as HOUR


def _batch(n_series: int, n_samples: int, t0: int = 1_700_000_000_000, step: int = 10_000) -> SampleBatch:
    b = SampleBatchBuilder()
    for j in range(n_samples):
        for i in range(n_series):
            b.add(
                SeriesKey.of("gpu_temp", {"node": f"n{i // 8}", "gpu": str(i % 8)}),
                t0 + j * step,
                float(i + j),
            )
    return b.build()


def test_append_and_select_by_every_matcher_kind(store: DuckDBStore) -> None:
    res = store.append(_batch(16, 3))
    assert res.samples_written == 48 and res.new_series == 16
    t0 = 1_700_000_000_000
    got = store.select([Matcher("__name__", "=", "gpu_temp"), Matcher("node", "=", "n1")], t0, t0 + 60_000)
    assert sorted(s.key.label_dict()["gpu"] for s in got) == [str(i) for i in range(8)]
    assert all(len(s) == 3 for s in got)
    got = store.select([Matcher("gpu", "=~", "[01]"), Matcher("node", "!=", "n0")], t0, t0 + 60_000)
    assert {(s.key.label_dict()["node"], s.key.label_dict()["gpu"]) for s in got} == {
        ("n1", "0"),
        ("n1", "1"),
    }
    got = store.select([Matcher("__name__", "=", "gpu_temp"), Matcher("gpu", "!~", "[0-6]")], t0, t0)
    assert len(got) == 2 and all(
        s.values[0] == float(int(s.key.label_dict()["gpu"]) + 8 * int(s.key.label_dict()["node"][1:]))
        for s in got
    )
    # a missing label matches the empty string
    assert len(store.select([Matcher("__name__", "=", "gpu_temp"), Matcher("rack", "=", "")], t0, t0)) == 16
    assert store.select([Matcher("__name__", "=", "gpu_temp"), Matcher("rack", "!=", "")], t0, t0) == []


def test_regex_is_fully_anchored(store: DuckDBStore) -> None:
    store.append(SampleBatch.from_rows([("m", {"a": "foobar"}, 1, 1.0), ("m", {"a": "foo"}, 1, 2.0)]))
    got = store.select([Matcher("a", "=~", "foo")], 0, 10)
    assert [s.key.label_dict()["a"] for s in got] == ["foo"]


def test_time_range_is_inclusive_and_compaction_keeps_data(store: DuckDBStore) -> None:
    store.append(_batch(4, 10))
    t0 = 1_700_000_000_000
    before = store.select([Matcher("__name__", "=", "gpu_temp")], t0 + 10_000, t0 + 30_000)
    assert all(list(s.ts_ms) == [t0 + 10_000, t0 + 20_000, t0 + 30_000] for s in before)
    moved = store.compact()
    assert moved == 40
    st_ = store.stats()
    assert st_["head_samples"] == 0 and st_["compacted_samples"] == 40
    after = store.select([Matcher("__name__", "=", "gpu_temp")], t0 + 10_000, t0 + 30_000)
    assert [(s.key, list(s.ts_ms), list(s.values)) for s in after] == [
        (s.key, list(s.ts_ms), list(s.values)) for s in before
    ]


def test_duplicates_last_write_wins_and_out_of_order_accepted(store: DuckDBStore) -> None:
    store.append(SampleBatch.from_rows([("m", {}, 2000, 2.0), ("m", {}, 1000, 1.0)]))
    store.append(SampleBatch.from_rows([("m", {}, 2000, 5.0)]))
    (s,) = store.select([Matcher("__name__", "=", "m")], 0, 5000)
    assert list(s.ts_ms) == [1000, 2000] and list(s.values) == [1.0, 5.0]
    store.compact()
    store.append(SampleBatch.from_rows([("m", {}, 1000, 7.0)]))  # rewrite into a compacted range
    (s,) = store.select([Matcher("__name__", "=", "m")], 0, 5000)
    assert list(s.values) == [7.0, 5.0]


def test_nan_inf_and_stale_markers_are_distinct(store: DuckDBStore) -> None:
    b = SampleBatchBuilder()
    k = SeriesKey.of("m", {"x": "1"})
    b.add(k, 1000, math.nan)
    b.add(k, 2000, math.inf)
    b.add(k, 3000, -math.inf)
    b.add(k, 4000, 0.0, stale=True)
    store.append(b.build())
    for _ in range(2):
        (s,) = store.select([Matcher("x", "=", "1")], 0, 10_000)
        assert math.isnan(s.values[0]) and not s.stale[0]
        assert s.values[1] == math.inf and s.values[2] == -math.inf
        assert list(s.stale) == [False, False, False, True]
        store.compact()


def test_reopen_keeps_series_dictionary_and_ids(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path) as s:
        s.append(_batch(8, 2))
        ids = dict(s.index.ids)
    with DuckDBStore(tmp_path) as s:
        assert dict(s.index.ids) == ids
        r = s.append(_batch(8, 1, t0=1_800_000_000_000))
        assert r.new_series == 0
        s.append(SampleBatch.from_rows([("other", {}, 1, 1.0)]))
        assert s.index.ids[SeriesKey("other", ())] == len(ids)


def test_read_only_open_sees_data_and_refuses_writes(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path) as s:
        s.append(_batch(2, 2))
    with DuckDBStore(tmp_path, read_only=True) as ro:
        assert len(ro.select([Matcher("__name__", "=", "gpu_temp")], 0, 2**62)) == 2
        with pytest.raises(StoreError, match="read-only"):
            ro.append(_batch(1, 1))


def test_missing_data_dir_read_only_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no Sightglass data"):
        DuckDBStore(tmp_path / "nope", read_only=True)


def test_new_series_limit_rejects_only_that_batch(store: DuckDBStore) -> None:
    with pytest.raises(LimitExceeded, match="over the limit of 5"):
        store.append(_batch(8, 1), max_new_series=5)
    assert store.select([Matcher("__name__", "=", "gpu_temp")], 0, 2**62) == []
    store.append(_batch(4, 1), max_new_series=5)
    assert len(store.select([Matcher("__name__", "=", "gpu_temp")], 0, 2**62)) == 4


def test_concurrent_writers_are_group_committed(store: DuckDBStore) -> None:
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for j in range(20):
                store.append(SampleBatch.from_rows([("w", {"w": str(w)}, 1000 * j, float(j))]))
        except BaseException as e:  # pragma: no cover - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = store.select([Matcher("__name__", "=", "w")], 0, 10**9)
    assert len(got) == 8 and all(len(s) == 20 for s in got)


def test_labels_values_series_and_metadata(store: DuckDBStore) -> None:
    b = _batch(16, 1)
    b.metadata["gpu_temp"] = MetricMetadata("gpu_temp", MetricType.GAUGE, "GPU temperature", "celsius")
    store.append(b)
    store.append(SampleBatch.from_rows([("late", {"zone": "z"}, 5_000_000_000_000, 1.0)]))
    assert store.label_names() == ["__name__", "gpu", "node", "zone"]
    assert store.label_values("node") == ["n0", "n1"]
    assert store.label_values("__name__") == ["gpu_temp", "late"]
    assert store.label_names([[Matcher("__name__", "=", "late")]]) == ["__name__", "zone"]
    assert store.label_values("__name__", start_ms=4_000_000_000_000) == ["late"]
    assert len(store.series([[Matcher("node", "=", "n0")], [Matcher("zone", "=", "z")]])) == 9
    assert store.metadata()["gpu_temp"][0].unit == "celsius"


def test_rollups_have_counts_extremes_and_reset_adjusted_increase(store: DuckDBStore) -> None:
    rows = [("c_total", {}, 60_000 * 10 + 10_000 + i * 10_000, v) for i, v in enumerate([1, 2, 3, 1, 2, 3])]
    store.append(SampleBatch.from_rows(rows))
    store.compact()
    sid = store.select_ids([Matcher("__name__", "=", "c_total")])
    tbl = store.read_rollup(sid, 0, 10**9, "1h").to_pylist()
    assert [r["cnt"] for r in tbl] == [6] and tbl[0]["first"] == 1 and tbl[0]["first_ts"] == 610_000
    assert tbl[0]["inc"] == 5  # increases 1,1 then a reset to 1 (counts 1), then 1,1
    # while the raw day exists it answers every query: no 5-minute rollup beside it
    assert store.read_rollup(sid, 0, 10**9, "5m").num_rows == 0
    store.append(SampleBatch.from_rows([("c_total", {}, 60_000 * 16 + 10_000, 9.0)]))
    store.compact()
    # the late sample unsealed the day; sealing it again recomputed its rollup across the whole day
    tbl = store.read_rollup(sid, 0, 10**9, "1h").to_pylist()
    assert [r["cnt"] for r in tbl] == [7] and tbl[0]["inc"] == 11 and tbl[0]["last"] == 9
    # a sample 20 days on pushes the day out of the 15-day retention: its 5-minute rollup is made then
    store.append(SampleBatch.from_rows([("c_total", {}, 20 * 86_400_000, 10.0)]))
    store.compact()
    assert store.select([Matcher("__name__", "=", "c_total")], 0, 10**9) == []
    tbl = store.read_rollup(sid, 0, 10**9, "5m").to_pylist()
    assert [r["ts"] for r in tbl] == [600_000, 900_000]  # buckets are [start, start + 5m), named by their start
    assert [r["cnt"] for r in tbl] == [6, 1]
    assert tbl[0]["min"] == 1 and tbl[0]["max"] == 3 and tbl[0]["last"] == 3 and tbl[0]["sum"] == 12
    assert tbl[0]["inc"] == 5
    assert tbl[1]["inc"] == 6 and tbl[1]["last"] == 9  # the reset-adjusted increase crosses buckets
    assert store.read_rollup(sid, 0, 10**9, "1h").num_rows == 1  # the hourly rollup stays


def test_retention_drops_whole_days_counting_from_newest_sample(tmp_path: Path) -> None:
    opts = StoreOptions(retention_ms=2 * DAY_MS, compact_every_s=3600)
    with DuckDBStore(tmp_path, options=opts) as s:
        for day in range(5):
            s.append(SampleBatch.from_rows([("m", {}, day * DAY_MS + 1000, float(day))]))
        s.compact()
        (series,) = s.select([Matcher("__name__", "=", "m")], 0, 10 * DAY_MS)
        assert list(series.values) == [2.0, 3.0, 4.0]


def test_schema_version_and_newer_schema_refused(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path) as s:
        assert s.schema_version() >= 1
        s.cursor().execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer than this Sightglass"):
        DuckDBStore(tmp_path)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b_total", "c:d"]),
            st.dictionaries(st.sampled_from(["x", "y", "z"]), st.text(min_size=1, max_size=8), max_size=3),
            st.integers(min_value=0, max_value=5 * DAY_MS),
            st.floats(allow_nan=False),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_roundtrip_property(tmp_path_factory: pytest.TempPathFactory, rows: list) -> None:  # type: ignore[type-arg]
    expected: dict[tuple[SeriesKey, int], float] = {}
    for m, lab, ts, v in rows:
        expected[(SeriesKey.of(m, lab), ts)] = v  # last write wins
    with DuckDBStore(tmp_path_factory.mktemp("p"), options=StoreOptions(retention_ms=10**14)) as s:
        s.append(SampleBatch.from_rows(rows))
        for compact in (False, True):
            if compact:
                s.compact()
            got = {}
            for sd in s.select([Matcher("__name__", "=~", ".+")], 0, 10**13):
                for t, v in zip(sd.ts_ms, sd.values, strict=True):
                    got[(sd.key, int(t))] = float(v)
            assert got == expected


def test_select_ids_is_vectorised_over_many_series(store: DuckDBStore) -> None:
    b = _batch(4000, 1)
    store.append(b)
    ids = store.select_ids([Matcher("gpu", "=", "3"), Matcher("node", "=~", "n1.*")])
    assert np.all(np.diff(ids) > 0)
    assert len(ids) == len([n for n in range(500) if str(n).startswith("1")])


def test_big_backfill_compacts_as_it_goes(tmp_path: Path) -> None:
    opts = StoreOptions(compact_every_s=3600, head_max_rows=2000, head_ms=600_000)
    n = 16 * 6 * 180
    with DuckDBStore(tmp_path, options=opts) as s:
        for j in range(180):  # 3 hours of 16 series at 10 s, written in 1-minute batches
            s.append(_batch(16, 6, t0=1_699_999_200_000 + j * 60_000))
        st_ = s.stats()
        assert st_["compacted_samples"] > 0 and st_["head_samples"] < n
        assert st_["head_samples"] + st_["compacted_samples"] == n
        assert 0 <= st_["used_bytes"] <= st_["file_bytes"]
        got = s.select([Matcher("__name__", "=", "gpu_temp")], 0, 2**62)
        assert sum(len(x) for x in got) == n


def test_closed_days_are_sealed_sorted_with_rollups(tmp_path: Path) -> None:
    opts = StoreOptions(compact_every_s=3600, head_ms=HOUR, retention_ms=10 * DAY_MS)
    with DuckDBStore(tmp_path, options=opts) as s:
        # day 1 arrives in hourly batches (arrival order interleaves series), then day 2 starts
        for h in range(26):
            s.append(_batch(4, 360, t0=DAY_MS * 20_000 + h * HOUR, step=10_000))
        s._compact(s.cursor(), force=False)
        cur = s.cursor()
        assert cur.execute("SELECT key FROM meta WHERE key LIKE 'sealed:%'").fetchall() == [
            ("sealed:" + s.partitions()[0][8:],)
        ]
        day = s.partitions()[0][8:]
        rows = cur.execute(f"SELECT series_id, ts FROM ({s._absolute_sql(day)})").fetchall()
        assert rows == sorted(rows) and len(rows) == 4 * 360 * 24
        # sealed with per-series timestamp deltas: regular 10-s scrapes are one constant gap
        assert cur.execute(f"SELECT DISTINCT dt FROM samples_{day}").fetchall() == [(10_000,)]
        assert cur.execute(f"SELECT count(*), sum(n) FROM tsbase_{day}").fetchone() == (4 * 24, 4 * 360 * 24)
        assert s.read_rollup(np.arange(4), 0, 2**62, "1h").num_rows == 4 * 24  # buckets [h, h+1h) inside the day
        assert s.stats()["head_samples"] > 0  # the newest hour stays in the head


def test_compaction_after_a_crash_with_a_wal(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import os, sys\nfrom sightglass.model import SampleBatch\nfrom sightglass.store.duckdb import DuckDBStore\n"
        "s = DuckDBStore(sys.argv[1])\ns.append(SampleBatch.from_rows([('m', {}, 1000, 1.0)]))\nos._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    with DuckDBStore(tmp_path) as s:
        assert s.compact() == 1
        assert s.stats()["wal_bytes"] == 0


def _day_rows(n_series: int, t0: int, rng: np.random.Generator) -> list[tuple[str, dict[str, str], int, float]]:
    rows = []
    for k in range(n_series):
        # jittered scrapes, a gap of 40 minutes, a lone sample in another hour, duplicates
        ts = t0 + np.arange(0, 6 * 3600, 10) * 1000 + rng.integers(-40, 40, 6 * 360)
        ts = ts[(ts < t0 + 2 * HOUR) | (ts > t0 + 2 * HOUR + 40 * 60_000)]
        ts = np.append(ts, [t0 + 9 * HOUR + 123, t0 + 9 * HOUR + 123])
        rows += [("m", {"k": str(k)}, int(t), float(i)) for i, t in enumerate(ts)]
    return rows


def test_sealed_delta_layout_reads_back_exactly_in_any_window(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    t0 = DAY_MS * 20_100 + 5_000
    rows = _day_rows(5, t0, rng)
    rows.append(("m", {"k": "0"}, t0 + 3 * HOUR + 10_000, math.nan))  # a value that is NaN, not a stale marker
    opts = StoreOptions(compact_every_s=3600, retention_ms=10 * DAY_MS)
    with DuckDBStore(tmp_path, options=opts) as s:
        s.append(SampleBatch.from_rows(rows))
        # a stale marker in the middle of an hour
        s.append(
            SampleBatch(
                [SeriesKey.of("m", {"k": "1"})], np.array([0]), np.array([t0 + 4 * HOUR + 1]),
                np.array([0.0]), stale=np.array([True]),
            )
        )
        s.compact()
        day = s.partitions()[0][8:]
        assert day in s._delta_days
        expected: dict[tuple[str, int], float] = {}
        for _, lab, t, v in rows:
            expected[(lab["k"], t)] = v
        for lo, hi in [(0, 2**50), (t0 + HOUR + 17, t0 + 3 * HOUR - 5), (t0 + 2 * HOUR + 1, t0 + 2 * HOUR + 2_000_000),
                       (t0 + 9 * HOUR + 123, t0 + 9 * HOUR + 123), (t0 + 23 * HOUR, t0 + 30 * HOUR)]:  # fmt: skip
            got = {}
            for sd in s.select([Matcher("__name__", "=", "m")], lo, hi):
                assert (np.diff(sd.ts_ms) > 0).all()
                for t, v, st_ in zip(sd.ts_ms, sd.values, sd.stale, strict=True):
                    if st_:
                        assert sd.key.labels == (("k", "1"),) and int(t) == t0 + 4 * HOUR + 1
                        continue
                    got[(dict(sd.key.labels)["k"], int(t))] = float(v)
            want = {k: v for k, v in expected.items() if lo <= k[1] <= hi}
            assert got.keys() == want.keys()
            assert all(got[k] == want[k] or (math.isnan(got[k]) and math.isnan(want[k])) for k in want)
        assert len(s.series([[Matcher("__name__", "=", "m")]], t0 + 2 * HOUR + 50 * 60_000, t0 + 2 * HOUR + 51 * 60_000)) == 5
        assert s.series([[Matcher("__name__", "=", "m")]], t0 + 20 * HOUR, t0 + 21 * HOUR) == []
        with pytest.raises(LimitExceeded, match="over the limit of 100"):
            s.read_ids(s.select_ids([Matcher("__name__", "=", "m")]), 0, 2**50, limit_samples=100)
        # late data for the sealed day goes back to plain timestamps, and is sealed again with deltas
        s.append(SampleBatch.from_rows([("m", {"k": "0"}, t0 + 12 * HOUR, 42.0)]))
        s.compact()
        assert day in s._delta_days
        (sd,) = s.select([Matcher("k", "=", "0")], t0 + 11 * HOUR, t0 + 13 * HOUR)
        assert list(sd.ts_ms) == [t0 + 12 * HOUR] and list(sd.values) == [42.0]
    with DuckDBStore(tmp_path, read_only=True) as ro:  # reopened: the layout is found again
        assert day in ro._delta_days
        assert sum(len(x) for x in ro.select([Matcher("__name__", "=", "m")], 0, 2**50)) == len(expected) + 2


def test_a_plain_sealed_day_from_an_older_file_stays_readable(tmp_path: Path) -> None:
    t0 = DAY_MS * 20_200
    rows = [("m", {"k": str(k)}, t0 + j * 10_000, float(j)) for k in range(3) for j in range(100)]
    with DuckDBStore(tmp_path) as s:
        s.append(SampleBatch.from_rows(rows))
        s.compact()
        day = s.partitions()[0][8:]
        cur = s.cursor()
        s._to_plain_layout(cur, day)  # what schema version 1 left behind
        cur.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with DuckDBStore(tmp_path) as s:
        assert s.schema_version() == len(MIGRATIONS) and day not in s._delta_days
        got = s.select([Matcher("__name__", "=", "m")], t0 + 50_000, t0 + 150_000)
        assert [list(x.values) for x in got] == [[5.0, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]] * 3


def test_read_arrays_with_a_rank_over_a_sealed_day_a_stage_and_the_head(tmp_path: Path) -> None:
    # a sealed day (delta layout), the next day's stage, the head; the rank reverses the series and
    # leaves one out: the rows equal the unranked read, renumbered and filtered
    day0 = 1_700_006_400_000  # a UTC midnight
    with DuckDBStore(tmp_path, options=StoreOptions(retention_ms=10**14, compact_every_s=10**9)) as s:
        s.append(_batch(6, 8640 + 1500, t0=day0))  # a day and ~4 hours at 10 s
        s.append(_batch(6, 3, t0=day0 + 3_000))  # off-grid samples in the first minute, written later
        s.compact(force=False)
        assert s.partitions() and s.count("samples_head")
        ids = s.select_ids([Matcher("__name__", "=", "gpu_temp")])
        rank = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
        keep = np.sort(ids)[1:]
        rank[keep] = np.arange(len(keep))[::-1]
        lo, hi = day0 + 5 * HOUR, day0 + DAY_MS + 2 * HOUR
        sid, ts, vals, stale = s.read_arrays(ids, lo, hi)
        rsid, rts, rvals, rstale = s.read_arrays(ids, lo, hi, rank=rank)
        want = rank[sid]
        ok = want >= 0
        order = np.lexsort((ts[ok], want[ok]))
        assert np.array_equal(rsid, want[ok][order]) and np.array_equal(rts, ts[ok][order])
        assert np.array_equal(rvals, vals[ok][order]) and np.array_equal(rstale, stale[ok][order])
        assert len(rsid) == 5 * ((hi - lo) // 10_000 + 1) and s._delta_days


def test_a_repeated_series_list_gets_the_same_ids_and_others_their_own(store: DuckDBStore) -> None:
    # repeated bodies hand the store the same key objects in the same order: their ids are
    # remembered per list, and any other list (equal keys, one key changed, a new key) is right too
    keys = [SeriesKey.of("m", {"i": str(i)}) for i in range(100)]
    t0 = 1_700_000_000_000

    def write(series: list[SeriesKey], ts: int, values: np.ndarray) -> None:
        store.append(
            SampleBatch(
                series=series,
                series_index=np.arange(len(series), dtype=np.int64),
                ts_ms=np.full(len(series), ts, dtype=np.int64),
                values=values,
            )
        )

    write(list(keys), t0, np.arange(100.0))
    write(list(keys), t0 + 10_000, np.arange(100.0) + 1000)  # the same objects: remembered ids
    changed = list(keys)
    changed[50] = SeriesKey.of("m", {"i": "new"})  # same length, same first and last key
    write(changed, t0 + 20_000, np.arange(100.0) + 2000)
    write([SeriesKey.of("m", {"i": str(i)}) for i in range(100)], t0 + 30_000, np.arange(100.0) + 3000)
    got = {s.key.label_dict()["i"]: list(s.values) for s in store.select([Matcher("__name__", "=", "m")], t0, t0 + 60_000)}
    assert got["new"] == [2050.0]
    assert got["50"] == [50.0, 1050.0, 3050.0]
    for i in (0, 7, 99):
        assert got[str(i)] == [i, 1000.0 + i, 2000.0 + i, 3000.0 + i]

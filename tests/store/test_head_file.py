"""The head file (sightglass.store.head): churn stays out of the main file, reads see one store, crashes lose nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pytest

from sightglass.model import Matcher, SampleBatch, SeriesKey
from sightglass.store import head
from sightglass.store.duckdb import DAY_MS, DB_FILENAME, HOUR_MS, MIGRATIONS, DuckDBStore, StoreOptions

T0 = DAY_MS * 20_300  # a UTC midnight
ALL = [Matcher("__name__", "=~", ".+")]


def _grid(n_series: int, t_lo: int, t_hi: int, step: int, value_of: int = 0) -> SampleBatch:
    ts = np.arange(t_lo, t_hi, step, dtype=np.int64)
    keys = [SeriesKey.of("gpu_util", {"gpu": str(k)}) for k in range(n_series)]
    idx = np.tile(np.arange(n_series), len(ts))
    t = np.repeat(ts, n_series)
    vals = (t // 1000 % 1000 + idx * 1000 + value_of).astype(np.float64)
    return SampleBatch(series=keys, series_index=idx, ts_ms=t, values=vals)


def _read_all(s: DuckDBStore) -> dict[tuple[str, int], float]:
    out = {}
    for sd in s.select(ALL, 0, 2**50):
        assert (np.diff(sd.ts_ms) > 0).all()
        for t, v in zip(sd.ts_ms, sd.values, strict=True):
            out[(sd.key.label_dict()["gpu"], int(t))] = float(v)
    return out


def _expected(*batches: SampleBatch) -> dict[tuple[str, int], float]:
    out = {}
    for b in batches:
        for i, t, v in zip(b.series_index, b.ts_ms, b.values, strict=True):
            out[(b.series[int(i)].label_dict()["gpu"], int(t))] = float(v)
    return out


def _stored_rows(s: DuckDBStore) -> int:
    st = s.stats()
    return int(st["head_samples"]) + int(st["compacted_samples"])


def test_sealed_staged_and_head_read_as_one_store_last_write_wins(tmp_path: Path) -> None:
    opts = StoreOptions(compact_every_s=3600, retention_ms=30 * DAY_MS)
    with DuckDBStore(tmp_path, options=opts) as s:
        day1 = _grid(6, T0, T0 + DAY_MS, 60_000)
        day2 = _grid(6, T0 + DAY_MS, T0 + DAY_MS + 5 * HOUR_MS, 60_000)
        s.append(day1)
        s.append(day2)
        s._compact(s.cursor(), force=False)  # day 1 sealed into main, day 2's old hours staged, the rest in head
        st = s.stats()
        assert st["partitions"] == [f"samples_{head_day(T0)}"] and st["staged_days"] == [head_day(T0 + DAY_MS)]
        assert 0 < st["head_samples"] < len(day2)
        assert s.cursor().execute("SELECT count(*) FROM samples_head").fetchone() == (st["head_samples"],)
        # overwrite one sample in each place: the sealed day, the staged hours, the head
        over = SampleBatch.from_rows(
            [("gpu_util", {"gpu": "1"}, T0 + 3 * HOUR_MS, -1.0), ("gpu_util", {"gpu": "2"}, T0 + DAY_MS + 60_000, -2.0),
             ("gpu_util", {"gpu": "3"}, T0 + DAY_MS + 5 * HOUR_MS - 60_000, -3.0)]
        )  # fmt: skip
        s.append(over)
        want = _expected(day1, day2, over)
        assert _read_all(s) == want
        # the move alone (a compaction seals right after it): day 1's late row is staged, day 1 unsealed
        # and read from the main file and its stage at once
        s._move(s.cursor(), T0 + DAY_MS + 3 * HOUR_MS)
        assert head_day(T0) in s.stats()["staged_days"]
        sealed_key = [f"sealed:{head_day(T0)}"]
        assert not s.cursor().execute("SELECT 1 FROM meta WHERE key = ?", sealed_key).fetchall()
        assert _read_all(s) == want
        s._compact(s.cursor(), force=False)  # day 1 closed: sealed again, merged, with its rollups
        assert s.cursor().execute("SELECT 1 FROM meta WHERE key = ?", sealed_key).fetchall()
        assert s.stats()["staged_days"] == [head_day(T0 + DAY_MS)]
        assert _read_all(s) == want
        s.compact()  # everything sealed, merged, the head file emptied
        st = s.stats()
        assert st["staged_days"] == [] and st["head_samples"] == 0
        assert st["compacted_samples"] == len(want) + 3  # the 3 overwritten rows stay; reads take the last
        assert _read_all(s) == want
        (sd,) = s.select([Matcher("gpu", "=", "1")], T0 + 3 * HOUR_MS, T0 + 3 * HOUR_MS)
        assert list(sd.values) == [-1.0]
        assert s.read_rollup(np.arange(6), T0, T0 + DAY_MS, "1h").num_rows == 6 * 24
    with DuckDBStore(tmp_path, read_only=True) as ro:
        assert _read_all(ro) == want


def head_day(ts: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC).strftime("%Y%m%d")


def test_main_file_grows_only_by_sealed_data_and_head_file_shrinks(tmp_path: Path) -> None:
    opts = StoreOptions(compact_every_s=3600, retention_ms=30 * DAY_MS)
    n = 100
    with DuckDBStore(tmp_path, options=opts) as s:
        for k in range(0, 26 * 3):  # 26 h in 20-min appends at 10 s, compacted after each like a live server
            s.append(_grid(n, T0 + k * 1_200_000, T0 + (k + 1) * 1_200_000, 10_000))
            s._last_compact = -1e9  # the server's background pass, due now (no CHECKPOINT of its own)
            s._maybe_compact(s.cursor())
        mid = s.stats()
        assert mid["partitions"] == [f"samples_{head_day(T0)}"]
        s.compact()
        st = s.stats()
        cur = s.cursor()
        main_free = cur.execute(
            "SELECT free_blocks FROM pragma_database_size() WHERE database_name = current_database()"
        ).fetchone()
    assert st["compacted_samples"] == n * 26 * 360 and st["head_samples"] == 0
    # the main file holds sealed data only: (nearly) no free blocks; the drained head file was given back
    assert main_free is not None and main_free[0] <= 4, main_free
    assert st["head_file_bytes"] <= 2 << 20, st
    assert st["main_file_bytes"] / st["compacted_samples"] < 6, st  # small store: DuckDB's fixed overhead dominates


def test_a_v2_store_is_migrated_to_the_head_file(tmp_path: Path) -> None:
    """Build what schema 2 left (head rows and an unsealed day table in the main file), open it, read it."""
    sealed = _grid(4, T0, T0 + DAY_MS, 600_000)
    unsealed = _grid(4, T0 + DAY_MS, T0 + DAY_MS + 2 * HOUR_MS, 600_000)
    in_head = _grid(4, T0 + DAY_MS + 2 * HOUR_MS, T0 + DAY_MS + 3 * HOUR_MS, 600_000)
    with DuckDBStore(tmp_path, options=StoreOptions(compact_every_s=3600)) as s:
        s.append(sealed)
        s.compact()
        s.append(unsealed)
        s.append(in_head)
    day2 = head_day(T0 + DAY_MS)
    con = duckdb.connect(str(tmp_path / DB_FILENAME))
    con.execute(f"ATTACH '{tmp_path / head.HEAD_FILENAME}' AS {head.HEAD}")
    con.execute("DROP VIEW samples_head")
    con.execute("CREATE TABLE samples_head (series_id INTEGER NOT NULL, ts BIGINT NOT NULL, value DOUBLE)")
    con.execute(f"CREATE TABLE samples_{day2} (series_id INTEGER NOT NULL, ts BIGINT NOT NULL, value DOUBLE)")
    cut = T0 + DAY_MS + 2 * HOUR_MS
    con.execute(f"INSERT INTO samples_{day2} SELECT * FROM {head.HEAD}.samples_head WHERE ts < {cut}")
    con.execute(f"INSERT INTO samples_head SELECT * FROM {head.HEAD}.samples_head WHERE ts >= {cut}")
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.execute("DETACH " + head.HEAD)
    con.close()
    os.remove(tmp_path / head.HEAD_FILENAME)
    want = _expected(sealed, unsealed, in_head)
    with DuckDBStore(tmp_path, read_only=True) as ro:  # an older file read as it is, without a head file
        assert ro.schema_version() == 2 and _read_all(ro) == want
    with DuckDBStore(tmp_path, options=StoreOptions(compact_every_s=3600)) as s:
        assert s.schema_version() == len(MIGRATIONS)
        assert (tmp_path / head.HEAD_FILENAME).exists()
        assert s.stats()["head_samples"] == len(in_head)
        assert _read_all(s) == want
        s.compact()  # the old unsealed day is sealed from the main file
        assert _stored_rows(s) == len(want) and _read_all(s) == want
        assert day2 in s._delta_days
    with DuckDBStore(tmp_path, read_only=True) as ro:
        assert _read_all(ro) == want


# A child that writes 2-h batches (10 series every 10 min), prints each acknowledged batch, compacts after
# each (a day closes and is sealed every 12 batches; every 4th batch also sends late samples for the
# previous day, new timestamps, which unseal and reseal it). CRASH names a step to die at: os._exit(9)
# there, as kill -9 would.
_CHILD = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from sightglass.model import SampleBatch, SeriesKey
    from sightglass.store import head
    from sightglass.store.duckdb import DuckDBStore, StoreOptions
    data, start, crash, after = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    calls = [0]
    def armed(fn):
        def wrapper(*a, **k):
            calls[0] += 1
            if calls[0] > after:
                os._exit(9)
            return fn(*a, **k)
        return wrapper
    if crash == "drop_stage":  # after the main file committed a seal, before the head dropped the stage
        head.drop_stage = armed(head.drop_stage)
    elif crash == "write_sealed":  # inside the main file's seal transaction, after the scratch was committed
        DuckDBStore._write_sealed = armed(DuckDBStore._write_sealed)
    elif crash == "create_stage":  # inside the head's move transaction, after the main part committed
        head.create_stage = armed(head.create_stage)
    elif crash == "shrink":  # inside the head transaction that rewrites the head file to give space back
        orig_tables, orig_shrink = head.tables, head.shrink
        def shrink(cur, **kw):
            calls[0] += 1
            if calls[0] <= after:
                return orig_shrink(cur, **kw)
            def tables(c):
                names = orig_tables(c)
                def first_then_die():
                    yield names[0]
                    os._exit(9)
                return first_then_die()
            head.tables = tables
            head.block_usage = lambda c: (262144, 1, 1000)  # always worth it
            return orig_shrink(cur, **kw)
        head.shrink = shrink
    s = DuckDBStore(data, options=StoreOptions(compact_every_s=1e9, retention_ms=10**13))
    keys = [SeriesKey.of("m", {"gpu": str(k)}) for k in range(10)]
    T0 = __T0__
    for i in range(start, start + 40):
        ts = T0 + i * 7_200_000 + np.arange(12, dtype=np.int64) * 600_000
        if i % 4 == 3 and i >= 12:  # late: the previous day, a time no batch writes (5 s past the grid)
            ts = np.append(ts, T0 + (i * 7_200_000 // 86_400_000 - 1) * 86_400_000 + (i % 12) * 600_000 + 5_000)
        t = np.repeat(ts, 10)
        idx = np.tile(np.arange(10), len(ts))
        s.append(SampleBatch(series=keys, series_index=idx, ts_ms=t, values=(t // 1000 + idx).astype(float)))
        print(i, flush=True)
        s.compact(force=False)
    os._exit(0)
    """
).replace("__T0__", str(T0))


def _child_batches(batches: set[int]) -> dict[tuple[str, int], float]:
    """What the child sends in those batches."""
    out = {}
    for i in sorted(batches):
        ts = [T0 + i * 7_200_000 + j * 600_000 for j in range(12)]
        if i % 4 == 3 and i >= 12:
            ts.append(T0 + (i * 7_200_000 // DAY_MS - 1) * DAY_MS + (i % 12) * 600_000 + 5_000)
        for t in ts:
            for k in range(10):
                out[(str(k), t)] = float(t // 1000 + k)
    return out


def _run_child(data: Path, start: int, crash: str = "none", after: int = 0, kill_after_s: float | None = None) -> int:
    """Run the child (batches from ``start``) until it dies; returns the last acknowledged batch."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"),
                                                          os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(data), str(start), crash, str(after)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    if kill_after_s is not None:
        try:
            proc.wait(timeout=kill_after_s)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    acked = [int(x) for x in out.split()]
    return acked[-1] if acked else start - 1


def _check_after_crash(data: Path, acked: set[int], in_flight: set[int]) -> None:
    """Every acknowledged sample reads back once; nothing is stored twice; compaction still works."""
    with DuckDBStore(data, options=StoreOptions(compact_every_s=1e9, retention_ms=10**13)) as s:
        got = _read_all(s)
        want = _child_batches(acked)
        maybe = _child_batches(acked | in_flight)  # a batch in flight may or may not have committed
        assert want.items() <= got.items()
        assert got.items() <= maybe.items()
        assert _stored_rows(s) == len(got)  # no row kept in two places (a sealed day and its stage)
        s.compact()
        assert _read_all(s) == got and _stored_rows(s) == len(got)
        assert s.stats()["staged_days"] == []


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
@pytest.mark.parametrize(("crash", "after"), [("drop_stage", 1), ("write_sealed", 1), ("create_stage", 3), ("shrink", 2)])
def test_a_crash_at_each_step_of_move_and_seal_loses_nothing(tmp_path: Path, crash: str, after: int) -> None:
    acked = _run_child(tmp_path, 0, crash, after)
    assert 12 <= acked < 39, f"the crash at {crash} did not happen mid-run (acked {acked})"
    _check_after_crash(tmp_path, set(range(acked + 1)), {acked + 1})


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_kill_9_at_random_times_during_compaction_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(int.from_bytes(os.urandom(4)))
    start = 0
    acked: set[int] = set()
    in_flight: set[int] = set()
    for _ in range(3):
        last = _run_child(tmp_path, start, kill_after_s=rng.uniform(2.0, 5.0))
        acked |= set(range(start, last + 1))
        in_flight.add(last + 1)
        _check_after_crash(tmp_path, acked, in_flight)
        start = last + 2  # the batch in flight may or may not be there: never resend it

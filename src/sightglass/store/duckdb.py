"""The embedded store: one DuckDB file holding metrics, events, entities, traces, logs and lineage.

Layout (see docs/storage.md):

- ``series``: the series dictionary (id, metric, labels as JSON). Loaded into a :class:`SeriesIndex`
  at open, so label matching never touches SQL.
- ``samples_head``: samples in arrival order, written in one Arrow INSERT per group commit. It and the
  days not yet sealed live in a second file, ``head.duckdb`` (:mod:`sightglass.store.head`), so the
  churn of rewriting them never leaves free blocks in the main file; the main file has a view of the
  same name.
- ``samples_<YYYYMMDD>``: sealed days, one table per UTC day, written once sorted by (series_id, ts)
  with per-series timestamp deltas so DuckDB's ALP/bit-packing compress it. Retention drops whole
  days.
- ``rollup_5m`` / ``rollup_1h``: per series and bucket count/sum/min/max/last and the
  reset-adjusted increase, kept longer than raw data. The hourly rollup is made when a day is
  sealed; the 5-minute one when the raw day leaves retention (while the raw day exists it answers
  every query exactly, and a 5-minute rollup beside it would cost ~0.7 B/sample for nothing).

Writes go through one writer thread that groups concurrent requests into one transaction (group
commit); ``append`` returns only after COMMIT, so an acknowledged write is in DuckDB's WAL and
survives ``kill -9``. Readers use their own cursors and see committed data (MVCC).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import math
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import duckdb
import numpy as np
import pyarrow as pa

from sightglass.model import (
    ConfigSnapshot,
    Entity,
    Event,
    LineageEvent,
    LogRecord,
    Matcher,
    MetricMetadata,
    MetricType,
    Relation,
    SampleBatch,
    SeriesData,
    SeriesKey,
    Span,
)
from sightglass.store import head as _head
from sightglass.store.base import LimitExceeded, StoreError, WriteResult
from sightglass.store.index import SeriesIndex
from sightglass.store.memory import keep_freed_memory
from sightglass.store.read_cache import ReadCache, selector_digest
from sightglass.store.read_order import Part, Ranges, order_parts, order_parts_packed, ranked, sorted_part
from sightglass.store.rows import config_row, event_row, lineage_row, log_row, span_row
from sightglass.store.rows import to_json as _json
from sightglass.store.tx import transaction

log = logging.getLogger(__name__)

DB_FILENAME = "sightglass.duckdb"
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
_PART_RE = re.compile(r"^samples_(\d{8})$")
_BASE_RE = re.compile(r"^tsbase_(\d{8})$")

MIGRATIONS: list[str] = [
    # 1: metrics, catalog
    """
    CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
    CREATE TABLE series (id INTEGER PRIMARY KEY, metric VARCHAR NOT NULL, labels VARCHAR NOT NULL,
                         first_ms BIGINT, last_ms BIGINT);
    CREATE TABLE samples_head (series_id INTEGER NOT NULL, ts BIGINT NOT NULL, value DOUBLE);
    CREATE TABLE metadata (metric VARCHAR PRIMARY KEY, type VARCHAR, help VARCHAR, unit VARCHAR);
    CREATE TABLE rollup_5m (series_id INTEGER, ts BIGINT, cnt INTEGER, sum DOUBLE, min DOUBLE, max DOUBLE,
                            last DOUBLE, inc DOUBLE);
    CREATE TABLE rollup_1h (series_id INTEGER, ts BIGINT, cnt INTEGER, sum DOUBLE, min DOUBLE, max DOUBLE,
                            first DOUBLE, last DOUBLE, first_ts BIGINT, last_ts BIGINT, inc DOUBLE);
    CREATE TABLE exp_histograms (series_id INTEGER, ts BIGINT, payload VARCHAR);
    CREATE TABLE events (ts BIGINT, end_ts BIGINT, kind VARCHAR, severity VARCHAR, source VARCHAR,
                         entity VARCHAR, attributes VARCHAR);
    CREATE TABLE entities (id VARCHAR PRIMARY KEY, kind VARCHAR, labels VARCHAR, attributes VARCHAR,
                           updated_ms BIGINT);
    CREATE TABLE relations (src VARCHAR, kind VARCHAR, dst VARCHAR, start_ms BIGINT, end_ms BIGINT);
    CREATE TABLE spans (trace_id VARCHAR, span_id VARCHAR, parent_span_id VARCHAR, name VARCHAR, kind INTEGER,
                        start_ns BIGINT, end_ns BIGINT, status_code INTEGER, status_message VARCHAR,
                        service VARCHAR, attributes VARCHAR, resource VARCHAR, events VARCHAR);
    CREATE TABLE logs (ts_ns BIGINT, observed_ns BIGINT, severity_number INTEGER, severity_text VARCHAR,
                       body VARCHAR, trace_id VARCHAR, span_id VARCHAR, service VARCHAR,
                       attributes VARCHAR, resource VARCHAR);
    CREATE TABLE lineage (ts BIGINT, event_type VARCHAR, job_namespace VARCHAR, job_name VARCHAR,
                          run_id VARCHAR, inputs VARCHAR, outputs VARCHAR, payload VARCHAR);
    CREATE TABLE configs (ts BIGINT, entity VARCHAR, config VARCHAR, source VARCHAR);
    CREATE TABLE incidents (id VARCHAR PRIMARY KEY, opened_ms BIGINT, closed_ms BIGINT, state VARCHAR,
                            title VARCHAR, payload VARCHAR);
    """,
    # 2: sealed days may be stored with per-series timestamp deltas (samples_<day> (series_id, hour, dt,
    # value) + tsbase_<day>); nothing to rewrite, older files stay readable, but an older Sightglass
    # must refuse such a file rather than misread it
    "SELECT 1;",
    # 3: samples_head and unsealed days move to the head file (sightglass.store.head); main keeps a view
    # named samples_head. Done in code (DuckDBStore._migrate_head_file): a transaction writes one file.
    "SELECT 1;",
    # 4: rollup buckets keep what answers PromQL range functions exactly (store/rollup_read.py): the
    # first value, the first/last sample times, the resets inside the bucket and duplicate timestamps
    """
    ALTER TABLE rollup_5m ADD COLUMN IF NOT EXISTS first DOUBLE;
    ALTER TABLE rollup_5m ADD COLUMN IF NOT EXISTS first_off INTEGER;
    ALTER TABLE rollup_5m ADD COLUMN IF NOT EXISTS last_off INTEGER;
    ALTER TABLE rollup_5m ADD COLUMN IF NOT EXISTS reset_sum DOUBLE;
    ALTER TABLE rollup_5m ADD COLUMN IF NOT EXISTS dups INTEGER;
    ALTER TABLE rollup_1h ADD COLUMN IF NOT EXISTS reset_sum DOUBLE;
    ALTER TABLE rollup_1h ADD COLUMN IF NOT EXISTS dups INTEGER;
    """,
]
_HEAD_FILE_VERSION = 3

_SAMPLE_SCHEMA = pa.schema([("series_id", pa.int32()), ("ts", pa.int64()), ("value", pa.float64())])


@dataclass(slots=True)
class StoreOptions:
    retention_ms: int = 15 * DAY_MS
    rollup_retention_ms: int = 400 * DAY_MS
    head_ms: int = HOUR_MS  # data older than (newest - head_ms) is compacted
    head_max_rows: int = 4_000_000  # compact early when a back-fill makes the head this big
    compact_every_s: float = 60.0
    group_commit_max_samples: int = 500_000
    threads: int = 2
    memory_limit: str | None = None
    keep_freed_memory: bool = True  # glibc keeps freed heap for the next query (sightglass.store.memory)
    read_cache_bytes: int = 256 << 20  # decoded day tables kept for repeated reads (store/read_cache.py); 0: off


_MAX_TS_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z


def _day_of(ts_ms: int) -> str:
    ts_ms = min(max(ts_ms, 0), _MAX_TS_MS)
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).strftime("%Y%m%d")


_F = TypeVar("_F", bound=Callable[..., Any])


def _changes_tables(fn: _F) -> _F:
    """A method that changes day tables or stages: the read cache stays out of use meanwhile."""

    @functools.wraps(fn)
    def wrapper(self: DuckDBStore, *args: Any, **kwargs: Any) -> Any:
        with self._read_cache.changing():
            return fn(self, *args, **kwargs)

    return cast(_F, wrapper)


class DuckDBStore:
    """Metrics and catalog in one DuckDB file under ``data_dir``. Use as a context manager."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        read_only: bool = False,
        options: StoreOptions | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.read_only = read_only
        self.options = options or StoreOptions()
        if not read_only:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_FILENAME
        if self.options.keep_freed_memory:
            keep_freed_memory()
        if read_only and not self.path.exists():
            raise StoreError(f"no Sightglass data in {self.data_dir} (expected {self.path})")
        config: dict[str, Any] = {"threads": self.options.threads}
        if self.options.memory_limit:
            config["memory_limit"] = self.options.memory_limit
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only, config=config)
        except duckdb.IOException as e:
            if "lock" in str(e).lower():
                raise StoreError(
                    f"{self.path} is in use by another process (a running `sightglass up`?). "
                    "Query that server over HTTP instead, or stop it first."
                ) from e
            raise StoreError(f"cannot open {self.path}: {e}") from e
        row = self._con.execute("SELECT current_database()").fetchone()
        self._main_db = str(row[0]) if row else "main"
        self.head_path = self.data_dir / _head.HEAD_FILENAME
        head_existed = self.head_path.exists()
        try:
            if not read_only and not head_existed and self._schema_version_or_0() >= _HEAD_FILE_VERSION:
                log.warning("%s is missing: this store's recent, unsealed samples are lost; starting an empty head",
                            self.head_path)  # fmt: skip
            attached = _head.attach(self._con, self.head_path, read_only=read_only)
            if not attached and self._schema_version_or_0() >= _HEAD_FILE_VERSION:
                raise StoreError(
                    f"{self.head_path} is missing: it holds this store's recent, unsealed samples "
                    f"(restore it beside {self.path.name}, or open the store writable to start an empty one)"
                )
        except duckdb.Error as e:
            self._con.close()
            raise StoreError(f"cannot open {self.head_path}: {e}") from e
        except StoreError:
            self._con.close()
            raise
        self._lock = threading.RLock()  # guards the index and catalog writes
        self._read_cache = ReadCache(self.options.read_cache_bytes)
        if not read_only:
            self._migrate()
            _head.recover(self._con, self._sealed_tokens())
            self._roll_old_stages(self._con)
        self.index = SeriesIndex()
        self._next_id = 0
        self._ids_memo: dict[tuple[int, int, int], tuple[int, list[SeriesKey], np.ndarray]] = {}
        self._last_ms: dict[int, int] = {}
        self._load_series()
        # days whose sealed table stores per-series timestamp deltas (see _write_sealed)
        self._delta_days: frozenset[str] = self._load_delta_days()
        self._metadata: dict[str, MetricMetadata] = {m: v[0] for m, v in self.metadata().items() if v}
        self._queue: queue.Queue[tuple[SampleBatch, int | None, Future[WriteResult]] | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._closed = False
        self._last_compact = time.monotonic()
        self.samples_appended_total = 0
        self.newest_ms = max(self._last_ms.values(), default=0)  # newest sample ts seen (for analytics)
        self._head_rows = 0 if read_only else self.count("samples_head")
        head_max = self.cursor().execute("SELECT max(ts) FROM samples_head").fetchone()
        if head_max and head_max[0] is not None:
            self.newest_ms = max(self.newest_ms, int(head_max[0]))
        self._size_trigger = self.options.head_max_rows
        self._shrink_due = False  # a seal left the head file mostly free: give the space back
        if not read_only:
            self._writer = threading.Thread(target=self._write_loop, name="sightglass-writer", daemon=True)
            self._writer.start()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
        if not self.read_only:
            with contextlib.suppress(Exception):
                self._con.execute(f"CHECKPOINT {_head.HEAD}")
            with contextlib.suppress(Exception):
                self._con.execute("CHECKPOINT")
        self._con.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for one thread's reads (DuckDB cursors are not shared between threads)."""
        return self._con.cursor()

    def _migrate(self) -> None:
        con = self._con
        con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        version = int(rows[0][0]) if rows else 0
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this Sightglass "
                f"({len(MIGRATIONS)}); upgrade Sightglass"
            )
        for i in range(version, len(MIGRATIONS)):
            script = MIGRATIONS[i]
            if i + 1 == _HEAD_FILE_VERSION:
                self._migrate_head_file(con)
                continue
            if i == 0:
                script = script.replace("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);", "")
            with transaction(con):
                con.execute(script)
                con.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                    [str(i + 1)],
                )

    def _migrate_head_file(self, con: duckdb.DuckDBPyConnection) -> None:
        """Schema 3: the head's rows go to the head file; ``samples_head`` in main becomes a view.

        Two commits (one per file). The head file records that it has the rows, so a crash between
        them never copies them twice; older unsealed day tables stay in main and are sealed from there.
        """
        h = _head.HEAD
        has_table = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = 'samples_head'",
            [self._main_db],
        ).fetchone()
        if has_table and has_table[0]:
            copied = con.execute(f"SELECT count(*) FROM {h}.head_meta WHERE key = 'migrated_main_head'").fetchone()
            if not (copied and copied[0]):
                with transaction(con):
                    con.execute(f'INSERT INTO {h}.samples_head SELECT * FROM "{self._main_db}".main.samples_head')
                    con.execute(f"INSERT INTO {h}.head_meta VALUES ('migrated_main_head', '1')")
        with transaction(con):
            if has_table and has_table[0]:
                con.execute("DROP TABLE samples_head")
            con.execute(f"CREATE OR REPLACE VIEW samples_head AS SELECT * FROM {h}.samples_head")
            con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(_HEAD_FILE_VERSION)])

    def _sealed_tokens(self) -> dict[str, str]:
        rows = self.cursor().execute("SELECT key, value FROM meta WHERE key LIKE 'sealed_stage:%'").fetchall()
        return {k[len("sealed_stage:") :]: v for k, v in rows}

    def _schema_version_or_0(self) -> int:
        has = self._con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = 'meta'", [self._main_db]
        ).fetchone()
        return self.schema_version() if has and has[0] else 0

    def schema_version(self) -> int:
        row = self.cursor().execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _load_series(self) -> None:
        rows = self.cursor().execute("SELECT id, metric, labels, last_ms FROM series ORDER BY id").fetchall()
        for sid, metric, labels, last_ms in rows:
            key = SeriesKey(metric, tuple(sorted((k, v) for k, v in json.loads(labels).items())))
            self.index.add(sid, key)
            if last_ms is not None:
                self._last_ms[sid] = last_ms
            self._next_id = max(self._next_id, sid + 1)

    def _load_delta_days(self) -> frozenset[str]:
        rows = self.cursor().execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND table_name LIKE 'tsbase_%'",
            [self._main_db],
        )
        return frozenset(m.group(1) for (t,) in rows.fetchall() if (m := _BASE_RE.match(t)))

    # ------------------------------------------------------------------ writes
    def append(self, batch: SampleBatch, *, max_new_series: int | None = None) -> WriteResult:
        """Write ``batch`` durably (group-committed with concurrent writers); returns after COMMIT."""
        if self.read_only:
            raise StoreError("store is open read-only")
        if self._closed:
            raise StoreError("store is closed")
        fut: Future[WriteResult] = Future()
        self._queue.put((batch, max_new_series, fut))
        return fut.result()

    def _write_loop(self) -> None:
        cur = self._con.cursor()
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                self._maybe_compact(cur)
                continue
            if item is None:
                return
            group = [item]
            n = len(item[0])
            while n < self.options.group_commit_max_samples:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                group.append(nxt)
                n += len(nxt[0])
            try:
                self._commit_group(cur, group)
            except BaseException as e:  # never leave a caller waiting on a dead writer
                log.exception("writer failed")
                for _, _, fut in group:
                    if not fut.done():
                        fut.set_exception(StoreError(f"write failed: {e}"))
            self._maybe_compact(cur)

    _IDS_MEMO_MIN = 64  # series per batch worth remembering
    _IDS_MEMO_MAX = 1024  # batches remembered (oldest dropped first)

    @staticmethod
    def _memo_key(series: list[SeriesKey]) -> tuple[int, int, int]:
        return (len(series), id(series[0]), id(series[-1]))

    def _memo_ids(self, series: list[SeriesKey]) -> np.ndarray | None:
        """The ids of ``series`` when a batch with an equal series list was written before.

        Repeated bodies (a scrape target, an agent's shard, a periodic exporter) come back from the
        parsers' learned templates with the very same key objects in the same order, so the list
        comparison is a C-level pass by identity instead of a dict lookup (and a hash) per series. Equal
        keys have equal ids while the index's generation is unchanged (no removal since). Under the
        store lock.
        """
        if len(series) < self._IDS_MEMO_MIN:
            return None
        hit = self._ids_memo.get(self._memo_key(series))
        if hit is None:
            return None
        gen, ref, ids = hit
        if gen != self.index.generation or ref != series:  # C-level; identical keys compare by identity
            return None
        return ids

    def _remember_ids(self, series: list[SeriesKey], ids: np.ndarray) -> None:
        if len(series) < self._IDS_MEMO_MIN:
            return
        memo = self._ids_memo
        if len(memo) >= self._IDS_MEMO_MAX:
            del memo[next(iter(memo))]
        ids.flags.writeable = False  # handed out again: nobody may change it in place
        memo[self._memo_key(series)] = (self.index.generation, list(series), ids)

    def _commit_group(
        self,
        cur: duckdb.DuckDBPyConnection,
        group: list[tuple[SampleBatch, int | None, Future[WriteResult]]],
    ) -> None:
        results: list[WriteResult | BaseException] = []
        new_series: list[tuple[int, SeriesKey, int]] = []
        id_arrays, ts_arrays, val_arrays = [], [], []
        hist_rows: list[tuple[int, int, str]] = []
        metadata: dict[str, MetricMetadata] = {}
        pending_keys: dict[SeriesKey, int] = {}
        with self._lock:
            next_id = self._next_id
            for batch, max_new, _ in group:
                try:
                    res = WriteResult()
                    fresh: list[tuple[int, SeriesKey]] = []
                    memo = self._memo_ids(batch.series)
                    known = [] if memo is not None else list(map(self.index.ids.get, batch.series))
                    if memo is not None:  # the same series list as a batch before (a repeated body)
                        ids = memo
                    elif None not in known:  # the steady state: every series exists (one C-level pass)
                        ids = np.array(known, dtype=np.int32)
                        self._remember_ids(batch.series, ids)
                    else:
                        ids = np.empty(len(batch.series), dtype=np.int32)
                        fresh_ids: dict[SeriesKey, int] = {}  # a key listed twice in one batch gets one id
                        for i, key in enumerate(batch.series):
                            sid = known[i]
                            if sid is None:
                                sid = pending_keys.get(key)
                            if sid is None:
                                sid = fresh_ids.get(key)
                            if sid is None:
                                sid = fresh_ids[key] = next_id + len(fresh)
                                fresh.append((sid, key))
                            ids[i] = sid
                    if max_new is not None and len(fresh) > max_new:
                        raise LimitExceeded(
                            f"request would create {len(fresh)} new series, over the limit of {max_new} "
                            "per request (limits.max_new_series_per_request)"
                        )
                    first_ts = int(batch.ts_ms.min()) if len(batch) else 0
                    for sid, key in fresh:
                        pending_keys[key] = sid
                        new_series.append((sid, key, first_ts))
                    next_id += len(fresh)
                    res.new_series = len(fresh)
                    if len(batch):
                        sids = ids[batch.series_index]
                        vals = batch.values
                        id_arrays.append(sids)
                        ts_arrays.append(batch.ts_ms.astype(np.int64, copy=False))
                        self.newest_ms = max(self.newest_ms, int(batch.ts_ms.max()))
                        if batch.stale is not None and batch.stale.any():
                            vals = np.where(batch.stale, np.nan, vals)
                            mask = batch.stale
                        else:
                            mask = None
                        val_arrays.append((vals, mask))
                        res.samples_written = len(batch)
                    for h in batch.exp_histograms:
                        hid = self.index.ids.get(h.series)
                        if hid is None:  # not `or`: series id 0 is valid
                            hid = pending_keys.get(h.series)
                        if hid is None:
                            hid = next_id
                            next_id += 1
                            pending_keys[h.series] = hid
                            new_series.append((hid, h.series, h.ts_ms))
                            res.new_series += 1
                        hist_rows.append((hid, h.ts_ms, _json(_hist_payload(h))))
                        res.histograms_written += 1
                    for name, md in batch.metadata.items():
                        if self._metadata.get(name) != md:
                            metadata[name] = md
                    results.append(res)
                except BaseException as e:  # a bad batch fails alone
                    results.append(e)
            # DuckDB writes one attached file per transaction: the catalog part (new series, histograms,
            # metadata) commits in the main file first, then the samples in the head file. A crash
            # between the two leaves series without samples, never samples without their series.
            main_done = False
            try:
                if new_series or hist_rows or metadata:
                    cur.execute("BEGIN")
                    self._write_catalog_part(cur, new_series, hist_rows, metadata)
                    cur.execute("COMMIT")
                main_done = True
                for sid, key, _ in new_series:
                    self.index.add(sid, key)
                self._metadata.update(metadata)
                self._next_id = next_id
                if id_arrays:
                    values = np.concatenate([v for v, _ in val_arrays])
                    masks = [m if m is not None else np.zeros(len(v), dtype=bool) for v, m in val_arrays]
                    mask = np.concatenate(masks)
                    tbl = pa.table(
                        [
                            pa.array(np.concatenate(id_arrays)),
                            pa.array(np.concatenate(ts_arrays)),
                            pa.array(values, mask=mask if mask.any() else None),
                        ],
                        schema=_SAMPLE_SCHEMA,
                    )
                    cur.execute("BEGIN")  # before register: it fails while a result is unfinished
                    cur.register("_batch", tbl)
                    try:
                        cur.execute(f"INSERT INTO {_head.HEAD}.samples_head SELECT * FROM _batch")
                        cur.execute("COMMIT")
                    finally:
                        cur.unregister("_batch")
            except BaseException as e:
                with contextlib.suppress(Exception):
                    cur.execute("ROLLBACK")
                if main_done:
                    log.error("samples not written after their series were: %s", e)
                err = StoreError(f"write failed: {e}")
                for (_, _, fut), _res in zip(group, results, strict=True):
                    fut.set_exception(err)
                return
        total = 0
        for (_, _, fut), outcome in zip(group, results, strict=True):
            if isinstance(outcome, BaseException):
                fut.set_exception(outcome)
            else:
                total += outcome.samples_written
                fut.set_result(outcome)
        self.samples_appended_total += total
        self._head_rows += total

    @staticmethod
    def _write_catalog_part(
        cur: duckdb.DuckDBPyConnection,
        new_series: list[tuple[int, SeriesKey, int]],
        hist_rows: list[tuple[int, int, str]],
        metadata: dict[str, MetricMetadata],
    ) -> None:
        if new_series:
            tbl = pa.table(
                {
                    "id": pa.array([s[0] for s in new_series], pa.int32()),
                    "metric": pa.array([s[1].metric for s in new_series], pa.string()),
                    "labels": pa.array([_json(dict(s[1].labels)) for s in new_series], pa.string()),
                    "first_ms": pa.array([s[2] for s in new_series], pa.int64()),
                }
            )
            cur.register("_new_series", tbl)
            cur.execute("INSERT INTO series SELECT id, metric, labels, first_ms, NULL FROM _new_series")
            cur.unregister("_new_series")
        if hist_rows:
            cur.executemany("INSERT INTO exp_histograms VALUES (?, ?, ?)", hist_rows)
        if metadata:
            mds = list(metadata.values())
            cur.register(
                "_md",
                pa.table(
                    {
                        "metric": [m.metric for m in mds],
                        "type": [m.type.value for m in mds],
                        "help": [m.help for m in mds],
                        "unit": [m.unit for m in mds],
                    }
                ),
            )
            cur.execute("INSERT OR REPLACE INTO metadata SELECT metric, type, help, unit FROM _md")
            cur.unregister("_md")

    # ------------------------------------------------------------------ compaction, rollups, retention
    def _maybe_compact(self, cur: duckdb.DuckDBPyConnection) -> None:
        due = time.monotonic() - self._last_compact >= self.options.compact_every_s
        if not due and self._head_rows < self._size_trigger:
            return
        self._last_compact = time.monotonic()
        try:
            moved = self._compact(cur, force=False)
            # a big head of only recent data cannot move yet: let it double before trying again
            self._size_trigger = self.options.head_max_rows if moved else 2 * max(self._head_rows, 1)
            self._apply_retention(cur)
            if self._shrink_due and self._shrink(cur):
                self._shrink_due = False
        except Exception:
            log.exception("compaction failed; will retry")

    def compact(self, *, force: bool = True) -> int:
        """Move head samples into sorted day partitions and rollups; ``force`` moves all of them.

        Runs on the writer thread's turn (it takes the write lock). Returns the rows moved.
        """
        with self._lock:
            cur = self._con.cursor()
            moved = self._compact(cur, force=force)
            self._apply_retention(cur)
            try:
                cur.execute("CHECKPOINT")
            except duckdb.TransactionException as e:  # another transaction is open: DuckDB checkpoints later
                log.info("compact: %s", e)
            if (self._shrink_due or force) and self._shrink(cur):
                self._shrink_due = False
            return moved

    def _compact(self, cur: duckdb.DuckDBPyConnection, *, force: bool) -> int:
        """Move head samples into day stages in whole-hour slices, then seal the days that closed.

        Only whole hours older than ``head_ms`` behind the newest sample move (``force``: all of it),
        each slice sorted by (series_id, ts), into the day's stage in the head file. A day whose data
        has all moved is *sealed*: written once into the main file, fully sorted with timestamp deltas
        (see :meth:`_write_sealed`), and rolled up. Late data for a sealed day goes to a new stage and
        unseals the day; a later pass seals it again, merged, with fresh rollups.
        """
        with self._lock:
            row = cur.execute(f"SELECT count(*), min(ts), max(ts) FROM {_head.HEAD}.samples_head").fetchone()
            assert row is not None
            n, min_ts, max_ts = row
            moved = 0
            if n:
                if force:
                    cutoff = max_ts + 1
                else:
                    cutoff = ((max_ts - self.options.head_ms) // HOUR_MS) * HOUR_MS
                if cutoff > min_ts:
                    moved = self._move(cur, cutoff)
            sealed_until = max_ts + 1 if force and n else self._moved_until(cur)
            if self._seal_closed_days(cur, sealed_until, include_partial=force):
                self._shrink_due = True
            self._head_rows = self.count("samples_head")
            return moved

    def _moved_until(self, cur: duckdb.DuckDBPyConnection) -> int:
        """Everything before this time has left the head."""
        row = cur.execute(f"SELECT min(ts) FROM {_head.HEAD}.samples_head").fetchone()
        if row and row[0] is not None:
            return int(row[0])
        return max(self._last_ms.values(), default=0) + 1

    @_changes_tables
    def _move(self, cur: duckdb.DuckDBPyConnection, cutoff: int) -> int:
        """Head rows before ``cutoff`` into their days' stages, one head transaction.

        The main file's part comes first, in its own transaction (DuckDB writes one file per
        transaction): the series' last sample times, and unsealing the sealed days that get late rows.
        Both are harmless if the move then never happens: the day is simply sealed again.
        """
        h = _head.HEAD
        days = [
            int(r[0])
            for r in cur.execute(
                f"SELECT DISTINCT (ts - ((ts % {DAY_MS}) + {DAY_MS}) % {DAY_MS}) // {DAY_MS} "
                f"FROM {h}.samples_head WHERE ts < ? ORDER BY 1",
                [cutoff],
            ).fetchall()
        ]
        if not days:
            return 0
        lasts = cur.sql(
            f"SELECT series_id, max(ts) AS last FROM {h}.samples_head WHERE ts < $cutoff GROUP BY series_id",
            params={"cutoff": cutoff},
        ).to_arrow_table()
        assert lasts is not None
        late = sorted({_day_of(d * DAY_MS) for d in days if self._is_sealed(cur, _day_of(d * DAY_MS))})
        cur.execute("BEGIN")
        cur.register("_lasts", lasts)
        try:
            cur.execute(
                "UPDATE series SET last_ms = s.last FROM _lasts s "
                "WHERE series.id = s.series_id AND (series.last_ms IS NULL OR series.last_ms < s.last)"
            )
            for day in late:  # late data for a sealed day: drop its rollups, seal it again later
                self._unseal(cur, day, _head.day_start(day))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        finally:
            cur.unregister("_lasts")
        stages = set(_head.stage_days(cur))
        in_main = self._main_days()
        hours = [
            int(r[0])
            for r in cur.execute(
                f"SELECT DISTINCT floor(ts / {HOUR_MS}.0)::BIGINT FROM {h}.samples_head WHERE ts < ? ORDER BY 1",
                [cutoff],
            ).fetchall()
        ]
        moved = 0
        with transaction(cur):
            for d in days:
                lo = d * DAY_MS
                hi = min(lo + DAY_MS, cutoff)
                day = _day_of(lo)
                if day not in stages:
                    _head.create_stage(cur, day, rolled=day not in in_main)
                    stages.add(day)
                cur.execute(
                    f"INSERT INTO {_head.stage(day)} SELECT series_id, ts, value FROM {h}.samples_head "
                    "WHERE ts >= ? AND ts < ? ORDER BY series_id, ts, rowid",
                    [lo, hi],
                )
            self._roll_staged_hours(cur, hours)
            row = cur.execute(f"SELECT count(*) FROM {h}.samples_head WHERE ts < ?", [cutoff]).fetchone()
            moved = int(row[0]) if row else 0
            # rewrite the head without the moved rows (a DELETE would leave holes in the file)
            cur.execute(f"CREATE TABLE {h}.samples_head_new AS SELECT * FROM {h}.samples_head WHERE ts >= ?", [cutoff])
            cur.execute(f"DROP TABLE {h}.samples_head")
            cur.execute(f"ALTER TABLE {h}.samples_head_new RENAME TO samples_head")
        for sid, last in zip(lasts.column("series_id").to_pylist(), lasts.column("last").to_pylist(), strict=True):
            if last > self._last_ms.get(sid, -(2**63)):
                self._last_ms[sid] = last
        return moved

    def _roll_old_stages(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Stages written before ``stage_rollups`` existed (or by a version that kept none): roll up
        their slices once, so their days are answered from buckets like new stages."""
        staged = set(_head.stage_days(cur)) - set(_head.rolled_days(cur))
        staged -= self._main_days()
        for day in sorted(staged):
            lo = _head.day_start(day)
            with transaction(cur):
                cur.execute(f"INSERT INTO {_head.HEAD}.head_meta VALUES (?, '1')", [f"stage_rollup:{day}"])
                self._roll_staged_hours(cur, list(range(lo // HOUR_MS, (lo + DAY_MS) // HOUR_MS)))

    def _roll_staged_hours(self, cur: duckdb.DuckDBPyConnection, hours: list[int]) -> None:
        """Rebuild the ``stage_rollups`` buckets of the given hours (bucket numbers) from all of their
        staged slices, for the stages whose buckets cover their day (inside the move's head transaction).

        A late slice for an hour already staged rebuilds that hour from every slice, so duplicates
        across slices are counted (``dups``) and the bucket stays out of exact answers. ``inc`` counts
        from the hour's first sample (nothing reads it from these buckets)."""
        rolled = set(_head.rolled_days(cur))
        runs: list[list[int]] = []
        for hr in hours:
            if runs and runs[-1][1] == hr and _day_of(hr * HOUR_MS) == _day_of(runs[-1][0] * HOUR_MS):
                runs[-1][1] = hr + 1
            else:
                runs.append([hr, hr + 1])
        for a, b in runs:
            day = _day_of(a * HOUR_MS)
            if day not in rolled or not _head.day_start(day) <= a * HOUR_MS < _head.day_start(day) + DAY_MS:
                continue  # also hours clamped into a day they are not in (far past/future data)
            lo, hi = a * HOUR_MS, b * HOUR_MS
            cur.execute(f"DELETE FROM {_head.ROLLUPS} WHERE ts >= ? AND ts < ?", [lo, hi])
            src = f"(SELECT series_id, ts, value FROM {_head.stage(day)} WHERE ts >= {lo} AND ts < {hi})"
            self._rollup(cur, src, _head.day_start(day), ((_head.ROLLUPS, HOUR_MS, True),))

    @staticmethod
    def _is_sealed(cur: duckdb.DuckDBPyConnection, day: str) -> bool:
        return bool(cur.execute("SELECT 1 FROM meta WHERE key = ?", [f"sealed:{day}"]).fetchall())

    @staticmethod
    def _unseal(cur: duckdb.DuckDBPyConnection, day: str, day_start: int) -> None:
        cur.execute("DELETE FROM meta WHERE key = ?", [f"sealed:{day}"])
        for table in ("rollup_5m", "rollup_1h"):
            cur.execute(f"DELETE FROM {table} WHERE ts >= ? AND ts < ?", [day_start, day_start + DAY_MS])

    def _seal_closed_days(self, cur: duckdb.DuckDBPyConnection, moved_until: int, *, include_partial: bool) -> bool:
        """Seal every day whose data has all left the head; returns whether any was sealed."""
        stages = set(_head.stage_days(cur))
        in_main = self._main_days()
        sealed = False
        for day in sorted(in_main | stages):
            day_start = _head.day_start(day)
            closed = day_start + DAY_MS <= moved_until
            if not closed and not (include_partial and day_start < moved_until):
                continue
            if day not in stages and self._is_sealed(cur, day):
                continue
            self._seal_day(cur, day, day_start, in_main=day in in_main, staged=day in stages)
            sealed = True
        return sealed

    @_changes_tables
    def _seal_day(self, cur: duckdb.DuckDBPyConnection, day: str, day_start: int, *, in_main: bool, staged: bool) -> None:
        """Write ``day`` once into the main file: its main table (an earlier seal) merged with its stage.

        Three commits: the head gets the whole day sorted (scratch, so the sort's churn stays in the
        head file); the main file gets the sealed day, its hourly rollup and the stage's token; the
        head drops stage and scratch. See :mod:`sightglass.store.head` for a crash between them.
        """
        table = f"samples_{day}"
        parts = []
        if in_main:
            if day in self._delta_days:
                parts.append(f"SELECT series_id, ts, value, r, 0 AS src FROM ({self._absolute_sql(day, with_row=True)})")
            else:
                parts.append(f"SELECT series_id, ts, value, rowid AS r, 0 AS src FROM {table}")
        if staged:
            parts.append(f"SELECT series_id, ts, value, rowid AS r, 1 AS src FROM {_head.stage(day)}")
        token = _head.token(cur, day) if staged else None
        scratch = _head.scratch(day)
        with transaction(cur):
            cur.execute(f"DROP TABLE IF EXISTS {scratch}")
            # src then rowid: duplicates stay in write order (an earlier seal's rows, then the stage's)
            cur.execute(
                f"CREATE TABLE {scratch} AS SELECT series_id, ts, value FROM ({' UNION ALL '.join(parts)}) "
                "ORDER BY series_id, ts, src, r"
            )
        with transaction(cur):
            self._unseal(cur, day, day_start)  # an earlier seal's rollups
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"DROP TABLE IF EXISTS tsbase_{day}")
            self._rollup(cur, scratch, day_start, (("rollup_1h", HOUR_MS, True),))
            delta = self._write_sealed(cur, scratch, day, day_start)
            cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [f"sealed:{day}", str(int(time.time()))])
            if token is not None:
                cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [f"sealed_stage:{day}", token])
        self._delta_days = self._delta_days | {day} if delta else self._delta_days - {day}
        with transaction(cur):
            _head.drop_stage(cur, day)

    def _write_sealed(self, cur: duckdb.DuckDBPyConnection, src: str, day: str, day_start: int) -> bool:
        """Create ``samples_<day>`` in the main file from ``src`` (sorted), as ``(series_id, hour, dt,
        value)`` plus ``tsbase_<day>``; returns False when it stays plain ``(series_id, ts, value)``.

        DuckDB bit-packs a column in groups of 2,048 values, and one series boundary in a group widens
        the whole group's timestamp deltas to ~27 bits: absolute timestamps took 1.08 B/sample even when
        perfectly regular. Here each (series, hour) chunk stores the gap to the previous sample (its
        first row repeats the next gap, so a regular series is one constant), and ``tsbase_<day>`` keeps
        each chunk's first and last timestamp. Reads rebuild ``ts = first + cumsum(dt)`` in numpy and
        filter by ``hour`` in SQL. Days with timestamps outside their UTC day (clamped far past/future
        data) keep the plain layout.
        """
        table = f"samples_{day}"
        row = cur.execute(f"SELECT count(*), min(ts), max(ts) FROM {src}").fetchone()
        if not row or not row[0] or row[1] < day_start or row[2] >= day_start + DAY_MS:
            cur.execute(f"CREATE TABLE {table} AS SELECT series_id, ts, value FROM {src}")
            return False
        cur.execute(
            f"""
            CREATE TABLE {table} AS
            WITH s AS (SELECT series_id, ts, value, rowid AS r, ((ts - {day_start}) // {HOUR_MS})::UTINYINT AS hour
                       FROM {src})
            SELECT series_id, hour,
                   coalesce(ts - lag(ts) OVER w, lead(ts) OVER w - ts, 0)::INTEGER AS dt, value
            FROM s WINDOW w AS (PARTITION BY series_id, hour ORDER BY r)
            ORDER BY r
            """
        )
        cur.execute(
            f"CREATE TABLE tsbase_{day} AS SELECT series_id, ((ts - {day_start}) // {HOUR_MS})::UTINYINT AS hour, "
            f"arg_min(ts, rowid) AS first_ts, arg_max(ts, rowid) AS last_ts, count(*)::INTEGER AS n "
            f"FROM {src} GROUP BY 1, 2 ORDER BY 1, 2"
        )
        return True

    @staticmethod
    def _absolute_sql(day: str, *, with_row: bool = False) -> str:
        """A SELECT of a delta-layout day as ``(series_id, ts, value)`` in stored order, in SQL
        (``with_row``: and the stored row number ``r``)."""
        return (
            f"SELECT s.series_id, (b.first_ts + sum(s.dt) OVER w - first_value(s.dt) OVER w)::BIGINT AS ts, "
            f"s.value{', s.r' if with_row else ''} FROM (SELECT *, rowid AS r FROM samples_{day}) s "
            f"JOIN tsbase_{day} b ON b.series_id = s.series_id AND b.hour = s.hour "
            "WINDOW w AS (PARTITION BY s.series_id, s.hour ORDER BY s.r ROWS BETWEEN UNBOUNDED PRECEDING "
            "AND CURRENT ROW) ORDER BY s.r"
        )

    @_changes_tables
    def _to_plain_layout(self, cur: duckdb.DuckDBPyConnection, day: str) -> None:
        """Back to ``(series_id, ts, value)``, before late rows are appended to a sealed day."""
        table = f"samples_{day}"
        cur.execute(f"CREATE TABLE {table}_plain AS {self._absolute_sql(day)}")
        cur.execute(f"DROP TABLE {table}")
        cur.execute(f"DROP TABLE tsbase_{day}")
        cur.execute(f"ALTER TABLE {table}_plain RENAME TO {table}")

    @_changes_tables
    def _shrink(self, cur: duckdb.DuckDBPyConnection) -> bool:
        return _head.shrink(cur)  # the stages are copied into new tables

    def _rollup(
        self, cur: duckdb.DuckDBPyConnection, table: str, day_start: int,
        which: Sequence[tuple[str, int, bool]] = (("rollup_5m", 5 * MINUTE_MS, False), ("rollup_1h", HOUR_MS, True)),
    ) -> None:
        """Rollups of one whole day (``table``: a table or a parenthesised SELECT of series_id, ts,
        value), written sorted by (series_id, ts)."""
        for rtable, width, full in which:
            # buckets are [start, start + width), named by their start, so a day's buckets stay inside it.
            # inc: the reset-adjusted increase from the previous sample (across buckets); reset_sum: the
            # value before each drop inside the bucket (PromQL's rate adds those); dups: rows sharing a
            # timestamp (such a bucket cannot answer exactly). The hourly rollup keeps the first/last
            # times absolute, the 5-minute one as offsets from the bucket start (they compress to
            # nearly nothing on regular scrapes).
            if full:
                cols = "first, last, first_ts, last_ts"
                extra = "arg_min(value, ts), arg_max(value, ts), min(ts), max(ts)"
            else:
                cols = "last, first, first_off, last_off"
                extra = "arg_max(value, ts), arg_min(value, ts), (min(ts) - b)::INTEGER, (max(ts) - b)::INTEGER"
            cur.execute(
                f"""
                INSERT INTO {rtable} (series_id, ts, cnt, sum, min, max, {cols}, inc, reset_sum, dups)
                WITH r AS (
                    SELECT series_id, ts, value, (floor(ts / {width}.0) * {width})::BIGINT AS b
                    FROM {table} WHERE value IS NOT NULL
                ), s AS (
                    SELECT series_id, ts, value, b, value - lag(value) OVER w AS d,
                           CASE WHEN lag(b) OVER w = b THEN lag(value) OVER w END AS prev
                    FROM r WINDOW w AS (PARTITION BY series_id ORDER BY ts)
                )
                SELECT series_id, b, count(*)::INTEGER, sum(value), min(value), max(value), {extra},
                       sum(CASE WHEN d IS NULL THEN 0 WHEN d < 0 THEN value ELSE d END),
                       sum(CASE WHEN value < prev THEN prev ELSE 0 END),
                       (count(*) - count(DISTINCT ts))::INTEGER
                FROM s GROUP BY series_id, b ORDER BY series_id, b
                """
            )

    def _main_days(self) -> set[str]:
        """The days (``YYYYMMDD``) with a sealed table in the main file."""
        return {t[len("samples_") :] for t in self.partitions()}

    def partitions(self) -> list[str]:
        """The sealed days' tables in the main file (unsealed days are stages in the head file)."""
        rows = (
            self.cursor()
            .execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND table_name LIKE 'samples_%' "
                "ORDER BY 1",
                [self._main_db],
            )
            .fetchall()
        )
        return [r[0] for r in rows if _PART_RE.match(r[0])]

    def _apply_retention(self, cur: duckdb.DuckDBPyConnection) -> None:
        # like Prometheus, retention counts back from the newest sample, not the wall clock, so a
        # back-fill of old data is not dropped the moment it lands
        row = cur.execute("SELECT max(ts) FROM samples_head").fetchone()
        newest = max([row[0] if row and row[0] is not None else 0, *self._last_ms.values()], default=0)
        if newest <= 0:
            return
        horizon = newest - self.options.retention_ms
        for table in self.partitions():
            m = _PART_RE.match(table)
            assert m
            day_start = _head.day_start(m.group(1))
            if day_start + DAY_MS <= horizon:
                # the raw day goes; its 5-minute rollup is made now, from the raw data, once
                day = m.group(1)
                source = f"({self._absolute_sql(day)})" if day in self._delta_days else table
                with self._read_cache.changing(), transaction(cur):
                    cur.execute("DELETE FROM rollup_5m WHERE ts >= ? AND ts < ?", [day_start, day_start + DAY_MS])
                    self._rollup(cur, source, day_start, (("rollup_5m", 5 * MINUTE_MS, False),))
                    cur.execute(f"DROP TABLE {table}")
                    cur.execute(f"DROP TABLE IF EXISTS tsbase_{day}")
                self._delta_days = self._delta_days - {m.group(1)}
                log.info("retention: dropped %s", table)
        rhorizon = newest - self.options.rollup_retention_ms
        cur.execute("DELETE FROM rollup_5m WHERE ts < ?", [rhorizon])
        cur.execute("DELETE FROM rollup_1h WHERE ts < ?", [rhorizon])

    # ------------------------------------------------------------------ reads
    def select_ids(self, matchers: Sequence[Matcher]) -> np.ndarray:
        with self._lock:
            return self.index.select(matchers)

    def key_of(self, sid: int) -> SeriesKey:
        return self.index.keys[sid]

    def _sample_sources(self, start_ms: int, end_ms: int) -> list[str]:
        """Tables to read, oldest writes first: sealed days, unsealed days' stages, the head (a view)."""
        lo, hi = _day_of(start_ms), _day_of(end_ms)
        cur = self.cursor()
        try:
            stages = [_head.stage(d) for d in _head.stage_days(cur) if lo <= d <= hi]
        finally:
            cur.close()
        return [t for t in self.partitions() if lo <= t[8:] <= hi] + stages + ["samples_head"]

    def select(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, *, limit_samples: int | None = None
    ) -> list[SeriesData]:
        ids = self.select_ids(matchers)
        return self.read_ids(ids, start_ms, end_ms, limit_samples=limit_samples)

    def read_ids(
        self, ids: np.ndarray, start_ms: int, end_ms: int, *, limit_samples: int | None = None
    ) -> list[SeriesData]:
        """Samples of the given series ids in [start_ms, end_ms], deduplicated (last write wins)."""
        if ids.size == 0:
            return []
        sid, ts, vals, stale = self.read_arrays(ids, start_ms, end_ms, limit_samples=limit_samples)
        if len(sid) == 0:
            return []
        bounds = np.flatnonzero(np.diff(sid)) + 1
        out: list[SeriesData] = []
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(sid)]])
        keys = self.index.keys
        for a, b in zip(starts, ends, strict=True):
            key = keys.get(int(sid[a]))
            if key is None:
                continue
            out.append(SeriesData(key, ts[a:b], vals[a:b], stale[a:b]))
        return out

    def read_arrays(
        self,
        ids: np.ndarray,
        start_ms: int,
        end_ms: int,
        *,
        limit_samples: int | None = None,
        rank: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(series, ts, value, stale)`` of ``ids`` in ``[start_ms, end_ms]``, sorted by (series, ts).

        One array per column, for readers that work on whole columns (the PromQL evaluator). ``series``
        is the series id, or ``rank[series id]`` when ``rank`` is given (rows whose rank is negative are
        dropped), so a caller gets its own series order from the one sort. A duplicate (series, ts)
        keeps the last write: later day tables and the head win over earlier sources, and within a
        source the later row. Stale markers have ``stale`` set and value NaN. Raises
        :class:`LimitExceeded` past ``limit_samples``.
        """
        empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, bool))
        if ids.size == 0:
            return empty
        return order_parts(self._read_parts(ids, start_ms, end_ms, limit_samples, rank))

    def read_packed_arrays(
        self,
        ids: np.ndarray,
        start_ms: int,
        end_ms: int,
        *,
        limit_samples: int | None = None,
        rank: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`read_arrays` as ``(series, off, ts, value, stale)``: the series present, in order,
        and where each one's rows start (``off[i]:off[i + 1]``) instead of a series number per row."""
        if ids.size == 0:
            z = np.empty(0, np.int64)
            return z, np.zeros(1, np.int64), z.copy(), np.empty(0), np.empty(0, bool)
        return order_parts_packed(self._read_parts(ids, start_ms, end_ms, limit_samples, rank))

    def _read_parts(
        self, ids: np.ndarray, start_ms: int, end_ms: int, limit: int | None, rank: np.ndarray | None
    ) -> list[Part]:
        for attempt in (0, 1):
            try:
                return self._read_sources(ids, start_ms, end_ms, limit, rank)
            except (duckdb.CatalogException, duckdb.BinderException):
                # a day was sealed or unsealed between choosing the layout and reading it
                if attempt:
                    raise
                self._delta_days = self._load_delta_days()
        raise AssertionError("unreachable")

    def _read_sources(
        self, ids: np.ndarray, lo: int, hi: int, limit: int | None, rank: np.ndarray | None = None
    ) -> list[Part]:
        """Each source's rows, its series numbered by ``rank`` when given (negative ranks dropped)."""
        delta = self._delta_days
        gen = self._read_cache.generation()
        digest = selector_digest(ids, rank) if gen is not None else b""
        cur = self.cursor()
        cur.register("_ids", pa.table({"id": pa.array(ids.astype(np.int32))}))
        parts: list[Part] = []
        total = 0
        try:
            for table in self._sample_sources(lo, hi):
                left = None if limit is None else limit - total
                day = table[len("samples_") :]
                part = None
                if gen is not None and table != "samples_head":
                    part = self._read_cached(cur, table, lo, hi, left, rank, gen, digest, day in delta)
                if part is not None:
                    pass
                elif day in delta:
                    part = self._read_delta_day(cur, day, lo, hi, left, rank)
                else:
                    part = _read_plain(cur, table, lo, hi, left, rank)
                total += part.n if isinstance(part, Ranges) else len(part[0])
                if limit is not None and total > limit:
                    raise LimitExceeded(
                        f"query would load more than {limit} samples, over the limit of {limit} "
                        "(query.max_samples)"
                    )
                parts.append(part)
        finally:
            cur.unregister("_ids")
            cur.close()
        return parts

    def _read_cached(
        self, cur: duckdb.DuckDBPyConnection, table: str, lo: int, hi: int, limit: int | None,
        rank: np.ndarray | None, gen: int, digest: bytes, delta: bool,
    ) -> Part | None:
        """A day table's or stage's rows in ``[lo, hi]`` through the read cache: the whole hours
        around the range are read once, ranked and sorted, kept, and cut to the range on each read.
        None where the cache does not apply (the range covers under 3 hours of the table's day, or
        the whole hours would pass ``limit``): the caller reads as usual."""
        day = table[-8:]
        if not day.isdigit():
            return None
        day_start = _head.day_start(day)
        a = max((lo // HOUR_MS) * HOUR_MS, day_start)
        b = min((hi // HOUR_MS + 1) * HOUR_MS, day_start + DAY_MS) - 1
        if min(hi, b) - max(lo, a) < 3 * HOUR_MS:
            return None  # widening a short range to whole hours would read more than it saves
        if not delta and table.startswith("samples_"):
            # a plain sealed day may hold timestamps outside its UTC day (clamped data): leave it be
            return None
        key = (table, a, b, digest)
        hit = self._read_cache.get(gen, key)
        if hit is None:
            if delta:
                part = self._read_delta_day(cur, day, a, b, limit, rank, limit_range=(lo, hi))
            else:
                plain = _read_plain(cur, table, a, b, limit, rank)
                if limit is not None and len(plain[0]) > limit:
                    return None  # the exact range may still fit: read it as usual
                part = plain
            r = Ranges.of_sorted(sorted_part(part))
            span = np.array([r.ts.min(), r.ts.max()] if len(r.ts) else [lo, hi], dtype=np.int64)
            no_stale = np.empty(0, bool)
            entry: tuple[np.ndarray, ...] = (
                r.ts, r.vals, r.stale if r.stale is not None else no_stale, r.counts, r.starts, span
            )
            for arr in entry:
                arr.flags.writeable = False  # shared by later reads
            self._read_cache.put(gen, key, entry)
        else:
            entry = hit
        ts, vals, stale, counts, starts, span = entry
        stale_or_none = stale if len(stale) else None
        if int(span[0]) >= lo and int(span[1]) <= hi:
            return Ranges(ts, vals, stale_or_none, starts, counts)
        has = np.flatnonzero(counts)
        if len(has) * 64 > len(ts):  # short series: one mask over the rows
            keep = (ts >= lo) & (ts <= hi)
            sid = np.repeat(np.arange(len(counts), dtype=np.int64), counts)[keep]
            return sid, ts[keep], vals[keep], stale[keep] if len(stale) else np.zeros(len(sid), dtype=bool)
        new_starts = starts.copy()
        new_counts = counts.copy()
        st, ct = starts.tolist(), counts.tolist()
        for s_ in has.tolist():
            a = st[s_]
            seg = ts[a : a + ct[s_]]
            i = int(np.searchsorted(seg, lo, side="left"))
            j = int(np.searchsorted(seg, hi, side="right"))
            new_starts[s_] = a + i
            new_counts[s_] = j - i
        return Ranges(ts, vals, stale_or_none, new_starts, new_counts)

    def _read_delta_day(
        self, cur: duckdb.DuckDBPyConnection, day: str, lo: int, hi: int, limit: int | None,
        rank: np.ndarray | None = None, *, limit_range: tuple[int, int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rebuild a delta-layout day's timestamps for the hours that overlap ``[lo, hi]`` (series
        numbered by ``rank`` when given: per chunk, before the rows are made). ``limit`` counts the
        rows in ``limit_range`` (default ``[lo, hi]``)."""
        day_start = _head.day_start(day)
        h0 = max(0, (lo - day_start) // HOUR_MS)
        h1 = min(23, (hi - day_start) // HOUR_MS)
        params = {"h0": h0, "h1": h1}
        base = cur.sql(
            f"SELECT series_id, first_ts, last_ts, n FROM tsbase_{day} b SEMI JOIN _ids ON b.series_id = _ids.id "
            "WHERE hour >= $h0 AND hour <= $h1 ORDER BY series_id, hour",
            params=params,
        ).fetchnumpy()
        lens = base["n"].astype(np.int64)
        if limit is not None:  # chunks wholly inside [lo, hi] are surely loaded
            llo, lhi = limit_range if limit_range is not None else (lo, hi)
            inside = (base["first_ts"] >= llo) & (base["last_ts"] <= lhi)
            if int(lens[inside].sum()) > limit:
                raise LimitExceeded(
                    f"query would load more than {limit} samples, over the limit of {limit} (query.max_samples)"
                )
        if not len(lens):
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, bool)
        # the rows come back in stored order, (series, hour) as in tsbase, once put in rowid order; so
        # the series of each row follows from tsbase's counts and needs no column of its own
        res = _in_row_order(
            cur.sql(
                f"SELECT s.rowid AS r, s.dt, s.value FROM samples_{day} s "
                "SEMI JOIN _ids ON s.series_id = _ids.id WHERE s.hour >= $h0 AND s.hour <= $h1",
                params=params,
            ).to_arrow_table()
        )
        if int(lens.sum()) != res.num_rows:
            raise StoreError(f"samples_{day} and tsbase_{day} disagree ({res.num_rows} rows, {int(lens.sum())} indexed)")
        chunk_sid = base["series_id"].astype(np.int64)
        if rank is not None:
            chunk_sid = rank[chunk_sid]
        sid = np.repeat(chunk_sid, lens)
        dts = res.column("dt").to_numpy()
        vals, stale = _values_and_stale(res.column("value"))
        csum = np.cumsum(dts, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        ts = csum + np.repeat(base["first_ts"].astype(np.int64) - csum[starts], lens)
        unranked = rank is not None and int(chunk_sid.min()) < 0
        if unranked or int(base["first_ts"].min()) < lo or int(base["last_ts"].max()) > hi:
            keep = (ts >= lo) & (ts <= hi)
            if unranked:
                keep &= sid >= 0
            sid, ts, vals, stale = sid[keep], ts[keep], vals[keep], stale[keep]
        return sid, ts, vals, stale

    def read_rollup(self, ids: np.ndarray, start_ms: int, end_ms: int, resolution: str = "5m") -> pa.Table:
        """Rollup rows per series and bucket start ``ts`` (buckets cover ``[ts, ts + width)``; those
        starting in ``[start_ms, end_ms)`` are returned; rollups exist for sealed days): cnt, sum,
        min, max, last, inc; ``1h`` also has first, first_ts and last_ts. A bucket written twice (late
        data after compaction) is merged here; its 5-minute ``last`` is then the later write's."""
        if resolution not in ("5m", "1h"):
            raise ValueError(f"unknown rollup resolution {resolution!r} (5m or 1h)")
        table = f"rollup_{resolution}"
        if resolution == "1h":
            firsts = (
                "arg_min(first, first_ts) AS first, arg_max(last, last_ts) AS last, "
                "min(first_ts) AS first_ts, max(last_ts) AS last_ts, "
            )
        else:
            firsts = "last(last) AS last, "
        cur = self.cursor()
        cur.register("_ids", pa.table({"id": pa.array(ids.astype(np.int32))}))
        try:
            return cur.sql(
                f"SELECT series_id, ts, sum(cnt)::BIGINT AS cnt, sum(sum) AS sum, min(min) AS min, max(max) AS max, "
                f"{firsts}sum(inc) AS inc FROM {table} r SEMI JOIN _ids ON r.series_id = _ids.id "
                "WHERE ts >= ? AND ts < ? GROUP BY series_id, ts ORDER BY series_id, ts",
                params=[start_ms, end_ms],
            ).to_arrow_table()
        finally:
            cur.unregister("_ids")
            cur.close()

    def _ids_for_sets(self, matcher_sets: Sequence[Sequence[Matcher]]) -> np.ndarray | None:
        if not matcher_sets:
            return None
        parts = [self.select_ids(ms) for ms in matcher_sets]
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)

    def _filter_time(self, ids: np.ndarray, start_ms: int | None, end_ms: int | None) -> np.ndarray:
        """Keep series that have samples in [start_ms, end_ms] (coarse: by first/last seen)."""
        if (start_ms is None and end_ms is None) or ids.size == 0:
            return ids
        lo = start_ms if start_ms is not None else -(2**62)
        hi = end_ms if end_ms is not None else 2**62
        cur = self.cursor()
        sources = self._sample_sources(max(lo, 0), max(min(hi, 2**50), 0))
        delta = self._delta_days
        union = " UNION ALL ".join(
            f"SELECT DISTINCT series_id FROM tsbase_{t[8:]} WHERE last_ts >= $lo AND first_ts <= $hi"
            if t[8:] in delta
            else f"SELECT DISTINCT series_id FROM {t} WHERE ts >= $lo AND ts <= $hi"
            for t in sources
        )
        cur.register("_ids", pa.table({"id": pa.array(ids.astype(np.int32))}))
        try:
            res = cur.execute(
                f"SELECT DISTINCT series_id FROM ({union}) s SEMI JOIN _ids ON s.series_id = _ids.id",
                {"lo": lo, "hi": hi},
            ).fetchnumpy()
        finally:
            cur.unregister("_ids")
            cur.close()
        return np.sort(res["series_id"].astype(np.int64))

    def series(
        self,
        matcher_sets: Sequence[Sequence[Matcher]],
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[SeriesKey]:
        ids = self._ids_for_sets(matcher_sets)
        if ids is None:
            raise StoreError("at least one match[] selector is required")
        ids = self._filter_time(ids, start_ms, end_ms)
        keys = self.index.keys
        return [keys[int(i)] for i in ids if int(i) in keys]

    def label_names(
        self,
        matcher_sets: Sequence[Sequence[Matcher]] = (),
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[str]:
        ids = self._ids_for_sets(matcher_sets)
        if ids is not None or start_ms is not None or end_ms is not None:
            if ids is None:
                ids = np.asarray(sorted(self.index.keys), dtype=np.int64)
            ids = self._filter_time(ids, start_ms, end_ms)
        with self._lock:
            return self.index.label_names(ids)

    def label_values(
        self,
        name: str,
        matcher_sets: Sequence[Sequence[Matcher]] = (),
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[str]:
        ids = self._ids_for_sets(matcher_sets)
        if ids is not None or start_ms is not None or end_ms is not None:
            if ids is None:
                ids = np.asarray(sorted(self.index.keys), dtype=np.int64)
            ids = self._filter_time(ids, start_ms, end_ms)
        with self._lock:
            return self.index.label_values(name, ids)

    def metadata(self, metric: str | None = None) -> dict[str, list[MetricMetadata]]:
        cur = self.cursor()
        if metric:
            rows = cur.execute(
                "SELECT metric, type, help, unit FROM metadata WHERE metric = ?", [metric]
            ).fetchall()
        else:
            rows = cur.execute("SELECT metric, type, help, unit FROM metadata ORDER BY metric").fetchall()
        return {
            m: [
                MetricMetadata(
                    m,
                    MetricType(t) if t in MetricType._value2member_map_ else MetricType.UNKNOWN,
                    h or "",
                    u or "",
                )
            ]
            for m, t, h, u in rows
        }

    def stats(self) -> dict[str, Any]:
        cur = self.cursor()
        head = cur.execute("SELECT count(*) FROM samples_head").fetchone()
        parts = self.partitions()
        stages = _head.stage_days(cur)
        stored = 0
        for t in [*parts, *(_head.stage(d) for d in stages)]:
            r = cur.execute(f"SELECT count(*) FROM {t}").fetchone()
            stored += r[0] if r else 0
        main_bytes, head_bytes = _size(self.path), _size(self.head_path)
        return {
            "series": len(self.index),
            "head_samples": head[0] if head else 0,
            "compacted_samples": stored,
            "partitions": parts,
            "staged_days": stages,
            "file_bytes": main_bytes + head_bytes,  # what the data directory takes, both files
            "main_file_bytes": main_bytes,
            "head_file_bytes": head_bytes,
            "used_bytes": self._used_bytes(cur),
            "wal_bytes": sum(_size(p.with_name(p.name + ".wal")) for p in (self.path, self.head_path)),
        }

    def _used_bytes(self, cur: duckdb.DuckDBPyConnection) -> int:
        """Bytes in used blocks of both files: their size minus free blocks that later writes will reuse."""
        rows = cur.execute(
            "SELECT block_size, used_blocks FROM pragma_database_size() WHERE database_name IN (?, ?)",
            [self._main_db, _head.HEAD],
        ).fetchall()
        return sum(int(b) * int(u) for b, u in rows)

    # ------------------------------------------------------------------ catalog
    def _catalog_write(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        with self._lock:
            cur = self.cursor()
            try:
                cur.execute("BEGIN")
                cur.executemany(sql, rows)
                cur.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()
        return len(rows)

    def append_events(self, events: Sequence[Event]) -> int:
        return self._catalog_write("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", [event_row(e) for e in events])

    def query_events(
        self,
        start_ms: int,
        end_ms: int,
        kind: str | None = None,
        entity: Mapping[str, str] | None = None,
    ) -> list[Event]:
        sql = "SELECT ts, end_ts, kind, severity, source, entity, attributes FROM events WHERE ts >= ? AND ts <= ?"
        params: list[Any] = [start_ms, end_ms]
        if kind:
            sql += " AND (kind = ? OR kind LIKE ?)"
            params += [kind, kind + ".%"]
        cur = self.cursor()
        rows = cur.execute(sql + " ORDER BY ts", params).fetchall()
        out = []
        for ts, end_ts, k, sev, src, ent, attrs in rows:
            ent_d = json.loads(ent)
            if entity and any(ent_d.get(a) != b for a, b in entity.items()):
                continue
            out.append(Event(ts, k, ent_d, json.loads(attrs), sev, src, end_ts))
        return out

    def upsert_entities(self, entities: Sequence[Entity]) -> int:
        now = int(time.time() * 1000)
        return self._catalog_write(
            "INSERT OR REPLACE INTO entities VALUES (?, ?, ?, ?, ?)",
            [(e.id, e.kind, _json(dict(e.labels)), _json(dict(e.attributes)), now) for e in entities],
        )

    def entities(self, kind: str | None = None) -> list[Entity]:
        sql = "SELECT id, kind, labels, attributes FROM entities"
        rows = (
            self.cursor().execute(sql + " WHERE kind = ? ORDER BY id", [kind]).fetchall()
            if kind
            else self.cursor().execute(sql + " ORDER BY id").fetchall()
        )
        return [Entity(i, k, json.loads(lb), json.loads(a)) for i, k, lb, a in rows]

    def append_relations(self, relations: Sequence[Relation]) -> int:
        return self._catalog_write(
            "INSERT INTO relations VALUES (?, ?, ?, ?, ?)",
            [(r.src, r.kind, r.dst, r.start_ms, r.end_ms) for r in relations],
        )

    def relations(self) -> list[Relation]:
        rows = self.cursor().execute("SELECT src, kind, dst, start_ms, end_ms FROM relations").fetchall()
        return [Relation(*r) for r in rows]

    def append_spans(self, spans: Sequence[Span]) -> int:
        return self._catalog_write(
            "INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [span_row(s) for s in spans]
        )

    def query_spans(self, trace_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        cur = self.cursor()
        sql = "SELECT * FROM spans"
        params: list[Any] = []
        if trace_id:
            sql += " WHERE trace_id = ?"
            params.append(trace_id)
        cur.execute(sql + f" ORDER BY start_ns LIMIT {int(limit)}", params)
        cols = [d[0] for d in cur.description or []]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def append_logs(self, logs: Sequence[LogRecord]) -> int:
        return self._catalog_write("INSERT INTO logs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [log_row(r) for r in logs])

    def append_lineage(self, events: Sequence[LineageEvent]) -> int:
        return self._catalog_write("INSERT INTO lineage VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [lineage_row(e) for e in events])

    def append_configs(self, snapshots: Sequence[ConfigSnapshot]) -> int:
        return self._catalog_write("INSERT INTO configs VALUES (?, ?, ?, ?)", [config_row(c) for c in snapshots])

    def count(self, table: str) -> int:
        if not re.fullmatch(r"[a-z_0-9]+", table):
            raise ValueError(table)
        row = self.cursor().execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    def iter_tables(self) -> Iterator[str]:
        for (t,) in self.cursor().execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall():
            yield t


def _in_row_order(res: pa.Table) -> pa.Table:
    """``res`` (with a row number column ``r``) in ``r`` order.

    DuckDB's parallel scan hands back row groups in any order. The result is cut into runs of
    consecutive row numbers (a selector's series are a few long runs of a sorted day); runs are
    disjoint, so putting them in order by their first row, as zero-copy slices, orders every row.
    Rows are sorted only when there are too many runs.
    """
    if res.num_rows <= 1:
        return res
    firsts, lasts, starts = [], [], []
    at = 0
    for chunk in res.column("r").chunks:
        r = chunk.to_numpy()  # one chunk: no copy
        if not len(r):
            continue
        cuts = np.flatnonzero(r[1:] != r[:-1] + 1) + 1
        a = np.concatenate([[0], cuts])
        firsts.append(r[a])
        lasts.append(r[np.append(cuts, len(r)) - 1])
        starts.append(a + at)
        at += len(r)
        if sum(len(f) for f in firsts) > 65_536:
            return res.take(pa.array(np.argsort(res.column("r").to_numpy(), kind="stable")))
    first, last, start = np.concatenate(firsts), np.concatenate(lasts), np.concatenate(starts)
    if not bool((last[:-1] >= first[1:]).any()):
        return res
    order = np.argsort(first)
    length = last - first + 1
    return pa.concat_tables([res.slice(int(start[i]), int(length[i])) for i in order])


def _read_plain(
    cur: duckdb.DuckDBPyConnection, table: str, lo: int, hi: int, limit: int | None,
    rank: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows of the registered ``_ids`` in ``table`` with ``lo <= ts <= hi`` (at most
    ``limit + 1`` of them, so a caller sees that the limit is passed), as columns; series ids
    mapped to their label-order ``rank`` when one is given."""
    cap = f" LIMIT {limit + 1}" if limit is not None else ""
    res = cur.sql(
        f"SELECT series_id, ts, value FROM {table} s SEMI JOIN _ids ON s.series_id = _ids.id "
        f"WHERE ts >= $lo AND ts <= $hi{cap}",
        params={"lo": lo, "hi": hi},
    ).to_arrow_table()
    vals, stale = _values_and_stale(res.column("value"))
    part = (
        res.column("series_id").to_numpy().astype(np.int64),
        res.column("ts").to_numpy().astype(np.int64, copy=False),
        vals,
        stale,
    )
    if rank is not None and len(part[0]):
        part = ranked(part, rank)
    return part


def _values_and_stale(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Values as float64 (stale markers, stored as NULL, become NaN) and the stale flags."""
    if col.null_count == 0:
        return col.to_numpy().astype(np.float64, copy=False), np.zeros(len(col), dtype=bool)
    return (
        col.fill_null(math.nan).to_numpy().astype(np.float64, copy=False),
        col.is_null().to_numpy(zero_copy_only=False),
    )


def _hist_payload(h: Any) -> dict[str, Any]:
    return {
        "scale": h.scale,
        "count": h.count,
        "sum": h.sum,
        "zero_count": h.zero_count,
        "zero_threshold": h.zero_threshold,
        "positive": {"offset": h.positive_offset, "counts": list(h.positive_counts)},
        "negative": {"offset": h.negative_offset, "counts": list(h.negative_counts)},
        "min": h.min,
        "max": h.max,
    }


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0

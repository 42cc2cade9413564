"""Bytes per sample of the Sightglass DuckDB store on a day of DCGM data, and what other layouts would take.

    python bench/store_disk.py                         # 125 nodes x 8 GPUs x 20 metrics = 20,000 series x 24 h
    python bench/store_disk.py --nodes 25 --hours 24   # 4,000 series (~35 M samples), a few minutes
    python bench/store_disk.py --compact-every-min 1   # compact like a live server (every 60 s of data)

The samples go straight into ``DuckDBStore.append`` as one ``SampleBatch`` per ``--batch-min`` minutes
(10-s scrapes, same fleet and values as ``bench/ingest.py``), all on one UTC day. Compaction:
``--compact-every-min 0`` (default) forces one compaction at the end: every sample left moves into the day
partition at once, sorted by (series_id, ts) (the store may still compact on its own before that, in
slices, when its head passes ``StoreOptions.head_max_rows``). ``--compact-every-min N`` calls
``compact(force=False)`` after every N minutes of data, as the server's background compaction would
with live data (it moves what is older than ``head`` = 1 h, in slices), then forces the rest.

Prints the file size, each table's size alone (copied into a fresh DuckDB file), bytes/sample,
``pragma_storage_info``'s compression per column of the partition and rollups, and the size of the same
partition under alternative layouts (re-sorted, ts as INTEGER offset, wide per-GPU table).
Unless ``--no-vm``, the same samples also go into a real VictoriaMetrics (``victoria-metrics`` on PATH) and its
bytes/sample after a force merge are printed with the ratio. Reference (docs/performance-anchors §6, same
shape): VictoriaMetrics 1.19 B/sample, Prometheus blocks 2.43.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import _fleet
import _peers
import _storage
import duckdb
import numpy as np
import pyarrow as pa

from sightglass.model import SampleBatch, SeriesKey
from sightglass.store.duckdb import DB_FILENAME, DuckDBStore, StoreOptions

DAY0_MS = 1_795_132_800_000  # 2026-11-21T00:00:00Z


class VictoriaSink:
    """The same samples, batch by batch, into a real VictoriaMetrics (``/api/v1/import`` JSON lines)."""

    def __init__(self, fleet: _fleet.Fleet) -> None:
        self.srv = _peers.start_vm()
        self.metrics = [json.dumps(lab) for lab in fleet.series_labels()]
        self.samples = 0
        self.seconds = 0.0

    def send(self, vals: np.ndarray, ts: list[int]) -> None:
        """``vals``: (scrapes, series) for the scrape times ``ts``."""
        t0 = time.perf_counter()
        stamps = ",".join(map(str, ts))
        cols = vals.T.tolist()
        lines = [
            f'{{"metric":{m},"values":[{",".join(map(repr, col))}],"timestamps":[{stamps}]}}'
            for m, col in zip(self.metrics, cols, strict=True)
        ]
        status, body = self.srv.post("/api/v1/import", "\n".join(lines).encode(), {})
        if status >= 300:
            raise RuntimeError(f"victoria-metrics import -> {status}: {body[:300]!r}")
        self.samples += vals.size
        self.seconds += time.perf_counter() - t0

    def finish(self, last_ms: int, window_s: int) -> tuple[int, int, int]:
        """(samples VictoriaMetrics counts, bytes after flush, bytes after a full merge)."""
        _peers.vm_flush(self.srv)
        stored, deadline = 0, time.monotonic() + 60
        while time.monotonic() < deadline:
            stored = int(_peers.prom_query_scalar(
                self.srv, f'sum(count_over_time({{__name__=~"DCGM_.+"}}[{window_s}s]))', last_ms / 1000,
                {"nocache": "1"},
            ))  # fmt: skip
            if stored >= self.samples:
                break
            time.sleep(1)
            _peers.vm_flush(self.srv)
        flushed = _peers.dir_bytes(self.srv.data)
        _peers.vm_force_merge(self.srv)
        return stored, flushed, _peers.dir_bytes(self.srv.data)

    def stop(self) -> None:
        self.srv.stop()


def load(
    data: Path,
    fleet: _fleet.Fleet,
    scrapes: int,
    batch_scrapes: int,
    compact_every: int,
    sink: VictoriaSink | None = None,
    query_recent: bool = False,
) -> float:
    keys = [SeriesKey.of(lab["__name__"], lab) for lab in fleet.series_labels()]
    n = fleet.n_series
    store = DuckDBStore(data, options=StoreOptions(compact_every_s=1e9))
    t0 = time.perf_counter()
    t_store = 0.0
    t_append = 0.0
    try:
        for lo in range(0, scrapes, batch_scrapes):
            hi = min(lo + batch_scrapes, scrapes)
            mat = np.stack([fleet.values(s) for s in range(lo, hi)])
            vals = mat.ravel()
            ts = np.repeat(fleet.start_ms + np.arange(lo, hi, dtype=np.int64) * _fleet.STEP_MS, n)
            idx = np.tile(np.arange(n, dtype=np.int64), hi - lo)
            a = time.perf_counter()
            store.append(SampleBatch(series=keys, series_index=idx, ts_ms=ts, values=vals))
            t_store += time.perf_counter() - a
            t_append += time.perf_counter() - a
            if sink is not None:
                sink.send(mat, [fleet.start_ms + k * _fleet.STEP_MS for k in range(lo, hi)])
            if compact_every and hi % compact_every == 0:
                a = time.perf_counter()
                _compact(store, force=False)
                t_store += time.perf_counter() - a
            if hi % 360 == 0:
                print(
                    f"  {hi * _fleet.STEP_MS / 3_600_000:.0f} h loaded, {time.perf_counter() - t0:,.0f} s",
                    flush=True,
                )
        if query_recent:
            recent_reads(store, fleet.start_ms + (scrapes - 1) * _fleet.STEP_MS)
        a = time.perf_counter()
        _compact(store, force=True)
    finally:
        store.close()
    _storage.compact_store(data)  # a no-op move, then a clean CHECKPOINT from a fresh connection
    LOAD_TIMES["append_s"] = t_append
    return t_store + time.perf_counter() - a


LOAD_TIMES: dict[str, float] = {}


def recent_reads(store: DuckDBStore, newest_ms: int) -> None:
    """Time ``read_arrays`` of every series over the newest 15 min / 1 h / 6 h, before the final compaction
    (recent data is then in the head and the open day's slices, as on a live server). Median of 5."""
    ids = np.arange(len(store.index), dtype=np.int64)
    st = store.stats()
    print(f"  recent reads ({len(ids):,} series; head {st['head_samples']:,} samples, "
          f"open day {st['compacted_samples']:,} compacted):")  # fmt: skip
    for label, span in (("15 min", 900_000), ("1 h", 3_600_000), ("6 h", 6 * 3_600_000)):
        times, n = [], 0
        for _ in range(5):
            t = time.perf_counter()
            c = time.process_time()
            n = len(store.read_arrays(ids, newest_ms - span, newest_ms)[0])
            times.append((time.perf_counter() - t, time.process_time() - c))
        wall = sorted(x[0] for x in times)[2]
        cpu = sorted(x[1] for x in times)[2]
        print(f"    last {label:<6}: {n:>11,} samples, {wall * 1000:8.1f} ms wall, {cpu * 1000:8.1f} ms CPU (median of 5)")


def _compact(store: DuckDBStore, *, force: bool) -> None:
    try:
        store.compact(force=force)
    except duckdb.Error as e:  # the rows moved before compact()'s final CHECKPOINT failed
        _storage.COMPACT_ERRORS.append(f"{type(e).__name__}: {e}")


def alternatives(data: Path, part: str, fleet: _fleet.Fleet, samples: int) -> list[tuple[str, int]]:
    """Sizes of the same day of samples under other layouts, each alone in a fresh file."""
    con = duckdb.connect(str(data / DB_FILENAME), config={"threads": 2})
    out: list[tuple[str, int]] = []
    try:
        # series id -> (gpu index, metric index), from the series table
        rows = con.execute("SELECT id, metric, labels FROM series").fetchall()
        metric_no = {m: i for i, (m, _, _) in enumerate(_fleet.METRICS)}
        uuid_no: dict[str, int] = {}
        for node in range(fleet.nodes):
            for g in range(_fleet.GPUS_PER_NODE):
                uuid_no[fleet.gpu_labels(node, g)["UUID"]] = node * _fleet.GPUS_PER_NODE + g
        ids, gpus, mets = [], [], []
        for sid, metric, labels in rows:
            if metric in metric_no:
                ids.append(sid)
                gpus.append(uuid_no[json.loads(labels)["UUID"]])
                mets.append(metric_no[metric])
        con.register("sid_map", pa.table({"sid": ids, "gpu": gpus, "m": mets}))
        stored = part
        day = part[len("samples_") :]
        has_base = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [f"tsbase_{day}"]
        ).fetchone()
        if has_base and has_base[0]:  # sealed with timestamp deltas: the layouts below start from plain ts
            con.execute(f"CREATE TEMP VIEW part_plain AS {DuckDBStore._absolute_sql(day)}")
            part = "part_plain"
        day0 = con.execute(f"SELECT min(ts) // 86400000 * 86400000 FROM {part}").fetchone()[0]  # type: ignore[index]
        wide_cols = ", ".join(
            f"max(value) FILTER (WHERE m = {i}) AS {name.lower()}"
            for i, (name, _, _) in enumerate(_fleet.METRICS)
        )
        layouts = [
            ("as stored (day table alone)", f"SELECT * FROM {stored}"),
            ("plain (series_id, ts, value)", f"SELECT * FROM {part}"),
            ("re-sorted by (series_id, ts)", f"SELECT * FROM {part} ORDER BY series_id, ts"),
            ("sorted by (series_id, ts) within 1-hour slices (compaction moving whole hours)",
             f"SELECT * FROM {part} ORDER BY ts // 3600000, series_id, ts"),
            ("sorted by (series_id, ts) within 10-minute slices",
             f"SELECT * FROM {part} ORDER BY ts // 600000, series_id, ts"),
            ("sorted, ts as INTEGER ms since the day's start",
             f"SELECT series_id, (ts - {day0})::INTEGER AS ts_off, value FROM {part} ORDER BY series_id, ts"),
            ("sorted, value as FLOAT (lossy, for scale only)",
             f"SELECT series_id, ts, value::FLOAT AS value FROM {part} ORDER BY series_id, ts"),
            ("wide: one row per GPU per scrape, one DOUBLE per metric, sorted by (gpu, ts)",
             f"SELECT gpu, ts, {wide_cols} FROM {part} JOIN sid_map ON sid = series_id "
             "GROUP BY gpu, ts ORDER BY gpu, ts"),
            ("sorted, integral values as BIGINT + the rest as DOUBLE (two nullable columns, lossless)",
             f"SELECT series_id, ts, CASE WHEN value = round(value) AND abs(value) < 1e18 THEN value::BIGINT END "
             f"AS ival, CASE WHEN NOT (value = round(value) AND abs(value) < 1e18) THEN value END AS fval "
             f"FROM {part} ORDER BY series_id, ts"),
            ("arrival order (scrape by scrape), for reference",
             f"SELECT * FROM {part} ORDER BY ts, series_id"),
            ("  sorted: series_id column alone", f"SELECT series_id FROM {part} ORDER BY series_id, ts"),
            ("  sorted: ts column alone", f"SELECT ts FROM {part} ORDER BY series_id, ts"),
            ("  sorted: value column alone", f"SELECT value FROM {part} ORDER BY series_id, ts"),
        ]  # fmt: skip
        rollups = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'rollup_%' ORDER BY 1"
            ).fetchall()
        ]
        for r in rollups:
            cols = [c[0] for c in con.execute(f"DESCRIBE {r}").fetchall()]
            slim = [c for c in cols if c in ("series_id", "ts", "cnt", "sum", "min", "max", "last")]
            layouts += [
                (f"{r} as stored", f"SELECT * FROM {r}"),
                (f"{r} sorted by (series_id, ts)", f"SELECT * FROM {r} ORDER BY series_id, ts"),
                (
                    f"{r} sorted, only ({', '.join(slim)})",
                    f"SELECT {', '.join(slim)} FROM {r} ORDER BY series_id, ts",
                ),
            ]
        for i, (name, _, _) in enumerate(_fleet.METRICS):
            layouts.append((f"  sorted: value column of {name} alone (x20 to compare)",
                            f"SELECT value FROM {part} JOIN sid_map ON sid = series_id WHERE m = {i} "
                            "ORDER BY series_id, ts"))  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="sgbench-alt-") as d:
            tmp = Path(d)
            base = _storage._empty_db_bytes(tmp)
            for name, sql in layouts:
                t = time.perf_counter()
                size = _storage.table_alone_bytes(con, sql, tmp, "alt") - base
                out.append((name, size))
                scale = len(_fleet.METRICS) if "x20" in name else 1
                print(
                    f"    {name:<80} {size * scale / samples:6.2f} B/sample  ({time.perf_counter() - t:.0f} s)",
                    flush=True,
                )
    finally:
        con.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--nodes", type=int, default=125, help="nodes of 8 GPUs x 20 metrics [125 -> 20,000 series]"
    )
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--batch-min", type=int, default=10, help="minutes of data per append [10]")
    ap.add_argument(
        "--compact-every-min", type=int, default=0, help="compact(force=False) every N minutes [0: once]"
    )
    ap.add_argument("--data", default=None, help="keep the store here (default: a temp dir, removed)")
    ap.add_argument("--no-alternatives", action="store_true")
    ap.add_argument(
        "--query-recent", action="store_true", help="time reads of the newest 15 min/1 h/6 h before the final compaction"
    )
    ap.add_argument(
        "--no-vm", action="store_true", help="skip VictoriaMetrics (by default the same samples go into one too)"
    )
    args = ap.parse_args(argv)
    fleet = _fleet.Fleet(nodes=args.nodes, start_ms=DAY0_MS)
    scrapes = int(args.hours * 360)
    per_min = 60_000 // _fleet.STEP_MS
    with tempfile.TemporaryDirectory(prefix="sgbench-disk-") as d:
        data = Path(args.data) if args.data else Path(d) / "data"
        print(f"{fleet.nodes} nodes x 8 GPUs x 20 metrics = {fleet.n_series:,} series x {scrapes:,} scrapes "
              f"= {fleet.n_series * scrapes:,} samples; compaction "
              f"{'every ' + str(args.compact_every_min) + ' min of data' if args.compact_every_min else 'once at the end'}",
              flush=True)  # fmt: skip
        batch_min = min(args.batch_min, args.compact_every_min) if args.compact_every_min else args.batch_min
        sink = VictoriaSink(fleet) if not args.no_vm and _peers.have(_peers.VM_BIN) else None
        try:
            secs = load(
                data, fleet, scrapes, batch_min * per_min, args.compact_every_min * per_min, sink, args.query_recent
            )
            vm = sink.finish(fleet.start_ms + (scrapes - 1) * _fleet.STEP_MS, scrapes * 10 + 10) if sink else None
        finally:
            if sink:
                sink.stop()
        rep = _storage.analyse(data)
        app = LOAD_TIMES.get("append_s", 0.0)
        print(
            f"  Sightglass loaded + compacted in {secs:,.0f} s ({rep.samples / secs:,.0f} samples/s); "
            f"append() alone {app:,.1f} s ({rep.samples / max(app, 1e-9):,.0f} samples/s, "
            f"{batch_min} min of data per append; it includes compactions the store ran on its own)"
        )
        print(_storage.format_report(rep, "Sightglass store"))
        if sink and vm:
            stored, flushed, merged = vm
            n = max(stored, 1)
            sg_part = rep.partition_bytes() / max(rep.samples, 1)
            sg_file = rep.dir_bytes / max(rep.samples, 1)
            print(
                f"VictoriaMetrics (same samples, /api/v1/import, {sink.seconds:,.0f} s incl. JSON encoding): "
                f"{stored:,} samples stored{'' if stored == sink.samples else f' of {sink.samples:,} SENT'}; "
                f"{flushed / n:.2f} B/sample after flush, {merged / n:.2f} after force_merge"
            )
            print(
                f"ratio Sightglass / VictoriaMetrics (merged): samples partition {sg_part / (merged / n):.2f}x, "
                f"data dir (both files, rollups, free blocks) {sg_file / (merged / n):.2f}x  (target <= 2x)"
            )
        parts = [t for t in rep.table_bytes if t.startswith("samples_") and t != "samples_head"]
        if _storage.COMPACT_ERRORS:
            print(
                f"note: DuckDBStore.compact() raised {len(_storage.COMPACT_ERRORS)}x: {_storage.COMPACT_ERRORS[0]}"
            )
        if parts and not args.no_alternatives:
            print(f"  the partition {parts[0]} under other layouts (each alone in a fresh file):")
            alternatives(data, parts[0], fleet, rep.table_rows[parts[0]])
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())

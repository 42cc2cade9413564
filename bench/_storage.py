"""Where a Sightglass store's bytes go: per-table size, bytes/sample, DuckDB's compression per column."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from sightglass.store.duckdb import DB_FILENAME, DuckDBStore, StoreOptions

try:
    from sightglass.store.head import HEAD, HEAD_FILENAME
except ImportError:  # a Sightglass before the head file (to measure before/after with one bench)
    HEAD, HEAD_FILENAME = "sg_head", "head.duckdb"


@dataclass
class StoreReport:
    samples: int = 0
    matching: int = 0  # samples of series whose metric name starts with ``metric_prefix``
    file_bytes: int = 0  # the main file
    head_file_bytes: int = 0  # the head file (recent and unsealed samples)
    dir_bytes: int = 0  # every file in the data directory: what a user sees (du --apparent-size)
    dir_disk_bytes: int = 0  # the same in allocated blocks (du)
    wal_bytes: int = 0
    table_bytes: dict[str, int] = field(default_factory=dict)  # each table alone, copied into a fresh file
    table_rows: dict[str, int] = field(default_factory=dict)
    compression: dict[str, list[tuple[str, str, int, int]]] = field(default_factory=dict)

    def partition_bytes(self) -> int:
        """Day tables, their timestamp bases (``tsbase_<day>``, sealed days), unsealed stages and the head."""
        return sum(
            b for t, b in self.table_bytes.items() if t.startswith(("samples_", "tsbase_", f"{HEAD}.stage_"))
        )


COMPACT_ERRORS: list[str] = []


def compact_store(data_dir: Path) -> int:
    """Open a stopped server's store, move every head sample into day partitions, CHECKPOINT.

    If ``DuckDBStore.compact`` fails on its final CHECKPOINT (seen with DuckDB 2.0: "other write
    transactions active"), the moved rows are already committed: close the store and CHECKPOINT from a
    fresh connection instead, and remember the error for the report.
    """
    store = DuckDBStore(data_dir, options=StoreOptions(compact_every_s=1e9))
    moved = -1
    try:
        moved = store.compact(force=True)
    except duckdb.Error as e:
        COMPACT_ERRORS.append(f"{type(e).__name__}: {e}")
    finally:
        store.close()
    con = duckdb.connect(str(data_dir / DB_FILENAME))
    try:
        con.execute("FORCE CHECKPOINT")
        if (data_dir / HEAD_FILENAME).exists():
            con.execute(f"ATTACH '{data_dir / HEAD_FILENAME}' AS {HEAD}")
            con.execute(f"FORCE CHECKPOINT {HEAD}")
    finally:
        con.close()
    return moved


def dir_sizes(data_dir: Path) -> tuple[int, int]:
    """``(apparent bytes, allocated bytes)`` of every file under ``data_dir``, like ``du``."""
    apparent = allocated = 0
    for p in data_dir.rglob("*"):
        if p.is_file():
            st = p.stat()
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def _empty_db_bytes(tmp: Path) -> int:
    p = tmp / "empty.duckdb"
    con = duckdb.connect(str(p))
    con.execute("CREATE TABLE x (a INTEGER)")
    con.execute("CHECKPOINT")
    con.close()
    return p.stat().st_size


def table_alone_bytes(con: duckdb.DuckDBPyConnection, select_sql: str, tmp: Path, name: str) -> int:
    """Bytes a query's result takes as the only table of a fresh DuckDB file (order preserved)."""
    p = tmp / f"{name}.duckdb"
    if p.exists():
        p.unlink()
    con.execute(f"ATTACH '{p}' AS t_{name}")
    try:
        con.execute(f"CREATE TABLE t_{name}.x AS {select_sql}")
        con.execute("CHECKPOINT " + f"t_{name}")
    finally:
        con.execute(f"DETACH t_{name}")
    size = p.stat().st_size
    p.unlink()
    return size


def compression_of(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str, int, int]]:
    """``(column, compression, segments, rows)`` from ``pragma_storage_info`` (validity columns skipped)."""
    rows = con.execute(
        "SELECT column_name, compression, count(*), sum(count) FROM pragma_storage_info(?) "
        "WHERE segment_type <> 'VALIDITY' GROUP BY 1, 2 ORDER BY 1, 3 DESC",
        [table],
    ).fetchall()
    return [(str(c), str(k), int(n), int(r)) for c, k, n, r in rows]


def analyse(
    data_dir: Path,
    tables: tuple[str, ...] = ("series",),
    metric_prefix: str = "DCGM_",
) -> StoreReport:
    """Size up a compacted, closed store: day partitions, head, ``tables`` and every ``rollup_*`` table."""
    path = data_dir / DB_FILENAME
    head = data_dir / HEAD_FILENAME
    rep = StoreReport(file_bytes=path.stat().st_size, head_file_bytes=head.stat().st_size if head.exists() else 0)
    rep.dir_bytes, rep.dir_disk_bytes = dir_sizes(data_dir)
    for p in (path, head):
        wal = p.with_name(p.name + ".wal")
        rep.wal_bytes += wal.stat().st_size if wal.exists() else 0
    con = duckdb.connect(str(path), config={"threads": 2})
    try:
        if head.exists():
            con.execute(f"ATTACH '{head}' AS {HEAD} (READ_ONLY)")
        main_db = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        # main-file tables by name; head-file tables as sg_head.<name> (samples_head is in the head
        # file since schema 3, a view in main)
        names = [
            r[0] if r[1] == main_db else f"{r[1]}.{r[0]}"
            for r in con.execute(
                "SELECT table_name, database_name FROM duckdb_tables() WHERE database_name IN (?, ?) ORDER BY 2, 1",
                [main_db, HEAD],
            ).fetchall()
        ]
        head_table = f"{HEAD}.samples_head" if f"{HEAD}.samples_head" in names else "samples_head"
        parts = [t for t in names if t.startswith(("samples_", f"{HEAD}.stage_")) and t != "samples_head"]
        with tempfile.TemporaryDirectory(prefix="sgbench-size-") as d:
            tmp = Path(d)
            base = _empty_db_bytes(tmp)
            rollups = [t for t in names if t.startswith("rollup_")]
            bases = [t for t in names if t.startswith("tsbase_")]
            for t in [*parts, *bases, head_table, *tables, *rollups]:
                if t not in names:
                    continue
                n = con.execute(f"SELECT count(*) FROM {t}").fetchone()
                rep.table_rows[t] = int(n[0]) if n else 0
                if rep.table_rows[t]:
                    q = t if "." in t else f'"{main_db}".main.{t}'
                    rep.table_bytes[t] = max(0, table_alone_bytes(con, f"SELECT * FROM {q}", tmp, "c") - base)
                    rep.compression[t] = compression_of(con, t)
        rep.samples = sum(rep.table_rows.get(t, 0) for t in [*parts, head_table])
        for t in [*parts, head_table]:
            row = con.execute(
                f"SELECT count(*) FROM {t} JOIN series ON series.id = {t}.series_id WHERE starts_with(metric, ?)",
                [metric_prefix],
            ).fetchone()
            rep.matching += int(row[0]) if row else 0
    finally:
        con.close()
    return rep


def format_report(rep: StoreReport, title: str) -> str:
    n = max(rep.samples, 1)
    lines = [
        f"{title}: {rep.samples:,} samples; data dir {rep.dir_bytes / 1e6:,.1f} MB = {rep.dir_bytes / n:.2f} B/sample "
        f"(du: {rep.dir_disk_bytes / n:.2f}): main file {rep.file_bytes / 1e6:,.1f} MB = {rep.file_bytes / n:.2f}, "
        f"head file {rep.head_file_bytes / 1e6:,.1f} MB = {rep.head_file_bytes / n:.2f} (WALs {rep.wal_bytes:,} B)",
        "  each table alone in a fresh file:",
    ]
    for t, b in rep.table_bytes.items():
        lines.append(
            f"    {t:<18} {rep.table_rows[t]:>13,} rows {b / 1e6:>10,.1f} MB  {b / n:>6.2f} B/sample"
        )
    part = rep.partition_bytes()
    lines.append(
        f"    {'= samples (days + tsbase + head)':<32} {part / 1e6:>10,.1f} MB  {part / n:>6.2f} B/sample"
    )
    lines.append("  compression DuckDB picked (pragma_storage_info: column, compression, segments, rows):")
    for t, comp in rep.compression.items():
        if not t.startswith(("samples_", "rollup_", "tsbase_", f"{HEAD}.")):
            continue
        per_col: dict[str, list[str]] = {}
        for col, kind, segs, rows in comp:
            per_col.setdefault(col, []).append(f"{kind} {segs} seg/{rows:,}")
        lines.append(f"    {t}: " + "; ".join(f"{c}: {', '.join(v)}" for c, v in per_col.items()))
    return "\n".join(lines)


def env_info() -> dict[str, Any]:
    return {"duckdb": duckdb.__version__, "cpus": os.cpu_count()}

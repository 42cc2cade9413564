"""The head file: recent and unsealed samples, kept out of the main DuckDB file.

DuckDB reuses the blocks that a rewrite frees but only shrinks a file when the free blocks are at its
end. The head is appended row by row and rewritten every compaction, and a day's hourly slices are
rewritten once more when the day is sealed, so with everything in one file the freed blocks end up
between sealed days and the file stayed 6-17x larger than its data. Here they live in their own file,
``<data>/head.duckdb``, attached to the main connection as :data:`HEAD`:

- ``samples_head``: new samples in arrival order (the main file keeps a view of the same name, so
  ``SELECT ... FROM samples_head`` still works on any cursor);
- ``stage_<YYYYMMDD>``: a day's whole-hour slices, moved out of the head sorted by (series_id, ts),
  until the day is sealed into the main file;
- ``seal_<YYYYMMDD>``: scratch for a seal (the day fully sorted), dropped when the seal is done;
- ``head_meta``: each stage's token (see below);
- ``stage_rollups``: hourly rollup buckets of the staged hours (the columns of ``rollup_1h``),
  rewritten for every hour a move touches, in the same head transaction as the move, so a staged
  hour's buckets always match its slices; dropped with the stage when the day is sealed (the sealed
  day gets its own ``rollup_1h``). A stage made while its day has no sealed table in main is marked
  ``stage_rollup:<day>``: only those stages' buckets cover their day (``store.rollup_read.coverage``).

The main file therefore only grows by sealed, compact data. After a seal the head file is nearly
empty; :func:`shrink` rewrites what is left so it lands in the lowest free blocks, and the next
CHECKPOINT truncates the file.

DuckDB writes only one attached database per transaction, so a seal is two commits: the main file
gets the sealed day and records the stage's token (``sealed_stage:<day>`` in ``meta``), then the head
drops the stage. A crash between the two leaves a stage whose token the main file already has;
:func:`recover` drops it at the next open. A stage made later for the same day (late data) gets a
new token, so it is never mistaken for one already sealed.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import duckdb

from sightglass.store.tx import transaction

HEAD = "sg_head"
HEAD_FILENAME = "head.duckdb"
_STAGE_RE = re.compile(r"^stage_(\d{8})$")
ROLLUPS = f"{HEAD}.stage_rollups"
_DAY_MS = 86_400_000

_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {HEAD}.samples_head (series_id INTEGER NOT NULL, ts BIGINT NOT NULL, value DOUBLE)",
    f"CREATE TABLE IF NOT EXISTS {HEAD}.head_meta (key VARCHAR, value VARCHAR)",  # no index: shrink copies it
    f"CREATE TABLE IF NOT EXISTS {ROLLUPS} (series_id INTEGER, ts BIGINT, cnt INTEGER, sum DOUBLE, min DOUBLE, "
    "max DOUBLE, first DOUBLE, last DOUBLE, first_ts BIGINT, last_ts BIGINT, inc DOUBLE, reset_sum DOUBLE, "
    "dups INTEGER)",
)


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def attach(con: duckdb.DuckDBPyConnection, path: Path, *, read_only: bool) -> bool:
    """Attach the head file as :data:`HEAD`; returns False for a reader of a store that has none.

    A writer creates it. A store written before the head file existed (schema < 3) has none and
    keeps ``samples_head`` in the main file, so a reader needs none either.
    """
    if read_only and not path.exists():
        return False
    con.execute(f"ATTACH {_quote(path)} AS {HEAD}" + (" (READ_ONLY)" if read_only else ""))
    if not read_only:
        for sql in _SCHEMA:
            con.execute(sql)
    return True


def tables(cur: duckdb.DuckDBPyConnection) -> list[str]:
    rows = cur.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY 1", [HEAD]
    ).fetchall()
    return [r[0] for r in rows]


def stage_days(cur: duckdb.DuckDBPyConnection) -> list[str]:
    """Days (YYYYMMDD) with unsealed slices in the head file."""
    return [m.group(1) for t in tables(cur) if (m := _STAGE_RE.match(t))]


def stage(day: str) -> str:
    return f"{HEAD}.stage_{day}"


def scratch(day: str) -> str:
    return f"{HEAD}.seal_{day}"


def token(cur: duckdb.DuckDBPyConnection, day: str) -> str | None:
    row = cur.execute(f"SELECT value FROM {HEAD}.head_meta WHERE key = ?", [f"stage:{day}"]).fetchone()
    return str(row[0]) if row else None


def day_start(day: str) -> int:
    return int(dt.datetime.strptime(day, "%Y%m%d").replace(tzinfo=dt.UTC).timestamp() * 1000)


def create_stage(cur: duckdb.DuckDBPyConnection, day: str, *, rolled: bool = False) -> None:
    """A new, empty stage for ``day`` with a fresh token (inside the caller's head transaction);
    ``rolled``: its hours get buckets in ``stage_rollups`` that cover the day (no sealed part in main)."""
    cur.execute(
        f"CREATE TABLE {stage(day)} (series_id INTEGER NOT NULL, ts BIGINT NOT NULL, value DOUBLE)"
    )
    cur.execute(f"DELETE FROM {HEAD}.head_meta WHERE key IN (?, ?)", [f"stage:{day}", f"stage_rollup:{day}"])
    cur.execute(f"INSERT INTO {HEAD}.head_meta VALUES (?, ?)", [f"stage:{day}", uuid.uuid4().hex])
    _drop_rollups(cur, day)
    if rolled:
        cur.execute(f"INSERT INTO {HEAD}.head_meta VALUES (?, '1')", [f"stage_rollup:{day}"])


def rolled_days(cur: duckdb.DuckDBPyConnection) -> list[str]:
    """Staged days whose ``stage_rollups`` buckets cover the day."""
    if "stage_rollups" not in tables(cur):
        return []
    rows = cur.execute(f"SELECT key FROM {HEAD}.head_meta WHERE key LIKE 'stage_rollup:%'").fetchall()
    staged = set(stage_days(cur))
    return sorted(d for (k,) in rows if (d := k[len("stage_rollup:") :]) in staged)


def _drop_rollups(cur: duckdb.DuckDBPyConnection, day: str) -> None:
    if "stage_rollups" in tables(cur):
        lo = day_start(day)
        cur.execute(f"DELETE FROM {ROLLUPS} WHERE ts >= ? AND ts < ?", [lo, lo + _DAY_MS])


def drop_stage(cur: duckdb.DuckDBPyConnection, day: str) -> None:
    """Drop a sealed day's stage, its buckets and scratch (inside the caller's head transaction)."""
    cur.execute(f"DROP TABLE IF EXISTS {stage(day)}")
    cur.execute(f"DROP TABLE IF EXISTS {scratch(day)}")
    cur.execute(f"DELETE FROM {HEAD}.head_meta WHERE key IN (?, ?)", [f"stage:{day}", f"stage_rollup:{day}"])
    _drop_rollups(cur, day)


def recover(cur: duckdb.DuckDBPyConnection, sealed_tokens: dict[str, str]) -> list[str]:
    """After a crash: drop seal scratch, and stages the main file already sealed. Returns those days."""
    done: list[str] = []
    leftovers = [t for t in tables(cur) if t.startswith("seal_")]
    days = [d for d in stage_days(cur) if sealed_tokens.get(d) is not None and token(cur, d) == sealed_tokens[d]]
    if not leftovers and not days:
        return done
    with transaction(cur):
        for t in leftovers:
            cur.execute(f"DROP TABLE {HEAD}.{t}")
        for d in days:
            drop_stage(cur, d)
            done.append(d)
    return done


def block_usage(cur: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    """``(block_size, used_blocks, free_blocks)`` of the head file."""
    row = cur.execute(
        "SELECT block_size, used_blocks, free_blocks FROM pragma_database_size() WHERE database_name = ?", [HEAD]
    ).fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


def shrink(cur: duckdb.DuckDBPyConnection, *, min_free_bytes: int = 1 << 20) -> bool:
    """Give the head file's free space back to the file system, when there is enough of it.

    DuckDB allocates the lowest free block first and truncates the file when its last blocks are
    free. So: CHECKPOINT (blocks freed by drops become free), copy each head table (small after a
    seal) into a new table of the same name, which lands in the lowest blocks, CHECKPOINT again.
    One head transaction: a crash leaves either the old tables or the new ones. Rows keep their
    order (insertion order is preserved), which reads rely on for last-write-wins. Returns False
    when DuckDB refused the CHECKPOINT (another write transaction open): try again later.
    """
    if not _checkpoint(cur):
        return False
    size, used, free = block_usage(cur)
    if free * size < min_free_bytes or free < used:
        return True  # nothing worth giving back
    with transaction(cur):
        for t in tables(cur):
            cur.execute(f"CREATE TABLE {HEAD}.{t}__copy AS SELECT * FROM {HEAD}.{t}")
            cur.execute(f"DROP TABLE {HEAD}.{t}")
            cur.execute(f"ALTER TABLE {HEAD}.{t}__copy RENAME TO {t}")
    _checkpoint(cur)  # if refused now, a later CHECKPOINT truncates the file
    return True


def _checkpoint(cur: duckdb.DuckDBPyConnection) -> bool:
    """CHECKPOINT the head file; False while DuckDB refuses (another write transaction is open)."""
    try:
        cur.execute(f"CHECKPOINT {HEAD}")
    except duckdb.TransactionException:
        return False
    return True

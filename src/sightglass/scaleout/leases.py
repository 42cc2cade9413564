"""Leases on partitions of analytics work, in PostgreSQL: each replica owns a fair share, renews it
with heartbeats, and takes over the partitions of a replica whose lease expired.

Every lease row carries an ``epoch`` (bumped on each takeover) and the partition's ``watermark_ms``,
the end of the last committed batch. :meth:`PgLeases.commit` advances the watermark, writes the
batch's events and records the batch in ``analytics_batches`` in **one transaction**, and only if the
caller still owns the lease at that epoch with the watermark it started from. So a replica killed
mid-batch leaves nothing half-written (the next owner redoes the batch from the old watermark), and a
replica that lost its lease while paused cannot commit the batch a second time (its commit fails).
Time is PostgreSQL's clock, so replicas' clocks need not agree.

:class:`LocalLeases` is the same interface for one process without PostgreSQL (attach mode on a local
catalog): it owns every partition, and the watermark lives in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from sightglass.model import Event
from sightglass.store.postgres import PostgresCatalog

DB_NOW = "(extract(epoch from clock_timestamp()) * 1000)::bigint"


@dataclass(frozen=True, slots=True)
class Lease:
    part: int
    epoch: int
    watermark_ms: int | None


class Leases(Protocol):
    owner: str

    def heartbeat(self) -> dict[int, Lease]: ...
    def renew(self) -> dict[int, int]: ...
    def commit(self, lease: Lease, from_ms: int | None, to_ms: int, events: list[Event], *,
               state: bytes | None = None) -> bool: ...  # fmt: skip
    def release(self) -> None: ...


class PgLeases:
    """Leases of ``task``'s ``parts`` partitions in the catalog's ``leases`` table."""

    def __init__(self, catalog: PostgresCatalog, *, task: str, parts: int, owner: str, ttl_ms: int,
                 url: str | None = None) -> None:  # fmt: skip
        self.catalog, self.task, self.parts, self.owner, self.ttl_ms = catalog, task, parts, owner, ttl_ms
        self.url = url
        with catalog.transaction() as cur:
            cur.executemany(
                "INSERT INTO leases (task, part) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [(task, p) for p in range(parts)],
            )
            cur.execute(
                f"INSERT INTO replicas VALUES (%s, %s, {DB_NOW}, {DB_NOW}) ON CONFLICT (id) DO UPDATE "
                f"SET heartbeat_ms = {DB_NOW}",
                [owner, url],
            )

    def beat(self) -> None:
        """Say this replica is alive (its own loop, so a long analysis step does not make it look
        dead and lose its fair share); leases are renewed only by the thread doing the work."""
        with self.catalog.transaction() as cur:
            cur.execute(f"UPDATE replicas SET heartbeat_ms = {DB_NOW} WHERE id = %s", [self.owner])
            if cur.rowcount == 0:
                cur.execute(f"INSERT INTO replicas VALUES (%s, %s, {DB_NOW}, {DB_NOW})", [self.owner, self.url])

    def heartbeat(self) -> dict[int, Lease]:
        """Renew this replica's leases, take free or expired ones up to a fair share, give back extras."""
        ttl = self.ttl_ms
        with self.catalog.transaction() as cur:
            cur.execute(f"UPDATE replicas SET heartbeat_ms = {DB_NOW} WHERE id = %s", [self.owner])
            if cur.rowcount == 0:
                cur.execute(
                    f"INSERT INTO replicas VALUES (%s, %s, {DB_NOW}, {DB_NOW})", [self.owner, self.url]
                )
            cur.execute(f"SELECT count(*) FROM replicas WHERE heartbeat_ms > {DB_NOW} - %s", [ttl])
            row = cur.fetchone()
            live = max(1, int(row[0]) if row else 1)
            share = math.ceil(self.parts / live)
            cur.execute(
                f"UPDATE leases SET expires_ms = {DB_NOW} + %s WHERE task = %s AND owner = %s "
                "RETURNING part, epoch, watermark_ms",
                [ttl, self.task, self.owner],
            )
            mine = {int(p): Lease(int(p), int(e), w) for p, e, w in cur.fetchall()}
            if len(mine) > share:  # a replica joined: give back the highest partitions
                extra = sorted(mine)[share:]
                cur.execute(
                    "UPDATE leases SET owner = NULL, expires_ms = 0 WHERE task = %s AND owner = %s AND part = ANY(%s)",
                    [self.task, self.owner, extra],
                )
                for p in extra:
                    mine.pop(p)
            elif len(mine) < share:
                cur.execute(
                    f"UPDATE leases SET owner = %s, epoch = epoch + 1, expires_ms = {DB_NOW} + %s "
                    "WHERE task = %s AND part IN (SELECT part FROM leases WHERE task = %s AND "
                    f"(owner IS NULL OR expires_ms < {DB_NOW}) ORDER BY part LIMIT %s FOR UPDATE SKIP LOCKED) "
                    "RETURNING part, epoch, watermark_ms",
                    [self.owner, ttl, self.task, self.task, share - len(mine)],
                )
                for p, e, w in cur.fetchall():
                    mine[int(p)] = Lease(int(p), int(e), w)
        return mine

    def renew(self) -> dict[int, int]:
        """Extend this replica's leases (between long steps); ``{part: epoch}`` of those still held."""
        with self.catalog.transaction() as cur:
            cur.execute(
                f"UPDATE leases SET expires_ms = {DB_NOW} + %s WHERE task = %s AND owner = %s RETURNING part, epoch",
                [self.ttl_ms, self.task, self.owner],
            )
            return {int(p): int(e) for p, e in cur.fetchall()}

    def commit(self, lease: Lease, from_ms: int | None, to_ms: int, events: list[Event], *,
               state: bytes | None = None) -> bool:  # fmt: skip
        """Advance ``lease``'s watermark from ``from_ms`` to ``to_ms`` with ``events`` (and the work's
        checkpoint ``state``, when given), atomically; False (and nothing written) when the lease is
        no longer this replica's at that epoch."""
        keep = "" if state is None else ", state = %s"
        with self.catalog.transaction() as cur:
            cur.execute(
                f"UPDATE leases SET watermark_ms = %s, expires_ms = {DB_NOW} + %s{keep} WHERE task = %s AND part = %s "
                f"AND owner = %s AND epoch = %s AND expires_ms > {DB_NOW} AND watermark_ms IS NOT DISTINCT FROM %s",
                [to_ms, self.ttl_ms, *([] if state is None else [state]), self.task, lease.part, self.owner,
                 lease.epoch, from_ms],
            )  # fmt: skip
            if cur.rowcount != 1:
                return False
            if events:
                cur.executemany(PostgresCatalog.EVENT_INSERT, PostgresCatalog.event_rows(events))
            cur.execute(
                "INSERT INTO analytics_batches (task, part, from_ms, to_ms, owner, epoch, events, committed_ms) "
                f"VALUES (%s, %s, %s, %s, %s, %s, %s, {DB_NOW})",
                [self.task, lease.part, to_ms if from_ms is None else from_ms, to_ms, self.owner, lease.epoch,
                 len(events)],
            )  # fmt: skip
        return True

    def state(self, part: int = 0) -> tuple[int | None, bytes | None]:
        """``(watermark_ms, checkpoint)`` last committed on ``part`` (read at a takeover)."""
        rows = self.catalog._rows("SELECT watermark_ms, state FROM leases WHERE task = %s AND part = %s",
                                  [self.task, part])  # fmt: skip
        if not rows:
            return None, None
        w, st = rows[0]
        return (None if w is None else int(w)), (None if st is None else bytes(st))

    def holds(self, lease: Lease) -> bool:
        """Whether this replica still holds ``lease`` at its epoch (a fencing check)."""
        rows = self.catalog._rows(
            f"SELECT 1 FROM leases WHERE task = %s AND part = %s AND owner = %s AND epoch = %s AND expires_ms > {DB_NOW}",
            [self.task, lease.part, self.owner, lease.epoch],
        )
        return bool(rows)

    def release(self) -> None:
        """Give every lease back (a clean shutdown), so others take over without waiting for expiry."""
        with self.catalog.transaction() as cur:
            cur.execute("UPDATE leases SET owner = NULL, expires_ms = 0 WHERE task = %s AND owner = %s",
                        [self.task, self.owner])  # fmt: skip
            cur.execute("DELETE FROM replicas WHERE id = %s", [self.owner])

    def table(self) -> list[dict[str, Any]]:
        rows = self.catalog._rows(
            f"SELECT part, owner, epoch, expires_ms - {DB_NOW}, watermark_ms FROM leases WHERE task = %s ORDER BY part",
            [self.task],
        )
        keys = ("part", "owner", "epoch", "expires_in_ms", "watermark_ms")
        return [dict(zip(keys, r, strict=True)) for r in rows]


class LocalLeases:
    """Every partition, owned by this one process; events go straight to the catalog store."""

    def __init__(self, store: Any, *, parts: int, owner: str = "local") -> None:
        self.store, self.parts, self.owner = store, parts, owner
        self.watermarks: dict[int, int | None] = dict.fromkeys(range(parts))
        self.batches: list[tuple[int, int, int, int]] = []
        self.states: dict[int, bytes] = {}

    def heartbeat(self) -> dict[int, Lease]:
        return {p: Lease(p, 1, w) for p, w in self.watermarks.items()}

    def renew(self) -> dict[int, int]:
        return dict.fromkeys(self.watermarks, 1)

    def commit(self, lease: Lease, from_ms: int | None, to_ms: int, events: list[Event], *,
               state: bytes | None = None) -> bool:  # fmt: skip
        if self.watermarks.get(lease.part) != from_ms:
            return False
        if state is not None:
            self.states[lease.part] = state
        if events:
            self.store.append_events(events)
        self.watermarks[lease.part] = to_ms
        self.batches.append((lease.part, to_ms if from_ms is None else from_ms, to_ms, len(events)))
        return True

    def state(self, part: int = 0) -> tuple[int | None, bytes | None]:
        return self.watermarks.get(part), self.states.get(part)

    def holds(self, lease: Lease) -> bool:
        return True

    def release(self) -> None:
        return None

"""A leader lease: fleet-wide work (KPIs, drift, cost rollups, rule evaluation) that must run on
exactly one replica at a time.

It is partition 0 of a one-partition task in the ``leases`` table (:class:`~.leases.PgLeases`): every
replica asks for it on each heartbeat, the first to find it free or expired takes it at a higher
epoch, and the holder renews it. The holder commits each step with :meth:`Leader.commit`, which
advances the watermark and stores the work's checkpoint in the same fenced update, so a replica that
takes over resumes from the last committed step with the state it had (nothing redone twice in the
catalog, nothing skipped), and a holder that lost the lease cannot commit.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

from sightglass.model import Event
from sightglass.scaleout.leases import Lease, LocalLeases, PgLeases

log = logging.getLogger("sightglass.scaleout")


class Leader:
    """One replica's view of a leader lease (see the module docstring)."""

    def __init__(self, leases: PgLeases | LocalLeases, *, renew_every_s: float = 3.0) -> None:
        self.leases = leases
        self.renew_every_s = renew_every_s
        self.lease: Lease | None = None
        self.taken_over = False  # this hold() acquired the lease (fresh, or from a dead replica)
        self.acquired = 0
        self.commits = 0
        self.lost = 0

    @property
    def owner(self) -> str:
        return self.leases.owner

    def hold(self) -> Lease | None:
        """Heartbeat; the lease when this replica holds it (``taken_over`` says if it just got it)."""
        lease = self.leases.heartbeat().get(0)
        self.taken_over = lease is not None and (self.lease is None or lease.epoch != self.lease.epoch)
        if self.taken_over:
            self.acquired += 1
        self.lease = lease
        return lease

    def checkpoint(self) -> tuple[int | None, Any]:
        """``(watermark_ms, state)`` last committed (by whichever replica held the lease)."""
        wm, blob = self.leases.state(0)
        if blob is None:
            return wm, None
        try:
            return wm, pickle.loads(blob)  # written by a Sightglass replica into our own catalog
        except Exception as e:  # an older or damaged checkpoint: start the state afresh from wm
            log.warning("leader checkpoint of %s unreadable (%s); starting afresh", self.owner, e)
            return wm, None

    def still_held(self) -> bool:
        return self.lease is not None and self.leases.holds(self.lease)

    def commit(self, to_ms: int, state: Any = None, events: list[Event] | None = None) -> bool:
        """Advance the watermark to ``to_ms`` with ``state`` and ``events``; False if the lease is lost."""
        lease = self.lease
        if lease is None:
            return False
        blob = None if state is None else pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        ok = self.leases.commit(lease, lease.watermark_ms, to_ms, list(events or []), state=blob)
        if ok:
            self.lease = Lease(lease.part, lease.epoch, to_ms)
            self.commits += 1
            self.last_state_bytes = len(blob or b"")
        else:
            self.lease = None
            self.lost += 1
        return ok

    last_state_bytes = 0

    def status(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "leader": self.lease is not None,
            "epoch": None if self.lease is None else self.lease.epoch,
            "watermark_ms": None if self.lease is None else self.lease.watermark_ms,
            "acquired": self.acquired,
            "commits": self.commits,
            "lost_commits": self.lost,
            "checkpoint_bytes": self.last_state_bytes,
        }


def leader_for(store: Any, task: str, *, url: str | None = None) -> Leader | None:
    """The leader lease of ``task`` on a scale-out store (local when there are no replicas); None on
    the embedded store, where the single process does everything."""
    backends = getattr(store, "backends", None)
    if not getattr(store, "scale_out", False) or backends is None:
        return None
    from sightglass.config import parse_duration_ms

    rep = backends.replicas
    if rep.enabled:
        leases: PgLeases | LocalLeases = PgLeases(
            store.catalog, task=task, parts=1, owner=store.replica_id,
            ttl_ms=parse_duration_ms(rep.lease_ttl), url=url,
        )  # fmt: skip
    else:
        leases = LocalLeases(store, parts=1)
    return Leader(leases, renew_every_s=parse_duration_ms(rep.heartbeat) / 1000)


async def keep_alive(leader: Leader) -> None:
    """Renew the lease every heartbeat while this replica holds it, from its own task, so a long
    round (an RCA, a big KPI batch, an evaluation interval longer than the lease) does not let it
    expire; it never takes a lease (only ``hold()`` does)."""
    import asyncio

    if not isinstance(leader.leases, PgLeases):
        return
    while True:
        await asyncio.sleep(leader.renew_every_s)
        if leader.lease is not None:
            try:
                held = await asyncio.to_thread(leader.leases.renew)
            except Exception as e:  # a failed renewal only risks a takeover; the commit is fenced
                log.warning("renewing the %s lease failed: %s", leader.leases.task, e)
                continue
            if 0 not in held:
                leader.lease = None

"""The scale-out analytics loop: on a scale-out store, partitioned analytics replace the
single-process loop (which stays idle there, see ``sightglass.scaleout.store``).

With ``[backends.replicas] enabled`` the partitions are leased in PostgreSQL and shared by every
replica; otherwise (one process, e.g. ``sightglass up --attach``) this process owns them all. Work
runs off the event loop, every ``[analytics] interval``; a clean shutdown gives the leases back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sightglass.config import parse_duration_ms
from sightglass.scaleout.leases import LocalLeases, PgLeases
from sightglass.scaleout.partitioned import PartitionedAnalytics
from sightglass.scaleout.store import ScaleOutStore

log = logging.getLogger("sightglass.scaleout")

TASK = "anomaly"


def build_analytics(store: ScaleOutStore, config: Any, *, url: str | None = None) -> PartitionedAnalytics:
    rep = store.backends.replicas
    leases: Any
    if rep.enabled:
        parts = rep.partitions
        leases = PgLeases(store.catalog, task=TASK, parts=parts, owner=store.backends.replica_id(),
                          ttl_ms=parse_duration_ms(rep.lease_ttl), url=url)  # fmt: skip
    else:
        parts = 1  # one process: one partition keeps every peer group whole
        leases = LocalLeases(store, parts=parts)
    return PartitionedAnalytics(
        store,
        leases,
        parts,
        interval_ms=parse_duration_ms(config.analytics.interval),
        history_ms=parse_duration_ms(config.analytics.history),
        batch_ms=parse_duration_ms(rep.batch),
        backfill_ms=parse_duration_ms(rep.backfill),
        renew_every_s=parse_duration_ms(rep.heartbeat) / 1000,
    )


def background_tasks(ctx: Any) -> list[Callable[[Any], Awaitable[Any]]]:
    store = ctx.store
    if not isinstance(store, ScaleOutStore) or not ctx.config.analytics.enabled:
        return []
    service = build_analytics(store, ctx.config)
    ctx.extras["analytics"] = service  # the status the API shows is this loop's
    ctx.extras["scaleout"] = service
    store.analytics = service  # its status shows on /-/stats
    rep = store.backends.replicas
    pause_s = min(parse_duration_ms(ctx.config.analytics.interval), parse_duration_ms(rep.heartbeat)) / 1000

    async def run(ctx: Any) -> None:
        try:
            while True:
                try:
                    await asyncio.to_thread(service.step)
                    service.last_error = None
                except Exception as e:  # keep serving; say why in the status and the log
                    service.last_error = f"{type(e).__name__}: {e}"
                    log.exception("scale-out analytics step failed")
                await asyncio.sleep(pause_s)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(service.leases.release)

    async def presence(ctx: Any) -> None:
        beat = getattr(service.leases, "beat", None)
        if beat is None:
            return
        while True:
            with contextlib.suppress(Exception):  # a failed beat only risks a rebalance
                await asyncio.to_thread(beat)
            await asyncio.sleep(parse_duration_ms(rep.heartbeat) / 1000)

    return [run, presence]

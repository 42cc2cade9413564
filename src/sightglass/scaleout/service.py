"""The scale-out analytics loop: on a scale-out store, partitioned analytics replace the
single-process loop (which stays idle there, see ``sightglass.scaleout.store``).

It also runs the fleet-wide loop (GPU and workload KPIs, drift, cost: ``sightglass.scaleout.fleet``)
on whichever replica holds the ``fleet`` leader lease.

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
from sightglass.scaleout.fleet import TASK as FLEET_TASK
from sightglass.scaleout.fleet import FleetWork
from sightglass.scaleout.leader import keep_alive, leader_for
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
        leases = PgLeases(store.catalog, task=TASK, parts=parts, owner=store.replica_id,
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


def build_fleet(store: ScaleOutStore, ctx: Any) -> FleetWork | None:
    """The leader-held KPI, workload KPI, drift and cost loop (None when both are switched off)."""
    from sightglass.analytics.drift import load_golden
    from sightglass.analytics.service import AnalyticsService
    from sightglass.cost.config import cost_config
    from sightglass.cost.service import CostService

    acfg = ctx.config.analytics
    ccfg = cost_config(ctx.config.cost)
    writable = not store.read_only
    make_analytics = make_cost = None
    if acfg.enabled:
        golden = load_golden(acfg.golden_config) if acfg.golden_config else None  # ValueError names it

        def make_analytics() -> AnalyticsService:
            return AnalyticsService(
                store, interval_ms=parse_duration_ms(acfg.interval), history_ms=parse_duration_ms(acfg.history),
                golden=golden, anomalies=False, write_kpis=writable, drift_events=False,
            )  # fmt: skip

    if ccfg.enabled:
        prices = ccfg.load_prices()
        fleet_ref: list[FleetWork] = []

        def make_cost() -> CostService:
            return CostService(store, ccfg, prices, ctx.config.data, write_kpis=writable,
                               on_day=lambda doc: fleet_ref[0].save_day(doc))  # fmt: skip

    if make_analytics is None and make_cost is None:
        return None
    leader = leader_for(store, FLEET_TASK)
    assert leader is not None
    fleet = FleetWork(store, leader, interval_ms=parse_duration_ms(acfg.interval),
                      make_analytics=make_analytics, make_cost=make_cost)  # fmt: skip
    if ccfg.enabled:
        fleet_ref.append(fleet)
    return fleet


class _CostStatus:
    """What ``/api/v1/cost/status`` shows on a replica: the leader's cost loop, or that it follows."""

    def __init__(self, fleet: FleetWork) -> None:
        self.fleet = fleet

    def status(self) -> dict[str, Any]:
        c = self.fleet.cost
        if c is not None:
            return {**c.status(), "leader": True}
        return {"leader": False, "note": "another replica holds the fleet lease and runs the cost loop",
                "last_error": self.fleet.last_error}  # fmt: skip

    def __getattr__(self, name: str) -> Any:
        c = self.fleet.cost
        if c is None:
            raise AttributeError(name)
        return getattr(c, name)


async def _repeat(work: Any, pause_s: float, release: Callable[[], Any], what: str) -> None:
    """Run ``work.step()`` off the event loop every ``pause_s`` until cancelled, keeping the last
    error in ``work.last_error``; give the leases back (``release``) on the way out."""
    try:
        while True:
            try:
                await asyncio.to_thread(work.step)
                work.last_error = None
            except Exception as e:  # keep serving; say why in the status and the log
                work.last_error = f"{type(e).__name__}: {e}"
                log.exception("%s step failed", what)
            await asyncio.sleep(pause_s)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(release)


def background_tasks(ctx: Any) -> list[Callable[[Any], Awaitable[Any]]]:
    store = ctx.store
    if not isinstance(store, ScaleOutStore):
        return []
    tasks: list[Callable[[Any], Awaitable[Any]]] = []
    fleet = build_fleet(store, ctx)
    if fleet is not None:
        store.fleet = fleet
        ctx.extras["fleet"] = fleet
        if fleet.make_cost is not None:
            ctx.extras["cost"] = _CostStatus(fleet)
        pause = min(parse_duration_ms(ctx.config.analytics.interval),
                    parse_duration_ms(store.backends.replicas.heartbeat)) / 1000  # fmt: skip

        async def run_fleet(ctx: Any) -> None:
            await _repeat(fleet, pause, fleet.leader.leases.release, "fleet analytics")

        tasks.append(run_fleet)

        async def renew_fleet(ctx: Any) -> None:
            await keep_alive(fleet.leader)

        tasks.append(renew_fleet)
    if not ctx.config.analytics.enabled:
        return tasks
    service = build_analytics(store, ctx.config)
    ctx.extras["analytics"] = service  # the status the API shows is this loop's
    ctx.extras["scaleout"] = service
    store.analytics = service  # its status shows on /-/stats
    rep = store.backends.replicas
    pause_s = min(parse_duration_ms(ctx.config.analytics.interval), parse_duration_ms(rep.heartbeat)) / 1000

    async def run(ctx: Any) -> None:
        await _repeat(service, pause_s, service.leases.release, "scale-out analytics")

    async def presence(ctx: Any) -> None:
        beat = getattr(service.leases, "beat", None)
        if beat is None:
            return
        while True:
            with contextlib.suppress(Exception):  # a failed beat only risks a rebalance
                await asyncio.to_thread(beat)
            await asyncio.sleep(parse_duration_ms(rep.heartbeat) / 1000)

    return [*tasks, run, presence]

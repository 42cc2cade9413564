"""Fleet-wide analytics on the scale-out store: GPU KPIs, workload KPIs, config drift and cost.

These read across partitions (a training job spans nodes, a drift peer group spans the fleet, cost is
one ledger), so they are not cut by host like the anomaly detection: one replica runs them, the holder
of the ``fleet`` leader lease (:mod:`sightglass.scaleout.leader`). Each step it folds the data up to
``newest - interval`` in with the same :class:`~sightglass.analytics.service.AnalyticsService` parts
(``anomalies=False``) and :class:`~sightglass.cost.service.CostService` the embedded store uses, writes
their ``sightglass_*`` series through the backend (remote-write), and commits: the new watermark, the
drift events and a checkpoint of the computers' state (idle timers, running counters, drift values,
cost totals) in one fenced update of the lease row. A replica that takes the lease over loads that
checkpoint and continues from the committed watermark: the counters go on from where they were,
and the batches recorded in ``analytics_batches`` (task ``fleet``) tile time with no gap or overlap.

A holder killed after writing a step's series but before committing it leaves those samples in the
TSDB; the next holder recomputes the same step from the same checkpoint, so it writes the same values
at the same timestamps again (the TSDB keeps one). Daily cost rollups also go to the catalog's
``cost_rollups`` table, and every other replica mirrors them into its own rollup folder, so each one
serves ``/api/v1/cost/rollups``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from sightglass.analytics.service import AnalyticsService
from sightglass.cost.rollup import DAY_MS, day_start, parse_day, read_day, write_day
from sightglass.cost.service import CostService
from sightglass.scaleout.leader import Leader
from sightglass.topology.infer import TopologyBuilder

log = logging.getLogger("sightglass.scaleout")

TASK = "fleet"
STEP_MS = 10_000
STATE_VERSION = 1


class FleetWork:
    """One replica's part in the fleet-wide loop; :meth:`step` is synchronous (run it in a thread)."""

    def __init__(
        self,
        store: Any,
        leader: Leader,
        *,
        interval_ms: int,
        make_analytics: Callable[[], AnalyticsService] | None,
        make_cost: Callable[[], CostService] | None,
    ) -> None:
        self.store = store
        self.leader = leader
        self.interval_ms = interval_ms
        self.make_analytics = make_analytics
        self.make_cost = make_cost
        self.analytics: AnalyticsService | None = None
        self.cost: CostService | None = None
        self.steps = 0
        self.committed = 0
        self.restored = 0
        self.last_error: str | None = None
        self.last_step_s = 0.0
        self.rollups_mirrored = 0
        self._mirrored: dict[int, float] = {}

    # ------------------------------------------------------------------ the step
    def step(self) -> int | None:
        """Hold (or try to take) the fleet lease; as leader, fold in and commit one step."""
        t0 = time.perf_counter()
        lease = self.leader.hold()
        if lease is None:  # a follower: no state kept (the leader's checkpoint is the truth)
            self.analytics = self.cost = None
            self._mirror_rollups()
            return None
        if self.leader.taken_over or (self.analytics is None and self.cost is None):
            self._restore()
        newest = int(self.store.newest_ms or 0)
        if newest <= 0:
            return None
        until = newest - self.interval_ms
        until -= until % STEP_MS
        wm = lease.watermark_ms
        if wm is not None and until <= wm:
            return None
        if self.analytics is not None:
            self.analytics.step_until(until)
        if self.cost is not None:
            self.cost.step()
        events = list(self.analytics.pending_events) if self.analytics is not None else []
        if not self.leader.commit(until, self._checkpoint(), events):
            log.warning("fleet lease lost before commit; step to %d left to the new holder", until)
            self.analytics = self.cost = None
            return None
        if self.analytics is not None:
            self.analytics.pending_events.clear()
        self.steps += 1
        self.committed = until
        self.last_step_s = time.perf_counter() - t0
        return until

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": STATE_VERSION}
        a = self.analytics
        if a is not None:
            out["analytics"] = {
                "kpis": a.kpis,
                "workloads": dataclasses.replace(a.workloads, builder=None),
                "drift": a.drift,
                "last_until_ms": a.last_until_ms,
            }
        c = self.cost
        if c is not None:
            out["cost"] = {
                "writer": dataclasses.replace(c.writer, builder=TopologyBuilder(), last=None),
                "partial_at": dict(c._partial_at),
                "closed": sorted(c._closed),
            }
        return out

    def _restore(self) -> None:
        """Fresh computers, then the committed checkpoint's state, resumed at the committed watermark."""
        wm, state = self.leader.checkpoint()
        state = state if isinstance(state, dict) and state.get("version") == STATE_VERSION else {}
        self.analytics = self.make_analytics() if self.make_analytics is not None else None
        self.cost = self.make_cost() if self.make_cost is not None else None
        a, c = self.analytics, self.cost
        if a is not None:
            st = state.get("analytics")
            if st:
                a.kpis = st["kpis"]
                a.workloads = st["workloads"]
                a.workloads.builder = a.runner.builder
                a.drift = st["drift"]
                a.drift.write_events = False
                a.drift.next_sid, a.drift.pending = 0, []  # series ids are this process' own
                a.last_until_ms = st["last_until_ms"]
            elif wm is not None:  # a watermark without state: start the computers at it
                a.kpis.watermark_ms = a.workloads.watermark_ms = a.drift.watermark_ms = wm
                a.last_until_ms = wm
        if c is not None:
            st = state.get("cost")
            if st:
                c.writer = st["writer"]
                c._partial_at = dict(st["partial_at"])
                c._closed = set(st["closed"])
        if state:
            self.restored += 1

    # ------------------------------------------------------------------ rollups in the catalog
    def save_day(self, doc: dict[str, Any]) -> None:
        """The cost service's ``on_day``: one ``cost_rollups`` row per day (scope ``fleet``)."""
        if not getattr(self.store, "is_postgres", False):
            return
        totals = doc.get("totals") or {}
        self.store.catalog.upsert_cost_rollups([{
            "bucket_ms": parse_day(doc["day"]), "width_ms": DAY_MS, "scope_kind": "day", "scope": "fleet",
            "cost_usd": float(totals.get("fleet_usd") or 0.0), "gpu_hours": totals.get("gpu_hours"),
            "payload": doc,
        }])  # fmt: skip

    def _mirror_rollups(self) -> None:
        """A follower copies the leader's daily rollups from the catalog into its own folder."""
        if self.make_cost is None or not getattr(self.store, "is_postgres", False):
            return
        directory = self._rollup_dir()
        newest = int(self.store.newest_ms or time.time() * 1000)
        rows = self.store.catalog.cost_rollups(day_start(newest) - 3 * DAY_MS, newest + DAY_MS, "day")
        for r in rows:
            doc = r["payload"]
            if not isinstance(doc, dict) or "day" not in doc:
                continue
            key = int(r["bucket_ms"])
            stamp = float(doc.get("until_ms") or 0)
            if self._mirrored.get(key) == stamp:
                continue
            try:
                if read_day(directory, doc["day"]).get("until_ms") == doc.get("until_ms"):
                    self._mirrored[key] = stamp
                    continue
            except (FileNotFoundError, KeyError, ValueError):
                pass
            write_day(directory, doc)
            self._mirrored[key] = stamp
            self.rollups_mirrored += 1

    _rollup_dir_cache: Any = None

    def _rollup_dir(self) -> Any:
        if self._rollup_dir_cache is None:
            assert self.make_cost is not None
            self._rollup_dir_cache = self.make_cost().rollups
        return self._rollup_dir_cache

    def status(self) -> dict[str, Any]:
        return {
            "task": TASK,
            **self.leader.status(),
            "steps": self.steps,
            "committed_until_ms": self.committed or None,
            "checkpoints_restored": self.restored,
            "rollups_mirrored": self.rollups_mirrored,
            "last_step_seconds": round(self.last_step_s, 3),
            "last_error": self.last_error,
            "analytics": None if self.analytics is None else self.analytics.status(),
        }

"""The server's "understand" loop: every ``[analytics] interval`` fold the new data into the topology,
the baselines/anomaly detector and the KPIs, off the event loop.

It follows the newest sample the store has seen (not the wall clock), so a back-filled store is
analysed as well as a live one; it lags one interval behind so late scrapes of a step are in.

On a scale-out store (``store.scale_out``) this loop does not start: ``sightglass.scaleout.service``
runs the anomaly detection partitioned and this service's KPI, workload KPI and drift parts
(``anomalies=False``) on the replica holding the fleet lease, committing drift events with its step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sightglass.analytics.drift import ConfigTracker, DriftConfig, load_golden
from sightglass.analytics.kpi import KpiComputer
from sightglass.analytics.runner import AnomalyRunner
from sightglass.analytics.workload import WorkloadKpiComputer
from sightglass.config import parse_duration_ms

log = logging.getLogger("sightglass.analytics")


class AnalyticsService:
    """Holds the incremental state; ``step`` is synchronous (run it in a thread)."""

    def __init__(
        self,
        store: Any,
        *,
        interval_ms: int,
        history_ms: int,
        golden: dict[str, dict[str, str]] | None = None,
        anomalies: bool = True,
        write_kpis: bool = True,
        drift_events: bool = True,
    ) -> None:
        self.store = store
        self.interval_ms = interval_ms
        self.anomalies = anomalies  # off where the partitioned loop detects anomalies
        self.write_kpis = write_kpis  # off on a read-only (attached) store: KPIs cannot be written
        self.runner = AnomalyRunner(history_ms=history_ms)
        self.kpis = KpiComputer()
        self.workloads = WorkloadKpiComputer(builder=self.runner.builder)
        self.drift = ConfigTracker(DriftConfig(golden=golden or {}), write_events=drift_events)
        self.pending_events: list[Any] = []  # drift events to commit, when not written directly
        self.steps = 0
        self.last_step_s = 0.0
        self.part_seconds: dict[str, float] = {}
        self.last_until_ms: int | None = None
        self.last_error: str | None = None
        self.part_errors: dict[str, str] = {}
        self.anomalies_reported = 0

    def step(self) -> int | None:
        newest = int(getattr(self.store, "newest_ms", 0) or 0)
        if newest <= 0:
            return None
        return self.step_until(newest - self.interval_ms)

    def step_until(self, until: int) -> int | None:
        """Fold in everything up to ``until`` (ms); None when that is not past the last step."""
        if self.last_until_ms is not None and until <= self.last_until_ms:
            return None
        t0 = time.perf_counter()
        if self.anomalies:
            report = self.runner.step(self.store, until)
            self.anomalies_reported += len(report.anomalies)
            self.part_seconds["anomalies"] = round(time.perf_counter() - t0, 3)
        first = until - self.runner.history_ms
        parts: tuple[tuple[str, Callable[[], Any]], ...] = (
            ("gpu_kpis", lambda: self.kpis.step(self.store, until, start_ms=first)),
            ("workload_kpis", lambda: self.workloads.step(self.store, until, start_ms=first)),
            ("drift", lambda: self._drift(until)),
        )
        if not self.write_kpis:
            parts = parts[2:]
        for name, fn in parts:  # one part failing does not stop the others
            t = time.perf_counter()
            try:
                fn()
                self.part_errors.pop(name, None)
            except Exception as e:
                self.part_errors[name] = f"{type(e).__name__}: {e}"
                log.exception("analytics part %s failed", name)
            self.part_seconds[name] = round(time.perf_counter() - t, 3)
        self.last_step_s = time.perf_counter() - t0
        self.last_until_ms = until
        self.steps += 1
        return until

    def _drift(self, until: int) -> None:
        report = self.drift.step(self.store, until)
        if not self.drift.write_events:
            self.pending_events.extend(report.to_events(until))

    def status(self) -> dict[str, Any]:
        pred = self.workloads.predictability
        return {
            "enabled": True,
            "interval_ms": self.interval_ms,
            "steps": self.steps,
            "last_step_seconds": round(self.last_step_s, 3),
            "part_seconds": dict(self.part_seconds),
            "analysed_until_ms": self.last_until_ms,
            "last_error": self.last_error,
            "part_errors": dict(self.part_errors),
            "anomaly_signals": len(self.runner.detector.names) if self.runner.detector else 0,
            "anomalies_reported": self.anomalies_reported,
            "workload_kpi_samples": self.workloads.written,
            "predictability_workloads": len(pred.workloads) if pred is not None else 0,
            "drift": self.drift.status(),
        }


def background_tasks(ctx: Any) -> list[Callable[[Any], Awaitable[Any]]]:
    cfg = ctx.config.analytics
    if not cfg.enabled or getattr(ctx.store, "scale_out", False):
        return []  # on a scale-out store sightglass.scaleout.service runs these, under leases
    golden = load_golden(cfg.golden_config) if cfg.golden_config else None  # ValueError names the file
    service = AnalyticsService(
        ctx.store,
        interval_ms=parse_duration_ms(cfg.interval),
        history_ms=parse_duration_ms(cfg.history),
        golden=golden,
    )
    ctx.extras["analytics"] = service

    async def run(ctx: Any) -> None:
        while True:
            await asyncio.sleep(service.interval_ms / 1000)
            try:
                await asyncio.to_thread(service.step)
                service.last_error = None
            except Exception as e:  # keep serving; say why on /-/stats and in the log
                service.last_error = f"{type(e).__name__}: {e}"
                log.exception("analytics step failed")

    return [run]

"""The server's "understand" loop: every ``[analytics] interval`` fold the new data into the topology,
the baselines/anomaly detector and the KPIs, off the event loop.

It follows the newest sample the store has seen (not the wall clock), so a back-filled store is
analysed as well as a live one; it lags one interval behind so late scrapes of a step are in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sightglass.analytics.kpi import KpiComputer
from sightglass.analytics.runner import AnomalyRunner
from sightglass.config import parse_duration_ms

log = logging.getLogger("sightglass.analytics")


class AnalyticsService:
    """Holds the incremental state; ``step`` is synchronous (run it in a thread)."""

    def __init__(self, store: Any, *, interval_ms: int, history_ms: int) -> None:
        self.store = store
        self.interval_ms = interval_ms
        self.runner = AnomalyRunner(history_ms=history_ms)
        self.kpis = KpiComputer()
        self.steps = 0
        self.last_step_s = 0.0
        self.last_until_ms: int | None = None
        self.last_error: str | None = None

    def step(self) -> int | None:
        newest = int(getattr(self.store, "newest_ms", 0) or 0)
        if newest <= 0:
            return None
        until = newest - self.interval_ms
        if self.last_until_ms is not None and until <= self.last_until_ms:
            return None
        t0 = time.perf_counter()
        self.runner.step(self.store, until)
        start = None if self.kpis.watermark_ms is not None else until - self.runner.history_ms
        self.kpis.step(self.store, until, start_ms=start)
        self.last_step_s = time.perf_counter() - t0
        self.last_until_ms = until
        self.steps += 1
        return until

    def status(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "last_step_seconds": round(self.last_step_s, 3),
            "analysed_until_ms": self.last_until_ms,
            "last_error": self.last_error,
        }


def background_tasks(ctx: Any) -> list[Callable[[Any], Awaitable[Any]]]:
    cfg = ctx.config.analytics
    if not cfg.enabled:
        return []
    service = AnalyticsService(
        ctx.store, interval_ms=parse_duration_ms(cfg.interval), history_ms=parse_duration_ms(cfg.history)
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

"""The server's cost loop: every ``[cost] interval`` cost the new data, write the cost KPIs, and keep the
daily rollups (the current day as partial, each finished day once more when it closes).

Like the analytics loop it follows the newest sample the store has seen, not the wall clock, and stays
``[cost] lag`` behind it; work runs in a thread, off the event loop.

On a scale-out store (``store.scale_out``) this loop does not start: the replica holding the fleet
lease runs the same :class:`CostService` (``sightglass.scaleout.fleet``), which keeps each day's
rollup in the PostgreSQL catalog too (``on_day``) so every replica serves it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sightglass.cost.config import CostConfig, cost_config
from sightglass.cost.kpis import CostKpiWriter
from sightglass.cost.prices import PriceSheet
from sightglass.cost.rollup import DAY_MS, compute_day, day_start, rollup_dir, write_day

log = logging.getLogger("sightglass.cost")


class CostService:
    def __init__(
        self,
        store: Any,
        config: CostConfig,
        prices: PriceSheet,
        data_dir: str | Path,
        *,
        write_kpis: bool = True,
        on_day: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.write_kpis = write_kpis  # off on a read-only (attached) store: only the rollups are kept
        self.on_day = on_day
        self.config = config
        self.prices = prices
        self.writer = CostKpiWriter(prices, config)
        self.rollups = rollup_dir(data_dir, config)
        self.interval_ms = config.ms("interval")
        self.lag_ms = config.ms("lag")
        self.steps = 0
        self.last_step_s = 0.0
        self.last_error: str | None = None
        self.days_written: list[str] = []
        self.partial_every_ms = 3_600_000  # the open day's rollup is refreshed at most hourly
        self._partial_at: dict[int, int] = {}
        self._closed: set[int] = set()

    def step(self) -> int | None:
        newest = int(getattr(self.store, "newest_ms", 0) or 0)
        if newest <= 0:
            return None
        until = newest - self.lag_ms
        until -= until % 10_000
        w = self.writer.watermark_ms
        if w is None:
            start = until - self.interval_ms
            first = getattr(self.store, "oldest_ms", None)
            if isinstance(first, int) and first > start:
                start = first
        else:
            if until - w < self.interval_ms:
                return None
            start = w
        t0 = time.perf_counter()
        if self.write_kpis:
            self.writer.step(self.store, until, start_ms=start)
        else:
            self.writer.watermark_ms = until
        self._rollups(start, until)
        self.last_step_s = time.perf_counter() - t0
        self.steps += 1
        return until

    def _rollups(self, start: int, until: int) -> None:
        for d in sorted({day_start(start), day_start(until - 1)}):
            closed = d + DAY_MS <= until
            if closed and d in self._closed:
                continue
            if not closed and until - self._partial_at.get(d, -(1 << 62)) < self.partial_every_ms:
                continue
            doc = compute_day(self.store, d, self.prices, self.config, newest_ms=until)
            write_day(self.rollups, doc)
            if self.on_day is not None:
                self.on_day(doc)
            self.days_written.append(doc["day"])
            if closed:
                self._closed.add(d)
            else:
                self._partial_at[d] = until

    def status(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "last_step_seconds": round(self.last_step_s, 3),
            "costed_until_ms": self.writer.watermark_ms,
            "last_error": self.last_error,
            "price_sheet": self.prices.source,
            "rollup_dir": str(self.rollups),
        }


def background_tasks(ctx: Any) -> list[Callable[[Any], Awaitable[Any]]]:
    cfg = cost_config(ctx.config.cost)
    if not cfg.enabled or getattr(ctx.store, "scale_out", False):
        return []  # on a scale-out store sightglass.scaleout.fleet runs it, under the fleet lease
    service = CostService(ctx.store, cfg, cfg.load_prices(), ctx.config.data)
    ctx.extras["cost"] = service

    async def run(ctx: Any) -> None:
        while True:
            await asyncio.sleep(min(service.interval_ms / 1000, 30.0))
            try:
                await asyncio.to_thread(service.step)
                service.last_error = None
            except Exception as e:  # keep serving; say why on /api/v1/cost/status and in the log
                service.last_error = f"{type(e).__name__}: {e}"
                log.exception("cost step failed")

    return [run]

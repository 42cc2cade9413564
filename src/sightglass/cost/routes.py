"""``/api/v1/cost/*``: reconciled cost reports, cost per token, training cost, idle spend, price sheet,
daily rollups. Every answer uses the Prometheus envelope; bad parameters are ``400 bad_data``.

``start``/``end`` are RFC 3339 or Unix seconds (``now-1h`` works); the default window is the hour
before the newest sample.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from sightglass.api.envelope import APIError, error, success
from sightglass.cost.analysis import CostAnalysis
from sightglass.cost.config import cost_config
from sightglass.cost.insights import idle_insights
from sightglass.cost.report import DIMENSIONS, render
from sightglass.cost.rollup import list_days, read_day, rollup_dir
from sightglass.cost.tokens import model_costs, service_costs, token_counts
from sightglass.cost.training import job_costs, run_costs
from sightglass.timeutil import parse_time_ms
from sightglass.topology.infer import TopologyBuilder

MAX_WINDOW_MS = 93 * 86_400_000  # a quarter; longer history comes from the daily rollups
DEFAULT_WINDOW_MS = 3_600_000
REFRESH_S = 10.0  # the topology is folded forward at most this often


def make_routes(ctx: Any) -> list[Route]:
    cfg = cost_config(ctx.config.cost)
    prices = cfg.load_prices()
    rollups = rollup_dir(ctx.config.data, cfg)

    def window(request: Request) -> tuple[int, int]:
        q = request.query_params
        newest = int(getattr(ctx.store, "newest_ms", 0) or 0)
        try:
            end = parse_time_ms(q["end"]) if q.get("end") else newest
        except ValueError as e:
            raise APIError(f'invalid parameter "end": {e}') from None
        try:
            start = parse_time_ms(q["start"]) if q.get("start") else end - DEFAULT_WINDOW_MS
        except ValueError as e:
            raise APIError(f'invalid parameter "start": {e}') from None
        if end <= start:
            raise APIError('invalid parameter "end": must be after "start"')
        if end - start > MAX_WINDOW_MS:
            raise APIError(
                f"window too large: {(end - start) / 86_400_000:.0f} days (at most 93; use /api/v1/cost/daily)"
            )
        return start, end

    builder = TopologyBuilder()
    lock = asyncio.Lock()
    refreshed = [0.0]

    async def topology() -> Any:
        async with lock:  # one incremental update at a time, at most every REFRESH_S
            if time.monotonic() - refreshed[0] > REFRESH_S or refreshed[0] == 0.0:
                await asyncio.to_thread(builder.update, ctx.store)
                refreshed[0] = time.monotonic()
        return builder.topology

    async def analysis(request: Request) -> CostAnalysis:
        a, b = window(request)
        topo = await topology()
        return await asyncio.to_thread(
            CostAnalysis.run, ctx.store, a, b, prices=prices, config=cfg, topology=topo
        )

    def handler(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            try:
                out = await fn(request)
                if isinstance(out, Response):
                    return out
                return success(out)
            except APIError as e:
                return error(str(e), e.error_type, e.status)
            except FileNotFoundError as e:
                return error(str(e), "not_found")
            except ValueError as e:
                return error(str(e), "bad_data")

        return run

    async def report(request: Request) -> Any:
        by = request.query_params.get("by", "team")
        if by not in DIMENSIONS:
            raise APIError(f'invalid parameter "by": {by!r}; one of {", ".join(DIMENSIONS)}')
        mode = request.query_params.get("mode", "showback")
        if mode not in ("showback", "chargeback"):
            raise APIError('invalid parameter "mode": showback or chargeback')
        fmt = request.query_params.get("format", "json")
        if fmt not in ("json", "csv", "html"):
            raise APIError('invalid parameter "format": json, csv or html')
        an = await analysis(request)
        rep = an.report(by, mode=mode)
        if fmt == "csv":
            return PlainTextResponse(render(rep, "csv"), media_type="text/csv")
        if fmt == "html":
            return HTMLResponse(render(rep, "html"))
        return rep

    async def tokens(request: Request) -> Any:
        by = request.query_params.get("by", "model")
        if by not in ("model", "service"):
            raise APIError('invalid parameter "by": model or service')
        an = await analysis(request)
        a, b = an.ledger.start_ms, an.ledger.end_ms
        counts = await asyncio.to_thread(token_counts, ctx.store, a, b, by_host=by == "service")
        if by == "service":
            return [m.to_dict() for m in service_costs(an.ledger, counts, cfg.output_token_weight)]
        return [m.to_dict() for m in model_costs(an.ledger, counts, cfg.output_token_weight)]

    async def training(request: Request) -> Any:
        an = await analysis(request)
        jobs = job_costs(
            an.ledger,
            ctx.store,
            an.inputs.allocations,
            an.inputs.topology,
            checkpoint_interval_ms=cfg.ms("checkpoint_interval"),
        )
        return {"jobs": [j.to_dict() for j in jobs], "runs": run_costs(jobs)}

    async def idle(request: Request) -> Any:
        raw = request.query_params.get("top", "10")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise APIError('invalid parameter "top": an integer from 1 to 1000')
        an = await analysis(request)
        return idle_insights(an.ledger, an.inputs, top=int(raw))

    async def prices_route(request: Request) -> Any:
        return prices.to_dict()

    async def daily(request: Request) -> Any:
        return list_days(Path(rollups))

    async def daily_one(request: Request) -> Any:
        return read_day(Path(rollups), request.path_params["day"])

    async def status(request: Request) -> Any:
        svc = ctx.extras.get("cost")
        return svc.status() if svc is not None else {"running": False, "price_sheet": prices.source}

    return [
        Route("/api/v1/cost/report", handler(report)),
        Route("/api/v1/cost/tokens", handler(tokens)),
        Route("/api/v1/cost/training", handler(training)),
        Route("/api/v1/cost/idle", handler(idle)),
        Route("/api/v1/cost/prices", handler(prices_route)),
        Route("/api/v1/cost/daily", handler(daily)),
        Route("/api/v1/cost/daily/{day}", handler(daily_one)),
        Route("/api/v1/cost/status", handler(status)),
    ]

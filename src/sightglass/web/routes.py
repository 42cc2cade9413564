"""The web dashboard: pages served as static HTML/JS, each filled from its JSON twin under /api/v1/ui/.

The overview answers "what is my fleet doing right now": GPUs total / busy / idle / throttled /
failing, fleet utilisation by SM activity, tokens/s, a node by GPU heatmap and recent events. The explore
page charts any PromQL expression through the Prometheus API. Numbers come only from stored data: a
signal that is missing shows as missing, never as zero.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from sightglass.api.envelope import APIError, error, success
from sightglass.model import Matcher, SeriesData
from sightglass.timeutil import parse_time_ms

STATIC = Path(__file__).parent / "static"
LOOKBACK_MS = 300_000
# clock-event reasons that mean the GPU is being slowed (dcgm: 0x1 is "GPU idle", not a throttle)
THROTTLE_MASK = 0x2 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80 | 0x100
_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
BUSY_SM_ACTIVE = 0.05  # below 5 % SM activity a GPU is idle, whatever GPU_UTIL says


def decode_reasons(mask: int) -> list[str]:
    return [name for bit, name in _REASONS.items() if mask & bit]


def _latest(series: list[SeriesData], at_ms: int) -> dict[tuple[str, str], tuple[float, dict[str, str]]]:
    """(host, gpu) -> (latest non-stale value within the lookback, labels)."""
    out: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}
    for s in series:
        if not len(s) or s.stale[-1] or s.ts_ms[-1] <= at_ms - LOOKBACK_MS:
            continue
        labels = s.key.label_dict()
        host = labels.get("Hostname") or labels.get("hostname") or labels.get("instance", "")
        out[(host, labels.get("gpu", ""))] = (float(s.values[-1]), labels)
    return out


def overview(ctx: Any, at_ms: int) -> dict[str, Any]:
    store = ctx.store
    lo = at_ms - LOOKBACK_MS + 1

    def read(metric: str) -> dict[tuple[str, str], tuple[float, dict[str, str]]]:
        return _latest(store.select([Matcher("__name__", "=", metric)], lo, at_ms), at_ms)

    util = read("DCGM_FI_DEV_GPU_UTIL")
    sm = read("DCGM_FI_PROF_SM_ACTIVE")
    reasons = read("DCGM_FI_DEV_CLOCKS_EVENT_REASONS")
    power = read("DCGM_FI_DEV_POWER_USAGE")
    temp = read("DCGM_FI_DEV_GPU_TEMP")
    fb = read("DCGM_FI_DEV_FB_USED")
    gpus = sorted(set(util) | set(sm) | set(power))
    rows: list[dict[str, Any]] = []
    busy = idle = throttled = 0
    for key in gpus:
        sm_v = sm.get(key, (None, {}))[0]
        util_v = util.get(key, (None, {}))[0]
        mask = int(reasons[key][0]) if key in reasons else None
        is_busy = (sm_v >= BUSY_SM_ACTIVE) if sm_v is not None else (util_v is not None and util_v >= 5)
        busy += is_busy
        idle += not is_busy
        is_throttled = mask is not None and bool(mask & THROTTLE_MASK)
        throttled += is_throttled
        rows.append(
            {
                "node": key[0],
                "gpu": key[1],
                "util_percent": util_v,
                "sm_active": sm_v,
                "power_watts": power.get(key, (None, {}))[0],
                "temp_celsius": temp.get(key, (None, {}))[0],
                "memory_used_mib": fb.get(key, (None, {}))[0],
                "throttle_reasons": decode_reasons(mask) if mask is not None else None,
                "throttled": is_throttled,
                "busy": bool(is_busy),
            }
        )
    sm_vals = [float(r["sm_active"]) for r in rows if r["sm_active"] is not None]
    watts = [float(r["power_watts"]) for r in rows if r["power_watts"] is not None]
    tokens = _tokens_per_s(ctx, at_ms)
    events = [
        {
            "ts_ms": e.ts_ms,
            "kind": e.kind,
            "severity": e.severity,
            "entity": dict(e.entity),
            "attributes": dict(e.attributes),
        }
        for e in store.query_events(at_ms - 3_600_000, at_ms)[-50:]
    ]
    return {
        "at_ms": at_ms,
        "gpus": {"total": len(rows), "busy": busy, "idle": idle, "throttled": throttled},
        "fleet_sm_active": float(np.mean(sm_vals)) if sm_vals else None,
        "power_watts": float(sum(watts)) if watts else None,
        "tokens_per_second": tokens,
        "heatmap": rows,
        "events": list(reversed(events)),
    }


def _tokens_per_s(ctx: Any, at_ms: int) -> float | None:
    """Generated tokens/s over the last minute from vLLM's counter, per Prometheus' rate()."""
    total = 0.0
    seen = False
    for s in ctx.store.select(
        [Matcher("__name__", "=", "vllm:generation_tokens_total")], at_ms - 60_000, at_ms
    ):
        ok = ~s.stale
        ts, v = s.ts_ms[ok], s.values[ok]
        if len(ts) < 2:
            continue
        inc = float(np.sum(np.where(np.diff(v) < 0, v[1:], np.diff(v))))
        total += inc / ((ts[-1] - ts[0]) / 1000)
        seen = True
    return total if seen else None


def make_routes(ctx: Any) -> list[BaseRoute]:
    def page(name: str) -> Any:
        async def handler(request: Request) -> Response:
            return FileResponse(STATIC / name, media_type="text/html")

        return handler

    async def overview_json(request: Request) -> Response:
        try:
            at = request.query_params.get("time")
            at_ms = parse_time_ms(at) if at else int(time.time() * 1000)
        except ValueError as e:
            return error(f'invalid parameter "time": {e}')
        try:
            return success(await asyncio.to_thread(overview, ctx, at_ms))
        except APIError as e:
            return error(str(e), e.error_type, e.status)

    return [
        Route("/", page("overview.html")),
        Route("/ui/overview", page("overview.html")),
        Route("/ui/explore", page("explore.html")),
        Route("/api/v1/ui/overview", overview_json),
        Mount("/ui/static", app=StaticFiles(directory=STATIC), name="ui-static"),
    ]

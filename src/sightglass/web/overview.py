"""The factory overview's twin: "what is my factory doing right now", in one answer.

GPU counts (total = busy + idle + failed; idle-held and throttled are among the busy/idle ones; see
:mod:`sightglass.web.fleet`),
fleet SM activity, power, tokens/s, one cell per node (its worst GPU state and mean SM activity),
recent events; cost per hour, open incidents and predictability come from their features' APIs and
are ``null`` where this server has none. Its cost is a handful of instant queries, whatever the range.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from starlette.requests import Request

from sightglass.web import features
from sightglass.web.fleet import Fleet, Gpu
from sightglass.web.query import Queries, Window

HEALTH_ORDER = ("failed", "throttled", "idle_held", "idle", "busy")


def _node_rows(gpus: list[Gpu]) -> list[dict[str, Any]]:
    nodes: dict[str, list[Gpu]] = {}
    for g in gpus:
        nodes.setdefault(g.node, []).append(g)
    rows = []
    for node, gs in sorted(nodes.items()):
        sm = [v for g in gs if (v := g.values.get("sm_active")) is not None]
        states = {g.health for g in gs}
        rows.append(
            {
                "node": node,
                "gpus": len(gs),
                "busy": sum(g.busy for g in gs),
                "sm_active": fmean(sm) if sm else None,
                "health": next(h for h in HEALTH_ORDER if h in states),
                "counts": {h: sum(g.health == h for g in gs) for h in HEALTH_ORDER if h in states},
            }
        )
    return rows


def build(ctx: Any, w: Window) -> dict[str, Any]:
    q = Queries(ctx, w)
    fleet = Fleet(q)
    for m in ("sm_active", "util_percent", "power_watts"):
        fleet.read(m)
    fleet.read_state()
    gpus = fleet.sorted()
    reporting = [g for g in gpus if g.reporting]
    healthy = [g for g in reporting if not g.failed]  # total = busy + idle + failed
    sm = [v for g in reporting if (v := g.values.get("sm_active")) is not None]
    watts = [v for g in reporting if (v := g.values.get("power_watts")) is not None]
    events = [
        {
            "ts_ms": e.ts_ms,
            "kind": e.kind,
            "severity": e.severity,
            "entity": dict(e.entity),
            "attributes": dict(e.attributes),
        }
        for e in ctx.store.query_events(w.at_ms - 3_600_000, w.at_ms)[-50:]
    ]
    return {
        "window": w.to_dict(),
        "gpus": {
            "total": len(gpus),
            "busy": sum(g.busy for g in healthy),
            "idle": sum(not g.busy for g in healthy),
            "idle_held": sum(bool(g.idle_held) for g in healthy) if fleet.idle_held_known else None,
            "throttled": sum(g.throttled for g in healthy),
            "failed": sum(bool(g.failed) for g in gpus),
        },
        "fleet_sm_active": fmean(sm) if sm else None,
        "power_watts": sum(watts) if watts else None,
        "tokens_per_second": q.scalar("sum(rate(vllm:generation_tokens_total[1m]))"),
        "requests_per_second": q.scalar("sum(rate(vllm:request_success_total[1m]))"),
        "training_jobs": q.scalar(
            "count(count by (slurm_job_id) (last_over_time(training_steps_total[5m])))"
        ),
        "nodes": _node_rows(gpus),
        "failed_gpus": [g.to_dict(()) for g in gpus if g.failed][:50],
        "events": list(reversed(events)),
        "queries": q.ran,
    }


def _first_number(data: Any, *keys: str) -> float | None:
    if isinstance(data, dict):
        for k in keys:
            v = data.get(k)
            if isinstance(v, int | float) and not isinstance(v, bool):
                return float(v)
    return None


async def add_features(request: Request, out: dict[str, Any], w: Window) -> dict[str, Any]:
    """Cost per hour, open incidents, predictability: ``null`` (shown "—") where the feature is absent."""
    t = str(w.at_ms / 1000)
    cost = await features.get(request, "/api/v1/cost/summary", {"time": t})
    out["cost_per_hour_usd"] = _first_number(
        cost["data"], "usd_per_hour", "cost_per_hour_usd", "per_hour_usd"
    )
    inc = await features.get(request, "/api/v1/incidents", {"state": "open"})
    data = inc["data"]
    if isinstance(data, dict):
        data = data.get("incidents", data.get("result"))
    out["open_incidents"] = len(data) if isinstance(data, list) else None
    pred = await features.get(request, "/api/v1/predictability", {"time": t})
    out["predictability"] = _first_number(pred["data"], "score", "predictability", "fleet")
    out["features"] = {
        "cost": cost["available"],
        "incidents": inc["available"],
        "predictability": pred["available"],
    }
    return out

"""The factory overview's twin: "what is my factory doing right now", in one answer.

GPU counts (total = busy + idle + failed; idle-held and throttled are among the busy/idle ones; see
:mod:`sightglass.web.fleet`),
fleet SM activity, power, tokens/s, one cell per node (its worst GPU state and mean SM activity),
recent events; cost per hour (``sightglass_gpu_cost_dollars_total``, written by the cost loop),
predictability (``sightglass_fleet_predictable_ratio``, the analytics loop) and open incidents (the
alerting API) are ``null`` where this server has none. Its cost is a handful of instant queries, whatever the range.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from statistics import fmean
from typing import Any

from starlette.requests import Request

from sightglass.web import features
from sightglass.web.fleet import Fleet, Gpu
from sightglass.web.query import Queries, Window

HEALTH_ORDER = ("failed", "throttled", "idle_held", "idle", "busy")
SCALARS = {
    "tokens_per_second": "sum(rate(vllm:generation_tokens_total[1m]))",
    "requests_per_second": "sum(rate(vllm:request_success_total[1m]))",
    "training_jobs": "count(count by (slurm_job_id) (last_over_time(training_steps_total[5m])))",
    "cost_per_hour_usd": "sum(rate(sightglass_gpu_cost_dollars_total[15m])) * 3600",
    "idle_held_cost_per_hour_usd": 'sum(rate(sightglass_gpu_cost_dollars_total{category="idle_held"}[15m])) * 3600',
    "predictability": "max(last_over_time(sightglass_fleet_predictable_ratio[1h]))",
}


def _sm(g: Gpu) -> float | None:
    sm, util = g.values.get("sm_active"), g.values.get("util_percent")
    return sm if sm is not None else (util / 100 if util is not None else None)


def _node_rows(gpus: list[Gpu]) -> list[dict[str, Any]]:
    nodes: dict[str, list[Gpu]] = {}
    for g in gpus:
        nodes.setdefault(g.node, []).append(g)
    rows = []
    for node, gs in sorted(nodes.items()):
        sm = [v for g in gs if (v := _sm(g)) is not None]
        counts: dict[str, int] = {}
        busy = 0
        for g in gs:
            h = g.health
            counts[h] = counts.get(h, 0) + 1
            busy += h == "busy" or (h in ("throttled", "idle_held") and g.busy)
        rows.append(
            {
                "node": node,
                "gpus": len(gs),
                "busy": busy,
                "sm_active": sum(sm) / len(sm) if sm else None,
                "health": next(h for h in HEALTH_ORDER if h in counts),
                "counts": {h: counts[h] for h in HEALTH_ORDER if h in counts},
            }
        )
    return rows


def build(ctx: Any, w: Window) -> dict[str, Any]:
    q = Queries(ctx, w)
    fleet = Fleet(q)
    # the store's reads spend most of their time in DuckDB, outside the GIL: the small aggregates
    # and the reasons read run beside the main per-GPU read
    with ThreadPoolExecutor(max_workers=3) as pool:
        small = {k: pool.submit(q.scalar, promql) for k, promql in SCALARS.items()}
        reasons = pool.submit(fleet.read_reasons)
        fleet.read_primary()  # one per-GPU reading: SM activity (utilisation where profiling is off)
        fleet.read_state(reasons=reasons.result())
        got = {k: f.result() for k, f in small.items()}
    gpus = fleet.sorted()
    reporting = [g for g in gpus if g.reporting]
    healthy = [g for g in reporting if not g.failed]  # total = busy + idle + failed
    sm = [v for g in reporting if (v := _sm(g)) is not None]
    cost_h, pred = got["cost_per_hour_usd"], got["predictability"]
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
        "tokens_per_second": got["tokens_per_second"],
        "requests_per_second": got["requests_per_second"],
        "training_jobs": got["training_jobs"],
        # the cost and analytics loops write these series (docs/cost.md, docs/analytics.md)
        "cost_per_hour_usd": cost_h,
        "idle_held_cost_per_hour_usd": got["idle_held_cost_per_hour_usd"],
        "predictability": pred,
        "features": {"cost": cost_h is not None, "predictability": pred is not None},
        "nodes": _node_rows(gpus),
        "failed_gpus": [g.to_dict(()) for g in gpus if g.failed][:50],
        "events": list(reversed(events)),
        "queries": q.ran,
    }


async def add_features(request: Request, out: dict[str, Any], w: Window) -> dict[str, Any]:
    """Open incidents from the alerting API: ``null`` (shown "—") where this server has none."""
    inc = await features.get(request, "/api/v1/incidents", {"state": "open"})
    data = inc["data"]
    if isinstance(data, dict):
        data = data.get("incidents", data.get("result"))
    out["open_incidents"] = len(data) if isinstance(data, list) else None
    out["features"]["incidents"] = inc["available"]
    return out

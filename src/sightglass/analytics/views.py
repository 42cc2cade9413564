"""What the API and the CLI show, read back from the store: anomalies, drift, predictability, KPIs.

Everything here reads the events and series the analytics loop wrote, as of a time; nothing is
recomputed per request (the one exception: ``drift`` adds the live tracker's snapshot of an entity
when the server runs one).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sightglass.model import Event, Matcher

LOOKBACK_MS = 15 * 60_000

KPI_HELP: dict[str, str] = {
    "sightglass_gpu_sm_active_ratio": "GPU utilisation by SM activity (0-1)",
    "sightglass_gpu_idle_held": "1 while a GPU is allocated, holds memory and is < 5 % SM active for 30 min",
    "sightglass_gpu_throttle_seconds_total": "seconds with each clock-event reason set {reason}",
    "sightglass_gpu_xid_errors_total": "XID errors seen {xid, severity, action} (curated XID table)",
    "sightglass_training_step_time_seconds": "a training job's step time",
    "sightglass_training_goodput_ratio": "share of wall time in model work: steps/s x (step - data-loader wait)",
    "sightglass_training_dataloader_wait_ratio": "data-loader wait / step time",
    "sightglass_training_straggler_score": "a rank's compute time over the job's median rank (1 = in step)",
    "sightglass_training_mfu_ratio": "model FLOPs utilisation, where FLOPs per step are exported",
    "sightglass_inference_tokens_per_second": "tokens/s per model {token_type=input|output}",
    "sightglass_inference_time_to_first_token_seconds": "TTFT quantiles per model over 1 min {quantile}",
    "sightglass_inference_inter_token_latency_seconds": "ITL quantiles per model over 1 min {quantile}",
    "sightglass_inference_queue_depth": "requests waiting per model",
    "sightglass_inference_requests_running": "requests running per model",
    "sightglass_inference_kv_cache_pressure_ratio": "the fullest replica's KV-cache usage (0-1)",
    "sightglass_inference_preemptions_per_second": "engine preemptions/s per model (KV pressure)",
    "sightglass_inference_energy_per_token_joules": "power of the model's GPUs over its output tokens/s",
    "sightglass_pipeline_freshness_seconds": "age of a pipeline's newest consumable data",
    "sightglass_pipeline_lag_seconds": "how far past its usual cycle a pipeline is",
    "sightglass_workload_predictability_score": "share of the last hour a workload ran within 10 % of its baseline",
    "sightglass_workload_performance_deviation_ratio": "|figure / baseline - 1| per workload",
    "sightglass_fleet_predictable_ratio": "share of scored workloads that are highly predictable (score >= 0.9)",
    "sightglass_fleet_scored_workloads": "workloads with a predictability score",
}


def newest_ms(store: Any) -> int:
    n = int(getattr(store, "newest_ms", 0) or 0)
    if n <= 0:
        from sightglass.api.envelope import APIError

        raise APIError("the store holds no samples yet", "not_found")
    return n


def _event_dict(e: Event) -> dict[str, Any]:
    return {
        "ts_ms": e.ts_ms,
        "kind": e.kind,
        "severity": e.severity,
        "entity": dict(e.entity),
        "attributes": dict(e.attributes),
        "source": e.source,
    }


def anomalies(
    store: Any, start_ms: int, end_ms: int, *, entity: str | None = None, limit: int = 1000
) -> dict[str, Any]:
    evs = store.query_events(start_ms, end_ms, kind="anomaly")
    if entity:
        evs = [e for e in evs if e.entity.get("entity") == entity]
    ents = [e for e in evs if e.kind == "anomaly.entity"]
    cps = [e for e in evs if e.kind == "anomaly.changepoint"]
    return {
        "start_ms": start_ms,
        "end_ms": end_ms,
        "anomalies": [_event_dict(e) for e in ents[-limit:]],
        "changepoints": [_event_dict(e) for e in cps[-limit:]],
        "total": {"anomalies": len(ents), "changepoints": len(cps)},
    }


def open_drifts(events: list[Event]) -> list[dict[str, Any]]:
    """Drifts open after ``events`` (``config.drift`` / ``config.drift.resolved``, ascending)."""
    cur: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        k = (str(e.attributes.get("entity", e.entity.get("entity", ""))), str(e.attributes.get("key", "")))
        if e.kind == "config.drift":
            cur[k] = {**dict(e.attributes), "opened_ms": e.ts_ms}
        elif e.kind == "config.drift.resolved":
            cur.pop(k, None)
    return [cur[k] for k in sorted(cur)]


def drift(
    store: Any,
    at_ms: int,
    *,
    changes_since_ms: int,
    entity: str | None = None,
    limit: int = 1000,
    tracker: Any = None,
) -> dict[str, Any]:
    drift_evs = store.query_events(0, at_ms, kind="config.drift")
    opened = open_drifts(drift_evs)
    changes = [
        e
        for e in store.query_events(changes_since_ms, at_ms, kind="config.change")
        if e.source == "sightglass-analytics"
    ]
    if entity:
        opened = [d for d in opened if d.get("entity") == entity]
        changes = [e for e in changes if e.entity.get("entity") == entity]
    out: dict[str, Any] = {
        "time_ms": at_ms,
        "drifts": opened[:limit],
        "changes": [_event_dict(e) for e in changes[-limit:]],
        "total": {"drifts": len(opened), "changes": len(changes)},
    }
    if entity and tracker is not None:
        out["config"] = tracker.snapshot(entity)
    return out


def _latest(
    store: Any, name: str, at_ms: int, lookback_ms: int = LOOKBACK_MS
) -> list[tuple[dict[str, str], int, float]]:
    out = []
    for sd in store.select([Matcher("__name__", "=", name)], at_ms - lookback_ms, at_ms):
        ok = np.isfinite(sd.values) & ~sd.stale
        if ok.any():
            i = int(np.flatnonzero(ok)[-1])
            out.append((sd.key.label_dict(), int(sd.ts_ms[i]), float(sd.values[i])))
    return out


def predictability(store: Any, at_ms: int, *, kind: str | None = None, high: float = 0.9) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for labels, ts, v in _latest(store, "sightglass_workload_predictability_score", at_ms):
        wkind = labels.pop("workload_kind", "")
        if kind and wkind != kind:
            continue
        rows.append(
            {
                "workload": labels.pop("workload", ""),
                "kind": wkind,
                "labels": labels,
                "score": round(v, 4),
                "highly_predictable": v >= high,
                "ts_ms": ts,
            }
        )
    rows.sort(key=lambda r: (r["score"], r["workload"]))
    if kind:
        ratio = sum(r["highly_predictable"] for r in rows) / len(rows) if rows else None
    else:
        fleet = _latest(store, "sightglass_fleet_predictable_ratio", at_ms)
        ratio = fleet[0][2] if fleet else None
    return {
        "time_ms": at_ms,
        "fleet": None if ratio is None or math.isnan(ratio) else round(ratio, 4),
        "fleet_predictable_ratio": None if ratio is None or math.isnan(ratio) else round(ratio, 4),
        "scored_workloads": len(rows),
        "high_threshold": high,
        "workloads": rows,
    }


def kpis(store: Any, at_ms: int, *, name: str | None = None, limit: int = 1000) -> dict[str, Any]:
    if name is None:
        out = []
        for n, help_ in KPI_HELP.items():
            ids = store.select_ids([Matcher("__name__", "=", n)])
            out.append({"name": n, "help": help_, "series": len(ids)})
        return {"time_ms": at_ms, "kpis": out}
    latest = _latest(store, name, at_ms)
    return {
        "time_ms": at_ms,
        "name": name,
        "help": KPI_HELP[name],
        "series": [{"labels": lab, "ts_ms": ts, "value": v} for lab, ts, v in latest[:limit]],
        "total": len(latest),
    }

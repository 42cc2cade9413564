"""Idle spend and what to do about it: the top idle-held spenders with an action, and a consolidation
estimate (how many GPUs packing would free).

- **Idle-held** lines come from the ledger (the KPI: allocated, memory held, SM activity < 5 % for 30
  min). Releasing them frees their GPUs outright: ``idle GPU-hours / window hours`` GPUs on average.
- **Under-used** workloads (mean SM activity below ``pack_below``, 25 %) could share GPUs (MIG slices,
  time-slicing): packed at ``target_sm`` (70 %) they need ``Σ SM x GPU-hours / (target x window)``
  GPUs instead of the ones they hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sightglass.cost.ledger import IDLE_HELD, USED, Ledger, Workload
from sightglass.cost.prices import MS_PER_HOUR
from sightglass.cost.report import _usd
from sightglass.cost.sources import Inputs

DAY_MS = 86_400_000


@dataclass(slots=True)
class _Acc:
    workload: Workload
    idle_micro: int = 0
    used_micro: int = 0
    idle_ms: float = 0.0
    used_ms: float = 0.0
    sm_weighted: float = 0.0  # Σ SM-active x used ms
    sm_ms: float = 0.0
    mem_weighted: float = 0.0  # Σ framebuffer fraction x ms (where measured)
    mem_ms: float = 0.0
    gpus: int = 0


def action_for(w: Workload, idle_share: float) -> str:
    who = w.name or w.id
    if w.kind == "job":
        return (
            f"job {who} holds GPUs with no SM activity: check it for a hang (NCCL, XID) and cancel or "
            "requeue it from its last checkpoint"
        )
    if "notebook" in w.project or "jupyter" in who:
        return f"cull notebook {who} (set an idle timeout) and release its GPUs"
    if w.service:
        return f"scale service {w.service} down (replica {who} idles) or let it scale to zero when idle"
    if idle_share >= 0.99:
        return f"release the GPUs of {w.kind} {who}: idle for the whole window"
    return f"release the GPUs of {w.kind} {who} while idle, or right-size its request"


def idle_insights(
    ledger: Ledger, inputs: Inputs, *, top: int = 10, pack_below: float = 0.25, target_sm: float = 0.7
) -> dict[str, Any]:
    accs: dict[str, _Acc] = {}
    gpus_of: dict[str, set[str]] = {}
    for ln in ledger.lines:
        w = ln.workload
        if w is None:
            continue
        a = accs.get(w.id)
        if a is None:
            a = accs[w.id] = _Acc(w)
        gpus_of.setdefault(w.id, set()).add(ln.gpu)
        if ln.category == IDLE_HELD:
            a.idle_micro += ln.micro
            a.idle_ms += float(ln.gpu_ms)
        elif ln.category == USED:
            a.used_micro += ln.micro
            a.used_ms += float(ln.gpu_ms)
    for al in inputs.allocations:
        a = accs.get(al.workload.id)
        if a is None:
            continue
        lo, hi = max(al.start_ms, ledger.start_ms), min(al.end_ms, ledger.end_ms)
        if hi <= lo:
            continue
        sm = inputs.sm_mean(al.gpu, lo, hi)
        share = float(al.share) if al.share is not None else 1.0
        if sm is not None:
            a.sm_weighted += sm * (hi - lo) * share
            a.sm_ms += (hi - lo) * share
        mem = inputs.memory.get(al.gpu)
        if mem is not None:
            a.mem_weighted += mem * (hi - lo) * share
            a.mem_ms += (hi - lo) * share
    window_ms = ledger.end_ms - ledger.start_ms
    spenders = sorted((a for a in accs.values() if a.idle_micro > 0), key=lambda a: -a.idle_micro)
    rows = []
    for a in spenders[:top]:
        total = a.idle_micro + a.used_micro
        rows.append(
            {
                "workload": a.workload.to_dict(),
                "idle_held_usd": _usd(a.idle_micro),
                "idle_held_gpu_hours": round(a.idle_ms / MS_PER_HOUR, 4),
                "idle_share": round(a.idle_micro / total, 4) if total else None,
                "gpus": len(gpus_of.get(a.workload.id, ())),
                "idle_usd_per_day": _usd(round(a.idle_micro * DAY_MS / window_ms)),
                "action": action_for(a.workload, a.idle_micro / total if total else 0.0),
            }
        )
    idle_ms = sum(a.idle_ms for a in accs.values())
    idle_micro = sum(a.idle_micro for a in accs.values())
    idle_gpus = idle_ms / window_ms
    under = [
        a for a in accs.values() if a.sm_ms > 0 and a.used_ms > 0 and a.sm_weighted / a.sm_ms < pack_below
    ]
    held = sum(a.used_ms for a in under) / window_ms
    # packing needs the compute and the memory: at target SM activity, and with 10 % memory headroom
    compute = sum(a.sm_weighted for a in under) / target_sm / window_ms
    memory = sum(a.mem_weighted / a.mem_ms * a.used_ms for a in under if a.mem_ms) / 0.9 / window_ms
    needed = max(compute, memory)
    pack_freed = max(0, math.floor(held - math.ceil(needed))) if under else 0
    pack_micro = sum(a.used_micro for a in under)
    freed = math.floor(idle_gpus) + pack_freed
    return {
        "window": {"start_ms": ledger.start_ms, "end_ms": ledger.end_ms},
        "top_idle_spenders": rows,
        "idle_held_usd": _usd(idle_micro),
        "consolidation": {
            "idle_held_gpus_average": round(idle_gpus, 3),
            "gpus_freed_by_releasing_idle_held": math.floor(idle_gpus),
            "underused_workloads": sorted(a.workload.id for a in under),
            "underused_gpus_held_average": round(held, 3),
            "gpus_needed_if_packed": math.ceil(needed) if under else 0,
            "packing_bound_by": "memory" if under and memory > compute else "compute",
            "gpus_freed_by_packing_underused": pack_freed,
            "gpus_freed_total": freed,
            "nodes_freed_if_8_gpus": freed // 8,
            "idle_held_usd_per_day": _usd(round(idle_micro * DAY_MS / window_ms)),
            "underused_usd_per_day": _usd(round(pack_micro * DAY_MS / window_ms)),
            "pack_below_sm_active": pack_below,
            "target_sm_active": target_sm,
        },
    }

"""Cost per training step and per run, and what failures, hangs and restarts wasted.

For each Slurm job in the ledger: its cost (used + idle-held), the steps it made in the window
(``training_steps_total{slurm_job_id}`` increase) and two kinds of waste, both in micro-dollars:

- **stalled**: the share of its sample intervals in which the step counter did not move while it held
  the GPUs (a hang, a restart, a data-loader stall that stops steps) — measured;
- **lost on failure**: a run that ended ``FAILED`` loses the work since its last checkpoint:
  ``(end - start) mod checkpoint_interval`` of its time (checkpoint cadence assumed, ``[cost]
  checkpoint_interval``, 30 min), with the steps made in that time.

Goodput-weighted cost per step = cost / (steps - steps lost): what a step that counted really cost.
Runs group jobs by ``job_name`` (a requeued or restarted run keeps its name).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sightglass.cost.ledger import Allocation, Ledger
from sightglass.cost.prices import MS_PER_HOUR
from sightglass.cost.report import _usd
from sightglass.model import Matcher
from sightglass.topology.graph import Topology


@dataclass(slots=True)
class JobCost:
    job: str
    name: str
    team: str
    state: str
    cost_micro: int
    gpu_hours: float
    steps: float
    stalled_fraction: float
    lost_ms: int
    lost_steps: float
    held_ms: int

    @property
    def stalled_micro(self) -> int:
        return round(self.cost_micro * self.stalled_fraction)

    @property
    def lost_micro(self) -> int:
        if self.held_ms <= 0:
            return 0
        return round(self.cost_micro * (1 - self.stalled_fraction) * min(1.0, self.lost_ms / self.held_ms))

    @property
    def good_steps(self) -> float:
        return max(0.0, self.steps - self.lost_steps)

    def to_dict(self) -> dict[str, Any]:
        waste = self.stalled_micro + self.lost_micro
        return {
            "job": self.job,
            "job_name": self.name,
            "team": self.team,
            "state": self.state,
            "cost_usd": _usd(self.cost_micro),
            "gpu_hours": round(self.gpu_hours, 6),
            "steps": round(self.steps, 3),
            "good_steps": round(self.good_steps, 3),
            "cost_per_step_usd": round(self.cost_micro / self.steps / 1e6, 6) if self.steps > 0 else None,
            "goodput_cost_per_step_usd": (
                round(self.cost_micro / self.good_steps / 1e6, 6) if self.good_steps > 0 else None
            ),
            "stalled_fraction": round(self.stalled_fraction, 4),
            "wasted_usd": _usd(waste),
            "wasted_stalled_usd": _usd(self.stalled_micro),
            "wasted_lost_on_failure_usd": _usd(self.lost_micro),
            "goodput_ratio": round(1 - waste / self.cost_micro, 4) if self.cost_micro else None,
        }


def job_costs(
    ledger: Ledger,
    store: Any,
    allocations: Iterable[Allocation],
    topology: Topology | None,
    *,
    checkpoint_interval_ms: int = 1_800_000,
) -> list[JobCost]:
    per: dict[str, dict[str, Any]] = {}
    for ln in ledger.lines:
        w = ln.workload
        if w is None or w.kind != "job":
            continue
        d = per.setdefault(w.id, {"w": w, "micro": 0, "ms": 0})
        d["micro"] += ln.micro
        d["ms"] += float(ln.gpu_ms)
    steps = _steps(store, ledger.start_ms, ledger.end_ms)
    spans = _job_bounds(allocations)
    out = []
    for jid, d in sorted(per.items()):
        w = d["w"]
        ent = topology.entity(jid) if topology else None
        state = str(ent.attributes.get("state", "")) if ent else ""
        start, stop = spans.get(jid, (ledger.start_ms, ledger.end_ms))
        a, b = max(ledger.start_ms, start), min(ledger.end_ms, stop)
        ts, vals = steps.get(jid.removeprefix("job:"), (np.empty(0), np.empty(0)))
        sel = (ts >= a) & (ts <= b)
        t, v = ts[sel], vals[sel]
        n_steps, stalled = 0.0, 0.0
        if len(v) >= 2:
            dv = np.diff(v)
            dv = np.where(dv < 0, v[1:], dv)
            n_steps = float(dv.sum())
            stalled = float((dv <= 0).mean())
        lost_ms, lost_steps = 0, 0.0
        if state == "FAILED" and stop <= ledger.end_ms:
            lost_ms = (stop - start) % checkpoint_interval_ms
            lost_ms = min(lost_ms, b - a)
            if len(t) >= 2:
                lost_steps = float(v[-1] - np.interp(b - lost_ms, t, v))
        out.append(
            JobCost(
                jid,
                w.name,
                w.team,
                state,
                d["micro"],
                d["ms"] / MS_PER_HOUR,
                n_steps,
                stalled,
                lost_ms,
                max(0.0, lost_steps),
                b - a,
            )
        )
    return out


def run_costs(jobs: list[JobCost]) -> list[dict[str, Any]]:
    """Jobs grouped by run (``job_name``): restarts and failures of one run add up."""
    runs: dict[str, list[JobCost]] = {}
    for j in jobs:
        runs.setdefault(j.name, []).append(j)
    out = []
    for name, js in sorted(runs.items()):
        cost = sum(j.cost_micro for j in js)
        steps = sum(j.steps for j in js)
        good = sum(j.good_steps for j in js)
        waste = sum(j.stalled_micro + j.lost_micro for j in js)
        out.append(
            {
                "run": name,
                "jobs": [j.job for j in js],
                "attempts": len(js),
                "failed": sum(j.state == "FAILED" for j in js),
                "cost_usd": _usd(cost),
                "steps": round(steps, 3),
                "cost_per_step_usd": round(cost / steps / 1e6, 6) if steps else None,
                "goodput_cost_per_step_usd": round(cost / good / 1e6, 6) if good else None,
                "wasted_usd": _usd(waste),
            }
        )
    return out


def _job_bounds(allocations: Iterable[Allocation]) -> dict[str, tuple[int, int]]:
    """Each job's span: its earliest start and latest end over the GPUs it held."""
    out: dict[str, tuple[int, int]] = {}
    for al in allocations:
        if al.workload.kind != "job":
            continue
        a, b = out.get(al.workload.id, (al.start_ms, al.end_ms))
        out[al.workload.id] = (min(a, al.start_ms), max(b, al.end_ms))
    return out


def _steps(store: Any, start_ms: int, end_ms: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for sd in store.select([Matcher("__name__", "=", "training_steps_total")], start_ms - 60_000, end_ms):
        job = sd.key.label_dict().get("slurm_job_id")
        if not job:
            continue
        ok = ~sd.stale
        if job in out:
            t = np.concatenate([out[job][0], sd.ts_ms[ok]])
            v = np.concatenate([out[job][1], sd.values[ok]])
            order = np.argsort(t, kind="stable")
            out[job] = (t[order], v[order])
        else:
            out[job] = (sd.ts_ms[ok], sd.values[ok])
    return out

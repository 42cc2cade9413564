"""Helpers for the simulator tests: run a small factory in memory and read series back."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from sightglass.simulate.engine import Simulator
from sightglass.simulate.faults import CATALOGUE, ScriptedFault
from sightglass.timeutil import parse_time_ms

START_MS = parse_time_ms("2026-11-16T00:00:00Z")


@dataclass
class Run:
    sim: Simulator
    fault_ms: int
    data: dict[str, dict[int, list[tuple[int, np.ndarray]]]] = field(default_factory=dict)

    def series(
        self, name: str, **match: str
    ) -> dict[tuple[tuple[str, str], ...], tuple[np.ndarray, np.ndarray]]:
        """``{labels: (ts_ms, values)}`` of a family's series whose labels include ``match``."""
        out = {}
        for sid, pts in self.data.get(name, {}).items():
            pairs = self.sim.labels.full_pairs(sid)
            d = dict(pairs)
            if all(d.get(k) == v for k, v in match.items()):
                out[pairs] = (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
        return out

    def values(self, name: str, **match: str) -> tuple[np.ndarray, np.ndarray]:
        """Samples of all matching series, summed per timestamp (histograms: the row)."""
        acc: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(1))
        for ts, vals in self.series(name, **match).values():
            for t, v in zip(ts.tolist(), vals, strict=True):
                acc[t] = acc[t] + v if t in acc else np.array(v, dtype=float)
        ts = np.array(sorted(acc))
        return ts, np.array([acc[t] for t in ts.tolist()])

    def before_after(self, name: str, reduce: str = "mean", **match: str) -> tuple[float, float]:
        ts, v = self.values(name, **match)
        assert len(ts), f"no samples of {name} {match}"
        pre = v[(ts < self.fault_ms) & (ts >= self.fault_ms - 600_000)]
        end = self.sim.faults[0].end_ms if self.sim.faults else ts.max() + 1
        post = v[(ts >= self.fault_ms + 120_000) & (ts < end)]
        f = getattr(np, reduce)
        return float(f(pre)) if len(pre) else float("nan"), float(f(post)) if len(post) else float("nan")


def run_sim(
    nodes: int = 8,
    minutes: float | None = None,
    seed: int = 7,
    fault: str | None = None,
    at_min: float = 10,
    dur_min: float | None = None,
    target: dict[str, str] | None = None,
    **kw: object,
) -> Run:
    """A small factory in memory; a scripted fault at ``at_min`` lasting its class's shortest duration."""
    if dur_min is None:
        dur_min = max(12.0, CATALOGUE[fault].duration_s[0] / 60) if fault else 0.0
    if minutes is None:
        minutes = at_min + dur_min + 3
    scripted = (
        [ScriptedFault(fault, int(at_min * 60_000), int(dur_min * 60_000), target or {})] if fault else None
    )
    sim = Simulator(nodes, seed, START_MS, scripted=scripted, **kw)  # type: ignore[arg-type]
    run = Run(sim, START_MS + int(at_min * 60_000))
    for _ in range(int(minutes * 6) + 1):
        fr = sim.step()
        for fam, ids, vals in fr.parts:
            d = run.data.setdefault(fam.name, {})
            for sid, v in zip(ids.tolist(), vals, strict=True):
                d.setdefault(sid, []).append((fr.ts_ms, v))
    return run

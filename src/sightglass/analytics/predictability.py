"""Predictability: does a workload perform as its own past says it will, at the same load?

Per workload (a training job, an inference model) and per row of the grid:

1. the performance figure: a training job's step time; an inference model's tokens/s per request
   (1 / its median inter-token latency over the last minute, replicas together);
2. the load bin: training jobs have one (their shape does not change while they run); inference
   models are binned by their output tokens/s in half-octaves (1, 2, 3, 4-5, 6-7, 8-11, ...), so
   the figure is compared with what the model did under the same demand;
3. the baseline: the median of the bin's last ``history`` values (at least ``min_history``);
4. the row is *as expected* when the figure is within ``tolerance`` (10 %) of that median.

The score is the share of the last ``window`` rated rows (1 h) that were as expected: 1.0 for a
workload that always runs as it did, lower the more it wanders. A workload is *highly predictable*
when its score is at least ``high`` (0.9); the fleet ratio is the share of scored workloads that are.
The value is added to its bin's history after it is rated, so one slow stretch does not become its
own baseline until it lasts longer than half the history. Stateful and incremental: call
:meth:`PredictabilityTracker.update` per batch with the new rows only.

Series: ``sightglass_workload_predictability_score{workload, workload_kind, ...}`` (0..1),
``sightglass_workload_performance_deviation_ratio`` (|figure / baseline - 1|),
``sightglass_fleet_predictable_ratio`` and ``sightglass_fleet_scored_workloads``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sightglass.model import SampleBatchBuilder, SeriesKey


@dataclass(frozen=True, slots=True)
class PredictabilityConfig:
    tolerance: float = 0.10
    history: int = 360  # values kept per load bin (1 h at 10 s)
    min_history: int = 12
    window: int = 360  # rated rows the score is over
    min_rated: int = 30  # rows rated before a score is published
    high: float = 0.9
    stale_ms: int = 10 * 60_000  # a workload silent this long leaves the fleet ratio

    def __post_init__(self) -> None:
        if not 0 < self.tolerance < 1:
            raise ValueError(f"predictability tolerance must be in (0, 1), got {self.tolerance}")
        if not 0 < self.high <= 1:
            raise ValueError(f"predictability high must be in (0, 1], got {self.high}")
        if self.min_history < 1 or self.history < self.min_history:
            raise ValueError("predictability history must be >= min_history >= 1")
        if self.min_rated < 1 or self.window < self.min_rated:
            raise ValueError("predictability window must be >= min_rated >= 1")


def load_bin(load: float) -> int:
    """Half-octave bins of a concurrency: 0 for idle, then 1, 2, 3, 4-5, 6-7, 8-11, 12-15, ..."""
    if not math.isfinite(load) or load < 0.5:
        return 0
    return 1 + math.floor(2 * math.log2(load) + 1e-9)


@dataclass(slots=True)
class WorkloadState:
    workload: str
    kind: str
    labels: dict[str, str]
    bins: dict[int, deque[float]] = field(default_factory=dict)
    rated: deque[bool] = field(default_factory=deque)
    last_ms: int = 0
    last_deviation: float | None = None

    def score(self, cfg: PredictabilityConfig) -> float | None:
        if len(self.rated) < cfg.min_rated:
            return None
        return sum(self.rated) / len(self.rated)

    def to_dict(self, cfg: PredictabilityConfig) -> dict[str, Any]:
        s = self.score(cfg)
        return {
            "workload": self.workload,
            "kind": self.kind,
            "labels": dict(self.labels),
            "score": None if s is None else round(s, 4),
            "highly_predictable": None if s is None else s >= cfg.high,
            "rated_rows": len(self.rated),
            "last_deviation": None if self.last_deviation is None else round(self.last_deviation, 4),
            "last_ms": self.last_ms,
            "load_bins": sorted(self.bins),
        }


@dataclass(slots=True)
class PredictabilityTracker:
    config: PredictabilityConfig = field(default_factory=PredictabilityConfig)
    workloads: dict[str, WorkloadState] = field(default_factory=dict)

    def update(
        self,
        grid: np.ndarray,
        perf: dict[str, tuple[str, dict[str, str], np.ndarray, np.ndarray | None]],
        out: SampleBatchBuilder | None = None,
    ) -> SampleBatchBuilder:
        """Rate the new rows. ``perf``: workload id -> (kind, labels, figure per row, load per row
        or None); NaN figures are skipped. Appends the score series to ``out`` (or a new builder)."""
        cfg = self.config
        out = out if out is not None else SampleBatchBuilder()
        for wid, (kind, labels, values, load) in sorted(perf.items()):
            if len(values) != len(grid) or (load is not None and len(load) != len(grid)):
                raise ValueError(f"predictability input for {wid!r} does not match the grid")
            st = self.workloads.get(wid)
            if st is None:
                st = self.workloads[wid] = WorkloadState(wid, kind, dict(labels))
                st.rated = deque(maxlen=cfg.window)
            st.labels = dict(labels)
            lab = {"workload": wid, "workload_kind": kind, **labels}
            for i, t in enumerate(grid.tolist()):
                x = float(values[i])
                if not math.isfinite(x) or x <= 0:
                    continue
                b = load_bin(float(load[i])) if load is not None else 0
                hist = st.bins.get(b)
                if hist is None:
                    hist = st.bins[b] = deque(maxlen=cfg.history)
                if len(hist) >= cfg.min_history:
                    base = float(np.median(np.fromiter(hist, float, len(hist))))
                    dev = abs(x / base - 1.0) if base > 0 else math.inf
                    st.rated.append(dev <= cfg.tolerance)
                    st.last_deviation = dev
                    if math.isfinite(dev):
                        out.add(SeriesKey.of("sightglass_workload_performance_deviation_ratio", lab), t, dev)
                hist.append(x)
                st.last_ms = int(t)
                s = st.score(cfg)
                if s is not None:
                    out.add(SeriesKey.of("sightglass_workload_predictability_score", lab), t, s)
        for t in grid.tolist():
            ratio, n = self.fleet_ratio(int(t))
            if n:
                out.add(SeriesKey.of("sightglass_fleet_predictable_ratio", {}), t, ratio)
                out.add(SeriesKey.of("sightglass_fleet_scored_workloads", {}), t, float(n))
        return out

    def fleet_ratio(self, now_ms: int) -> tuple[float, int]:
        """(share of highly predictable workloads, how many were scored) among the live ones."""
        cfg = self.config
        scores = [
            s
            for w in self.workloads.values()
            if now_ms - w.last_ms <= cfg.stale_ms and w.last_ms <= now_ms + cfg.stale_ms
            for s in [w.score(cfg)]
            if s is not None
        ]
        if not scores:
            return 0.0, 0
        return sum(s >= cfg.high for s in scores) / len(scores), len(scores)

    def summary(self, now_ms: int | None = None) -> dict[str, Any]:
        cfg = self.config
        now = now_ms if now_ms is not None else max((w.last_ms for w in self.workloads.values()), default=0)
        ratio, n = self.fleet_ratio(now)
        return {
            "fleet_predictable_ratio": round(ratio, 4) if n else None,
            "scored_workloads": n,
            "high_threshold": cfg.high,
            "tolerance": cfg.tolerance,
            "workloads": [w.to_dict(cfg) for _, w in sorted(self.workloads.items())],
        }

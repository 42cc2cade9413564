"""Sightglass's service-level ranking for public microservice benchmarks.

Deterministic and explainable, in four steps, each visible in :class:`ServiceScore`:

1. **Baseline.** For every ``<service>_<metric>`` column, a robust baseline from the samples before
   the injection: median and scale = max(1.4826·MAD, ``rel_floor``·|median|, ``range_floor``·max|x|, ``abs_floor``).
2. **Anomaly magnitude.** Over the fault window, the ``k``-th largest deviation in the metric's bad
   direction (CPU, memory and latency up, success rate down, traffic either way), as a robust z-score,
   compressed with log1p so a division by a tiny scale cannot drown every other signal.
3. **Per-service aggregation.** Metrics are grouped into families (cpu, memory, latency, errors,
   traffic); a family's score is its best metric, weighted; the service's score is its best family plus
   a fraction of the second (a fault usually moves more than one family of its own service).
4. **Call graph and onset.** When a call graph is known, latency that a slower callee explains is
   discounted (a caller waits for its callee); among near ties the earlier onset wins.

Client-side latency columns are left out: they measure the callees, not the pod itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sightglass.rca.external.cases import Case, split_column

UP, DOWN, BOTH = 1, -1, 0


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """Parameters, chosen on the development subset named in docs/rca-benchmarks.md."""

    rel_floor: float = 0.05  # scale floor as a fraction of the baseline median
    abs_floor: float = 1e-6
    range_floor: float = 0.0  # scale floor as a fraction of the column's largest |value| in the case
    kth: int = 2  # use the k-th largest deviation in the window (1 = the peak)
    second_family: float = 0.25  # weight of a service's second-best family
    callee_discount: float = 1.0  # how much of a caller's latency a slower callee explains
    min_baseline: int = 3  # baseline samples needed to score a column
    family_weights: Mapping[str, float] = field(
        default_factory=lambda: {"cpu": 1.0, "memory": 0.5, "latency": 1.0, "errors": 1.0, "traffic": 0.25,
                                 "calls": 1.0}
    )


@dataclass(slots=True)
class MetricEvidence:
    column: str
    family: str
    baseline_median: float
    baseline_scale: float
    peak: float
    z: float
    onset: float | None  # first sample time past 3 scales, unix s


@dataclass(slots=True)
class ServiceScore:
    service: str
    score: float
    onset: float | None
    families: dict[str, float]
    evidence: list[MetricEvidence]

    def to_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "score": round(self.score, 4),
            "onset": self.onset,
            "families": {k: round(v, 4) for k, v in self.families.items()},
            "top_evidence": [
                {"column": e.column, "baseline": e.baseline_median, "peak": e.peak, "z": round(e.z, 2)}
                for e in sorted(self.evidence, key=lambda e: -e.z)[:3]
            ],
        }


def metric_family(metric: str) -> tuple[str, int] | None:
    """Family and bad direction of a metric name, or None to ignore it."""
    m = metric.lower()
    if "client" in m or m.startswith("node"):
        return None
    if "cpu" in m:
        return "cpu", UP
    if "mem" in m:
        return "memory", UP
    if "success" in m:
        return "errors", DOWN
    if "error" in m or "fail" in m or "5xx" in m:
        return "errors", UP
    if "lat" in m or "duration" in m or "p9" in m or m == "rt":
        return "latency", UP
    return "traffic", BOTH


def _column_evidence(
    column: str, family: str, direction: int, base: np.ndarray, window: np.ndarray, times: np.ndarray,
    cfg: ScoringConfig,
) -> MetricEvidence | None:
    ok = ~np.isnan(base)
    base = base[ok]
    if base.size < cfg.min_baseline:
        return None
    good = ~np.isnan(window)
    if not good.any():
        return None
    window, times = window[good], times[good]
    med = float(np.median(base))
    mad = float(np.median(np.abs(base - med))) * 1.4826
    top = float(max(np.max(np.abs(base)), np.max(np.abs(window))))
    scale = max(mad, cfg.rel_floor * abs(med), cfg.range_floor * top, cfg.abs_floor)
    dev = (window - med) / scale
    if direction == DOWN:
        dev = -dev
    elif direction == BOTH:
        dev = np.abs(dev)
    k = min(cfg.kth, dev.size)
    z = float(np.sort(dev)[-k])
    over = np.nonzero(dev > 3.0)[0]
    onset = float(times[over[0]]) if over.size else None
    peak = float(window[int(np.argmax(dev))])
    return MetricEvidence(column, family, med, scale, peak, max(z, 0.0), onset)


def score_services(
    case: Case, cfg: ScoringConfig | None = None, edges: Iterable[tuple[str, str]] = ()
) -> list[ServiceScore]:
    """Rank the services of ``case`` (best first) from its metrics and, if given, its call graph."""
    cfg = cfg or ScoringConfig()
    f = case.frame
    t = f["time"].to_numpy(dtype=float)
    before = t < case.inject_time
    end = math.inf if case.fault_window_s is None else case.inject_time + case.fault_window_s
    during = (t >= case.inject_time) & (t <= end)
    per: dict[str, list[MetricEvidence]] = {}
    for col in f.columns:
        if col == "time":
            continue
        service, metric = split_column(str(col))
        per.setdefault(service, [])
        fam = metric_family(metric)
        if fam is None:
            continue
        values = f[col].to_numpy(dtype=float)
        ev = _column_evidence(str(col), fam[0], fam[1], values[before], values[during], t[during], cfg)
        if ev is not None:
            per[service].append(ev)

    fam_scores: dict[str, dict[str, float]] = {}
    for service, evs in per.items():
        fams: dict[str, float] = {}
        for ev in evs:
            w = cfg.family_weights.get(ev.family, 0.0)
            fams[ev.family] = max(fams.get(ev.family, 0.0), w * math.log1p(ev.z))
        fam_scores[service] = fams

    edge_lat = case.extras.get("edge_latency")
    if isinstance(edge_lat, pd.DataFrame) and not edge_lat.empty:
        for service, value in call_scores(edge_lat, case.inject_time, end, cfg).items():
            if service in fam_scores:
                fam_scores[service]["calls"] = cfg.family_weights.get("calls", 0.0) * value

    # a caller's latency is explained by a callee whose own latency anomaly is at least as large
    callees: dict[str, set[str]] = {}
    for src, dst in edges:
        if src in fam_scores and dst in fam_scores and src != dst:
            callees.setdefault(src, set()).add(dst)
    if cfg.callee_discount > 0:
        raw_lat = {s: v.get("latency", 0.0) for s, v in fam_scores.items()}
        for src, dsts in callees.items():
            worst = max(raw_lat[d] for d in dsts)
            if worst >= raw_lat[src] and raw_lat[src] > 0:
                fam_scores[src]["latency"] = raw_lat[src] * (1.0 - cfg.callee_discount)

    out: list[ServiceScore] = []
    for service, fams in fam_scores.items():
        ranked = [*sorted(fams.values(), reverse=True), 0.0, 0.0]
        score = ranked[0] + cfg.second_family * ranked[1]
        onsets = [e.onset for e in per[service] if e.onset is not None]
        out.append(ServiceScore(service, score, min(onsets) if onsets else None, fams, per[service]))
    out.sort(key=lambda s: (-round(s.score, 6), s.onset if s.onset is not None else math.inf, s.service))
    return out


def call_scores(edge_latency: pd.DataFrame, inject: float, end: float, cfg: ScoringConfig) -> dict[str, float]:
    """Blame from per-edge latency (``caller->callee`` columns, as the caller measures it).

    A callee's score is the mean, over its callers, of log1p(z) of their call latency to it: a slow or
    delayed service slows every caller's calls to it, while a caller's own slowness shows on one edge
    only. A callee whose own outgoing calls are more anomalous than its incoming ones is passed over
    (``callee_discount``): the delay is further down.
    """
    t = edge_latency["time"].to_numpy(dtype=float)
    before = t < inject
    during = (t >= inject) & (t <= end)
    z: dict[tuple[str, str], float] = {}
    for col in edge_latency.columns:
        if col == "time" or "->" not in str(col):
            continue
        src, dst = str(col).split("->", 1)
        v = edge_latency[col].to_numpy(dtype=float)
        ev = _column_evidence(str(col), "calls", UP, v[before], v[during], t[during], cfg)
        if ev is not None:
            z[(src, dst)] = math.log1p(ev.z)
    inbound: dict[str, list[float]] = {}
    outbound: dict[str, float] = {}
    for (src, dst), value in z.items():
        inbound.setdefault(dst, []).append(value)
        outbound[src] = max(outbound.get(src, 0.0), value)
    out: dict[str, float] = {}
    for dst, values in inbound.items():
        score = sum(values) / len(values)
        if outbound.get(dst, 0.0) > score:
            score *= 1.0 - cfg.callee_discount
        out[dst] = score
    return out


def rank_services(case: Case, cfg: ScoringConfig | None = None, edges: Iterable[tuple[str, str]] = ()) -> list[str]:
    return [s.service for s in score_services(case, cfg, edges)]


def frame_window(frame: pd.DataFrame, start: float, end: float) -> pd.DataFrame:
    t = frame["time"]
    return frame[(t >= start) & (t < end)]

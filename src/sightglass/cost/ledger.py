"""The cost ledger: every GPU-millisecond of a window is *used*, *idle-held* or *unallocated*, once.

Pure: inputs are the fleet (GPUs with their model and presence), allocations (a workload holds a GPU,
a MIG slice or a share of one over an interval), idle-held intervals (the analytics KPI), per-GPU
energy and a :class:`~sightglass.cost.prices.PriceSheet`. Per GPU the window is cut into elementary
intervals at every boundary (allocations, idle flags, price versions); in each one the GPU's cost
(rate x time + priced energy) is split by share among the workloads holding it and the rest is
unallocated. Shares never sum past 1, so a shared GPU is never counted twice:

- one holder, no share given: 1 (exclusive);
- explicit shares (MIG profile, fractional request, measured): as given, scaled down to 1 in total
  when they overshoot (confidence ``low``);
- several holders without shares (time-slicing): equal split, confidence ``low``.

Amounts stay exact (:class:`fractions.Fraction` micro-dollars) until the end; each GPU's total is
rounded once and its lines get integer micro-dollars by largest remainder, so Σ lines = Σ GPU totals =
fleet cost exactly, for any window.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from sightglass.cost.prices import MS_PER_HOUR, PriceSheet

USED = "used"
IDLE_HELD = "idle_held"
UNALLOCATED = "unallocated"
CATEGORIES = (USED, IDLE_HELD, UNALLOCATED)
CONFIDENCE = ("high", "medium", "low")


@dataclass(frozen=True, slots=True)
class Gpu:
    """A GPU of the fleet: costs money from ``start_ms`` to ``end_ms`` (None: open)."""

    id: str  # "gpu:<UUID>"
    node: str
    model_name: str  # DCGM modelName ("NVIDIA H100 80GB HBM3")
    start_ms: int | None = None
    end_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Workload:
    """Who holds GPUs: a pod, a Slurm job or a bare process, with what it rolls up to."""

    id: str  # "pod:ns/name", "job:40123", "process:host/pid"
    kind: str  # pod | job | process
    team: str = ""
    project: str = ""
    model: str = ""
    service: str = ""
    name: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "kind": self.kind,
            "team": self.team,
            "project": self.project,
            "model": self.model,
            "service": self.service,
            "name": self.name,
        }


@dataclass(frozen=True, slots=True)
class Allocation:
    """``workload`` holds (part of) ``gpu`` over ``[start_ms, end_ms)``.

    ``share``: fraction of the GPU (None = whole GPU unless others hold it too). ``share_source``
    says where it came from (exclusive, mig-profile, request, measured, equal-split), ``confidence``
    how sure the bounds and the share are (high: accounting record or MIG profile; medium: sampled
    bounds or a requested fraction; low: an assumption).
    """

    workload: Workload
    gpu: str
    start_ms: int
    end_ms: int
    share: Fraction | None = None
    share_source: str = "exclusive"
    confidence: str = "high"


@dataclass(slots=True)
class Line:
    """One ledger line: a GPU x workload (or none) x category over the window."""

    gpu: str
    node: str
    gpu_key: str
    workload: Workload | None
    category: str
    gpu_ms: Fraction = Fraction(0)  # share-weighted milliseconds
    exact_micro: Fraction = Fraction(0)
    energy_j: Fraction = Fraction(0)
    co2e_g: Fraction = Fraction(0)
    confidence: str = "high"
    share_sources: set[str] = field(default_factory=set)
    micro: int = 0  # integer micro-dollars after rounding

    @property
    def usd(self) -> float:
        return self.micro / 1_000_000

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu": self.gpu,
            "node": self.node,
            "gpu_model": self.gpu_key,
            "workload": self.workload.to_dict() if self.workload else None,
            "category": self.category,
            "gpu_hours": float(self.gpu_ms) / MS_PER_HOUR,
            "cost_micro_usd": self.micro,
            "cost_usd": self.usd,
            "energy_kwh": float(self.energy_j) / 3.6e6,
            "co2e_kg": float(self.co2e_g) / 1000,
            "confidence": self.confidence,
            "share_sources": sorted(self.share_sources),
        }


@dataclass(slots=True)
class Ledger:
    start_ms: int
    end_ms: int
    lines: list[Line]
    gpu_totals: dict[str, int]  # gpu -> micro-dollars (rounded once)
    gpu_exact: dict[str, Fraction]
    unpriced: dict[str, str]  # gpu -> model name without a price
    warnings: list[str] = field(default_factory=list)

    @property
    def fleet_micro(self) -> int:
        return sum(self.gpu_totals.values())

    def category_micro(self) -> dict[str, int]:
        out = dict.fromkeys(CATEGORIES, 0)
        for ln in self.lines:
            out[ln.category] += ln.micro
        return out

    def check(self) -> None:
        """Raise when Σ lines differs from the fleet cost by even one micro-dollar."""
        per_gpu: dict[str, int] = {}
        for ln in self.lines:
            per_gpu[ln.gpu] = per_gpu.get(ln.gpu, 0) + ln.micro
        for g, total in self.gpu_totals.items():
            if per_gpu.get(g, 0) != total:
                raise AssertionError(f"ledger of {g} does not reconcile: {per_gpu.get(g, 0)} != {total}")
        if sum(per_gpu.values()) != self.fleet_micro:
            raise AssertionError("ledger lines do not sum to the fleet cost")


EnergyFn = Callable[[str, int, int], Fraction | None]  # (gpu, a, b) -> joules, None = not measured


def _clip(a: int, b: int, lo: int, hi: int) -> tuple[int, int]:
    return max(a, lo), min(b, hi)


def _worst(a: str, b: str) -> str:
    return a if CONFIDENCE.index(a) >= CONFIDENCE.index(b) else b


def build_ledger(
    fleet: Sequence[Gpu],
    allocations: Iterable[Allocation],
    prices: PriceSheet,
    start_ms: int,
    end_ms: int,
    *,
    idle: Mapping[str, Sequence[tuple[int, int]]] | None = None,
    energy: EnergyFn | None = None,
) -> Ledger:
    """The reconciled ledger of ``[start_ms, end_ms)``."""
    if end_ms <= start_ms:
        raise ValueError("the window's end must be after its start")
    by_gpu: dict[str, list[Allocation]] = {}
    for alloc in allocations:
        if alloc.end_ms > alloc.start_ms:
            by_gpu.setdefault(alloc.gpu, []).append(alloc)
    idle = idle or {}
    lines: list[Line] = []
    totals: dict[str, int] = {}
    exact_totals: dict[str, Fraction] = {}
    unpriced: dict[str, str] = {}
    version_cuts = prices.boundaries(start_ms, end_ms)
    known = {g.id for g in fleet}
    stray = sorted(set(by_gpu) - known)
    warnings = (
        [f"{len(stray)} allocation(s) on GPUs not in the fleet ignored: {', '.join(stray[:5])}"]
        if stray
        else []
    )
    for gpu in fleet:
        lo, hi = _clip(
            gpu.start_ms if gpu.start_ms is not None else start_ms,
            gpu.end_ms if gpu.end_ms is not None else end_ms,
            start_ms,
            end_ms,
        )
        if hi <= lo:
            continue
        allocs = by_gpu.get(gpu.id, [])
        idles = [_clip(a, b, lo, hi) for a, b in idle.get(gpu.id, ())]
        idles = [(a, b) for a, b in idles if b > a]
        cuts = {lo, hi, *[c for c in version_cuts if lo < c < hi]}
        for al in allocs:
            cuts.update(c for c in (al.start_ms, al.end_ms) if lo < c < hi)
        for a, b in idles:
            cuts.update((a, b))
        points = sorted(cuts)
        idle_starts = _merge(idles)
        gl: dict[tuple[str, str], Line] = {}
        exact_total = Fraction(0)
        for a, b in itertools.pairwise(points):
            rate = prices.rate(gpu.model_name, a)
            if rate is None:
                unpriced[gpu.id] = gpu.model_name
            dur = b - a
            money = Fraction(0)
            joules = energy(gpu.id, a, b) if energy else None
            if joules is None and rate is not None and rate.assumed_power_watts is not None:
                joules = rate.assumed_power_watts * dur / 1000
            j = joules or Fraction(0)
            if rate is not None:
                money = rate.micro_per_hour * dur / MS_PER_HOUR + rate.energy_micro_per_joule * j
            carbon = (rate.carbon_g_per_joule if rate else Fraction(0)) * j
            exact_total += money
            is_idle = _in_intervals(idle_starts, a)
            holders = [al for al in allocs if al.start_ms <= a and al.end_ms >= b]
            parts = _shares(holders)
            rest = Fraction(1) - sum((s for _, s, _ in parts), Fraction(0))
            key_g = rate.gpu_key if rate else ""
            for al, share, conf in parts:
                cat = IDLE_HELD if is_idle else USED
                ln = gl.get((al.workload.id, cat))
                if ln is None:
                    ln = gl[(al.workload.id, cat)] = Line(gpu.id, gpu.node, key_g, al.workload, cat)
                _add(ln, share, dur, money, j, carbon, conf, al.share_source)
            if rest > 0:
                ln = gl.get(("", UNALLOCATED))
                if ln is None:
                    ln = gl[("", UNALLOCATED)] = Line(gpu.id, gpu.node, key_g, None, UNALLOCATED)
                _add(ln, rest, dur, money, j, carbon, "high", "")
        total = _round(exact_total)
        _largest_remainder(list(gl.values()), total)
        totals[gpu.id] = total
        exact_totals[gpu.id] = exact_total
        lines.extend(gl.values())
    if unpriced:
        models = sorted(set(unpriced.values()))
        warnings.append(
            f"{len(unpriced)} GPU(s) have no price in the sheet (costed at $0): {', '.join(models)}"
        )
    return Ledger(start_ms, end_ms, lines, totals, exact_totals, unpriced, warnings)


def _merge(iv: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(iv):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _in_intervals(merged: list[tuple[int, int]], t: int) -> bool:
    """Is ``t`` inside one of the sorted, non-overlapping ``[a, b)`` intervals?"""
    i = bisect.bisect_right(merged, (t, 1 << 62)) - 1
    return i >= 0 and merged[i][0] <= t < merged[i][1]


def _add(
    ln: Line, share: Fraction, dur: int, money: Fraction, j: Fraction, carbon: Fraction, conf: str, src: str
) -> None:
    ln.gpu_ms += share * dur
    ln.exact_micro += share * money
    ln.energy_j += share * j
    ln.co2e_g += share * carbon
    ln.confidence = _worst(ln.confidence, conf)
    if src:
        ln.share_sources.add(src)


def _shares(holders: list[Allocation]) -> list[tuple[Allocation, Fraction, str]]:
    """Each holder's share of the GPU for one elementary interval (never more than 1 in total)."""
    if not holders:
        return []
    if len(holders) == 1 and holders[0].share is None:
        return [(holders[0], Fraction(1), holders[0].confidence)]
    explicit = [h for h in holders if h.share is not None]
    implicit = [h for h in holders if h.share is None]
    given = sum((Fraction(h.share) for h in explicit if h.share is not None), Fraction(0))
    out: list[tuple[Allocation, Fraction, str]] = []
    if given > 1:
        scale = 1 / given
        out = [(h, Fraction(h.share or 0) * scale, "low") for h in explicit]
        out += [(h, Fraction(0), "low") for h in implicit]
        return out
    out = [(h, Fraction(h.share or 0), h.confidence) for h in explicit]
    if implicit:
        each = (1 - given) / len(implicit)
        conf = "low" if len(implicit) > 1 or explicit else None
        out += [(h, each, conf or h.confidence) for h in implicit]
    return out


def _round(x: Fraction) -> int:
    """Round half up to an integer micro-dollar (amounts are never negative)."""
    return int((x + Fraction(1, 2)) // 1)


def _largest_remainder(lines: list[Line], total: int) -> None:
    """Integer micro-dollars per line, summing exactly to ``total`` (Hamilton's method)."""
    if not lines:
        return
    floors = [int(ln.exact_micro // 1) for ln in lines]
    left = total - sum(floors)
    order = sorted(
        range(len(lines)),
        key=lambda i: (-(lines[i].exact_micro - floors[i]), i),
    )
    for k, i in enumerate(order):
        lines[i].micro = floors[i] + (1 if k < left else 0)
    if left < 0:  # cannot happen for non-negative amounts; kept so the invariant is explicit
        for k in range(-left):
            lines[order[-1 - (k % len(lines))]].micro -= 1

"""Cost KPIs written back to the store as ordinary series, so PromQL, Grafana and alerts can use them.

:class:`CostKpiWriter` is incremental: each :meth:`~CostKpiWriter.step` costs only the interval since
its watermark, adds it to running counters and appends one sample per series at the interval's end.

| series | type | labels |
| --- | --- | --- |
| ``sightglass_gpu_cost_dollars_total`` | counter | ``category`` (used, idle_held, unallocated), ``team``, ``workload``, ``workload_kind`` |
| ``sightglass_gpu_energy_joules_total`` | counter | ``team``, ``workload``, ``workload_kind`` (unallocated: none) |
| ``sightglass_gpu_co2e_grams_total`` | counter | same |
| ``sightglass_cost_per_1m_tokens_dollars`` | gauge | ``model``, ``direction`` (input, output, total); trailing ``window`` |
| ``sightglass_tokens_per_kwh`` | gauge | ``model``; trailing window |
| ``sightglass_training_cost_per_step_dollars`` | gauge | ``slurm_job_id``, ``job_name``, ``team``; trailing window |
| ``sightglass_idle_held_gpus`` | gauge | none: idle-held GPUs on average over the interval |
| ``sightglass_gpu_price_dollars_per_hour`` | gauge | ``gpu_model``: the sheet's rate in force |

Counters start at zero when a writer starts (a restart is a counter reset, which ``rate``/``increase``
handle); their sum over every label is the fleet cost since then.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from sightglass.cost.analysis import CostAnalysis
from sightglass.cost.config import CostConfig
from sightglass.cost.ledger import IDLE_HELD
from sightglass.cost.prices import PriceSheet
from sightglass.cost.tokens import token_counts
from sightglass.cost.training import job_costs
from sightglass.model import SampleBatchBuilder, SeriesKey
from sightglass.topology.infer import TopologyBuilder

COST = "sightglass_gpu_cost_dollars_total"
ENERGY = "sightglass_gpu_energy_joules_total"
CO2E = "sightglass_gpu_co2e_grams_total"
PER_1M = "sightglass_cost_per_1m_tokens_dollars"
TOKENS_PER_KWH = "sightglass_tokens_per_kwh"
PER_STEP = "sightglass_training_cost_per_step_dollars"
IDLE_GPUS = "sightglass_idle_held_gpus"
PRICE = "sightglass_gpu_price_dollars_per_hour"


@dataclass(slots=True)
class _Interval:
    end_ms: int
    model_micro: dict[str, int]
    model_energy_j: dict[str, float]
    model_tokens: dict[str, dict[str, float]]
    job_micro: dict[str, int]
    job_steps: dict[str, float]


@dataclass(slots=True)
class CostKpiWriter:
    prices: PriceSheet
    config: CostConfig = field(default_factory=CostConfig)
    window_ms: int = 3_600_000  # trailing window of the gauges
    watermark_ms: int | None = None
    micro: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)
    energy_j: dict[tuple[tuple[str, str], ...], Fraction] = field(default_factory=dict)
    co2e_g: dict[tuple[tuple[str, str], ...], Fraction] = field(default_factory=dict)
    history: deque[_Interval] = field(default_factory=deque)
    job_meta: dict[str, dict[str, str]] = field(default_factory=dict)
    last: CostAnalysis | None = None
    builder: TopologyBuilder = field(default_factory=TopologyBuilder)  # updated incrementally

    def step(self, store: Any, until_ms: int, *, start_ms: int | None = None) -> int:
        """Cost ``[watermark, until_ms)`` and append the KPI samples; returns how many were written."""
        start = self.watermark_ms if self.watermark_ms is not None else start_ms
        if start is None or until_ms <= start:
            return 0
        topo = self.builder.update(store)
        an = CostAnalysis.run(store, start, until_ms, prices=self.prices, config=self.config, topology=topo)
        self.last = an
        led = an.ledger
        for ln in led.lines:
            w = ln.workload
            base = (("team", w.team), ("workload", w.id), ("workload_kind", w.kind)) if w else ()
            k = (("category", ln.category), *base)
            self.micro[k] = self.micro.get(k, 0) + ln.micro
            self.energy_j[base] = self.energy_j.get(base, Fraction(0)) + ln.energy_j
            self.co2e_g[base] = self.co2e_g.get(base, Fraction(0)) + ln.co2e_g
        iv = _Interval(until_ms, {}, {}, token_counts(store, start, until_ms), {}, {})
        for ln in led.lines:
            w = ln.workload
            if w and w.model:
                iv.model_micro[w.model] = iv.model_micro.get(w.model, 0) + ln.micro
                iv.model_energy_j[w.model] = iv.model_energy_j.get(w.model, 0.0) + float(ln.energy_j)
        for j in job_costs(led, store, an.inputs.allocations, an.inputs.topology):
            iv.job_micro[j.job] = j.cost_micro
            iv.job_steps[j.job] = j.steps
            self.job_meta[j.job] = {"job_name": j.name, "team": j.team}
        self.history.append(iv)
        while self.history and self.history[0].end_ms <= until_ms - self.window_ms:
            self.history.popleft()
        out = self._samples(until_ms, led)
        self.watermark_ms = until_ms
        if len(out):
            store.append(out.build())
        return len(out)

    def _samples(self, t: int, led: Any) -> SampleBatchBuilder:
        out = SampleBatchBuilder()
        for lk, micro_total in sorted(self.micro.items()):
            out.add(SeriesKey.of(COST, dict(lk)), t, micro_total / 1e6)
        for lk, joules_total in sorted(self.energy_j.items()):
            out.add(SeriesKey.of(ENERGY, dict(lk)), t, float(joules_total))
            out.add(SeriesKey.of(CO2E, dict(lk)), t, float(self.co2e_g[lk]))
        models: dict[str, list[float]] = {}
        for iv in self.history:
            for m in set(iv.model_micro) | set(iv.model_tokens):
                acc = models.setdefault(m, [0.0, 0.0, 0.0, 0.0])
                acc[0] += iv.model_micro.get(m, 0)
                acc[1] += iv.model_tokens.get(m, {}).get("input", 0.0)
                acc[2] += iv.model_tokens.get(m, {}).get("output", 0.0)
                acc[3] += iv.model_energy_j.get(m, 0.0)
        w = self.config.output_token_weight
        for m, (micro, ti, to, joules) in sorted(models.items()):
            if micro > 0 and ti + to > 0:
                wi, wo = ti, to * w
                ci, co = micro * wi / (wi + wo), micro * wo / (wi + wo)
                out.add(SeriesKey.of(PER_1M, {"model": m, "direction": "total"}), t, micro / (ti + to))
                if ti > 0:
                    out.add(SeriesKey.of(PER_1M, {"model": m, "direction": "input"}), t, ci / ti)
                if to > 0:
                    out.add(SeriesKey.of(PER_1M, {"model": m, "direction": "output"}), t, co / to)
            if joules > 0:
                out.add(SeriesKey.of(TOKENS_PER_KWH, {"model": m}), t, (ti + to) / (joules / 3.6e6))
        jobs: dict[str, list[float]] = {}
        for iv in self.history:
            for job, job_micro in iv.job_micro.items():
                jacc = jobs.setdefault(job, [0.0, 0.0])
                jacc[0] += job_micro
                jacc[1] += iv.job_steps.get(job, 0.0)
        for job, (job_micro_sum, steps) in sorted(jobs.items()):
            if steps > 0:
                meta = self.job_meta.get(job, {})
                labels = {"slurm_job_id": job.removeprefix("job:"), **meta}
                out.add(SeriesKey.of(PER_STEP, labels), t, job_micro_sum / steps / 1e6)
        span = led.end_ms - led.start_ms
        idle_ms = sum(float(ln.gpu_ms) for ln in led.lines if ln.category == IDLE_HELD)
        out.add(SeriesKey.of(IDLE_GPUS, {}), t, idle_ms / span if span else 0.0)
        vi = self.prices.version_at(t)
        if vi is not None:
            ver = self.prices.versions[vi]
            for key in sorted(ver.gpu):
                r = self.prices.rate(key, t)
                if r is not None:
                    out.add(SeriesKey.of(PRICE, {"gpu_model": key}), t, float(r.micro_per_hour) / 1e6)
        return out

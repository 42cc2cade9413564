"""One cost analysis of a window: read the store once, build the ledger, answer every report from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sightglass.cost.config import CostConfig
from sightglass.cost.ledger import Ledger, build_ledger
from sightglass.cost.prices import PriceSheet
from sightglass.cost.report import report_dict
from sightglass.cost.sources import Inputs, gather
from sightglass.topology.graph import Topology


@dataclass(slots=True)
class CostAnalysis:
    inputs: Inputs
    ledger: Ledger
    prices: PriceSheet
    config: CostConfig
    inputs_store: Any = None

    @classmethod
    def run(
        cls,
        store: Any,
        start_ms: int,
        end_ms: int,
        *,
        prices: PriceSheet | None = None,
        config: CostConfig | None = None,
        topology: Topology | None = None,
    ) -> CostAnalysis:
        if end_ms <= start_ms:
            raise ValueError("--end must be after --start")
        cfg = config or CostConfig()
        sheet = prices or cfg.load_prices()
        inputs = gather(store, start_ms, end_ms, retire_after_ms=cfg.ms("retire_after"), topology=topology)
        ledger = build_ledger(
            inputs.fleet,
            inputs.allocations,
            sheet,
            start_ms,
            end_ms,
            idle=inputs.idle,
            energy=inputs.energy,
        )
        if not inputs.fleet:
            ledger.warnings.append("no GPU series (dcgm-exporter) in the window: nothing to cost")
        return cls(inputs, ledger, sheet, cfg, store)

    def report(self, by: str, *, mode: str = "showback") -> dict[str, Any]:
        out = report_dict(self.ledger, by, prices_source=self.prices.source, mode=mode)
        out["idle_source"] = self.inputs.idle_source
        out["roi"] = self.roi()
        return out

    def roi(self) -> dict[str, Any]:
        """Is the factory paying off: what the GPU-hours workloads *used* would cost rented at the
        sheet's benchmark cloud price (rates in force at the window's end), against the fleet cost."""
        from fractions import Fraction

        from sightglass.cost.ledger import USED
        from sightglass.cost.prices import MS_PER_HOUR
        from sightglass.cost.report import _usd

        led = self.ledger
        bench = Fraction(0)
        missing: set[str] = set()
        for ln in led.lines:
            if ln.category != USED:
                continue
            rate = self.prices.benchmark_micro_per_hour(ln.gpu_key, led.end_ms - 1)
            if rate is None:
                missing.add(ln.gpu_key or "(unpriced)")
                continue
            bench += rate * ln.gpu_ms / MS_PER_HOUR
        b = int(bench)
        return {
            "benchmark_for_used_gpu_hours_usd": _usd(b),
            "fleet_usd": _usd(led.fleet_micro),
            "savings_vs_benchmark_usd": _usd(b - led.fleet_micro),
            "paying_off": b >= led.fleet_micro,
            "gpu_models_without_benchmark": sorted(missing),
        }

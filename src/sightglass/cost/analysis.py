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
        return out

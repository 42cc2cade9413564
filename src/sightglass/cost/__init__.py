"""GPU cost, utilisation accounting, cost per token, chargeback (docs/cost.md).

from sightglass.cost import CostAnalysis, PriceSheet
an = CostAnalysis.run(store, start_ms, end_ms, prices=PriceSheet.load("prices.toml"))
an.ledger.check()                    # Σ lines = fleet cost, to the micro-dollar
an.report("team")                    # the JSON the API returns
"""

from sightglass.cost.analysis import CostAnalysis
from sightglass.cost.config import CostConfig, cost_config
from sightglass.cost.ledger import Allocation, Gpu, Ledger, Line, Workload, build_ledger
from sightglass.cost.prices import PriceSheet, PriceSheetError

__all__ = [
    "Allocation",
    "CostAnalysis",
    "CostConfig",
    "Gpu",
    "Ledger",
    "Line",
    "PriceSheet",
    "PriceSheetError",
    "Workload",
    "build_ledger",
    "cost_config",
]

"""Shared types of the analytics tests (a module name of its own: every test folder has a conftest)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sightglass.analytics.service import AnalyticsService
from sightglass.store.duckdb import DuckDBStore


@dataclass
class Analysed:
    store: DuckDBStore
    sim: Any
    service: AnalyticsService
    path: Path
    end_ms: int

    def fault(self, name: str) -> Any:
        return next(f for f in self.sim.faults if f.fault == name)

"""Simulated factories for the topology tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sightglass.simulate.fast import run_ingest
from sightglass.store.duckdb import DuckDBStore, StoreOptions

START_MS = 1_794_787_200_000  # 2026-11-16T00:00:00Z


def simulate_store(path: Path, nodes: int, minutes: float, seed: int = 3) -> tuple[DuckDBStore, Any]:
    store = DuckDBStore(path, options=StoreOptions(compact_every_s=3600))
    _, sim = run_ingest(
        store, nodes=nodes, duration_s=minutes * 60, seed=seed, start_ms=START_MS, fault_every_s=None
    )
    return store, sim

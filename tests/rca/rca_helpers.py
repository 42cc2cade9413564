"""Small simulated factories with one injected fault each, straight into a DuckDB store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sightglass.simulate.fast import run_ingest
from sightglass.simulate.faults import ScriptedFault
from sightglass.store.duckdb import DuckDBStore, StoreOptions
from sightglass.topology.infer import TopologyBuilder

START_MS = 1_794_787_200_000  # 2026-11-16T00:00:00Z
MINUTES = 20


@dataclass
class Scenario:
    store: DuckDBStore
    builder: TopologyBuilder
    fault: str
    symptom: str
    at_ms: int
    truth: dict[str, Any]
    sim: Any


def simulate_fault(path: Path, fault: str, *, nodes: int = 8, seed: int = 31) -> Scenario:
    """``fault`` injected at 9 min for 10 min; the analysis instant is 5 min after it started."""
    store = DuckDBStore(path, options=StoreOptions(compact_every_s=3600))
    at_s = 9 * 60
    _, sim = run_ingest(
        store,
        nodes=nodes,
        duration_s=MINUTES * 60,
        seed=seed,
        start_ms=START_MS,
        scripted=[ScriptedFault(fault, at_s * 1000, 600_000, {})],
        fault_every_s=None,
    )
    f = next(x for x in sim.faults if x.state.get("started"))
    builder = TopologyBuilder()
    builder.add_inventory(sim.factory.describe())
    builder.update(store)
    builder.persist(store)
    truth = {"kind": f.kind or f.cls.root_kind, "match": dict(f.root), "fault": fault}
    return Scenario(store, builder, fault, f.symptom, f.start_ms + 300_000, truth, sim)

"""Cost-report time on a simulated factory, with the data shape.

    python bench/cost.py                       # 64 nodes (512 GPUs), 1 h at 10 s
    python bench/cost.py --nodes 256 --minutes 30

Simulates straight into a fresh DuckDB store (random faults every 15 min), then times the parts of
one report over the whole run: reading GPU usage/energy, the topology build, attribution, the ledger,
the roll-ups, cost per token, training cost, idle insights; and two 5-minute KPI steps: the first
(which builds the topology) and the next (incremental: the per-interval cost the server pays). Prints JSON: figures and the shape (GPUs, series, samples,
allocations, ledger lines) they were measured on, and whether the report reconciled.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sightglass.cost.insights import idle_insights
from sightglass.cost.kpis import CostKpiWriter
from sightglass.cost.ledger import build_ledger
from sightglass.cost.prices import PriceSheet
from sightglass.cost.report import report_dict
from sightglass.cost.sources import Inputs, allocations_from_topology, fleet_of, idle_intervals, read_usage
from sightglass.cost.tokens import model_costs, token_counts
from sightglass.cost.training import job_costs
from sightglass.simulate.fast import run_ingest
from sightglass.store.duckdb import DuckDBStore, StoreOptions
from sightglass.topology.infer import TopologyBuilder

START_MS = 1_794_787_200_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    out: dict[str, object] = {"nodes": args.nodes, "gpus": args.nodes * 8, "minutes": args.minutes}
    sheet = PriceSheet.default()
    with tempfile.TemporaryDirectory(prefix="sightglass-bench-") as tmp:
        store = DuckDBStore(Path(tmp) / "d", options=StoreOptions(compact_every_s=3600))
        t = time.perf_counter()
        stats, _ = run_ingest(
            store,
            nodes=args.nodes,
            duration_s=args.minutes * 60,
            seed=args.seed,
            start_ms=START_MS,
            fault_every_s=900.0,
        )
        out["simulate_ingest_s"] = round(time.perf_counter() - t, 2)
        out["series"], out["samples"] = stats.series, stats.samples
        a, b = START_MS, START_MS + int(args.minutes * 60_000)
        timings: dict[str, float] = {}

        def timed(name: str, fn: Callable[..., Any], *xs: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            r = fn(*xs, **kw)
            timings[name] = round(time.perf_counter() - t0, 3)
            return r

        evidence: dict[Any, Any] = {}
        usage, step = timed(
            "read_usage_s", read_usage, store, a, b, retire_after_ms=3_600_000, evidence=evidence
        )
        fleet = fleet_of(usage, a, b, 3_600_000)
        topo = timed("topology_s", TopologyBuilder().update, store)
        allocs = timed("attribution_s", allocations_from_topology, topo, store, a, b, step, evidence)
        idle, src = timed("idle_held_s", idle_intervals, store, usage, a, b, step)
        inputs = Inputs(a, b, step, fleet, usage, allocs, idle, src, topo)
        led = timed("ledger_s", build_ledger, fleet, allocs, sheet, a, b, idle=idle, energy=inputs.energy)
        reps = {}
        t0 = time.perf_counter()
        for by in ("team", "project", "model", "job", "node"):
            reps[by] = report_dict(led, by)
        timings["five_rollups_s"] = round(time.perf_counter() - t0, 3)
        tokens = timed("token_counts_s", token_counts, store, a, b)
        timed("model_costs_s", model_costs, led, tokens)
        timed("training_s", job_costs, led, store, allocs, topo)
        timed("idle_insights_s", idle_insights, led, inputs)
        timings["report_total_s"] = round(sum(timings.values()), 3)
        writer = CostKpiWriter(sheet)
        t0 = time.perf_counter()
        writer.step(store, b - 300_000, start_ms=b - 600_000)
        timings["kpi_first_step_s"] = round(time.perf_counter() - t0, 3)  # builds the topology
        t0 = time.perf_counter()
        n = writer.step(store, b)
        timings["kpi_next_step_5min_s"] = round(time.perf_counter() - t0, 3)  # the server's steady state
        out["kpi_samples_per_step"] = n
        store.close()
    out.update(timings)
    out["allocations"] = len(allocs)
    out["ledger_lines"] = len(led.lines)
    out["workloads"] = len({al.workload.id for al in allocs})
    out["fleet_usd"] = reps["team"]["totals"]["fleet_usd"]
    out["reconciles"] = all(r["reconciliation"]["exact"] for r in reps.values())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

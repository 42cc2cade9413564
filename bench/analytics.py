"""Understand-layer cost on a simulated factory: topology build and update, anomaly batches, KPIs.

    python bench/analytics.py                  # quick: 64 nodes (512 GPUs), 30 min at 10 s
    python bench/analytics.py --nodes 1000 --minutes 5

Simulates straight into a fresh store, then times: the one-shot topology build, an incremental
topology update with nothing new, the anomaly fit (15 min, or half the run) and one 5-minute
detection batch (the per-batch cost a live server pays), and the KPI computation over the run.

Incremental update throughput (``*_series_per_s``): series folded in per second of one batch of
``--batch`` minutes after the fit — anomaly columns (load + detect), GPU KPIs, workload KPIs with
predictability, and config tracking (series catalog scan + setting gauges + drift check).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sightglass.analytics.anomaly import FactoryAnomalyDetector
from sightglass.analytics.drift import ConfigTracker
from sightglass.analytics.kpi import KpiComputer
from sightglass.analytics.signals import load_signals
from sightglass.analytics.workload import WorkloadKpiComputer, read_workload_series
from sightglass.model import Matcher
from sightglass.simulate.fast import run_ingest
from sightglass.store.duckdb import DuckDBStore, StoreOptions
from sightglass.topology.infer import TopologyBuilder

START_MS = 1_794_787_200_000


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call: the box is shared, CPU is steadier."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return round(time.perf_counter() - t, 3), round(time.process_time() - c, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--batch", type=float, default=5.0, help="minutes per incremental batch")
    args = ap.parse_args()
    out: dict[str, float | int] = {"nodes": args.nodes, "gpus": args.nodes * 8}
    with tempfile.TemporaryDirectory(prefix="sightglass-bench-") as tmp:
        store = DuckDBStore(Path(tmp) / "d", options=StoreOptions(compact_every_s=3600))
        t = time.perf_counter()
        stats, sim = run_ingest(
            store,
            nodes=args.nodes,
            duration_s=args.minutes * 60,
            seed=1,
            start_ms=START_MS,
            fault_every_s=600,
        )
        out["simulate_s"] = round(time.perf_counter() - t, 2)
        out["series"] = stats.series
        out["samples"] = stats.samples
        b = TopologyBuilder()
        b.add_inventory(sim.factory.describe())
        t = time.perf_counter()
        topo = b.update(store)
        out["topology_build_s"] = round(time.perf_counter() - t, 3)
        out["entities"] = len(topo.entities_by_id)
        out["relations"] = len(topo.edges)
        t = time.perf_counter()
        b.update(store)
        out["topology_noop_update_s"] = round(time.perf_counter() - t, 3)
        end = START_MS + int(args.minutes * 60_000)
        fit_end = START_MS + min(15 * 60_000, int(args.minutes * 30_000))
        t = time.perf_counter()
        det = FactoryAnomalyDetector(topo).fit(load_signals(store, START_MS, fit_end, builder=b))
        out["anomaly_fit_s"] = round(time.perf_counter() - t, 3)
        out["signals"] = len(det.names)
        batch_end = min(end, fit_end + int(args.batch * 60_000))
        t = time.perf_counter()
        frame = load_signals(store, fit_end + 10_000, batch_end, builder=b)
        out["batch_load_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        report = det.detect(frame, store.query_events(fit_end, batch_end))
        out["batch_detect_s"] = round(time.perf_counter() - t, 3)
        out["batch_rows"] = int(frame.ts_ms.shape[0])
        out["batch_anomalies"] = len(report.anomalies)
        out["anomaly_series_per_s"] = round(len(det.names) / (out["batch_load_s"] + out["batch_detect_s"]))
        t = time.perf_counter()
        out["kpi_samples"] = KpiComputer().step(store, end, start_ms=START_MS)
        out["kpi_s"] = round(time.perf_counter() - t, 3)
        # incremental batches after the fit: GPU KPIs, workload KPIs + predictability, config drift
        gpu_names = "DCGM_FI_PROF_SM_ACTIVE|DCGM_FI_DEV_GPU_UTIL|DCGM_FI_DEV_FB_USED|DCGM_FI_DEV_CLOCKS_EVENT_REASONS|DCGM_FI_DEV_XID_ERRORS"
        n_gpu_series = len(store.select_ids([Matcher("__name__", "=~", gpu_names)]))
        kpi = KpiComputer()
        kpi.step(store, fit_end, start_ms=START_MS)
        dt, cpu = _timed(lambda: kpi.step(store, batch_end))
        out["gpu_kpi_batch_s"], out["gpu_kpi_batch_cpu_s"] = dt, cpu
        out["gpu_kpi_series_per_s"] = round(n_gpu_series / dt)
        wk = WorkloadKpiComputer(builder=b)
        wk.step(store, fit_end, start_ms=START_MS)
        n_work = sum(len(v) for v in read_workload_series(store, fit_end, batch_end).values())
        dt, cpu = _timed(lambda: wk.step(store, batch_end))
        out["workload_kpi_batch_s"], out["workload_kpi_batch_cpu_s"] = dt, cpu
        out["workload_series"] = n_work
        out["workload_kpi_series_per_s"] = round(n_work / dt)
        tr = ConfigTracker(write_events=False)
        out["drift_first_step_s"], _ = _timed(lambda: tr.step(store, fit_end))
        dt, cpu = _timed(lambda: tr.step(store, batch_end))
        out["drift_batch_s"], out["drift_batch_cpu_s"] = dt, cpu
        out["drift_series_per_s"] = round(stats.series / dt)
        out["config_entities"] = len(tr.values)
        store.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

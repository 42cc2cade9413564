"""Root cause analysis: accuracy on a simulator suite, and time to answer on a large factory.

    # the labelled suite: simulate each (seed, size) into a temp folder, evaluate, delete, repeat
    python bench/rca.py suite --seeds 101,102,103,104,105,106 --sizes 4,8,16 --cases 19 --minutes 25
    # time to answer on a 1,000-node factory (8,000 GPUs), topology kept warm as the server does
    python bench/rca.py latency --nodes 1000 --minutes 12 --data /tmp/rca-1000   # reuses the store next time

``suite`` is ``sightglass simulate --cases`` + ``sightglass eval rca`` without keeping ~150 MB of
OpenMetrics per case on disk; ``--json FILE`` writes every case's answer as it goes, so an
interrupted run still reports what it measured. Dev seeds (used while building the analysis): 7, 8.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

START_MS = 1_794_787_200_000  # 2026-11-16T00:00:00Z
LATENCY_FAULTS = (
    "gpu_thermal",
    "straggler_rank",
    "ib_link_flap",
    "cpu_starvation",
    "hbm_ecc",
    "nvlink_degraded",
    "power_brake",
    "kv_cache_pressure",
    "bad_deploy",
    "xid79_fell_off_bus",
)


def suite(args: argparse.Namespace) -> None:
    from sightglass.rca.cases import read_case
    from sightglass.rca.evaluation import CaseScore, evaluate_sim_case, summarize
    from sightglass.rca.report import print_report
    from sightglass.simulate.fast import run_cases

    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    scores: list[CaseScore] = []
    t_start = time.perf_counter()
    for seed in seeds:
        for nodes in sizes:
            tmp = Path(tempfile.mkdtemp(prefix=f"rca-suite-{seed}-{nodes}-", dir=args.workdir))
            try:
                t0 = time.perf_counter()
                run_cases(cases=args.cases, nodes=nodes, duration_s=args.minutes * 60, seed=seed, start_ms=START_MS, out=tmp)
                sim_s = time.perf_counter() - t0
                for d in sorted(p for p in tmp.iterdir() if (p / "case.json").is_file()):
                    case = read_case(d)
                    case.name = f"s{seed}-n{nodes}/{d.name}"
                    got = evaluate_sim_case(case, with_baro=not args.no_baro)
                    scores.extend(got)
                    sg = got[0]
                    print(f"{case.name:22s} {sg.fault:24s} rank={sg.rank} {sg.seconds:.2f}s top={sg.top[:1]}", flush=True)
                print(f"# seed {seed}, {nodes} nodes: simulated in {sim_s:.0f}s, {time.perf_counter() - t_start:.0f}s so far", flush=True)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if args.json:
                Path(args.json).write_text(json.dumps({"cases": [s.to_dict() for s in scores], "summary": summarize(scores)}, indent=1))
    report = {"format": "sightglass", "cases": [s.to_dict() for s in scores], "summary": summarize(scores), "notes": []}
    print_report(report)
    print(f"{len({s.case for s in scores})} cases, seeds {seeds}, sizes {sizes}, {args.minutes} min each, "
          f"{time.perf_counter() - t_start:.0f}s")


def latency(args: argparse.Namespace) -> None:
    from sightglass.rca.engine import analyze
    from sightglass.rca.evaluation import matches
    from sightglass.simulate.fast import run_ingest
    from sightglass.simulate.faults import ScriptedFault
    from sightglass.store.duckdb import DuckDBStore, StoreOptions
    from sightglass.topology.infer import TopologyBuilder

    dur_s = args.minutes * 60
    at_s = int(dur_s * 0.5 // 10 * 10)
    tmp = None
    data = Path(args.data) if args.data else Path(tmp := tempfile.mkdtemp(prefix="sightglass-bench-", dir=args.workdir))
    meta_file = data / "bench.json"
    sim_s = 0.0
    try:
        if not meta_file.exists():
            faults = [ScriptedFault(f, at_s * 1000, 900_000, {}) for f in LATENCY_FAULTS[: args.faults]]
            store = DuckDBStore(data, options=StoreOptions(compact_every_s=3600))
            t = time.perf_counter()
            stats, sim = run_ingest(store, nodes=args.nodes, duration_s=dur_s, seed=args.seed, start_ms=START_MS, scripted=faults, fault_every_s=None)
            store.compact()
            sim_s = time.perf_counter() - t
            meta = {
                "nodes": args.nodes, "gpus": stats.gpus, "series": stats.series, "samples": stats.samples, "minutes": args.minutes,
                "inventory": sim.factory.describe(),
                "faults": [
                    {"fault": f.fault, "symptom": f.symptom, "at": f.start_ms + 300_000, "truth": {"kind": f.kind or f.cls.root_kind, "match": f.root}}
                    for f in sim.faults if f.state.get("started") and f.symptom
                ],
            }
            meta_file.write_text(json.dumps(meta))
            store.close()
        meta = json.loads(meta_file.read_text())
        store = DuckDBStore(data, read_only=True)
        builder = TopologyBuilder()
        builder.add_inventory(meta["inventory"])
        t = time.perf_counter()
        builder.update(store)
        topo_s = time.perf_counter() - t
        analyze(store, "up", START_MS)  # warm-up: imports, the first DuckDB read
        times: list[float] = []
        rows: list[dict[str, Any]] = []
        for f in meta["faults"]:
            for rep in range(args.repeat):
                t = time.perf_counter()
                res = analyze(store, f["symptom"], f["at"], builder=builder)
                dt = time.perf_counter() - t
                times.append(dt)
                if rep == 0:
                    rank = next((i + 1 for i, c in enumerate(res.causes) if matches(c.kind, c.labels, f["truth"])), None)
                    cols = res.frame.values.shape[1] if res.frame is not None else 0
                    rows.append({"fault": f["fault"], "seconds": round(dt, 3), "rank": rank, "candidates": res.candidates, "signals": cols})
                    print(f"{f['fault']:22s} {dt:6.3f}s rank={rank} candidates={res.candidates} signals={cols}", flush=True)
        store.close()
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(json.dumps({
        "nodes": meta["nodes"], "gpus": meta["gpus"], "series": meta["series"], "samples": meta["samples"],
        "minutes": meta["minutes"], "simulate_ingest_s": round(sim_s, 1), "topology_build_s": round(topo_s, 2),
        "answers": len(times), "p50_s": round(statistics.median(times), 3), "p95_s": round(p95, 3),
        "max_s": round(times[-1], 3), "faults": rows,
    }, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("suite", help="accuracy on a labelled simulator suite")
    s.add_argument("--seeds", default="101,102,103,104,105,106")
    s.add_argument("--sizes", default="4,8,16")
    s.add_argument("--cases", type=int, default=19, help="cases per (seed, size): 19 = every class once")
    s.add_argument("--minutes", type=float, default=25.0)
    s.add_argument("--no-baro", action="store_true")
    s.add_argument("--json", default=None, help="write the per-case results here as they come")
    s.add_argument("--workdir", default=None)
    s.set_defaults(fn=suite)
    la = sub.add_parser("latency", help="time to answer on a large factory")
    la.add_argument("--nodes", type=int, default=1000)
    la.add_argument("--minutes", type=float, default=14.0)
    la.add_argument("--faults", type=int, default=len(LATENCY_FAULTS))
    la.add_argument("--repeat", type=int, default=2)
    la.add_argument("--seed", type=int, default=201)
    la.add_argument("--workdir", default=None)
    la.add_argument("--data", default=None, help="keep the simulated store here and reuse it on the next run")
    la.set_defaults(fn=latency)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()

"""Root cause analysis: accuracy on a simulator suite, and time to answer on a large factory.

    # the labelled suite: simulate each (seed, size) into a temp folder, evaluate, delete, repeat
    python bench/rca.py suite --seeds 101,102,103,104,105,106 --sizes 4,8,16 --cases 19 --minutes 25
    # time to answer on a 1,000-node factory (8,000 GPUs), topology kept warm as the server does
    python bench/rca.py latency --nodes 1000 --minutes 12 --data /tmp/rca-1000   # reuses the store next time

``suite`` is ``sightglass simulate --cases`` + ``sightglass eval rca``: each case runs in a worker
process (``--workers``, default ``os.cpu_count()``), simulated straight into a temporary store
(``--via-files`` writes and re-imports the OpenMetrics text instead, as the two commands do);
``--json FILE`` writes every case's answer as it goes, so an interrupted run still reports what it
measured. Dev seeds (used while building the analysis): 7, 8, 101-116, 121-126.
"""

from __future__ import annotations

import argparse
import json
import os
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


def _suite_case(job: tuple[int, int, int, float, bool, bool, str | None, bool]) -> tuple[list[dict[str, Any]], float]:
    """One case of the suite, in a worker process: simulate, load, analyse (and BARO); the scores.
    ``pruned``: also analyse it through the cause-first read (read budget 0), scored as its own method."""
    seed, nodes, k, minutes, with_baro, via_files, workdir, pruned = job
    from sightglass.rca.cases import read_case
    from sightglass.rca.evaluation import evaluate_sim_case, score_store_case
    from sightglass.simulate.fast import case_doc, case_plan, run_fast, run_ingest
    from sightglass.store.duckdb import DuckDBStore, StoreOptions
    from sightglass.timeutil import parse_time_ms

    dur_s = minutes * 60
    _k, fault, case_seed, scripted = case_plan(cases=k + 1, duration_s=dur_s, seed=seed)[k]
    name = f"s{seed}-n{nodes}/case-{k:03d}"
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f"rca-suite-{seed}-{nodes}-{k}-", dir=workdir))
    try:
        if via_files:  # exactly `sightglass simulate --cases` + `sightglass eval rca` (OpenMetrics text)
            run_fast(nodes=nodes, duration_s=dur_s, seed=case_seed, start_ms=START_MS, out=tmp, scripted=scripted)
            truth = json.loads((tmp / "truth.jsonl").read_text().splitlines()[0])
            (tmp / "case.json").write_text(json.dumps(case_doc(truth, fault, START_MS, dur_s)))
            case = read_case(tmp)
            case.name = name
            got = evaluate_sim_case(case, with_baro=with_baro, workdir=workdir)
        else:  # the same simulation straight into a store (no text round trip)
            store = DuckDBStore(tmp / "data", options=StoreOptions(compact_every_s=3600))
            try:
                # the analysis reads nothing after its instant (5 min after the fault): stop there
                stop_s = scripted[0].at_ms / 1000 + 300 + 30
                _stats, sim = run_ingest(store, nodes=nodes, duration_s=dur_s, seed=case_seed, start_ms=START_MS,
                                         scripted=scripted, workdir=tmp, stop_s=stop_s)
                store.compact()
                truth = next(x.truth() for x in sim.faults if x.state.get("started"))
                doc = case_doc(truth, fault, START_MS, dur_s)
                got = score_store_case(
                    store, name, doc["symptom"], parse_time_ms(doc["at"]), doc["truth"], sim.factory.describe(),
                    inject_ms=int(truth["start_ms"]), with_baro=with_baro,
                )
                more: list[Any] = []
                if pruned:  # before the diagnostics below write their results into the store
                    import sightglass.rca.engine as rca_engine

                    was, rca_engine.READ_BUDGET = rca_engine.READ_BUDGET, 0
                    try:
                        more = score_store_case(
                            store, name, doc["symptom"], parse_time_ms(doc["at"]), doc["truth"], sim.factory.describe(),
                            inject_ms=int(truth["start_ms"]), with_baro=False,
                        )
                    finally:
                        rca_engine.READ_BUDGET = was
                    for g in more:
                        g.method = f"{g.method}-cause-first"
                got.append(_after_diagnostics(store, sim, name, doc, got[0]))
                got = [*got, *more]
            finally:
                store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [g.to_dict() for g in got], time.perf_counter() - t0


def _after_diagnostics(store: Any, sim: Any, name: str, doc: dict[str, Any], first: Any) -> Any:
    """The same case after the alerting automation: an incident holding the first answer asks for GPU
    diagnostics when its policy says so (``alerting.diagnostics``, default config, the same for every
    class), the simulated factory's agents answer after DCGM's run time, the results go into the store
    and the RCA is re-run with them. Scored as method ``sightglass+diag``; its ``seconds`` is the extra
    simulated time from the first answer to the re-run that first gave the final top cause (the first
    answer's own time when the diagnostics did not change it; 0 when no diagnostics were asked for).
    A replay (seconds) comes back before DCGM (15 min), which may confirm it later."""
    from sightglass.alerting.catalog import MemoryCatalog
    from sightglass.alerting.diagnostics import DiagnosticsConfig, DiagnosticsManager
    from sightglass.alerting.incidents import Incident, IncidentManager
    from sightglass.rca.engine import analyze
    from sightglass.rca.evaluation import CaseScore, matches
    from sightglass.simulate.engine import SimulatedDiagAgent
    from sightglass.timeutil import parse_time_ms
    from sightglass.topology.infer import TopologyBuilder

    at = parse_time_ms(doc["at"])
    if first.error is not None:
        return CaseScore(name, first.fault, "sightglass+diag", None, 0, False, 0.0, error=first.error)
    builder = TopologyBuilder()
    builder.add_inventory(sim.factory.describe())
    topo = builder.update(store)

    reruns: list[tuple[int, str | None]] = []  # (evidence time, top cause) of each re-run

    def rerun(symptom: str, at_ms: int, until_ms: int) -> dict[str, Any]:
        d = dict(analyze(store, symptom, at_ms, builder=builder, top=5, evidence_until_ms=until_ms).to_dict())
        reruns.append((until_ms, (d.get("causes") or [{}])[0].get("entity", {}).get("id")))
        return d

    incidents = IncidentManager(MemoryCatalog())
    inc = Incident("inc-case", doc["symptom"][:60], "open", "warning", at, None)
    inc.rca = rerun(doc["symptom"], at, at)
    incidents.incidents[inc.id] = inc
    mgr = DiagnosticsManager(DiagnosticsConfig(), store, topology=lambda: topo, rerun=rerun)
    agent = SimulatedDiagAgent(sim)
    mgr.agents.append(agent)
    mgr.step(at, incidents, [inc])  # the policy queues its tasks; the agents take them at the next round
    now = at
    while True:
        mgr.step(now, incidents, [])
        nxt = agent.next_finish_ms()
        if nxt is None:
            if any(t["state"] == "queued" for t in mgr.list_tasks()):
                continue  # a next round was queued: the agents take it at the next step
            break
        now = max(nxt, now)
    causes = (inc.rca or {}).get("causes") or []
    truth = doc["truth"]
    rank = next((i + 1 for i, c in enumerate(causes) if matches(c["entity"]["kind"], c["entity"]["labels"], truth)), None)
    asked = bool((inc.diagnostics or {}).get("tasks"))
    final = causes[0]["entity"]["id"] if causes else None
    last_other = max((i for i, (_, top) in enumerate(reruns) if top != final), default=-1)
    reached = reruns[last_other + 1][0] if last_other + 1 < len(reruns) else now
    extra = (reached - at) / 1000 if asked else 0.0
    return CaseScore(name, first.fault, "sightglass+diag", rank, first.candidates, first.truth_in_candidates, extra,
                     [c["entity"]["id"] for c in causes])  # fmt: skip


def _set_read_budget(budget: int | None) -> None:
    """In each worker: analyses read cause signals first above ``budget`` series (0: always)."""
    if budget is not None:
        import sightglass.rca.engine as rca_engine

        rca_engine.READ_BUDGET = budget


def suite(args: argparse.Namespace) -> None:
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from sightglass.rca.evaluation import CaseScore, summarize
    from sightglass.rca.report import print_report

    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.compare_pruned and args.via_files:
        raise SystemExit("--compare-pruned works on the in-store path only (without --via-files)")
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    jobs = [(seed, n, k, args.minutes, not args.no_baro, args.via_files, args.workdir, args.compare_pruned)
            for seed in seeds for n in sizes for k in range(args.cases)]
    workers = args.workers or os.cpu_count() or 1
    scores: list[CaseScore] = []
    t_start = time.perf_counter()
    print(f"# {len(jobs)} cases ({len(seeds)} seeds x {len(sizes)} sizes x {args.cases}), {workers} worker processes", flush=True)
    with ProcessPoolExecutor(max_workers=workers, initializer=_set_read_budget, initargs=(args.read_budget,)) as pool:
        futs = {pool.submit(_suite_case, j): j for j in jobs}
        for n_done, fut in enumerate(as_completed(futs), 1):
            seed, nodes, k = futs[fut][:3]
            try:
                rows, secs = fut.result()
            except Exception as e:  # a case that cannot even be simulated counts as a miss, with its error
                rows, secs = [{"case": f"s{seed}-n{nodes}/case-{k:03d}", "fault": "unknown", "method": "sightglass", "rank": None,
                               "candidates": 0, "truth_in_candidates": False, "seconds": 0.0, "top": [], "error": f"{type(e).__name__}: {e}"}], 0.0
            got = [CaseScore(**r) for r in rows]
            scores.extend(got)
            sg = got[0]
            print(f"[{n_done}/{len(jobs)}] {sg.case:22s} {sg.fault:24s} rank={sg.rank} {sg.seconds:.2f}s "
                  f"(case {secs:.0f}s, {time.perf_counter() - t_start:.0f}s so far) top={sg.top[:1]}", flush=True)
            if args.json and (n_done % 10 == 0 or n_done == len(jobs)):
                Path(args.json).write_text(json.dumps({"cases": [s.to_dict() for s in scores], "summary": summarize(scores)}, indent=1))
    scores.sort(key=lambda s: (s.case, s.method))
    report = {"format": "sightglass", "cases": [s.to_dict() for s in scores], "summary": summarize(scores), "notes": []}
    print_report(report)
    diag = [s for s in scores if s.method == "sightglass+diag"]
    if diag:
        asked = [s for s in diag if s.seconds > 0]
        print(f"sightglass+diag: diagnostics asked for in {len(asked)} of {len(diag)} cases "
              f"({', '.join(sorted({s.fault for s in asked})) or 'none'}); extra simulated time to the final answer "
              f"{statistics.median([s.seconds for s in asked]) if asked else 0:.0f} s median (seconds column of that table)")
    print(f"{len({s.case for s in scores})} cases, seeds {seeds}, sizes {sizes}, {args.minutes} min each, "
          f"{workers} workers, {time.perf_counter() - t_start:.0f}s")


def latency(args: argparse.Namespace) -> None:
    from sightglass.promql.engine import Engine
    from sightglass.rca.engine import analyze
    from sightglass.rca.evaluation import matches
    from sightglass.simulate.fast import run_ingest
    from sightglass.simulate.faults import ScriptedFault
    from sightglass.store.duckdb import DuckDBStore, StoreOptions
    from sightglass.topology.infer import TopologyBuilder

    dur_s = args.minutes * 60
    at_s = int(dur_s * 0.5 // 10 * 10)
    tmp = None
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
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
        # warm-up, as a running server is after its first query: imports (the PromQL functions'
        # too), the first DuckDB read (registering a table makes DuckDB import pandas: ~1 s once).
        # A metric the simulator writes, on one host no fault touches: `up` is not simulated, so it
        # read nothing and the first timed answer paid for all of that
        analyze(store, "up", START_MS)
        warm = 'DCGM_FI_DEV_GPU_TEMP{Hostname="node-0001"}'
        got = Engine(store).range(f"rate({warm}[1m])", START_MS, START_MS + 60_000, 10_000)
        if not got.matrix:
            raise SystemExit(f"warm-up read nothing ({warm}): is this a simulated factory?")
        load_before = os.getloadavg()[0]
        times: list[float] = []
        cpu_times: list[float] = []
        rows: list[dict[str, Any]] = []
        for f in meta["faults"]:
            for rep in range(args.repeat):
                t, c = time.perf_counter(), time.process_time()
                res = analyze(store, f["symptom"], f["at"], builder=builder, read_budget=args.read_budget)
                dt, dc = time.perf_counter() - t, time.process_time() - c
                times.append(dt)
                cpu_times.append(dc)
                if rep == 0:
                    rank = next((i + 1 for i, c in enumerate(res.causes) if matches(c.kind, c.labels, f["truth"])), None)
                    cols = res.frame.values.shape[1] if res.frame is not None else 0
                    pruned = any(w.startswith("large neighbourhood") for w in res.warnings)
                    rows.append({"fault": f["fault"], "seconds": round(dt, 3), "cpu_seconds": round(dc, 3), "rank": rank,
                                 "candidates": res.candidates, "signals": cols, "pruned": pruned})
                    print(f"{f['fault']:22s} {dt:6.3f}s (cpu {dc:6.3f}s) rank={rank} candidates={res.candidates} "
                          f"signals={cols}{' pruned' if pruned else ''}", flush=True)
        store.close()
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()[0]

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, round(q * (len(xs) - 1)))], 3)

    print(json.dumps({
        "nodes": meta["nodes"], "gpus": meta["gpus"], "series": meta["series"], "samples": meta["samples"],
        "minutes": meta["minutes"], "simulate_ingest_s": round(sim_s, 1), "topology_build_s": round(topo_s, 2),
        "read_budget": args.read_budget, "answers": len(times),
        "p50_s": round(statistics.median(times), 3), "p95_s": pct(times, 0.95), "max_s": round(max(times), 3),
        # CPU seconds of this process (every thread, DuckDB's too): the shared 2-core box's load
        # inflates wall time, not this
        "cpu_p50_s": round(statistics.median(cpu_times), 3), "cpu_p95_s": pct(cpu_times, 0.95),
        "load_avg_1m": [round(load_before, 1), round(load_after, 1)], "faults": rows,
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
    s.add_argument("--workers", type=int, default=0, help="worker processes (default: os.cpu_count())")
    s.add_argument("--via-files", action="store_true", help="write and re-import OpenMetrics text per case, as "
                   "`sightglass simulate --cases` + `sightglass eval rca` do (slower; same simulation)")
    s.add_argument("--read-budget", type=int, default=None,
                   help="series; 0 reads every case cause signals first (the large-factory path) to measure its accuracy")
    s.add_argument("--compare-pruned", action="store_true",
                   help="also answer every case through the cause-first read (read budget 0), scored as method "
                        "'sightglass-cause-first': the pruned path's accuracy next to the full read's on the same cases")
    s.set_defaults(fn=suite)
    la = sub.add_parser("latency", help="time to answer on a large factory")
    la.add_argument("--nodes", type=int, default=1000)
    la.add_argument("--minutes", type=float, default=14.0)
    la.add_argument("--faults", type=int, default=len(LATENCY_FAULTS))
    la.add_argument("--repeat", type=int, default=2)
    la.add_argument("--seed", type=int, default=201)
    la.add_argument("--workdir", default=None)
    la.add_argument("--data", default=None, help="keep the simulated store here and reuse it on the next run")
    la.add_argument("--read-budget", type=int, default=None,
                    help="series; larger neighbourhoods are read cause signals first (default: the engine's READ_BUDGET)")
    la.set_defaults(fn=latency)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()

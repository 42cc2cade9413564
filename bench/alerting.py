"""Alerting on the simulator: rule-evaluation cost, and per fault class incidents, causes and notifications.

    python bench/alerting.py cost --nodes 1000 --minutes 6      # the default pack on a 1,000-node factory
    python bench/alerting.py faults                             # every fault class, 8 nodes, 30 min each
    python bench/alerting.py faults --only leaf_switch_failure,hbm_ecc --no-rca
    python bench/alerting.py live                               # real time: fault -> webhook latency

``cost`` simulates into a fresh store, then times one instant evaluation of every group at the end
(what the server pays per evaluation interval), per group and for the slowest rules, and a replay of
the last minutes (range queries, as for a back-filled store).

``faults`` runs, for each class of the catalogue, an 8-node factory for 30 minutes with that one fault
injected at 10 minutes (plus one run with no fault: the false-incident baseline), replays the default
pack and SLOs with incidents and the RCA, sends to a real local webhook receiver and, when
``prometheus-alertmanager`` is installed, to a real Alertmanager on 127.0.0.1, and reports per class:
incidents opened during the fault, whether the incident of the fault has the true root entity as its
cause at the first answer (``first_cause_right``) and after the automated GPU diagnostics the incident
asked for, answered by the simulated factory's agents (``cause_right``; ``extra_time_to_final_s``:
from the first answer to the RCA re-run with the results), the topology anchor and RCA top cause, the detection delay in simulated time (fault
start to the first firing alert of the incident: what a live server adds to it is one evaluation
interval), the wall-clock latency from that evaluation step to the webhook receiving the incident,
and whether the Alertmanager answered 200 to the POST carrying the incident's alerts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from sightglass.alerting.catalog import MemoryCatalog
from sightglass.alerting.config import AlertingConfig
from sightglass.alerting.evaluator import RuleEvaluator
from sightglass.alerting.service import AlertingService, load_groups
from sightglass.promql.engine import Engine
from sightglass.simulate.engine import SimulatedDiagAgent
from sightglass.simulate.fast import run_ingest
from sightglass.simulate.faults import CATALOGUE, ScriptedFault
from sightglass.store.duckdb import DuckDBStore, StoreOptions
from sightglass.topology import TopologyBuilder

START_MS = 1_794_787_200_000
MIN = 60_000


# ---------------------------------------------------------------------- cost
def cost(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="sightglass-bench-") as tmp:
        store = DuckDBStore(Path(tmp) / "d", options=StoreOptions(compact_every_s=3600))
        t = time.perf_counter()
        stats, _ = run_ingest(
            store,
            nodes=args.nodes,
            duration_s=args.minutes * 60,
            seed=1,
            start_ms=START_MS,
            workdir=Path(tmp),
        )
        sim_s = time.perf_counter() - t
        end = START_MS + int(args.minutes * MIN)
        groups = load_groups(AlertingConfig())
        n_rules = sum(len(g.rules) for g in groups)
        print(json.dumps({"shape": {"nodes": args.nodes, "gpus": stats.gpus, "series": len(store.index.keys),
                                    "samples": stats.samples, "minutes": args.minutes, "groups": len(groups),
                                    "rules": n_rules}, "simulate_s": round(sim_s, 1)}))  # fmt: skip
        ev = RuleEvaluator(Engine(store), groups, interval_ms=30_000, store=store)
        t = time.perf_counter()
        ev.evaluate(end, force=True)
        total = time.perf_counter() - t
        per_group = {g.group.name: round(g.eval_seconds, 3) for g in ev.groups}
        slow = sorted(((rs.eval_seconds, rs.rule.name) for rs in ev.rules()), reverse=True)[:8]
        errs = [(rs.rule.name, rs.last_error[:80]) for rs in ev.rules() if rs.health == "err"]
        alerts = ev.alerts()
        print(json.dumps({"instant_evaluation_s": round(total, 2), "per_group_s": per_group,
                          "slowest_rules_s": [(n, round(s, 3)) for s, n in slow], "rule_errors": errs,
                          "alerts_pending_or_firing": len(alerts)}))  # fmt: skip
        ev2 = RuleEvaluator(Engine(store), groups, interval_ms=30_000, store=None, write_alerts_series=False)
        t = time.perf_counter()
        steps = ev2.replay(end - args.replay_minutes * MIN, end)
        rep = time.perf_counter() - t
        print(json.dumps({"replay_minutes": args.replay_minutes, "replay_group_steps": steps, "replay_s": round(rep, 2),
                          "replay_s_per_group_step": round(rep / max(steps, 1), 4)}))  # fmt: skip
        store.close()


# ---------------------------------------------------------------------- faults
class _Hook:
    def __init__(self) -> None:
        self.posts: list[tuple[float, str, Any]] = []
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    doc: Any = json.loads(body)
                except ValueError:
                    doc = None
                rec.posts.append((time.time(), self.path, doc))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


def _start_alertmanager(tmp: Path, hook: str) -> tuple[subprocess.Popen[bytes] | None, str | None]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        return None, None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp / "am.yml"
    cfg.write_text(
        "route: {receiver: hook, group_by: [sightglass_incident], group_wait: 1s, group_interval: 1s}\n"
        f"receivers: [{{name: hook, webhook_configs: [{{url: '{hook}/am'}}]}}]\n"
    )
    (tmp / "am").mkdir()
    proc = subprocess.Popen(
        [binary, f"--config.file={cfg}", f"--storage.path={tmp / 'am'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    return None, None


def _truth_entities(truth: dict[str, Any], inventory: dict[str, Any], topo: Any = None) -> set[str]:
    """Entity ids the fault's root may be called by (the topology's id scheme); a service fault's
    root is the model's serving service (kube name) as well as the model."""
    m = truth["root"]["match"]
    kind = truth["root"]["kind"]
    out: set[str] = set()
    host = m.get("Hostname") or (m.get("instance", "").split(":")[0] or None)
    if kind == "gpu" and host:
        for n in inventory["nodes"]:
            if n["hostname"] == host:
                out |= {f"gpu:{g['UUID']}" for g in n["gpus"] if str(g["gpu"]) == m.get("gpu")}
        out.add(f"gpu:{host}/{m.get('gpu')}")
    elif kind == "node" and host:
        out.add(f"node:{host}")
    elif kind == "nic" and host:
        out.add(f"nic:{host}/{m.get('device')}")
    elif kind == "switch":
        out.add(f"switch:{m['switch']}")
    elif kind == "storage":
        out.add(f"storage:{m['export'].split(':', 1)[0]}")
    elif kind == "pipeline":
        out |= {f"pipeline:{m['pipeline']}"}
    elif kind == "service":
        model = f"model:{m.get('model_name')}"
        out |= {model, f"service:{m.get('model_name')}"}
        if topo is not None:
            out |= set(topo.related(model, "model-served-by-service"))
    elif kind == "job":
        out.add(f"job:{m.get('slurm_job_id')}")
    return out


def _one_class(
    name: str | None, args: argparse.Namespace, hook: _Hook, am_url: str | None, tmp: Path
) -> dict[str, Any]:
    d = tmp / (name or "none")
    store = DuckDBStore(d, options=StoreOptions(compact_every_s=3600))
    try:
        fault_at = 10 * MIN
        scripted = []
        if name:
            lo, hi = CATALOGUE[name].duration_s
            dur = int(min(hi, max(lo, 15 * 60)) * 1000)
            scripted = [ScriptedFault(name, fault_at, dur, {})]
        _, sim = run_ingest(store, nodes=8, duration_s=args.minutes * 60, seed=args.seed, start_ms=START_MS,
                            scripted=scripted, fault_every_s=None, workdir=tmp)  # fmt: skip
        truth = next((f.truth() for f in sim.faults if f.state.get("started")), None)
        inv = sim.factory.describe()
        b = TopologyBuilder()
        b.add_inventory(inv)
        b.update(store)
        notifiers = [{"type": "webhook", "url": hook.url + f"/hook/{name}"}]
        if am_url:
            notifiers.append({"type": "alertmanager", "url": am_url})
        svc = AlertingService(store, Engine(store), {"notifiers": notifiers}, topology=lambda: b.update(store),
                              rca=not args.no_rca, catalog=MemoryCatalog())  # fmt: skip
        svc._builder = b
        diag_agent = SimulatedDiagAgent(sim)  # the factory's agents answer the diagnostics the incidents ask for
        svc.diagnostics.agents.append(diag_agent)
        first_cause: dict[str, Any] = {}  # incident -> its cause before any diagnostic result came back
        orig_apply = svc.diagnostics._apply

        def snap_apply(t: Any, res: Any, inc: Any) -> None:
            if inc is not None and inc.id not in first_cause:
                first_cause[inc.id] = dict(inc.cause or {})
            orig_apply(t, res, inc)

        svc.diagnostics._apply = snap_apply  # type: ignore[method-assign]
        step_wall: dict[int, float] = {}
        orig = svc.process

        def timed(ts: int, to_send: Any) -> Any:
            step_wall[ts] = time.time()
            return orig(ts, to_send)

        svc.process = timed  # type: ignore[method-assign]
        t = time.perf_counter()
        end_ms = START_MS + args.minutes * MIN
        svc.replay(START_MS, end_ms)
        # diagnostics still running when the data ends: go on on the alerting clock until they report
        last = end_ms
        while True:
            nxt = diag_agent.next_finish_ms()
            if nxt is None and not any(t["state"] == "queued" for t in svc.diagnostics.list_tasks()):
                break
            last = max(nxt or last, last)
            svc.advance(last)
        replay_s = time.perf_counter() - t
        svc.dispatcher.flush(60)
        assert svc.incidents is not None
        incs = [i for i in svc.incidents.list_incidents() if not i.merged_into]
        out: dict[str, Any] = {
            "fault": name or "(none)",
            "replay_s": round(replay_s, 1),
            "incidents_total": len(incs),
        }
        if truth is None:
            out["titles"] = [i.title[:90] for i in incs]
            return out
        f0, f1 = truth["start_ms"], truth["end_ms"]
        during = [i for i in incs if f0 <= i.opened_ms <= f1 + 5 * MIN]
        want = _truth_entities(truth, inv, b.update(store))
        out.update({"truth": sorted(want), "incidents_during_fault": len(during)})
        hit = None
        for i in during:
            ents = {i.anchor, i.cause_entity} | {a.get("entity") for a in i.alerts.values()}
            if ents & want:
                hit = i
                break
        main = hit or (max(during, key=lambda i: len(i.alerts)) if during else None)
        if main is None:
            out.update({"detected": False})
            return out
        first_fire = min((a["fired_at_ms"] or a["active_at_ms"]) for a in main.alerts.values())
        anchor_ok = main.anchor in want
        cause = main.cause or {}
        rca_top = None
        if main.rca and main.rca.get("causes"):
            rca_top = main.rca["causes"][0]["entity"]["id"]
        posts = [
            p
            for p in hook.posts
            if p[1] == f"/hook/{name}" and p[2] and p[2].get("groupLabels", {}).get("incident") == main.id
        ]
        wall0 = step_wall.get(main.opened_ms)
        am_ok = None
        if am_url:
            am = [
                dl
                for dl in svc.dispatcher.deliveries
                if dl.kind == "alertmanager" and main.id in dl.incidents
            ]
            am_ok = bool(am) and all(dl.status == "ok" for dl in am)
        first = first_cause.get(main.id, cause)
        diag = main.diagnostics or {}
        diag_ts = [e["ts_ms"] for e in main.timeline if e["event"] in ("diagnostic_failed", "diagnostic_passed", "diagnostics_failed",
                                                                         "replay_mismatch", "replay_matched", "replay_inconclusive")]
        # the first re-run whose top cause is the truth (a replay answers in seconds, DCGM in minutes)
        right_ts = next((e["ts_ms"] for e in main.timeline if e["event"] == "rca_updated"
                         and any(f"top cause {w} (" in e["detail"] for w in want)), None)
        upd = [e["ts_ms"] for e in main.timeline if e["event"] == "rca_updated"]
        out.update({
            "detected": True,
            "first_cause": first.get("entity"), "first_cause_right": first.get("entity") in want,
            "first_fault": first.get("fault"), "final_fault": cause.get("fault"),
            "diagnostics_tasks": len(diag.get("tasks") or []),
            "diagnosed_gpus": sum(len(t["gpus"]) for t in diag.get("tasks") or []),
            "truth_gpu_diagnosed": any(g["entity"] in want for t in diag.get("tasks") or [] for g in t["gpus"]),
            "truth_gpu_results": [t["results"].get(str(g["index"]), {}).get("status") for t in diag.get("tasks") or []
                                  for g in t["gpus"] if g["entity"] in want],  # one per round
            "diagnostic_failures": sorted({e["detail"][:80] for e in main.timeline if e["event"] == "diagnostic_failed"}),
            "extra_time_to_final_s": round((max(upd) - main.opened_ms) / 1000) if upd and diag_ts else 0,
            "time_to_right_cause_s": round((right_ts - main.opened_ms) / 1000) if right_ts is not None else None,
            "replay_tasks": sum(1 for t in diag.get("tasks") or [] if t.get("kind") == "replay"),
            "incident_has_root_alerting": bool(hit),
            "alerts_in_incident": len(main.alerts),
            "alert_names": sorted({a["alertname"] for a in main.alerts.values()}),
            "cause": cause.get("entity"), "cause_source": cause.get("source"),
            "cause_right": cause.get("entity") in want, "topology_anchor_right": anchor_ok,
            "rca_top": rca_top, "rca_top_right": rca_top in want if rca_top else None,
            "detection_delay_s": round((first_fire - f0) / 1000),
            "notify_wall_latency_s": round(posts[0][0] - wall0, 3) if posts and wall0 else None,
            "webhook_posts": len(posts),
            "alertmanager_accepted": am_ok,
            "rca_note": main.rca_note,
            "anchor": main.anchor,
            "rca_runs": len(svc.incidents.rca_seconds),
            "rca_max_s": round(max(svc.incidents.rca_seconds), 2) if svc.incidents.rca_seconds else None,
            "other_incidents": [i.title[:100] for i in during if i is not main],
        })  # fmt: skip
        svc.close()
        return out
    finally:
        store.close()
        shutil.rmtree(d, ignore_errors=True)


def faults(args: argparse.Namespace) -> None:
    names: list[str | None] = (
        [None, *CATALOGUE] if not args.only else [None if n == "none" else n for n in args.only.split(",")]
    )
    hook = _Hook()
    with tempfile.TemporaryDirectory(prefix="sightglass-bench-") as tmps:
        tmp = Path(tmps)
        am_proc, am_url = _start_alertmanager(tmp, hook.url)
        print(json.dumps({"shape": {"nodes": 8, "gpus": 64, "minutes": args.minutes, "fault_at_min": 10,
                                    "classes": len(names), "alertmanager": am_url is not None, "rca": not args.no_rca}}))  # fmt: skip
        rows = []
        try:
            for n in names:
                row = _one_class(n, args, hook, am_url, tmp)
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            if am_proc is not None:
                am_proc.terminate()
                am_proc.wait(10)
            hook.close()
    rated = [r for r in rows if r["fault"] != "(none)"]
    summary = {
        "classes": len(rated),
        "detected": sum(1 for r in rated if r.get("detected")),
        "one_incident_during_fault": sum(1 for r in rated if r.get("incidents_during_fault") == 1),
        "first_cause_right": sum(1 for r in rated if r.get("first_cause_right")),
        "cause_right": sum(1 for r in rated if r.get("cause_right")),
        "classes_diagnosed": sum(1 for r in rated if r.get("diagnostics_tasks")),
        "rca_top_right": sum(1 for r in rated if r.get("rca_top_right")),
        "alertmanager_accepted": sum(1 for r in rated if r.get("alertmanager_accepted")),
        "baseline_incidents_without_fault": next((r["incidents_total"] for r in rows if r["fault"] == "(none)"), None),
        "median_detection_delay_s": sorted(r["detection_delay_s"] for r in rated if r.get("detected"))[
            len([r for r in rated if r.get("detected")]) // 2] if any(r.get("detected") for r in rated) else None,
    }  # fmt: skip
    print(json.dumps({"summary": summary}))


# ---------------------------------------------------------------------- live
def live(args: argparse.Namespace) -> None:
    """Real time: a simulated factory pushing a tick every 5 s into a real server (uvicorn, background
    alerting loop every ``--interval``, wall clock), faults injected at known wall times; latency from
    the fault's start to the webhook receiving its incident and to the Alertmanager's own webhook."""
    import asyncio

    import uvicorn

    from sightglass.config import Config
    from sightglass.server import build_app, open_store
    from sightglass.simulate.engine import Simulator
    from sightglass.simulate.exposition import Recorder, recorder_batches
    from sightglass.simulate.fast import to_events

    hook = _Hook()
    tmp = Path(tempfile.mkdtemp(prefix="sightglass-bench-live-"))
    am_proc, am_url = _start_alertmanager(tmp, hook.url)
    dt = 5.0
    sim = Simulator(8, args.seed, int(time.time() // dt * dt * 1000), dt_s=dt, fault_every_s=1e12)
    notifiers: list[dict[str, Any]] = [{"type": "webhook", "url": hook.url + "/hook", "backoff": "100ms"}]
    if am_url:
        notifiers.append({"type": "alertmanager", "url": am_url})
    cfg = Config.model_validate({
        "data": str(tmp / "data"), "listen": "127.0.0.1:0",
        "alerting": {"evaluation_interval": args.interval, "clock": "wall", "notifiers": notifiers,
                     "resend_delay": "10s"},
    })  # fmt: skip
    store = open_store(cfg)
    b = TopologyBuilder()
    b.add_inventory(sim.factory.describe())
    b.update(store)
    b.persist(store)
    names = args.only.split(",") if args.only else ["xid79_fell_off_bus", "leaf_switch_failure", "hbm_ecc"]
    plan: list[tuple[str, float]] = [(n, args.warmup + i * args.spacing) for i, n in enumerate(names)]
    results: list[dict[str, Any]] = []

    async def feed(ctx: Any) -> None:
        sim.rebase(int(time.time() * 1000))
        sent = 0
        nxt = time.monotonic()
        while True:
            frame = await asyncio.to_thread(sim.step)
            rec = Recorder(tmp / f"rec-{sim.tick % 2}")
            rec.add(frame)
            for batch in recorder_batches(rec, sim.labels):
                await asyncio.to_thread(ctx.store.append, batch)
            if len(sim.events) > sent:
                await asyncio.to_thread(ctx.store.append_events, to_events(sim.events[sent:]))
                sent = len(sim.events)
            nxt += dt
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    app, ctx = build_app(cfg, store, background=[feed])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))

    async def drive() -> None:
        t0 = time.time()
        faults: list[tuple[str, Any, float]] = []
        for name, at in plan:
            await asyncio.sleep(max(0.0, t0 + at - time.time()))
            start_ms = int(time.time() * 1000)
            f = sim.add_fault(name, start_ms, int(args.fault_minutes * MIN), {})
            faults.append((name, f, start_ms / 1000))
        await asyncio.sleep(args.spacing)
        svc = ctx.extras["alerting"]
        inv = sim.factory.describe()
        for name, f, t_fault in faults:
            truth = f.truth()
            want = _truth_entities(truth, inv, b.update(store))
            incs = [
                i
                for i in svc.incidents.list_incidents()
                if not i.merged_into and i.opened_ms >= t_fault * 1000 - 5000
            ]
            hit = next(
                (
                    i
                    for i in incs
                    if ({i.anchor, i.cause_entity} | {a.get("entity") for a in i.alerts.values()}) & want
                ),
                None,
            )
            row: dict[str, Any] = {"fault": name, "truth": sorted(want), "detected": hit is not None}
            if hit is not None:
                posts = [
                    p
                    for p in hook.posts
                    if p[1] == "/hook" and p[2] and p[2]["groupLabels"].get("incident") == hit.id
                ]
                am = [
                    p
                    for p in hook.posts
                    if p[1] == "/am" and p[2] and p[2]["groupLabels"].get("sightglass_incident") == hit.id
                ]
                row.update({
                    "cause": hit.cause_entity, "cause_right": hit.cause_entity in want,
                    "incident_opened_after_s": round(hit.opened_ms / 1000 - t_fault, 1),
                    "webhook_after_s": round(posts[0][0] - t_fault, 1) if posts else None,
                    "alertmanager_webhook_after_s": round(am[0][0] - t_fault, 1) if am else None,
                    "alerts": len(hit.alerts),
                })  # fmt: skip
            results.append(row)
            print(json.dumps(row), flush=True)
        st = svc.status()
        print(json.dumps({"evaluation_rounds": st["steps"], "last_round_s": st["last_step_seconds"],
                          "deliveries": {k: st["notifications"][k] for k in ("delivered", "failed")}}))  # fmt: skip
        server.should_exit = True

    async def main() -> None:
        await asyncio.gather(server.serve(), drive())

    print(json.dumps({"shape": {"nodes": 8, "gpus": 64, "tick_s": dt, "evaluation_interval": args.interval,
                                "faults": plan, "alertmanager": am_url is not None}}))  # fmt: skip
    try:
        asyncio.run(main())
    finally:
        store.close()
        if am_proc is not None:
            am_proc.terminate()
            am_proc.wait(10)
        hook.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cost")
    c.add_argument("--nodes", type=int, default=1000)
    c.add_argument("--minutes", type=float, default=6.0)
    c.add_argument("--replay-minutes", type=int, default=2)
    f = sub.add_parser("faults")
    f.add_argument("--minutes", type=int, default=30)
    f.add_argument("--seed", type=int, default=11)
    f.add_argument("--only", default="")
    f.add_argument("--no-rca", action="store_true")
    v = sub.add_parser("live")
    v.add_argument("--seed", type=int, default=11)
    v.add_argument("--interval", default="10s", help="evaluation_interval of the server")
    v.add_argument("--warmup", type=float, default=90.0, help="seconds of data before the first fault")
    v.add_argument("--spacing", type=float, default=120.0, help="seconds between faults (and after the last)")
    v.add_argument("--fault-minutes", type=float, default=10.0)
    v.add_argument("--only", default="")
    args = ap.parse_args()
    {"cost": cost, "faults": faults, "live": live}[args.cmd](args)


if __name__ == "__main__":
    main()

"""Incident-triggered GPU diagnostics end to end on a real HTTP server (uvicorn): a simulated silent
data corruption opens a TrainingLossSpike incident on the job; the incident asks for diagnostics on
the job's GPUs; the agent's task client pulls them over HTTP, runs a fake ``dcgmi`` (the only mock:
an executable printing DCGM 4.x JSON shaped like the recorded captures) and posts the output back;
the next alerting round stores the results, re-runs the RCA, moves the cause to the failing GPU and
notifies the webhook again. Plus the endpoints' bad input, the CLI and the policy's limits."""

from __future__ import annotations

import json
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner

from sightglass.agent.dcgm_diag import DiagnosticRunner
from sightglass.agent.tasks import TaskClient
from sightglass.cli import cli
from sightglass.config import Config
from sightglass.server import build_app
from sightglass.simulate.fast import run_ingest
from sightglass.simulate.faults import ScriptedFault
from sightglass.store.duckdb import DuckDBStore, StoreOptions
from sightglass.timeutil import parse_time_ms
from sightglass.topology import TopologyBuilder

START = parse_time_ms("2026-11-16T00:00:00Z")
FIX = Path(__file__).parents[1] / "agent" / "fixtures" / "dcgm_diag"


@dataclass
class Scene:
    base: str
    svc: Any
    store: Any
    truth: dict[str, Any]
    tmp: Path
    hook: Any
    end_ms: int


def _fake_dcgmi(path: Path, fail_gpu: int | None) -> Path:
    """A fake dcgmi: the recorded DCGM 4.2.3 document's layout, one result per GPU of ``-i``; the
    ``diagnostic`` test fails on ``fail_gpu`` with a DCGM-style warning."""
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"doc = json.load(open({str(FIX / 'dcgm423-gb10-level2-partial-skip.json')!r}))\n"
        "gpus = [int(g) for g in sys.argv[sys.argv.index('-i') + 1].split(',')]\n"
        f"fail = {fail_gpu!r}\n"
        "def res(name, g):\n"
        "    bad = name == 'diagnostic' and g == fail\n"
        "    r = {'entity_group': 'GPU', 'entity_group_id': 1, 'entity_id': g, 'status': 'Fail' if bad else 'Pass'}\n"
        "    if bad:\n"
        "        r['warnings'] = [{'error_category': 1, 'error_id': 95, 'error_severity': 3,\n"
        "                          'warning': f'GPU {g}: the GEMM result differed from the reference'}]\n"
        "    return r\n"
        "cats = [{'category': 'Deployment', 'tests': [{'name': 'software', 'results': [res('software', g) for g in gpus]}]},\n"
        "        {'category': 'Hardware', 'tests': [{'name': n, 'results': [res(n, g) for g in gpus]} for n in ('memory', 'diagnostic')]}]\n"
        "doc['DCGM Diagnostic']['test_categories'] = cats\n"
        "print(json.dumps(doc))\n"
        "sys.exit(226 if fail in gpus else 0)\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def sdc_scene(tmp: Path, diagnostics: dict[str, Any]) -> Iterator[Scene]:
    """A real server over a 4-node store with one SDC fault, its rules replayed over the simulated
    20 minutes (as `rules replay` does); ``diagnostics``: the ``[alerting.diagnostics]`` table."""
    from tests.alerting.conftest import Receiver

    store = DuckDBStore(tmp / "data", options=StoreOptions(compact_every_s=3600))
    minutes = 20
    _, sim = run_ingest(store, nodes=4, duration_s=minutes * 60, seed=12, start_ms=START, workdir=tmp,
                        scripted=[ScriptedFault("silent_data_corruption", 10 * 60_000, 15 * 60_000, {})])  # fmt: skip
    truth = next(f.truth() for f in sim.faults if f.state.get("started"))
    b = TopologyBuilder()
    b.add_inventory(sim.factory.describe())
    b.update(store)
    b.persist(store)
    hook = Receiver()
    srv_hook = _serve_receiver(hook)
    cfg = Config.model_validate({
        "data": str(tmp / "data"), "listen": "127.0.0.1:0",
        "alerting": {"evaluation_interval": "1h", "clock": "data", "notifiers": [{"type": "webhook", "url": hook.url + "/hook"}],
                     "diagnostics": diagnostics},
    })  # fmt: skip
    app, ctx = build_app(cfg, store)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    from sightglass.alerting.service import get_service

    svc = get_service(ctx)
    assert svc is not None
    end = START + minutes * 60_000
    svc.replay(START, end)
    try:
        yield Scene(base, svc, store, truth, tmp, hook, end)
    finally:
        server.should_exit = True
        th.join(10)
        svc.close()
        srv_hook.shutdown()
        store.close()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    # the DCGM path alone (replay: test_replay.py)
    yield from sdc_scene(tmp_path_factory.mktemp("diag"), {"level": 3, "replay": False})


def _serve_receiver(rec: Any) -> Any:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.alerting.conftest import Received

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with rec.lock:
                rec.requests.append(Received(self.path, dict(self.headers), json.loads(raw), time.time()))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    rec.url = f"http://127.0.0.1:{srv.server_address[1]}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _incident(scene: Scene) -> dict[str, Any]:
    incs = httpx.get(scene.base + "/api/v1/incidents").json()["data"]
    main = [i for i in incs if "TrainingLossSpike" in i["title"] or i.get("diagnostics")]
    assert main, [i["title"] for i in incs]
    return httpx.get(scene.base + f"/api/v1/incidents/{main[0]['id']}").json()["data"]


def test_sdc_incident_diagnosed_and_moved_to_the_gpu(scene: Scene) -> None:
    inc = _incident(scene)
    assert inc["cause"]["entity"].startswith("job:") and inc["cause"]["fault"] == "silent_data_corruption"
    tasks = inc["diagnostics"]["tasks"]
    assert tasks and all(t["state"] == "queued" and t["level"] == 3 for t in tasks)
    ev = next(e for e in inc["timeline"] if e["event"] == "diagnostics_requested")
    n_gpus = sum(len(t["gpus"]) for t in tasks)
    assert f"diagnostics requested on {n_gpus} GPUs of {len(tasks)} node(s) (dcgmi diag -r 3)" in ev["detail"]
    host, idx = scene.truth["root"]["match"]["Hostname"], int(scene.truth["root"]["match"]["gpu"])
    assert host in {t["node"] for t in tasks}
    posts_before = len([r for r in scene.hook.requests if r.path == "/hook"])

    # the agents of the job's nodes pull, run (fake) dcgmi, post the output back
    for t in tasks:
        exe = _fake_dcgmi(scene.tmp / f"dcgmi-{t['node']}", idx if t["node"] == host else None)
        client = TaskClient(scene.base, t["node"], DiagnosticRunner(str(exe), levels=(1, 2, 3)), poll_s=0.1)
        assert client.poll_once() == 1, client.last_error
        assert client.poll_once() == 0  # nothing twice
        assert not client.undelivered
    listed = httpx.get(scene.base + "/api/v1/diagnostics", params={"incident": inc["id"]}).json()["data"]
    assert {t["state"] for t in listed} == {"received"}

    # the next alerting round applies them
    r = httpx.post(scene.base + "/api/v1/alerting/evaluate", params={"time": str((scene.end_ms + 60_000) / 1000)}, timeout=300)
    assert r.status_code == 200, r.text
    inc = _incident(scene)
    gpu_ids = {f"gpu:{g['uuid']}" for t in tasks for g in t["gpus"] if t["node"] == host and g["index"] == idx}
    assert inc["cause"]["entity"] in gpu_ids, inc["cause"]
    assert inc["cause"]["fault"] == "silent_data_corruption"
    details = [e["detail"] for e in inc["timeline"]]
    assert any(d.startswith(f"GPU {idx} on {host} failed: diagnostic: GPU {idx}: the GEMM result differed") for d in details)
    assert any("passed dcgmi diag -r 3" in d for d in details)
    moved = next(e for e in inc["timeline"] if e["event"] == "cause_moved")
    assert moved["detail"].startswith("job:")
    top = inc["rca"]["causes"][0]
    assert top["evidence"]["events"][0]["kind"] == "gpu.diagnostic"
    q = top["evidence"]["events"][0]["query"]
    assert q.startswith("sightglass_gpu_diagnostic_result{UUID=") and q.endswith("== 3")
    assert "drain it" in top["action"]
    # the re-check query on the gauge finds the failed test, and only it
    res = httpx.get(scene.base + "/api/v1/query", params={"query": q, "time": str(top["evidence"]["events"][0]["ts_ms"] / 1000)}).json()
    assert [s["metric"]["test"] for s in res["data"]["result"]] == ["diagnostic"]
    # the webhook got the updated incident (a new version of the group)
    posts = [r for r in scene.hook.wait(posts_before + 1) if r.path == "/hook"]
    assert len(posts) > posts_before
    assert "silent_data_corruption" in json.dumps(posts[-1].body)

    # kubectl-style CLI
    out = CliRunner().invoke(cli, ["diagnostics", "list", "--server", scene.base])
    assert out.exit_code == 0, out.output
    assert "1 failed (GPU" in out.output and "done" in out.output
    tid = next(t["id"] for t in tasks if t["node"] == host)
    out = CliRunner().invoke(cli, ["diagnostics", "get", tid, "--server", scene.base])
    assert out.exit_code == 0 and f"GPU {idx}" in out.output and "failed: diagnostic" in out.output
    out = CliRunner().invoke(cli, ["diagnostics", "get", "diag-nope", "--server", scene.base])
    assert out.exit_code != 0 and "no diagnostic task" in out.output


def test_endpoints_refuse_bad_input(scene: Scene) -> None:
    b = scene.base
    r = httpx.get(b + "/api/v1/agent/tasks")
    assert r.status_code == 400 and 'parameter "node" is required' in r.json()["error"]
    assert httpx.get(b + "/api/v1/agent/tasks", params={"node": "a b"}).status_code == 400
    assert httpx.get(b + "/api/v1/agent/tasks", params={"node": "node-99"}).json()["data"] == {"tasks": []}
    r = httpx.post(b + "/api/v1/agent/tasks/diag-nope/result", json={"node": "x", "output": "{}"})
    assert r.status_code == 404 and "no diagnostic task" in r.json()["error"]
    # a fresh task to send bad results to
    mgr = scene.svc.diagnostics
    inc = next(iter(scene.svc.incidents.incidents.values()))
    t = {"id": "diag-test1", "incident": inc.id, "node": "node-01", "kind": "dcgm_diag", "level": 1,
         "gpus": [{"index": 0, "uuid": "GPU-x", "entity": "gpu:GPU-x"}], "state": "queued", "requested_ms": scene.end_ms,
         "dispatched_ms": None, "finished_ms": None, "error": "", "results": {}}  # fmt: skip
    with mgr.lock:
        mgr.tasks[t["id"]] = t
    url = b + "/api/v1/agent/tasks/diag-test1/result"
    for body, status, needle in [
        (b"{not json", 400, "not valid JSON"),
        (b"[1]", 400, "must be a JSON object"),
        (json.dumps({"node": "node-01", "rm": "-rf"}).encode(), 400, "unknown field(s) rm"),
        (json.dumps({"node": "node-02", "output": "{}"}).encode(), 409, "is for node 'node-01'"),
        (json.dumps({"node": "node-01", "output": 5}).encode(), 400, "must be strings"),
        (json.dumps({"node": "node-01", "output": "", "exit_code": "0"}).encode(), 400, "exit_code must be"),
    ]:
        r = httpx.post(url, content=body)
        assert r.status_code == status and needle in r.json()["error"], (body, r.text)
    r = httpx.post(url, content=b"x" * (10 * 1024 * 1024))
    assert r.status_code == 413
    # garbage dcgmi output: refused with the parser's reason, and the task fails with it
    r = httpx.post(url, json={"node": "node-01", "output": '{"DCGM Diagnostic": {"test_categories": [{"tests": 3}]}}'})
    assert r.status_code == 422 and "dcgmi output unreadable" in r.json()["error"] and "tests must be a list" in r.json()["error"]
    r = httpx.post(url, json={"node": "node-01", "output": "{}"})
    assert r.status_code == 409  # it has its (failed) result already
    scene.svc.advance(scene.end_ms + 120_000)
    assert mgr.get_task("diag-test1")["state"] == "failed"
    got = scene.svc.incidents.get(inc.id)
    assert any(e["event"] == "diagnostics_failed" and "tests must be a list" in e["detail"] for e in got.timeline)
    with mgr.lock:
        mgr.tasks.pop("diag-test1")


def test_policy_dedup_limits_and_config_errors(scene: Scene) -> None:
    from sightglass.alerting.config import alerting_config
    from sightglass.config import ConfigError

    mgr = scene.svc.diagnostics
    inc = next(i for i in scene.svc.incidents.incidents.values() if i.diagnostics)
    n = len(mgr.tasks)
    assert mgr.consider(inc, scene.end_ms + 10 * 60_000) is False  # once per incident
    # another incident on the same job within node_interval: the nodes are not diagnosed again
    from sightglass.alerting.incidents import Incident

    other = Incident("inc-other", "x", "open", "warning", scene.end_ms, inc.anchor, rca=inc.rca)
    scene.svc.incidents.incidents[other.id] = other
    try:
        assert mgr.consider(other, scene.end_ms + 10 * 60_000) is True
        assert len(mgr.tasks) == n and other.diagnostics is not None and other.diagnostics["tasks"] == []
        assert any(e["event"] == "diagnostics_skipped" and "diagnosed" in e["detail"] for e in other.timeline)
    finally:
        scene.svc.incidents.incidents.pop(other.id)
    for raw, needle in [
        ({"diagnostics": {"level": 7}}, "alerting.diagnostics.level"),
        ({"diagnostics": {"node_interval": "soon"}}, "alerting.diagnostics.node_interval"),
        ({"diagnostics": {"hypotheses": [""]}}, "alerting.diagnostics.hypotheses"),
        ({"diagnostics": {"command": "rm -rf /"}}, "alerting.diagnostics.command"),
    ]:
        with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
            alerting_config(raw)


def test_all_pass_runs_again_up_to_runs(scene: Scene) -> None:
    from sightglass.alerting.catalog import MemoryCatalog
    from sightglass.alerting.diagnostics import DiagnosticsConfig, DiagnosticsManager
    from sightglass.alerting.incidents import Incident, IncidentManager

    src = next(i for i in scene.svc.incidents.incidents.values() if i.diagnostics)
    incs = IncidentManager(MemoryCatalog())
    inc = Incident("inc-rep", "x", "open", "warning", scene.end_ms, src.anchor, rca=src.rca)
    incs.incidents[inc.id] = inc
    mgr = DiagnosticsManager(DiagnosticsConfig(runs=2, replay=False), scene.store, topology=scene.svc._incident_args["topology"])
    t0 = scene.end_ms + 3_600_000
    assert mgr.consider(inc, t0)
    exe = _fake_dcgmi(scene.tmp / "dcgmi-pass", None)
    runner = DiagnosticRunner(str(exe))

    def answer(at: int) -> int:
        n = 0
        for node in sorted({t["node"] for t in mgr.list_tasks()}):
            for task in mgr.dispatch(node, at):
                run = runner.run(task["level"], [g["index"] for g in task["gpus"]])
                mgr.submit_result(task["id"], {"node": node, "exit_code": run.exit_code, "output": run.output,
                                               "finished_ms": at}, at)  # fmt: skip
                n += 1
        mgr.step(at, incs, [])
        return n

    first = answer(t0 + 900_000)
    assert first >= 1
    assert any(e["event"] == "diagnostics_repeat" for e in inc.timeline)
    assert inc.diagnostics is not None and inc.diagnostics["runs"] == 2
    assert {t["run"] for t in mgr.list_tasks()} == {1, 2}
    assert answer(t0 + 1_800_000) == first  # the second round, on the same nodes
    assert inc.diagnostics["runs"] == 2 and sum(e["event"] == "diagnostics_repeat" for e in inc.timeline) == 1
    assert all(t["state"] == "done" for t in mgr.list_tasks())


def test_real_agent_process_runs_a_task(scene: Scene) -> None:
    """`python -m sightglass.agent` (the daemon, pushing to the server) pulls a queued task, runs the
    fake dcgmi and posts the result; the next round applies it."""
    import os
    import subprocess

    mgr = scene.svc.diagnostics
    inc = next(i for i in scene.svc.incidents.incidents.values() if i.diagnostics)
    node = "node-02"
    t = {"id": "diag-proc1", "incident": inc.id, "node": node, "kind": "dcgm_diag", "level": 2,
         "gpus": [{"index": 0, "uuid": "GPU-p0", "entity": "gpu:GPU-p0"}, {"index": 5, "uuid": "GPU-p5", "entity": "gpu:GPU-p5"}],
         "state": "queued", "requested_ms": scene.end_ms, "dispatched_ms": None, "finished_ms": None, "error": "",
         "results": {}, "run": 1}  # fmt: skip
    with mgr.lock:
        mgr.tasks[t["id"]] = t
    exe = _fake_dcgmi(scene.tmp / "dcgmi-proc", 5)
    cfg = scene.tmp / "agent.toml"
    cfg.write_text(
        f'[agent]\nserver = "{scene.base}"\nhostname = "{node}"\ninterval = "1s"\ncollectors = ["host"]\n'
        f'spool_dir = "{scene.tmp / "spool"}"\n[agent.diagnostics]\ndcgmi = "{exe}"\nlevels = [1, 2]\npoll_interval = "1s"\n'
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    log = (scene.tmp / "agent.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "sightglass.agent", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while mgr.get_task("diag-proc1")["state"] != "received":
            assert proc.poll() is None, (scene.tmp / "agent.log").read_text()[-2000:]
            assert time.monotonic() < deadline, (scene.tmp / "agent.log").read_text()[-2000:]
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(20)
    scene.svc.advance(scene.end_ms + 300_000)
    got = mgr.get_task("diag-proc1")
    assert got["state"] == "done"
    assert got["results"] == {"0": {"status": "pass", "failed": []}, "5": {"status": "fail", "failed": ["diagnostic"]}}
    with mgr.lock:
        mgr.tasks.pop("diag-proc1")

"""Deterministic replay end to end on a real HTTP server (uvicorn) and real agent processes: a simulated
silent data corruption opens a TrainingLossSpike incident on the job; the incident queues, per node of
the job, a replay task listed before a DCGM task; one `python -m sightglass.agent` per node pulls
them, runs its replay hook (the only mock: an executable printing per-GPU checksums, a different one
on the faulty GPU) and a fake dcgmi that passes every GPU, and posts both back; the next alerting round
compares the checksums across the job's GPUs, stores the verdict, re-runs the RCA, moves the cause to
the GPU that differed and notifies again. Plus bad hook output through the endpoint and the
comparison's inconclusive cases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.alerting.test_diagnostics import Scene, _fake_dcgmi, _incident, sdc_scene

from sightglass.timeutil import parse_time_ms

START = parse_time_ms("2026-11-16T00:00:00Z")
GOOD = "5a" * 32


def _hook(path: Path, bad_gpu: int | None, *, mode: str = "ok") -> Path:
    """A fake replay hook: the same checksum for every GPU it is given (``{gpus}``), another one for
    ``bad_gpu``; ``mode`` "garbage" prints a traceback, "short" leaves the last GPU out."""
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "gpus = [int(g) for g in sys.argv[sys.argv.index('--gpus') + 1].split(',')]\n"
        "assert os.environ['SIGHTGLASS_REPLAY_GPUS'] == ','.join(map(str, gpus))\n"
        f"mode, bad = {mode!r}, {bad_gpu!r}\n"
        "if mode == 'garbage':\n"
        "    print('Traceback (most recent call last):\\n  RuntimeError: CUDA error'); sys.exit(1)\n"
        "if mode == 'short':\n"
        "    gpus = gpus[:-1]\n"
        f"rows = [{{'index': g, 'checksum': ('e1' * 32) if g == bad else {GOOD!r}, 'seconds': 0.5}} for g in gpus]\n"
        "seed = sys.argv[sys.argv.index('--seed') + 1]\n"
        "print(json.dumps({'input': 'step-replay-seed-' + seed, 'gpus': rows}))\n"
    )
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    # replay (default on), then DCGM level 3
    yield from sdc_scene(tmp_path_factory.mktemp("replay"), {"level": 3, "runs": 1})


def _agent(scene: Scene, node: str, hook: Path, dcgmi: Path) -> subprocess.Popen[bytes]:
    cfg = scene.tmp / f"agent-{node}.toml"
    cfg.write_text(
        f'[agent]\nserver = "{scene.base}"\nhostname = "{node}"\ninterval = "1s"\ncollectors = ["host"]\n'
        f'spool_dir = "{scene.tmp / ("spool-" + node)}"\n[agent.diagnostics]\ndcgmi = "{dcgmi}"\npoll_interval = "1s"\n'
        f'replay_command = ["{hook}", "--gpus", "{{gpus}}", "--seed", "{{seed}}"]\nreplay_timeout = "1m"\n'
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    log = (scene.tmp / f"agent-{node}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "sightglass.agent", "--config", str(cfg)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


def test_replay_finds_the_gpu_dcgm_passed(scene: Scene) -> None:
    inc = _incident(scene)
    assert inc["cause"]["entity"].startswith("job:") and inc["cause"]["fault"] == "silent_data_corruption"
    tasks = inc["diagnostics"]["tasks"]
    nodes = sorted({t["node"] for t in tasks})
    assert sorted(t["kind"] for t in tasks) == sorted(["replay", "dcgm_diag"] * len(nodes))
    ev = next(e for e in inc["timeline"] if e["event"] == "diagnostics_requested")
    assert f"of {len(nodes)} node(s) (replay then dcgmi diag -r 3)" in ev["detail"]
    # the agent is given the replay first, with the round's seed; the same seed on every node
    listed = httpx.get(scene.base + "/api/v1/agent/tasks", params={"node": nodes[0]}).json()["data"]["tasks"]
    assert [t["kind"] for t in listed] == ["replay", "dcgm_diag"] and listed[0]["level"] is None
    assert len({t["seed"] for t in tasks if t["kind"] == "replay"}) == 1
    host, idx = scene.truth["root"]["match"]["Hostname"], int(scene.truth["root"]["match"]["gpu"])
    assert host in nodes
    posts_before = len([r for r in scene.hook.requests if r.path == "/hook"])

    procs = [_agent(scene, n, _hook(scene.tmp / f"hook-{n}", idx if n == host else None), _fake_dcgmi(scene.tmp / f"dcgmi-{n}", None))
             for n in nodes]  # fmt: skip
    mgr = scene.svc.diagnostics
    try:
        deadline = time.monotonic() + 120
        while any(mgr.get_task(t["id"])["state"] != "received" for t in tasks):
            for n, p in zip(nodes, procs, strict=True):
                assert p.poll() is None, (scene.tmp / f"agent-{n}.log").read_text()[-2000:]
            assert time.monotonic() < deadline, [(t["id"], mgr.get_task(t["id"])["state"]) for t in tasks]
            time.sleep(0.2)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(20)
    r = httpx.post(
        scene.base + "/api/v1/alerting/evaluate",
        params={"time": str((scene.end_ms + 60_000) / 1000)},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    inc = _incident(scene)
    uuid = next(g["uuid"] for t in tasks for g in t["gpus"] if t["node"] == host and g["index"] == idx)
    assert inc["cause"]["entity"] == f"gpu:{uuid}", inc["cause"]
    assert inc["cause"]["fault"] == "silent_data_corruption"
    details = {e["event"]: e["detail"] for e in inc["timeline"]}
    n_gpus = sum(len(t["gpus"]) for t in tasks if t["kind"] == "replay")
    assert details["replay_mismatch"].startswith(
        f"GPU {idx} on {host}: replay checksum e1e1e1e1e1e1 differs from the majority 5a5a5a5a5a5a ({n_gpus - 1} of {n_gpus} GPUs agree"
    )
    assert f"{n_gpus - 1} of {n_gpus} GPU(s)" in details["replay_matched"]
    assert (
        "passed dcgmi diag -r 3" in details["diagnostic_passed"]
    )  # DCGM passed them all: the replay found it
    top = inc["rca"]["causes"][0]
    e0 = top["evidence"]["events"][0]
    assert e0["kind"] == "gpu.replay" and e0["attributes"]["result"] == "mismatch"
    assert e0["query"] == f'sightglass_gpu_replay_mismatch{{UUID="{uuid}"}} == 1'
    assert "Replay mismatch" in top["summary"] and "without it" in top["action"]
    # the re-check query on the gauge finds that GPU, and only it
    res = httpx.get(
        scene.base + "/api/v1/query", params={"query": e0["query"], "time": str(e0["ts_ms"] / 1000)}
    ).json()
    assert [s["metric"]["UUID"] for s in res["data"]["result"]] == [uuid]
    last = max(
        mgr.get_task(t["id"])["finished_ms"] for t in tasks if t["kind"] == "replay"
    )  # each node's own finish time
    res = httpx.get(
        scene.base + "/api/v1/query",
        params={"query": "count(sightglass_gpu_replay_mismatch == 0)", "time": str(last / 1000)},
    ).json()
    assert res["data"]["result"][0]["value"][1] == str(n_gpus - 1)
    got = {t["kind"]: mgr.get_task(t["id"]) for t in tasks if t["node"] == host}
    assert got["replay"]["results"][str(idx)]["status"] == "mismatch" and got["replay"]["compared"]
    assert all(r["status"] == "pass" for r in got["dcgm_diag"]["results"].values())
    posts = [r for r in scene.hook.wait(posts_before + 1) if r.path == "/hook"]
    assert len(posts) > posts_before and uuid in json.dumps(posts[-1].body)  # the update names the GPU
    # the CLI names the kind and the GPU that differed
    from click.testing import CliRunner

    from sightglass.cli import cli

    out = CliRunner().invoke(cli, ["diagnostics", "list", "--incident", inc["id"], "--server", scene.base, "-o", "json"])
    assert out.exit_code == 0, out.output
    rows = {r["id"]: r for r in json.loads(out.output)}
    rid = next(t["id"] for t in tasks if t["node"] == host and t["kind"] == "replay")
    assert rows[rid]["kind"] == "replay" and rows[rid]["results"][str(idx)]["status"] == "mismatch"
    out = CliRunner().invoke(cli, ["diagnostics", "get", rid, "--server", scene.base])
    assert out.exit_code == 0 and "replay (seed" in out.output and f"1 differed (GPU {idx})" in out.output
    assert "checksum e1e1e1e1e1e1e1e1" in out.output


def _manager(scene: Scene, replay_results: list[tuple[str, Any]]) -> tuple[Any, Any, list[dict[str, Any]]]:
    """A fresh manager on the scene's incident (its RCA) with its replay tasks answered as given."""
    from sightglass.alerting.catalog import MemoryCatalog
    from sightglass.alerting.diagnostics import DiagnosticsConfig, DiagnosticsManager
    from sightglass.alerting.incidents import Incident, IncidentManager

    src = next(i for i in scene.svc.incidents.incidents.values() if i.diagnostics)
    incs = IncidentManager(MemoryCatalog())
    inc = Incident("inc-cmp", "x", "open", "warning", scene.end_ms, src.anchor, rca=src.rca)
    incs.incidents[inc.id] = inc
    mgr = DiagnosticsManager(DiagnosticsConfig(dcgm=False, runs=1, node_interval="1s"), scene.store,
                             topology=scene.svc._incident_args["topology"])  # fmt: skip
    t0 = scene.end_ms + 7_200_000
    assert mgr.consider(inc, t0)
    tasks = mgr.list_tasks(incident=inc.id)
    for t, (mode, arg) in zip(tasks, replay_results, strict=False):
        gpus = [g["index"] for g in t["gpus"]]
        if mode == "doc":
            out = json.dumps(arg(gpus))
        else:
            out = ""
        mgr.submit_result(
            t["id"],
            {
                "node": t["node"],
                "output": out,
                "error": "" if out else "hook not found",
                "finished_ms": t0 + 1000,
            },
            t0 + 1000,
        )
    return mgr, inc, tasks


def test_bad_hook_output_through_the_endpoint(scene: Scene) -> None:
    mgr = scene.svc.diagnostics
    inc = next(iter(scene.svc.incidents.incidents.values()))
    t = {"id": "replay-bad1", "incident": inc.id, "node": "node-01", "kind": "replay", "level": None, "seed": 3, "step_ms": None,
         "gpus": [{"index": 0, "uuid": "GPU-x0", "entity": "gpu:GPU-x0"}, {"index": 1, "uuid": "GPU-x1", "entity": "gpu:GPU-x1"}],
         "state": "queued", "requested_ms": scene.end_ms, "dispatched_ms": None, "finished_ms": None, "error": "", "results": {}, "run": 1}  # fmt: skip
    with mgr.lock:
        mgr.tasks[t["id"]] = t
    url = scene.base + "/api/v1/agent/tasks/replay-bad1/result"
    short = json.dumps({"input": "x", "gpus": [{"index": 0, "checksum": GOOD}]})
    r = httpx.post(url, json={"node": "node-01", "output": short})
    assert r.status_code == 422, r.text
    assert "replay output unreadable: GPU(s) 1 asked for are missing from the output" in r.json()["error"]
    scene.svc.advance(scene.end_ms + 120_000)
    assert mgr.get_task("replay-bad1")["state"] == "failed"
    got = scene.svc.incidents.get(inc.id)
    assert any(
        e["event"] == "diagnostics_failed"
        and "(replay)" in e["detail"]
        and "asked for are missing" in e["detail"]
        for e in got.timeline
    )
    with mgr.lock:
        mgr.tasks.pop("replay-bad1")


def test_comparison_inconclusive_and_known_answer(scene: Scene) -> None:
    # every GPU a different checksum: no majority, nobody is blamed
    mgr, inc, tasks = _manager(
        scene,
        [
            (
                "doc",
                lambda gs: {"input": "x", "gpus": [{"index": g, "checksum": f"{g + 1:08x}" * 2} for g in gs]},
            )
        ]
        * 8,
    )
    mgr.step(scene.end_ms + 7_300_000, mgr_incidents(mgr, inc), [])
    assert any(
        e["event"] == "replay_inconclusive" and "no checksum is shared by more than half" in e["detail"]
        for e in inc.timeline
    )
    assert {r["status"] for t in mgr.list_tasks() for r in t["results"].values()} == {"inconclusive"}
    # a hook with a known answer: one GPU off it is a mismatch even when alone on its node
    ref = "ab" * 32

    def known(gs: list[int]) -> dict[str, Any]:
        return {
            "input": "k",
            "reference": ref,
            "gpus": [{"index": g, "checksum": ("cd" * 32) if g == gs[0] else ref} for g in gs],
        }

    mgr, inc, tasks = _manager(scene, [("doc", known)] + [("none", None)] * 8)
    mgr.step(scene.end_ms + 7_300_000, mgr_incidents(mgr, inc), [])
    lines = [e["detail"] for e in inc.timeline if e["event"] == "replay_mismatch"]
    assert len(lines) == 1 and "differs from the known answer abababababab" in lines[0]
    failed = [e for e in inc.timeline if e["event"] == "diagnostics_failed"]
    assert len(failed) == len(tasks) - 1 and "hook not found" in failed[0]["detail"]


def mgr_incidents(mgr: Any, inc: Any) -> Any:
    from sightglass.alerting.catalog import MemoryCatalog
    from sightglass.alerting.incidents import IncidentManager

    incs = IncidentManager(MemoryCatalog())
    incs.incidents[inc.id] = inc
    return incs


def test_fleet_limit_counts_node_diagnoses(scene: Scene) -> None:
    """A node's replay and DCGM task of one round count once against max_tasks_per_hour."""
    from sightglass.alerting.catalog import MemoryCatalog
    from sightglass.alerting.diagnostics import DiagnosticsConfig, DiagnosticsManager
    from sightglass.alerting.incidents import Incident, IncidentManager

    src = next(i for i in scene.svc.incidents.incidents.values() if i.diagnostics)
    incs = IncidentManager(MemoryCatalog())
    inc = Incident("inc-lim", "x", "open", "warning", scene.end_ms, src.anchor, rca=src.rca)
    incs.incidents[inc.id] = inc
    mgr = DiagnosticsManager(DiagnosticsConfig(max_tasks_per_hour=1), scene.store, topology=scene.svc._incident_args["topology"])
    assert mgr.consider(inc, scene.end_ms)
    tasks = mgr.list_tasks()
    assert sorted(t["kind"] for t in tasks) == ["dcgm_diag", "replay"] and len({t["node"] for t in tasks}) == 1
    skipped = [e["detail"] for e in inc.timeline if e["event"] == "diagnostics_skipped"]
    n_nodes = len({t["node"] for t in src.diagnostics["tasks"]})
    assert n_nodes >= 2 and "fleet limit of 1 node diagnoses an hour" in skipped[0]


def test_config_needs_a_method() -> None:
    from sightglass.alerting.config import alerting_config
    from sightglass.config import ConfigError

    with pytest.raises(ConfigError, match="replay and dcgm are both off"):
        alerting_config({"diagnostics": {"replay": False, "dcgm": False}})
    alerting_config({"diagnostics": {"replay": False, "dcgm": False, "enabled": False}})

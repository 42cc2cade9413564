"""``sightglass rca`` on the files and through a real running server; ``sightglass eval rca``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from rca_helpers import START_MS, simulate_fault

from sightglass.cli import cli
from sightglass.rca.evaluation import matches
from sightglass.simulate.fast import run_cases
from sightglass.timeutil import format_ts


def test_rca_cli_files_and_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sc = simulate_fault(data, "gpu_thermal")
    symptom, at, truth = sc.symptom, format_ts(sc.at_ms), sc.truth
    sc.store.close()
    runner = CliRunner()
    r = runner.invoke(cli, ["rca", "--data", str(data), "--symptom", symptom, "--at", at, "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    top = d["causes"][0]
    assert matches(top["entity"]["kind"], top["entity"]["labels"], truth)
    text = runner.invoke(cli, ["rca", "--data", str(data), "--symptom", symptom, "--at", at])
    assert text.exit_code == 0 and "#1  gpu" in text.output and "check:" in text.output
    bad = runner.invoke(cli, ["rca", "--data", str(data), "--symptom", "rate(x[5m", "--at", at])
    assert bad.exit_code == 1 and "cannot evaluate" in bad.output
    bad = runner.invoke(cli, ["rca", "--data", str(data), "--symptom", symptom, "--at", "someday"])
    assert bad.exit_code == 1 and "at:" in bad.output
    bad = runner.invoke(cli, ["rca", "--data", str(tmp_path / "nope"), "--symptom", symptom])
    assert bad.exit_code == 1 and "no data directory" in bad.output
    # the same question through a real server over the same directory (found via server.json)
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sightglass.cli", "up", "--data", str(data), "--listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not (data / "server.json").exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        r = runner.invoke(cli, ["rca", "--data", str(data), "--symptom", symptom, "--at", at, "--json"])
        assert r.exit_code == 0, r.output
        over_http = json.loads(r.output)
        assert over_http["causes"][0]["entity"] == top["entity"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_eval_rca_on_simulated_cases(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    run_cases(cases=2, nodes=4, duration_s=15 * 60, seed=9, start_ms=START_MS, out=suite, only=["ib_link_flap", "host_oom"])
    r = CliRunner().invoke(cli, ["eval", "rca", str(suite), "--json", "--no-baro"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    sg = rep["summary"]["sightglass"]
    assert sg["overall"]["cases"] == 2 and set(sg["per_fault"]) == {"ib_link_flap", "host_oom"}
    o = sg["overall"]
    assert 0.0 < o["chance_AC@1"] <= o["chance_AC@3"] <= 1.0
    assert o["AC@1"] <= o["AC@3"] <= o["AC@5"]
    assert all(c["candidates"] > 0 and c["seconds"] > 0 for c in rep["cases"])
    assert rep["notes"] == ["BARO skipped (--no-baro)"]
    text = CliRunner().invoke(cli, ["eval", "rca", str(suite), "--no-baro"])
    assert text.exit_code == 0 and "AC@1" in text.output and "overall" in text.output
    bad = CliRunner().invoke(cli, ["eval", "rca", str(tmp_path)])
    assert bad.exit_code != 0 and "no case folders" in bad.output

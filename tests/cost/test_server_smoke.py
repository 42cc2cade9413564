"""One smoke test over a real ``sightglass up`` process: the cost routes answer and the background cost
loop writes KPIs that PromQL reads back over HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner
from cost_helpers import SimFactory

from sightglass.cli import cli
from sightglass.timeutil import format_ts


def test_sightglass_up_serves_cost(sim_factory: SimFactory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(sim_factory.data, data)
    cfg = tmp_path / "sightglass.toml"
    cfg.write_text('[analytics]\nenabled = false\n\n[cost]\ninterval = "1s"\nlag = "0s"\n')
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sightglass.cli",
            "up",
            "--data",
            str(data),
            "--listen",
            "127.0.0.1:0",
            "--config",
            str(cfg),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        marker = data / "server.json"
        deadline = time.monotonic() + 60
        url = None
        while url is None:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            if marker.exists():
                try:
                    info = json.loads(marker.read_text())
                    url = info["url"] if info.get("pid") == proc.pid else None
                except ValueError:
                    pass
            assert time.monotonic() < deadline, "sightglass up did not start"
            time.sleep(0.05)
        f = sim_factory
        w = {"start": format_ts(f.start_ms), "end": format_ts(f.end_ms), "by": "team"}
        r = httpx.get(f"{url}/api/v1/cost/report", params=w, timeout=60)
        assert r.status_code == 200 and r.json()["data"]["reconciliation"]["exact"]
        deadline = time.monotonic() + 60
        while True:
            st = httpx.get(f"{url}/api/v1/cost/status", timeout=30).json()["data"]
            if st.get("steps", 0) >= 1:
                break
            assert st.get("last_error") is None, st
            assert time.monotonic() < deadline, st
            time.sleep(0.5)
        q = httpx.get(
            f"{url}/api/v1/query",
            params={"query": "sum(sightglass_gpu_cost_dollars_total)", "time": st["costed_until_ms"] / 1000},
            timeout=30,
        ).json()
        assert q["status"] == "success" and float(q["data"]["result"][0]["value"][1]) > 0
        days = httpx.get(f"{url}/api/v1/cost/daily", timeout=30).json()["data"]
        assert days and days[0]["day"] == "2026-11-16"
        # the CLI on the same data directory asks the server (its DuckDB file is locked)
        win = ["--start", w["start"], "--end", w["end"]]
        res = CliRunner().invoke(cli, ["cost", "report", "--data", str(data), *win, "--format", "json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["totals"] == r.json()["data"]["totals"]
        res = CliRunner().invoke(cli, ["cost", "tokens", "--data", str(data), *win, "--format", "json"])
        assert res.exit_code == 0 and json.loads(res.stdout)
        res = CliRunner().invoke(cli, ["cost", "report", "--data", str(data), *win, "--prices", str(cfg)])
        assert res.exit_code != 0 and "drop --prices" in res.output
    finally:
        proc.terminate()
        proc.wait(timeout=30)

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import sightglass
from sightglass.cli import cli
from sightglass.model import SampleBatch
from sightglass.store.duckdb import DuckDBStore


def _seed(data: Path) -> None:
    with DuckDBStore(data) as s:
        rows = [
            (
                "DCGM_FI_DEV_GPU_TEMP",
                {"Hostname": "n1", "gpu": str(g)},
                1_700_000_000_000 + i * 10_000,
                60.0 + g + i,
            )
            for g in range(2)
            for i in range(6)
        ]
        s.append(SampleBatch.from_rows(rows))


def test_version() -> None:
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and sightglass.__version__ in r.output


def test_help_runs_as_a_real_process() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "sightglass.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "up" in r.stdout and "query" in r.stdout


def test_query_instant_json_envelope(tmp_path: Path) -> None:
    _seed(tmp_path)
    r = CliRunner().invoke(
        cli,
        ["query", 'DCGM_FI_DEV_GPU_TEMP{gpu="1"}', "--data", str(tmp_path), "--time", "1700000050", "--json"],
    )
    assert r.exit_code == 0, r.output
    body = json.loads(r.output)
    assert body["status"] == "success" and body["data"]["resultType"] == "vector"
    (item,) = body["data"]["result"]
    assert item["metric"] == {"__name__": "DCGM_FI_DEV_GPU_TEMP", "Hostname": "n1", "gpu": "1"}
    assert item["value"] == [1700000050, "66"]


def test_query_range_table(tmp_path: Path) -> None:
    _seed(tmp_path)
    r = CliRunner().invoke(
        cli,
        [
            "query",
            "DCGM_FI_DEV_GPU_TEMP",
            "--data",
            str(tmp_path),
            "--start",
            "1700000000",
            "--end",
            "1700000050",
            "--step",
            "10s",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "6 points" in r.output and 'gpu="0"' in r.output


def test_query_errors_are_clear(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["query", "up{", "--data", str(tmp_path / "none"), "--json"])
    assert r.exit_code == 1
    body = json.loads(r.output)
    assert body["status"] == "error"
    _seed(tmp_path)
    r = CliRunner().invoke(cli, ["query", "up{", "--data", str(tmp_path), "--json"])
    assert r.exit_code == 1 and json.loads(r.output)["errorType"] == "bad_data"
    r = CliRunner().invoke(cli, ["query", "up", "--data", str(tmp_path), "--time", "tomorrow"])
    assert r.exit_code == 1 and "cannot parse" in r.output


def test_up_rejects_bad_config(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('listen = "nowhere"\n')
    r = CliRunner().invoke(cli, ["up", "--config", str(f), "--data", str(tmp_path)])
    assert r.exit_code != 0 and "listen" in r.output

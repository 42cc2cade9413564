"""The RCAEval-layout loader end to end on generated cases, including broken ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from sightglass.rca.external import evaluate_cases, summarize
from sightglass.rca.external.__main__ import main
from sightglass.rca.external.cases import CaseError
from sightglass.rca.external.rcaeval import find_reps, iter_cases, parse_case_name

from .conftest import write_rep


def test_root_case_and_rep_paths_all_resolve(rcaeval_root: Path) -> None:
    assert len(find_reps(rcaeval_root)) == 3
    assert len(find_reps(rcaeval_root.parent)) == 3  # one level above the dataset
    assert [p.name for p in find_reps(rcaeval_root / "cartservice_cpu")] == ["1", "2"]
    assert find_reps(rcaeval_root / "cartservice_cpu" / "2") == [rcaeval_root / "cartservice_cpu" / "2"]
    cases = [c for c in iter_cases([rcaeval_root]) if not isinstance(c, CaseError)]
    assert [(c.case, c.truth, c.fault, c.system) for c in cases] == [
        ("cartservice_cpu/1", "cartservice", "cpu", "RE1-OB"),
        ("cartservice_cpu/2", "cartservice", "cpu", "RE1-OB"),
        ("paymentservice_mem/1", "paymentservice", "mem", "RE1-OB"),
    ]
    assert cases[0].services == ["frontend", "cartservice", "paymentservice", "emailservice"]


def test_case_names() -> None:
    assert parse_case_name("ts-order-service_cpu") == ("ts-order-service", "cpu")
    with pytest.raises(CaseError, match="not named <service>_<fault>"):
        parse_case_name("nounderscore")


def test_evaluate_ranks_the_injected_service_first(rcaeval_root: Path) -> None:
    seen: list[tuple[int, int]] = []
    rows = evaluate_cases([str(rcaeval_root)], "rcaeval", progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert len(rows) == 3
    for row in rows:
        assert set(row) >= {"case", "fault", "truth", "candidates", "methods"}
        assert row["candidates"] == 4
        sg = row["methods"]["sightglass"]
        assert sg["ranking"][0] == row["truth"], row
        assert sorted(sg["ranking"]) == sorted(["frontend", "cartservice", "paymentservice", "emailservice"])
        assert sg["seconds"] >= 0.0
    summary = {(s["system"], s["method"]): s for s in summarize(rows)}
    assert summary[("RE1-OB", "sightglass")]["ac1"] == 1.0
    assert summary[("RE1-OB", "chance")]["ac1"] == pytest.approx(0.25)


def test_broken_cases_get_clear_errors_and_the_rest_still_run(tmp_path: Path) -> None:
    root = tmp_path / "RE2-TT"
    write_rep(root / "frontend_cpu" / "1", "frontend", 5)
    # no inject_time.txt
    write_rep(root / "cartservice_cpu" / "1", "cartservice", 6)
    (root / "cartservice_cpu" / "1" / "inject_time.txt").unlink()
    # inject_time that is not a number
    write_rep(root / "cartservice_cpu" / "2", "cartservice", 7)
    (root / "cartservice_cpu" / "2" / "inject_time.txt").write_text("yesterday\n")
    # a malformed CSV (ragged rows)
    bad = root / "emailservice_delay" / "1"
    bad.mkdir(parents=True)
    (bad / "data.csv").write_text("time,a_cpu\n1,2\n3,4,5,6\n7\n")
    (bad / "inject_time.txt").write_text("2\n")
    # only non-numeric metric columns
    text = root / "emailservice_delay" / "2"
    text.mkdir(parents=True)
    pd.DataFrame({"time": [1, 2, 3, 4], "a_state": ["up", "up", "down", "up"]}).to_csv(text / "data.csv", index=False)
    (text / "inject_time.txt").write_text("3\n")
    # inject time outside the data
    write_rep(root / "paymentservice_cpu" / "1", "paymentservice", 8)
    (root / "paymentservice_cpu" / "1" / "inject_time.txt").write_text("1800000000\n")
    # a folder name without a fault
    write_rep(root / "weird" / "1", "frontend", 9)

    rows = evaluate_cases([str(root)], "rcaeval")
    by_case = {r["case"]: r for r in rows}
    assert len(rows) == 7
    good = by_case["frontend_cpu/1"]
    assert "error" not in good and good["methods"]["sightglass"]["ranking"][0] == "frontend"
    errors = {r["case"]: r["error"] for r in rows if r.get("error")}
    assert len(errors) == 6
    assert "inject_time.txt: missing" in errors["cartservice_cpu/1"]
    assert "expected unix seconds, got 'yesterday'" in errors["cartservice_cpu/2"]
    assert "not a readable CSV" in errors["emailservice_delay/1"]
    assert "no numeric metric columns" in errors["emailservice_delay/2"]
    assert "outside the data" in errors["paymentservice_cpu/1"]
    assert "not named <service>_<fault>" in errors["weird/1"]
    assert all(r["methods"] == {} for r in rows if r.get("error"))


def test_non_numeric_columns_are_dropped_not_fatal(tmp_path: Path) -> None:
    rep = tmp_path / "cartservice_cpu" / "1"
    write_rep(rep, "cartservice", 11)
    df = pd.read_csv(rep / "data.csv")
    df["cartservice_pod"] = "cart-abc"  # a label column
    df["time.1"] = df["time"]  # a repeated header as pandas reads it
    df.to_csv(rep / "data.csv", index=False)
    [row] = evaluate_cases([str(rep)], "rcaeval")
    assert "error" not in row
    assert row["methods"]["sightglass"]["ranking"][0] == "cartservice"


def test_without_baro(rcaeval_root: Path) -> None:
    rows = evaluate_cases([str(rcaeval_root / "paymentservice_mem")], "rcaeval", with_baro=False)
    assert set(rows[0]["methods"]) == {"sightglass"}
    assert "skipped" in rows[0]["unavailable"]["baro"]


def test_missing_path_and_unknown_format(tmp_path: Path) -> None:
    [row] = evaluate_cases([str(tmp_path / "nope")], "rcaeval")
    assert "no such file or directory" in row["error"]
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        evaluate_cases([str(tmp_path)], "csv")


def test_module_entry_point_prints_figures(rcaeval_root: Path) -> None:
    # in-process (the subprocess test below covers `python -m`): RCAEval's import takes seconds
    out = CliRunner().invoke(main, [str(rcaeval_root), "--format", "rcaeval", "--by-fault"])
    assert out.exit_code == 0, out.output
    assert "AC@1" in out.stdout and "sightglass" in out.stdout and "chance" in out.stdout
    assert "fault cpu" in out.stdout
    js = CliRunner().invoke(main, [str(rcaeval_root), "--format", "rcaeval", "--json"])
    assert js.exit_code == 0
    doc = json.loads(js.stdout)
    assert len(doc["cases"]) == 3 and doc["summary"][0]["method"] == "sightglass"


def test_entry_point_fails_when_every_case_fails(tmp_path: Path) -> None:
    (tmp_path / "x_cpu" / "1").mkdir(parents=True)
    (tmp_path / "x_cpu" / "1" / "data.csv").write_text("")
    (tmp_path / "x_cpu" / "1" / "inject_time.txt").write_text("1700000000\n")
    out = subprocess.run(
        [sys.executable, "-m", "sightglass.rca.external", str(tmp_path), "--format", "rcaeval"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1
    assert "not a readable CSV" in out.stderr


def test_cases_filter(rcaeval_root: Path) -> None:
    rows = evaluate_cases([str(rcaeval_root)], "rcaeval", with_baro=False, only=r"^paymentservice_")
    assert [r["truth"] for r in rows] == ["paymentservice"]
    out = CliRunner().invoke(main, [str(rcaeval_root), "--format", "rcaeval", "--no-baro", "--cases", "nomatch$"])
    assert out.exit_code == 2 and "no case id matches --cases 'nomatch$'" in out.output
    bad = CliRunner().invoke(main, [str(rcaeval_root), "--format", "rcaeval", "--no-baro", "--cases", "(["])
    assert bad.exit_code == 2 and "--cases" in bad.output and "not a regular expression" in bad.output

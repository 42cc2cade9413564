"""The ``dcgmi diag -j`` parser on recorded outputs (tests/agent/fixtures/dcgm_diag/SOURCES.md), on
malformed and hostile input, and the runner with a fake ``dcgmi`` executable printing a fixture."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from sightglass.agent.dcgm_diag import DiagError, DiagnosticRunner, classify_test, parse_diag_json

FIX = Path(__file__).parent / "fixtures" / "dcgm_diag"


def _fixture(name: str) -> str:
    return (FIX / name).read_text()


def test_dcgm3_per_gpu_sample() -> None:
    rep = parse_diag_json(_fixture("dcgm3-per-gpu-nvidia-sample.json"))
    assert rep.version == "1.7"
    assert sorted(rep.gpus) == [0, 1, 2, 3]
    # sm_stress failed on GPUs 0, 2, 3 with DCGM's own text and error id 50; GPU 1 passed it
    for g in (0, 2, 3):
        r = rep.gpus[g]["sm_stress"]
        assert r.status == "fail" and r.kind == "compute"
        assert r.error_ids == [50]
        assert f"for GPU {g}" in r.errors[0] and "did not exceed desired stress level" in r.errors[0]
        assert rep.status_of(g) == "fail"
        assert [f.test for f in rep.failures(g)] == ["sm_stress"]
    assert rep.gpus[1]["sm_stress"].status == "pass"
    assert rep.status_of(1) == "pass"
    # the memory test was skipped on GPU 0 (ECC off), with DCGM's warning kept
    assert rep.gpus[0]["memory"].status == "skip"
    assert "ECC memory on GPU 0 is not currently active" in rep.gpus[0]["memory"].errors[0]
    # "0,1,2,3" results apply to every GPU
    assert all(rep.gpus[g]["Denylist"].status == "pass" for g in range(4))


def test_dcgm4_gb10_level1_capture() -> None:
    rep = parse_diag_json(_fixture("dcgm423-gb10-level1.json"))
    assert (rep.version, rep.driver) == ("4.2.3", "580.82.09")
    assert list(rep.gpus) == [0]
    sw = rep.gpus[0]["software"]
    assert sw.status == "fail" and sw.kind == "software" and sw.category == "Deployment"
    assert sw.error_ids == [29]
    assert sw.errors[0].startswith("Persistence Mode: Persistence mode for GPU 0 is disabled")


def test_dcgm4_gb10_level2_partial_skip() -> None:
    rep = parse_diag_json(_fixture("dcgm423-gb10-level2-partial-skip.json"))
    assert {n: r.status for n, r in rep.gpus[0].items()} == {"software": "fail", "memory": "skip", "pcie": "skip"}
    assert rep.gpus[0]["memory"].kind == "memory" and rep.gpus[0]["pcie"].kind == "interconnect"


def test_test_kinds() -> None:
    assert [classify_test(n) for n in ("diagnostic", "targeted_stress", "Pulse Test", "eud", "sm_stress")] == ["compute"] * 5
    assert [classify_test(n) for n in ("memory", "memtest", "memory_bandwidth", "Page Retirement/Row Remap")] == ["memory"] * 4
    assert classify_test("software") == "software" and classify_test("pcie") == "interconnect"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "printed nothing"),
        ("Error: unable to connect to host engine", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"foo": {}}', "not dcgmi diag -j output"),
        ('{"DCGM Diagnostic": {"runtime_error": "Couldn\'t find the DCGM host engine"}}', "runtime error: Couldn't find"),
        ('{"DCGM Diagnostic": {"test_categories": {}}}', "test_categories must be a list"),
        ('{"DCGM Diagnostic": {"test_categories": [{"category": "x", "tests": [{"name": "m", "results": '
         '[{"entity_id": 0, "status": "Exploded"}]}]}]}}', "unknown status 'Exploded'"),
        ('{"DCGM Diagnostic": {"test_categories": [{"category": "x", "tests": [{"name": "m", "results": '
         '[{"entity_id": -3, "status": "Pass"}]}]}]}}', "entity_id must be a GPU index"),
        ('{"DCGM Diagnostic": {"test_categories": [{"category": "x", "tests": [{"name": "m", "results": '
         '[{"gpu_ids": "0,x", "status": "Pass"}]}]}]}}', "'x' is not a GPU index"),
        ('{"DCGM Diagnostic": {"test_categories": [{"category": "x", "tests": [{"name": 5}]}]}}', "tests[0].name must be a string"),
        ('{"DCGM Diagnostic": {"test_categories": []}}', "no per-GPU result"),
        ("[" * 100_000 + "]" * 100_000, "nests too deeply"),
    ],
)  # fmt: skip
def test_malformed_and_hostile(text: str, needle: str) -> None:
    with pytest.raises(DiagError) as e:
        parse_diag_json(text)
    assert needle in str(e.value)


def test_truncated_and_oversized() -> None:
    full = _fixture("dcgm423-gb10-level2-partial-skip.json")
    with pytest.raises(DiagError, match=r"not JSON \(truncated\?\)"):
        parse_diag_json(full[: len(full) // 2])
    with pytest.raises(DiagError, match="over the"):
        parse_diag_json(b" " * (9 * 1024 * 1024))
    with pytest.raises(DiagError, match="not UTF-8"):
        parse_diag_json(b"\xff\xfe{}")


def _fake_dcgmi(tmp: Path, fixture: str, code: int = 226, sleep: float = 0.0) -> Path:
    """A fake ``dcgmi``: records its argv, prints a recorded output, exits like dcgmi on a failure."""
    exe = tmp / "dcgmi"
    exe.write_text(
        f"#!{sys.executable}\nimport sys, time, pathlib\n"
        f"pathlib.Path({str(tmp / 'argv')!r}).write_text(' '.join(sys.argv[1:]))\n"
        f"time.sleep({sleep})\n"
        f"sys.stdout.write(pathlib.Path({str(FIX / fixture)!r}).read_text())\nsys.exit({code})\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_runner_runs_the_allowed_command(tmp_path: Path) -> None:
    exe = _fake_dcgmi(tmp_path, "dcgm3-per-gpu-nvidia-sample.json")
    run = DiagnosticRunner(str(exe), levels=(1, 2, 3)).run(3, [3, 0, 2, 2])
    assert (tmp_path / "argv").read_text() == "diag -r 3 -j -i 0,2,3"
    assert run.exit_code == 226 and not run.error  # dcgmi exits non-zero on a failed test; the JSON counts
    assert run.report is not None and run.report.status_of(2) == "fail"
    assert json.loads(run.output)["DCGM GPU Diagnostic"]["version"] == "1.7"


def test_runner_allow_list(tmp_path: Path) -> None:
    exe = _fake_dcgmi(tmp_path, "dcgm3-per-gpu-nvidia-sample.json")
    r = DiagnosticRunner(str(exe), levels=(1, 2, 3))
    for level, gpus, needle in [
        (4, [0], "level 4 is not allowed"),
        ("3; rm -rf /", [0], "is not allowed"),
        (3, ["0 -r 4"], "is not an integer"),
        (3, [], "1 to 64"),
        (3, list(range(65)), "1 to 64"),
        (True, [0], "not allowed"),
    ]:
        with pytest.raises(DiagError, match=needle):
            r.run(level, gpus)
    assert not (tmp_path / "argv").exists()  # nothing ran


def test_runner_timeout_missing_and_garbage(tmp_path: Path) -> None:
    slow = _fake_dcgmi(tmp_path, "dcgm423-gb10-level1.json", sleep=5)
    run = DiagnosticRunner(str(slow), timeout_s=0.5).run(1, [0])
    assert (run.report is None and "did not finish in 0 s" in run.error) or "did not finish" in run.error
    run = DiagnosticRunner(str(tmp_path / "nope" / "dcgmi")).run(1, [0])
    assert run.report is None and "cannot run" in run.error
    run = DiagnosticRunner("dcgmi-not-installed-here").run(1, [0])
    assert "not found" in run.error
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.json").write_text("Error: host engine not running")
    exe = bad / "dcgmi"
    exe.write_text(f"#!{sys.executable}\nimport sys\nprint('Error: host engine not running')\nsys.exit(1)\n")
    os.chmod(exe, 0o755)
    run = DiagnosticRunner(str(exe)).run(1, [0])
    assert run.report is None and "not JSON" in run.error and "exit 1" in run.error


def test_agent_diagnostics_config() -> None:
    from sightglass.agent.assemble import _task_client
    from sightglass.agent.config import load_agent_config
    from sightglass.config import ConfigError

    cfg = load_agent_config({"server": "http://sg:9464", "hostname": "n1", "diagnostics": {"levels": [1, 2], "dcgmi": "/opt/dcgm/bin/dcgmi"}})
    tc = _task_client(cfg)
    assert tc is not None and tc.runner.levels == (1, 2) and tc.node == "n1" and tc.runner.dcgmi == "/opt/dcgm/bin/dcgmi"
    assert _task_client(load_agent_config({"server": "http://sg:9464", "diagnostics": {"enabled": False}})) is None
    assert _task_client(load_agent_config({"listen": "127.0.0.1:0"})) is None
    for raw, needle in [({"levels": [5]}, "agent.diagnostics.levels"), ({"timeout": "0s"}, "agent.diagnostics.timeout"),
                        ({"command": "sh"}, "agent.diagnostics.command")]:  # fmt: skip
        with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
            load_agent_config({"diagnostics": raw})


def test_task_client_refuses_unknown_kinds_and_levels(tmp_path: Path) -> None:
    from sightglass.agent.tasks import TaskClient

    exe = _fake_dcgmi(tmp_path, "dcgm423-gb10-level1.json")
    tc = TaskClient("http://unused", "n1", DiagnosticRunner(str(exe), levels=(1,)))
    assert "kind 'shell' is not one this agent runs" in tc.run_task({"id": "t", "kind": "shell", "level": 1, "gpus": []})["error"]
    res = tc.run_task({"id": "t", "kind": "dcgm_diag", "level": 3, "gpus": [{"index": 0}]})
    assert res["error"].startswith("refused: diagnostic level 3 is not allowed")
    res = tc.run_task({"id": "t", "kind": "dcgm_diag", "level": 1, "gpus": [{"index": 0}]})
    assert res["exit_code"] == 226 and json.loads(res["output"])["metadata"]["version"] == "4.2.3"

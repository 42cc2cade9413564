"""The replay hook's output parser on good, malformed and hostile input; the runner with fake hook
executables (the only mock: a program printing checksums); the shipped GEMM known-answer test's
arithmetic (exact whatever the summation order) and its refusal without a GPU library."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from sightglass.agent.replay import MAX_OUTPUT_BYTES, ReplayError, ReplayRunner, parse_replay_json

GOOD = {
    "input": "gemm-int-64x64-seed-1-x2",
    "gpus": [
        {"index": 0, "checksum": "ab" * 32},
        {"index": 3, "checksum": "CD" * 32, "uuid": "GPU-3", "seconds": 1.5},
    ],
}


def test_parse_good() -> None:
    rep = parse_replay_json(json.dumps(GOOD), [0, 3])
    assert rep.input == "gemm-int-64x64-seed-1-x2" and rep.reference is None
    assert rep.gpus[3].checksum == "cd" * 32 and rep.gpus[3].uuid == "GPU-3" and rep.gpus[3].seconds == 1.5
    assert rep.to_dict()["gpus"]["0"]["checksum"] == "ab" * 32
    ref = parse_replay_json(json.dumps({**GOOD, "reference": "ab" * 32}).encode())
    assert ref.reference == "ab" * 32


@pytest.mark.parametrize(
    ("doc", "expected", "needle"),
    [
        ("", None, "printed nothing"),
        ("Traceback (most recent call last):", None, "not JSON"),
        ("[1]", None, "must be a JSON object"),
        (json.dumps({**GOOD, "rm": 1}), None, "unknown field(s) rm"),
        (json.dumps({"gpus": GOOD["gpus"]}), None, '"input" must name what was computed'),
        (json.dumps({"input": "x", "gpus": []}), None, '"gpus" must be a non-empty list'),
        (json.dumps({"input": "x", "gpus": [{"index": -1, "checksum": "ab" * 8}]}), None, "gpus[0].index must be a GPU index"),
        (json.dumps({"input": "x", "gpus": [{"index": True, "checksum": "ab" * 8}]}), None, "gpus[0].index"),
        (json.dumps({"input": "x", "gpus": [{"index": 0, "checksum": "xyz"}]}), None, "gpus[0].checksum must be a string of 8 to 128 hexadecimal"),
        (json.dumps({"input": "x", "gpus": [{"index": 0, "checksum": 5}]}), None, "gpus[0].checksum"),
        (json.dumps({"input": "x", "gpus": [{"index": 0, "checksum": "ab" * 8}, {"index": 0, "checksum": "ab" * 8}]}), None, "GPU 0 is listed twice"),
        (json.dumps({"input": "x", "gpus": [{"index": 0, "checksum": "ab" * 8, "seconds": -1}]}), None, "seconds must be"),
        (json.dumps({**GOOD, "reference": "nothex"}), None, '"reference" must be'),
        (json.dumps(GOOD), [0, 1, 3], "GPU(s) 1 asked for are missing"),
        (json.dumps(GOOD), [0], "GPU(s) 3 were not asked for"),
        ("[" * 100_000 + "]" * 100_000, None, "nests too deeply"),
    ],
)  # fmt: skip
def test_parse_refuses(doc: str, expected: list[int] | None, needle: str) -> None:
    with pytest.raises(ReplayError) as e:
        parse_replay_json(doc, expected)
    assert needle in str(e.value)


def test_parse_size_and_encoding() -> None:
    with pytest.raises(ReplayError, match="over the"):
        parse_replay_json(b" " * (MAX_OUTPUT_BYTES + 1))
    with pytest.raises(ReplayError, match="not UTF-8"):
        parse_replay_json(b"\xff\xfe{}")


def _hook(tmp: Path, body: str, name: str = "hook") -> Path:
    exe = tmp / name
    exe.write_text(f"#!{sys.executable}\nimport json, os, sys, time\n{body}\n")
    exe.chmod(0o755)
    return exe


def test_runner_substitutes_and_passes_the_task(tmp_path: Path) -> None:
    exe = _hook(tmp_path, (
        "gpus = [int(g) for g in sys.argv[2].split(',')]\n"
        "assert os.environ['SIGHTGLASS_REPLAY_GPUS'] == sys.argv[2]\n"
        "open(os.path.join(os.path.dirname(sys.argv[0]), 'seen'), 'w').write(' '.join(sys.argv[1:]) + ' ' + os.environ['SIGHTGLASS_REPLAY_STEP'])\n"
        "print(json.dumps({'input': 'step-' + sys.argv[4], 'gpus': [{'index': g, 'checksum': '%064x' % g} for g in gpus]}))\n"
    ))  # fmt: skip
    r = ReplayRunner([str(exe), "--gpus", "{gpus}", "--seed", "{seed}", "--task={task}"])
    run = r.run([3, 1, 1], task="replay-ab; rm -rf /", seed=77, step_ms=1_794_787_200_000)
    assert run.error == "" and run.exit_code == 0, run.error
    assert (tmp_path / "seen").read_text() == "--gpus 1,3 --seed 77 --task=replay-ab__rm_-rf__ 1794787200000"
    assert run.report is not None and run.report.input == "step-77" and sorted(run.report.gpus) == [1, 3]


def test_runner_errors(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="no replay_command is configured"):
        ReplayRunner([]).run([0])
    r = ReplayRunner([str(_hook(tmp_path, "print('{}')", "x"))])
    for gpus, seed, needle in [
        ([], 0, "1 to 64"),
        (["0; ls"], 0, "not an integer"),
        ([0], -1, "seed -1"),
        ([0], "1", "seed '1'"),
    ]:
        with pytest.raises(ReplayError, match=needle):
            r.run(gpus, seed=seed)
    # not JSON, with the hook's stderr and exit code
    run = ReplayRunner(
        [str(_hook(tmp_path, "print('CUDA error: no device'); sys.stderr.write('boom'); sys.exit(3)", "bad"))]
    ).run([0])
    assert run.report is None and "not JSON" in run.error and "exit 3" in run.error and "boom" in run.error
    # a GPU missing from the output
    run = ReplayRunner(
        [
            str(
                _hook(
                    tmp_path,
                    "print(json.dumps({'input': 'x', 'gpus': [{'index': 0, 'checksum': 'ab' * 8}]}))",
                    "miss",
                )
            )
        ]
    ).run([0, 1])
    assert run.report is None and "GPU(s) 1 asked for are missing" in run.error
    # too slow
    run = ReplayRunner([str(_hook(tmp_path, "time.sleep(5)", "slow"))], timeout_s=0.5).run([0])
    assert run.report is None and "did not finish in 0.5 s" in run.error
    # too much output: refused, nothing of it sent on
    run = ReplayRunner([str(_hook(tmp_path, f"sys.stdout.write('x' * {MAX_OUTPUT_BYTES + 10})", "big"))]).run(
        [0]
    )
    assert run.output == "" and "over the 1048576-byte limit" in run.error
    # checksums but a failing exit: kept, and said
    run = ReplayRunner(
        [
            str(
                _hook(
                    tmp_path,
                    "print(json.dumps({'input': 'x', 'gpus': [{'index': 0, 'checksum': 'ab' * 8}]})); sys.exit(1)",
                    "ex1",
                )
            )
        ]
    ).run([0])
    assert run.report is not None and "exited 1 although it printed checksums" in run.error
    run = ReplayRunner(["replay-hook-not-installed-here"]).run([0])
    assert "not found" in run.error


def test_task_client_runs_replay_tasks(tmp_path: Path) -> None:
    from sightglass.agent.dcgm_diag import DiagnosticRunner
    from sightglass.agent.tasks import TaskClient

    exe = _hook(
        tmp_path,
        "print(json.dumps({'input': 'x', 'gpus': [{'index': int(g), 'checksum': 'ab' * 8} for g in os.environ['SIGHTGLASS_REPLAY_GPUS'].split(',')]}))",
    )
    tc = TaskClient("http://unused", "n1", DiagnosticRunner("dcgmi"), replay=ReplayRunner([str(exe)]))
    res = tc.run_task({"id": "replay-1", "kind": "replay", "seed": 5, "gpus": [{"index": 2}, {"index": 0}]})
    assert res["error"] == "" and parse_replay_json(res["output"], [0, 2]).gpus[2].checksum == "ab" * 8
    res = TaskClient("http://unused", "n1", DiagnosticRunner("dcgmi")).run_task(
        {"id": "r", "kind": "replay", "seed": 1, "gpus": [{"index": 0}]}
    )
    assert res["error"].startswith("refused: no replay_command is configured")


def test_agent_replay_config() -> None:
    from sightglass.agent.assemble import _task_client
    from sightglass.agent.config import load_agent_config
    from sightglass.config import ConfigError

    cfg = load_agent_config(
        {
            "server": "http://sg:9464",
            "diagnostics": {
                "replay_command": ["python3", "-m", "sightglass.agent.replay_gemm", "--gpus", "{gpus}"],
                "replay_timeout": "2m",
            },
        }
    )
    tc = _task_client(cfg)
    assert tc.replay.command[-1] == "{gpus}" and tc.replay.timeout_s == 120
    for raw, needle in [({"replay_command": "python3 hook.py"}, "agent.diagnostics.replay_command"),
                        ({"replay_command": [""]}, "agent.diagnostics.replay_command"),
                        ({"replay_timeout": "0s"}, "agent.diagnostics.replay_timeout")]:  # fmt: skip
        with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
            load_agent_config({"diagnostics": raw})


def test_gemm_known_answer_is_exact_in_float32() -> None:
    """The construction the shipped hook relies on: a float32 GEMM of -2..2 integers equals the float64
    answer bit for bit, whatever the summation order (here: numpy's BLAS, and a blocked sum)."""
    from sightglass.agent import replay_gemm as rg

    def blas(g: int) -> rg.Matmul:
        return lambda a, b, n: [a @ b for _ in range(n)]

    def blocked(g: int) -> rg.Matmul:
        def run(a: np.ndarray, b: np.ndarray, n: int) -> list[np.ndarray]:
            c = np.zeros((a.shape[0], b.shape[1]), dtype=np.float32)
            for k in range(a.shape[1] - 16, -1, -16):  # another order, in float32
                c += a[:, k : k + 16] @ b[k : k + 16, :]
            return [c] * n

        return run

    doc = rg.known_answer([0, 1], blas, seed=9, size=256, iterations=2)
    assert doc["input"] == "gemm-int-256x256-seed-9-x2"
    assert doc["gpus"][0]["checksum"] == doc["gpus"][1]["checksum"] == doc["reference"]
    assert (
        rg.known_answer([0], blocked, seed=9, size=256, iterations=2)["gpus"][0]["checksum"]
        == doc["reference"]
    )
    # one flipped bit in one iteration changes the checksum
    a, b = rg.inputs(9, 256)
    c = a @ b
    c2 = c.copy()
    c2.view(np.uint32)[5, 7] ^= 1
    assert rg.digest([c, c2]) != rg.digest([c, c]) == doc["reference"]
    parse_replay_json(json.dumps(doc), [0, 1])


def test_gemm_hook_without_a_gpu_library(capsys: pytest.CaptureFixture[str]) -> None:
    from sightglass.agent import replay_gemm as rg

    try:
        rg.backend()
    except RuntimeError:
        assert rg.main(["--gpus", "0", "--size", "64"]) == 2
        assert "no GPU array library: install torch" in capsys.readouterr().err
    else:
        pytest.skip("a GPU array library is installed here")
    assert rg.main(["--gpus", "0,x"]) == 2

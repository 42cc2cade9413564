"""Deterministic replay: run the user's replay hook on some GPUs and read the per-GPU checksums it prints.

Silent data corruption is a GPU that computes a wrong result without reporting an error. The way the
field finds it (Gemini, Llama 3 reports; Meta's and Google's SDC papers) is to run the same computation
on the same inputs on several GPUs and compare: a healthy GPU of the same model gives the same bits,
the corrupting one differs. The agent does not know the training framework, so the replay is a hook
the operator configures (``[agent.diagnostics] replay_command``): the framework's "re-run step N on
these GPUs with the same inputs" entry point, or the shipped known-answer test
(``python -m sightglass.agent.replay_gemm``: a fixed-seed GEMM per GPU with torch or cupy).

The hook gets the task on its command line and in its environment (never through a shell):

- ``{gpus}`` in an argument is replaced by the comma-separated GPU indices, ``{task}`` by the task
  id, ``{seed}`` by the task's seed; ``SIGHTGLASS_REPLAY_GPUS``, ``SIGHTGLASS_REPLAY_TASK``,
  ``SIGHTGLASS_REPLAY_SEED`` and ``SIGHTGLASS_REPLAY_STEP`` (the incident's loss-spike time, Unix ms)
  carry the same.

It prints one JSON object on stdout::

    {"input": "gemm-4096-int-seed-1234",          # what was computed (the same on every GPU)
     "reference": "9f3a...",                       # optional: the known answer
     "gpus": [{"index": 0, "checksum": "9f3a...", "uuid": "GPU-...", "seconds": 1.2}, ...]}

``parse_replay_json`` reads it and raises :class:`ReplayError` naming the place for anything else
(not JSON, a missing or unasked GPU, a checksum that is not 8 to 128 hexadecimal digits, a document
over ``MAX_OUTPUT_BYTES``). The server compares the checksums of every GPU of the job that computed
the same ``input`` (``sightglass.alerting.diagnostics``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from typing import Any

from .tool_json import gpu_indices, load_tool_json, run_tool, stderr_tail

MAX_OUTPUT_BYTES = 1024 * 1024
MAX_GPUS = 64
_HEX = re.compile(r"^[0-9a-fA-F]{8,128}$")
_INPUT = re.compile(r"^[\x20-\x7e]{1,200}$")
PLACEHOLDERS = ("{gpus}", "{task}", "{seed}")


class ReplayError(ValueError):
    """A replay hook output that cannot be read, or a task that cannot be run; the message says why."""


@dataclass(slots=True)
class ReplayGpu:
    index: int
    checksum: str
    uuid: str = ""
    seconds: float | None = None


@dataclass(slots=True)
class ReplayReport:
    input: str
    gpus: dict[int, ReplayGpu]
    reference: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "reference": self.reference,
                "gpus": {str(i): {"checksum": g.checksum, "uuid": g.uuid, "seconds": g.seconds}
                         for i, g in sorted(self.gpus.items())}}  # fmt: skip


def _checksum(v: Any, where: str) -> str:
    if not isinstance(v, str) or not _HEX.match(v):
        raise ReplayError(f"{where} must be a string of 8 to 128 hexadecimal digits, got {str(v)[:40]!r}")
    return v.lower()


def parse_replay_json(text: str | bytes, expected: list[int] | None = None) -> ReplayReport:
    """Read a replay hook's output; ``expected``: the GPU indices asked for (each must be there, and no other)."""
    doc = load_tool_json(text, limit=MAX_OUTPUT_BYTES, error=ReplayError, what="a replay result",
                         empty="the replay hook printed nothing (expected a JSON object with per-GPU checksums)")
    if not isinstance(doc, dict):
        raise ReplayError(f"the output must be a JSON object, got {type(doc).__name__}")
    unknown = set(doc) - {"input", "reference", "gpus", "version", "backend", "device"}
    if unknown:
        raise ReplayError(f"unknown field(s) {', '.join(sorted(unknown))} (expected input, reference, gpus)")
    inp = doc.get("input")
    if not isinstance(inp, str) or not _INPUT.match(inp):
        raise ReplayError('"input" must name what was computed: 1 to 200 printable ASCII characters')
    ref = doc.get("reference")
    ref = None if ref is None else _checksum(ref, '"reference"')
    rows = doc.get("gpus")
    if not isinstance(rows, list) or not rows:
        raise ReplayError('"gpus" must be a non-empty list of {"index", "checksum"} objects')
    if len(rows) > MAX_GPUS:
        raise ReplayError(f'"gpus" has {len(rows)} entries, over {MAX_GPUS}')
    gpus: dict[int, ReplayGpu] = {}
    for i, r in enumerate(rows):
        where = f"gpus[{i}]"
        if not isinstance(r, dict):
            raise ReplayError(f"{where} must be an object")
        idx = r.get("index")
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < MAX_GPUS:
            raise ReplayError(f"{where}.index must be a GPU index from 0 to {MAX_GPUS - 1}, got {idx!r}")
        if idx in gpus:
            raise ReplayError(f"{where}: GPU {idx} is listed twice")
        uuid = r.get("uuid", "")
        if not isinstance(uuid, str) or len(uuid) > 128:
            raise ReplayError(f"{where}.uuid must be a string")
        sec = r.get("seconds")
        if sec is not None and (isinstance(sec, bool) or not isinstance(sec, (int, float)) or sec < 0):
            raise ReplayError(f"{where}.seconds must be a non-negative number")
        gpus[idx] = ReplayGpu(idx, _checksum(r.get("checksum"), f"{where}.checksum"), uuid,
                              None if sec is None else float(sec))  # fmt: skip
    if expected is not None:
        missing = sorted(set(expected) - set(gpus))
        extra = sorted(set(gpus) - set(expected))
        if missing:
            raise ReplayError(f"GPU(s) {', '.join(map(str, missing))} asked for are missing from the output")
        if extra:
            raise ReplayError(f"GPU(s) {', '.join(map(str, extra))} were not asked for")
    return ReplayReport(inp, gpus, ref)


@dataclass(slots=True)
class ReplayRun:
    argv: list[str]
    exit_code: int | None
    output: str
    stderr: str
    started_ms: int
    finished_ms: int
    error: str = ""
    report: ReplayReport | None = None


class ReplayRunner:
    """Runs the configured replay hook for a task from the server (the command is the agent's own)."""

    def __init__(self, command: list[str], *, timeout_s: float = 600.0) -> None:
        self.command = list(command)
        self.timeout_s = timeout_s

    def check(self, gpus: Any, seed: Any) -> tuple[list[int], int]:
        if not self.command:
            raise ReplayError(
                "no replay_command is configured on this agent ([agent.diagnostics] replay_command)"
            )
        gs = gpu_indices(gpus, ReplayError, MAX_GPUS)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise ReplayError(f"seed {seed!r} is not an integer from 0 to 2^31-1")
        return gs, seed

    def argv(self, gpus: list[int], task: str, seed: int) -> list[str]:
        sub = {"{gpus}": ",".join(map(str, gpus)), "{task}": task, "{seed}": str(seed)}
        out = []
        for a in self.command:
            for k, v in sub.items():
                a = a.replace(k, v)
            out.append(a)
        return out

    def run(self, gpus: Any, *, task: str = "", seed: Any = 0, step_ms: Any = None) -> ReplayRun:
        gs, sd = self.check(gpus, seed)
        safe_task = re.sub(r"[^A-Za-z0-9_.-]", "_", str(task))[:64]
        argv = self.argv(gs, safe_task, sd)
        t0 = int(time.time() * 1000)
        exe = shutil.which(argv[0]) if os.sep not in argv[0] else argv[0]
        if exe is None:
            return ReplayRun(argv, None, "", "", t0, t0, f"replay hook {argv[0]!r} not found")
        env = {**os.environ, "SIGHTGLASS_REPLAY_GPUS": ",".join(map(str, gs)), "SIGHTGLASS_REPLAY_TASK": safe_task,
               "SIGHTGLASS_REPLAY_SEED": str(sd),
               "SIGHTGLASS_REPLAY_STEP": str(step_ms) if isinstance(step_ms, int) and not isinstance(step_ms, bool) else ""}  # fmt: skip
        p, why, now = run_tool(exe, argv[1:], timeout_s=self.timeout_s, what="replay hook", env=env)
        if p is None:
            return ReplayRun(argv, None, "", "", t0, now, why)
        err, tail = stderr_tail(p)
        if len(p.stdout) > MAX_OUTPUT_BYTES:
            return ReplayRun(argv, p.returncode, "", err, t0, now,
                             f"the replay hook printed {len(p.stdout)} bytes, over the {MAX_OUTPUT_BYTES}-byte limit{tail}")  # fmt: skip
        out = p.stdout.decode("utf-8", errors="replace")
        run = ReplayRun(argv, p.returncode, out, err, t0, now)
        try:
            run.report = parse_replay_json(p.stdout, gs)
        except ReplayError as e:
            run.error = f"{e}{tail}"
            return run
        if p.returncode != 0:
            run.error = f"the replay hook exited {p.returncode} although it printed checksums{tail}"
        return run

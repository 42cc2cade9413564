"""NVIDIA DCGM diagnostics: run ``dcgmi diag -r LEVEL -j -i GPUS`` and read its JSON.

Two JSON layouts are in the field, and both are read:

- DCGM 2.x/3.x: ``{"DCGM GPU Diagnostic": {"test_categories": [{"category", "tests": [{"name",
  "results": [{"gpu_ids": "0,1", "status": "PASS", "warnings": [...], "info": [...]}]}]}]}}``;
- DCGM 4.x: ``{"DCGM Diagnostic": {"test_categories": [... "results": [{"entity_group": "GPU",
  "entity_id": 0, "status": "Fail", "warnings": [{"warning", "error_id", "error_severity",
  "error_category"}]}], "test_summary": {...}]}, "entity_groups": [...], "metadata": {"version"}}``
  (recorded outputs in tests/agent/fixtures/dcgm_diag, with their sources).

``parse_diag_json`` turns either into a :class:`DiagReport`: per GPU index, per test, a status
(``pass`` / ``fail`` / ``warn`` / ``skip``) and DCGM's error text and ids. Anything that is not such a
document (not JSON, truncated, too large or deep, a field of the wrong type, a ``runtime_error``)
raises :class:`DiagError` naming the place.

``DiagnosticRunner`` runs dcgmi itself: the server only ever sends a level and GPU indices, checked
against the agent's allow-list (``[agent.diagnostics] levels``); the command line is built here,
never taken from the server.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

from .tool_json import gpu_indices, load_tool_json, run_tool, stderr_tail

MAX_OUTPUT_BYTES = 8 * 1024 * 1024
MAX_GPUS = 64
STATUSES = ("pass", "fail", "warn", "skip")
# DCGM's own encoding of a diagnostic result (dcgmDiagResult_t): the gauge's value
RESULT_VALUE = {"pass": 0, "skip": 1, "warn": 2, "fail": 3}
_STATUS = {
    "pass": "pass",
    "fail": "fail",
    "warn": "warn",
    "warning": "warn",
    "skip": "skip",
    "skipped": "skip",
    "not run": "skip",
    "notrun": "skip",
    "not_run": "skip",
}
# what a test exercises: the RCA turns a failure into a hypothesis with it
_COMPUTE = ("diagnostic", "sm_stress", "sm stress", "targeted_stress", "targeted stress", "targeted_power",
            "targeted power", "pulse", "eud", "cpu_eud", "nvbandwidth", "context_create", "stress")  # fmt: skip
_MEMORY = ("memory", "memtest", "page retirement", "row remap", "gpu memory")
_INTERCONNECT = ("pcie", "nvlink", "fabric")


class DiagError(ValueError):
    """A dcgmi output that cannot be read; the message says where and why."""


def classify_test(name: str) -> str:
    """``compute`` | ``memory`` | ``interconnect`` | ``software`` for a DCGM test/plugin name."""
    n = name.strip().lower()
    if any(k in n for k in _MEMORY) and "bandwidth" not in n:
        return "memory"
    if "memory_bandwidth" in n or "memory bandwidth" in n:
        return "memory"
    if any(k in n for k in _INTERCONNECT):
        return "interconnect"
    if any(k in n for k in _COMPUTE):
        return "compute"
    return "software"


@dataclass(slots=True)
class DiagTestResult:
    test: str
    category: str
    status: str
    errors: list[str] = field(default_factory=list)
    error_ids: list[int] = field(default_factory=list)
    info: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return classify_test(self.test)

    def to_dict(self) -> dict[str, Any]:
        return {"test": self.test, "category": self.category, "kind": self.kind, "status": self.status,
                "errors": self.errors, "error_ids": self.error_ids, "info": self.info}  # fmt: skip


@dataclass(slots=True)
class DiagReport:
    version: str
    driver: str
    gpus: dict[int, dict[str, DiagTestResult]]  # GPU index -> test name -> result

    def status_of(self, gpu: int) -> str:
        """The GPU's overall result: fail if any test failed, else warn, else pass (skip if nothing ran)."""
        sts = {r.status for r in self.gpus.get(gpu, {}).values()}
        for s in ("fail", "warn", "pass"):
            if s in sts:
                return s
        return "skip"

    def failures(self, gpu: int) -> list[DiagTestResult]:
        return [r for r in self.gpus.get(gpu, {}).values() if r.status == "fail"]


def _where_type(v: Any, where: str, typ: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(v, typ) or (isinstance(v, bool) and typ is not bool):
        raise DiagError(f"{where} must be {what}, got {type(v).__name__}")
    return v


def _gpu_ids(res: dict[str, Any], where: str) -> list[int]:
    """The GPUs a result is about: 4.x ``entity_group``/``entity_id``, 3.x ``gpu_ids``/``gpu_id``."""
    if "entity_id" in res:
        group = res.get("entity_group", "GPU")
        if group != "GPU":
            return []  # a CPU/NVSwitch entity: not a GPU's result
        eid = res["entity_id"]
        if isinstance(eid, bool) or not isinstance(eid, int) or not 0 <= eid < 4096:
            raise DiagError(f"{where}.entity_id must be a GPU index (a small non-negative integer)")
        return [eid]
    raw = res.get("gpu_ids", res.get("gpu_id"))
    if raw is None:
        return []  # a result with no GPU (a test that applies to the whole node)
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or len(raw) > 1024:
        raise DiagError(f"{where}.gpu_ids must be a comma-separated string of GPU indices")
    out = []
    for part in raw.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) >= 4096:
            raise DiagError(f"{where}.gpu_ids: {part!r} is not a GPU index")
        out.append(int(part))
    return out


def _messages(v: Any, where: str) -> tuple[list[str], list[int]]:
    """DCGM warnings: objects ``{"warning", "error_id", ...}`` (3.x/4.x) or bare strings."""
    if v is None:
        return [], []
    _where_type(v, where, list, "a list")
    texts, ids = [], []
    for i, w in enumerate(v[:64]):
        if isinstance(w, str):
            texts.append(w[:2000])
        elif isinstance(w, dict):
            text = w.get("warning", w.get("error", ""))
            if not isinstance(text, str):
                raise DiagError(f"{where}[{i}].warning must be a string")
            texts.append(text[:2000])
            eid = w.get("error_id")
            if isinstance(eid, int) and not isinstance(eid, bool):
                ids.append(eid)
        else:
            raise DiagError(f"{where}[{i}] must be a string or an object with a warning")
    return texts, ids


def parse_diag_json(text: str | bytes) -> DiagReport:
    """Read ``dcgmi diag -j`` output (DCGM 2.x-4.x); :class:`DiagError` on anything else."""
    doc = load_tool_json(text, limit=MAX_OUTPUT_BYTES, error=DiagError, what="a dcgmi document",
                         empty="dcgmi printed nothing (expected a JSON document)", hint_truncation=True)
    _where_type(doc, "the document", dict, "a JSON object")
    key = next((k for k in ("DCGM Diagnostic", "DCGM GPU Diagnostic") if k in doc), None)
    if key is None:
        raise DiagError(
            'no "DCGM Diagnostic" (4.x) or "DCGM GPU Diagnostic" (3.x) object: not dcgmi diag -j output'
        )
    body = _where_type(doc[key], f'"{key}"', dict, "an object")
    if body.get("runtime_error"):
        raise DiagError(f"dcgmi reported a runtime error: {str(body['runtime_error'])[:500]}")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else body
    version = str(meta.get("version", body.get("version", "")))[:64]
    driver = str(meta.get("Driver Version Detected", body.get("Driver Version Detected", "")))[:64]
    cats = _where_type(body.get("test_categories"), f'"{key}".test_categories', list, "a list")
    gpus: dict[int, dict[str, DiagTestResult]] = {}
    for ci, cat in enumerate(cats):
        cw = f"test_categories[{ci}]"
        _where_type(cat, cw, dict, "an object")
        category = _where_type(cat.get("category", ""), f"{cw}.category", str, "a string")[:128]
        tests = _where_type(cat.get("tests"), f"{cw}.tests", list, "a list")
        for ti, test in enumerate(tests):
            tw = f"{cw}.tests[{ti}]"
            _where_type(test, tw, dict, "an object")
            name = _where_type(test.get("name"), f"{tw}.name", str, "a string").strip()[:128]
            if not name:
                raise DiagError(f"{tw}.name is empty")
            results = _where_type(test.get("results", []), f"{tw}.results", list, "a list")
            for ri, res in enumerate(results):
                rw = f"{tw}.results[{ri}]"
                _where_type(res, rw, dict, "an object")
                raw = _where_type(res.get("status"), f"{rw}.status", str, "a string")
                status = _STATUS.get(raw.strip().lower())
                if status is None:
                    raise DiagError(
                        f"{rw}.status: unknown status {raw[:40]!r} (expected Pass, Fail, Warn or Skip)"
                    )
                errors, ids = _messages(res.get("warnings"), f"{rw}.warnings")
                e2, i2 = _messages(res.get("errors"), f"{rw}.errors")
                info_raw = res.get("info") or []
                info = [str(x)[:500] for x in info_raw[:16]] if isinstance(info_raw, list) else []
                for g in _gpu_ids(res, rw):
                    if len(gpus) >= MAX_GPUS and g not in gpus:
                        raise DiagError(f"{rw}: more than {MAX_GPUS} GPUs in one output")
                    prev = gpus.setdefault(g, {}).get(name)
                    if prev is not None and _rank(prev.status) >= _rank(status):
                        continue  # the same test twice (iterations): keep the worst
                    gpus[g][name] = DiagTestResult(name, category, status, errors + e2, ids + i2, info)
    if not gpus:
        raise DiagError("the output has no per-GPU result (no test ran on a GPU)")
    return DiagReport(version, driver, gpus)


def _rank(status: str) -> int:
    return {"skip": 0, "pass": 1, "warn": 2, "fail": 3}[status]


# ---------------------------------------------------------------------- running dcgmi
@dataclass(slots=True)
class DiagRun:
    """What one dcgmi run gave: its output (for the server to parse again), exit code and timing."""

    argv: list[str]
    exit_code: int | None
    output: str
    stderr: str
    started_ms: int
    finished_ms: int
    error: str = ""  # why there is no usable output (timeout, not installed, unreadable)
    report: DiagReport | None = None


class DiagnosticRunner:
    """Runs ``dcgmi diag`` for a task from the server, within the agent's allow-list."""

    def __init__(
        self, dcgmi: str = "dcgmi", *, levels: tuple[int, ...] = (1, 2, 3), timeout_s: float = 2700.0
    ) -> None:
        self.dcgmi = dcgmi
        self.levels = tuple(levels)
        self.timeout_s = timeout_s

    def check(self, level: Any, gpus: Any) -> tuple[int, list[int]]:
        """The level and GPU indices of a task, refused unless allowed (never a command from the server)."""
        if isinstance(level, bool) or not isinstance(level, int) or level not in self.levels:
            raise DiagError(
                f"diagnostic level {level!r} is not allowed on this agent (allowed: {list(self.levels)})"
            )
        return level, gpu_indices(gpus, DiagError, MAX_GPUS)

    def argv(self, level: int, gpus: list[int]) -> list[str]:
        return [self.dcgmi, "diag", "-r", str(level), "-j", "-i", ",".join(str(g) for g in gpus)]

    def run(self, level: Any, gpus: Any) -> DiagRun:
        lv, gs = self.check(level, gpus)
        argv = self.argv(lv, gs)
        t0 = int(time.time() * 1000)
        exe = shutil.which(self.dcgmi) if os.sep not in self.dcgmi else self.dcgmi
        if exe is None:
            return DiagRun(
                argv,
                None,
                "",
                "",
                t0,
                t0,
                f"{self.dcgmi} not found (install DCGM or set [agent.diagnostics] dcgmi)",
            )
        p, why, now = run_tool(exe, argv[1:], timeout_s=self.timeout_s, what="dcgmi diag")
        if p is None:
            return DiagRun(argv, None, "", "", t0, now, why)
        out = p.stdout[:MAX_OUTPUT_BYTES].decode("utf-8", errors="replace")
        err, tail = stderr_tail(p)
        run = DiagRun(argv, p.returncode, out, err, t0, now)
        # dcgmi exits non-zero when a test fails: the JSON is what counts
        try:
            run.report = parse_diag_json(p.stdout[: MAX_OUTPUT_BYTES + 1])
        except DiagError as e:
            run.error = f"{e}{tail}"
        return run

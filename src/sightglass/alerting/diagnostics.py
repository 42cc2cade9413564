"""Incident-triggered GPU diagnostics: ask the agents to replay and run DCGM diagnostics, feed the verdict back.

Silent data corruption has no hardware signal: the only symptom is the job's loss, so the RCA can
name the job but not the GPU. What an operator does next is replay the computation on the job's GPUs
and compare results (the way Gemini and Llama 3 found theirs), run diagnostics (``dcgmi diag -r 3``,
EUD/pulse/memtest), and exclude the GPU that differs or fails. This module automates that:

1. When an incident opens (or its RCA changes) and its top hypothesis is in ``hypotheses`` (default
   ``silent_data_corruption``), or a GPU-hardware hypothesis in ``hardware_hypotheses`` scored below
   ``hardware_below_score``, tasks are queued per node for the GPUs the symptom's job ran on (or the
   suspected GPU): a ``replay`` task (``replay = true``; seconds: the agent's replay hook runs the same
   inputs on each GPU and prints per-GPU checksums) listed before a ``dcgm_diag`` task (``dcgm =
   true``; ``dcgmi diag -r level``, minutes), so the replay's answer comes first and DCGM confirms or
   adds to it. Once per incident per node; a node is diagnosed at most once per ``node_interval`` and
   the fleet at most ``max_tasks_per_hour`` node diagnoses an hour (a node's replay and DCGM run of
   one round count once).
2. The node's agent pulls its tasks (``GET /api/v1/agent/tasks?node=``), runs the hook or dcgmi (its
   own configuration and allow-list decide) and posts the raw output back
   (``POST /api/v1/agent/tasks/{id}/result``).
3. A DCGM result is parsed (``sightglass.agent.dcgm_diag``), stored as one ``gpu.diagnostic`` event
   per GPU and the gauge ``sightglass_gpu_diagnostic_result{Hostname,gpu,UUID,test}`` (DCGM's
   encoding: 0 pass, 1 skip, 2 warn, 3 fail). Replay checksums (``sightglass.agent.replay``) wait until
   every replay task of the round has answered (or failed, or expired); then the checksums of all the
   job's GPUs that computed the same ``input`` are compared: a GPU that differs from the hook's known
   answer (``reference``), or without one from a strict majority of at least 3 GPUs, is a
   ``mismatch``; the others ``match``; no majority is ``inconclusive`` (the hook is not
   deterministic, or 2 GPUs disagree). Each compared GPU gets a ``gpu.replay`` event and the gauge
   ``sightglass_gpu_replay_mismatch{Hostname,gpu,UUID}`` (1 mismatch, 0 match). Either is written on
   the incident's timeline; the incident's RCA is run again with the evidence
   (``sightglass.rca.diagnostics``), its cause moves to a GPU that differed or failed, and the
   changed incident is notified again.

Tasks live on their incident (``Incident.diagnostics``), so they survive a restart with it.
"""

from __future__ import annotations

import logging
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sightglass.config import parse_duration_ms

log = logging.getLogger("sightglass.alerting")

RESULT_METRIC = "sightglass_gpu_diagnostic_result"
EVENT_KIND = "gpu.diagnostic"
REPLAY_METRIC = "sightglass_gpu_replay_mismatch"
REPLAY_EVENT_KIND = "gpu.replay"
KINDS = ("replay", "dcgm_diag")
TASK_STATES = ("queued", "dispatched", "received", "done", "failed", "expired")
MAX_RESULT_BYTES = 9 * 1024 * 1024
GPU_HARDWARE = ("hbm_ecc", "xid79_fell_off_bus", "nvlink_degraded", "gpu_thermal", "straggler_rank")


class DiagnosticsConfig(BaseModel):
    """``[alerting.diagnostics]``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    hypotheses: list[str] = Field(default_factory=lambda: ["silent_data_corruption"])
    """Top-cause fault classes that ask for diagnostics on the symptom's job's GPUs."""
    hardware_hypotheses: list[str] = Field(default_factory=list)
    """GPU-hardware fault classes (e.g. hbm_ecc) diagnosed when the RCA is unsure of them."""
    hardware_below_score: float = Field(default=0.5, ge=0)
    level: int = Field(default=3, ge=1, le=4)
    """dcgmi diag run level: 1 seconds, 2 about 2 min, 3 about 15 min, 4 longer (DCGM's docs)."""
    max_nodes: int = Field(default=32, ge=1, le=1024)
    """Nodes diagnosed for one incident at most (the rest are named on the timeline)."""
    node_interval: str = "1h"
    max_tasks_per_hour: int = Field(default=64, ge=1)
    task_timeout: str = "2h"
    """A task without a result after this is given up (no agent on the node, or it died)."""
    replay: bool = True
    """Queue a deterministic replay (the agents' ``replay_command``) first: seconds, not DCGM's minutes."""
    dcgm: bool = True
    """Queue ``dcgmi diag -r level`` too (after the replay on the same node)."""
    runs: int = Field(default=2, ge=1, le=5)
    """Rounds per incident: when every GPU passed and the hypothesis still stands, run again (SDC
    defects escape single test runs), up to this many rounds."""

    @model_validator(mode="after")
    def _some_method(self) -> DiagnosticsConfig:
        if self.enabled and not (self.replay or self.dcgm):
            raise ValueError("replay and dcgm are both off: switch one on, or set enabled = false")
        return self

    @field_validator("node_interval", "task_timeout")
    @classmethod
    def _duration(cls, v: str) -> str:
        if parse_duration_ms(v) <= 0:
            raise ValueError("must be a positive duration")
        return v

    @field_validator("hypotheses", "hardware_hypotheses")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for n in v:
            if not isinstance(n, str) or not n or len(n) > 64:
                raise ValueError(f"fault class names must be non-empty strings, got {n!r}")
        return v


class ResultError(ValueError):
    """A result document that cannot be taken (the message names the field); ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _top(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if not doc or doc.get("error"):
        return None
    causes = doc.get("causes") or []
    return causes[0] if causes else None


class DiagnosticsManager:
    """The task queue, the policy, and what a result does to its incident."""

    def __init__(
        self,
        cfg: DiagnosticsConfig,
        store: Any,
        *,
        topology: Callable[[], Any],
        rerun: Callable[[str, int, int], dict[str, Any] | None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.topology = topology
        self.rerun = rerun
        self.lock = threading.RLock()
        self.tasks: dict[str, dict[str, Any]] = {}
        self.inbox: list[tuple[str, dict[str, Any]]] = []
        self.node_last: dict[str, int] = {}
        self.agents: list[
            Any
        ] = []  # simulated agents (sightglass.simulate.engine.SimulatedDiagAgent), ticked each round
        self.node_interval_ms = parse_duration_ms(cfg.node_interval)
        self.timeout_ms = parse_duration_ms(cfg.task_timeout)

    # ------------------------------------------------------------------ persistence
    def load(self, incidents: Any) -> None:
        """Tasks of the incidents the catalog holds (after a restart or a takeover)."""
        with self.lock:
            for inc in incidents.list_incidents():
                for t in (inc.diagnostics or {}).get("tasks", []):
                    self.tasks[t["id"]] = t
                    self.node_last[t["node"]] = max(self.node_last.get(t["node"], 0), int(t["requested_ms"]))

    # ------------------------------------------------------------------ the agent's side
    def dispatch(self, node: str, at_ms: int) -> list[dict[str, Any]]:
        """The node's queued tasks (``GET /api/v1/agent/tasks``); they become ``dispatched``."""
        out = []
        with self.lock:
            for t in self.tasks.values():
                if t["node"] == node and t["state"] in ("queued", "dispatched"):
                    if t["state"] == "queued":
                        t["state"], t["dispatched_ms"] = "dispatched", at_ms
                    out.append({"id": t["id"], "kind": t["kind"], "level": t["level"], "gpus":
                                [{"index": g["index"], "uuid": g["uuid"]} for g in t["gpus"]],
                                "incident": t["incident"], "requested_ms": t["requested_ms"],
                                **({"seed": t["seed"], "step_ms": t.get("step_ms")} if t["kind"] == "replay" else {})})  # fmt: skip
        return out

    def submit_result(self, task_id: str, doc: Any, at_ms: int) -> dict[str, Any]:
        """Take an agent's result (validated here; the dcgmi JSON or the replay checksums are parsed too,
        so a bad one is refused with the parser's reason). Applied to the incident at the next alerting
        round."""
        from sightglass.agent.dcgm_diag import DiagError, parse_diag_json
        from sightglass.agent.replay import ReplayError, parse_replay_json

        with self.lock:
            t = self.tasks.get(task_id)
            if t is None:
                raise ResultError(f"no diagnostic task {task_id!r}", 404)
            if t["state"] in ("received", "done", "failed", "expired"):
                raise ResultError(f"task {task_id} already has its result ({t['state']})", 409)
        if not isinstance(doc, dict):
            raise ResultError("the result must be a JSON object")
        unknown = set(doc) - {"node", "exit_code", "output", "error", "argv", "started_ms", "finished_ms"}
        if unknown:
            raise ResultError(f"unknown field(s) {', '.join(sorted(unknown))}")
        if doc.get("node") != t["node"]:
            raise ResultError(f"task {task_id} is for node {t['node']!r}, not {doc.get('node')!r}", 409)
        out, err = doc.get("output", ""), doc.get("error", "")
        if not isinstance(out, str) or not isinstance(err, str):
            raise ResultError("output and error must be strings")
        if len(out) > MAX_RESULT_BYTES:
            raise ResultError(f"output is over {MAX_RESULT_BYTES} bytes", 413)
        code = doc.get("exit_code")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise ResultError("exit_code must be an integer or null")
        fin = doc.get("finished_ms", at_ms)
        if isinstance(fin, bool) or not isinstance(fin, int) or fin < 0:
            raise ResultError("finished_ms must be Unix milliseconds")
        parsed: Any = None
        if out.strip():
            try:
                if t["kind"] == "replay":
                    parsed = parse_replay_json(out, [int(g["index"]) for g in t["gpus"]])
                else:
                    parsed = parse_diag_json(out)
            except (DiagError, ReplayError) as e:
                err = f"{'replay' if t['kind'] == 'replay' else 'dcgmi'} output unreadable: {e}"
        elif not err:
            err = "the agent sent neither output nor an error"
        with self.lock:
            t["state"] = "received"
            self.inbox.append((task_id, {"report": parsed, "error": err[:2000], "exit_code": code,
                                         "finished_ms": fin, "received_ms": at_ms}))  # fmt: skip
        resp = {"task": task_id, "accepted": True, "parsed": parsed is not None, "error": err[:2000] or None}
        if parsed is None and out.strip():
            raise ResultError(f"task {task_id} marked failed: {err}", 422)
        return resp

    # ------------------------------------------------------------------ the policy
    def wants(self, inc: Any) -> tuple[str, list[str]] | None:
        """Why the incident asks for diagnostics, and on which GPU entities; None when it does not."""
        top = _top(inc.rca)
        if top is None or inc.state == "resolved":
            return None
        fault = str(top.get("fault") or "")
        ent = (top.get("entity") or {}).get("id") or ""
        topo = self.topology()
        if topo is None:
            return None
        at = int((inc.rca.get("symptom") or {}).get("at_ms") or inc.opened_ms)
        if fault in self.cfg.hypotheses:
            gpus: list[str] = []
            starts = [
                e for e in (inc.rca.get("symptom") or {}).get("entities", []) if str(e).startswith("job:")
            ]
            if ent.startswith("job:") and ent not in starts:
                starts.append(ent)
            for j in starts:
                gpus += [g for g in topo.depends_on(j, at, max_depth=2) if g.startswith("gpu:")]
            if ent.startswith("gpu:"):
                gpus.append(ent)
            return f"top hypothesis {fault} on {ent}", sorted(set(gpus))
        if fault in self.cfg.hardware_hypotheses and ent.startswith("gpu:"):
            score = float(top.get("score") or 0)
            if score < self.cfg.hardware_below_score:
                return f"{fault} on {ent} with a low score ({score:.2f})", [ent]
        return None

    def consider(self, inc: Any, at_ms: int, *, again: bool = False) -> bool:
        """Queue the incident's diagnostics if it wants them and has none yet (``again``: its next
        round); True when it changed."""
        if not self.cfg.enabled:
            return False
        diag = inc.diagnostics or {}
        if diag.get("requested") and not again:
            return False
        mine = {t["node"] for t in diag.get("tasks", [])} if again else set()
        run = int(diag.get("runs", 1)) + 1 if again else 1
        want = self.wants(inc)
        if want is None:
            return False
        why, gpu_ids = want
        topo = self.topology()
        by_node: dict[str, list[dict[str, Any]]] = {}
        for gid in gpu_ids:
            e = topo.entity(gid)
            if e is None:
                continue
            host, idx = e.labels.get("Hostname") or e.labels.get("hostname"), e.labels.get("gpu")
            if not host or idx is None or not str(idx).isdigit():
                continue
            by_node.setdefault(host, []).append(
                {"index": int(idx), "uuid": e.labels.get("UUID", ""), "entity": gid}
            )
        if not by_node:
            inc.diagnostics = {
                "requested": True,
                "why": why,
                "tasks": [],
                "note": "no GPU of the symptom is known",
            }
            inc.log(
                at_ms, "diagnostics_skipped", f"diagnostics wanted ({why}) but no GPU of the symptom is known"
            )
            return True
        tasks: list[dict[str, Any]] = []
        skipped: list[str] = []
        # a node diagnosis (its replay and DCGM tasks of one round) counts once against the fleet limit
        hour = {(t["incident"], t["node"], t.get("run", 1)) for t in self.tasks.values()
                if at_ms - int(t["requested_ms"]) < 3_600_000}  # fmt: skip
        kinds = [k for k, on in (("replay", self.cfg.replay), ("dcgm_diag", self.cfg.dcgm)) if on]
        seed = zlib.crc32(f"{inc.id}/{run}".encode()) & 0x7FFFFFFF  # the same inputs on every GPU of the round
        step_ms = (inc.rca.get("symptom") or {}).get("at_ms") if inc.rca else None
        n_nodes = 0
        for node in sorted(by_node)[: self.cfg.max_nodes]:
            last = self.node_last.get(node)
            if last is not None and at_ms - last < self.node_interval_ms and node not in mine:
                skipped.append(f"{node} (diagnosed {(at_ms - last) // 60_000} min ago)")
                continue
            if len(hour) + n_nodes >= self.cfg.max_tasks_per_hour:
                skipped.append(f"{node} (fleet limit of {self.cfg.max_tasks_per_hour} node diagnoses an hour)")
                continue
            n_nodes += 1
            for kind in kinds:
                t = {
                    "id": ("replay-" if kind == "replay" else "diag-") + uuid.uuid4().hex[:10],
                    "incident": inc.id,
                    "node": node,
                    "kind": kind,
                    "level": self.cfg.level if kind == "dcgm_diag" else None,
                    "gpus": sorted(by_node[node], key=lambda g: g["index"]),
                    "state": "queued",
                    "requested_ms": at_ms,
                    "dispatched_ms": None,
                    "finished_ms": None,
                    "error": "",
                    "results": {},
                    "run": run,
                }
                if kind == "replay":
                    t["seed"], t["step_ms"] = seed, int(step_ms) if isinstance(step_ms, (int, float)) else None
                tasks.append(t)
        skipped += [
            f"{n} (over max_nodes={self.cfg.max_nodes})" for n in sorted(by_node)[self.cfg.max_nodes :]
        ]
        with self.lock:
            for t in tasks:
                self.tasks[t["id"]] = t
                self.node_last[t["node"]] = at_ms
        per_node = {t["node"]: len(t["gpus"]) for t in tasks}
        n_gpus = sum(per_node.values())
        prev = list(diag.get("tasks", [])) if again else []
        inc.diagnostics = {"requested": True, "why": why, "requested_ms": at_ms, "tasks": prev + tasks, "runs": run}
        if tasks:
            nodes = ", ".join(f"{n} ({k})" for n, k in per_node.items())
            nth = f" (run {run} of {self.cfg.runs})" if self.cfg.runs > 1 else ""
            how = " then ".join(["replay"] * self.cfg.replay + [f"dcgmi diag -r {self.cfg.level}"] * self.cfg.dcgm)
            inc.log(at_ms, "diagnostics_requested",
                    f"diagnostics requested on {n_gpus} GPUs of {len(per_node)} node(s) ({how}){nth}: "
                    f"{nodes}; {why}", tasks=[t["id"] for t in tasks])  # fmt: skip
        if skipped:
            inc.log(at_ms, "diagnostics_skipped", "not diagnosed: " + "; ".join(skipped))
        return True

    # ------------------------------------------------------------------ one round
    def step(self, at_ms: int, incidents: Any, changed: list[Any]) -> list[Any]:
        """Tick simulated agents, queue what changed incidents want, expire, apply results; the
        incidents this changed (to save and notify)."""
        if not self.cfg.enabled or incidents is None:
            return []
        for a in self.agents:
            a.tick(self, at_ms)
        out: dict[str, Any] = {}
        for inc in changed:
            if self.consider(inc, at_ms):
                out[inc.id] = inc
        with self.lock:
            for t in self.tasks.values():
                if (
                    t["state"] in ("queued", "dispatched")
                    and at_ms - int(t["requested_ms"]) > self.timeout_ms
                ):
                    t["state"], t["error"] = (
                        "expired",
                        f"no result from {t['node']} within {self.cfg.task_timeout}",
                    )
                    inc = incidents.get(t["incident"])
                    if inc is not None:
                        inc.log(
                            at_ms,
                            "diagnostics_expired",
                            f"task {t['id']}: {t['error']} (is its agent running?)",
                        )
                        out[inc.id] = inc
            inbox, self.inbox = self.inbox, []
        touched: dict[str, Any] = {}
        until: dict[str, int] = {}
        evidence: set[str] = set()  # incidents with new evidence (a replay waiting for its peers is none yet)
        for tid, res in inbox:
            t = self.tasks[tid]
            inc = incidents.get(t["incident"])
            self._apply(t, res, inc)
            if inc is not None:
                touched[inc.id] = inc
                until[inc.id] = max(until.get(inc.id, at_ms), int(res["finished_ms"]))
                if t["kind"] != "replay":
                    evidence.add(inc.id)
        # replays of a round are compared once every one of them has answered, failed or expired
        for inc in list(touched.values()) + [incidents.get(i) for i in self._replay_pending()]:
            if inc is None:
                continue
            fin = self._compare_replays(inc, until.get(inc.id, at_ms))
            if fin is not None:
                touched[inc.id] = inc
                until[inc.id] = max(until.get(inc.id, at_ms), fin)
                evidence.add(inc.id)
        for inc in touched.values():
            # the results' own time: an agent's clock may run ahead of a data clock
            if inc.id in evidence:
                self._rerun_rca(inc, until[inc.id], incidents)
            out[inc.id] = inc
            self._maybe_again(inc, until[inc.id])
        for inc in out.values():
            incidents._save(inc)
        return list(out.values())

    def _maybe_again(self, inc: Any, at_ms: int) -> None:
        """Every GPU of the incident's last round passed and its hypothesis still stands: the next
        round (up to ``runs``). A round with a failing GPU, or one still running, ends here."""
        diag = inc.diagnostics or {}
        run = int(diag.get("runs", 1))
        tasks = [t for t in diag.get("tasks", []) if int(t.get("run", 1)) == run]
        if run >= self.cfg.runs or not tasks:
            return
        with self.lock:
            live = [self.tasks.get(t["id"], t) for t in tasks]
        if any(t["state"] not in ("done", "failed", "expired") for t in live):
            return
        if any(r.get("status") in ("fail", "mismatch") for t in live for r in t.get("results", {}).values()):
            return
        if any(t["kind"] == "replay" and not t.get("compared") for t in live if t["state"] == "done"):
            return  # the round's replays are not compared yet
        if not any(t["state"] == "done" for t in live) or self.wants(inc) is None:
            return
        inc.log(at_ms, "diagnostics_repeat", f"every diagnosed GPU passed run {run} and the hypothesis stands; "
                "SDC defects escape single test runs, so the GPUs are diagnosed again")  # fmt: skip
        self.consider(inc, at_ms, again=True)

    def _apply(self, t: dict[str, Any], res: dict[str, Any], inc: Any) -> None:
        from sightglass.agent.dcgm_diag import RESULT_VALUE
        from sightglass.model import Event, MetricMetadata, MetricType, SampleBatch

        fin = int(res["finished_ms"])
        t["finished_ms"] = fin
        rep = res["report"]
        if rep is None:
            t["state"], t["error"] = "failed", res["error"] or "no result"
            if inc is not None:
                inc.log(
                    fin, "diagnostics_failed", f"{t['node']}: task {t['id']} ({t['kind']}) gave no result: {t['error']}"
                )
            return
        t["state"] = "done"
        t["error"] = res["error"]
        if t["kind"] == "replay":
            t["replay"] = rep.to_dict()
            for g in t["gpus"]:
                t["results"][str(g["index"])] = {"status": "received", "checksum": rep.gpus[g["index"]].checksum}
            return
        events, rows = [], []
        failed_lines, passed = [], 0
        for g in t["gpus"]:
            tests = rep.gpus.get(g["index"])
            labels = {"Hostname": t["node"], "gpu": str(g["index"]), "UUID": g["uuid"]}
            if tests is None:
                t["results"][str(g["index"])] = {"status": "missing"}
                failed_lines.append(f"GPU {g['index']} on {t['node']} is missing from the dcgmi output")
                continue
            status = rep.status_of(g["index"])
            fails = rep.failures(g["index"])
            t["results"][str(g["index"])] = {"status": status, "failed": [f.test for f in fails]}
            attrs = {
                "result": status, "level": t["level"], "task": t["id"], "incident": t["incident"],
                "dcgm_version": rep.version, "failed": [f.test for f in fails],
                "failed_kinds": sorted({f.kind for f in fails}),
                "tests": {n: {"status": r.status, "kind": r.kind, "errors": r.errors[:3]} for n, r in tests.items()},
            }  # fmt: skip
            sev = "critical" if status == "fail" else "warning" if status == "warn" else "info"
            events.append(Event(fin, EVENT_KIND, labels, attrs, sev, "dcgmi"))
            for name, r in tests.items():
                rows.append((RESULT_METRIC, {**labels, "test": name}, fin, float(RESULT_VALUE[r.status])))
            if fails:
                f = fails[0]
                more = f" (+{len(fails) - 1} more)" if len(fails) > 1 else ""
                err = f": {f.errors[0][:200]}" if f.errors else ""
                failed_lines.append(f"GPU {g['index']} on {t['node']} failed: {f.test}{err}{more}")
            else:
                passed += 1
        try:
            if events:
                self.store.append_events(events)
            if rows:
                meta = {
                    RESULT_METRIC: MetricMetadata(
                        RESULT_METRIC,
                        MetricType.GAUGE,
                        "Result of the last DCGM "
                        "diagnostic test on the GPU: 0 pass, 1 skip, 2 warn, 3 fail "
                        "(dcgmDiagResult_t)",
                    )
                }
                self.store.append(SampleBatch.from_rows(rows, meta))
        except Exception as e:  # the verdict is on the timeline even when the store refuses it
            log.warning("could not store diagnostic results of %s: %s", t["id"], e)
            t["error"] = (t["error"] + f"; not stored: {e}").strip("; ")
        if inc is not None:
            for line in failed_lines:
                inc.log(fin, "diagnostic_failed", line, task=t["id"])
            if passed:
                inc.log(fin, "diagnostic_passed",
                        f"{t['node']}: {passed} of {len(t['gpus'])} GPU(s) passed dcgmi diag -r {t['level']}", task=t["id"])  # fmt: skip

    def _replay_pending(self) -> set[str]:
        """Incidents with replay tasks not compared yet (the last may have expired, with no result to apply)."""
        with self.lock:
            return {t["incident"] for t in self.tasks.values() if t["kind"] == "replay" and not t.get("compared")
                    and t["state"] in ("done", "failed", "expired")}  # fmt: skip

    def _compare_replays(self, inc: Any, at_ms: int) -> int | None:
        """Compare the checksums of the incident's current round once all its replays are in; the
        results' time when GPUs were compared (the RCA has new evidence), else None."""
        from sightglass.model import Event, MetricMetadata, MetricType, SampleBatch

        diag = inc.diagnostics or {}
        run = int(diag.get("runs", 1))
        with self.lock:
            mine = [self.tasks.get(t["id"], t) for t in diag.get("tasks", []) if t.get("kind") == "replay"]
            for t in mine:
                if int(t.get("run", 1)) != run and t["state"] in ("done", "failed", "expired"):
                    t["compared"] = t.get("compared") or "superseded"  # a round that ended without its replays
            live = [t for t in mine if int(t.get("run", 1)) == run]
            if not live or all(t.get("compared") for t in live):
                return None
            if any(t["state"] in ("queued", "dispatched", "received") for t in live):
                return None
            for t in live:
                t["compared"] = True
        done = [t for t in live if t["state"] == "done" and t.get("replay")]
        if not done:
            inc.log(at_ms, "replay_inconclusive", f"no replay of run {run} gave checksums (see the failed tasks)")
            return None
        fin = max(int(t["finished_ms"] or at_ms) for t in done)
        groups: dict[str, list[tuple[dict[str, Any], dict[str, Any], str]]] = {}
        for t in done:
            rep = t["replay"]
            for g in t["gpus"]:
                got = rep["gpus"].get(str(g["index"]))
                if got is not None:
                    groups.setdefault(str(rep["input"]), []).append((t, g, str(got["checksum"])))
        events, rows, lines = [], [], []
        n_cmp = 0
        for inp, members in sorted(groups.items()):
            refs = {str(t["replay"].get("reference")) for t, _, _ in members if t["replay"].get("reference")}
            counts = Counter(c for _, _, c in members)
            top, n_top = counts.most_common(1)[0]
            if len(refs) > 1:
                lines.append(("replay_inconclusive", f"replay of {inp}: the hooks gave {len(refs)} different known answers"))
                continue
            if refs:
                expected, against = next(iter(refs)), "the known answer"
            elif len(members) >= 3 and 2 * n_top > len(members):
                expected, against = top, "the majority"
            else:
                why = (f"{len(members)} GPU(s) cannot outvote each other" if len(members) < 3
                       else f"no checksum is shared by more than half of {len(members)} GPUs (is the hook deterministic?)")  # fmt: skip
                lines.append(("replay_inconclusive", f"replay of {inp} inconclusive: {why}"))
                for t, g, _ in members:
                    t["results"][str(g["index"])]["status"] = "inconclusive"
                continue
            agree = sum(1 for _, _, c in members if c == expected)
            bad = [(t, g, c) for t, g, c in members if c != expected]
            for t, g, c in members:
                ok = c == expected
                labels = {"Hostname": t["node"], "gpu": str(g["index"]), "UUID": g["uuid"]}
                t["results"][str(g["index"])]["status"] = "match" if ok else "mismatch"
                attrs = {"result": "match" if ok else "mismatch", "input": inp, "checksum": c, "expected": expected,
                         "against": against, "agreeing": agree, "compared": len(members), "task": t["id"],
                         "incident": t["incident"], "seed": t.get("seed")}  # fmt: skip
                ts = int(t["finished_ms"] or fin)
                events.append(Event(ts, REPLAY_EVENT_KIND, labels, attrs, "info" if ok else "critical", "replay"))
                rows.append((REPLAY_METRIC, labels, ts, 0.0 if ok else 1.0))
            n_cmp += len(members)
            for t, g, c in bad:
                lines.append(("replay_mismatch", f"GPU {g['index']} on {t['node']}: replay checksum {c[:12]} differs from "
                              f"{against} {expected[:12]} ({agree} of {len(members)} GPUs agree; input {inp})"))  # fmt: skip
            nodes = len({t["node"] for t, _, c in members if c == expected})
            lines.append(("replay_matched", f"replay of {inp}: {agree} of {len(members)} GPU(s) on {nodes} node(s) "
                          f"computed {against} ({expected[:12]})"))  # fmt: skip
        try:
            if events:
                self.store.append_events(events)
            if rows:
                meta = {REPLAY_METRIC: MetricMetadata(REPLAY_METRIC, MetricType.GAUGE,
                        "Whether the GPU's checksum in the last deterministic replay differed from the known answer "
                        "or the majority of its job's GPUs on the same inputs: 1 mismatch, 0 match")}  # fmt: skip
                self.store.append(SampleBatch.from_rows(rows, meta))
        except Exception as e:  # the verdict is on the timeline even when the store refuses it
            log.warning("could not store replay results of %s: %s", inc.id, e)
            lines.append(("replay_not_stored", f"replay results not stored: {e}"))
        for ev, line in lines:
            inc.log(fin, ev, line)
        return fin if n_cmp else None

    def _rerun_rca(self, inc: Any, at_ms: int, incidents: Any) -> None:
        if self.rerun is None or not inc.rca or inc.rca.get("error"):
            return
        sym = inc.rca.get("symptom") or {}
        if not sym.get("query") or sym.get("at_ms") is None:
            return
        try:
            doc = self.rerun(str(sym["query"]), int(sym["at_ms"]), at_ms)
        except Exception as e:  # the RCA failing keeps the previous answer
            log.warning("rca re-run for %s failed: %s", inc.id, e)
            inc.log(at_ms, "rca_failed", f"re-run with the diagnostics failed: {type(e).__name__}: {e}")
            return
        if doc is not None:
            incidents.update_rca(inc, doc, at_ms, "with the diagnostics' results")

    # ------------------------------------------------------------------ the API
    def list_tasks(self, *, incident: str | None = None, node: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            rows = [dict(t) for t in self.tasks.values()
                    if (incident is None or t["incident"] == incident) and (node is None or t["node"] == node)]  # fmt: skip
        return sorted(rows, key=lambda t: (t["requested_ms"], t["node"]))

    def get_task(self, task_id: str) -> dict[str, Any] | None:
        with self.lock:
            t = self.tasks.get(task_id)
            return dict(t) if t is not None else None

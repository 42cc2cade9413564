"""Diagnostic tasks from the server: pull, run within the allow-list, report back.

The server queues diagnostics when an incident calls for them (``sightglass.alerting.diagnostics``).
The agent pulls its node's tasks::

    GET  /api/v1/agent/tasks?node=HOST      -> {"tasks": [{"id", "kind": "dcgm_diag" | "replay", "level", "seed",
                                                       "step_ms", "gpus": [{"index", "uuid"}]}]}
    POST /api/v1/agent/tasks/{id}/result    {"node", "exit_code", "output", "error", "argv", "started_ms", "finished_ms"}

A task carries only a kind, a level (dcgm_diag) or a seed (replay) and GPU indices: the agent builds
the command itself (``DiagnosticRunner``; ``ReplayRunner`` with the operator's ``replay_command``) and
refuses a level or kind it does not allow, reporting the refusal as the task's error. The raw dcgmi
JSON (or the replay hook's checksums) goes back; the server parses it with the same parser
(``sightglass.agent.dcgm_diag``, ``sightglass.agent.replay``), so what it stores does not depend on
the agent's version. Tasks run one at a time, in the order the server lists them (a diagnostic takes
the GPUs over; the server lists a replay, seconds, before a DCGM run, minutes); a result that cannot
be delivered is kept and retried on the next poll.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from sightglass.agent.dcgm_diag import DiagError, DiagnosticRunner, DiagRun
from sightglass.agent.replay import ReplayError, ReplayRunner

log = logging.getLogger("sightglass.agent")

TASKS_PATH = "/api/v1/agent/tasks"
KINDS = ("dcgm_diag", "replay")

Http = Callable[[str, str, bytes | None], tuple[int, bytes]]
"""``(method, url, body) -> (status, body)``; raises OSError when there is no answer."""


def urllib_http(timeout_s: float = 10.0) -> Http:
    def call(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        req = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json", "User-Agent": "sightglass-agent"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                return int(r.status), r.read(1 << 20)
        except urllib.error.HTTPError as e:
            return int(e.code), e.read(1 << 16)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise OSError(str(e)) from None

    return call


class TaskClient:
    """Polls the server for this node's diagnostic tasks and runs them."""

    def __init__(
        self,
        server: str,
        node: str,
        runner: DiagnosticRunner,
        *,
        poll_s: float = 30.0,
        http: Http | None = None,
        replay: ReplayRunner | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.node = node
        self.runner = runner
        self.replay = replay or ReplayRunner([])
        self.poll_s = poll_s
        self.http = http or urllib_http()
        self.done: set[str] = set()
        self.undelivered: dict[str, dict[str, Any]] = {}
        self.last_error = ""
        self.ran = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ one poll
    def fetch(self) -> list[dict[str, Any]]:
        url = f"{self.server}{TASKS_PATH}?{urllib.parse.urlencode({'node': self.node})}"
        status, body = self.http("GET", url, None)
        if status != 200:
            raise OSError(f"HTTP {status} from {url}: {body[:200].decode(errors='replace')}")
        try:
            doc = json.loads(body)
            tasks = doc["data"]["tasks"]
        except (ValueError, KeyError, TypeError) as e:
            raise OSError(f"{url} answered something that is not a task list: {e}") from None
        if not isinstance(tasks, list):
            raise OSError(f"{url}: tasks is not a list")
        return [t for t in tasks if isinstance(t, dict) and isinstance(t.get("id"), str)]

    def run_task(self, task: dict[str, Any]) -> dict[str, Any]:
        """Run one task (or refuse it) and return the result document."""
        kind = task.get("kind")
        gpus = task.get("gpus")
        indices = [g.get("index") for g in gpus if isinstance(g, dict)] if isinstance(gpus, list) else gpus
        if kind not in KINDS:
            return {"node": self.node, "exit_code": None, "output": "", "argv": [],
                    "error": f"task kind {kind!r} is not one this agent runs (known: {', '.join(KINDS)})"}  # fmt: skip
        if kind == "replay":
            try:
                rr = self.replay.run(indices, task=str(task.get("id", "")), seed=task.get("seed", 0),
                                     step_ms=task.get("step_ms"))  # fmt: skip
            except ReplayError as e:
                return {"node": self.node, "exit_code": None, "output": "", "argv": [], "error": f"refused: {e}"}
            self.ran += 1
            return {"node": self.node, "exit_code": rr.exit_code, "output": rr.output, "error": rr.error,
                    "argv": rr.argv, "started_ms": rr.started_ms, "finished_ms": rr.finished_ms}  # fmt: skip
        try:
            run: DiagRun = self.runner.run(task.get("level"), indices)
        except DiagError as e:
            return {"node": self.node, "exit_code": None, "output": "", "argv": [], "error": f"refused: {e}"}
        self.ran += 1
        return {
            "node": self.node,
            "exit_code": run.exit_code,
            "output": run.output,
            "error": run.error,
            "argv": run.argv,
            "started_ms": run.started_ms,
            "finished_ms": run.finished_ms,
        }

    def deliver(self, task_id: str, result: dict[str, Any]) -> bool:
        url = f"{self.server}{TASKS_PATH}/{urllib.parse.quote(task_id, safe='')}/result"
        try:
            status, body = self.http("POST", url, json.dumps(result).encode())
        except OSError as e:
            self.last_error = f"{e} ({url})"
            return False
        if 200 <= status < 300 or status in (404, 409):  # 404/409: the server forgot or already has it
            if status >= 300:
                log.warning(
                    "server did not take the result of task %s: HTTP %d %s", task_id, status, body[:200]
                )
            return True
        self.last_error = f"HTTP {status} from {url}: {body[:200].decode(errors='replace')}"
        return False

    def poll_once(self) -> int:
        """Deliver what is pending, fetch new tasks, run them; returns how many ran."""
        for tid, res in list(self.undelivered.items()):
            if self.deliver(tid, res):
                self.undelivered.pop(tid)
        n = 0
        for task in self.fetch():
            tid = task["id"]
            if tid in self.done or tid in self.undelivered:
                continue
            log.info("running diagnostic task %s (%s, level %s) on %s", tid, task.get("kind"), task.get("level"), self.node)
            res = self.run_task(task)
            self.done.add(tid)
            n += 1
            if not self.deliver(tid, res):
                self.undelivered[tid] = res
        return n

    # ------------------------------------------------------------------ background thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sightglass-agent-tasks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
                self.last_error = ""
            except OSError as e:
                if str(e) != self.last_error:
                    log.warning("diagnostic tasks: %s", e)
                self.last_error = str(e)
            except Exception as e:  # never let the task thread die
                log.exception("diagnostic task loop error")
                self.last_error = f"{type(e).__name__}: {e}"
            self._stop.wait(self.poll_s)

"""Slurm attribution: which job holds which GPU of this node, recorded as job → GPU intervals.

Each cycle the collector asks Slurm for the jobs running on this node (``squeue``), reads their GPU
indexes from ``scontrol -d show job`` (the ``GRES=gpu:...(IDX:0-3)`` of each ``Nodes=`` line), and
compares with the last cycle: a new (job, GPU) pair opens an interval (a ``job-uses-gpu`` relation
from ``StartTime``), a pair that disappeared closes it (the relation again, with ``end_ms`` from
``sacct``'s ``End`` when known, else now). Job labels are kept off the GPU series (they multiply
series per job, NVIDIA/dcgm-exporter#369, nebius/soperator#2923); instead a small join series
``sightglass_slurm_job_gpu{slurm_job,user,partition,gpu}`` = 1 lets PromQL attribute GPUs to jobs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sightglass.agent.collection import Collection
from sightglass.model import Relation

_KV_RE = re.compile(r"(\S+?)=(\S*)")
_GRES_RE = re.compile(r"gpu(?::([^:(,]+))?(?::(\d+))?\(IDX:([^)]*)\)")


def expand_idx(text: str) -> list[int]:
    """``"0-3,5"`` -> ``[0, 1, 2, 3, 5]``; ``"N/A"``/empty -> ``[]``; malformed parts are skipped."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if lo.isdigit() and (not sep or hi.isdigit()):
            a, b = int(lo), int(hi) if sep else int(lo)
            if 0 <= b - a < 4096:
                out.extend(range(a, b + 1))
    return out


def expand_hostlist(text: str) -> list[str]:
    """Slurm host lists: ``"gpu[01-03,07],cpu1"`` -> ``["gpu01", "gpu02", "gpu03", "gpu07", "cpu1"]``."""
    hosts: list[str] = []
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", text):
        m = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", item)
        if not m:
            hosts.append(item)
            continue
        prefix, ranges, rest = m.groups()
        for r in ranges.split(","):
            lo, sep, hi = r.partition("-")
            if not lo.isdigit():
                continue
            width = len(lo)
            for n in range(int(lo), (int(hi) if sep and hi.isdigit() else int(lo)) + 1):
                for tail in expand_hostlist(rest) if rest else [""]:
                    hosts.append(f"{prefix}{n:0{width}d}{tail}")
    return hosts


def parse_time_ms(text: str | None) -> int | None:
    """Slurm's ``2021-08-09T14:30:18`` (local time of the controller) -> Unix ms; None for Unknown/None."""
    if not text or text in ("Unknown", "None", "N/A"):
        return None
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        return None


@dataclass(slots=True)
class SlurmJob:
    job_id: str
    fields: dict[str, str] = field(default_factory=dict)
    gpus: dict[str, list[int]] = field(default_factory=dict)
    """Node -> GPU indexes (from ``Nodes=... GRES=gpu:...(IDX:...)``)."""
    gpu_type: str = ""

    @property
    def user(self) -> str:
        return self.fields.get("UserId", "").split("(", 1)[0]

    @property
    def state(self) -> str:
        return self.fields.get("JobState", "")

    @property
    def start_ms(self) -> int | None:
        return parse_time_ms(self.fields.get("StartTime"))


def parse_scontrol_jobs(text: str) -> list[SlurmJob]:
    """Jobs in ``scontrol -d show job`` output (several jobs are separated by blank lines)."""
    jobs: list[SlurmJob] = []
    cur: SlurmJob | None = None
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("JobId="):
            cur = SlurmJob(s.split()[0].split("=", 1)[1])
            jobs.append(cur)
        if cur is None:
            continue
        if s.startswith("Nodes=") and "GRES=" in s:
            nodes = s.split()[0].split("=", 1)[1]
            gres = s.split("GRES=", 1)[1].split()[0]
            idx: list[int] = []
            for m in _GRES_RE.finditer(gres):
                if m.group(1) and not m.group(1).isdigit():
                    cur.gpu_type = m.group(1)
                idx.extend(expand_idx(m.group(3)))
            for node in expand_hostlist(nodes):
                cur.gpus.setdefault(node, []).extend(idx)
            continue
        for k, v in _KV_RE.findall(s):
            cur.fields.setdefault(k, v)
    return jobs


def parse_squeue(text: str) -> list[dict[str, str]]:
    """``squeue`` in its default layout (with or without the header): JOBID PARTITION NAME USER ST TIME NODES NODELIST."""
    cols = ["job_id", "partition", "name", "user", "state", "time", "nodes", "nodelist"]
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8 or parts[0] == "JOBID":
            continue
        out.append(dict(zip(cols, [*parts[:7], " ".join(parts[7:])], strict=True)))
    return out


def parse_sacct(text: str) -> list[dict[str, str]]:
    """``sacct --parsable2`` output with its header line."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    header = lines[0].split("|")
    return [dict(zip(header, ln.split("|"), strict=False)) for ln in lines[1:]]


def parse_tres(text: str) -> dict[str, str]:
    """``billing=64,cpu=9,gres/gpu:a100_3g.20gb=1,gres/gpu=1,mem=60G`` -> a dict (values as given)."""
    out: dict[str, str] = {}
    for item in text.split(","):
        k, sep, v = item.partition("=")
        if sep and k:
            out[k] = v
    return out


def tres_gpu_count(tres: Mapping[str, str]) -> int:
    """GPUs in a TRES dict: ``gres/gpu`` (the total), never ``gres/gpumem``/``gres/gpuutil`` (conventions §7)."""
    v = tres.get("gres/gpu")
    if v is not None and v.isdigit():
        return int(v)
    return sum(int(x) for k, x in tres.items() if k.startswith("gres/gpu:") and x.isdigit())


class SlurmCommands(Protocol):
    def squeue(self, node: str) -> str: ...
    def scontrol_jobs(self, job_ids: list[str]) -> str: ...
    def sacct(self, job_ids: list[str]) -> str: ...


class CommandRunner:
    """Runs the Slurm client commands (found on PATH or in ``bin_dir``) with a timeout."""

    def __init__(self, bin_dir: str = "", timeout_s: float = 10.0) -> None:
        self.bin_dir = bin_dir
        self.timeout_s = timeout_s

    def which(self, name: str) -> str | None:
        if self.bin_dir:
            p = Path(self.bin_dir) / name
            return str(p) if p.exists() else None
        return shutil.which(name)

    def available(self) -> bool:
        return all(self.which(n) for n in ("squeue", "scontrol"))

    def _run(self, name: str, *args: str) -> str:
        exe = self.which(name)
        if exe is None:
            raise FileNotFoundError(f"{name} not found (is this a Slurm node? set agent.slurm_bin)")
        r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=self.timeout_s, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"{name} failed ({r.returncode}): {r.stderr.strip()[:200]}")
        return r.stdout

    def squeue(self, node: str) -> str:
        return self._run("squeue", "--noheader", f"--nodelist={node}", "--states=RUNNING")

    def scontrol_jobs(self, job_ids: list[str]) -> str:
        return "\n".join(self._run("scontrol", "-d", "show", "job", j) for j in job_ids)

    def sacct(self, job_ids: list[str]) -> str:
        return self._run(
            "sacct", "--parsable2", "--allocations", "--format=JobID,State,Start,End", "-j", ",".join(job_ids)
        )


GpuIdOf = Callable[[int], str]
"""Slurm GPU index -> topology GPU id (``gpu:<UUID>`` when the GPU collector knows it)."""


class SlurmCollector:
    name = "slurm"

    def __init__(
        self,
        commands: SlurmCommands,
        hostname: str,
        *,
        hostname_label: str = "Hostname",
        gpu_id: GpuIdOf | None = None,
        node_name: str | None = None,
        every_ms: int = 15_000,
    ) -> None:
        self.cmd = commands
        self.every_ms = every_ms
        """Ask slurmctld at most this often (every node asks it); in between, repeat the last answer."""
        self._asked_ms = -(10**15)
        self.hostname = hostname
        self.node = node_name or hostname.split(".", 1)[0]
        self.hostname_label = hostname_label
        self.gpu_id = gpu_id or (lambda i: f"gpu:{hostname}/{i}")
        self.open: dict[tuple[str, int], tuple[int, str, str]] = {}
        """(job, gpu index) -> (start_ms, user, partition) of intervals still open."""
        self.jobs: dict[str, SlurmJob] = {}

    def collect(self, out: Collection) -> None:
        if out.ts_ms - self._asked_ms < self.every_ms:
            self._join_series(out, self.open)
            return
        self._asked_ms = out.ts_ms
        running = parse_squeue(self.cmd.squeue(self.node))
        ids = [r["job_id"] for r in running if r.get("state") in ("R", "RUNNING", "CG")]
        jobs = parse_scontrol_jobs(self.cmd.scontrol_jobs(ids)) if ids else []
        now: dict[tuple[str, int], tuple[int, str, str]] = {}
        for job in jobs:
            self.jobs[job.job_id] = job
            for idx in job.gpus.get(self.node, job.gpus.get(self.hostname, [])):
                prev = self.open.get((job.job_id, idx))
                start = prev[0] if prev else (job.start_ms or out.ts_ms)
                now[(job.job_id, idx)] = (start, job.user, job.fields.get("Partition", ""))
        for key, (start, _user, _part) in now.items():
            if key not in self.open:
                out.relations.append(Relation(f"job:{key[0]}", "job-uses-gpu", self.gpu_id(key[1]), start))
        self._join_series(out, now)
        ended = [k for k in self.open if k not in now]
        if ended:
            ends = self._end_times(sorted({j for j, _ in ended}))
            for key in ended:
                job_id, idx = key
                start = self.open[key][0]
                end = ends.get(job_id) or out.ts_ms
                out.relations.append(
                    Relation(f"job:{job_id}", "job-uses-gpu", self.gpu_id(idx), start, max(end, start))
                )
        self.open = now

    def _join_series(self, out: Collection, held: dict[tuple[str, int], tuple[int, str, str]]) -> None:
        for (job_id, idx), (_start, user, part) in held.items():
            out.add(
                "sightglass_slurm_job_gpu",
                {
                    self.hostname_label: self.hostname,
                    "gpu": str(idx),
                    "slurm_job": job_id,
                    "user": user,
                    "partition": part,
                },
                1,
                help="1 while the Slurm job holds this GPU (join on gpu and Hostname).",
            )

    def _end_times(self, job_ids: list[str]) -> dict[str, int]:
        try:
            rows = parse_sacct(self.cmd.sacct(job_ids))
        except (OSError, RuntimeError, subprocess.SubprocessError):
            return {}  # accounting unreachable: the interval closes at "now"
        out = {}
        for r in rows:
            end = parse_time_ms(r.get("End"))
            if end is not None and r.get("JobID") in job_ids:
                out[r["JobID"]] = end
        return out

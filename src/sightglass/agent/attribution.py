"""Who runs a process: host PID → cgroup → container → pod, user and command, PID-namespace aware.

NVML reports host PIDs (the driver is not PID-namespace aware: the cause of nvitop's "No Such
Process" inside containers, XuehaiPan/nvitop#134). So the agent reads the *host's* procfs
(``procfs``; mount it at e.g. ``/host/proc`` when the agent runs in a container) and, for each PID:

- ``/proc/<pid>/cgroup``: cgroup v2 (``0::/...``) or v1 (``N:controller:/...``) path; from it the
  container id (containerd ``cri-containerd-<id>.scope``, CRI-O ``crio-<id>.scope``, Docker
  ``docker-<id>.scope`` or ``/docker/<id>``, Podman ``libpod-<id>.scope``, or a bare 64-hex path
  segment under ``kubepods``), the pod UID (``kubepods-<qos>-pod<uid>.slice`` with ``_`` for ``-``,
  or v1 ``/kubepods/<qos>/pod<uid>/``), the QoS class, and a Slurm job (``job_<id>`` segment);
- ``/proc/<pid>/status``: ``Uid`` (→ user name) and ``NSpid`` (the PID as the container sees it);
- ``/proc/<pid>/cmdline``/``comm``: the command.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

_CONTAINER_RES = (
    re.compile(r"(?:cri-containerd|crio|docker|libpod)-([0-9a-f]{64})\.scope"),
    re.compile(r"/(?:docker|crio|containerd|libpod)/([0-9a-f]{64})(?:/|$)"),
    re.compile(r"/([0-9a-f]{64})(?:/|$)"),
)
_RUNTIME_RE = re.compile(
    r"(cri-containerd|crio|docker|libpod)-[0-9a-f]{64}\.scope|/(docker|crio|containerd|libpod)/[0-9a-f]{64}"
)
_POD_V2 = re.compile(r"kubepods(?:-(burstable|besteffort|guaranteed))?-pod([0-9a-f_]{36})\.slice")
_POD_V1 = re.compile(r"/kubepods/(?:(burstable|besteffort|guaranteed)/)?pod([0-9a-f-]{36})(?:/|$)")
_SLURM_JOB = re.compile(r"/job_(\d+)(?:/|$)")
_NCCL_KEYS = re.compile(
    r"^(NCCL_[A-Z0-9_]+|CUDA_VISIBLE_DEVICES|NVIDIA_VISIBLE_DEVICES|SLURM_JOB_ID|SLURM_STEP_GPUS|SLURM_JOB_GPUS|OMPI_COMM_WORLD_RANK|RANK|LOCAL_RANK|WORLD_SIZE)$"
)
_RUNTIME_NAMES = {
    "cri-containerd": "containerd",
    "containerd": "containerd",
    "crio": "cri-o",
    "docker": "docker",
    "libpod": "podman",
}


@dataclass(frozen=True, slots=True)
class ProcessAttribution:
    pid: int
    exists: bool
    cgroup: str = ""
    container_id: str = ""
    runtime: str = ""
    pod_uid: str = ""
    qos_class: str = ""
    slurm_job: str = ""
    ns_pid: str = ""
    """The PID inside its own PID namespace (last NSpid field), when it differs from the host PID."""
    uid: str = ""
    user: str = ""
    command: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def parse_cgroup(text: str) -> str:
    """The most specific cgroup path in a ``/proc/<pid>/cgroup`` (v2 unified line, else v1 memory/cpu)."""
    v1: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            if path not in ("/", ""):
                return path
            continue
        for c in controllers.split(","):
            v1[c] = path
    for c in ("memory", "cpu", "cpuacct", "pids", "devices", "name=systemd"):
        if c in v1 and v1[c] not in ("/", ""):
            return v1[c]
    return next((p for p in v1.values() if p not in ("/", "")), "")


def container_of(path: str) -> tuple[str, str]:
    """``(container_id, runtime)`` of a cgroup path, or ``("", "")``."""
    for rx in _CONTAINER_RES:
        m = rx.search(path)
        if m:
            rt = _RUNTIME_RE.search(path)
            name = ""
            if rt:
                name = _RUNTIME_NAMES.get(rt.group(1) or rt.group(2) or "", "")
            return m.group(1), name
    return "", ""


def pod_of(path: str) -> tuple[str, str]:
    """``(pod_uid, qos_class)`` from a kubepods cgroup path (systemd or cgroupfs driver), or empty."""
    m = _POD_V2.search(path)
    if m:
        return m.group(2).replace("_", "-"), m.group(1) or "guaranteed"
    m = _POD_V1.search(path)
    if m:
        return m.group(2), m.group(1) or "guaranteed"
    return "", ""


def parse_status(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k.strip()] = v.strip()
    return out


class Attributor:
    """Resolves host PIDs against a procfs tree (the host's ``/proc`` or a fixture)."""

    def __init__(self, procfs: str | os.PathLike[str] = "/proc") -> None:
        self.proc = Path(procfs)
        self._users: dict[str, str] = {}

    def resolve(self, pid: int) -> ProcessAttribution:
        d = self.proc / str(pid)
        try:
            cg_text = (d / "cgroup").read_text()
        except OSError:
            return ProcessAttribution(pid, exists=False)
        cg = parse_cgroup(cg_text)
        cid, runtime = container_of(cg)
        pod_uid, qos = pod_of(cg)
        job = _SLURM_JOB.search(cg)
        try:
            st = parse_status((d / "status").read_text())
        except OSError:
            st = {}
        nspid = st.get("NSpid", "").split()
        uid = (st.get("Uid", "").split() or [""])[0]
        return ProcessAttribution(
            pid=pid,
            exists=True,
            cgroup=cg,
            container_id=cid,
            runtime=runtime,
            pod_uid=pod_uid,
            qos_class=qos,
            slurm_job=job.group(1) if job else "",
            ns_pid=nspid[-1] if len(nspid) > 1 else "",
            uid=uid,
            user=self._user(uid),
            command=self._command(d) or st.get("Name", ""),
        )

    def _user(self, uid: str) -> str:
        if not uid:
            return ""
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(int(uid)).pw_name
            except (KeyError, ValueError):
                self._users[uid] = uid  # a container's user unknown to the host: keep the number
        return self._users[uid]

    @staticmethod
    def _command(d: Path) -> str:
        try:
            raw = (d / "cmdline").read_bytes()
        except OSError:
            return ""
        argv = [a for a in raw.split(b"\0") if a]
        if not argv:
            return ""
        exe = argv[0].decode(errors="replace").rsplit("/", 1)[-1]
        # "python train.py" says more than "python"
        if exe.startswith("python") and len(argv) > 1 and not argv[1].startswith(b"-"):
            return f"{exe} {argv[1].decode(errors='replace').rsplit('/', 1)[-1]}"
        return exe

    def labels(self, pid: int) -> dict[str, str]:
        """Attribution labels for a GPU process series (empty values are dropped by the model)."""
        a = self.resolve(pid)
        if not a.exists:
            return {"attribution": "pid_not_found"}
        return {
            "container_id": a.container_id[:12],
            "pod_uid": a.pod_uid,
            "slurm_job": a.slurm_job,
            "user": a.user,
            "command": a.command,
            "container_pid": a.ns_pid,
        }

    def nccl_env(self, pid: int) -> Mapping[str, str]:
        """NCCL-related environment of a process (needs root or the same user; else empty)."""
        try:
            raw = (self.proc / str(pid) / "environ").read_bytes()
        except OSError:
            return {}
        out: dict[str, str] = {}
        for item in raw.split(b"\0"):
            k, sep, v = item.decode(errors="replace").partition("=")
            if sep and _NCCL_KEYS.match(k):
                out[k] = v
        return out

    def in_host_pid_namespace(self) -> bool | None:
        """Whether this process sees the PIDs of ``procfs`` as its own (None: cannot tell)."""
        try:
            st = parse_status((Path("/proc/self/status")).read_text())
        except OSError:
            return None
        return len(st.get("NSpid", "").split()) <= 1

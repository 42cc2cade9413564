"""``sightglass agent diagnose``: what the agent can see on this node, and why attribution is missing.

Each check says ok / warn / fail in one line, with a hint naming the fix. The attribution checks
follow one GPU process at a time down the chain NVML PID → procfs → cgroup → container → pod/job,
and stop at the first broken link, because that link is the answer to "why are my pod labels empty".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from sightglass.agent.attribution import Attributor
from sightglass.agent.config import AgentConfig
from sightglass.agent.kubelet import GrpcPodResources, KubeletUnavailable, PodDevice, PodResourcesSource
from sightglass.agent.nvml import GpuBackend, GpuLost, GpuProcess, NvmlUnavailable
from sightglass.agent.slurm import CommandRunner, SlurmCommands, parse_scontrol_jobs, parse_squeue


@dataclass(frozen=True, slots=True)
class Check:
    area: str
    status: str  # ok | warn | fail | skip
    detail: str
    hint: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, area: str, status: str, detail: str, hint: str = "") -> None:
        self.checks.append(Check(area, status, detail, hint))

    def to_dict(self) -> dict[str, Any]:
        return {
            "checks": [asdict(c) for c in self.checks],
            "ok": all(c.status != "fail" for c in self.checks),
        }

    def by_area(self, area: str) -> list[Check]:
        return [c for c in self.checks if c.area == area]


def diagnose(
    config: AgentConfig,
    *,
    backend: GpuBackend | Callable[[], GpuBackend] | None = None,
    kubelet: PodResourcesSource | None = None,
    slurm: SlurmCommands | None = None,
    own_pid_namespace_is_host: bool | None = None,
) -> Report:
    r = Report()
    attr = Attributor(config.procfs)
    procs: dict[str, list[GpuProcess]] = {}
    uuids: dict[int, str] = {}
    gpu = _gpu_checks(r, config, backend, procs, uuids)
    _pid_namespace(r, config, attr, own_pid_namespace_is_host)
    pods = _kubernetes(r, config, kubelet)
    jobs = _slurm(r, config, slurm)
    if gpu:
        _attribution(r, attr, procs, uuids, pods, jobs)
    _fabric(r, config)
    _server(r, config)
    return r


def _gpu_checks(
    r: Report, config: AgentConfig, backend: Any, procs: dict[str, list[GpuProcess]], uuids: dict[int, str]
) -> bool:
    try:
        if backend is None:
            from sightglass.agent.nvml import PynvmlBackend

            b: GpuBackend = PynvmlBackend()
        elif callable(backend) and not hasattr(backend, "count"):
            b = backend()
        else:
            b = backend
    except NvmlUnavailable as e:
        r.add(
            "gpu",
            "warn" if config.expected_gpus is None else "fail",
            f"NVML unavailable: {e}",
            "no NVIDIA driver here, or the agent's container lacks the NVIDIA runtime (--gpus all / runtimeClassName: nvidia)",
        )
        return False
    sysinfo = b.system()
    n = b.count()
    lost = []
    for i in range(n):
        try:
            info = b.info(i)
            uuids[i] = info.uuid
            procs[info.uuid] = b.processes(i)
        except GpuLost as e:
            lost.append(f"{i} ({e})")
    r.add(
        "gpu",
        "ok",
        f"NVML: driver {sysinfo.driver_version}, CUDA {sysinfo.cuda_driver_version or '?'}, {n} GPUs",
    )
    if lost:
        r.add(
            "gpu",
            "fail",
            f"GPUs not answering: {', '.join(lost)}",
            "check dmesg for XID 79 (fallen off the bus); drain and reboot",
        )
    if config.expected_gpus is not None:
        present = n - len(lost)
        if present < config.expected_gpus:
            r.add(
                "gpu",
                "fail",
                f"{present} of {config.expected_gpus} expected GPUs present",
                "a GPU fell off the bus or is hidden (driver, PCIe, CUDA_VISIBLE_DEVICES of the agent)",
            )
        else:
            r.add("gpu", "ok", f"all {config.expected_gpus} expected GPUs present")
    return True


def _pid_namespace(r: Report, config: AgentConfig, attr: Attributor, host_ns: bool | None) -> None:
    proc = Path(config.procfs)
    if not (proc / "1" / "cgroup").exists():
        r.add(
            "attribution",
            "fail",
            f"cannot read {proc}/1/cgroup",
            f"mount the host's /proc and set agent.procfs (now {proc})",
        )
        return
    if host_ns is None:
        host_ns = attr.in_host_pid_namespace() if config.procfs == "/proc" else True
    if host_ns is False:
        r.add(
            "attribution",
            "fail",
            "the agent runs in its own PID namespace: NVML's host PIDs do not exist here",
            "run the agent with hostPID: true (Kubernetes) or --pid=host (Docker), or mount the host /proc and set agent.procfs",
        )
    else:
        r.add("attribution", "ok", f"host PIDs resolve through {proc}")
    cg2 = Path(config.sysfs) / "fs" / "cgroup" / "cgroup.controllers"
    r.add("attribution", "ok", f"cgroup {'v2 (unified)' if cg2.exists() else 'v1 (or not visible)'}")


def _kubernetes(r: Report, config: AgentConfig, kubelet: PodResourcesSource | None) -> list[PodDevice] | None:
    try:
        src = kubelet if kubelet is not None else GrpcPodResources(config.kubelet_socket)
        devs = [d for d in src.list_devices() if d.resource.startswith("nvidia.com/")]
    except KubeletUnavailable as e:
        r.add("kubernetes", "skip", str(e), "only needed on Kubernetes nodes")
        return None
    r.add(
        "kubernetes",
        "ok",
        f"pod-resources: {len({(d.namespace, d.pod) for d in devs})} pods hold {len(devs)} NVIDIA devices",
    )
    return devs


def _slurm(r: Report, config: AgentConfig, slurm: SlurmCommands | None) -> dict[int, str] | None:
    runner = slurm if slurm is not None else CommandRunner(config.slurm_bin)
    if isinstance(runner, CommandRunner) and not runner.available():
        r.add(
            "slurm",
            "skip",
            "squeue/scontrol not found",
            "only needed on Slurm nodes (set agent.slurm_bin if they are elsewhere)",
        )
        return None
    node = config.hostname.split(".", 1)[0]
    try:
        running = parse_squeue(runner.squeue(node))
        ids = [x["job_id"] for x in running]
        jobs = parse_scontrol_jobs(runner.scontrol_jobs(ids)) if ids else []
    except Exception as e:  # subprocess, timeout, permissions: say it, do not crash the report
        r.add("slurm", "fail", f"Slurm query failed: {e}", "check that slurmctld answers from this node")
        return None
    gpu_of: dict[int, str] = {}
    for j in jobs:
        for idx in j.gpus.get(node, []):
            gpu_of[idx] = j.job_id
    no_idx = [j.job_id for j in jobs if not j.gpus]
    r.add("slurm", "ok", f"{len(jobs)} running jobs on {node}, {len(gpu_of)} GPUs allocated")
    if no_idx:
        r.add(
            "slurm",
            "warn",
            f"jobs without GPU indexes in scontrol -d: {', '.join(no_idx)}",
            "no GRES=gpu(IDX:..) line: the job has no GPUs, or gres.conf lacks the GPU devices (use AutoDetect=nvml)",
        )
    return gpu_of


def _attribution(
    r: Report,
    attr: Attributor,
    procs: dict[str, list[GpuProcess]],
    uuids: dict[int, str],
    pods: list[PodDevice] | None,
    jobs: dict[int, str] | None,
) -> None:
    index_of = {u: i for i, u in uuids.items()}
    total = sum(len(v) for v in procs.values())
    if not total:
        r.add("attribution", "ok", "no processes on any GPU right now (nothing to attribute)")
    for uuid, plist in procs.items():
        i = index_of.get(uuid)
        for p in plist:
            who = f"GPU {i} PID {p.pid}"
            a = attr.resolve(p.pid)
            if not a.exists:
                r.add(
                    "attribution",
                    "fail",
                    f'{who}: not in this procfs ("No such process")',
                    "the agent is not in the host PID namespace: hostPID: true / --pid=host, or mount the host /proc",
                )
                continue
            if a.pod_uid:
                held = pods is not None and any(d.device_id in (uuid, str(i)) for d in pods)
                if pods is None:
                    r.add(
                        "attribution",
                        "warn",
                        f"{who}: pod {a.pod_uid} (from cgroup) but pod-resources is not readable",
                        "mount /var/lib/kubelet/pod-resources to get pod names and GPU assignment",
                    )
                elif not held:
                    r.add(
                        "attribution",
                        "warn",
                        f"{who}: pod {a.pod_uid} uses a GPU the kubelet did not assign to it",
                        "the GPU is used outside its allocation (no nvidia.com/gpu limit, or NVIDIA_VISIBLE_DEVICES=all)",
                    )
                else:
                    r.add("attribution", "ok", f"{who}: pod {a.pod_uid} container {a.container_id[:12]}")
            elif a.container_id:
                r.add(
                    "attribution",
                    "warn",
                    f"{who}: {a.runtime or 'container'} {a.container_id[:12]} outside Kubernetes",
                    "attributed to the container; no pod",
                )
            elif a.slurm_job or (jobs and i in jobs):
                r.add(
                    "attribution",
                    "ok",
                    f"{who}: Slurm job {a.slurm_job or (jobs or {}).get(i or -1)} (user {a.user})",
                )
            else:
                hint = "a bare process: attributed by user and command"
                if jobs is not None and i not in jobs:
                    hint = "no Slurm job holds this GPU: the process runs outside Slurm's allocation"
                r.add("attribution", "warn", f"{who}: {a.user} {a.command!r}, no container, pod or job", hint)


def _fabric(r: Report, config: AgentConfig) -> None:
    ib = Path(config.sysfs) / "class" / "infiniband"
    if ib.is_dir():
        r.add(
            "fabric", "ok", f"InfiniBand: {', '.join(sorted(p.name for p in ib.iterdir())) or 'no devices'}"
        )
    else:
        r.add("fabric", "skip", f"no {ib} (no InfiniBand/RoCE HCA)")
    ms = Path(config.procfs) / "self" / "mountstats"
    try:
        n = sum(1 for ln in ms.read_text().splitlines() if " with fstype nfs" in ln)
        r.add("storage", "ok" if n else "skip", f"{n} NFS mounts in {ms}")
    except OSError:
        r.add("storage", "skip", f"cannot read {ms}")


def _server(r: Report, config: AgentConfig) -> None:
    if not config.server:
        return
    try:
        resp = httpx.get(config.server.rstrip("/") + "/-/ready", timeout=5)
        if resp.status_code == 200:
            r.add("push", "ok", f"server {config.server} is ready")
        else:
            r.add("push", "fail", f"server {config.server} answered {resp.status_code}")
    except httpx.HTTPError as e:
        r.add(
            "push", "warn", f"server {config.server} unreachable: {e}", "pushes are spooled until it is back"
        )


_STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}


def print_report(report: Report, console: Console) -> None:
    t = Table(show_header=True, header_style="bold", show_lines=False)
    t.add_column("area")
    t.add_column("")
    t.add_column("finding")
    t.add_column("what to do", style="dim")
    for c in report.checks:
        t.add_row(c.area, f"[{_STYLE.get(c.status, '')}]{c.status}[/]", c.detail, c.hint)
    console.print(t)

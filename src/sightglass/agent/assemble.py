"""Build an agent from its configuration: the collectors it can run here, its sink, its pusher."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sightglass.agent.collection import Collection
from sightglass.agent.config import AgentConfig
from sightglass.agent.exposition import MetricsServer, render_rows
from sightglass.agent.host import HostCollector
from sightglass.agent.infiniband import InfinibandCollector
from sightglass.agent.push import Pusher
from sightglass.agent.runner import Agent, Collector, SpoolSink
from sightglass.agent.spool import Spool
from sightglass.agent.storage import LustreCollector, NFSCollector
from sightglass.config import parse_duration_ms, parse_listen

log = logging.getLogger("sightglass.agent")


@dataclass
class Assembly:
    agent: Agent
    notes: list[str] = field(default_factory=list)
    """One line per collector that cannot run here, and why."""
    pusher: Pusher | None = None
    server: MetricsServer | None = None
    spool: Spool | None = None
    tasks: Any = None  # sightglass.agent.tasks.TaskClient: diagnostics the server asks for

    def start(self) -> None:
        if self.pusher:
            self.pusher.start()
        if self.server:
            self.server.start()
        if self.tasks:
            self.tasks.start()

    def stop(self) -> None:
        if self.tasks:
            self.tasks.stop()
        if self.pusher:
            self.pusher.stop()
        if self.server:
            self.server.stop()


def build_collectors(config: AgentConfig) -> tuple[list[Collector], list[str]]:
    """The collectors that can run on this host, in collection order, and one note per one that cannot."""
    base = {"instance": config.hostname, "job": config.job}
    enabled = set(config.collectors)
    out: list[Collector] = []
    notes: list[str] = []
    k8s = None
    if "kubernetes" in enabled:
        from sightglass.agent.kubelet import GrpcPodResources, KubeletUnavailable, KubernetesCollector

        try:
            k8s = KubernetesCollector(
                GrpcPodResources(config.kubelet_socket), config.hostname, hostname_label=config.hostname_label
            )
            out.append(k8s)
        except KubeletUnavailable as e:
            notes.append(f"kubernetes: {e}")
    if "host" in enabled:
        out.append(
            HostCollector(
                base,
                entity={config.hostname_label: config.hostname},
                procfs=config.procfs,
                config_every_ms=parse_duration_ms(config.config_every),
            )
        )
    gpu = None
    if "gpu" in enabled:
        from sightglass.agent.gpu import open_gpu_collector

        gpu, note = open_gpu_collector(config)
        if gpu is not None:
            if k8s is not None:
                gpu.owner = k8s.owner
            out.append(gpu)
        if note:
            notes.append(note)
    if "slurm" in enabled:
        from sightglass.agent.slurm import CommandRunner, SlurmCollector

        runner = CommandRunner(config.slurm_bin)
        if runner.available():
            out.append(
                SlurmCollector(
                    runner,
                    config.hostname,
                    hostname_label=config.hostname_label,
                    gpu_id=gpu.gpu_id if gpu is not None else None,
                )
            )
        else:
            notes.append("slurm: squeue/scontrol not found (not a Slurm node)")
    if "infiniband" in enabled:
        ib = InfinibandCollector(base, config.sysfs)
        if not ib.present():
            notes.append(f"infiniband: no {ib.root} on this host (no InfiniBand/RoCE HCA)")
        out.append(ib)
    if "nfs" in enabled:
        out.append(NFSCollector(base, Path(config.procfs) / "self" / "mountstats"))
    if "lustre" in enabled:
        out.append(LustreCollector(base, (config.procfs, config.sysfs)))
    return out, notes


def build(config: AgentConfig) -> Assembly:
    """An agent pushing to ``config.server`` through the spool, or serving ``config.listen``."""
    collectors, notes = build_collectors(config)
    if config.server:
        spool = Spool(config.spool_dir, config.spool_max_bytes)
        pusher = Pusher(spool, config.server, max_backoff_s=parse_duration_ms(config.max_backoff) / 1000)
        agent = Agent(
            config, collectors, SpoolSink(spool, pusher.notify), spool=spool, push_stats=pusher.stats
        )
        return Assembly(agent, notes, pusher=pusher, spool=spool, tasks=_task_client(config))
    host, port = parse_listen(config.listen or "127.0.0.1:9469")
    server = MetricsServer(host, port)

    class _Publish:
        def publish(self, col: Collection) -> None:
            server.publish_body(render_rows(zip(col.keys, col.values, strict=True), col.metadata))

    agent = Agent(config, collectors, _Publish())
    return Assembly(agent, notes, server=server)


def _task_client(config: AgentConfig) -> Any:
    """The diagnostic-task puller (``[agent.diagnostics]``), or None when switched off."""
    d = config.diagnostics
    if not d.enabled or not config.server:
        return None
    from sightglass.agent.dcgm_diag import DiagnosticRunner
    from sightglass.agent.replay import ReplayRunner
    from sightglass.agent.tasks import TaskClient

    runner = DiagnosticRunner(d.dcgmi, levels=tuple(d.levels), timeout_s=parse_duration_ms(d.timeout) / 1000)
    replay = ReplayRunner(d.replay_command, timeout_s=parse_duration_ms(d.replay_timeout) / 1000)
    return TaskClient(config.server, config.hostname, runner, poll_s=parse_duration_ms(d.poll_interval) / 1000,
                      replay=replay)  # fmt: skip

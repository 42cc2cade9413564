"""Host readings through psutil, under node_exporter's names and labels.

node_exporter reads ``/proc`` and ``/sys`` itself; we read the same kernel counters through psutil
(which parses the same files on Linux), so ``node_cpu_seconds_total{cpu,mode}``,
``node_disk_read_bytes_total{device}``, ``node_filesystem_avail_bytes{device,fstype,mountpoint}``
and ``node_network_receive_bytes_total{device}`` mean what they mean in node_exporter
(fixture: ``shared/data/exposition/node_exporter_e2e_output_linux.prom``). Series carry ``instance``
(the host) and ``job`` as a scrape would add them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from sightglass.agent.collection import Collection
from sightglass.model import ConfigSnapshot, MetricType

C = MetricType.COUNTER
G = MetricType.GAUGE

# node_exporter's defaults: skip partitions and virtual block devices, and pseudo filesystems
_DISK_EXCLUDE = re.compile(r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$")
_FS_TYPES_EXCLUDE = re.compile(
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|"
    r"mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|"
    r"tracefs)$"
)
_MOUNT_EXCLUDE = re.compile(
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
# a statvfs on a dead NFS server blocks in the kernel; these are read from mountstats instead
_NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "lustre", "fuse.sshfs", "ceph", "glusterfs"})

_CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


class HostCollector:
    """CPU, memory, load, disk I/O, filesystems and network of this host."""

    name = "host"

    def __init__(
        self,
        base_labels: Mapping[str, str],
        *,
        statvfs_network_fs: bool = False,
        entity: Mapping[str, str] | None = None,
        procfs: str | os.PathLike[str] = "/proc",
        config_every_ms: int = 300_000,
    ) -> None:
        self.base = dict(base_labels)
        self.statvfs_network_fs = statvfs_network_fs
        self.entity = dict(entity) if entity is not None else {"Hostname": self.base.get("instance", "")}
        self.procfs = Path(procfs)
        self.config_every_ms = config_every_ms
        self._config_hash = ""
        self._config_ts = -(10**15)
        self._checked_ts = -(10**15)

    def collect(self, out: Collection) -> None:
        self._cpu(out)
        self._memory(out)
        self._disks(out)
        self._filesystems(out)
        self._network(out)
        self._config(out)

    def node_config(self) -> dict[str, Any]:
        """What the node runs: kernel, OS, CPU, memory, and the NVIDIA kernel module when loaded."""
        cfg: dict[str, Any] = {
            "kernel": platform.release(),
            "kernel_version": platform.version(),
            "machine": platform.machine(),
            "os": _os_release(),
            "cpu_model": _cpu_model(self.procfs),
            "logical_cpus": psutil.cpu_count(),
            "memory_total_bytes": psutil.virtual_memory().total,
            "python": platform.python_version(),
        }
        try:
            first = (self.procfs / "driver" / "nvidia" / "version").read_text().splitlines()[0]
            cfg["nvidia_kernel_module"] = " ".join(first.split())
        except (OSError, IndexError):
            pass
        return cfg

    def _config(self, out: Collection) -> None:
        # reading the configuration is the slow part of a cycle: look at most once a minute
        if out.ts_ms - self._checked_ts < min(self.config_every_ms, 60_000):
            return
        self._checked_ts = out.ts_ms
        cfg = self.node_config()
        h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()
        if h != self._config_hash or out.ts_ms - self._config_ts >= self.config_every_ms:
            self._config_hash, self._config_ts = h, out.ts_ms
            out.configs.append(ConfigSnapshot(out.ts_ms, self.entity, cfg, source="sightglass-agent/host"))

    def _l(self, **labels: str) -> dict[str, str]:
        return {**self.base, **labels}

    def _cpu(self, out: Collection) -> None:
        for i, t in enumerate(psutil.cpu_times(percpu=True)):
            cpu = str(i)
            for mode in _CPU_MODES:
                v = getattr(t, mode, None)
                out.add(
                    "node_cpu_seconds_total",
                    self._l(cpu=cpu, mode=mode),
                    v,
                    type=C,
                    help="Seconds the CPUs spent in each mode.",
                )
        try:
            load1, load5, load15 = os.getloadavg()
        except OSError:
            pass
        else:
            out.add("node_load1", self.base, load1, help="1m load average.")
            out.add("node_load5", self.base, load5, help="5m load average.")
            out.add("node_load15", self.base, load15, help="15m load average.")
        st = psutil.cpu_stats()
        out.add(
            "node_context_switches_total",
            self.base,
            st.ctx_switches,
            type=C,
            help="Total number of context switches.",
        )
        out.add(
            "node_intr_total", self.base, st.interrupts, type=C, help="Total number of interrupts serviced."
        )
        out.add("node_boot_time_seconds", self.base, psutil.boot_time(), help="Node boot time, in unixtime.")

    def _memory(self, out: Collection) -> None:
        vm = psutil.virtual_memory()
        for field, name in (
            ("total", "MemTotal"),
            ("available", "MemAvailable"),
            ("free", "MemFree"),
            ("buffers", "Buffers"),
            ("shared", "Shmem"),
        ):
            v = getattr(vm, field, None)
            out.add(
                f"node_memory_{name}_bytes",
                self.base,
                v,
                help=f"Memory information field {name}_bytes.",
                unit="bytes",
            )
        sw = psutil.swap_memory()
        out.add(
            "node_memory_SwapTotal_bytes",
            self.base,
            sw.total,
            help="Memory information field SwapTotal_bytes.",
        )
        out.add(
            "node_memory_SwapFree_bytes", self.base, sw.free, help="Memory information field SwapFree_bytes."
        )

    def _disks(self, out: Collection) -> None:
        counters = psutil.disk_io_counters(perdisk=True) or {}
        for dev, d in counters.items():
            if _DISK_EXCLUDE.match(dev):
                continue
            lb = self._l(device=dev)
            out.add(
                "node_disk_reads_completed_total",
                lb,
                d.read_count,
                type=C,
                help="The total number of reads completed successfully.",
            )
            out.add(
                "node_disk_writes_completed_total",
                lb,
                d.write_count,
                type=C,
                help="The total number of writes completed successfully.",
            )
            out.add(
                "node_disk_read_bytes_total",
                lb,
                d.read_bytes,
                type=C,
                help="The total number of bytes read successfully.",
            )
            out.add(
                "node_disk_written_bytes_total",
                lb,
                d.write_bytes,
                type=C,
                help="The total number of bytes written successfully.",
            )
            out.add(
                "node_disk_read_time_seconds_total",
                lb,
                d.read_time / 1000,
                type=C,
                help="The total number of seconds spent by all reads.",
            )
            out.add(
                "node_disk_write_time_seconds_total",
                lb,
                d.write_time / 1000,
                type=C,
                help="This is the total number of seconds spent by all writes.",
            )
            busy = getattr(d, "busy_time", None)
            out.add(
                "node_disk_io_time_seconds_total",
                lb,
                None if busy is None else busy / 1000,
                type=C,
                help="Total seconds spent doing I/Os.",
            )
            out.add(
                "node_disk_reads_merged_total",
                lb,
                getattr(d, "read_merged_count", None),
                type=C,
                help="The total number of reads merged.",
            )
            out.add(
                "node_disk_writes_merged_total",
                lb,
                getattr(d, "write_merged_count", None),
                type=C,
                help="The number of writes merged.",
            )

    def _filesystems(self, out: Collection) -> None:
        seen: set[str] = set()
        for p in psutil.disk_partitions(all=True):
            if (
                p.mountpoint in seen
                or _FS_TYPES_EXCLUDE.match(p.fstype)
                or _MOUNT_EXCLUDE.match(p.mountpoint)
            ):
                continue
            if p.fstype in _NETWORK_FS and not self.statvfs_network_fs:
                continue
            seen.add(p.mountpoint)
            try:
                st = os.statvfs(p.mountpoint)
            except OSError:
                out.add(
                    "node_filesystem_device_error",
                    self._l(device=p.device, fstype=p.fstype, mountpoint=p.mountpoint),
                    1,
                    help="Whether an error occurred while getting statistics for the given device.",
                )
                continue
            lb = self._l(device=p.device, fstype=p.fstype, mountpoint=p.mountpoint)
            out.add(
                "node_filesystem_size_bytes", lb, st.f_blocks * st.f_frsize, help="Filesystem size in bytes."
            )
            out.add(
                "node_filesystem_free_bytes",
                lb,
                st.f_bfree * st.f_frsize,
                help="Filesystem free space in bytes.",
            )
            out.add(
                "node_filesystem_avail_bytes",
                lb,
                st.f_bavail * st.f_frsize,
                help="Filesystem space available to non-root users in bytes.",
            )
            out.add("node_filesystem_files", lb, st.f_files, help="Filesystem total file nodes.")
            out.add("node_filesystem_files_free", lb, st.f_ffree, help="Filesystem total free file nodes.")
            out.add(
                "node_filesystem_readonly",
                lb,
                1 if "ro" in p.opts.split(",") else 0,
                help="Filesystem read-only status.",
            )
            out.add(
                "node_filesystem_device_error",
                lb,
                0,
                help="Whether an error occurred while getting statistics for the given device.",
            )

    def _network(self, out: Collection) -> None:
        for dev, n in (psutil.net_io_counters(pernic=True) or {}).items():
            lb = self._l(device=dev)
            for metric, v, h in (
                ("node_network_receive_bytes_total", n.bytes_recv, "Network device statistic receive_bytes."),
                (
                    "node_network_transmit_bytes_total",
                    n.bytes_sent,
                    "Network device statistic transmit_bytes.",
                ),
                (
                    "node_network_receive_packets_total",
                    n.packets_recv,
                    "Network device statistic receive_packets.",
                ),
                (
                    "node_network_transmit_packets_total",
                    n.packets_sent,
                    "Network device statistic transmit_packets.",
                ),
                ("node_network_receive_errs_total", n.errin, "Network device statistic receive_errs."),
                ("node_network_transmit_errs_total", n.errout, "Network device statistic transmit_errs."),
                ("node_network_receive_drop_total", n.dropin, "Network device statistic receive_drop."),
                ("node_network_transmit_drop_total", n.dropout, "Network device statistic transmit_drop."),
            ):
                out.add(metric, lb, v, type=C, help=h)


def _os_release() -> str:
    for p in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            for line in Path(p).read_text().splitlines():
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
        except OSError:
            continue
    return platform.platform()


def _cpu_model(procfs: Path) -> str:
    try:
        for line in (procfs / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()

"""Network and parallel filesystem client statistics: NFS (``/proc/self/mountstats``) and Lustre.

NFS series use node_exporter's ``mountstats`` collector names and labels (``export``,
``mountaddr``, ``protocol``; one series set per distinct ``(export, protocol, mountaddr)``, so a
share mounted twice is counted once). Lustre has no standard exporter names (conventions §2:
"vendor exporters only"), so its client ``llite`` statistics are minted under ``sightglass_lustre_``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sightglass.agent.collection import Collection
from sightglass.model import MetricType

C = MetricType.COUNTER
G = MetricType.GAUGE

_EVENTS = (
    "inode_revalidate",
    "dnode_revalidate",
    "data_invalidate",
    "attribute_invalidate",
    "vfs_open",
    "vfs_lookup",
    "vfs_access",
    "vfs_update_page",
    "vfs_read_page",
    "vfs_read_pages",
    "vfs_write_page",
    "vfs_write_pages",
    "vfs_getdents",
    "vfs_setattr",
    "vfs_flush",
    "vfs_fsync",
    "vfs_lock",
    "vfs_file_release",
    None,
    "truncation",
    "write_extension",
    "silly_rename",
    "short_read",
    "short_write",
    "jukebox_delay",
    "pnfs_read",
    "pnfs_write",
)  # None: congestion_wait, which node_exporter does not export
_BYTES = (
    ("read_bytes_total", "Number of bytes read using the read() syscall."),
    ("write_bytes_total", "Number of bytes written using the write() syscall."),
    ("direct_read_bytes_total", "Number of bytes read using the read() syscall in O_DIRECT mode."),
    ("direct_write_bytes_total", "Number of bytes written using the write() syscall in O_DIRECT mode."),
    ("total_read_bytes_total", "Number of bytes read from the NFS server, in total."),
    ("total_write_bytes_total", "Number of bytes written to the NFS server, in total."),
    ("read_pages_total", "Number of pages read directly via mmap()'d files."),
    ("write_pages_total", "Number of pages written directly via mmap()'d files."),
)
# xprt fields after the protocol name, per protocol (Linux net/sunrpc/xprtsock.c, statvers 1.1)
_XPRT_FIELDS = {
    "tcp": (
        "port",
        "bind",
        "connect",
        "connect_time",
        "idle_time",
        "sends",
        "receives",
        "bad_xids",
        "req_u",
        "bklog_u",
        "max_slots",
        "sending_u",
        "pending_u",
    ),
    "udp": (
        "port",
        "bind",
        "sends",
        "receives",
        "bad_xids",
        "req_u",
        "bklog_u",
        "max_slots",
        "sending_u",
        "pending_u",
    ),
    "rdma": (
        "port",
        "bind",
        "connect",
        "connect_time",
        "idle_time",
        "sends",
        "receives",
        "bad_xids",
        "req_u",
        "bklog_u",
    ),
}
_XPRT_METRICS = (
    ("bind", "transport_bind_total", C),
    ("connect", "transport_connect_total", C),
    ("idle_time", "transport_idle_time_seconds", G),
    ("sends", "transport_sends_total", C),
    ("receives", "transport_receives_total", C),
    ("bad_xids", "transport_bad_transaction_ids_total", C),
    ("bklog_u", "transport_backlog_queue_total", C),
    ("max_slots", "transport_maximum_rpc_slots", G),
    ("sending_u", "transport_sending_queue_total", C),
    ("pending_u", "transport_pending_queue_total", C),
)


@dataclass(slots=True)
class NFSMount:
    device: str
    mountpoint: str
    fstype: str
    opts: dict[str, str] = field(default_factory=dict)
    age: int | None = None
    events: list[int] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)
    xprt_proto: str = ""
    xprt: list[int] = field(default_factory=list)
    ops: dict[str, list[int]] = field(default_factory=dict)

    @property
    def protocol(self) -> str:
        return self.xprt_proto or self.opts.get("proto", "")

    @property
    def mountaddr(self) -> str:
        if self.opts.get("mountaddr"):
            return self.opts["mountaddr"]
        if self.opts.get("addr"):
            return self.opts["addr"]
        return self.device.rsplit(":", 1)[0] if ":" in self.device else ""


_DEVICE_RE = re.compile(r"^device (\S+) mounted on (\S+) with fstype (\S+)")


def parse_mountstats(text: str) -> list[NFSMount]:
    """The NFS mounts of a ``/proc/<pid>/mountstats`` text (other filesystems are skipped)."""
    mounts: list[NFSMount] = []
    cur: NFSMount | None = None
    in_ops = False
    for line in text.splitlines():
        m = _DEVICE_RE.match(line)
        if m:
            in_ops = False
            cur = None
            if m.group(3) in ("nfs", "nfs4"):
                cur = NFSMount(m.group(1), m.group(2), m.group(3))
                mounts.append(cur)
            continue
        if cur is None:
            continue
        s = line.strip()
        if not s:
            continue
        key, _, rest = s.partition(":")
        rest = rest.strip()
        try:
            if in_ops and rest and key.isupper():
                cur.ops[key] = [int(x) for x in rest.split()]
            elif key == "opts":
                for kv in rest.split(","):
                    k, _, v = kv.partition("=")
                    cur.opts[k] = v
            elif key == "age":
                cur.age = int(rest)
            elif key == "events":
                cur.events = [int(x) for x in rest.split()]
            elif key == "bytes":
                cur.bytes = [int(x) for x in rest.split()]
            elif key == "xprt":
                parts = rest.split()
                cur.xprt_proto = parts[0]
                cur.xprt = [int(x) for x in parts[1:]]
            elif s == "per-op statistics":
                in_ops = True
        except ValueError:
            continue  # a line this parser does not know the shape of; the rest still counts
    return mounts


class NFSCollector:
    name = "nfs"

    def __init__(self, base_labels: Mapping[str, str], path: str | Path = "/proc/self/mountstats") -> None:
        self.base = dict(base_labels)
        self.path = Path(path)

    def collect(self, out: Collection) -> None:
        try:
            text = self.path.read_text()
        except OSError:
            return
        seen: set[tuple[str, str, str]] = set()
        for mnt in parse_mountstats(text):
            ident = (mnt.device, mnt.protocol, mnt.mountaddr)
            if ident in seen:
                continue
            seen.add(ident)
            self._mount(out, mnt)

    def _mount(self, out: Collection, m: NFSMount) -> None:
        lb = {**self.base, "export": m.device, "mountaddr": m.mountaddr, "protocol": m.protocol}
        p = "node_mountstats_nfs_"
        out.add(p + "age_seconds_total", lb, m.age, type=C, help="The age of the NFS mount in seconds.")
        for (name, help_), v in zip(_BYTES, m.bytes, strict=False):
            out.add(p + name, lb, v, type=C, help=help_)
        for ev, v in zip(_EVENTS, m.events, strict=False):
            if ev is not None:
                out.add(p + f"event_{ev}_total", lb, v, type=C, help=f"NFS event count: {ev}.")
        fields = dict(zip(_XPRT_FIELDS.get(m.xprt_proto, ()), m.xprt, strict=False))
        tlb = {**lb, "transport": "0"}  # the first (with nconnect, only) transport of the mount
        for f, metric, typ in _XPRT_METRICS:
            if f in fields:
                out.add(p + metric, tlb, fields[f], type=typ, help=f"NFS transport statistic {f}.")
        for op, vals in m.ops.items():
            if len(vals) < 8:
                continue
            olb = {**lb, "operation": op}
            out.add(
                p + "operations_requests_total",
                olb,
                vals[0],
                type=C,
                help="Number of requests performed for a given operation.",
            )
            out.add(
                p + "operations_transmissions_total",
                olb,
                vals[1],
                type=C,
                help="Number of times an actual RPC request has been transmitted for a given operation.",
            )
            out.add(
                p + "operations_major_timeouts_total",
                olb,
                vals[2],
                type=C,
                help="Number of times a request has had a major timeout for a given operation.",
            )
            out.add(
                p + "operations_sent_bytes_total",
                olb,
                vals[3],
                type=C,
                help="Number of bytes sent for a given operation, including RPC headers and payload.",
            )
            out.add(
                p + "operations_received_bytes_total",
                olb,
                vals[4],
                type=C,
                help="Number of bytes received for a given operation, including RPC headers and payload.",
            )
            out.add(
                p + "operations_queue_time_seconds_total",
                olb,
                vals[5] / 1000,
                type=C,
                help="Duration all requests spent queued for transmission for a given operation before they were sent, in seconds.",
            )
            out.add(
                p + "operations_response_time_seconds_total",
                olb,
                vals[6] / 1000,
                type=C,
                help="Duration all requests took to get a reply back after a request for a given operation was transmitted, in seconds.",
            )
            out.add(
                p + "operations_request_time_seconds_total",
                olb,
                vals[7] / 1000,
                type=C,
                help="Duration all requests took from when a request was enqueued to when it was completely handled for a given operation, in seconds.",
            )


# ------------------------------------------------------------------------------------------ Lustre
_LUSTRE_ROOTS = ("fs/lustre/llite", "kernel/debug/lustre/llite")


def parse_lustre_stats(text: str) -> Iterator[tuple[str, int, int | None]]:
    """``(name, samples, sum)`` per line of a Lustre ``stats`` file (``sum`` for [bytes]/[usecs] rows)."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0] == "snapshot_time" or parts[2] != "samples":
            continue
        try:
            samples = int(parts[1])
            total = int(parts[6]) if len(parts) >= 7 else None
        except ValueError:
            continue
        yield parts[0], samples, total


class LustreCollector:
    """Lustre client (``llite``) per-filesystem stats, from ``/proc`` or debugfs (Lustre ≥ 2.12)."""

    name = "lustre"

    def __init__(
        self, base_labels: Mapping[str, str], roots: tuple[str | Path, ...] = ("/proc", "/sys")
    ) -> None:
        self.base = dict(base_labels)
        self.dirs = [Path(r) / sub for r in roots for sub in _LUSTRE_ROOTS]

    def collect(self, out: Collection) -> None:
        for d in self.dirs:
            if not d.is_dir():
                continue
            for inst in sorted(d.iterdir()):
                try:
                    text = (inst / "stats").read_text()
                except OSError:
                    continue
                fs = inst.name.rsplit("-", 1)[0]  # "scratch-ffff8803c9b5a000" -> "scratch"
                lb = {**self.base, "fs": fs, "instance_id": inst.name}
                for name, samples, total in parse_lustre_stats(text):
                    if name in ("read_bytes", "write_bytes"):
                        out.add(
                            f"sightglass_lustre_client_{name}_total",
                            lb,
                            total or 0,
                            type=C,
                            help=f"Lustre client {name.replace('_', ' ')} (llite stats).",
                            unit="bytes",
                        )
                        out.add(
                            "sightglass_lustre_client_operations_total",
                            {**lb, "operation": name.split("_")[0]},
                            samples,
                            type=C,
                            help="Lustre client operations (llite stats samples).",
                        )
                    else:
                        out.add(
                            "sightglass_lustre_client_operations_total",
                            {**lb, "operation": name},
                            samples,
                            type=C,
                            help="Lustre client operations (llite stats samples).",
                        )

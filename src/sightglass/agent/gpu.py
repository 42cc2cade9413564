"""GPU readings under dcgm-exporter's DCGM names and label set, from any :class:`GpuBackend`.

Series labels are dcgm-exporter's (``gpu``, ``UUID``, ``pci_bus_id``, ``device``, ``modelName``,
``Hostname``/``hostname``, ``DCGM_FI_DRIVER_VERSION``), plus ``pod``/``namespace``/``container``
when attribution knows the one pod that holds the GPU, as ``dcgm-exporter --kubernetes`` adds them.
Units are DCGM's: MHz, W, mJ, °C, %, MiB (the server's unit layer normalises them at ingest).

Beyond dcgm-exporter: XIDs arrive as events (from an NVML event set) and as a true counter
``sightglass_gpu_xid_errors_total{xid}``; the inventory compares expected and present GPUs, so a
GPU that falls off the bus is seen (``sightglass_gpu_up=0`` and a ``gpu.missing`` event) instead of
its series silently going stale; per-process memory and utilisation carry attribution labels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sightglass.agent.collection import Collection
from sightglass.agent.config import AgentConfig
from sightglass.agent.nvml import GpuBackend, GpuInfo, GpuLost, GpuProcess, NvmlUnavailable
from sightglass.agent.xid import describe
from sightglass.model import ConfigSnapshot, Event, MetricType

log = logging.getLogger("sightglass.agent")

C = MetricType.COUNTER
G = MetricType.GAUGE

# GpuReading field -> (DCGM name, type, help as dcgm-exporter's CSV words it)
READING_FIELDS: tuple[tuple[str, str, MetricType, str], ...] = (
    ("sm_clock_mhz", "DCGM_FI_DEV_SM_CLOCK", G, "SM clock frequency (in MHz)."),
    ("mem_clock_mhz", "DCGM_FI_DEV_MEM_CLOCK", G, "Memory clock frequency (in MHz)."),
    (
        "clocks_event_reasons",
        "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
        G,
        "Current clock event (throttle) reasons bitmask.",
    ),
    ("gpu_temp_c", "DCGM_FI_DEV_GPU_TEMP", G, "GPU temperature (in C)."),
    ("memory_temp_c", "DCGM_FI_DEV_MEMORY_TEMP", G, "Memory temperature (in C)."),
    ("slowdown_temp_c", "DCGM_FI_DEV_SLOWDOWN_TEMP", G, "Slowdown temperature threshold (in C)."),
    ("power_w", "DCGM_FI_DEV_POWER_USAGE", G, "Power draw (in W)."),
    ("power_limit_w", "DCGM_FI_DEV_POWER_MGMT_LIMIT", G, "Current power limit (in W)."),
    ("energy_mj", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", C, "Total energy consumption since boot (in mJ)."),
    ("pcie_replay", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", C, "Total number of PCIe retries."),
    (
        "pcie_tx_bytes_per_s",
        "DCGM_FI_PROF_PCIE_TX_BYTES",
        G,
        "PCIe transmit throughput (bytes/s; from NVML).",
    ),
    ("pcie_rx_bytes_per_s", "DCGM_FI_PROF_PCIE_RX_BYTES", G, "PCIe receive throughput (bytes/s; from NVML)."),
    ("pcie_link_gen", "DCGM_FI_DEV_PCIE_LINK_GEN", G, "PCIe current link generation."),
    ("pcie_link_width", "DCGM_FI_DEV_PCIE_LINK_WIDTH", G, "PCIe current link width."),
    ("gpu_util_pct", "DCGM_FI_DEV_GPU_UTIL", G, "GPU utilization (in %)."),
    ("mem_copy_util_pct", "DCGM_FI_DEV_MEM_COPY_UTIL", G, "Memory utilization (in %)."),
    ("enc_util_pct", "DCGM_FI_DEV_ENC_UTIL", G, "Encoder utilization (in %)."),
    ("dec_util_pct", "DCGM_FI_DEV_DEC_UTIL", G, "Decoder utilization (in %)."),
    ("fb_total_mib", "DCGM_FI_DEV_FB_TOTAL", G, "Framebuffer memory total (in MiB)."),
    ("fb_free_mib", "DCGM_FI_DEV_FB_FREE", G, "Framebuffer memory free (in MiB)."),
    ("fb_used_mib", "DCGM_FI_DEV_FB_USED", G, "Framebuffer memory used (in MiB)."),
    ("fb_reserved_mib", "DCGM_FI_DEV_FB_RESERVED", G, "Framebuffer memory reserved (in MiB)."),
    ("pstate", "DCGM_FI_DEV_PSTATE", G, "Performance state (P-State) 0-15. 0=highest."),
    ("fan_speed_pct", "DCGM_FI_DEV_FAN_SPEED", G, "Fan speed (in 0-100%)."),
    ("ecc_sbe_vol", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", C, "Total number of single-bit volatile ECC errors."),
    ("ecc_dbe_vol", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", C, "Total number of double-bit volatile ECC errors."),
    ("ecc_sbe_agg", "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", C, "Total number of single-bit persistent ECC errors."),
    ("ecc_dbe_agg", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", C, "Total number of double-bit persistent ECC errors."),
    ("retired_sbe", "DCGM_FI_DEV_RETIRED_SBE", C, "Total number of retired pages due to single-bit errors."),
    ("retired_dbe", "DCGM_FI_DEV_RETIRED_DBE", C, "Total number of retired pages due to double-bit errors."),
    ("retired_pending", "DCGM_FI_DEV_RETIRED_PENDING", G, "Number of pages pending retirement."),
    (
        "remapped_rows_uncorrectable",
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        C,
        "Number of remapped rows for uncorrectable errors",
    ),
    (
        "remapped_rows_correctable",
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        C,
        "Number of remapped rows for correctable errors",
    ),
    (
        "row_remap_pending",
        "DCGM_FI_DEV_ROW_REMAP_PENDING",
        G,
        "Whether remapping of rows is pending (reset needed)",
    ),
    ("row_remap_failure", "DCGM_FI_DEV_ROW_REMAP_FAILURE", G, "Whether remapping of rows has failed"),
    (
        "power_violation_ns",
        "DCGM_FI_DEV_POWER_VIOLATION",
        C,
        "Throttling duration due to power constraints (in ns).",
    ),
    (
        "thermal_violation_ns",
        "DCGM_FI_DEV_THERMAL_VIOLATION",
        C,
        "Throttling duration due to thermal constraints (in ns).",
    ),
)

Owner = Callable[[GpuInfo], Mapping[str, str]]
"""Labels naming who holds a GPU (``pod``, ``namespace``, ``container``), from attribution."""
ProcessLabels = Callable[[int], Mapping[str, str]]
"""Attribution labels of a host PID (container, pod, user, command...)."""


NVLINK_ERROR_COUNTERS = (  # (NvLink field, dcgm-exporter name, HELP), summed over the links
    ("crc_flit_errors", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "Total number of NVLink flow-control CRC errors."),
    ("crc_data_errors", "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", "Total number of NVLink data CRC errors."),
    ("replay_errors", "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", "Total number of NVLink retries."),
    ("recovery_errors", "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", "Total number of NVLink recovery errors."),
)


@dataclass
class _Known:
    info: GpuInfo
    up: bool = True
    since_ms: int = 0


@dataclass
class GpuCollector:
    backend: GpuBackend
    hostname: str
    hostname_label: str = "Hostname"
    expected_gpus: int | None = None
    owner: Owner | None = None
    process_labels: ProcessLabels | None = None
    process_env: Callable[[int], Mapping[str, str]] | None = None
    config_every_ms: int = 300_000
    inventory_path: Path | None = None
    """Where the GPUs ever seen on this node are remembered, so a restarted agent still misses one."""
    sysfs: Path | None = None
    """When set, NVIDIA display/3D controllers on the PCI bus are counted (``sightglass_gpu_pci_devices``)."""
    name: str = "gpu"
    known: dict[str, _Known] = field(default_factory=dict)
    _nvlink_prev: dict[tuple[str, int], tuple[int, int, int]] = field(default_factory=dict)
    _xid_counts: dict[tuple[str, int], int] = field(default_factory=dict)
    _config_hash: dict[str, str] = field(default_factory=dict)
    _config_ts: dict[str, int] = field(default_factory=dict)
    _checked_ts: dict[str, int] = field(default_factory=dict)
    _index_of: dict[str, int] = field(default_factory=dict)
    last_processes: dict[str, list[GpuProcess]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.inventory_path is None:
            return
        try:
            saved = json.loads(self.inventory_path.read_text())
            for g in saved.get("gpus", []):
                info = GpuInfo(
                    int(g["index"]),
                    str(g["uuid"]),
                    str(g.get("name", "")),
                    str(g.get("pci_bus_id", "")),
                    g.get("minor_number"),
                )
                self.known[info.uuid] = _Known(info)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # no (or a damaged) inventory: start from what NVML shows

    def _save_inventory(self) -> None:
        if self.inventory_path is None:
            return
        doc = {
            "gpus": [
                {
                    "index": k.info.index,
                    "uuid": k.info.uuid,
                    "name": k.info.name,
                    "pci_bus_id": k.info.pci_bus_id,
                    "minor_number": k.info.minor_number,
                }
                for k in self.known.values()
            ]
        }
        try:
            self.inventory_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.inventory_path.with_name(self.inventory_path.name + ".tmp")
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, self.inventory_path)
        except OSError as e:
            log.warning("cannot save the GPU inventory to %s: %s", self.inventory_path, e)

    def gpu_id(self, index: int) -> str:
        """Topology id of the GPU with this NVML index / minor number (``gpu:<UUID>`` once seen)."""
        for k in self.known.values():
            if k.info.minor_number == index or (k.info.minor_number is None and k.info.index == index):
                return f"gpu:{k.info.uuid}"
        return f"gpu:{self.hostname}/{index}"

    def _labels(self, info: GpuInfo, driver: str) -> dict[str, str]:
        lb = {
            "gpu": str(info.index),
            "UUID": info.uuid,
            "pci_bus_id": info.pci_bus_id,
            "device": f"nvidia{info.minor_number if info.minor_number is not None else info.index}",
            "modelName": info.name,
            self.hostname_label: self.hostname,
            "DCGM_FI_DRIVER_VERSION": driver,
        }
        if self.owner is not None:
            lb.update(self.owner(info))
        return lb

    def collect(self, out: Collection) -> None:
        sysinfo = self.backend.system()
        driver = sysinfo.driver_version
        n = self.backend.count()
        present: set[str] = set()
        by_uuid: dict[str, dict[str, str]] = {}
        for i in range(n):
            try:
                info = self.backend.info(i)
            except GpuLost:
                continue
            try:
                reading = self.backend.reading(i)
            except GpuLost as e:
                log.warning("GPU %s (%s) lost: %s", i, info.uuid, e)
                self.known.setdefault(info.uuid, _Known(info))
                continue
            present.add(info.uuid)
            self._index_of[info.uuid] = i
            lb = self._labels(info, driver)
            by_uuid[info.uuid] = lb
            for attr, metric, typ, help_ in READING_FIELDS:
                out.add(metric, lb, getattr(reading, attr), type=typ, help=help_)
            self._nvlinks(out, i, info, lb)
            self._mig(out, i, lb)
            self._processes(out, i, info, lb)
            self._config(out, i, info, sysinfo)
        out.add(
            "DCGM_FI_DEV_COUNT",
            {self.hostname_label: self.hostname},
            len(present),
            help="Number of Devices on the node.",
        )
        self._inventory(out, present, driver)
        self._xids(out, by_uuid)

    # ------------------------------------------------------------------ parts
    def _nvlinks(self, out: Collection, i: int, info: GpuInfo, lb: Mapping[str, str]) -> None:
        links = self.backend.nvlinks(i)
        if not links:
            return
        totals = {"crc_flit_errors": 0, "crc_data_errors": 0, "replay_errors": 0, "recovery_errors": 0}
        seen = dict.fromkeys(totals, False)
        tx_rate = rx_rate = 0.0
        have_rate = False
        for link in links:
            llb = {**lb, "nvlink": str(link.link)}
            out.add(
                "sightglass_gpu_nvlink_up",
                llb,
                1 if link.up else 0,
                help="1 when the NVLink link is active (NVML nvmlDeviceGetNvLinkState).",
            )
            for k in totals:
                v = getattr(link, k)
                if v is not None:
                    totals[k] += v
                    seen[k] = True
            if link.tx_kib is not None and link.rx_kib is not None:
                out.add(
                    "sightglass_gpu_nvlink_transmitted_bytes_total",
                    llb,
                    link.tx_kib * 1024,
                    type=C,
                    help="NVLink data transmitted on this link.",
                    unit="By",
                )
                out.add(
                    "sightglass_gpu_nvlink_received_bytes_total",
                    llb,
                    link.rx_kib * 1024,
                    type=C,
                    help="NVLink data received on this link.",
                    unit="By",
                )
                now = out.ts_ms
                prev = self._nvlink_prev.get((info.uuid, link.link))
                self._nvlink_prev[(info.uuid, link.link)] = (now, link.tx_kib, link.rx_kib)
                if prev and now > prev[0] and link.tx_kib >= prev[1] and link.rx_kib >= prev[2]:
                    dt = (now - prev[0]) / 1000
                    tx_rate += (link.tx_kib - prev[1]) * 1024 / dt
                    rx_rate += (link.rx_kib - prev[2]) * 1024 / dt
                    have_rate = True
        for key, name, help_ in NVLINK_ERROR_COUNTERS:
            out.add(name, lb, totals[key] if seen[key] else None, type=C, help=help_)
        if have_rate:
            out.add(
                "DCGM_FI_PROF_NVLINK_TX_BYTES",
                lb,
                tx_rate,
                help="NVLink transmit throughput (bytes/s; from NVML counters).",
            )
            out.add(
                "DCGM_FI_PROF_NVLINK_RX_BYTES",
                lb,
                rx_rate,
                help="NVLink receive throughput (bytes/s; from NVML counters).",
            )

    def _mig(self, out: Collection, i: int, lb: Mapping[str, str]) -> None:
        for m in self.backend.mig_instances(i):
            mlb = {**lb, "GPU_I_ID": str(m.gpu_instance_id), "GPU_I_PROFILE": m.profile}
            out.add(
                "sightglass_gpu_mig_instance_info",
                {
                    **mlb,
                    "mig_uuid": m.uuid,
                    "compute_instance": "" if m.compute_instance_id is None else str(m.compute_instance_id),
                },
                1,
                help="A MIG GPU instance of this GPU (value is always 1).",
            )
            out.add("DCGM_FI_DEV_FB_TOTAL", mlb, m.fb_total_mib, help="Framebuffer memory total (in MiB).")
            out.add("DCGM_FI_DEV_FB_USED", mlb, m.fb_used_mib, help="Framebuffer memory used (in MiB).")
            out.add("DCGM_FI_DEV_FB_FREE", mlb, m.fb_free_mib, help="Framebuffer memory free (in MiB).")

    def _processes(self, out: Collection, i: int, info: GpuInfo, lb: Mapping[str, str]) -> None:
        procs = self.backend.processes(i)
        self.last_processes[info.uuid] = procs
        base = {k: lb[k] for k in ("gpu", "UUID", self.hostname_label, "modelName") if k in lb}
        for p in procs:
            plb: dict[str, str] = {**base, "pid": str(p.pid), "type": p.type}
            if p.gpu_instance_id is not None:
                plb["GPU_I_ID"] = str(p.gpu_instance_id)
            if self.process_labels is not None:
                plb.update(self.process_labels(p.pid))
            if p.name and "command" not in plb:
                plb["command"] = p.name.rsplit("/", 1)[-1]
            out.add(
                "sightglass_gpu_process_memory_used_bytes",
                plb,
                p.used_memory_bytes,
                help="GPU memory a process holds (NVML).",
                unit="By",
            )
            out.add(
                "sightglass_gpu_process_sm_utilization_ratio",
                plb,
                None if p.sm_util_pct is None else p.sm_util_pct / 100,
                help="Share of time a process had a kernel on the SMs (NVML process utilization).",
                unit="1",
            )
            out.add(
                "sightglass_gpu_process_memory_utilization_ratio",
                plb,
                None if p.mem_util_pct is None else p.mem_util_pct / 100,
                help="Share of time a process used the memory bus (NVML process utilization).",
                unit="1",
            )

    def _config(self, out: Collection, i: int, info: GpuInfo, sysinfo: Any) -> None:
        # a dozen NVML calls and a read of each GPU process' environment: at most once a minute
        if out.ts_ms - self._checked_ts.get(info.uuid, -(10**15)) < min(self.config_every_ms, 60_000):
            return
        self._checked_ts[info.uuid] = out.ts_ms
        cfg: dict[str, Any] = {
            "driver_version": sysinfo.driver_version,
            "cuda_driver_version": sysinfo.cuda_driver_version,
            "vbios_version": info.vbios_version,
            "serial": info.serial,
            "model": info.name,
            "pci_bus_id": info.pci_bus_id,
            **self.backend.config(i),
        }
        if self.process_env is not None:
            envs = {}
            for p in self.last_processes.get(info.uuid, []):
                env = self.process_env(p.pid)
                if env:
                    envs[str(p.pid)] = dict(env)
            if envs:
                cfg["process_env"] = envs
        h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()
        last = self._config_ts.get(info.uuid, -(10**15))
        if h != self._config_hash.get(info.uuid) or out.ts_ms - last >= self.config_every_ms:
            self._config_hash[info.uuid] = h
            self._config_ts[info.uuid] = out.ts_ms
            out.configs.append(
                ConfigSnapshot(
                    out.ts_ms,
                    {self.hostname_label: self.hostname, "gpu": str(info.index), "UUID": info.uuid},
                    cfg,
                    source="sightglass-agent/nvml",
                )
            )

    def _inventory(self, out: Collection, present: set[str], driver: str) -> None:
        now = out.ts_ms
        host = {self.hostname_label: self.hostname}
        for uuid in present:
            k = self.known.get(uuid)
            i = self._index_of[uuid]
            if k is None:
                self.known[uuid] = _Known(self.backend.info(i), True, now)
                self._save_inventory()
            elif not k.up:
                k.up, k.since_ms = True, now
                out.events.append(
                    Event(
                        now,
                        "gpu.returned",
                        {**host, "gpu": str(k.info.index), "UUID": uuid},
                        {"modelName": k.info.name, "pci_bus_id": k.info.pci_bus_id},
                        "info",
                        "sightglass-agent",
                    )
                )
        for uuid, k in self.known.items():
            if uuid not in present and k.up:
                k.up, k.since_ms = False, now
                out.events.append(
                    Event(
                        now,
                        "gpu.missing",
                        {**host, "gpu": str(k.info.index), "UUID": uuid},
                        {
                            "modelName": k.info.name,
                            "pci_bus_id": k.info.pci_bus_id,
                            "message": "GPU no longer answers NVML (fallen off the bus?)",
                        },
                        "critical",
                        "sightglass-agent",
                    )
                )
            out.add(
                "sightglass_gpu_up",
                {
                    **host,
                    "gpu": str(k.info.index),
                    "UUID": uuid,
                    "modelName": k.info.name,
                    "pci_bus_id": k.info.pci_bus_id,
                },
                1 if k.up else 0,
                help="1 while the GPU answers NVML; 0 once it stopped answering (e.g. fell off the bus).",
            )
        if self.sysfs is not None:
            out.add(
                "sightglass_gpu_pci_devices",
                host,
                count_nvidia_pci(self.sysfs),
                help="NVIDIA GPUs the kernel sees on the PCI bus (a GPU NVML lost may still be here, or gone).",
            )
        expected = self.expected_gpus if self.expected_gpus is not None else len(self.known)
        out.add(
            "sightglass_gpu_expected",
            host,
            expected,
            help="GPUs this node should have (configured, else every GPU seen).",
        )
        out.add("sightglass_gpu_present", host, len(present), help="GPUs answering NVML now.")

    def _xids(self, out: Collection, by_uuid: Mapping[str, Mapping[str, str]]) -> None:
        host = {self.hostname_label: self.hostname}
        for ev in self.backend.xid_events():
            d = describe(ev.xid)
            k = self.known.get(ev.uuid)
            entity = {**host, "UUID": ev.uuid, **({"gpu": str(k.info.index)} if k else {})}
            out.events.append(
                Event(
                    ev.ts_ms,
                    "gpu.xid",
                    entity,
                    {"xid": ev.xid, "err_msg": d.message, "action": d.action},
                    d.severity,
                    "sightglass-agent/nvml",
                )
            )
            key = (ev.uuid, ev.xid)
            self._xid_counts[key] = self._xid_counts.get(key, 0) + 1
        for (uuid, xid), count in self._xid_counts.items():
            lb = dict(by_uuid.get(uuid) or {**host, "UUID": uuid})
            out.add(
                "sightglass_gpu_xid_errors_total",
                {**lb, "xid": str(xid)},
                count,
                type=C,
                help="XID errors seen through NVML events since the agent started.",
            )


def count_nvidia_pci(sysfs: Path) -> int:
    """PCI functions with vendor 0x10de and class 0x0300/0x0302 (VGA / 3D controller) under ``sysfs``."""
    n = 0
    try:
        devices = list((sysfs / "bus" / "pci" / "devices").iterdir())
    except OSError:
        return 0
    for d in devices:
        try:
            if (d / "vendor").read_text().strip() == "0x10de" and (d / "class").read_text().strip()[:6] in (
                "0x0300",
                "0x0302",
            ):
                n += 1
        except OSError:
            continue
    return n


def open_gpu_collector(
    config: AgentConfig, backend: GpuBackend | None = None
) -> tuple[GpuCollector | None, str]:
    """The GPU collector over NVML, or ``(None, one line why not)`` on a host without NVIDIA GPUs."""
    if backend is None:
        from sightglass.agent.nvml import PynvmlBackend

        try:
            backend = PynvmlBackend()
        except NvmlUnavailable as e:
            return None, f"gpu: no NVIDIA GPU collection on this host: {e}"
    from sightglass.agent.attribution import Attributor

    attr = Attributor(config.procfs)
    return (
        GpuCollector(
            backend,
            config.hostname,
            config.hostname_label,
            config.expected_gpus,
            process_labels=attr.labels,
            process_env=attr.nccl_env,
            config_every_ms=_ms(config.config_every),
            inventory_path=Path(config.spool_dir) / "gpu-inventory.json",
            sysfs=Path(config.sysfs),
        ),
        "",
    )


def _ms(d: str) -> int:
    from sightglass.config import parse_duration_ms

    return parse_duration_ms(d)

"""NVML behind a narrow interface: what the GPU collector reads, and the pynvml calls that read it.

:class:`GpuBackend` is the whole surface the collector uses. :class:`PynvmlBackend` implements it
over ``nvidia-ml-py`` (``pynvml``); :class:`~sightglass.agent.smi_xml.SmiXmlBackend` implements it
over recorded ``nvidia-smi -q -x`` output, which is how the collector is tested without a GPU. A
reading NVML does not support on a device is ``None`` (not reported), never 0. A device that fell
off the bus raises :class:`GpuLost`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class NvmlUnavailable(Exception):
    """NVML cannot be used on this host (no driver, no library, no permission); one line why."""


class GpuLost(Exception):
    """The device stopped answering (NVML_ERROR_GPU_IS_LOST / UNKNOWN): it fell off the bus."""


@dataclass(frozen=True, slots=True)
class SystemInfo:
    driver_version: str
    cuda_driver_version: str | None = None
    nvml_version: str | None = None


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    uuid: str
    name: str
    pci_bus_id: str = ""
    minor_number: int | None = None
    serial: str | None = None
    vbios_version: str | None = None


@dataclass(slots=True)
class GpuReading:
    """One reading of one GPU, in the units dcgm-exporter reports (MHz, W, mJ, °C, %, MiB)."""

    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    clocks_event_reasons: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    energy_mj: float | None = None
    gpu_temp_c: float | None = None
    memory_temp_c: float | None = None
    slowdown_temp_c: float | None = None
    gpu_util_pct: float | None = None
    mem_copy_util_pct: float | None = None
    enc_util_pct: float | None = None
    dec_util_pct: float | None = None
    fb_total_mib: float | None = None
    fb_used_mib: float | None = None
    fb_free_mib: float | None = None
    fb_reserved_mib: float | None = None
    pstate: int | None = None
    fan_speed_pct: float | None = None
    pcie_replay: int | None = None
    pcie_tx_bytes_per_s: float | None = None
    pcie_rx_bytes_per_s: float | None = None
    pcie_link_gen: int | None = None
    pcie_link_width: int | None = None
    ecc_sbe_vol: int | None = None
    ecc_dbe_vol: int | None = None
    ecc_sbe_agg: int | None = None
    ecc_dbe_agg: int | None = None
    retired_sbe: int | None = None
    retired_dbe: int | None = None
    retired_pending: int | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    row_remap_pending: int | None = None
    row_remap_failure: int | None = None
    power_violation_ns: int | None = None
    thermal_violation_ns: int | None = None


@dataclass(frozen=True, slots=True)
class NvLink:
    link: int
    up: bool
    crc_flit_errors: int | None = None
    crc_data_errors: int | None = None
    replay_errors: int | None = None
    recovery_errors: int | None = None
    tx_kib: int | None = None
    """Cumulative data KiB transmitted (NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX)."""
    rx_kib: int | None = None


@dataclass(frozen=True, slots=True)
class MigInstance:
    gpu_instance_id: int
    compute_instance_id: int | None
    uuid: str
    profile: str
    fb_total_mib: float | None = None
    fb_used_mib: float | None = None
    fb_free_mib: float | None = None


@dataclass(frozen=True, slots=True)
class GpuProcess:
    pid: int
    """Host PID as NVML reports it (the driver is not PID-namespace aware)."""
    used_memory_bytes: int | None = None
    sm_util_pct: float | None = None
    mem_util_pct: float | None = None
    gpu_instance_id: int | None = None
    type: str = "C"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class XidEvent:
    uuid: str
    xid: int
    ts_ms: int


@dataclass(slots=True)
class GpuConfig:
    values: dict[str, Any] = field(default_factory=dict)


class GpuBackend(Protocol):
    """Everything the GPU collector asks of NVML. Index = NVML enumeration index."""

    def system(self) -> SystemInfo: ...
    def count(self) -> int: ...
    def info(self, index: int) -> GpuInfo: ...
    def reading(self, index: int) -> GpuReading: ...
    def nvlinks(self, index: int) -> list[NvLink]: ...
    def mig_instances(self, index: int) -> list[MigInstance]: ...
    def processes(self, index: int) -> list[GpuProcess]: ...
    def config(self, index: int) -> dict[str, Any]: ...
    def xid_events(self) -> list[XidEvent]:
        """XID critical errors seen since the last call (from an NVML event set)."""
        ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------------- pynvml
class PynvmlBackend:
    """:class:`GpuBackend` over ``pynvml``. ``PynvmlBackend()`` raises :class:`NvmlUnavailable`."""

    MAX_NVLINKS = 18

    def __init__(self, module: Any = None) -> None:
        if module is None:
            try:
                import pynvml as real
            except ImportError as e:
                raise NvmlUnavailable(
                    f"nvidia-ml-py is not installed ({e}); pip install nvidia-ml-py"
                ) from None
            module = real
        pynvml = module
        self.n: Any = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            raise NvmlUnavailable(f"NVML init failed: {e}") from None
        self._handles: dict[int, Any] = {}
        self._proc_ts: dict[int, int] = {}
        self._xids: list[XidEvent] = []
        self._xid_lock = threading.Lock()
        self._stop = threading.Event()
        self._events: Any = None
        self._thread: threading.Thread | None = None
        self._start_events()

    # -- helpers
    def _h(self, index: int) -> Any:
        h = self._handles.get(index)
        if h is None:
            h = self._handles[index] = self._call(self.n.nvmlDeviceGetHandleByIndex, index)
        return h

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except self.n.NVMLError as e:
            if e.value in (self.n.NVML_ERROR_GPU_IS_LOST, getattr(self.n, "NVML_ERROR_UNKNOWN", -1)):
                raise GpuLost(str(e)) from None
            raise

    def _opt(self, fn: Callable[..., T], *args: Any) -> T | None:
        """The value, or None when this device does not support it."""
        try:
            return self._call(fn, *args)
        except GpuLost:
            raise
        except self.n.NVMLError:
            return None

    @staticmethod
    def _s(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    # -- GpuBackend
    def system(self) -> SystemInfo:
        n = self.n
        cuda = self._opt(n.nvmlSystemGetCudaDriverVersion)
        return SystemInfo(
            driver_version=self._s(n.nvmlSystemGetDriverVersion()),
            cuda_driver_version=f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None,
            nvml_version=self._s(self._opt(n.nvmlSystemGetNVMLVersion) or "") or None,
        )

    def count(self) -> int:
        return int(self.n.nvmlDeviceGetCount())

    def info(self, index: int) -> GpuInfo:
        n, h = self.n, self._h(index)
        pci = self._opt(n.nvmlDeviceGetPciInfo, h)
        return GpuInfo(
            index=index,
            uuid=self._s(self._call(n.nvmlDeviceGetUUID, h)),
            name=self._s(self._call(n.nvmlDeviceGetName, h)),
            pci_bus_id=self._s(pci.busId) if pci is not None else "",
            minor_number=self._opt(n.nvmlDeviceGetMinorNumber, h),
            serial=(lambda s: self._s(s) if s is not None else None)(self._opt(n.nvmlDeviceGetSerial, h)),
            vbios_version=(lambda s: self._s(s) if s is not None else None)(
                self._opt(n.nvmlDeviceGetVbiosVersion, h)
            ),
        )

    def _field(self, h: Any, field_id: int, scope: int | None = None) -> float | None:
        n = self.n
        ids: list[Any] = [field_id if scope is None else (field_id, scope)]
        vals = self._opt(n.nvmlDeviceGetFieldValues, h, ids)
        if not vals or vals[0].nvmlReturn != n.NVML_SUCCESS:
            return None
        fv = vals[0]
        attr = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal"}.get(
            fv.valueType, "ullVal"
        )
        return float(getattr(fv.value, attr))

    def reading(self, index: int) -> GpuReading:
        n, h, o = self.n, self._h(index), self._opt
        r = GpuReading()
        r.sm_clock_mhz = o(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_SM)
        r.mem_clock_mhz = o(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_MEM)
        reasons = (
            getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or n.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        r.clocks_event_reasons = o(reasons, h)
        mw = o(n.nvmlDeviceGetPowerUsage, h)
        r.power_w = mw / 1000 if mw is not None else None
        lim = o(n.nvmlDeviceGetEnforcedPowerLimit, h)
        r.power_limit_w = lim / 1000 if lim is not None else None
        r.energy_mj = o(n.nvmlDeviceGetTotalEnergyConsumption, h)
        r.gpu_temp_c = o(n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU)
        r.memory_temp_c = self._field(h, n.NVML_FI_DEV_MEMORY_TEMP)
        r.slowdown_temp_c = o(n.nvmlDeviceGetTemperatureThreshold, h, n.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)
        u = o(n.nvmlDeviceGetUtilizationRates, h)
        if u is not None:
            r.gpu_util_pct, r.mem_copy_util_pct = u.gpu, u.memory
        enc = o(n.nvmlDeviceGetEncoderUtilization, h)
        dec = o(n.nvmlDeviceGetDecoderUtilization, h)
        r.enc_util_pct = enc[0] if enc else None
        r.dec_util_pct = dec[0] if dec else None
        mem = o(n.nvmlDeviceGetMemoryInfo, h, n.nvmlMemory_v2) if hasattr(n, "nvmlMemory_v2") else None
        mem = mem or o(n.nvmlDeviceGetMemoryInfo, h)
        if mem is not None:
            mib = 1024 * 1024
            r.fb_total_mib, r.fb_used_mib, r.fb_free_mib = mem.total / mib, mem.used / mib, mem.free / mib
            reserved = getattr(mem, "reserved", None)
            r.fb_reserved_mib = reserved / mib if reserved is not None else None
        r.pstate = o(n.nvmlDeviceGetPerformanceState, h)
        r.fan_speed_pct = o(n.nvmlDeviceGetFanSpeed, h)
        r.pcie_replay = o(n.nvmlDeviceGetPcieReplayCounter, h)
        tx = o(n.nvmlDeviceGetPcieThroughput, h, n.NVML_PCIE_UTIL_TX_BYTES)
        rx = o(n.nvmlDeviceGetPcieThroughput, h, n.NVML_PCIE_UTIL_RX_BYTES)
        r.pcie_tx_bytes_per_s = tx * 1024 if tx is not None else None  # NVML: KB/s over 20 ms
        r.pcie_rx_bytes_per_s = rx * 1024 if rx is not None else None
        r.pcie_link_gen = o(n.nvmlDeviceGetCurrPcieLinkGeneration, h)
        r.pcie_link_width = o(n.nvmlDeviceGetCurrPcieLinkWidth, h)
        corr, unc = n.NVML_MEMORY_ERROR_TYPE_CORRECTED, n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
        r.ecc_sbe_vol = o(n.nvmlDeviceGetTotalEccErrors, h, corr, n.NVML_VOLATILE_ECC)
        r.ecc_dbe_vol = o(n.nvmlDeviceGetTotalEccErrors, h, unc, n.NVML_VOLATILE_ECC)
        r.ecc_sbe_agg = o(n.nvmlDeviceGetTotalEccErrors, h, corr, n.NVML_AGGREGATE_ECC)
        r.ecc_dbe_agg = o(n.nvmlDeviceGetTotalEccErrors, h, unc, n.NVML_AGGREGATE_ECC)
        sbe = o(n.nvmlDeviceGetRetiredPages, h, n.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS)
        dbe = o(n.nvmlDeviceGetRetiredPages, h, n.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
        r.retired_sbe = len(sbe) if sbe is not None else None
        r.retired_dbe = len(dbe) if dbe is not None else None
        pend = o(n.nvmlDeviceGetRetiredPagesPendingStatus, h)
        r.retired_pending = int(pend) if pend is not None else None
        rows = o(n.nvmlDeviceGetRemappedRows, h)
        if rows is not None:
            c, u_, p, f = rows
            r.remapped_rows_correctable, r.remapped_rows_uncorrectable = c, u_
            r.row_remap_pending, r.row_remap_failure = int(bool(p)), int(bool(f))
        pv = o(n.nvmlDeviceGetViolationStatus, h, n.NVML_PERF_POLICY_POWER)
        tv = o(n.nvmlDeviceGetViolationStatus, h, n.NVML_PERF_POLICY_THERMAL)
        r.power_violation_ns = pv.violationTime if pv is not None else None
        r.thermal_violation_ns = tv.violationTime if tv is not None else None
        return r

    def nvlinks(self, index: int) -> list[NvLink]:
        n, h, o = self.n, self._h(index), self._opt
        out = []
        for link in range(self.MAX_NVLINKS):
            state = o(n.nvmlDeviceGetNvLinkState, h, link)
            if state is None:
                continue  # no such link on this device
            err = {
                k: o(n.nvmlDeviceGetNvLinkErrorCounter, h, link, c)
                for k, c in (
                    ("crc_flit_errors", n.NVML_NVLINK_ERROR_DL_CRC_FLIT),
                    ("crc_data_errors", n.NVML_NVLINK_ERROR_DL_CRC_DATA),
                    ("replay_errors", n.NVML_NVLINK_ERROR_DL_REPLAY),
                    ("recovery_errors", n.NVML_NVLINK_ERROR_DL_RECOVERY),
                )
            }
            tx = self._field(h, n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, link)
            rx = self._field(h, n.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, link)
            out.append(
                NvLink(
                    link,
                    bool(state == n.NVML_FEATURE_ENABLED),
                    tx_kib=int(tx) if tx is not None else None,
                    rx_kib=int(rx) if rx is not None else None,
                    **err,
                )
            )
        return out

    def mig_instances(self, index: int) -> list[MigInstance]:
        n, h, o = self.n, self._h(index), self._opt
        mode = o(n.nvmlDeviceGetMigMode, h)
        if not mode or mode[0] != n.NVML_DEVICE_MIG_ENABLE:
            return []
        out = []
        for slot in range(o(n.nvmlDeviceGetMaxMigDeviceCount, h) or 0):
            mig = o(n.nvmlDeviceGetMigDeviceHandleByIndex, h, slot)
            if mig is None:
                continue
            name = self._s(o(n.nvmlDeviceGetName, mig) or "")
            mem = o(n.nvmlDeviceGetMemoryInfo, mig)
            mib = 1024 * 1024
            out.append(
                MigInstance(
                    gpu_instance_id=int(self._call(n.nvmlDeviceGetGpuInstanceId, mig)),
                    compute_instance_id=o(n.nvmlDeviceGetComputeInstanceId, mig),
                    uuid=self._s(o(n.nvmlDeviceGetUUID, mig) or ""),
                    profile=name.rsplit(" ", 1)[-1] if " MIG " in name else name,
                    fb_total_mib=mem.total / mib if mem else None,
                    fb_used_mib=mem.used / mib if mem else None,
                    fb_free_mib=mem.free / mib if mem else None,
                )
            )
        return out

    def processes(self, index: int) -> list[GpuProcess]:
        n, h, o = self.n, self._h(index), self._opt
        util: dict[int, Any] = {}
        samples = o(n.nvmlDeviceGetProcessUtilization, h, self._proc_ts.get(index, 0))
        for s in samples or []:
            util[int(s.pid)] = s
            self._proc_ts[index] = max(self._proc_ts.get(index, 0), int(s.timeStamp))
        out = []
        for kind, fn in (
            ("C", n.nvmlDeviceGetComputeRunningProcesses),
            ("G", n.nvmlDeviceGetGraphicsRunningProcesses),
        ):
            for p in o(fn, h) or []:
                u = util.get(int(p.pid))
                mem = getattr(p, "usedGpuMemory", None)
                gi = getattr(p, "gpuInstanceId", None)
                out.append(
                    GpuProcess(
                        pid=int(p.pid),
                        used_memory_bytes=int(mem) if mem is not None else None,
                        sm_util_pct=float(u.smUtil) if u is not None else None,
                        mem_util_pct=float(u.memUtil) if u is not None else None,
                        gpu_instance_id=int(gi) if gi is not None and gi != 0xFFFFFFFF else None,
                        type=kind,
                    )
                )
        return out

    def config(self, index: int) -> dict[str, Any]:
        n, h, o = self.n, self._h(index), self._opt

        def pair(v: Any) -> tuple[Any, Any] | None:
            return (v[0], v[1]) if v is not None else None

        ecc, mig = pair(o(n.nvmlDeviceGetEccMode, h)), pair(o(n.nvmlDeviceGetMigMode, h))
        mw = {
            k: o(f, h)
            for k, f in (
                ("power_limit_w", n.nvmlDeviceGetPowerManagementLimit),
                ("default_power_limit_w", n.nvmlDeviceGetPowerManagementDefaultLimit),
                ("enforced_power_limit_w", n.nvmlDeviceGetEnforcedPowerLimit),
            )
        }
        cfg: dict[str, Any] = {k: (v / 1000 if v is not None else None) for k, v in mw.items()}
        cfg.update(
            ecc_mode_current="Enabled" if ecc and ecc[0] else ("Disabled" if ecc else None),
            ecc_mode_pending="Enabled" if ecc and ecc[1] else ("Disabled" if ecc else None),
            mig_mode_current="Enabled" if mig and mig[0] else ("Disabled" if mig else None),
            mig_mode_pending="Enabled" if mig and mig[1] else ("Disabled" if mig else None),
            persistence_mode="Enabled" if o(n.nvmlDeviceGetPersistenceMode, h) else "Disabled",
            compute_mode=o(n.nvmlDeviceGetComputeMode, h),
            applications_sm_clock_mhz=o(n.nvmlDeviceGetApplicationsClock, h, n.NVML_CLOCK_SM),
            applications_mem_clock_mhz=o(n.nvmlDeviceGetApplicationsClock, h, n.NVML_CLOCK_MEM),
            max_sm_clock_mhz=o(n.nvmlDeviceGetMaxClockInfo, h, n.NVML_CLOCK_SM),
            max_mem_clock_mhz=o(n.nvmlDeviceGetMaxClockInfo, h, n.NVML_CLOCK_MEM),
        )
        return cfg

    # -- XID events through an NVML event set, read by a thread so collection never blocks
    def _start_events(self) -> None:
        n = self.n
        try:
            self._events = n.nvmlEventSetCreate()
            for i in range(self.count()):
                # a device that cannot report XIDs through events (e.g. some consumer GPUs) is skipped
                with contextlib.suppress(n.NVMLError):
                    n.nvmlDeviceRegisterEvents(self._h(i), n.nvmlEventTypeXidCriticalError, self._events)
        except n.NVMLError:
            self._events = None
            return
        self._thread = threading.Thread(target=self._wait_events, name="sightglass-agent-xid", daemon=True)
        self._thread.start()

    def _wait_events(self) -> None:
        n = self.n
        wait = getattr(n, "nvmlEventSetWait_v2", None) or n.nvmlEventSetWait
        while not self._stop.is_set():
            try:
                data = wait(self._events, 500)
            except n.NVMLError:
                continue  # timeout (or a transient error): wait again
            try:
                uuid = self._s(n.nvmlDeviceGetUUID(data.device))
            except n.NVMLError:
                uuid = ""
            with self._xid_lock:
                self._xids.append(XidEvent(uuid, int(data.eventData), int(time.time() * 1000)))

    def xid_events(self) -> list[XidEvent]:
        with self._xid_lock:
            out, self._xids = self._xids, []
        return out

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        try:
            if self._events is not None:
                self.n.nvmlEventSetFree(self._events)
            self.n.nvmlShutdown()
        except self.n.NVMLError:
            pass

"""The pynvml wrapper itself, against a stand-in ``pynvml`` module answering with recorded values.

The stand-in keeps the real module's constants and error classes (``NVMLError(code)`` builds the
real subclass) and answers each call the wrapper makes with the values a recorded
``nvidia-smi -q -x`` of an A100 holds; unsupported calls raise NVML_ERROR_NOT_SUPPORTED as the
library does. It checks the wrapper's conversions (mW -> W, bytes -> MiB, KB/s -> B/s, CUDA
12020 -> "12.2"), that "not supported" is None and not 0, that a lost GPU raises GpuLost, and that
XIDs arrive through the event-set thread.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest
from agent_paths import FIXTURES

from sightglass.agent.collection import Collection
from sightglass.agent.gpu import GpuCollector
from sightglass.agent.nvml import GpuLost, NvmlUnavailable, PynvmlBackend
from sightglass.agent.smi_xml import SmiXmlBackend

REC = SmiXmlBackend.from_file(FIXTURES / "a100-sxm4-v12.xml").gpus[0]


def _err(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


class FakeNvml:
    def __init__(self, n_gpus: int = 2) -> None:
        for k in dir(pynvml):
            if k.startswith(("NVML_", "NVMLError", "nvmlEventType", "nvmlMemory")):
                setattr(self, k, getattr(pynvml, k))
        self.n_gpus = n_gpus
        self.lost: set[int] = set()
        self.events: list[Any] = []
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("nvml"):  # anything the wrapper asks that a recorded A100 does not have

            def unsupported(*a: Any) -> Any:
                raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)

            return unsupported
        raise AttributeError(name)

    def _dev(self, h: int) -> int:
        if h in self.lost:
            raise _err(pynvml.NVML_ERROR_GPU_IS_LOST)
        return h

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str:
        return "535.54.03"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12020

    def nvmlDeviceGetCount(self) -> int:
        return self.n_gpus

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"{REC.info.uuid[:-1]}{self._dev(h)}"

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return REC.info.name.encode()  # old pynvml returned bytes

    def nvmlDeviceGetPciInfo(self, h: int) -> Any:
        return SimpleNamespace(busId=f"00000000:0{h + 1}:00.0")

    def nvmlDeviceGetMinorNumber(self, h: int) -> int:
        return h

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        self._dev(h)
        return {pynvml.NVML_CLOCK_SM: 1275, pynvml.NVML_CLOCK_MEM: 1593}[clock]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        return 0x4 if h == 1 else 0  # GPU 1 power-capped

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 67030  # mW

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return 500_000

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        return 123_456_789  # mJ

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return 27

    def nvmlDeviceGetFieldValues(self, h: int, ids: list[Any]) -> list[Any]:
        fid = ids[0] if isinstance(ids[0], int) else ids[0][0]
        if fid == pynvml.NVML_FI_DEV_MEMORY_TEMP:
            return [
                SimpleNamespace(nvmlReturn=pynvml.NVML_SUCCESS, valueType=1, value=SimpleNamespace(uiVal=44))
            ]
        return [SimpleNamespace(nvmlReturn=pynvml.NVML_ERROR_NOT_SUPPORTED, valueType=1, value=None)]

    def nvmlDeviceGetMemoryInfo(self, h: int, version: Any = None) -> Any:
        mib = 1024 * 1024
        return SimpleNamespace(total=81920 * mib, used=50 * mib, free=80999 * mib, reserved=869 * mib)

    def nvmlDeviceGetPcieThroughput(self, h: int, counter: int) -> int:
        return 4000 if counter == pynvml.NVML_PCIE_UTIL_TX_BYTES else 0

    def nvmlDeviceGetPcieReplayCounter(self, h: int) -> int:
        return 0

    def nvmlDeviceGetTotalEccErrors(self, h: int, kind: int, counter: int) -> int:
        return 0

    def nvmlDeviceGetRemappedRows(self, h: int) -> tuple[int, int, int, int]:
        return (2, 0, 1, 0)  # 2 correctable remaps, a remap pending (reset needed)

    def nvmlDeviceGetPerformanceState(self, h: int) -> int:
        return 0

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [
            SimpleNamespace(
                pid=4242, usedGpuMemory=1 << 30, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF
            )
        ]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: int) -> list[Any]:
        return []

    def nvmlDeviceGetProcessUtilization(self, h: int, ts: int) -> list[Any]:
        return [SimpleNamespace(pid=4242, timeStamp=ts + 1, smUtil=87, memUtil=40, encUtil=0, decUtil=0)]

    def nvmlDeviceGetMigMode(self, h: int) -> tuple[int, int]:
        return (0, 0)

    def nvmlDeviceGetEccMode(self, h: int) -> tuple[int, int]:
        return (1, 1)

    def nvmlDeviceGetPowerManagementLimit(self, h: int) -> int:
        return 500_000

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: int) -> int:
        return 500_000

    def nvmlDeviceGetNvLinkState(self, h: int, link: int) -> int:
        if link >= 2:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return pynvml.NVML_FEATURE_ENABLED if link == 0 else pynvml.NVML_FEATURE_DISABLED

    def nvmlDeviceGetNvLinkErrorCounter(self, h: int, link: int, counter: int) -> int:
        return 3 if counter == pynvml.NVML_NVLINK_ERROR_DL_REPLAY else 0

    def nvmlEventSetCreate(self) -> str:
        return "set"

    def nvmlDeviceRegisterEvents(self, h: int, kinds: int, es: str) -> None:
        self.calls.append(f"register {h}")

    def nvmlEventSetWait_v2(self, es: str, timeout_ms: int) -> Any:
        if self.events:
            return self.events.pop(0)
        time.sleep(0.01)
        raise _err(pynvml.NVML_ERROR_TIMEOUT)

    def nvmlEventSetFree(self, es: str) -> None: ...


def test_wrapper_conversions_and_unsupported_is_none() -> None:
    fake = FakeNvml()
    b = PynvmlBackend(module=fake)
    try:
        assert b.system().cuda_driver_version == "12.2" and b.count() == 2
        info = b.info(0)
        assert info.name == "NVIDIA A100-SXM4-80GB" and info.pci_bus_id == "00000000:01:00.0"
        r = b.reading(0)
        assert r.power_w == 67.03 and r.power_limit_w == 500 and r.energy_mj == 123_456_789
        assert r.memory_temp_c == 44 and r.fb_used_mib == 50 and r.fb_reserved_mib == 869
        assert r.pcie_tx_bytes_per_s == 4000 * 1024
        assert r.remapped_rows_correctable == 2 and r.row_remap_pending == 1 and r.row_remap_failure == 0
        assert r.gpu_util_pct is None and r.fan_speed_pct is None  # not supported here: not reported, not 0
        links = b.nvlinks(0)
        assert [(link.link, link.up, link.replay_errors) for link in links] == [(0, True, 3), (1, False, 3)]
        (p,) = b.processes(0)
        assert (
            p.pid == 4242
            and p.used_memory_bytes == 1 << 30
            and p.sm_util_pct == 87
            and p.gpu_instance_id is None
        )
        cfg = b.config(0)
        assert (
            cfg["ecc_mode_current"] == "Enabled"
            and cfg["mig_mode_current"] == "Disabled"
            and cfg["power_limit_w"] == 500
        )
        assert fake.calls == ["register 0", "register 1"]
    finally:
        b.close()


def test_collector_over_the_wrapper_lost_gpu_and_xid_events() -> None:
    fake = FakeNvml()
    b = PynvmlBackend(module=fake)
    try:
        c = GpuCollector(b, "node-a")
        col = Collection(1_000)
        c.collect(col)
        reasons = {
            k.label_dict()["gpu"]: v
            for k, v in zip(col.keys, col.values, strict=True)
            if k.metric == "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"
        }
        assert reasons == {"0": 0, "1": 4}
        fake.events.append(
            SimpleNamespace(eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=79, device=1)
        )
        deadline = time.monotonic() + 5
        while fake.events and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        fake.lost.add(1)
        col = Collection(2_000)
        c.collect(col)
        kinds = sorted(e.kind for e in col.events)
        assert kinds == ["gpu.missing", "gpu.xid"]
        (xid,) = [e for e in col.events if e.kind == "gpu.xid"]
        assert xid.attributes["xid"] == 79 and xid.entity["UUID"].endswith("1")
        with pytest.raises(GpuLost):
            b.reading(1)
    finally:
        b.close()


def test_init_failure_is_nvml_unavailable() -> None:
    fake = FakeNvml()

    def boom() -> None:
        raise _err(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    fake.nvmlInit = boom  # type: ignore[method-assign]
    with pytest.raises(NvmlUnavailable, match="NVML init failed: Driver Not Loaded"):
        PynvmlBackend(module=fake)

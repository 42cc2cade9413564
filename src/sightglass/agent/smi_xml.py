"""A :class:`~sightglass.agent.nvml.GpuBackend` over recorded ``nvidia-smi -q -x`` output.

``nvidia-smi`` prints what NVML returns, so a recorded XML is a faithful record of the NVML values
of a real GPU at one instant (schema v11 to v13: ``clocks_throttle_reasons`` became
``clocks_event_reasons``, ``power_readings`` became ``gpu_power_readings`` with
``instant_power_draw``). Used to test the GPU collector and to feed ``bench/agent.py``; a GPU can be
marked lost and XIDs injected to test inventory and events.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

from sightglass.agent.nvml import (
    GpuInfo,
    GpuLost,
    GpuProcess,
    GpuReading,
    MigInstance,
    NvLink,
    SystemInfo,
    XidEvent,
)

_NUM_RE = re.compile(r"^\s*(-?[\d.]+)")
# nvidia-smi tag suffix -> DCGM_CLOCKS_EVENT_REASON_* bit (conventions §1.4)
_REASON_BITS = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clocks_setting": 0x100,
}


def _num(text: str | None) -> float | None:
    """``"1275 MHz"`` -> 1275.0; ``"N/A"``/empty -> None."""
    if not text:
        return None
    m = _NUM_RE.match(text)
    return float(m.group(1)) if m else None


def _int(text: str | None) -> int | None:
    v = _num(text)
    return int(v) if v is not None else None


def _t(el: ET.Element | None, path: str) -> str | None:
    if el is None:
        return None
    found = el.find(path)
    if found is None or found.text is None:
        return None
    s = found.text.strip()
    return s or None


def _yes(text: str | None) -> int | None:
    if text is None:
        return None
    return {"yes": 1, "no": 0}.get(text.lower())


class _Gpu:
    def __init__(self, el: ET.Element, index: int) -> None:
        self.el = el
        self.info = GpuInfo(
            index=index,
            uuid=_t(el, "uuid") or f"GPU-unknown-{index}",
            name=_t(el, "product_name") or "",
            pci_bus_id=_t(el, "pci/pci_bus_id") or el.get("id") or "",
            minor_number=_int(_t(el, "minor_number")),
            serial=_t(el, "serial"),
            vbios_version=_t(el, "vbios_version"),
        )
        self.reading = self._reading()
        self._mig = self._parse_mig()
        self._procs = self._parse_processes()

    def _reading(self) -> GpuReading:
        el, r = self.el, GpuReading()
        r.sm_clock_mhz = _num(_t(el, "clocks/sm_clock"))
        r.mem_clock_mhz = _num(_t(el, "clocks/mem_clock"))
        reasons = el.find("clocks_event_reasons")
        if reasons is None:
            reasons = el.find("clocks_throttle_reasons")
        if reasons is not None:
            mask = 0
            for child in reasons:
                for suffix, bit in _REASON_BITS.items():
                    if child.tag.endswith("_reason_" + suffix) and (child.text or "").strip() == "Active":
                        mask |= bit
            r.clocks_event_reasons = mask
        pw = el.find("gpu_power_readings")
        if pw is None:
            pw = el.find("power_readings")
        r.power_w = _num(_t(pw, "power_draw")) or _num(_t(pw, "instant_power_draw"))
        r.power_limit_w = _num(_t(pw, "enforced_power_limit")) or _num(_t(pw, "current_power_limit"))
        r.gpu_temp_c = _num(_t(el, "temperature/gpu_temp"))
        r.memory_temp_c = _num(_t(el, "temperature/memory_temp"))
        r.slowdown_temp_c = _num(_t(el, "temperature/gpu_temp_slow_threshold"))
        r.gpu_util_pct = _num(_t(el, "utilization/gpu_util"))
        r.mem_copy_util_pct = _num(_t(el, "utilization/memory_util"))
        r.enc_util_pct = _num(_t(el, "utilization/encoder_util"))
        r.dec_util_pct = _num(_t(el, "utilization/decoder_util"))
        r.fb_total_mib = _num(_t(el, "fb_memory_usage/total"))
        r.fb_used_mib = _num(_t(el, "fb_memory_usage/used"))
        r.fb_free_mib = _num(_t(el, "fb_memory_usage/free"))
        r.fb_reserved_mib = _num(_t(el, "fb_memory_usage/reserved"))
        ps = _t(el, "performance_state")
        r.pstate = int(ps[1:]) if ps and ps.startswith("P") and ps[1:].isdigit() else None
        r.fan_speed_pct = _num(_t(el, "fan_speed"))
        r.pcie_replay = _int(_t(el, "pci/replay_counter"))
        tx, rx = _num(_t(el, "pci/tx_util")), _num(_t(el, "pci/rx_util"))
        r.pcie_tx_bytes_per_s = tx * 1024 if tx is not None else None  # "KB/s", as NVML reports it
        r.pcie_rx_bytes_per_s = rx * 1024 if rx is not None else None
        r.pcie_link_gen = _int(_t(el, "pci/pci_gpu_link_info/pcie_gen/current_link_gen"))
        r.pcie_link_width = _int(_t(el, "pci/pci_gpu_link_info/link_widths/current_link_width"))
        r.ecc_sbe_vol, r.ecc_dbe_vol = self._ecc("volatile")
        r.ecc_sbe_agg, r.ecc_dbe_agg = self._ecc("aggregate")
        r.retired_sbe = _int(_t(el, "retired_pages/multiple_single_bit_retirement/retired_count"))
        r.retired_dbe = _int(_t(el, "retired_pages/double_bit_retirement/retired_count"))
        r.retired_pending = _yes(_t(el, "retired_pages/pending_retirement"))
        r.remapped_rows_correctable = _int(_t(el, "remapped_rows/remapped_row_corr"))
        r.remapped_rows_uncorrectable = _int(_t(el, "remapped_rows/remapped_row_unc"))
        r.row_remap_pending = _yes(_t(el, "remapped_rows/remapped_row_pending"))
        r.row_remap_failure = _yes(_t(el, "remapped_rows/remapped_row_failure"))
        return r

    def _ecc(self, scope: str) -> tuple[int | None, int | None]:
        base = self.el.find(f"ecc_errors/{scope}")
        if base is None:
            return None, None
        if base.find("sram_correctable") is not None:  # schema v12+
            corr = [_int(_t(base, t)) for t in ("sram_correctable", "dram_correctable")]
            unc = [
                _int(_t(base, t))
                for t in (
                    "sram_uncorrectable",
                    "sram_uncorrectable_parity",
                    "sram_uncorrectable_secded",
                    "dram_uncorrectable",
                )
            ]
        else:  # schema v11: single_bit/double_bit totals
            corr = [_int(_t(base, "single_bit/total"))]
            unc = [_int(_t(base, "double_bit/total"))]
        c = [v for v in corr if v is not None]
        u = [v for v in unc if v is not None]
        return (sum(c) if c else None), (sum(u) if u else None)

    def mig(self) -> list[MigInstance]:
        return list(self._mig)

    def processes(self) -> list[GpuProcess]:
        return list(self._procs)

    def _parse_mig(self) -> list[MigInstance]:
        if (_t(self.el, "mig_mode/current_mig") or "") != "Enabled":
            return []
        out = []
        for m in self.el.findall("mig_devices/mig_device"):
            out.append(
                MigInstance(
                    gpu_instance_id=_int(_t(m, "gpu_instance_id")) or 0,
                    compute_instance_id=_int(_t(m, "compute_instance_id")),
                    uuid=_t(m, "uuid") or "",
                    profile=_t(m, "profile") or "",  # nvidia-smi's XML does not name the profile
                    fb_total_mib=_num(_t(m, "fb_memory_usage/total")),
                    fb_used_mib=_num(_t(m, "fb_memory_usage/used")),
                    fb_free_mib=_num(_t(m, "fb_memory_usage/free")),
                )
            )
        return out

    def _parse_processes(self) -> list[GpuProcess]:
        out = []
        for p in self.el.findall("processes/process_info"):
            pid = _int(_t(p, "pid"))
            if pid is None:
                continue
            mem = _num(_t(p, "used_memory"))
            out.append(
                GpuProcess(
                    pid=pid,
                    used_memory_bytes=int(mem * 1024 * 1024) if mem is not None else None,
                    gpu_instance_id=_int(_t(p, "gpu_instance_id")),
                    type=_t(p, "type") or "C",
                    name=_t(p, "process_name"),
                )
            )
        return out

    def config(self) -> dict[str, Any]:
        el = self.el
        pw = el.find("gpu_power_readings")
        if pw is None:
            pw = el.find("power_readings")
        return {
            "power_limit_w": _num(_t(pw, "current_power_limit")),
            "default_power_limit_w": _num(_t(pw, "default_power_limit")),
            "enforced_power_limit_w": _num(_t(pw, "enforced_power_limit"))
            or _num(_t(pw, "current_power_limit")),
            "ecc_mode_current": _t(el, "ecc_mode/current_ecc"),
            "ecc_mode_pending": _t(el, "ecc_mode/pending_ecc"),
            "mig_mode_current": _t(el, "mig_mode/current_mig"),
            "mig_mode_pending": _t(el, "mig_mode/pending_mig"),
            "persistence_mode": _t(el, "persistence_mode"),
            "compute_mode": _t(el, "compute_mode"),
            "applications_sm_clock_mhz": _num(_t(el, "applications_clocks/graphics_clock")),
            "applications_mem_clock_mhz": _num(_t(el, "applications_clocks/mem_clock")),
            "max_sm_clock_mhz": _num(_t(el, "max_clocks/sm_clock")),
            "max_mem_clock_mhz": _num(_t(el, "max_clocks/mem_clock")),
        }


class SmiXmlBackend:
    """Serve recorded GPUs. ``lost`` holds indexes that answer :class:`GpuLost`; ``xids`` queues events."""

    def __init__(self, xml_text: str, *, replicate: int = 1) -> None:
        root = ET.fromstring(_strip_doctype(xml_text))
        self.sys = SystemInfo(
            driver_version=_t(root, "driver_version") or "",
            cuda_driver_version=_t(root, "cuda_version"),
        )
        base = [el for el in root.findall("gpu")]
        if not base:
            raise ValueError("no <gpu> element in this nvidia-smi XML")
        self.gpus: list[_Gpu] = []
        for i in range(len(base) * replicate):
            g = _Gpu(base[i % len(base)], i)
            if replicate > 1:  # distinct identities for a synthetic multi-GPU node (benchmarks)
                g.info = replace(
                    g.info,
                    uuid=f"{g.info.uuid[:-4]}{i:04x}",
                    pci_bus_id=f"00000000:{0x10 + i:02X}:00.0",
                    minor_number=i,
                )
            self.gpus.append(g)
        self.lost: set[int] = set()
        self.xids: list[XidEvent] = []
        self.nvlink_state: dict[int, list[NvLink]] = {}

    @classmethod
    def from_file(cls, path: str | Path, *, replicate: int = 1) -> SmiXmlBackend:
        return cls(Path(path).read_text(), replicate=replicate)

    def _g(self, index: int) -> _Gpu:
        if index in self.lost:
            raise GpuLost(f"GPU {index} is lost (NVML_ERROR_GPU_IS_LOST)")
        return self.gpus[index]

    def system(self) -> SystemInfo:
        return self.sys

    def count(self) -> int:
        return len(self.gpus)

    def info(self, index: int) -> GpuInfo:
        return self._g(index).info

    def reading(self, index: int) -> GpuReading:
        return replace(self._g(index).reading)

    def nvlinks(self, index: int) -> list[NvLink]:
        self._g(index)
        return list(self.nvlink_state.get(index, []))

    def mig_instances(self, index: int) -> list[MigInstance]:
        return self._g(index).mig()

    def processes(self, index: int) -> list[GpuProcess]:
        return self._g(index).processes()

    def config(self, index: int) -> dict[str, Any]:
        return self._g(index).config()

    def xid_events(self) -> list[XidEvent]:
        out, self.xids = self.xids, []
        return out

    def close(self) -> None:
        pass


def _strip_doctype(text: str) -> str:
    # ElementTree would not fetch the DTD anyway; dropping the declaration keeps entity tricks out
    return re.sub(r"<!DOCTYPE[^>\[]*(\[[^\]]*\])?\s*>", "", text, count=1)

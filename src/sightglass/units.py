"""Unit normalisation: one canonical, SI-unit signal per concept across every source's naming.

Sources name and scale the same thing differently (docs: ../shared/docs/conventions.md §0, §1.6):
dcgm-exporter reports utilisation in % (``DCGM_FI_DEV_GPU_UTIL``), DCGM 4.6 as a ratio
(``DCGM_FI_DEV_GPU_UTIL_RATIO``), OTel as ``hw.gpu.utilization`` (ratio); memory in MiB vs bytes; energy
in mJ vs J. Sightglass stores every series under the **source's own name and value**, so existing
PromQL, Grafana dashboards and read-back stay exact; this module is the normalisation layer on top:
``canonical_of(metric)`` names the concept, its SI unit and the factor to apply, and
``select_canonical(store, concept, ...)`` reads every source of a concept already scaled, each series
carrying its provenance in ``source_metric``. Analytics read through it, so a fleet that mixes
exporter versions is one signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sightglass.model import Matcher, SeriesData, SeriesKey


@dataclass(frozen=True, slots=True)
class Canonical:
    """A concept's canonical name (OTel style), SI unit, and the factor from the source's unit."""

    name: str
    unit: str
    scale: float = 1.0
    source_unit: str = ""


_MIB = 1024.0 * 1024.0

# source metric -> canonical. Names per conventions.md §1.6 (dcgm-exporter, DCGM 4.6, OTel semconv,
# OpenLIT, nvitop-exporter, Triton); as Prometheus names (dots become underscores on the OTLP path).
_TABLE: dict[str, Canonical] = {}


def _add(names: Sequence[str], canonical: str, unit: str, scale: float = 1.0, source_unit: str = "") -> None:
    for n in names:
        _TABLE[n] = Canonical(canonical, unit, scale, source_unit or unit)


_add(["DCGM_FI_DEV_GPU_UTIL", "nv_gpu_utilization_percent"], "hw.gpu.utilization", "1", 0.01, "%")
_add(
    ["DCGM_FI_DEV_GPU_UTIL_RATIO", "hw_gpu_utilization", "hw_gpu_utilization_ratio", "nv_gpu_utilization"],
    "hw.gpu.utilization",
    "1",
)
_add(["DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_PROF_SM_UTIL_RATIO"], "hw.gpu.sm.active", "1")
_add(["DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "DCGM_FI_PROF_TENSOR_UTIL_RATIO"], "hw.gpu.tensor.active", "1")
_add(["DCGM_FI_PROF_DRAM_ACTIVE"], "hw.gpu.dram.active", "1")
_add(["DCGM_FI_PROF_GR_ENGINE_ACTIVE"], "hw.gpu.engine.active", "1")
_add(["DCGM_FI_DEV_MEM_COPY_UTIL"], "hw.gpu.memory.utilization", "1", 0.01, "%")
_add(["hw_gpu_memory_utilization", "hw_gpu_memory_utilization_ratio"], "hw.gpu.memory.utilization", "1")
_add(["DCGM_FI_DEV_FB_USED"], "hw.gpu.memory.usage", "By", _MIB, "MiB")
_add(
    ["hw_gpu_memory_usage", "hw_gpu_memory_usage_bytes", "nv_gpu_memory_used_bytes", "gpu_memory_used"],
    "hw.gpu.memory.usage",
    "By",
)
_add(["DCGM_FI_DEV_FB_FREE"], "hw.gpu.memory.free", "By", _MIB, "MiB")
_add(["DCGM_FI_DEV_FB_TOTAL"], "hw.gpu.memory.limit", "By", _MIB, "MiB")
_add(
    ["hw_gpu_memory_limit", "hw_gpu_memory_limit_bytes", "nv_gpu_memory_total_bytes"],
    "hw.gpu.memory.limit",
    "By",
)
_add(
    [
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_BOARD_POWER_WATTS",
        "nv_gpu_power_usage",
        "hw_gpu_power_draw",
        "hw_gpu_power_draw_watts",
        "gpu_power_usage",
    ],
    "hw.gpu.power",
    "W",
)
_add(["DCGM_FI_DEV_POWER_MGMT_LIMIT"], "hw.gpu.power.limit", "W")
_add(["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"], "hw.gpu.energy", "J", 0.001, "mJ")
_add(
    ["hw_gpu_energy_consumed", "hw_gpu_energy_consumed_joules_total", "nv_energy_consumption"],
    "hw.gpu.energy",
    "J",
)
_add(
    [
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_GPU_TEMP_CELSIUS",
        "hw_gpu_temperature",
        "hw_gpu_temperature_celsius",
        "gpu_temperature",
    ],
    "hw.gpu.temperature",
    "Cel",
)
_add(["DCGM_FI_DEV_MEMORY_TEMP"], "hw.gpu.memory.temperature", "Cel")
_add(["DCGM_FI_DEV_SM_CLOCK"], "hw.gpu.clock.sm", "Hz", 1e6, "MHz")
_add(["DCGM_FI_DEV_MEM_CLOCK"], "hw.gpu.clock.memory", "Hz", 1e6, "MHz")
_add(["DCGM_FI_PROF_PCIE_TX_BYTES"], "hw.gpu.io.transmit", "By/s")
_add(["DCGM_FI_PROF_PCIE_RX_BYTES"], "hw.gpu.io.receive", "By/s")
_add(["DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_XID_ERROR"], "hw.gpu.xid", "1")
_add(["DCGM_FI_DEV_PCIE_REPLAY_COUNTER"], "hw.gpu.pcie.replays", "1")
_add(
    ["DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"], "hw.gpu.throttle_reasons", "1"
)


def canonical_of(metric: str) -> Canonical | None:
    """The canonical concept of a source metric, or None when it is not a known alias."""
    return _TABLE.get(metric)


def sources_of(concept: str) -> list[str]:
    """Every source metric name known for a canonical concept."""
    return sorted(n for n, c in _TABLE.items() if c.name == concept)


def concepts() -> dict[str, str]:
    """Canonical concept -> its SI unit."""
    return {c.name: c.unit for c in _TABLE.values()}


def normalise(series: SeriesData) -> SeriesData:
    """The series scaled to its canonical SI unit, renamed to the concept, with ``source_metric`` kept."""
    c = canonical_of(series.key.metric)
    if c is None:
        return series
    labels = dict(series.key.labels)
    labels["source_metric"] = series.key.metric
    values = series.values * c.scale if c.scale != 1.0 else series.values
    return SeriesData(SeriesKey.of(c.name, labels), series.ts_ms, values, series.stale)


def select_canonical(
    store: Any, concept: str, matchers: Sequence[Matcher], start_ms: int, end_ms: int
) -> list[SeriesData]:
    """Read every source of ``concept`` (all naming worlds), normalised; ``matchers`` exclude ``__name__``."""
    names = sources_of(concept)
    if not names:
        raise ValueError(f"unknown concept {concept!r}; known: {', '.join(sorted(concepts()))}")
    pattern = "|".join(n.replace(".", "\\.") for n in names)
    found = store.select([Matcher("__name__", "=~", pattern), *matchers], start_ms, end_ms)
    return [normalise(s) for s in found]

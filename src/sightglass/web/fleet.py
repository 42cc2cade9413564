"""The GPU fleet at one instant, from dcgm-exporter series through PromQL: one row per GPU.

A GPU is ``(node, gpu index)``: dcgm-exporter repeats a GPU under new label sets when its pod or job
changes, so readings are taken over a short window (``last_over_time(...[2m])``, longer than any
usual scrape interval) and folded per GPU. States:

- **busy**: SM activity >= 5 % (``DCGM_FI_PROF_SM_ACTIVE``; ``DCGM_FI_DEV_GPU_UTIL`` >= 5 % where
  profiling metrics are off); **idle** otherwise;
- **throttled**: a slowing clock-event reason set (``DCGM_FI_DEV_CLOCKS_EVENT_REASONS``; 0x1
  ``GPU_IDLE`` is benign);
- **failed**: a critical XID in the last 15 minutes (the ``err_code`` label of dcgm-exporter's XID series), a failed HBM row remap, or reporting in the last
  30 minutes but not any more (a GPU that fell off the bus stops answering);
- **idle-held**: the analytics KPI ``sightglass_gpu_idle_held`` (allocated, memory in use, under 5 %
  SM activity for 30 minutes) — missing when the analytics loop is off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sightglass.analytics.kpi import CRITICAL_XIDS
from sightglass.web.query import Queries, host_of, num

BUSY_SM_ACTIVE = 0.05
BUSY_UTIL_PERCENT = 5.0
NOW_WINDOW = "2m"
LOST_WINDOW = "30m"
XID_WINDOW = "15m"
# clock-event reasons that mean the GPU is being slowed (dcgm: 0x1 is "GPU idle", not a throttle)
THROTTLE_MASK = 0x2 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80 | 0x100
_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}

# heatmap metrics: name -> (PromQL of the per-series reading, unit, fixed colour domain or None)
METRICS: dict[str, tuple[str, str, tuple[float, float] | None]] = {
    "sm_active": ("DCGM_FI_PROF_SM_ACTIVE", "ratio", (0.0, 1.0)),
    "util_percent": ("DCGM_FI_DEV_GPU_UTIL", "%", (0.0, 100.0)),
    "tensor_active": ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "ratio", (0.0, 1.0)),
    "power_watts": ("DCGM_FI_DEV_POWER_USAGE", "W", None),
    "temp_celsius": ("DCGM_FI_DEV_GPU_TEMP", "°C", None),
    "memory_used_mib": ("DCGM_FI_DEV_FB_USED", "MiB", None),
    "sm_clock_mhz": ("DCGM_FI_DEV_SM_CLOCK", "MHz", None),
}


def decode_reasons(mask: int) -> list[str]:
    return [name for bit, name in _REASONS.items() if mask & bit]


GpuKey = tuple[str, str]


@dataclass(slots=True)
class Gpu:
    node: str
    gpu: str
    uuid: str | None = None
    model: str | None = None
    values: dict[str, float | None] = field(default_factory=dict)
    reasons_mask: int | None = None
    failed: list[str] = field(default_factory=list)
    idle_held: bool | None = None
    reporting: bool = True

    @property
    def busy(self) -> bool:
        sm, util = self.values.get("sm_active"), self.values.get("util_percent")
        if sm is not None:
            return sm >= BUSY_SM_ACTIVE
        return util is not None and util >= BUSY_UTIL_PERCENT

    @property
    def throttled(self) -> bool:
        return self.reasons_mask is not None and bool(self.reasons_mask & THROTTLE_MASK)

    @property
    def health(self) -> str:
        """``failed`` > ``throttled`` > ``idle_held`` > ``busy`` / ``idle``: the colour on maps."""
        if self.failed:
            return "failed"
        if self.throttled:
            return "throttled"
        if self.idle_held:
            return "idle_held"
        return "busy" if self.busy else "idle"

    def entity_id(self) -> str:
        return f"gpu:{self.uuid}" if self.uuid else f"gpu:{self.node}/{self.gpu}"

    def to_dict(self, metrics: tuple[str, ...]) -> dict[str, Any]:
        return {
            "node": self.node,
            "gpu": self.gpu,
            "entity": self.entity_id(),
            **{m: self.values.get(m) for m in metrics},
            "health": self.health,
            "throttle_reasons": decode_reasons(self.reasons_mask) if self.reasons_mask is not None else None,
            "failed_reasons": self.failed,
        }


def _fold(q: Queries, promql: str) -> dict[GpuKey, tuple[float, dict[str, str]]]:
    """Per GPU, the largest current reading over its label sets (and that series' labels)."""
    out: dict[GpuKey, tuple[float, dict[str, str]]] = {}
    for labels, v in q.vector(promql):
        key = (host_of(labels), labels.get("gpu", ""))
        if key not in out or v > out[key][0]:
            out[key] = (v, labels)
    return out


class Fleet:
    """GPUs keyed by ``(node, gpu)``; ``read(metric)`` adds one reading to every GPU."""

    def __init__(self, q: Queries) -> None:
        self.q = q
        self.gpus: dict[GpuKey, Gpu] = {}
        self.idle_held_known = False

    def read(self, metric: str) -> None:
        promql = METRICS[metric][0]
        for key, (v, labels) in _fold(self.q, f"last_over_time({promql}[{NOW_WINDOW}])").items():
            g = self.gpus.get(key)
            if g is None:
                g = self.gpus[key] = Gpu(key[0], key[1])
            g.values[metric] = num(v)
            g.uuid = g.uuid or labels.get("UUID") or labels.get("uuid")
            g.model = g.model or labels.get("modelName")

    def read_state(self, *, lost: bool = True, idle_held: bool = True) -> None:
        """Throttle reasons, failures, lost GPUs and (when present) the idle-held KPI."""
        for key, (v, _) in _fold(
            self.q, f"last_over_time(DCGM_FI_DEV_CLOCKS_EVENT_REASONS[{NOW_WINDOW}])"
        ).items():
            if key in self.gpus:
                self.gpus[key].reasons_mask = int(v)
        codes = "|".join(str(x) for x in sorted(CRITICAL_XIDS))
        # dcgm-exporter labels XID series with err_code (PR #309): the matcher reads only those GPUs
        xid = f'max_over_time(DCGM_FI_DEV_XID_ERRORS{{err_code=~"{codes}"}}[{XID_WINDOW}]) > 0'
        for labels, v in self.q.vector(xid):
            key = (host_of(labels), labels.get("gpu", ""))
            if int(v) in CRITICAL_XIDS:
                g = self._ensure(key, labels)
                reason = f"XID {int(v)}" + (f" ({labels['err_msg']})" if labels.get("err_msg") else "")
                if reason not in g.failed:
                    g.failed.append(reason)
        for labels, _v in self.q.vector(f"last_over_time(DCGM_FI_DEV_ROW_REMAP_FAILURE[{NOW_WINDOW}]) == 1"):
            self._ensure((host_of(labels), labels.get("gpu", "")), labels).failed.append("row remap failure")
        if lost:
            for labels, _v in self.q.vector(
                f"last_over_time(DCGM_FI_DEV_GPU_UTIL[{LOST_WINDOW}]) unless "
                f"last_over_time(DCGM_FI_DEV_GPU_UTIL[{NOW_WINDOW}])"
            ):
                key = (host_of(labels), labels.get("gpu", ""))
                if key not in self.gpus or not self.gpus[key].reporting:
                    g = self._ensure(key, labels)
                    g.reporting = False
                    if "not reporting" not in g.failed:
                        g.failed.append("not reporting")
        if idle_held:
            held = _fold(self.q, "last_over_time(sightglass_gpu_idle_held[5m])")
            self.idle_held_known = bool(held)
            for key, (v, _) in held.items():
                if key in self.gpus:
                    self.gpus[key].idle_held = v >= 1

    def _ensure(self, key: GpuKey, labels: dict[str, str]) -> Gpu:
        g = self.gpus.get(key)
        if g is None:
            g = self.gpus[key] = Gpu(key[0], key[1], reporting=False)
            g.uuid = labels.get("UUID") or labels.get("uuid")
        return g

    def sorted(self) -> list[Gpu]:
        return sorted(self.gpus.values(), key=lambda g: (g.node, _int(g.gpu)))


def _int(s: str) -> tuple[int, str]:
    return (int(s), "") if s.isdigit() else (1 << 30, s)

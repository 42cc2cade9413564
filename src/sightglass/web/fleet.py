"""The GPU fleet at one instant, from dcgm-exporter series through PromQL: one row per GPU.

A GPU is ``(node, gpu index)``: dcgm-exporter repeats a GPU under new label sets when its pod or job
changes, so a reading is the newest sample over a short window (``last_over_time(...[2m])``, longer
than any usual scrape interval) among the GPU's series (:func:`read_gpus`). States:

- **busy**: SM activity >= 5 % (``DCGM_FI_PROF_SM_ACTIVE``; ``DCGM_FI_DEV_GPU_UTIL`` >= 5 % where
  profiling metrics are off); **idle** otherwise;
- **throttled**: a slowing clock-event reason set (``DCGM_FI_DEV_CLOCKS_EVENT_REASONS``; 0x1
  ``GPU_IDLE`` is benign);
- **failed**: a critical XID in the last 15 minutes (the ``err_code`` label of dcgm-exporter's XID
  series; XID 64 is a failed row remap), or reporting in the last 30 minutes but not in the last 2
  (a GPU that fell off the bus, or its node, stops answering);
- **idle-held**: the analytics KPI ``sightglass_gpu_idle_held`` (allocated, memory in use, under 5 %
  SM activity for 30 minutes) — missing when the analytics loop is off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sightglass.analytics.kpi import CRITICAL_XIDS
from sightglass.config import parse_duration_ms as q_ms
from sightglass.model import Matcher
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


Reading = tuple[float, int, dict[str, str]]  # value, sample time, labels of that series


def _newest(out: dict[GpuKey, Reading], labels: dict[str, str], v: float, ts: int) -> None:
    key = (host_of(labels), labels.get("gpu", ""))
    if key not in out or ts > out[key][1] or (ts == out[key][1] and v > out[key][0]):
        out[key] = (v, ts, labels)


def read_gpus(q: Queries, metric_name: str, window_ms: int) -> dict[GpuKey, Reading]:
    """Per GPU, the newest sample of ``metric_name`` in ``(at - window, at]`` over its label sets.

    This is PromQL's ``last_over_time(metric[window])`` folded per ``(node, gpu)`` by sample time,
    read from the store in one columnar read: the engine's per-series label handling costs ten
    times more at 8,000 GPUs, and the overview reads this for every GPU.
    """
    out: dict[GpuKey, Reading] = {}
    at = q.w.at_ms
    for sd in q.store.select([Matcher("__name__", "=", metric_name)], at - window_ms + 1, at):
        if sd.stale[-1]:  # the newest sample is a stale marker: the series ended
            continue
        _newest(out, sd.key.label_dict(), float(sd.values[-1]), int(sd.ts_ms[-1]))
    return out


class Fleet:
    """GPUs keyed by ``(node, gpu)``; ``read(metric)`` adds one reading to every GPU."""

    def __init__(self, q: Queries) -> None:
        self.q = q
        self.gpus: dict[GpuKey, Gpu] = {}
        self.idle_held_known = False

    def read(self, metric: str, *, lost: bool = False) -> None:
        """One reading per GPU; with ``lost``, GPUs seen in the last 30 minutes but not in the last
        2 are added as failed ("not reporting") from the same read."""
        now_ms = q_ms(NOW_WINDOW)
        window = q_ms(LOST_WINDOW) if lost else now_ms
        for key, (v, ts, labels) in read_gpus(self.q, METRICS[metric][0], window).items():
            current = ts > self.q.w.at_ms - now_ms
            g = self.gpus.get(key)
            if g is None:
                g = self.gpus[key] = Gpu(key[0], key[1], reporting=current)
            if current:
                g.values[metric] = num(v)
                if not g.reporting:  # stale in one metric, current in another: it reports
                    g.reporting = True
                    g.failed = [f for f in g.failed if f != "not reporting"]
            elif not g.reporting and "not reporting" not in g.failed:
                g.failed.append("not reporting")
            g.uuid = g.uuid or labels.get("UUID") or labels.get("uuid")
            g.model = g.model or labels.get("modelName")

    def primary(self) -> list[str]:
        """What tells busy from idle: SM activity, plus GPU utilisation when some GPUs report only
        that (profiling metrics off) — told apart by series counts, without reading samples."""
        store = self.q.store
        n_sm = len(store.select_ids([Matcher("__name__", "=", METRICS["sm_active"][0])]))
        n_util = len(store.select_ids([Matcher("__name__", "=", METRICS["util_percent"][0])]))
        if not n_sm:
            return ["util_percent"]
        return ["sm_active"] if n_sm >= n_util else ["sm_active", "util_percent"]

    def read_primary(self) -> list[str]:
        """Read :meth:`primary` with lost-GPU detection; returns the metrics read."""
        metrics = self.primary()
        for m in metrics:
            self.read(m, lost=True)
        return metrics

    def read_reasons(self) -> dict[GpuKey, Reading]:
        """The clock-event reasons of every GPU (apply with ``read_state(reasons=...)``)."""
        return read_gpus(self.q, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", q_ms(NOW_WINDOW))

    def read_state(self, *, idle_held: bool = True, reasons: dict[GpuKey, Reading] | None = None) -> None:
        """Throttle reasons, critical XIDs and (when present) the idle-held KPI."""
        if reasons is None:
            reasons = self.read_reasons()
        for key, (v, _, _) in reasons.items():
            if key in self.gpus:
                self.gpus[key].reasons_mask = int(v)
        codes = "|".join(str(x) for x in sorted(CRITICAL_XIDS))
        # dcgm-exporter labels XID series with err_code (PR #309): the matcher reads only those GPUs.
        # XID 64 is the row-remapper failure, so a failed remap shows here too.
        xid = f'max_over_time(DCGM_FI_DEV_XID_ERRORS{{err_code=~"{codes}"}}[{XID_WINDOW}]) > 0'
        for labels, v in self.q.vector(xid):
            key = (host_of(labels), labels.get("gpu", ""))
            if int(v) in CRITICAL_XIDS:
                g = self._ensure(key, labels)
                reason = f"XID {int(v)}" + (f" ({labels['err_msg']})" if labels.get("err_msg") else "")
                if reason not in g.failed:
                    g.failed.append(reason)
        if idle_held:
            held = read_gpus(self.q, "sightglass_gpu_idle_held", q_ms("5m"))
            self.idle_held_known = bool(held)
            for key, (v, _, _) in held.items():
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

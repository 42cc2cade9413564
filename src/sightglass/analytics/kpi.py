"""Derived KPIs, written back to the store as ordinary series so PromQL can query them.

Names (docs/analytics.md; ours, docs/conventions.md §9):

- ``sightglass_gpu_sm_active_ratio`` — GPU utilisation by SM activity (``DCGM_FI_PROF_SM_ACTIVE``,
  0 to 1; ``DCGM_FI_DEV_GPU_UTIL``/100 where profiling metrics are off).
- ``sightglass_gpu_idle_held`` — 1 while a GPU is allocated (a pod or a Slurm job holds it), has
  memory in use, and its SM activity stayed under 5 % for 30 minutes: paid for, doing nothing.
- ``sightglass_gpu_throttle_seconds_total{reason}`` — seconds spent with each clock-event reason
  set (``DCGM_FI_DEV_CLOCKS_EVENT_REASONS`` bitmask, §1.4; ``GPU_IDLE`` excluded: it is benign).
- ``sightglass_gpu_xid_errors_total{xid,severity,action}`` — XID errors seen on
  ``DCGM_FI_DEV_XID_ERRORS``, severity and action from the curated table (``analytics/xid.py``).

All carry the GPU's identity labels (``Hostname``, ``UUID``, ``gpu``) so they join with the sources.
:class:`KpiComputer` is incremental: state (idle run lengths, counters) carries across batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sightglass.analytics.xid import CRITICAL_XIDS, xid_info
from sightglass.model import SampleBatchBuilder, SeriesKey

__all__ = ["CRITICAL_XIDS", "KpiComputer", "KpiConfig", "decode_reasons", "xid_severity"]

THROTTLE_REASONS = {
    0x002: "CLOCKS_SETTING",
    0x004: "SW_POWER_CAP",
    0x008: "HW_SLOWDOWN",
    0x010: "SYNC_BOOST",
    0x020: "SW_THERMAL",
    0x040: "HW_THERMAL",
    0x080: "HW_POWER_BRAKE",
    0x100: "DISPLAY_CLOCKS",
}
ID_LABELS = ("Hostname", "hostname", "UUID", "uuid", "gpu", "GPU_I_ID")
ALLOC_LABELS = ("pod", "exported_pod", "pod_name", "hpc_job")


@dataclass(frozen=True, slots=True)
class KpiConfig:
    step_ms: int = 10_000
    idle_sm_ratio: float = 0.05
    idle_for_ms: int = 30 * 60_000
    held_memory_mib: float = 1024.0


def xid_severity(xid: int) -> str:
    """``critical`` | ``warning`` | ``info`` from the curated table (``sightglass.analytics.xid``)."""
    return xid_info(xid).severity


def decode_reasons(mask: int) -> list[str]:
    """The clock-event reasons set in a ``DCGM_FI_DEV_CLOCKS_EVENT_REASONS`` value."""
    return [name for bit, name in THROTTLE_REASONS.items() if mask & bit]


@dataclass(slots=True)
class _GpuState:
    labels: dict[str, str]
    idle_ms: int = 0
    throttle_s: dict[str, float] = field(default_factory=dict)
    xids: dict[int, int] = field(default_factory=dict)
    last_xid: float = 0.0


@dataclass(slots=True)
class KpiComputer:
    """Per batch: read the GPU series after the watermark, append the KPI samples."""

    config: KpiConfig = field(default_factory=KpiConfig)
    watermark_ms: int | None = None
    gpus: dict[tuple[str, ...], _GpuState] = field(default_factory=dict)

    def step(self, store: Any, until_ms: int, *, start_ms: int | None = None) -> int:
        """Compute up to ``until_ms`` and write the samples; returns how many were written."""
        cfg = self.config
        start = (self.watermark_ms + cfg.step_ms) if self.watermark_ms is not None else (start_ms or until_ms)
        if until_ms < start:
            return 0
        batch = self.compute(_read(store, start, until_ms, cfg.step_ms), start, until_ms)
        self.watermark_ms = until_ms - until_ms % cfg.step_ms
        if len(batch):
            store.append(batch.build())
        return len(batch)

    def compute(
        self,
        data: dict[str, dict[tuple[str, ...], tuple[dict[str, str], np.ndarray]]],
        start_ms: int,
        end_ms: int,
    ) -> SampleBatchBuilder:
        """The KPI samples for ``data`` (metric -> gpu identity -> (labels, values on the grid))."""
        cfg = self.config
        step = cfg.step_ms
        t0 = start_ms - start_ms % step
        grid = t0 + np.arange(int((end_ms - t0) // step) + 1, dtype=np.int64) * step
        out = SampleBatchBuilder()
        sm = data.get("DCGM_FI_PROF_SM_ACTIVE", {})
        util = data.get("DCGM_FI_DEV_GPU_UTIL", {})
        fb = data.get("DCGM_FI_DEV_FB_USED", {})
        reasons = data.get("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", {})
        xid = data.get("DCGM_FI_DEV_XID_ERRORS", {})
        for gid in sorted(set(sm) | set(util)):
            labels, v = sm[gid] if gid in sm else (util[gid][0], util[gid][1] / 100.0)
            st = self.gpus.setdefault(gid, _GpuState({k: x for k, x in labels.items() if k in ID_LABELS}))
            allocated = any(labels.get(k) for k in ALLOC_LABELS)
            mem = fb.get(gid, (labels, np.full(len(grid), np.nan)))[1]
            for i, t in enumerate(grid):
                if np.isnan(v[i]):
                    continue
                out.add(SeriesKey.of("sightglass_gpu_sm_active_ratio", st.labels), int(t), float(v[i]))
                held = allocated and mem[i] >= cfg.held_memory_mib and v[i] < cfg.idle_sm_ratio
                st.idle_ms = st.idle_ms + step if held else 0
                out.add(
                    SeriesKey.of("sightglass_gpu_idle_held", st.labels),
                    int(t),
                    1.0 if st.idle_ms >= cfg.idle_for_ms else 0.0,
                )
        for gid, (labels, v) in sorted(reasons.items()):
            st = self.gpus.setdefault(gid, _GpuState({k: x for k, x in labels.items() if k in ID_LABELS}))
            for name in THROTTLE_REASONS.values():
                st.throttle_s.setdefault(name, 0.0)
            for i, t in enumerate(grid):
                if np.isnan(v[i]):
                    continue
                for name in decode_reasons(int(v[i])):
                    st.throttle_s[name] += step / 1000.0
                for name, total in st.throttle_s.items():
                    out.add(
                        SeriesKey.of("sightglass_gpu_throttle_seconds_total", {**st.labels, "reason": name}),
                        int(t),
                        total,
                    )
        for gid, (labels, v) in sorted(xid.items()):
            st = self.gpus.setdefault(gid, _GpuState({k: x for k, x in labels.items() if k in ID_LABELS}))
            for i, t in enumerate(grid):
                if np.isnan(v[i]):
                    continue
                code = int(v[i])
                if code and code != st.last_xid:
                    st.xids[code] = st.xids.get(code, 0) + 1
                st.last_xid = code
                for c, n in st.xids.items():
                    info = xid_info(c)
                    lab = {**st.labels, "xid": str(c), "severity": info.severity, "action": info.action}
                    out.add(SeriesKey.of("sightglass_gpu_xid_errors_total", lab), int(t), float(n))
        return out


def _gpu_key(labels: dict[str, str]) -> tuple[str, ...]:
    uuid = labels.get("UUID") or labels.get("uuid")
    host = labels.get("Hostname") or labels.get("hostname") or ""
    return (uuid or f"{host}/{labels.get('gpu', '')}", labels.get("GPU_I_ID", ""))


def _read(
    store: Any, start_ms: int, end_ms: int, step: int
) -> dict[str, dict[tuple[str, ...], tuple[dict[str, str], np.ndarray]]]:
    """GPU series on the grid, one per GPU and metric (label churn such as ``hpc_job`` merged:
    the newest labels win where two series overlap)."""
    from sightglass.model import Matcher

    t0 = start_ms - start_ms % step
    n = int((end_ms - t0) // step) + 1
    out: dict[str, dict[tuple[str, ...], tuple[dict[str, str], np.ndarray]]] = {}
    names = (
        "DCGM_FI_PROF_SM_ACTIVE",
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
        "DCGM_FI_DEV_XID_ERRORS",
    )
    for sd in store.select([Matcher("__name__", "=~", "|".join(names))], t0, end_ms):
        labels = sd.key.label_dict()
        gid = _gpu_key(labels)
        v = np.full(n, np.nan)
        idx = np.rint((sd.ts_ms - t0) / step).astype(np.int64)
        ok = (idx >= 0) & (idx < n) & ~sd.stale
        v[idx[ok]] = sd.values[ok]
        per = out.setdefault(sd.key.metric, {})
        if gid in per:
            old_labels, old = per[gid]
            merged = np.where(np.isnan(v), old, v)
            per[gid] = (labels if np.isfinite(v[-1]) else old_labels, merged)
        else:
            per[gid] = (labels, v)
    return out

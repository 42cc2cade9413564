"""Signals: store series turned into aligned, analysable columns (the I/O edge of analytics).

Gauges are taken as they are, counters as per-second rates (a reset gives one missing step),
histograms as their mean (rate of ``_sum`` / rate of ``_count``); per-CPU series are summed per
node. Every column names the entity it is about (``sightglass.topology.entity_of_series``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sightglass.model import MetricType, SeriesKey
from sightglass.topology.infer import TopologyBuilder, entity_of_series

SKIP_SUFFIXES = ("_info", "_bucket", "_created")
SKIP_METRICS = frozenset(
    {
        "kube_pod_labels",
        "kube_node_status_allocatable",
        "kube_pod_container_resource_requests",
        "node_memory_MemTotal_bytes",
        "node_filesystem_size_bytes",
        "data_pipeline_last_success_timestamp_seconds",
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    }
)


@dataclass(frozen=True, slots=True)
class SignalConfig:
    """``step_ms``: the grid; ``drop_labels``: labels summed away (per-CPU series per node);
    ``counters``: extra metric names to treat as counters when the store has no metadata."""

    step_ms: int = 10_000
    drop_labels: tuple[str, ...] = ("cpu",)
    max_series_per_read: int = 20_000
    # (numerator counter, denominator counter, name): a per-event mean from two rates
    ratios: tuple[tuple[str, str, str], ...] = (
        (
            "node_mountstats_nfs_operations_response_time_seconds_total",
            "node_mountstats_nfs_operations_requests_total",
            "node_mountstats_nfs_operation_latency_seconds:mean",
        ),
    )


@dataclass(slots=True)
class SignalFrame:
    """``values[row, column]`` on a regular grid ``ts_ms``; NaN where there was no sample."""

    ts_ms: np.ndarray
    values: np.ndarray
    names: list[str] = field(default_factory=list)  # "metric{labels}" (+ ":rate" / ":mean")
    metrics: list[str] = field(default_factory=list)
    entities: list[str | None] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ts_ms": self.ts_ms.tolist(), "names": self.names, "entities": self.entities}

    def rows_from(self, start_ms: int) -> SignalFrame:
        keep = self.ts_ms >= start_ms
        return SignalFrame(self.ts_ms[keep], self.values[keep], self.names, self.metrics, self.entities)


def _is_counter(metric: str, types: dict[str, MetricType]) -> bool:
    t = types.get(metric)
    if t is not None and t != MetricType.UNKNOWN:
        return t == MetricType.COUNTER
    return metric.endswith("_total") or metric.endswith("_sum") or metric.endswith("_count")


def is_signal_metric(metric: str) -> bool:
    """A metric worth a baseline (not info/label series, not histogram buckets, not constants)."""
    return metric not in SKIP_METRICS and not metric.endswith(SKIP_SUFFIXES)


def select_series(keys: dict[int, SeriesKey]) -> list[int]:
    """Series worth a baseline (``is_signal_metric``)."""
    return sorted(sid for sid, k in keys.items() if is_signal_metric(k.metric))


def load_signals(
    store: Any,
    start_ms: int,
    end_ms: int,
    *,
    builder: TopologyBuilder | None = None,
    config: SignalConfig | None = None,
    series_ids: Sequence[int] | None = None,
) -> SignalFrame:
    """Read ``[start_ms, end_ms]`` and build the aligned signal columns."""
    cfg = config or SignalConfig()
    step = cfg.step_ms
    keys: dict[int, SeriesKey] = dict(store.index.keys)
    ids = list(series_ids) if series_ids is not None else select_series(keys)
    types = {m: v[0].type for m, v in store.metadata().items() if v}
    t0 = start_ms - start_ms % step
    n_rows = int((end_ms - t0) // step) + 1
    grid = t0 + np.arange(n_rows, dtype=np.int64) * step
    # column per (metric, labels without drop_labels); summed when several series collapse into one
    col_of: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    cols: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    col_keys: list[SeriesKey] = []
    drop = set(cfg.drop_labels)
    for a in range(0, len(ids), cfg.max_series_per_read):
        chunk = np.asarray(ids[a : a + cfg.max_series_per_read], dtype=np.int64)
        for sd in store.read_ids(chunk, t0 - step, end_ms):
            key = sd.key
            v = _on_grid(sd.ts_ms, sd.values, t0 - step, n_rows + 1, step)
            if _is_counter(key.metric, types):
                v = _rate(v, step)
            v = v[1:]
            labels = tuple((k, x) for k, x in key.labels if k not in drop)
            ck = (key.metric, labels)
            j = col_of.get(ck)
            if j is None:
                col_of[ck] = len(cols)
                cols.append(np.nan_to_num(v, nan=0.0))
                counts.append(np.isfinite(v).astype(np.int64))
                col_keys.append(SeriesKey(key.metric, labels))
            else:
                cols[j] += np.nan_to_num(v, nan=0.0)
                counts[j] += np.isfinite(v)
    values = np.column_stack(cols) if cols else np.zeros((n_rows, 0))
    if cols:
        values[np.column_stack(counts) == 0] = np.nan
    names = [k.text() for k in col_keys]
    metrics = [k.metric for k in col_keys]
    extra_v: list[np.ndarray] = []
    for d in derived_columns(col_keys, col_of, cfg):
        with np.errstate(all="ignore"):
            extra_v.append(np.where(values[:, d.den] > 0, values[:, d.num] / values[:, d.den], np.nan))
        names.append(d.name_key.text() + d.suffix)
        metrics.append(d.metric)
        col_keys.append(d.key)
    if extra_v:
        values = np.column_stack([values, *extra_v])
    entities = [entity_of_series(k, builder) for k in col_keys]
    return SignalFrame(grid, values, names, metrics, entities)


@dataclass(frozen=True, slots=True)
class Derived:
    """A column computed as ``num / den`` (where ``den > 0``), named ``name_key`` + ``suffix``."""

    num: int
    den: int
    name_key: SeriesKey
    suffix: str
    metric: str
    key: SeriesKey


def derived_columns(
    col_keys: Sequence[SeriesKey], col_of: dict[tuple[str, tuple[tuple[str, str], ...]], int], cfg: SignalConfig
) -> list[Derived]:
    """The derived columns of a frame, in order: per column, its configured ratio, then the mean of
    a histogram (``rate(_sum) / rate(_count)``)."""
    ratios = {num: (den, name) for num, den, name in cfg.ratios}
    out: list[Derived] = []
    for j, k in enumerate(col_keys):
        if k.metric in ratios:
            den, rname = ratios[k.metric]
            c = col_of.get((den, k.labels))
            if c is not None:
                out.append(Derived(j, c, SeriesKey(rname, k.labels), "", rname, k))
        if k.metric.endswith("_sum"):
            base = k.metric[: -len("_sum")]
            c = col_of.get((base + "_count", k.labels))
            if c is not None:
                mean = SeriesKey(base, k.labels)
                out.append(Derived(j, c, mean, ":mean", base + ":mean", mean))
    return out


def _on_grid(ts: np.ndarray, vals: np.ndarray, t0: int, n: int, step: int) -> np.ndarray:
    out = np.full(n, np.nan)
    idx = np.rint((ts - t0) / step).astype(np.int64)
    ok = (idx >= 0) & (idx < n)
    out[idx[ok]] = vals[ok]
    return out


def _rate(v: np.ndarray, step_ms: int) -> np.ndarray:
    d = np.full(v.shape, np.nan)
    d[1:] = (v[1:] - v[:-1]) / (step_ms / 1000.0)
    d[d < 0] = np.nan  # a counter reset
    return d

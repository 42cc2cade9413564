"""Workload KPIs (training, inference, pipelines), written back as series so PromQL sees them.

The sibling of :class:`~sightglass.analytics.kpi.KpiComputer` (which does the per-GPU ones): per
batch it reads the new rows of the training, inference-engine, pipeline and GPU power series on
the 10 s grid and appends (names in OTel style under ``sightglass_``, docs/analytics.md):

Training, per job (``slurm_job_id``, ``job_name``, ``team``):

- ``sightglass_training_step_time_seconds`` — the job's step time (``training_step_duration_seconds``);
- ``sightglass_training_goodput_ratio`` — share of wall time spent in model work:
  ``steps/s x (step time - data-loader wait)``, clipped to [0, 1] (0 while the job is hung);
- ``sightglass_training_dataloader_wait_ratio`` — data-loader wait / step time;
- ``sightglass_training_straggler_score{rank, Hostname, gpu}`` — a rank's compute time over the
  median rank's (1.0 = in step with the others; 1.6 = 60 % slower);
- ``sightglass_training_mfu_ratio`` — only where FLOPs are known (``training_model_flops_per_step``
  or ``training_flops_per_step``, FLOPs of one optimizer step of the whole job):
  ``FLOPs/step x steps/s / (ranks x peak dense BF16 FLOP/s of the GPU model)``.

Inference, per model (``model_name``; vLLM names, SGLang/TGI aliases, ``ray_vllm:`` prefix):

- ``sightglass_inference_tokens_per_second{token_type="output"|"input"}``;
- ``sightglass_inference_time_to_first_token_seconds{quantile}`` and
  ``sightglass_inference_inter_token_latency_seconds{quantile}`` — from the histogram buckets of
  the last ``quantile_window_ms`` (1 min), summed over replicas, interpolated like
  ``histogram_quantile``;
- ``sightglass_inference_queue_depth`` (requests waiting), ``sightglass_inference_requests_running``;
- ``sightglass_inference_kv_cache_pressure_ratio`` — the fullest replica's KV-cache usage;
  ``sightglass_inference_preemptions_per_second``;
- ``sightglass_inference_energy_per_token_joules`` — power of the model's GPUs (topology: model ->
  service/pods -> GPUs, ``DCGM_FI_DEV_POWER_USAGE``) over output tokens/s.

Pipelines (``pipeline``, ``dataset``, ``team``):

- ``sightglass_pipeline_freshness_seconds`` — age of the newest consumable data
  (``data_pipeline_freshness_seconds``, else now - ``data_pipeline_last_success_timestamp_seconds``);
- ``sightglass_pipeline_lag_seconds`` — how far past its usual cycle: freshness minus the median of
  the peaks it reached before its last refreshes (published once two cycles were seen).

It also feeds :class:`~sightglass.analytics.predictability.PredictabilityTracker` with the step
times and per-request token rates it computed, so predictability costs no second read.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sightglass.analytics.predictability import PredictabilityTracker
from sightglass.model import Matcher, SampleBatchBuilder, SeriesKey
from sightglass.topology.infer import TopologyBuilder

# Peak dense BF16 tensor FLOP/s per GPU, matched as substrings of dcgm-exporter's ``modelName``
# (first match wins: the PCIe H100 before the SXM one). NVIDIA datasheets, without sparsity.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2.5e15),
    ("B200", 2.25e15),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H800", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
)

ENGINE_ALIASES: dict[str, tuple[str, ...]] = {
    "output_tokens": ("vllm:generation_tokens_total", "sglang:generation_tokens_total"),
    "input_tokens": ("vllm:prompt_tokens_total", "sglang:prompt_tokens_total"),
    "waiting": ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "tgi_queue_size"),
    "running": ("vllm:num_requests_running", "sglang:num_running_reqs", "tgi_batch_current_size"),
    "kv": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage"),
    "preemptions": ("vllm:num_preemptions_total",),
    "ttft": ("vllm:time_to_first_token_seconds", "sglang:time_to_first_token_seconds"),
    "itl": (
        "vllm:inter_token_latency_seconds",
        "vllm:time_per_output_token_seconds",
        "sglang:inter_token_latency_seconds",
        "sglang:time_per_output_token_seconds",
        "tgi_request_mean_time_per_token_duration",
    ),
}
_COUNTER_ROLES = frozenset({"output_tokens", "input_tokens", "preemptions"})
_HIST_ROLES = ("ttft", "itl")
TRAINING = {
    "step": "training_step_duration_seconds",
    "steps": "training_steps_total",
    "dl": "training_dataloader_wait_seconds",
    "rank": "training_rank_compute_seconds",
}
FLOPS_METRICS = ("training_model_flops_per_step", "training_flops_per_step")
PIPELINE = ("data_pipeline_freshness_seconds", "data_pipeline_last_success_timestamp_seconds")
POWER = "DCGM_FI_DEV_POWER_USAGE"
JOB_LABELS = ("slurm_job_id", "job_name", "team")
PIPE_LABELS = ("pipeline", "dataset", "team")


@dataclass(frozen=True, slots=True)
class WorkloadKpiConfig:
    step_ms: int = 10_000
    quantile_window_ms: int = 60_000
    quantiles: tuple[float, ...] = (0.5, 0.95, 0.99)
    peak_flops: tuple[tuple[str, float], ...] = PEAK_BF16_FLOPS

    def __post_init__(self) -> None:
        if self.step_ms <= 0 or self.quantile_window_ms < self.step_ms:
            raise ValueError("workload KPI step must be > 0 and the quantile window at least one step")
        if not self.quantiles or any(not 0 < q < 1 for q in self.quantiles):
            raise ValueError(f"quantiles must be in (0, 1), got {self.quantiles}")


def engine_role(metric: str) -> tuple[str, str] | None:
    """(role, suffix) of an inference-engine metric name: ``("ttft", "_bucket")``, ``("running", "")``."""
    m = metric[4:] if metric.startswith("ray_vllm:") else metric
    m = "vllm:" + m[5:] if metric.startswith("ray_vllm:") else m
    for role, names in ENGINE_ALIASES.items():
        for n in names:
            if m == n:
                return role, ""
            if role in _HIST_ROLES and m.startswith(n) and m[len(n) :] in ("_bucket", "_sum", "_count"):
                return role, m[len(n) :]
    return None


def peak_flops(model_name: str, table: Iterable[tuple[str, float]] = PEAK_BF16_FLOPS) -> float | None:
    for sub, flops in table:
        if sub in model_name:
            return flops
    return None


def histogram_quantile(q: float, les: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``histogram_quantile`` per row: ``les`` ascending upper bounds (last may be +Inf), ``counts``
    rows x buckets of cumulative counts. NaN where a row has no observations."""
    rows = counts.shape[0]
    out = np.full(rows, np.nan)
    if counts.shape[1] == 0:
        return out
    total = counts[:, -1]
    for r in range(rows):
        if not total[r] > 0:
            continue
        c = np.maximum.accumulate(counts[r])  # non-monotonic buckets (a reset mid-window) clamp up
        rank = q * c[-1]
        i = int(np.searchsorted(c, rank, side="left"))
        i = min(i, len(les) - 1)
        if math.isinf(les[i]):
            out[r] = les[i - 1] if i > 0 else np.nan
            continue
        lo = les[i - 1] if i > 0 else 0.0
        c_lo = c[i - 1] if i > 0 else 0.0
        width = c[i] - c_lo
        out[r] = les[i] if width <= 0 else lo + (les[i] - lo) * (rank - c_lo) / width
    return out


@dataclass(slots=True)
class _PipeState:
    peaks: deque[float] = field(default_factory=lambda: deque(maxlen=20))
    last: float = math.nan
    peak: float = 0.0


@dataclass(slots=True)
class WorkloadKpiComputer:
    """Per batch: read the workload series after the watermark, append the KPI samples."""

    config: WorkloadKpiConfig = field(default_factory=WorkloadKpiConfig)
    builder: TopologyBuilder | None = None
    predictability: PredictabilityTracker | None = field(default_factory=PredictabilityTracker)
    watermark_ms: int | None = None
    pipes: dict[tuple[str, str], _PipeState] = field(default_factory=dict)
    # histogram bucket increments of the last window, per (role, model): (les, rows x buckets)
    _hist_tail: dict[tuple[str, str], tuple[tuple[float, ...], np.ndarray]] = field(default_factory=dict)
    written: int = 0

    def step(self, store: Any, until_ms: int, *, start_ms: int | None = None) -> int:
        """Compute up to ``until_ms`` and append the samples; returns how many were written."""
        cfg = self.config
        step = cfg.step_ms
        start = (self.watermark_ms + step) if self.watermark_ms is not None else (start_ms or until_ms)
        if until_ms < start:
            return 0
        if self.builder is None:
            self.builder = TopologyBuilder()
        self.builder.update(store)
        t0 = start - start % step
        n = int((until_ms - t0) // step) + 1
        grid = t0 + np.arange(n, dtype=np.int64) * step
        series = read_workload_series(store, t0 - step, until_ms)
        out = SampleBatchBuilder()
        perf: dict[str, tuple[str, dict[str, str], np.ndarray, np.ndarray | None]] = {}
        power, models_of_gpu = _power(series, grid, step)
        self._training(series, grid, step, models_of_gpu, out, perf)
        self._inference(series, grid, step, power, out, perf)
        self._pipelines(series, grid, step, out)
        if self.predictability is not None:
            self.predictability.update(grid, perf, out)
        self.watermark_ms = until_ms - until_ms % step
        if len(out):
            store.append(out.build())
        self.written += len(out)
        return len(out)

    # ------------------------------------------------------------------ training
    def _training(
        self,
        series: dict[str, list[tuple[dict[str, str], np.ndarray, np.ndarray]]],
        grid: np.ndarray,
        step: int,
        gpu_model: dict[tuple[str, str], str],
        out: SampleBatchBuilder,
        perf: dict[str, tuple[str, dict[str, str], np.ndarray, np.ndarray | None]],
    ) -> None:
        jobs: dict[str, dict[str, Any]] = {}

        def job(labels: dict[str, str]) -> dict[str, Any] | None:
            jid = labels.get("slurm_job_id") or labels.get("job_id")
            if not jid:
                return None
            j = jobs.setdefault(jid, {"labels": {"slurm_job_id": jid}, "ranks": {}})
            for k in JOB_LABELS:
                if labels.get(k):
                    j["labels"][k] = labels[k]
            return j

        for role, metric in TRAINING.items():
            for labels, ts, vals in series.get(metric, []):
                j = job(labels)
                if j is None:
                    continue
                v = _on_grid(ts, vals, grid, step, counter=(role == "steps"))
                if role == "rank":
                    rk = labels.get("rank", "")
                    ident = {k: labels[k] for k in ("rank", "Hostname", "hostname", "gpu") if labels.get(k)}
                    prev = j["ranks"].get(rk)
                    j["ranks"][rk] = (ident, v if prev is None else np.where(np.isnan(v), prev[1], v))
                else:
                    j[role] = v if role not in j else np.where(np.isnan(v), j[role], v)
        for metric in FLOPS_METRICS:
            for labels, ts, vals in series.get(metric, []):
                j = job(labels)
                if j is not None and "flops" not in j:
                    j["flops"] = _on_grid(ts, vals, grid, step)
        for jid, j in sorted(jobs.items()):
            lab = j["labels"]
            st = j.get("step")
            if st is not None:
                _emit(out, "sightglass_training_step_time_seconds", lab, grid, st)
                perf[f"job:{jid}"] = ("training", dict(lab), st, None)
                dl = j.get("dl")
                if dl is not None:
                    with np.errstate(all="ignore"):
                        _emit(
                            out,
                            "sightglass_training_dataloader_wait_ratio",
                            lab,
                            grid,
                            np.where(st > 0, dl / st, np.nan),
                        )
                rate = j.get("steps")
                if rate is not None:
                    work = st - (dl if dl is not None else 0.0)
                    _emit(out, "sightglass_training_goodput_ratio", lab, grid, np.clip(rate * work, 0.0, 1.0))
            ranks = j["ranks"]
            if ranks:
                mat = np.column_stack([v for _, v in ranks.values()])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # rows with no rank reporting
                    med = np.nanmedian(mat, axis=1)
                for ident, v in ranks.values():
                    with np.errstate(all="ignore"):
                        score = np.where(med > 0, v / med, np.nan)
                    _emit(out, "sightglass_training_straggler_score", {**lab, **ident}, grid, score)
            flops, rate = j.get("flops"), j.get("steps")
            if flops is not None and rate is not None and ranks:
                peaks = [
                    peak_flops(
                        gpu_model.get((i.get("Hostname") or i.get("hostname", ""), i.get("gpu", "")), ""),
                        self.config.peak_flops,
                    )
                    for i, _ in ranks.values()
                ]
                if all(p is not None for p in peaks):
                    total = float(sum(p for p in peaks if p is not None))
                    _emit(out, "sightglass_training_mfu_ratio", lab, grid, flops * rate / total)

    # ------------------------------------------------------------------ inference
    def _inference(
        self,
        series: dict[str, list[tuple[dict[str, str], np.ndarray, np.ndarray]]],
        grid: np.ndarray,
        step: int,
        power: dict[str, np.ndarray],
        out: SampleBatchBuilder,
        perf: dict[str, tuple[str, dict[str, str], np.ndarray, np.ndarray | None]],
    ) -> None:
        n = len(grid)
        per: dict[str, dict[str, Any]] = {}
        hist: dict[tuple[str, str], dict[str, dict[float, np.ndarray]]] = {}
        for metric, items in series.items():
            er = engine_role(metric)
            if er is None:
                continue
            role, suffix = er
            for labels, ts, vals in items:
                model = labels.get("model_name") or labels.get("model")
                if not model:
                    continue
                if role in _HIST_ROLES:
                    if suffix != "_bucket" or "le" not in labels:
                        continue
                    try:
                        le = float(labels["le"])
                    except ValueError:
                        continue
                    d = _on_grid(ts, vals, grid, step, counter=True, per_second=False)
                    acc = hist.setdefault((role, model), {}).setdefault(metric, {})
                    acc[le] = acc.get(le, np.zeros(n)) + np.nan_to_num(d, nan=0.0)
                    continue
                v = _on_grid(ts, vals, grid, step, counter=role in _COUNTER_ROLES)
                m = per.setdefault(model, {})
                if role == "kv":
                    m[role] = v if role not in m else np.fmax(m[role], v)
                else:
                    m[role] = v if role not in m else _nansum(m[role], v)
        for model, m in sorted(per.items()):
            lab = {"model_name": model}
            tok = m.get("output_tokens")
            if tok is not None:
                _emit(
                    out, "sightglass_inference_tokens_per_second", {**lab, "token_type": "output"}, grid, tok
                )
            if m.get("input_tokens") is not None:
                _emit(
                    out,
                    "sightglass_inference_tokens_per_second",
                    {**lab, "token_type": "input"},
                    grid,
                    m["input_tokens"],
                )
            for role, name in (
                ("waiting", "sightglass_inference_queue_depth"),
                ("running", "sightglass_inference_requests_running"),
                ("kv", "sightglass_inference_kv_cache_pressure_ratio"),
                ("preemptions", "sightglass_inference_preemptions_per_second"),
            ):
                if m.get(role) is not None:
                    _emit(out, name, lab, grid, m[role])
            if tok is not None and self.builder is not None:
                gpus = [g for g in self.builder.topology.depends_on(f"model:{model}") if g.startswith("gpu:")]
                pw = [power[g] for g in gpus if g in power]
                if pw:
                    watts = np.nansum(np.column_stack(pw), axis=1)
                    with np.errstate(all="ignore"):
                        jpt = np.where(tok > 0, watts / tok, np.nan)
                    _emit(out, "sightglass_inference_energy_per_token_joules", lab, grid, jpt)
        w = max(1, self.config.quantile_window_ms // step)
        for (role, model), hnames in sorted(hist.items()):
            hname = next(
                k
                for a in (*ENGINE_ALIASES[role], "")
                for k in sorted(hnames)
                if not a or k in (a + "_bucket", "ray_" + a + "_bucket")
            )  # one name per model: vLLM's new ITL histogram wins over the deprecated TPOT one
            buckets = hnames[hname]
            les = tuple(sorted(buckets))
            inc = np.column_stack([buckets[le] for le in les])
            tail = self._hist_tail.get((role, model))
            if tail is not None and tail[0] == les:
                inc_all = np.vstack([tail[1], inc])
            else:
                inc_all = inc
            self._hist_tail[(role, model)] = (les, inc_all[-(w - 1) :] if w > 1 else inc_all[:0])
            csum = np.cumsum(np.vstack([np.zeros((1, len(les))), inc_all]), axis=0)
            k = inc_all.shape[0]
            lo = np.maximum(np.arange(k) + 1 - w, 0)
            window = (csum[1:] - csum[lo])[-n:]
            out_name = (
                "sightglass_inference_time_to_first_token_seconds"
                if role == "ttft"
                else "sightglass_inference_inter_token_latency_seconds"
            )
            les_arr = np.asarray(les, dtype=float)
            for q in self.config.quantiles:
                _emit(
                    out,
                    out_name,
                    {"model_name": model, "quantile": f"{q:g}"},
                    grid,
                    histogram_quantile(q, les_arr, window),
                )
            tok = per.get(model, {}).get("output_tokens")
            if role == "itl" and tok is not None:
                # predictability: per-request decode speed (1 / median ITL over the window) at the
                # same demand (output tokens/s of the model)
                with np.errstate(all="ignore"):
                    speed = 1.0 / histogram_quantile(0.5, les_arr, window)
                perf[f"model:{model}"] = ("inference", {"model_name": model}, speed, tok)

    # ------------------------------------------------------------------ pipelines
    def _pipelines(
        self,
        series: dict[str, list[tuple[dict[str, str], np.ndarray, np.ndarray]]],
        grid: np.ndarray,
        step: int,
        out: SampleBatchBuilder,
    ) -> None:
        fresh: dict[tuple[str, str], tuple[dict[str, str], np.ndarray]] = {}
        for labels, ts, vals in series.get(PIPELINE[0], []):
            key = (labels.get("pipeline", ""), labels.get("dataset", ""))
            fresh[key] = (
                {k: labels[k] for k in PIPE_LABELS if labels.get(k)},
                _on_grid(ts, vals, grid, step),
            )
        for labels, ts, vals in series.get(PIPELINE[1], []):
            key = (labels.get("pipeline", ""), labels.get("dataset", ""))
            if key in fresh:
                continue
            last = _on_grid(ts, vals, grid, step)
            fresh[key] = (
                {k: labels[k] for k in PIPE_LABELS if labels.get(k)},
                np.maximum(grid / 1000.0 - last, 0.0),
            )
        for key, (lab, f) in sorted(fresh.items()):
            if not key[0]:
                continue
            _emit(out, "sightglass_pipeline_freshness_seconds", lab, grid, f)
            st = self.pipes.setdefault(key, _PipeState())
            lag = np.full(len(grid), np.nan)
            for i, x in enumerate(f.tolist()):
                if not math.isfinite(x):
                    continue
                if math.isfinite(st.last) and x < 0.5 * st.last:  # refreshed: close the cycle
                    st.peaks.append(st.peak)
                    st.peak = 0.0
                st.peak = max(st.peak, x)
                st.last = x
                if len(st.peaks) >= 2:
                    lag[i] = max(0.0, x - float(np.median(np.fromiter(st.peaks, float))))
            _emit(out, "sightglass_pipeline_lag_seconds", lab, grid, lag)

    def status(self) -> dict[str, Any]:
        return {
            "watermark_ms": self.watermark_ms,
            "samples_written": self.written,
            "pipelines": len(self.pipes),
        }


def _nansum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    both = np.isnan(a) & np.isnan(b)
    s = np.nan_to_num(a, nan=0.0) + np.nan_to_num(b, nan=0.0)
    s[both] = np.nan
    return s


def _emit(
    out: SampleBatchBuilder, name: str, labels: dict[str, str], grid: np.ndarray, v: np.ndarray
) -> None:
    key = SeriesKey.of(name, labels)
    ok = np.isfinite(v)
    for t, x in zip(grid[ok].tolist(), v[ok].tolist(), strict=True):
        out.add(key, t, x)


def _on_grid(
    ts: np.ndarray,
    vals: np.ndarray,
    grid: np.ndarray,
    step: int,
    *,
    counter: bool = False,
    per_second: bool = True,
) -> np.ndarray:
    """Values on ``grid`` (the sample within half a step of each point); counters as the increase
    over the step before each point (per second unless ``per_second`` is False), resets dropped."""
    n = len(grid)
    t0 = int(grid[0]) - step
    full = np.full(n + 1, np.nan)
    idx = np.rint((ts - t0) / step).astype(np.int64)
    ok = (idx >= 0) & (idx <= n)
    full[idx[ok]] = vals[ok]
    if not counter:
        return full[1:]
    d = full[1:] - full[:-1]
    d[d < 0] = np.nan
    return d / (step / 1000.0) if per_second else d


def _power(
    series: dict[str, list[tuple[dict[str, str], np.ndarray, np.ndarray]]], grid: np.ndarray, step: int
) -> tuple[dict[str, np.ndarray], dict[tuple[str, str], str]]:
    """GPU power per ``gpu:<UUID>`` on the grid, and the GPU model per (host, index)."""
    power: dict[str, np.ndarray] = {}
    model: dict[tuple[str, str], str] = {}
    for labels, ts, vals in series.get(POWER, []):
        uuid = labels.get("UUID") or labels.get("uuid")
        host = labels.get("Hostname") or labels.get("hostname") or ""
        if labels.get("modelName"):
            model[(host, labels.get("gpu", ""))] = labels["modelName"]
        if not uuid:
            continue
        v = _on_grid(ts, vals, grid, step)
        gid = f"gpu:{uuid}"
        power[gid] = v if gid not in power else np.where(np.isnan(v), power[gid], v)
    return power, model


def read_workload_series(
    store: Any, start_ms: int, end_ms: int
) -> dict[str, list[tuple[dict[str, str], np.ndarray, np.ndarray]]]:
    names = [*TRAINING.values(), *FLOPS_METRICS, *PIPELINE, POWER]
    for role, aliases in ENGINE_ALIASES.items():
        for a in aliases:
            if role in _HIST_ROLES:
                names.append(a + "_bucket")
            else:
                names.append(a)
    rx = "|".join(re.escape(x) for x in names)
    rx = f"(ray_)?({rx})"
    out: dict[str, list[tuple[dict[str, str], np.ndarray, np.ndarray]]] = {}
    for sd in store.select([Matcher("__name__", "=~", rx)], start_ms, end_ms):
        ok = ~sd.stale
        out.setdefault(sd.key.metric, []).append((sd.key.label_dict(), sd.ts_ms[ok], sd.values[ok]))
    return out


def kpi_names() -> list[str]:
    """Every series name the workload KPIs and predictability write."""
    return [
        "sightglass_training_step_time_seconds",
        "sightglass_training_goodput_ratio",
        "sightglass_training_dataloader_wait_ratio",
        "sightglass_training_straggler_score",
        "sightglass_training_mfu_ratio",
        "sightglass_inference_tokens_per_second",
        "sightglass_inference_time_to_first_token_seconds",
        "sightglass_inference_inter_token_latency_seconds",
        "sightglass_inference_queue_depth",
        "sightglass_inference_requests_running",
        "sightglass_inference_kv_cache_pressure_ratio",
        "sightglass_inference_preemptions_per_second",
        "sightglass_inference_energy_per_token_joules",
        "sightglass_pipeline_freshness_seconds",
        "sightglass_pipeline_lag_seconds",
        "sightglass_workload_predictability_score",
        "sightglass_workload_performance_deviation_ratio",
        "sightglass_fleet_predictable_ratio",
        "sightglass_fleet_scored_workloads",
    ]

"""Workload KPIs and predictability: unit checks, then a simulated factory analysed incrementally."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from analytics_helpers import Analysed

from sightglass.analytics.evaluate import START_MS
from sightglass.analytics.predictability import PredictabilityConfig, PredictabilityTracker, load_bin
from sightglass.analytics.workload import WorkloadKpiComputer, engine_role, histogram_quantile, peak_flops
from sightglass.analytics.xid import CRITICAL_XIDS, xid_info
from sightglass.model import Matcher, SampleBatchBuilder, SeriesKey
from sightglass.store.duckdb import DuckDBStore, StoreOptions


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    les = np.array([0.1, 0.5, 1.0, math.inf])
    counts = np.array([[10.0, 30.0, 40.0, 40.0], [0, 0, 0, 0], [0, 0, 10, 20]])
    q = histogram_quantile(0.5, les, counts)
    assert q[0] == pytest.approx(0.1 + 0.4 * (20 - 10) / 20)  # rank 20 in the (0.1, 0.5] bucket
    assert math.isnan(q[1])  # no observations
    assert histogram_quantile(0.99, les, counts)[2] == 1.0  # in +Inf: the highest finite bound
    assert histogram_quantile(0.25, les, counts)[2] == pytest.approx(0.5 + 0.5 * 5 / 10)


def test_names_bins_and_tables() -> None:
    assert engine_role("vllm:time_to_first_token_seconds_bucket") == ("ttft", "_bucket")
    assert engine_role("ray_vllm:num_requests_waiting") == ("waiting", "")
    assert engine_role("sglang:num_queue_reqs") == ("waiting", "")
    assert engine_role("vllm:cache_config_info") is None
    assert [load_bin(x) for x in (0, 1, 2, 3, 4, 5, 6, 8, 11, 12)] == [0, 1, 3, 4, 5, 5, 6, 7, 7, 8]
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("Tesla K80") is None
    # the codes calibration.md names, with NVIDIA's resolution buckets
    assert {48, 64, 74, 79, 95, 119, 120} <= CRITICAL_XIDS
    assert xid_info(94).severity == "warning" and xid_info(94).action == "restart_app"  # contained ECC
    assert xid_info(45).severity == "info" and xid_info(79).action == "reboot_node"
    assert xid_info(9999).severity == "warning" and xid_info(9999).action == "check_catalog"


def test_predictability_scores_steady_and_jittery_workloads() -> None:
    rng = np.random.default_rng(1)
    grid = START_MS + np.arange(200, dtype=np.int64) * 10_000
    tr = PredictabilityTracker(PredictabilityConfig(min_rated=20))
    steady = 1.0 + 0.02 * rng.standard_normal(200)
    jittery = 1.0 * np.exp(0.4 * rng.standard_normal(200))
    # demand doubles half way: at equal load the per-request speed is what matters, not tokens/s
    load = np.where(np.arange(200) < 100, 4.0, 16.0)
    speed = np.where(load < 8, 50.0, 40.0) * (1 + 0.01 * rng.standard_normal(200))
    out = tr.update(
        grid[:120],
        {
            "job:1": ("training", {"slurm_job_id": "1"}, steady[:120], None),
            "job:2": ("training", {"slurm_job_id": "2"}, jittery[:120], None),
            "model:m": ("inference", {"model_name": "m"}, speed[:120], load[:120]),
        },
    )
    tr.update(  # the next batch continues the state
        grid[120:],
        {
            "job:1": ("training", {"slurm_job_id": "1"}, steady[120:], None),
            "job:2": ("training", {"slurm_job_id": "2"}, jittery[120:], None),
            "model:m": ("inference", {"model_name": "m"}, speed[120:], load[120:]),
        },
        out,
    )
    s = {w: tr.workloads[w].score(tr.config) for w in tr.workloads}
    assert s["job:1"] == 1.0 and s["model:m"] == 1.0
    assert s["job:2"] is not None and s["job:2"] < 0.5
    ratio, n = tr.fleet_ratio(int(grid[-1]))
    assert n == 3 and ratio == pytest.approx(2 / 3)
    batch = out.build()
    names = {k.metric for k in batch.series}
    assert {"sightglass_workload_predictability_score", "sightglass_fleet_predictable_ratio"} <= names
    with pytest.raises(ValueError, match="does not match the grid"):
        tr.update(grid, {"job:1": ("training", {}, steady[:5], None)})
    with pytest.raises(ValueError, match="tolerance"):
        PredictabilityConfig(tolerance=1.5)


def test_mfu_where_flops_are_known(tmp_path: Path) -> None:
    """A trainer that exports its FLOPs per step: MFU = FLOPs/step x steps/s / (ranks x peak)."""
    store = DuckDBStore(tmp_path / "d", options=StoreOptions(compact_every_s=3600))
    try:
        b = SampleBatchBuilder()
        job = {"slurm_job_id": "7", "job_name": "llm", "team": "research"}
        for i in range(61):
            t = START_MS + i * 10_000
            b.add(SeriesKey.of("training_step_duration_seconds", job), t, 2.0)
            b.add(SeriesKey.of("training_dataloader_wait_seconds", job), t, 0.5)
            b.add(SeriesKey.of("training_steps_total", job), t, i * 5.0)  # 0.5 steps/s
            b.add(SeriesKey.of("training_model_flops_per_step", job), t, 2.0e15)
            for g in range(2):
                rank = {"slurm_job_id": "7", "rank": str(g), "Hostname": "n1", "gpu": str(g)}
                b.add(SeriesKey.of("training_rank_compute_seconds", rank), t, 1.0 + 0.5 * g)
                gpu = {
                    "Hostname": "n1",
                    "gpu": str(g),
                    "UUID": f"GPU-{g}",
                    "modelName": "NVIDIA H100 80GB HBM3",
                }
                b.add(SeriesKey.of("DCGM_FI_DEV_POWER_USAGE", gpu), t, 500.0)
        store.append(b.build())
        w = WorkloadKpiComputer()
        assert w.step(store, START_MS + 600_000, start_ms=START_MS + 60_000) > 0

        def last(name: str, **match: str) -> float:
            ms = [Matcher("__name__", "=", name)] + [Matcher(k, "=", v) for k, v in match.items()]
            (sd,) = store.select(ms, START_MS, START_MS + 600_000)
            return float(sd.values[-1])

        assert last("sightglass_training_mfu_ratio") == pytest.approx(2.0e15 * 0.5 / (2 * 989e12))
        assert last("sightglass_training_goodput_ratio") == pytest.approx(0.5 * (2.0 - 0.5))
        assert last("sightglass_training_dataloader_wait_ratio") == pytest.approx(0.25)
        assert last("sightglass_training_straggler_score", rank="1") == pytest.approx(1.5 / 1.25)
        assert last("sightglass_training_step_time_seconds") == 2.0
    finally:
        store.close()


def _series(a: Analysed, name: str, **match: str) -> list:
    ms = [Matcher("__name__", "=", name)] + [Matcher(k, "=", v) for k, v in match.items()]
    return a.store.select(ms, START_MS, a.end_ms)


def test_training_kpis_and_straggler(analysed: Analysed) -> None:
    f = analysed.fault("straggler_rank")
    host, gpu = f.root["Hostname"], f.root["gpu"]
    scores = _series(analysed, "sightglass_training_straggler_score", Hostname=host, gpu=gpu)
    assert scores
    sd = max(scores, key=lambda s: len(s.values))
    during = sd.values[(sd.ts_ms > f.start_ms + 60_000) & (sd.ts_ms < f.end_ms)]
    before = sd.values[sd.ts_ms < f.start_ms]
    assert np.nanmedian(during) > 1.3  # the simulator slows that rank's compute x1.6
    assert abs(np.nanmedian(before) - 1.0) < 0.1
    job = sd.key.label_dict()["slurm_job_id"]  # its peers in the same job stay in step
    others = [
        s
        for s in _series(analysed, "sightglass_training_straggler_score", slurm_job_id=job)
        if s.key != sd.key
    ]
    assert others and all(abs(np.nanmedian(s.values) - 1.0) < 0.15 for s in others)
    for s in _series(analysed, "sightglass_training_goodput_ratio"):
        assert np.nanmin(s.values) >= 0 and np.nanmax(s.values) <= 1
    step = _series(analysed, "sightglass_training_step_time_seconds")
    src = {s.key.label_dict()["slurm_job_id"]: s for s in _series(analysed, "training_step_duration_seconds")}
    for s in step:
        raw = src[s.key.label_dict()["slurm_job_id"]]
        common, i, j = np.intersect1d(s.ts_ms, raw.ts_ms, return_indices=True)
        assert len(common) and np.allclose(s.values[i], raw.values[j])


def test_inference_kpis(analysed: Analysed) -> None:
    svc = analysed.sim.services[0]
    model = svc.model_name
    tok = _series(analysed, "sightglass_inference_tokens_per_second", model_name=model, token_type="output")
    raw = _series(analysed, "vllm:generation_tokens_total", model_name=model)
    assert len(tok) == 1 and raw
    # independently: the summed counter increase over the 10 s before one grid point
    t = int(tok[0].ts_ms[len(tok[0].ts_ms) // 2])
    want = 0.0
    for r in raw:
        a = r.values[r.ts_ms == t - 10_000]
        b = r.values[r.ts_ms == t]
        if len(a) and len(b):
            want += (b[0] - a[0]) / 10
    got = tok[0].values[tok[0].ts_ms == t][0]
    assert got == pytest.approx(want)
    for name in (
        "sightglass_inference_queue_depth",
        "sightglass_inference_requests_running",
        "sightglass_inference_kv_cache_pressure_ratio",
        "sightglass_inference_energy_per_token_joules",
    ):
        assert _series(analysed, name, model_name=model), name
    kv = _series(analysed, "sightglass_inference_kv_cache_pressure_ratio", model_name=model)[0]
    assert np.nanmin(kv.values) >= 0 and np.nanmax(kv.values) <= 1
    e = _series(analysed, "sightglass_inference_energy_per_token_joules", model_name=model)[0]
    assert 0.05 < np.nanmedian(e.values) < 50  # joules per output token, calibration.md C.4: 0.07-3.8
    q = {
        s.key.label_dict()["quantile"]: s
        for s in _series(analysed, "sightglass_inference_time_to_first_token_seconds", model_name=model)
    }
    assert set(q) == {"0.5", "0.95", "0.99"}
    common = np.intersect1d(q["0.5"].ts_ms, q["0.99"].ts_ms)
    p50 = q["0.5"].values[np.isin(q["0.5"].ts_ms, common)]
    p99 = q["0.99"].values[np.isin(q["0.99"].ts_ms, common)]
    assert np.all(p50 <= p99 + 1e-12) and np.nanmedian(p99) > 0
    assert _series(
        analysed, "sightglass_inference_inter_token_latency_seconds", model_name=model, quantile="0.95"
    )


def test_pipeline_freshness_and_lag(analysed: Analysed) -> None:
    f = analysed.fault("pipeline_stall")
    lag = _series(analysed, "sightglass_pipeline_lag_seconds", pipeline=f.root["pipeline"])
    assert len(lag) == 1
    sd = lag[0]
    late = sd.values[sd.ts_ms > f.start_ms + 20 * 60_000]
    assert len(late) and np.nanmax(late) > 300  # stalled: well past its usual cycle
    fresh = _series(analysed, "sightglass_pipeline_freshness_seconds", pipeline=f.root["pipeline"])[0]
    assert np.nanmax(fresh.values) > np.nanmax(sd.values)
    healthy = [s for s in _series(analysed, "sightglass_pipeline_lag_seconds") if s.key != sd.key]
    assert all(np.nanmax(s.values) < 120 for s in healthy if len(s.values))


def test_predictability_of_the_simulated_fleet(analysed: Analysed) -> None:
    pred = analysed.service.workloads.predictability
    assert pred is not None
    summary = pred.summary(analysed.end_ms)
    kinds = {w["kind"] for w in summary["workloads"] if w["score"] is not None}
    assert kinds == {"training", "inference"}
    fleet = _series(analysed, "sightglass_fleet_predictable_ratio")
    assert len(fleet) == 1 and 0 <= fleet[0].values[-1] <= 1
    assert fleet[0].values[-1] == pytest.approx(summary["fleet_predictable_ratio"])
    # the job with the straggler ran 1.5-2x slower from the fault on: its score fell below "high"
    f = analysed.fault("straggler_rank")
    ranks = _series(analysed, "training_rank_compute_seconds", Hostname=f.root["Hostname"], gpu=f.root["gpu"])
    jid = next(
        r.key.label_dict()["slurm_job_id"] for r in ranks if r.ts_ms[0] < f.start_ms < r.ts_ms[-1]
    )  # the job on the slowed GPU when the fault started
    (score,) = _series(analysed, "sightglass_workload_predictability_score", workload=f"job:{jid}")
    assert np.nanmin(score.values[score.ts_ms < f.start_ms]) == 1.0
    assert score.values[-1] < 0.9
    dev = _series(analysed, "sightglass_workload_performance_deviation_ratio", workload=f"job:{jid}")[0]
    assert np.nanmax(dev.values[dev.ts_ms > f.start_ms + 60_000]) > 0.3

"""Every fault class produces its expected symptoms, and records its ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from sim_helpers import Run, run_sim

from sightglass.simulate.faults import CATALOGUE
from sightglass.simulate.physics import CLOCKS_SETTING, HW_POWER_BRAKE, SW_THERMAL


def _job(run: Run) -> str:
    sym = run.sim.faults[0].symptom
    return sym.split('slurm_job_id="')[1].split('"')[0]


def _rate(run: Run, name: str, **m: str) -> tuple[float, float]:
    ts, v = run.values(name, **m)
    pre = (ts < run.fault_ms) & (ts >= run.fault_ms - 300_000)
    post = (ts >= run.fault_ms + 60_000) & (ts <= run.fault_ms + 600_000)

    def r(sel: np.ndarray) -> float:
        t, x = ts[sel], v[sel].ravel() if v.ndim == 1 else v[sel][:, 0]
        return float((x[-1] - x[0]) / ((t[-1] - t[0]) / 1000)) if len(t) > 1 else 0.0

    return r(pre), r(post)


@pytest.fixture(scope="module", params=list(CATALOGUE))
def fault_run(request: pytest.FixtureRequest) -> Run:
    return run_sim(fault=request.param)


def test_catalogue_has_fifteen_classes_across_layers() -> None:
    assert len(CATALOGUE) >= 15
    assert len({c.layer for c in CATALOGUE.values()}) >= 8


def test_ground_truth_recorded(fault_run: Run) -> None:
    f = fault_run.sim.faults[0]
    truth = f.truth()
    assert truth["root"]["match"], truth
    assert truth["expected_symptoms"]
    assert truth["start_ms"] == fault_run.fault_ms
    # the root's labels occur in the data
    names = [s.split("(")[-1] for s in f.cls.symptoms]
    found = False
    for fam in fault_run.data:
        for sid in fault_run.data[fam]:
            d = dict(fault_run.sim.labels.full_pairs(sid))
            if all(d.get(k) == v for k, v in truth["root"]["match"].items()):
                found = True
                break
        if found:
            break
    assert found, f"root {truth['root']} not in the data"
    assert names


def test_symptoms(fault_run: Run) -> None:
    r = fault_run
    f = r.sim.faults[0]
    name, root = f.fault, f.root
    if name == "gpu_thermal":
        pre, post = r.before_after("DCGM_FI_DEV_GPU_TEMP", "max", **root)
        assert pre < 80 <= 86 <= post <= 92
        _, reasons = r.values("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", **root)
        assert (reasons.astype(int) & SW_THERMAL).any()
        c_pre, c_post = r.before_after("DCGM_FI_DEV_SM_CLOCK", "min", **root)
        assert c_post < c_pre
    elif name == "power_brake":
        _, reasons = r.values("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", Hostname=root["Hostname"], gpu="0")
        assert (reasons.astype(int) & HW_POWER_BRAKE).any()
        c_pre, c_post = r.before_after("DCGM_FI_DEV_SM_CLOCK", Hostname=root["Hostname"], gpu="0")
        assert c_post <= 0.55 * c_pre
    elif name == "power_cap":
        pre, post = r.before_after("DCGM_FI_DEV_POWER_MGMT_LIMIT", **root, gpu="0")
        assert post < pre
        _, p = r.before_after("DCGM_FI_DEV_POWER_USAGE", "max", **root, gpu="0")
        assert p <= post + 0.5
    elif name == "xid79_fell_off_bus":
        assert r.series("DCGM_FI_DEV_XID_ERRORS", err_code="79", **root)
        ts, _ = r.values("DCGM_FI_DEV_GPU_TEMP", **root)
        assert not ((ts > r.fault_ms + 20_000) & (ts < f.end_ms)).any(), "series must stop"
        pre, post = _rate(r, "training_steps_total", slurm_job_id=_job(r))
        assert pre > 0 and post == 0
    elif name == "hbm_ecc":
        codes = {dict(k).get("err_code") for k in r.series("DCGM_FI_DEV_XID_ERRORS", **root)}
        assert codes & {"48", "94", "95", "63"}
        pre, post = r.before_after("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "max", **root)
        assert post > pre
        assert any(e["kind"] == "job.end" and e["attributes"]["state"] == "FAILED" for e in r.sim.events)
    elif name == "nvlink_degraded":
        pre, post = r.before_after("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "max", **root)
        assert post > pre
        s_pre, s_post = r.before_after("training_step_duration_seconds", slurm_job_id=_job(r))
        assert s_post > s_pre * 1.03
        assert r.series("DCGM_FI_DEV_XID_ERRORS", err_code="74", **root)
    elif name == "ib_link_flap":
        pre, post = _rate(r, "node_infiniband_port_errors_received_total", **root)
        assert post > pre + 10
        s_pre, s_post = r.before_after("training_step_duration_seconds", slurm_job_id=_job(r))
        assert s_post > s_pre * 1.05
    elif name == "ib_congestion":
        pre, post = _rate(r, "node_infiniband_port_transmit_wait_total")
        assert post > 3 * pre
        s_pre, s_post = r.before_after("training_step_duration_seconds", slurm_job_id=_job(r))
        assert s_post > s_pre * 1.05
    elif name == "leaf_switch_failure":
        assert r.before_after("ib_switch_up", "min", **root) == (1.0, 0.0)
        hosts = [n.hostname for n in r.sim.factory.nodes if n.leaf == root["switch"]]
        ts, v = r.values("node_infiniband_state_id", instance=f"{hosts[0]}:9100")
        assert v[ts >= r.fault_ms + 10_000].min() / 8 == 1.0  # 8 HCAs all DOWN (state 1)
    elif name == "storage_slowdown":
        req = _rate(r, "node_mountstats_nfs_operations_requests_total")
        resp = _rate(r, "node_mountstats_nfs_operations_response_time_seconds_total")
        assert resp[1] / req[1] > 3 * resp[0] / req[0]
        d_pre, d_post = r.before_after("training_dataloader_wait_seconds", slurm_job_id=_job(r))
        assert d_post > 4 * d_pre
    elif name == "pipeline_stall":
        pre, post = r.before_after("data_pipeline_freshness_seconds", "max", **root)
        assert post > 1.15 * pre
    elif name == "cpu_starvation":
        pre, post = _rate(r, "node_cpu_seconds_total", instance=f"{root['Hostname']}:9100", mode="user")
        assert post > 2 * pre
        s_pre, s_post = r.before_after("training_step_duration_seconds", slurm_job_id=_job(r))
        assert s_post > s_pre * 1.05
    elif name == "host_oom":
        total = r.before_after("node_memory_MemTotal_bytes", instance=f"{root['Hostname']}:9100")[0]
        _, avail = r.before_after(
            "node_memory_MemAvailable_bytes", "min", instance=f"{root['Hostname']}:9100"
        )
        assert avail < 0.05 * total
        assert r.before_after("node_vmstat_oom_kill", "max", instance=f"{root['Hostname']}:9100")[1] >= 1
    elif name == "kv_cache_pressure":
        pre, post = _rate(r, "vllm:num_preemptions_total", **root)
        assert post > pre
        _, kv = r.before_after("vllm:kv_cache_usage_perc", "max", **root)
        assert kv > 0.8
    elif name == "bad_deploy":
        assert r.series("vllm:cache_config_info", gpu_memory_utilization="0.6")
        ts, h = r.values("vllm:inter_token_latency_seconds", **root)

        def mean_itl(sel: np.ndarray) -> float:
            return float((h[sel][-1, -1] - h[sel][0, -1]) / max(h[sel][-1, -2] - h[sel][0, -2], 1))

        assert mean_itl(ts > r.fault_ms + 60_000) > 1.4 * mean_itl(ts < r.fault_ms)
        assert any(e["kind"] == "k8s.deploy" for e in r.sim.events)
    elif name == "driver_drift":
        assert r.series("DCGM_FI_DEV_GPU_TEMP", DCGM_FI_DRIVER_VERSION="535.183.01", **root)
        _, reasons = r.values("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", gpu="0", **root)
        assert (reasons.astype(int) & CLOCKS_SETTING).any()
    elif name == "straggler_rank":
        job = _job(r)
        ranks = r.series("training_rank_compute_seconds", slurm_job_id=job)
        after = {
            dict(k)["Hostname"] + "/" + dict(k)["gpu"]: v[ts > r.fault_ms + 60_000].mean()
            for k, (ts, v) in ranks.items()
        }
        med = float(np.median(list(after.values())))
        assert after[f"{root['Hostname']}/{root['gpu']}"] > 1.4 * med
    elif name == "nccl_hang":
        pre, post = _rate(r, "training_steps_total", **root)
        assert pre > 0 and post == 0
    elif name == "silent_data_corruption":
        pre, post = r.before_after("training_loss", "max", slurm_job_id=_job(r))
        assert post > 1.4 * pre
    else:  # pragma: no cover
        pytest.fail(f"no symptom check for {name}")

"""MIG slices, time-slicing, fractional requests and Slurm jobs read from a real store through the
topology: each GPU's holders get the right shares, nothing is counted twice."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from sightglass.cost.analysis import CostAnalysis
from sightglass.cost.prices import PriceSheet
from sightglass.model import Event, SampleBatch
from sightglass.store.duckdb import DuckDBStore, StoreOptions

T0 = 1_790_000_000_000
HOUR = 3_600_000
STEP = 10_000
H100 = "NVIDIA H100 80GB HBM3"
SHEET = PriceSheet.from_dict(
    {"version": [{"effective": "2020-01-01", "gpu": {"H100": {"on_demand_usd_per_gpu_hour": "7"}}}]}
)


def _gpu(uuid: str, host: str, idx: str, **extra: str) -> dict[str, str]:
    return {"UUID": uuid, "Hostname": host, "gpu": idx, "modelName": H100, **extra}


def _rows() -> list[tuple[str, dict[str, str], int, float]]:
    series = [
        # GPU-A: two MIG slices, 3g.40gb (3/7) for pod m1 and 1g.10gb (1/7) for pod m2
        (
            "DCGM_FI_PROF_SM_ACTIVE",
            _gpu("GPU-A", "h1", "0", GPU_I_ID="1", GPU_I_PROFILE="3g.40gb", pod="m1", namespace="ml"),
        ),
        (
            "DCGM_FI_PROF_SM_ACTIVE",
            _gpu("GPU-A", "h1", "0", GPU_I_ID="2", GPU_I_PROFILE="1g.10gb", pod="m2", namespace="ml"),
        ),
        # GPU-B: time-sliced by pods a and b (dcgm-exporter repeats the GPU's series per pod)
        ("DCGM_FI_PROF_SM_ACTIVE", _gpu("GPU-B", "h1", "1", pod="a", namespace="ml")),
        ("DCGM_FI_PROF_SM_ACTIVE", _gpu("GPU-B", "h1", "1", pod="b", namespace="ml")),
        # GPU-C: pod c asked for half a GPU
        ("DCGM_FI_PROF_SM_ACTIVE", _gpu("GPU-C", "h1", "2", pod="c", namespace="ml")),
        # GPU-D on h2: a Slurm job for the first half hour (events), then free
        ("DCGM_FI_PROF_SM_ACTIVE", _gpu("GPU-D", "h2", "0")),
        # GPU-E on h4: two bare processes (no pod, no job), measured by the agent at 0.6 and 0.2 SM
        (
            "sightglass_gpu_process_memory_used_bytes",
            _gpu("GPU-E", "h4", "1", pid="100", user="ana", command="python a.py"),
        ),
        (
            "sightglass_gpu_process_sm_utilization_ratio",
            _gpu("GPU-E", "h4", "1", pid="100", user="ana", command="python a.py"),
        ),
        (
            "sightglass_gpu_process_memory_used_bytes",
            _gpu("GPU-E", "h4", "1", pid="200", user="bo", command="python b.py"),
        ),
        (
            "sightglass_gpu_process_sm_utilization_ratio",
            _gpu("GPU-E", "h4", "1", pid="200", user="bo", command="python b.py"),
        ),
        ("DCGM_FI_PROF_SM_ACTIVE", _gpu("GPU-E", "h4", "1")),
        # GPU-F on h3: time-sliced pods p and q, with the agent's per-process SM (0.3 vs 0.1) mapped by pod_uid
        ("DCGM_FI_PROF_SM_ACTIVE", _gpu("GPU-F", "h3", "0", pod="p", namespace="ml")),
        ("DCGM_FI_PROF_SM_ACTIVE", _gpu("GPU-F", "h3", "0", pod="q", namespace="ml")),
        ("sightglass_gpu_process_sm_utilization_ratio", _gpu("GPU-F", "h3", "0", pid="7", pod_uid="u-p")),
        ("sightglass_gpu_process_sm_utilization_ratio", _gpu("GPU-F", "h3", "0", pid="8", pod_uid="u-q")),
        ("kube_pod_info", {"namespace": "ml", "pod": "p", "uid": "u-p", "node": "h3"}),
        ("kube_pod_info", {"namespace": "ml", "pod": "q", "uid": "u-q", "node": "h3"}),
        (
            "kube_pod_container_resource_requests",
            {
                "namespace": "ml",
                "pod": "c",
                "container": "w",
                "resource": "nvidia_com_gpu",
                "unit": "integer",
            },
        ),
    ]
    rows = []
    for t in range(T0, T0 + HOUR + 1, STEP):
        for name, lab in series:
            value = {"kube_pod_container_resource_requests": 0.5, "kube_pod_info": 1.0}.get(name, 0.4)
            if name == "sightglass_gpu_process_sm_utilization_ratio":
                value = {"100": 0.6, "200": 0.2, "7": 0.3, "8": 0.1}[lab["pid"]]
            elif name == "sightglass_gpu_process_memory_used_bytes":
                value = 4e9
            rows.append((name, lab, t, value))
    return rows


def test_shares_from_the_store(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "data", options=StoreOptions(compact_every_s=3600)) as store:
        store.append(SampleBatch.from_rows(_rows()))
        store.append_events(
            [
                Event(
                    T0 - 60_000,
                    "job.start",
                    {"slurm_job_id": "7"},
                    {"job_name": "train-7", "account": "nlp", "nodes": ["h2"]},
                ),
                Event(
                    T0 + HOUR // 2, "job.end", {"slurm_job_id": "7"}, {"state": "COMPLETED", "nodes": ["h2"]}
                ),
            ]
        )
        an = CostAnalysis.run(store, T0, T0 + HOUR, prices=SHEET)
    led = an.ledger
    led.check()
    per: dict[tuple[str, str], int] = {}
    conf: dict[str, str] = {}
    for ln in led.lines:
        k = (ln.gpu, ln.workload.id if ln.workload else "-")
        per[k] = per.get(k, 0) + ln.micro
        if ln.workload:
            conf[ln.workload.id] = ln.confidence
    gpu_hour = 7_000_000  # µ$ per GPU-hour
    gpus = ("gpu:GPU-A", "gpu:GPU-B", "gpu:GPU-C", "gpu:GPU-D", "gpu:GPU-E", "gpu:GPU-F")
    assert led.gpu_totals == dict.fromkeys(gpus, gpu_hour)
    # bare processes split by their measured SM activity: 0.6 : 0.2
    assert (
        per[("gpu:GPU-E", "process:h4/100")] == 5_250_000
        and per[("gpu:GPU-E", "process:h4/200")] == 1_750_000
    )
    assert conf["process:h4/100"] == "medium"
    # time-sliced pods with per-process measurements: 0.3 : 0.1, not an equal split
    assert per[("gpu:GPU-F", "pod:ml/p")] == 5_250_000 and per[("gpu:GPU-F", "pod:ml/q")] == 1_750_000
    assert per[("gpu:GPU-A", "pod:ml/m1")] == 3_000_000 and per[("gpu:GPU-A", "pod:ml/m2")] == 1_000_000
    assert per[("gpu:GPU-A", "-")] == 3_000_000  # 3 of 7 compute slices unused
    assert per[("gpu:GPU-B", "pod:ml/a")] == per[("gpu:GPU-B", "pod:ml/b")] == 3_500_000
    assert conf["pod:ml/a"] == "low" and conf["pod:ml/m1"] in ("high", "medium")
    assert per[("gpu:GPU-C", "pod:ml/c")] == 3_500_000 and per[("gpu:GPU-C", "-")] == 3_500_000
    assert per[("gpu:GPU-D", "job:7")] == 3_500_000 and per[("gpu:GPU-D", "-")] == 3_500_000
    assert conf["job:7"] == "high"
    shares = {a.workload.id: (a.share, a.share_source) for a in an.inputs.allocations}
    assert shares["pod:ml/m1"] == (Fraction(3, 7), "mig-profile")
    assert shares["pod:ml/c"] == (Fraction(1, 2), "request-fraction")
    assert shares["process:h4/100"] == (Fraction(3, 4), "measured")
    proc = next(a.workload for a in an.inputs.allocations if a.workload.id == "process:h4/100")
    assert (proc.kind, proc.project, proc.name) == ("process", "ana", "python a.py")
    job = next(a.workload for a in an.inputs.allocations if a.workload.id == "job:7")
    assert job.team == "nlp" and job.project == "train"


def test_a_gpu_that_stopped_reporting_still_costs_until_retired(tmp_path: Path) -> None:
    """GPU-G falls off the bus 10 minutes in: it is still paid for (``retire_after``, 1 h) in a window
    that starts after its last sample; a GPU silent for longer than that is no longer in the fleet."""
    rows = [
        ("DCGM_FI_PROF_SM_ACTIVE", _gpu("GPU-G", "h9", "0"), t, 0.5) for t in range(T0, T0 + 600_001, STEP)
    ]
    rows += [
        ("DCGM_FI_PROF_SM_ACTIVE", _gpu("GPU-H", "h9", "1"), t, 0.5) for t in range(T0, T0 + 3 * HOUR, STEP)
    ]
    with DuckDBStore(tmp_path / "data", options=StoreOptions(compact_every_s=3600)) as store:
        store.append(SampleBatch.from_rows(rows))
        an = CostAnalysis.run(store, T0 + 20 * 60_000, T0 + HOUR, prices=SHEET)
        later = CostAnalysis.run(store, T0 + 2 * HOUR, T0 + 3 * HOUR, prices=SHEET)
    # 40 minutes at $7/h each, GPU-G unallocated (nobody holds a GPU that is gone)
    assert an.ledger.gpu_totals == {"gpu:GPU-G": 4_666_667, "gpu:GPU-H": 4_666_667}
    assert set(later.ledger.gpu_totals) == {"gpu:GPU-H"}


def test_a_pod_is_not_charged_for_a_gap_in_its_samples(tmp_path: Path) -> None:
    """Pod x holds GPU-P for minutes 0-20 and 40-60: the topology's relation spans the hour, the
    samples say when it really was there."""
    lab = _gpu("GPU-P", "h7", "0", pod="x", namespace="ml")
    free = _gpu("GPU-P", "h7", "0")
    rows = [
        ("DCGM_FI_PROF_SM_ACTIVE", lab if (t - T0) < 20 * 60_000 or (t - T0) >= 40 * 60_000 else free, t, 0.5)
        for t in range(T0, T0 + HOUR, STEP)
    ]
    with DuckDBStore(tmp_path / "data", options=StoreOptions(compact_every_s=3600)) as store:
        store.append(SampleBatch.from_rows(rows))
        an = CostAnalysis.run(store, T0, T0 + HOUR, prices=SHEET)
    an.ledger.check()
    pod = sum(ln.micro for ln in an.ledger.lines if ln.workload and ln.workload.id == "pod:ml/x")
    held_s = 20 * 60 + 20 * 60  # both runs, each sample standing for the 10 s after it
    assert abs(pod - 7_000_000 * held_s / 3600) <= 1
    assert an.ledger.gpu_totals == {"gpu:GPU-P": 7_000_000}

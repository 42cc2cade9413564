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
            rows.append((name, lab, t, 0.5 if name == "kube_pod_container_resource_requests" else 0.4))
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
    assert led.gpu_totals == dict.fromkeys(("gpu:GPU-A", "gpu:GPU-B", "gpu:GPU-C", "gpu:GPU-D"), gpu_hour)
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
    job = next(a.workload for a in an.inputs.allocations if a.workload.id == "job:7")
    assert job.team == "nlp" and job.project == "train"

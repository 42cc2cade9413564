"""Attribution: cgroup paths of containerd/CRI-O/Docker under kubepods (v1 and v2), Slurm steps,
bare processes, PID namespaces; Slurm command outputs; the kubelet pod-resources answer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from agent_paths import FIXTURES

from sightglass.agent.attribution import Attributor, container_of, parse_cgroup, pod_of
from sightglass.agent.collection import Collection
from sightglass.agent.gpu import GpuCollector
from sightglass.agent.kubelet import (
    GrpcPodResources,
    KubeletUnavailable,
    KubernetesCollector,
    PodDevice,
    encode_list_response,
    parse_list_response,
)
from sightglass.agent.slurm import (
    SlurmCollector,
    expand_hostlist,
    expand_idx,
    parse_sacct,
    parse_scontrol_jobs,
    parse_squeue,
    parse_tres,
    tres_gpu_count,
)
from sightglass.agent.smi_xml import SmiXmlBackend

PROCFS = FIXTURES / "procfs"
SLURM = FIXTURES / "slurm"


@pytest.mark.parametrize(
    ("pid", "runtime", "pod", "qos", "job", "ns_pid", "user", "command"),
    [
        (
            4101,
            "containerd",
            "0b9c8f2e-5d3a-4e1b-9a77-2f6c1d0e8a41",
            "burstable",
            "",
            "1",
            "1000",
            "python3 train.py",
        ),
        (4102, "cri-o", "7d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6", "guaranteed", "", "7", "root", "python3"),
        (4103, "", "5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b", "besteffort", "", "12", "1001", "jupyter-lab"),
        (4104, "docker", "", "", "", "1", "root", "ffmpeg"),
        (4105, "", "", "", "106", "", "1002", "all_reduce_perf"),
        (4106, "", "", "", "107", "", "1002", "bash"),
        (4107, "", "", "", "", "", "1000", "nvidia-smi"),
    ],
)
def test_resolve(
    pid: int, runtime: str, pod: str, qos: str, job: str, ns_pid: str, user: str, command: str
) -> None:
    a = Attributor(PROCFS).resolve(pid)
    assert a.exists
    assert a.runtime == runtime and a.pod_uid == pod and a.qos_class == qos and a.slurm_job == job
    assert a.ns_pid == ns_pid and a.command == command
    assert a.user in (user, "root") if user == "root" else a.user in (user, _name(user))
    assert bool(a.container_id) == (pid in (4101, 4102, 4103, 4104))
    if pid == 4103:
        assert a.container_id == "0123456789abcdef" * 4


def _name(uid: str) -> str:
    import pwd

    try:
        return pwd.getpwuid(int(uid)).pw_name
    except KeyError:
        return uid


def test_missing_pid_says_so_and_labels_reflect_it() -> None:
    att = Attributor(PROCFS)
    assert not att.resolve(999999).exists
    assert att.labels(999999) == {"attribution": "pid_not_found"}
    lb = att.labels(4101)
    assert lb["pod_uid"] == "0b9c8f2e-5d3a-4e1b-9a77-2f6c1d0e8a41" and lb["container_id"] == "3f1a9c2b7d4e"
    assert lb["container_pid"] == "1"


def test_nccl_environment_only() -> None:
    env = Attributor(PROCFS).nccl_env(4101)
    assert env == {"NCCL_DEBUG": "INFO", "NCCL_IB_HCA": "mlx5_0", "CUDA_VISIBLE_DEVICES": "0"}
    assert Attributor(PROCFS).nccl_env(4107) == {}


def test_this_process_for_real() -> None:
    a = Attributor("/proc").resolve(os.getpid())
    assert a.exists and a.command.startswith("python") and a.uid == str(os.getuid())


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "0::/\n", "12:memory:/\n", "::::\n"],
)
def test_cgroup_parser_on_junk(text: str) -> None:
    path = parse_cgroup(text)
    assert container_of(path) == ("", "") and pod_of(path) == ("", "")


def test_cgroup_v1_prefers_memory_controller() -> None:
    text = "4:pids:/user.slice\n3:memory:/kubepods/pod11111111-2222-3333-4444-555555555555/abc\n"
    assert parse_cgroup(text) == "/kubepods/pod11111111-2222-3333-4444-555555555555/abc"


# ------------------------------------------------------------------ Slurm
def test_scontrol_gres_idx_from_recorded_output() -> None:
    (job,) = parse_scontrol_jobs((SLURM / "scontrol_show_job_dd_deepops.txt").read_text())
    assert job.job_id == "106" and job.user == "testuser"
    assert job.gpus == {"gpu01": [0]}
    (cpu_job,) = parse_scontrol_jobs((SLURM / "scontrol_show_job_goose.txt").read_text())
    assert cpu_job.job_id == "10804568" and cpu_job.gpus == {} and cpu_job.state == "RUNNING"
    assert cpu_job.fields["Partition"] == "serial" and cpu_job.start_ms is not None


def test_squeue_and_sacct_recorded() -> None:
    (row,) = parse_squeue((SLURM / "squeue_deepops.txt").read_text())
    assert row == {
        "job_id": "106",
        "partition": "batch",
        "name": "bash",
        "user": "testuser",
        "state": "R",
        "time": "3:34",
        "nodes": "1",
        "nodelist": "gpu01",
    }
    rows = parse_sacct((SLURM / "sacct_alloctres_slurm_mail.txt").read_text())
    tres = {r["JobID"]: parse_tres(r["AllocTRES"]) for r in rows}
    assert tres_gpu_count(tres["8117657"]) == 1 and tres["8117657"]["gres/gpu:a100_3g.20gb"] == "1"
    assert tres_gpu_count({"gres/gpumem": "80G", "gres/gpuutil": "73"}) == 0  # not GPU counts


@pytest.mark.parametrize(
    ("text", "want"),
    [("0-3,5", [0, 1, 2, 3, 5]), ("7", [7]), ("N/A", []), ("", []), ("3-1", []), ("0-999999999", [])],
)
def test_expand_idx(text: str, want: list[int]) -> None:
    assert expand_idx(text) == want


def test_expand_hostlist() -> None:
    assert expand_hostlist("gpu[01-03,07],cpu1") == ["gpu01", "gpu02", "gpu03", "gpu07", "cpu1"]
    assert expand_hostlist("dgx-[40,48]") == ["dgx-40", "dgx-48"]


class _Slurm:
    def __init__(self) -> None:
        self.squeue_text = (SLURM / "squeue_deepops.txt").read_text()
        self.sacct_text = "JobID|State|Start|End\n106|COMPLETED|2024-01-01T10:00:00|2024-01-01T11:00:00\n"

    def squeue(self, node: str) -> str:
        assert node == "gpu01"
        return self.squeue_text

    def scontrol_jobs(self, job_ids: list[str]) -> str:
        assert job_ids == ["106"]
        return (SLURM / "scontrol_show_job_dd_deepops.txt").read_text()

    def sacct(self, job_ids: list[str]) -> str:
        return self.sacct_text


def test_job_to_gpu_intervals() -> None:
    s = _Slurm()
    b = SmiXmlBackend.from_file(FIXTURES / "tesla-t4.xml")
    gpu = GpuCollector(b, "gpu01")
    c = SlurmCollector(s, "gpu01", gpu_id=gpu.gpu_id)
    col = Collection(1_000_000)
    gpu.collect(col)
    c.collect(col)
    (rel,) = col.relations
    assert rel.src == "job:106" and rel.kind == "job-uses-gpu" and rel.end_ms is None
    assert rel.dst == f"gpu:{b.gpus[0].info.uuid}"
    (join,) = [k for k in col.batch().series if k.metric == "sightglass_slurm_job_gpu"]
    assert join.label_dict() == {"Hostname": "gpu01", "gpu": "0", "slurm_job": "106", "user": "testuser"}
    col = Collection(2_000_000)
    c.collect(col)
    assert not col.relations  # still running: no new interval
    s.squeue_text = ""
    col = Collection(2_005_000)  # within 15 s of the last question: slurmctld is not asked again
    c.collect(col)
    assert not col.relations and [k.metric for k in col.keys] == ["sightglass_slurm_job_gpu"]
    col = Collection(5_000_000_000_000)
    c.collect(col)
    (closed,) = col.relations
    assert closed.src == "job:106" and closed.end_ms is not None and closed.end_ms >= closed.start_ms
    assert closed.start_ms == rel.start_ms


# ------------------------------------------------------------------ Kubernetes pod-resources
def test_pod_resources_round_trip_and_pod_labels_on_gpu_series() -> None:
    b = SmiXmlBackend.from_file(FIXTURES / "a100-sxm4-v12.xml", replicate=2)
    u0, u1 = b.gpus[0].info.uuid, b.gpus[1].info.uuid
    body = encode_list_response(
        [
            PodDevice("ml", "trainer-0", "pytorch", "nvidia.com/gpu", u0),
            PodDevice("ml", "sharer-a", "app", "nvidia.com/gpu", u1),  # time-sliced: two pods on one GPU
            PodDevice("ml", "sharer-b", "app", "nvidia.com/gpu", u1),
            PodDevice("ml", "trainer-0", "pytorch", "example.com/fpga", "fpga0"),
        ]
    )

    class _Recorded:
        def list_devices(self) -> list[PodDevice]:
            return parse_list_response(body)

    k8s = KubernetesCollector(_Recorded(), "node-a")
    gpu = GpuCollector(b, "node-a", owner=k8s.owner)
    col = Collection(1_000)
    k8s.collect(col)
    gpu.collect(col)
    temps = {
        k.label_dict()["UUID"]: k.label_dict()
        for k in col.batch().series
        if k.metric == "DCGM_FI_DEV_GPU_TEMP"
    }
    assert (
        temps[u0]["pod"] == "trainer-0"
        and temps[u0]["namespace"] == "ml"
        and temps[u0]["container"] == "pytorch"
    )
    assert "pod" not in temps[u1]  # shared: no single owner, so no pod label copied onto it
    rels = {(r.src, r.dst) for r in col.relations}
    assert rels == {
        ("pod:ml/trainer-0", f"gpu:{u0}"),
        ("pod:ml/sharer-a", f"gpu:{u1}"),
        ("pod:ml/sharer-b", f"gpu:{u1}"),
    }
    assert all(r.kind == "pod-uses-gpu" for r in col.relations)


@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x0a\x05abc"])
def test_pod_resources_garbage_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError, match="ListPodResourcesResponse"):
        parse_list_response(body)


def test_no_kubelet_socket_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(KubeletUnavailable, match="no kubelet pod-resources socket at"):
        GrpcPodResources(str(tmp_path / "kubelet.sock"))

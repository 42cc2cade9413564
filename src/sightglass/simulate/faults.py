"""The fault catalogue: what can break in an AI factory, where it shows, and how often.

Each class names its layer, the kind of entity at its root, the symptoms it must produce (metric
names the tests check), a relative weight and a duration range. Weights follow docs/calibration.md
C4/C5 (Llama 3: faulty GPU 35 %, HBM 17 %, network 10 %, software 13 %, host 11 %...) for the
hard faults, and FALCON (C16: fail-slow from CPU contention, congestion, storage) for the slow ones;
rates are accelerated for short simulations (a fault every few minutes) and say so.

A scenario file (YAML, or JSON when PyYAML is missing) scripts faults::

    faults:
      - {fault: gpu_thermal, at: 10m, duration: 15m, target: {Hostname: node-03, gpu: "5"}}
      - {fault: storage_slowdown, at: 20m, duration: 10m}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sightglass.config import parse_duration_ms

XID_MESSAGES = {
    48: "Double Bit ECC Error",
    63: "ECC page retirement or row remapping recording event",
    64: "ECC page retirement or row remapper recording failure",
    74: "NVLink Error",
    79: "GPU has fallen off the bus",
    94: "Contained ECC error",
    95: "Uncontained ECC error",
}


@dataclass(frozen=True, slots=True)
class FaultClass:
    name: str
    layer: str
    root_kind: str  # gpu | node | nic | switch | storage | service | pipeline | job
    weight: float
    duration_s: tuple[float, float]
    symptoms: tuple[str, ...]
    description: str


CATALOGUE: dict[str, FaultClass] = {
    f.name: f
    for f in (
        FaultClass(
            "gpu_thermal",
            "gpu",
            "gpu",
            3.0,
            (600, 1800),
            (
                "DCGM_FI_DEV_GPU_TEMP",
                "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
                "DCGM_FI_DEV_SM_CLOCK",
                "DCGM_FI_DEV_THERMAL_VIOLATION",
            ),
            "cooling fault (fan/cold plate): temperature to the slowdown point, SW/HW thermal slowdown, "
            "clocks and power drop, the job it serves slows (straggler)",
        ),
        FaultClass(
            "power_brake",
            "node",
            "node",
            1.5,
            (300, 1200),
            ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_POWER_USAGE"),
            "PSU loss / external power brake: HW_POWER_BRAKE + HW_SLOWDOWN on all GPUs of a node",
        ),
        FaultClass(
            "power_cap",
            "node",
            "node",
            1.5,
            (600, 1800),
            ("DCGM_FI_DEV_POWER_MGMT_LIMIT", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "DCGM_FI_DEV_POWER_USAGE"),
            "power limit lowered on a node (config change): power pinned at the cap, SW_POWER_CAP, "
            "prefill/TTFT +~30 %",
        ),
        FaultClass(
            "xid79_fell_off_bus",
            "gpu",
            "gpu",
            6.0,
            (1200, 3600),
            ("DCGM_FI_DEV_XID_ERRORS", "absent(DCGM_FI_DEV_GPU_TEMP)", "training_steps_total"),
            "GPU fell off the bus: XID 79, the GPU's series stop, its job hangs until the NCCL watchdog",
        ),
        FaultClass(
            "hbm_ecc",
            "gpu",
            "gpu",
            3.0,
            (600, 1800),
            (
                "DCGM_FI_DEV_XID_ERRORS",
                "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
                "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
                "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
            ),
            "HBM errors: correctable rows remapped, then a DBE (XID 48/94/95, 63/64), job crash",
        ),
        FaultClass(
            "nvlink_degraded",
            "gpu",
            "gpu",
            1.0,
            (600, 2400),
            (
                "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
                "DCGM_FI_DEV_XID_ERRORS",
                "training_step_duration_seconds",
            ),
            "NVLink CRC errors / degraded link: CRC counters climb, XID 74, intra-node all-reduce slower",
        ),
        FaultClass(
            "ib_link_flap",
            "network",
            "nic",
            1.2,
            (300, 1500),
            (
                "node_infiniband_link_downed_total",
                "node_infiniband_port_errors_received_total",
                "training_step_duration_seconds",
            ),
            "a flapping HCA port: link-downed and symbol errors, collectives of its job slow down",
        ),
        FaultClass(
            "ib_congestion",
            "network",
            "switch",
            1.2,
            (600, 1800),
            ("node_infiniband_port_transmit_wait_total", "training_step_duration_seconds"),
            "spine congestion: transmit-wait rises on many nodes, multi-node collectives slow",
        ),
        FaultClass(
            "leaf_switch_failure",
            "network",
            "switch",
            0.6,
            (600, 1800),
            ("node_infiniband_state_id", "node_infiniband_link_downed_total", "ib_switch_up"),
            "a leaf switch dies: every HCA of its rack goes down, multi-node jobs there hang and fail",
        ),
        FaultClass(
            "storage_slowdown",
            "storage",
            "storage",
            1.5,
            (600, 1800),
            (
                "node_mountstats_nfs_operations_response_time_seconds_total",
                "training_dataloader_wait_seconds",
                "DCGM_FI_DEV_GPU_UTIL",
            ),
            "shared storage throttles (Azure disk-noise shape): NFS latency x8, data loaders wait, GPUs idle",
        ),
        FaultClass(
            "pipeline_stall",
            "data",
            "pipeline",
            1.0,
            (1200, 3600),
            ("data_pipeline_freshness_seconds",),
            "a data pipeline run hangs: no COMPLETE, its dataset goes stale",
        ),
        FaultClass(
            "cpu_starvation",
            "host",
            "node",
            1.5,
            (600, 1800),
            (
                "node_cpu_seconds_total",
                "node_pressure_cpu_waiting_seconds_total",
                "training_dataloader_wait_seconds",
            ),
            "noisy neighbour on the host CPUs: data-loader starved, the whole job slows",
        ),
        FaultClass(
            "host_oom",
            "host",
            "node",
            1.0,
            (300, 900),
            (
                "node_memory_MemAvailable_bytes",
                "node_vmstat_oom_kill",
                "node_pressure_memory_stalled_seconds_total",
            ),
            "host memory pressure then the OOM killer takes the workload's process",
        ),
        FaultClass(
            "kv_cache_pressure",
            "inference",
            "service",
            1.5,
            (600, 1800),
            ("vllm:num_preemptions_total", "vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds"),
            "a long-prompt traffic shift fills the KV cache: preemptions, queueing, TTFT up",
        ),
        FaultClass(
            "bad_deploy",
            "inference",
            "service",
            1.5,
            (900, 3600),
            (
                "vllm:cache_config_info",
                "vllm:inter_token_latency_seconds",
                "vllm:time_to_first_token_seconds",
            ),
            "a new engine version/config (lower gpu_memory_utilization, no CUDA graphs): TBT x1.7",
        ),
        FaultClass(
            "driver_drift",
            "config",
            "node",
            0.8,
            (1800, 7200),
            ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "DCGM_FI_DEV_SM_CLOCK", "training_step_duration_seconds"),
            "one node re-imaged with an older driver and locked clocks: CLOCKS_SETTING, slower rank",
        ),
        FaultClass(
            "straggler_rank",
            "training",
            "gpu",
            1.5,
            (600, 2400),
            ("training_rank_compute_seconds", "training_step_duration_seconds", "DCGM_FI_PROF_SM_ACTIVE"),
            "one rank computes slower (data/sequence imbalance, GC): no hardware signal, the job waits",
        ),
        FaultClass(
            "nccl_hang",
            "software",
            "job",
            0.8,
            (600, 600),
            ("training_steps_total", "DCGM_FI_DEV_POWER_USAGE"),
            "a collective never completes: steps stop, GPUs spin at 100 % util on low power, watchdog kills",
        ),
        FaultClass(
            "silent_data_corruption",
            "gpu",
            "gpu",
            0.3,
            (900, 2400),
            ("training_loss",),
            "a GPU computes wrong results: no hardware signal, loss spikes in its job",
        ),
    )
}


@dataclass(slots=True)
class Fault:
    """One injected fault and its ground truth."""

    id: str
    fault: str
    start_ms: int
    end_ms: int
    root: dict[str, str] = field(default_factory=dict)  # the root entity, in the data's own labels
    kind: str = ""
    target: dict[str, Any] = field(default_factory=dict)  # internal indexes (node, gpu, service...)
    symptom: str = ""
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def cls(self) -> FaultClass:
        return CATALOGUE[self.fault]

    def truth(self) -> dict[str, Any]:
        from sightglass.timeutil import format_ts

        return {
            "id": self.id,
            "fault": self.fault,
            "layer": self.cls.layer,
            "root": {"kind": self.kind or self.cls.root_kind, "match": self.root},
            "start": format_ts(self.start_ms),
            "end": format_ts(self.end_ms),
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "expected_symptoms": list(self.cls.symptoms),
            "symptom": self.symptom,
        }


@dataclass(frozen=True, slots=True)
class ScriptedFault:
    fault: str
    at_ms: int
    duration_ms: int | None
    target: dict[str, str]


def load_scenario(path: str | Path) -> list[ScriptedFault]:
    """Read a scenario (YAML or JSON) into scripted faults; offsets are relative to the start."""
    p = Path(path)
    text = p.read_text()
    data: Any
    if p.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ModuleNotFoundError:  # pragma: no cover - depends on the environment
            raise ValueError(f"{p}: PyYAML is not installed; write the scenario as JSON") from None
        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    items = data.get("faults", []) if isinstance(data, dict) else data
    out: list[ScriptedFault] = []
    for i, it in enumerate(items):
        name = str(it.get("fault", ""))
        if name not in CATALOGUE:
            raise ValueError(f"{p}: faults[{i}]: unknown fault {name!r} (known: {', '.join(CATALOGUE)})")
        dur = it.get("duration")
        out.append(
            ScriptedFault(
                name,
                parse_duration_ms(it.get("at", "0s")),
                parse_duration_ms(dur) if dur is not None else None,
                {str(k): str(v) for k, v in (it.get("target") or {}).items()},
            )
        )
    return out


# ---------------------------------------------------------------------- DCGM diagnostics (model)
# What `dcgmi diag -r LEVEL` would report on a GPU, given the simulated fault state of that GPU.
# Durations: NVIDIA's `dcgmi diag` reference gives level 1 "seconds", level 2 "approximately two
# minutes", level 3 "approximately 15 minutes", level 4 "extended" (no figure: 60 min assumed).
DIAG_LEVEL_SECONDS = {1: 30, 2: 120, 3: 900, 4: 3600}
# The plugins each level runs (DCGM 4.x names), cumulative.
DIAG_LEVEL_TESTS: dict[int, tuple[tuple[str, str], ...]] = {
    1: (("Deployment", "software"),),
    2: (("Deployment", "software"), ("Integration", "pcie"), ("Hardware", "memory")),
    3: (("Deployment", "software"), ("Integration", "pcie"), ("Hardware", "memory"), ("Hardware", "diagnostic"),
        ("Stress", "targeted_stress"), ("Stress", "targeted_power"), ("Stress", "memory_bandwidth"),
        ("Hardware", "pulse_test")),
}  # fmt: skip
DIAG_LEVEL_TESTS[4] = (*DIAG_LEVEL_TESTS[3], ("Hardware", "memtest"), ("Hardware", "eud"))
# ASSUMPTIONS (docs/simulator.md): no published per-run detection rate of DCGM diagnostics for
# SDC-prone GPUs was found; Google's "SDC by 10x test escapes" (2025) and Meta's "Detecting silent
# data corruptions in the wild" (2022) both report that defects escape tests and need repeated,
# targeted runs. So a level-3 run catches an SDC-prone GPU with p = 0.6 (level 4, with the EUD: 0.8),
# a GPU with an HBM fault fails the memory test with 0.9, and any other GPU fails a random stress
# test with a false-positive rate of 0.5 % per run.
SDC_DETECT_P = {1: 0.0, 2: 0.0, 3: 0.6, 4: 0.8}
HBM_DETECT_P = 0.9
DIAG_FALSE_POSITIVE_P = 0.005
_SDC_TESTS = {3: ("diagnostic", "targeted_stress", "pulse_test"), 4: ("diagnostic", "targeted_stress", "pulse_test", "eud")}


def diagnostic_outcome(faults: set[str], level: int, gpu: int, rng: Any) -> dict[str, tuple[str, str]]:
    """``{test: (status, error)}`` for one GPU at ``level``, given the fault classes active on it."""
    tests = [t for _, t in DIAG_LEVEL_TESTS[level]]
    out = {t: ("pass", "") for t in tests}
    if "xid79_fell_off_bus" in faults:
        return {t: ("fail" if t == "software" else "skip",
                    f"GPU {gpu} is not accessible (fell off the bus)" if t == "software" else "") for t in tests}  # fmt: skip
    if "silent_data_corruption" in faults and rng.random() < SDC_DETECT_P.get(level, 0.0):
        t = str(rng.choice(_SDC_TESTS[level]))
        out[t] = ("fail", f"GPU {gpu}: results differ from the reference computation in the {t} check (simulated)")
    if "hbm_ecc" in faults and "memory" in out and rng.random() < HBM_DETECT_P:
        out["memory"] = ("fail", f"Found {int(rng.integers(1, 40))} faulty memory elements on GPU {gpu}")
    if not any(s == "fail" for s, _ in out.values()) and rng.random() < DIAG_FALSE_POSITIVE_P:
        cands = [t for t in tests if t != "software"] or tests
        t = str(rng.choice(cands))
        out[t] = ("fail", f"GPU {gpu}: {t} did not reach its expected level (simulated false positive)")
    return out


# Deterministic replay (the agents' replay hook: the same inputs on each GPU, one checksum per GPU).
# ASSUMPTIONS (docs/simulator.md): no published per-run rate at which replaying the same inputs makes
# an SDC-prone GPU give a different result was found either. Gemini's and Llama 3's reports say replay
# is how such GPUs were found; Meta ("Silent data corruptions at scale", 2021) and Google ("Cores
# that don't count", 2021) describe defects that are mostly data-dependent and reproducible on the
# failing inputs, but also sensitive to temperature, frequency and voltage, so a rerun can pass. A
# replay of the very inputs that spiked therefore catches the GPU more often than a generic DCGM stress
# test (0.6 above) and less than always: p = 0.8 per replay, independent between rounds. A healthy GPU
# always gives the known answer (the replay is bit-exact by construction). A replay takes 60 s (loading
# the step's state dominates; the shipped GEMM test takes seconds).
REPLAY_DETECT_P = 0.8
REPLAY_SECONDS = 60


def replay_json(per_gpu: dict[int, bool], seed: int, rng: Any) -> str:
    """What the replay hook prints for GPUs ``{index: corrupts}``: the known answer, or a wrong checksum."""
    good = hashlib.sha256(f"sim-replay/{seed}".encode()).hexdigest()
    rows = []
    for g, bad in sorted(per_gpu.items()):
        c = hashlib.sha256(f"sim-replay/{seed}/bad/{g}/{int(rng.integers(1 << 30))}".encode()).hexdigest() if bad else good
        rows.append({"index": g, "checksum": c, "seconds": 4.0})
    return json.dumps({"input": f"sim-step-replay-seed-{seed}", "gpus": rows, "backend": "sightglass simulator"})


def diagnostic_json(per_gpu: dict[int, dict[str, tuple[str, str]]], level: int) -> str:
    """The outcomes as `dcgmi diag -j` prints them (DCGM 4.x layout, as in tests/agent/fixtures/dcgm_diag)."""
    cats: dict[str, list[dict[str, Any]]] = {}
    for cat, test in DIAG_LEVEL_TESTS[level]:
        results = []
        for g, outcome in sorted(per_gpu.items()):
            status, err = outcome.get(test, ("skip", ""))
            r: dict[str, Any] = {"entity_group": "GPU", "entity_group_id": 1, "entity_id": g, "status": status.capitalize()}
            if err:
                r["warnings"] = [{"error_category": 0, "error_id": 0, "error_severity": 1, "warning": err}]
            results.append(r)
        worst = "Fail" if any(r["status"] == "Fail" for r in results) else "Pass"
        cats.setdefault(cat, []).append({"name": test, "results": results, "test_summary": {"status": worst}})
    doc = {
        "DCGM Diagnostic": {"test_categories": [{"category": c, "tests": ts} for c, ts in cats.items()]},
        "entity_groups": [{"entity_group": "GPU", "entity_group_id": 1,
                           "entities": [{"entity_id": g, "device_id": "2330", "serial_num": ""} for g in sorted(per_gpu)]}],
        "metadata": {"version": "4.2.3 (sightglass simulator)", "Driver Version Detected": "550.144.03"},
    }  # fmt: skip
    return json.dumps(doc, indent=1)

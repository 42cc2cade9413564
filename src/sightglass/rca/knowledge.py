"""What Sightglass knows about the signals of an AI factory, independent of any one incident.

- ``role_of(metric)``: whether a signal points at a *cause* on its own entity (a temperature, an
  XID, a throttle reason, link errors, NFS latency, CPU pressure) or is an *effect* felt by whatever
  runs there (utilisation, power drawn, step time). Effects still count, at a lower weight.
- ``hypothesis(kind, evidence, symptom=)``: the fault class (the simulator catalogue's names, so an
  evaluation can compare) from the kind of the cause, which signals and events carry its evidence, and
  the symptom (a job alone under its own loss spike is silent data corruption, not a hang).
- ``RUNBOOK``: one suggested action per fault class.
"""

from __future__ import annotations

from collections.abc import Iterable

# metric (exact, or prefix ending in "*") -> (role, weight, bad direction: +1 up, -1 down, 0 either)
_ROLES: list[tuple[str, str, float, int]] = [
    # GPU hardware (dcgm-exporter)
    ("DCGM_FI_DEV_XID_ERRORS", "cause", 1.0, 0),
    ("DCGM_FI_DEV_ECC_*", "cause", 1.0, 1),
    ("DCGM_FI_DEV_*REMAPPED_ROWS", "cause", 1.0, 1),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "cause", 1.0, 1),
    ("DCGM_FI_DEV_NVLINK_CRC*", "cause", 1.0, 1),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "cause", 0.8, 1),
    ("DCGM_FI_DEV_POWER_MGMT_LIMIT", "cause", 1.0, 0),
    ("DCGM_FI_DEV_THERMAL_VIOLATION", "cause", 0.9, 1),
    ("DCGM_FI_DEV_GPU_TEMP", "cause", 0.6, 1),
    ("DCGM_FI_DEV_MEMORY_TEMP", "cause", 0.5, 1),
    ("DCGM_FI_DEV_SM_CLOCK", "cause", 0.6, -1),
    ("DCGM_FI_DEV_MEM_CLOCK", "cause", 0.5, -1),
    ("training_rank_compute_seconds", "cause", 0.9, 1),
    # host (node_exporter)
    ("node_vmstat_oom_kill", "cause", 1.0, 1),
    ("node_memory_MemAvailable_bytes", "cause", 0.9, -1),
    ("node_pressure_memory_*", "cause", 0.9, 1),
    ("node_pressure_cpu_*", "cause", 0.9, 1),
    ("node_cpu_seconds_total", "cause", 0.8, 1),
    ("node_load1", "cause", 0.6, 1),
    # fabric
    ("node_infiniband_link_downed_total", "cause", 1.0, 1),
    ("node_infiniband_port_errors_received_total", "cause", 1.0, 1),
    ("node_infiniband_link_error_recovery_total", "cause", 1.0, 1),
    ("node_infiniband_state_id", "cause", 1.0, -1),
    ("node_infiniband_physical_state_id", "cause", 1.0, -1),
    ("node_infiniband_port_transmit_wait_total", "cause", 0.9, 1),
    ("ib_switch_up", "cause", 1.0, -1),
    ("ib_switch_port_transmit_wait_total", "cause", 0.9, 1),
    # storage
    ("node_mountstats_nfs_operation_latency_seconds:mean", "cause", 1.0, 1),
    # inference engine (vLLM): the service's own state
    ("vllm:kv_cache_usage_perc", "cause", 0.8, 1),
    ("vllm:num_preemptions_total", "cause", 0.8, 1),
    ("vllm:num_requests_waiting", "cause", 0.5, 1),
    ("vllm:prompt_tokens_total", "cause", 0.6, 1),
    ("vllm:inter_token_latency_seconds:mean", "cause", 0.7, 1),
    # data pipelines
    ("data_pipeline_freshness_seconds", "cause", 0.9, 1),
]

# series whose value is an age (a sawtooth with a ceiling while healthy): compared with the
# highest value they showed in the baseline, not with their median
AGE_METRICS = ("data_pipeline_freshness_seconds",)
# a port's transmit-wait counts ticks with data to send and no flow-control credit from the port at
# the other end: it is evidence about the receiver (a congested spine starves the leaf uplinks that
# feed it), so a switch-to-switch port's wait is scored on the switch its ``remote_switch`` names
CREDIT_WAIT_METRICS = ("ib_switch_port_transmit_wait_total",)
REMOTE_SWITCH_LABEL = "remote_switch"
# progress counters of a workload: their rate falling to ~0 (not just slower) is the workload's own
# state (a hang), a cause on the job itself rather than an effect of something below it
STALL_METRICS = ("training_steps_total",)
# node_cpu_seconds_total modes that are a load (a noisy neighbour), not a wait on something else
CPU_LOAD_MODES = ("user", "system", "nice", "softirq", "irq", "steal")

EFFECT_WEIGHT = 0.3
ABSENT_WEIGHT = 1.0  # hardware telemetry that stopped (a GPU off the bus)

# DCGM fields that are counters although dcgm-exporter names them without ``_total``
COUNTER_LIKE = (
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_THERMAL_VIOLATION",
    "DCGM_FI_DEV_POWER_VIOLATION",
)
NETWORK_PREFIXES = ("node_infiniband_", "ib_switch_")

# signals not read at all: neither a cause nor an effect that tells a workload's state apart
SKIP_READING = frozenset(
    {
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_FB_RESERVED",
        "DCGM_FI_DEV_ENC_UTIL",
        "DCGM_FI_DEV_DEC_UTIL",
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "DCGM_FI_PROF_SM_OCCUPANCY",
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        "DCGM_FI_PROF_DRAM_ACTIVE",
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
        "node_infiniband_rate_bytes_per_second",
        "node_infiniband_port_packets_transmitted_total",
        "node_infiniband_port_packets_received_total",
        "node_infiniband_port_data_received_bytes_total",
        "node_filesystem_avail_bytes",
        "node_disk_written_bytes_total",
        "node_disk_read_bytes_total",
        "node_disk_io_time_seconds_total",
        "node_network_transmit_bytes_total",
        "node_network_receive_bytes_total",
        "kube_pod_info",
        "kube_pod_status_phase",
    }
)
SKIP_READING_PREFIXES = ("vllm:request_queue_time_seconds", "vllm:e2e_request_latency_seconds")

# throttle reasons (DCGM_FI_DEV_CLOCKS_EVENT_REASONS) that are evidence of a cause
REASON_WEIGHT = {
    "HW_POWER_BRAKE": 1.0,
    "HW_THERMAL": 1.0,
    "SW_THERMAL": 1.0,
    "HW_SLOWDOWN": 0.8,
    "SW_POWER_CAP": 0.7,
    "CLOCKS_SETTING": 1.0,
}

# labels whose value changing on a live series is a configuration change, not a new workload
CONFIG_LABELS = (
    "DCGM_FI_DRIVER_VERSION",
    "gpu_memory_utilization",
    "num_gpu_blocks",
    "block_size",
    "cache_dtype",
    "enable_prefix_caching",
    "swap_space_bytes",
    "version",
)


def role_of(metric: str, direction: float = 0.0, labels: dict[str, str] | None = None) -> tuple[str, float]:
    """(role, weight) of a signal that moved in ``direction`` (sign of value - baseline; 0: unknown).

    A cause signal moving the benign way (errors falling, clocks rising, traffic stopping) is an
    effect: it is what a workload ending looks like, not a fault."""
    if metric == "node_cpu_seconds_total" and labels is not None and labels.get("mode") not in CPU_LOAD_MODES:
        return "effect", EFFECT_WEIGHT
    for pat, role, w, bad in _ROLES:
        hit = (
            (pat.endswith("*") and metric.startswith(pat[:-1]))
            or (pat.startswith("DCGM_FI_DEV_*") and metric.startswith("DCGM_FI_DEV_") and metric.endswith(pat[13:]))
            or metric == pat
        )
        if hit:
            if bad and direction and (direction > 0) != (bad > 0):
                return "effect", EFFECT_WEIGHT
            return role, w
    return "effect", EFFECT_WEIGHT


RUNBOOK: dict[str, str] = {
    "gpu_thermal": "Check the GPU's cooling (fans, cold plate, inlet temperature); drain the node and "
    "reseat or replace the cooling before returning it to the pool.",
    "power_brake": "Check the node's PSUs and rack power feed (BMC/IPMI SEL); drain the node until "
    "HW_POWER_BRAKE clears.",
    "power_cap": "Restore the GPU power limit (nvidia-smi -pl <TDP>) and find who changed it "
    "(config management, BMC policy).",
    "xid79_fell_off_bus": "Drain the node, power-cycle it and run field diagnostics (dcgmi diag -r 3); "
    "RMA the GPU if XID 79 returns; requeue the job from its last checkpoint.",
    "hbm_ecc": "Drain the GPU, reset it to apply row remapping, run dcgmi diag -r 3; RMA if remapping "
    "failed or DBEs repeat; restart the job from its checkpoint.",
    "nvlink_degraded": "Run nvidia-smi nvlink -e / dcgmi diag on the node; reseat or replace the "
    "NVLink/NVSwitch part; drain until CRC errors stop.",
    "ib_link_flap": "Check the HCA port's cable and transceiver (ibdiagnet, mlxlink); replace the cable "
    "and move the job off the node meanwhile.",
    "ib_congestion": "Check the spine's port counters and routing (UFM, adaptive routing); rebalance or "
    "throttle the heaviest multi-node jobs.",
    "leaf_switch_failure": "Fail over or replace the leaf switch; cordon its rack's nodes and requeue "
    "their multi-node jobs.",
    "storage_slowdown": "Check the storage server's load and disk throttling; raise its IOPS tier or "
    "spread the data loaders' reads (local cache, prefetch).",
    "pipeline_stall": "Inspect the pipeline's current run (hung task, upstream source); restart it and "
    "warn the consumers of the stale dataset.",
    "cpu_starvation": "Find the process competing for the node's CPUs (top, cgroups); pin or evict it, "
    "or raise the data loaders' CPU reservation.",
    "host_oom": "Find what grew the node's memory (dmesg OOM report); set memory limits, reduce "
    "data-loader workers, and restart the killed workload.",
    "kv_cache_pressure": "Scale out the service or cap prompt length / max_num_seqs; check the traffic "
    "shift (long prompts) behind the KV-cache saturation.",
    "bad_deploy": "Roll back the service's last deploy (engine version/config) and compare its "
    "settings with the previous one.",
    "driver_drift": "Reinstall the fleet's driver version on the node, unlock its clocks "
    "(nvidia-smi -rgc), and fix the image that drifted.",
    "straggler_rank": "Profile the slow rank (data/sequence imbalance, host noise, GC); rebalance its "
    "shard or exclude the GPU and restart from checkpoint.",
    "nccl_hang": "Collect NCCL debug logs and stack traces of the job's ranks; kill and requeue it from "
    "its last checkpoint.",
    "silent_data_corruption": "Suspected silent data corruption: no GPU reports an error, so find it by "
    "replay. Restart from the checkpoint before the loss spike with the same data order; if the spike "
    "does not recur, replay the spiking steps rank by rank (or on spare GPUs) and compare losses/gradient "
    "checksums to find the GPU whose results differ; run dcgmi diag -r 4 (and the EUD where licensed) on "
    "the job's GPUs; exclude the failing GPU.",
    "unknown": "Inspect the evidence below; no fault class fits it yet.",
}


LOSS_METRICS = ("training_loss", "loss")


def loss_symptom(symptom: str) -> bool:
    """Whether the symptom (a PromQL expression) is a training loss."""
    return any(m in symptom for m in LOSS_METRICS)


def _any(names: Iterable[str], *prefixes: str) -> bool:
    return any(n.startswith(prefixes) for n in names)


def hypothesis(
    kind: str,
    metrics: set[str],
    reasons: set[str],
    events: set[str],
    xids: set[int],
    *,
    tier: str | None = None,
    absent: bool = False,
    symptom: str = "",
) -> str:
    """The fault class that best explains this evidence on an entity of ``kind`` (``symptom``: the
    expression the analysis explains)."""
    if kind in ("gpu", "mig"):
        if absent or 79 in xids:
            return "xid79_fell_off_bus"
        if xids & {48, 63, 64, 94, 95} or _any(metrics, "DCGM_FI_DEV_ECC_", "DCGM_FI_DEV_ROW_REMAP") or any(
            m.endswith("REMAPPED_ROWS") for m in metrics
        ):
            return "hbm_ecc"
        if 74 in xids or _any(metrics, "DCGM_FI_DEV_NVLINK_CRC"):
            return "nvlink_degraded"
        if reasons & {"SW_THERMAL", "HW_THERMAL"} or _any(
            metrics, "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_THERMAL_VIOLATION"
        ):
            return "gpu_thermal"
        if "training_rank_compute_seconds" in metrics:
            return "straggler_rank"
        if reasons & {"HW_POWER_BRAKE"}:
            return "power_brake"
        return "silent_data_corruption" if "training_loss" in metrics else "unknown"
    if kind == "node":
        settings = " ".join(e for e in events if e.startswith("config.change:"))
        if "node.oom_kill" in events:
            return "host_oom"
        if "driver" in settings or "config.label" in events:
            return "driver_drift"
        if "power" in settings:
            return "power_cap"
        if "HW_POWER_BRAKE" in reasons:
            return "power_brake"
        if "CLOCKS_SETTING" in reasons:
            return "driver_drift"
        if "DCGM_FI_DEV_POWER_MGMT_LIMIT" in metrics or "SW_POWER_CAP" in reasons:
            return "power_cap"
        if _any(metrics, "node_memory_MemAvailable", "node_vmstat_oom_kill", "node_pressure_memory"):
            return "host_oom"
        if _any(metrics, "node_cpu_seconds_total", "node_pressure_cpu", "node_load1"):
            return "cpu_starvation"
        if reasons & {"SW_THERMAL", "HW_THERMAL"}:
            return "gpu_thermal"
        if _any(metrics, "node_infiniband_"):
            return "ib_link_flap"
        return "unknown"
    if kind == "nic":
        return "ib_link_flap"
    if kind == "switch":
        if tier == "spine":
            return "ib_congestion"
        if "switch.down" in events or "ib_switch_up" in metrics:
            return "leaf_switch_failure"
        return "ib_congestion"
    if kind == "storage":
        return "storage_slowdown"
    if kind == "pipeline":
        return "pipeline_stall"
    if kind in ("service", "model", "pod"):
        if "k8s.deploy" in events or "config.label" in events:
            return "bad_deploy"
        if _any(metrics, "vllm:kv_cache_usage_perc", "vllm:num_preemptions", "vllm:prompt_tokens"):
            return "kv_cache_pressure"
        if "vllm:inter_token_latency_seconds:mean" in metrics:
            return "bad_deploy"
        return "unknown"
    if kind == "job":
        if "training_loss" in metrics and not _any(metrics, "training_steps_total"):
            return "silent_data_corruption"
        if not metrics and not events and loss_symptom(symptom):
            # the job is the only suspect of its own loss spike (nothing below it changed): that is
            # the signature of silent data corruption, not of a hang (a hang stops the steps)
            return "silent_data_corruption"
        return "nccl_hang"
    return "unknown"

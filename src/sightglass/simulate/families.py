"""The metric families the simulated exporters expose: exact names, types, help and value formats.

Help strings follow dcgm-exporter's ``etc/default-counters.csv`` / ``dcp-metrics-included.csv``,
node_exporter's collectors, vLLM's ``vllm/v1/metrics/loggers.py`` and kube-state-metrics; the trainer,
pipeline and fabric families are names we mint (docs/conventions.md §9).
"""

from __future__ import annotations

from sightglass.simulate.exposition import Family
from sightglass.simulate.workloads import InferenceModel


def _f(name: str, typ: str, help: str, decimals: int | None = 0, buckets: tuple[float, ...] = ()) -> Family:
    return Family(name, typ, help, decimals, buckets)


# --- dcgm-exporter (help strings as in etc/default-counters.csv / dcp-metrics-included.csv)
SM_CLOCK = _f("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).")
MEM_CLOCK = _f("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).")
MEM_TEMP = _f("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C).")
GPU_TEMP = _f("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).")
POWER = _f("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", 3)
POWER_LIMIT = _f("DCGM_FI_DEV_POWER_MGMT_LIMIT", "gauge", "Power management limit (in W).", 1)
ENERGY = _f("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ).")
PCIE_REPLAY = _f("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries.")
GPU_UTIL = _f("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).")
MEM_COPY = _f("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).")
ENC = _f("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %).")
DEC = _f("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %).")
XID = _f("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered.")
FB_FREE = _f("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).")
FB_USED = _f("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).")
FB_RES = _f("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB).")
NVLINK_BW = _f(
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
    "counter",
    "Total number of NVLink bandwidth counters for all lanes.",
)
NVLINK_CRC = _f(
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "counter",
    "Total number of NVLink flow-control CRC errors.",
)
ROWS_UNC = _f(
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for uncorrectable errors"
)
ROWS_COR = _f(
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for correctable errors"
)
ROW_FAIL = _f("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed")
ECC_SBE = _f("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "counter", "Total number of single-bit volatile ECC errors.")
ECC_DBE = _f("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter", "Total number of double-bit volatile ECC errors.")
REASONS = _f(
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
    "gauge",
    "Current clock event reasons (bitmask of DCGM_CLOCKS_EVENT_REASON_*)",
)
PWR_VIOL = _f(
    "DCGM_FI_DEV_POWER_VIOLATION", "counter", "Throttling duration due to power constraints (in us)."
)
THERM_VIOL = _f(
    "DCGM_FI_DEV_THERMAL_VIOLATION", "counter", "Throttling duration due to thermal constraints (in us)."
)
GR_ACTIVE = _f("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active.", 6)
SM_ACTIVE = _f(
    "DCGM_FI_PROF_SM_ACTIVE", "gauge", "The ratio of cycles an SM has at least 1 warp assigned.", 6
)
SM_OCC = _f("DCGM_FI_PROF_SM_OCCUPANCY", "gauge", "The ratio of number of warps resident on an SM.", 6)
TENSOR = _f(
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active.", 6
)
DRAM = _f(
    "DCGM_FI_PROF_DRAM_ACTIVE",
    "gauge",
    "Ratio of cycles the device memory interface is active sending or receiving data.",
    6,
)
PCIE_TX = _f(
    "DCGM_FI_PROF_PCIE_TX_BYTES",
    "gauge",
    "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads"
    " - in bytes per second.",
)
PCIE_RX = _f(
    "DCGM_FI_PROF_PCIE_RX_BYTES",
    "gauge",
    "The rate of data received over the PCIe bus - including both protocol headers and data payloads"
    " - in bytes per second.",
)

# --- node_exporter
N_CPU = _f("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.", 2)
N_MEM_TOTAL = _f("node_memory_MemTotal_bytes", "gauge", "Memory information field MemTotal_bytes.")
N_MEM_AVAIL = _f("node_memory_MemAvailable_bytes", "gauge", "Memory information field MemAvailable_bytes.")
N_LOAD1 = _f("node_load1", "gauge", "1m load average.", 2)
N_PSI_CPU = _f(
    "node_pressure_cpu_waiting_seconds_total",
    "counter",
    "Total time in seconds that processes have waited for CPU time",
    6,
)
N_PSI_IO = _f(
    "node_pressure_io_stalled_seconds_total",
    "counter",
    "Total time in seconds no process could make progress due to IO congestion",
    6,
)
N_PSI_MEM = _f(
    "node_pressure_memory_stalled_seconds_total",
    "counter",
    "Total time in seconds no process could make progress due to memory congestion",
    6,
)
N_OOM = _f("node_vmstat_oom_kill", "counter", "/proc/vmstat information field oom_kill.")
N_DISK_R = _f("node_disk_read_bytes_total", "counter", "The total number of bytes read successfully.")
N_DISK_W = _f("node_disk_written_bytes_total", "counter", "The total number of bytes written successfully.")
N_DISK_IO = _f("node_disk_io_time_seconds_total", "counter", "Total seconds spent doing I/Os.", 3)
N_FS_SIZE = _f("node_filesystem_size_bytes", "gauge", "Filesystem size in bytes.")
N_FS_AVAIL = _f(
    "node_filesystem_avail_bytes", "gauge", "Filesystem space available to non-root users in bytes."
)
N_NET_RX = _f("node_network_receive_bytes_total", "counter", "Network device statistic receive_bytes.")
N_NET_TX = _f("node_network_transmit_bytes_total", "counter", "Network device statistic transmit_bytes.")
IB_RX = _f(
    "node_infiniband_port_data_received_bytes_total", "counter", "Number of data octets received on all links"
)
IB_TX = _f(
    "node_infiniband_port_data_transmitted_bytes_total",
    "counter",
    "Number of data octets transmitted on all links",
)
IB_PRX = _f(
    "node_infiniband_port_packets_received_total",
    "counter",
    "Number of packets received on all VLs by this port (including errors)",
)
IB_PTX = _f(
    "node_infiniband_port_packets_transmitted_total",
    "counter",
    "Number of packets transmitted on all VLs from this port (including errors)",
)
IB_ERR = _f(
    "node_infiniband_port_errors_received_total",
    "counter",
    "Number of packets containing an error that were received on this port",
)
IB_DOWN = _f(
    "node_infiniband_link_downed_total",
    "counter",
    "Number of times the link failed to recover from an error state and went down",
)
IB_RECOV = _f(
    "node_infiniband_link_error_recovery_total",
    "counter",
    "Number of times the link successfully recovered from an error state",
)
IB_WAIT = _f(
    "node_infiniband_port_transmit_wait_total",
    "counter",
    "Number of ticks during which the port had data to transmit but no data was sent during the entire tick",
)
IB_STATE = _f(
    "node_infiniband_state_id",
    "gauge",
    "State of the InfiniBand port (0: no change, 1: down, 2: init, 3: armed, 4: active, 5: act defer)",
)
IB_PHYS = _f(
    "node_infiniband_physical_state_id",
    "gauge",
    "Physical state of the InfiniBand port (0: no change, 1: sleep, 2: polling, 3: disable, 4: shift,"
    " 5: link up, 6: link error recover, 7: phytest)",
)
IB_RATE = _f("node_infiniband_rate_bytes_per_second", "gauge", "Maximum signal transfer rate")
NFS_READ = _f(
    "node_mountstats_nfs_total_read_bytes_total", "counter", "Number of bytes read using the read() syscall."
)
NFS_REQ = _f(
    "node_mountstats_nfs_operations_requests_total",
    "counter",
    "Number of requests performed for a given operation.",
)
NFS_RESP = _f(
    "node_mountstats_nfs_operations_response_time_seconds_total",
    "counter",
    "Duration all requests took from when a request was sent to when a reply was received.",
    3,
)

# --- vLLM (vllm/v1/metrics/loggers.py names)
V_RUN = _f("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.")
V_WAIT = _f("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.")
V_KV = _f("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", 6)
V_PQ = _f(
    "vllm:prefix_cache_queries_total",
    "counter",
    "Prefix cache queries, in terms of number of queried tokens.",
    1,
)
V_PH = _f(
    "vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.", 1
)
V_PROMPT = _f("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", 1)
V_GEN = _f("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", 1)
V_PRE = _f("vllm:num_preemptions_total", "counter", "Cumulative number of preemption from the engine.", 1)
V_OK = _f("vllm:request_success_total", "counter", "Count of successfully processed requests.", 1)
V_CFG = _f("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig", 1)
V_TTFT = _f(
    "vllm:time_to_first_token_seconds",
    "histogram",
    "Histogram of time to first token in seconds.",
    6,
    InferenceModel.TTFT_BUCKETS,
)
V_ITL = _f(
    "vllm:inter_token_latency_seconds",
    "histogram",
    "Histogram of inter-token latency in seconds.",
    6,
    InferenceModel.ITL_BUCKETS,
)
V_E2E = _f(
    "vllm:e2e_request_latency_seconds",
    "histogram",
    "Histogram of e2e request latency in seconds.",
    6,
    InferenceModel.E2E_BUCKETS,
)
V_QUEUE = _f(
    "vllm:request_queue_time_seconds",
    "histogram",
    "Histogram of time spent in WAITING phase for request.",
    6,
    InferenceModel.TTFT_BUCKETS,
)

# --- kube-state-metrics
K_NODE = _f("kube_node_info", "gauge", "Information about a cluster node.")
K_ALLOC = _f(
    "kube_node_status_allocatable",
    "gauge",
    "The allocatable for different resources of a node that are available for scheduling.",
)
K_POD = _f("kube_pod_info", "gauge", "Information about pod.")
K_REQ = _f(
    "kube_pod_container_resource_requests",
    "gauge",
    "The number of requested request resource by a container.",
)
K_PHASE = _f("kube_pod_status_phase", "gauge", "The pods current phase.")
K_RESTART = _f(
    "kube_pod_container_status_restarts_total", "counter", "The number of container restarts per container."
)
K_LABELS = _f("kube_pod_labels", "gauge", "Kubernetes labels converted to Prometheus labels.")

# --- minted (docs/conventions.md §9)
T_STEP = _f(
    "training_step_duration_seconds", "gauge", "Duration of the last training step (slowest rank).", 4
)
T_STEPS = _f("training_steps_total", "counter", "Training steps completed.", 2)
T_DL = _f("training_dataloader_wait_seconds", "gauge", "Time the last step waited for the data loader.", 4)
T_LOSS = _f("training_loss", "gauge", "Training loss of the last step.", 4)
T_RANK = _f("training_rank_compute_seconds", "gauge", "Compute time of the last step on this rank.", 4)
P_FRESH = _f(
    "data_pipeline_freshness_seconds", "gauge", "Age of the newest consumable data of the dataset.", 1
)
P_LAST = _f("data_pipeline_last_success_timestamp_seconds", "gauge", "End of the last successful run.", 3)
P_RUNS = _f("data_pipeline_runs_total", "counter", "Pipeline runs finished, by status.")
P_RUNNING = _f("data_pipeline_running", "gauge", "1 while a run is in progress.")
F_SW = _f("ib_switch_up", "gauge", "1 when the InfiniBand switch is reachable and forwarding.")
F_SW_WAIT = _f(
    "ib_switch_port_transmit_wait_total",
    "counter",
    "PortXmitWait of a switch-to-switch port (ticks with data to send and no flow-control credit), as "
    "the fabric manager's port counters report it; remote_switch names the switch at the other end.",
)

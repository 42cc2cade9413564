"""A deterministic DCGM-exporter fleet and its wire encodings, for the ingest and disk benchmarks.

Shape (docs: performance-anchors §2): ``nodes`` x 8 GPUs x 20 dcgm-exporter default counters, labels
``gpu, UUID, pci_bus_id, device, modelName, Hostname, DCGM_FI_DRIVER_VERSION, instance, job``. Series
are ordered node-major, then metric, then GPU (the order dcgm-exporter prints them), so series ``s``
is node ``s // 160``, metric ``(s % 160) // 8``, GPU ``s % 8``.

Values are deterministic: ~70 % of GPUs busy (util ~95 ± 5 %), the rest idle, each GPU flipping every
~2 h; temperatures, power (3 decimals), clocks and memory follow util; ratios have 6 decimals;
energy and NVLink are monotone counters. Integers are exact (printed without ``.0``).

Encoders (all hand-written here so the benchmark does not depend on the code it measures):
Prometheus text lines with ms timestamps (VictoriaMetrics' ``/api/v1/import/prometheus``),
remote-write 1.0 ``WriteRequest`` protobuf + snappy block format (cramjam), OTLP
``ExportMetricsServiceRequest`` via the opentelemetry-proto classes.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import cramjam
import numpy as np

from sightglass.ingest.varint import encode_varint

GPUS_PER_NODE = 8
STEP_MS = 10_000

# (name, kind, decimals): kind is "gauge" or "counter"; decimals = digits kept after rounding
METRICS: list[tuple[str, str, int]] = [
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", 0),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", 0),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", 0),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", 0),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", 3),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", 0),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", 0),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", 0),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", 0),
    ("DCGM_FI_DEV_ENC_UTIL", "gauge", 0),
    ("DCGM_FI_DEV_DEC_UTIL", "gauge", 0),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", 0),
    ("DCGM_FI_DEV_FB_FREE", "gauge", 0),
    ("DCGM_FI_DEV_FB_USED", "gauge", 0),
    ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter", 0),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", 6),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", 6),
    ("DCGM_FI_PROF_DRAM_ACTIVE", "gauge", 6),
    ("DCGM_FI_PROF_PCIE_TX_BYTES", "gauge", 0),
    ("DCGM_FI_PROF_PCIE_RX_BYTES", "gauge", 0),
]
N_METRICS = len(METRICS)
SERIES_PER_NODE = GPUS_PER_NODE * N_METRICS
MODEL = "NVIDIA H100 80GB HBM3"
DRIVER = "535.129.03"
FB_TOTAL_MIB = 81_559


def _uuid(node: int, gpu: int) -> str:
    return "GPU-" + str(
        uuid.UUID(int=(node * 8 + gpu + 1) * 0x9E3779B97F4A7C15_2545F4914F6CDD1D % (1 << 128))
    )


@dataclass
class Fleet:
    """The series of ``nodes`` x 8 GPUs x 20 metrics and their values at each scrape."""

    nodes: int
    start_ms: int
    seed: int = 1
    _state: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_series(self) -> int:
        return self.nodes * SERIES_PER_NODE

    @property
    def n_gpus(self) -> int:
        return self.nodes * GPUS_PER_NODE

    # ------------------------------------------------------------------ series
    def gpu_labels(self, node: int, gpu: int) -> dict[str, str]:
        host = f"gpu-node-{node:04d}"
        return {
            "gpu": str(gpu),
            "UUID": _uuid(node, gpu),
            "pci_bus_id": f"00000000:{(0x18 + 0x10 * gpu) & 0xFF:02X}:00.0",
            "device": f"nvidia{gpu}",
            "modelName": MODEL,
            "Hostname": host,
            "DCGM_FI_DRIVER_VERSION": DRIVER,
            "instance": f"{host}:9400",
            "job": "dcgm-exporter",
        }

    def series_labels(self) -> Iterator[dict[str, str]]:
        """Labels of every series in order, ``__name__`` included."""
        for node in range(self.nodes):
            per_gpu = [self.gpu_labels(node, g) for g in range(GPUS_PER_NODE)]
            for name, _, _ in METRICS:
                for g in range(GPUS_PER_NODE):
                    yield {"__name__": name, **per_gpu[g]}

    # ------------------------------------------------------------------ values
    def values(self, scrape: int) -> np.ndarray:
        """Values of every series at scrape ``scrape`` (call with scrape = 0, 1, 2, ... in order)."""
        g = self.n_gpus
        t_ms = self.start_ms + scrape * STEP_MS
        if not self._state or self._state["scrape"][0] != scrape - 1:
            self._state = {
                "scrape": np.array([-1]),
                "energy": np.random.default_rng(self.seed).integers(10**9, 10**10, g).astype(np.float64),
                "nvlink": np.random.default_rng(self.seed + 1).integers(10**12, 10**13, g).astype(np.float64),
            }
            for s in range(scrape):  # replay counters up to here
                self._advance(s)
        return self._advance(scrape, t_ms)

    def _advance(self, scrape: int, t_ms: int | None = None) -> np.ndarray:
        g = self.n_gpus
        t_ms = self.start_ms + scrape * STEP_MS if t_ms is None else t_ms
        rng = np.random.default_rng((self.seed, scrape))
        gid = np.arange(g)
        period = 7_200_000
        phase = (gid * 2_654_435_761) % period
        epoch = (t_ms + phase) // period
        busy = ((gid * 40_503 + epoch * 9_973) % 100) < 70
        noise = rng.standard_normal((8, g))
        util = np.where(busy, np.clip(np.round(95 + 2.5 * noise[0]), 0, 100), 0.0)
        temp = np.round(34 + 0.42 * util + 0.8 * noise[1])
        mem_temp = np.round(temp + 6 + 0.5 * noise[2])
        power = np.round(np.where(busy, 640 + 0.6 * util + 18 * noise[3], 72 + 1.5 * noise[3]), 3)
        sm_clock = np.where(busy, 1980.0, 345.0)
        mem_clock = np.full(g, 2619.0)
        st = self._state
        st["energy"] = st["energy"] + np.round(power * STEP_MS)  # mJ
        st["nvlink"] = st["nvlink"] + np.where(busy, np.round(2e9 + 1e8 * np.abs(noise[4])), 0.0)
        st["scrape"][0] = scrape
        copy_util = np.where(busy, np.clip(np.round(38 + 4 * noise[5]), 0, 100), 0.0)
        fb_used = np.where(busy, np.round(71_210 + 40 * np.abs(noise[6])), 0.0)
        fb_free = FB_TOTAL_MIB - fb_used
        gr = np.round(np.clip(util / 100 - 0.02 + 0.01 * noise[7], 0, 1), 6)
        tensor = np.round(np.clip(gr * 0.55 + 0.005 * noise[4], 0, 1), 6)
        dram = np.round(np.clip(gr * 0.42 + 0.005 * noise[5], 0, 1), 6)
        tx = np.where(busy, np.round(1.2e8 + 1e7 * noise[6]), np.round(2e5 + 1e4 * np.abs(noise[6])))
        rx = np.where(busy, np.round(3.4e8 + 2e7 * noise[7]), np.round(4e5 + 1e4 * np.abs(noise[7])))
        zeros = np.zeros(g)
        cols = [
            sm_clock, mem_clock, temp, mem_temp, power, st["energy"], zeros, util, copy_util, zeros, zeros,
            zeros, fb_free, fb_used, st["nvlink"], gr, tensor, dram, tx, rx,
        ]  # fmt: skip
        # (metric, gpu) per node -> series order node, metric, gpu
        per_metric = np.stack(cols)  # (20, g)
        return np.ascontiguousarray(
            per_metric.reshape(N_METRICS, self.nodes, GPUS_PER_NODE).transpose(1, 0, 2).reshape(-1)
        )


# ---------------------------------------------------------------------- chunks
def chunks(n_series: int, per_request: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` series ranges of one request each, in order."""
    return [(lo, min(lo + per_request, n_series)) for lo in range(0, n_series, per_request)]


# ---------------------------------------------------------------------- Prometheus text
def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def text_prefixes(fleet: Fleet) -> list[bytes]:
    """``name{labels} `` per series, labels in dcgm-exporter's order."""
    out = []
    for lab in fleet.series_labels():
        name = lab.pop("__name__")
        inner = ",".join(f'{k}="{_esc(v)}"' for k, v in lab.items())
        out.append(f"{name}{{{inner}}} ".encode())
    return out


def _fmt_values(values: np.ndarray) -> list[str]:
    out = []
    for v in values.tolist():
        out.append(str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v))
    return out


def text_bodies(
    prefixes: list[bytes], values: np.ndarray, ts_ms: int, ranges: list[tuple[int, int]]
) -> list[bytes]:
    """One text body (lines with ms timestamps) per range."""
    vals = _fmt_values(values)
    suffix = f" {ts_ms}\n"
    lines = [p + (v + suffix).encode() for p, v in zip(prefixes, vals, strict=True)]
    return [b"".join(lines[lo:hi]) for lo, hi in ranges]


# ---------------------------------------------------------------------- remote-write 1.0
def _ld(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + encode_varint(len(payload)) + payload


def rw_label_bytes(fleet: Fleet) -> list[bytes]:
    """Encoded ``Label`` fields (TimeSeries field 1) per series, sorted by label name."""
    out = []
    for lab in fleet.series_labels():
        out.append(
            b"".join(_ld(0x0A, _ld(0x0A, k.encode()) + _ld(0x12, lab[k].encode())) for k in sorted(lab))
        )
    return out


def rw_timeseries(label_bytes: bytes, samples: list[tuple[int, float]]) -> bytes:
    """One ``TimeSeries`` message: labels, then ``Sample{value=1 double, timestamp=2 int64}``."""
    body = label_bytes
    for ts, v in samples:
        body += _ld(0x12, b"\x09" + struct.pack("<d", v) + b"\x10" + encode_varint(ts))
    return body


def rw_bodies(
    label_bytes: list[bytes], values: np.ndarray, ts_ms: int, ranges: list[tuple[int, int]]
) -> tuple[list[bytes], int]:
    """Snappy-compressed ``WriteRequest`` per range (one sample per TimeSeries); and raw bytes total."""
    tsv = encode_varint(ts_ms)
    sample_len = 1 + 8 + 1 + len(tsv)
    head = bytes([0x12, sample_len, 0x09])
    vb = values.astype("<f8").tobytes()
    tail = b"\x10" + tsv
    out, raw = [], 0
    for lo, hi in ranges:
        parts = []
        for i in range(lo, hi):
            ts_body = label_bytes[i] + head + vb[8 * i : 8 * i + 8] + tail
            parts.append(b"\x0a" + encode_varint(len(ts_body)) + ts_body)
        body = b"".join(parts)
        raw += len(body)
        out.append(bytes(cramjam.snappy.compress_raw(body)))
    return out, raw


# ---------------------------------------------------------------------- OTLP
class OtlpTemplates:
    """One ``ExportMetricsServiceRequest`` per range, built once; each scrape only rewrites the points.

    Resource per node (``host.name``, ``service.name`` = job, ``service.instance.id`` = instance), one
    metric per DCGM name (gauge, or monotonic cumulative sum for counters), one point per GPU with the
    remaining labels as attributes.
    """

    def __init__(self, fleet: Fleet, ranges: list[tuple[int, int]]) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
        from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_CUMULATIVE

        self.requests = []
        self.points: list[list[object]] = []
        self.start_ns = (fleet.start_ms - STEP_MS) * 1_000_000
        for lo, hi in ranges:
            req = ExportMetricsServiceRequest()
            pts: list[object] = []
            cur_node, metrics = -1, None
            metric_of: dict[int, object] = {}
            for s in range(lo, hi):
                node, rest = divmod(s, SERIES_PER_NODE)
                m_i, gpu = divmod(rest, GPUS_PER_NODE)
                if node != cur_node:
                    cur_node, metric_of = node, {}
                    rm = req.resource_metrics.add()
                    lab = fleet.gpu_labels(node, 0)
                    for k, v in (
                        ("host.name", lab["Hostname"]), ("service.name", lab["job"]),
                        ("service.instance.id", lab["instance"]),
                    ):  # fmt: skip
                        rm.resource.attributes.add(key=k).value.string_value = v
                    metrics = rm.scope_metrics.add(scope={"name": "dcgm-exporter"}).metrics
                m = metric_of.get(m_i)
                if m is None:
                    name, kind, _ = METRICS[m_i]
                    m = metric_of[m_i] = metrics.add(name=name)  # type: ignore[union-attr]
                    if kind == "counter":
                        m.sum.aggregation_temporality = AGGREGATION_TEMPORALITY_CUMULATIVE
                        m.sum.is_monotonic = True
                name, kind, _ = METRICS[m_i]
                dps = m.sum.data_points if kind == "counter" else m.gauge.data_points  # type: ignore[attr-defined]
                dp = dps.add(start_time_unix_nano=self.start_ns)
                lab = fleet.gpu_labels(node, gpu)
                for k in ("gpu", "UUID", "pci_bus_id", "device", "modelName", "DCGM_FI_DRIVER_VERSION"):
                    dp.attributes.add(key=k).value.string_value = lab[k]
                pts.append(dp)
            self.requests.append(req)
            self.points.append(pts)

    def bodies(self, values: np.ndarray, ts_ms: int, ranges: list[tuple[int, int]]) -> list[bytes]:
        t_ns = ts_ms * 1_000_000
        vals = values.tolist()
        out = []
        for req, pts, (lo, _hi) in zip(self.requests, self.points, ranges, strict=True):
            for i, dp in enumerate(pts):
                dp.time_unix_nano = t_ns  # type: ignore[attr-defined]
                dp.as_double = vals[lo + i]  # type: ignore[attr-defined]
            out.append(req.SerializeToString())
        return out

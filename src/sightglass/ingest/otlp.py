"""OTLP/HTTP: decode metrics, traces and logs (protobuf or the OTLP JSON mapping) into the model.

Bodies are parsed into the ``opentelemetry-proto`` classes: protobuf by the C runtime, JSON by
:mod:`sightglass.ingest.otlp_json` (OTLP JSON's hex trace/span ids, unknown fields ignored).

Metrics follow the OpenTelemetry → Prometheus compatibility spec:

- names: runs of characters outside ``[a-zA-Z0-9]`` become ``_``; the unit becomes a suffix
  (``s`` → ``_seconds``, ``By`` → ``_bytes``, ``{token}`` → none, ``By/s`` → ``_bytes_per_second``),
  gauges with unit ``1`` get ``_ratio``, monotonic sums get ``_total``. The original OTel name and
  unit are kept in the metric's HELP text (``... [otel: gen_ai.server.request.duration, unit s]``)
  when they differ from the translated name, so ``/api/v1/metadata`` shows where a metric came from;
- a monotonic cumulative sum → counter; a non-monotonic sum → gauge; **delta** sums and histograms
  are stored as they come (each sample is the increase over its interval; query them with
  ``sum_over_time``, not ``rate``), with metadata type ``unknown`` and HELP marked ``(delta)``;
- histograms → cumulative ``_bucket{le=...}``, ``_sum``, ``_count``; exponential histograms →
  :class:`ExpHistogramPoint` kept whole plus ``_count`` / ``_sum``; summaries → ``{quantile=...}``
  series plus ``_sum`` / ``_count``; a point flagged "no recorded value" → a stale marker;
- resource: ``service.name`` → ``job`` (``service.namespace/service.name`` when namespaced),
  ``service.instance.id`` → ``instance``, every other resource attribute → one ``target_info``
  sample per resource. Sightglass **also promotes** the attribution attributes of
  conventions.md §4.4 (``host.name``, ``k8s.*``, ``slurm.*``) to labels on every series
  (``k8s.pod.name`` → ``k8s_pod_name``), because topology and cost attribution join on them;
  data point attributes win over promoted ones, ``job``/``instance`` win over both;
- data point attributes → labels with ``[^a-zA-Z0-9_]`` → ``_`` (a leading digit gets ``key_``);
  attributes colliding after sanitising are joined with ``;`` in key order.

A point that cannot be stored (no value, an empty name, a label value over the limit, too many
labels) is rejected alone and reported through ``partial_success``.

Speed: the label set of a point is looked up in a per-decoder cache keyed by the raw attribute
tuple (plus the resource's labels), so sorting, sanitising and validation run once per series,
not once per point.
"""

from __future__ import annotations

import json
import math
import operator
import re
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import NumberDataPoint

from sightglass.ingest.learning import MAX_TEMPLATE_BYTES, LearnGate
from sightglass.ingest.limits import BadRequest, UnsupportedMediaType
from sightglass.ingest.otlp_json import to_kwargs
from sightglass.ingest.protowire import BYTES, ENUM, MESSAGE, REPEATED, add_message, describe_decode_error
from sightglass.ingest.varint import decode_varint, encode_varint
from sightglass.model import (
    ExpHistogramPoint,
    Labels,
    LogRecord,
    MetricMetadata,
    MetricType,
    SampleBatch,
    SeriesKey,
    Span,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

SIGNALS: dict[str, tuple[type[Message], type[Message]]] = {
    "metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
    "traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
}

DELTA, CUMULATIVE = 1, 2
FLAG_NO_RECORDED_VALUE = 1

# resource attributes promoted to labels for attribution (conventions.md §4.4)
PROMOTED_PREFIXES = ("k8s.", "slurm.")
PROMOTED_NAMES = frozenset({"host.name"})
_IDENTIFYING = frozenset({"service.name", "service.namespace", "service.instance.id"})

# OTel unit (UCUM) → Prometheus unit word (compatibility spec)
_UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}
_NON_ALNUM = re.compile(r"[^a-zA-Z0-9]+")
_BAD_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


# ---------------------------------------------------------------------- parsing
def media_type(content_type: str | None) -> str:
    """``protobuf`` or ``json`` for an OTLP request's ``Content-Type``; 415 otherwise."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == PROTOBUF:
        return "protobuf"
    if media == JSON:
        return "json"
    raise UnsupportedMediaType(
        f"unsupported Content-Type {content_type!r} for OTLP/HTTP (expected {PROTOBUF} or {JSON})"
    )


def parse_request(body: bytes, encoding: str, signal: str) -> Any:
    """Parse an ``Export*ServiceRequest`` of ``signal`` (metrics/traces/logs) from protobuf or JSON."""
    cls = SIGNALS[signal][0]
    msg = cls()
    if encoding == "protobuf":
        try:
            msg.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as e:
            detail = describe_decode_error(body, cls.DESCRIPTOR)
            raise BadRequest(f"invalid OTLP protobuf: {detail} ({e})", reason="decode") from None
        return msg
    try:
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise BadRequest("invalid OTLP JSON: the body must be an object", reason="decode")
        kwargs = to_kwargs(doc, cls.DESCRIPTOR)
    except (ValueError, UnicodeDecodeError) as e:  # BadRequest is not a ValueError
        raise BadRequest(f"invalid OTLP JSON: {e}", reason="decode") from None
    except RecursionError:
        raise BadRequest("invalid OTLP JSON: nested too deeply", reason="decode") from None
    try:
        return cls(**kwargs)
    except Exception as e:  # what the C runtime refuses (types, ranges, UTF-8, nesting) is the client's fault
        raise BadRequest(f"invalid OTLP JSON: {e}", reason="decode") from None


def encode_response(signal: str, encoding: str, rejected: int = 0, message: str = "") -> bytes:
    """The ``Export*ServiceResponse`` body, with ``partial_success`` when points were rejected."""
    resp: Any = SIGNALS[signal][1]()
    if rejected or message:
        ps = resp.partial_success
        field_name = {
            "metrics": "rejected_data_points",
            "traces": "rejected_spans",
            "logs": "rejected_log_records",
        }
        setattr(ps, field_name[signal], rejected)
        ps.error_message = message
    if encoding == "protobuf":
        return bytes(resp.SerializeToString())
    return json.dumps(json_format.MessageToDict(resp)).encode()


def encode_status(encoding: str, http_status: int, message: str) -> bytes:
    """A ``google.rpc.Status`` error body (OTLP/HTTP failure response) in the request's encoding."""
    code = (
        8 if http_status in (413, 429) else 13 if http_status >= 500 else 3
    )  # RESOURCE_EXHAUSTED/INTERNAL/INVALID
    if encoding == "protobuf":
        msg = message.encode()
        return b"\x08" + encode_varint(code) + b"\x12" + encode_varint(len(msg)) + msg
    return json.dumps({"code": code, "message": message}).encode()


# ---------------------------------------------------------------------- values
def _any_str(v: Any) -> str:
    """An ``AnyValue`` as a label value string (non-strings as the compatibility spec suggests: JSON)."""
    w = v.WhichOneof("value")
    if w == "string_value":
        return str(v.string_value)
    if w == "bool_value":
        return "true" if v.bool_value else "false"
    if w == "int_value":
        return str(v.int_value)
    if w == "double_value":
        return _fmt_float(v.double_value)
    if w is None:
        return ""
    if w == "bytes_value":
        return bytes(v.bytes_value).hex()
    return json.dumps(any_value(v), separators=(",", ":"), default=str)


def any_value(v: Any) -> Any:
    """An ``AnyValue`` as a plain Python value (bytes as hex)."""
    w = v.WhichOneof("value")
    if w == "string_value":
        return v.string_value
    if w == "bool_value":
        return v.bool_value
    if w == "int_value":
        return v.int_value
    if w == "double_value":
        return v.double_value
    if w == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if w == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if w == "bytes_value":
        return bytes(v.bytes_value).hex()
    return None


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def _fmt_float(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


# ---------------------------------------------------------------------- names
def sanitize_label_name(name: str) -> str:
    """An OTel attribute key as a Prometheus label name (``k8s.pod.name`` → ``k8s_pod_name``)."""
    out = _BAD_LABEL_CHARS.sub("_", name)
    if out and out[0].isdigit():
        out = "key_" + out
    return out


def metric_name(name: str, unit: str, kind: str, monotonic: bool = False) -> str:
    """The Prometheus name of an OTel metric (``kind``: gauge/sum/histogram/exponential_histogram/summary)."""
    tokens = [t for t in _NON_ALNUM.split(name) if t]
    main, _, per = unit.partition("/")
    main, per = main.strip(), per.strip()
    if main and "{" not in main and "}" not in main:
        word = _clean_unit(_UNITS.get(main, main))
        if word and word not in tokens:
            tokens.append(word)
    if per and "{" not in per and "}" not in per:
        word = _clean_unit(_PER_UNITS.get(per, per))
        if word and word not in tokens:
            tokens += ["per", word]
    if kind == "sum" and monotonic:
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    out = "_".join(tokens)
    if out and out[0].isdigit():
        out = "_" + out
    return out


def _clean_unit(word: str) -> str:
    return "_".join(t for t in _NON_ALNUM.split(word) if t)


# ---------------------------------------------------------------------- metrics
def _raw_classes() -> tuple[Any, Any]:
    """Views of ``ExportMetricsServiceRequest`` in which gauge/sum points stay raw bytes.

    ``RawPoints`` (``{repeated bytes data_points = 1}``) reads a Gauge or a Sum. ``RawRequest`` is the
    request's own schema, generated from the ``opentelemetry-proto`` descriptors, down through
    resource → scope → metric → gauge | sum, with every message field off that path (a data point,
    an attribute ``KeyValue``, a histogram, metric metadata, an entity ref) declared as ``bytes``.
    Every field of the path keeps its number, type and oneof (strings stay UTF-8-checked; enums read
    as ``int32``), so the C parser accepts exactly the wire structure the full parser accepts on the
    path, merges repeated sub-messages the same way, and leaves the same unknown fields.
    """
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, ResourceMetrics, ScopeMetrics, Sum
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    pool = descriptor_pool.DescriptorPool()
    fdp = descriptor_pb2.FileDescriptorProto(
        name="sightglass/otlp_raw.proto", package="sightglass", syntax="proto3"
    )
    add_message(fdp, "RawPoints", [("data_points", 1, BYTES, REPEATED, None, None)])
    path = {
        d.full_name: "Raw" + d.name
        for d in (
            ExportMetricsServiceRequest.DESCRIPTOR, ResourceMetrics.DESCRIPTOR, Resource.DESCRIPTOR,
            ScopeMetrics.DESCRIPTOR, InstrumentationScope.DESCRIPTOR, Metric.DESCRIPTOR, Gauge.DESCRIPTOR,
            Sum.DESCRIPTOR,
        )
    }  # fmt: skip
    for d in (
        ExportMetricsServiceRequest.DESCRIPTOR, ResourceMetrics.DESCRIPTOR, Resource.DESCRIPTOR,
        ScopeMetrics.DESCRIPTOR, InstrumentationScope.DESCRIPTOR, Metric.DESCRIPTOR, Gauge.DESCRIPTOR,
        Sum.DESCRIPTOR,
    ):  # fmt: skip
        msg = descriptor_pb2.DescriptorProto()
        d.CopyToProto(msg)
        msg.name = path[d.full_name]
        del msg.nested_type[:], msg.enum_type[:], msg.reserved_range[:], msg.reserved_name[:]
        msg.ClearField("options")
        for f in msg.field:
            f.ClearField("json_name")
            f.ClearField("options")
            if f.type == MESSAGE:
                target = f.type_name.lstrip(".")
                if target in path:
                    f.type_name = ".sightglass." + path[target]
                else:
                    f.type = BYTES
                    f.ClearField("type_name")
            elif f.type == ENUM:
                f.type = descriptor_pb2.FieldDescriptorProto.TYPE_INT32
                f.ClearField("type_name")
        fdp.message_type.add().CopyFrom(msg)
    pool.Add(fdp)
    get = message_factory.GetMessageClass
    return get(pool.FindMessageTypeByName("sightglass.RawPoints")), get(
        pool.FindMessageTypeByName("sightglass.RawExportMetricsServiceRequest")
    )


_RawPoints, _RawRequest = _raw_classes()
_START_BYTE = b"\x11"
_ATTR_SLICES = {0: slice(18, None), 9: slice(27, None)}  # a plain point's attribute bytes, by offset
# NumberDataPoint tags: start_time_unix_nano (2, fixed64), time_unix_nano (3, fixed64),
# as_double (4, double), as_int (6, sfixed64)
_START_TAG, _TIME_TAG, _DOUBLE_TAG, _INT_TAG = 0x11, 0x19, 0x21, 0x31


def _raw_view(body: bytes | None, req: Any) -> Any:
    """The resource_metrics of ``body`` read by ``RawRequest`` (None without a body or on a mismatch)."""
    if body is None:
        return None
    try:
        rms = _RawRequest.FromString(body).resource_metrics
    except (DecodeError, RuntimeError, ValueError):
        return None
    return _same_len(rms, req.resource_metrics)


def _same_len(raw: Any, full: Any) -> Any:
    return raw if len(raw) == len(full) else None


_TIME_FIELDS: dict[int, struct.Struct] = {}


def _time_fields(n: int) -> struct.Struct:
    """Reads the 8-byte time at the start of each of ``n`` 17-byte point heads, in one C call."""
    st = _TIME_FIELDS.get(n)
    if st is None:
        st = struct.Struct("<" + "Q9x" * n)
        if len(_TIME_FIELDS) < 256:
            _TIME_FIELDS[n] = st
    return st


class _NotPlain(Exception):
    """A point the fast path does not take."""


class _Rejected(Exception):
    pass


@dataclass(slots=True)
class MetricsResult:
    """A decoded metrics request: the batch, and how many points were rejected and why."""

    batch: SampleBatch
    points: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def error_message(self) -> str:
        if not self.errors:
            return ""
        more = f" (and {self.rejected - len(self.errors)} more)" if self.rejected > len(self.errors) else ""
        return "; ".join(self.errors) + more


class _Acc:
    """Columns of one request. Series are indexed by ``id()`` of canonical keys (see ``canonical``)."""

    __slots__ = (
        "canonical", "head_pos", "heads", "hists", "idx", "index_by_id", "metadata", "now", "series", "stale",
        "ts", "vals",
    )  # fmt: skip

    def __init__(self, canonical: Any) -> None:
        self.canonical = canonical
        # fast-path rows: per metric, the 17 bytes "time, value tag, value" of each point; their rows
        self.heads: list[bytes] = []
        self.head_pos: list[int] = []
        self.now = 0
        self.series: list[SeriesKey] = []
        self.index_by_id: dict[int, int] = {}
        self.idx: list[int] = []
        self.ts: list[int] = []
        self.vals: list[float] = []
        self.stale: list[int] = []  # positions of stale markers
        self.hists: list[ExpHistogramPoint] = []
        self.metadata: dict[str, MetricMetadata] = {}

    def add(self, name: str, labels: Labels, ts_ms: int, value: float) -> None:
        key = self.canonical(name, labels)
        i = self.index_by_id.get(id(key))
        if i is None:
            i = self.index_by_id[id(key)] = len(self.series)
            self.series.append(key)
        self.idx.append(i)
        self.ts.append(ts_ms)
        self.vals.append(value)

    def build(self) -> SampleBatch:
        idx = np.array(self.idx, dtype=np.int64)
        ts = np.array(self.ts, dtype=np.int64)
        vals = np.array(self.vals, dtype=np.float64)
        if self.heads:  # the fast path's points: times and values read together here
            n = len(self.head_pos)
            m = np.frombuffer(b"".join(self.heads), dtype=np.uint8).reshape(n, 17)
            t = (m[:, 0:8].copy().view("<u8").reshape(n) // np.uint64(1_000_000)).astype(np.int64)
            t[t == 0] = self.now
            raw = m[:, 9:17].copy()
            v = np.where(
                m[:, 8] == _INT_TAG, raw.view("<i8").reshape(n).astype(np.float64), raw.view("<f8").reshape(n)
            )
            pos = np.array(self.head_pos, dtype=np.int64)
            ts[pos] = t
            vals[pos] = v
        stale = None
        if self.stale:
            stale = np.zeros(len(ts), dtype=bool)
            stale[self.stale] = True
        return SampleBatch(
            series=self.series,
            series_index=idx,
            ts_ms=ts,
            values=vals,
            stale=stale,
            metadata=self.metadata,
            exp_histograms=self.hists,
        )


@dataclass(slots=True)
class _BodyTemplate:
    """A learned body (see ``MetricsDecoder._learn_body``): its bytes with the free fields zeroed."""

    fixed: np.ndarray  # the body, time and value payloads zeroed
    time_at: np.ndarray  # (points, 8) positions of each point's time
    value_at: np.ndarray  # (points, 8) positions of each point's value
    is_int: np.ndarray  # as_int (else as_double), per point
    series: list[SeriesKey]
    index: np.ndarray
    resources: list[tuple[Labels, tuple[tuple[str, str], ...], int]]
    metadata: dict[str, MetricMetadata]


def _len_fields(buf: bytes, pos: int, end: int) -> list[tuple[int, int, int]]:
    """(field number, start, end) of the length-delimited fields of one message; others skipped."""
    out = []
    while pos < end:
        key, pos = decode_varint(buf, pos, end)
        wire = key & 7
        if wire == 0:
            _, pos = decode_varint(buf, pos, end)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            n, pos = decode_varint(buf, pos, end)
            out.append((key >> 3, pos, pos + n))
            pos += n
        else:
            raise ValueError("groups are not expected here")
        if pos > end:
            raise ValueError("field past the end")
    return out


_DATA_FIELDS = frozenset({5, 7, 9, 10, 11})  # Metric's oneof: gauge, sum, histogram, exp. histogram, summary


def _point_spans(body: bytes) -> list[tuple[int, int]] | None:
    """(start, length) in ``body`` of every gauge/sum data point, in wire order; None if unusual."""
    spans: list[tuple[int, int]] = []
    try:
        for f1, a1, b1 in _len_fields(body, 0, len(body)):
            if f1 != 1:
                continue
            for f2, a2, b2 in _len_fields(body, a1, b1):  # ResourceMetrics
                if f2 != 2:
                    continue
                for f3, a3, b3 in _len_fields(body, a2, b2):  # ScopeMetrics
                    if f3 != 2:
                        continue
                    data = [x for x in _len_fields(body, a3, b3) if x[0] in _DATA_FIELDS]  # Metric
                    if len(data) > 1:
                        return None  # merged or replaced oneof members: not worth mirroring
                    for f4, a4, b4 in data:
                        if f4 not in (5, 7):
                            return None
                        for f5, a5, b5 in _len_fields(body, a4, b4):  # Gauge / Sum
                            if f5 == 1:
                                spans.append((a5, b5 - a5))
    except (ValueError, IndexError):
        return None
    return spans


class MetricsDecoder:
    """Turns ``ExportMetricsServiceRequest`` messages into :class:`SampleBatch` objects.

    Keep one per server: it caches names and label sets across requests (bounded).
    """

    def __init__(
        self,
        *,
        max_label_value_bytes: int = 16 * 1024,
        max_labels_per_series: int = 64,
        cache_size: int = 500_000,
        now_ms: Any = None,
    ) -> None:
        self.max_label_value_bytes = max_label_value_bytes
        self.max_labels_per_series = max_labels_per_series
        self.cache_size = cache_size
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._labels: dict[tuple[Labels, tuple[tuple[str, str], ...]], Labels] = {}
        self._keys: dict[tuple[str, Labels], dict[tuple[tuple[str, str], ...], SeriesKey]] = {}
        self._canon: dict[tuple[str, Labels], SeriesKey] = {}
        # fast path: per (metric, resource labels), a data point's attribute bytes -> series key
        self._fast: dict[tuple[str, Labels], dict[bytes, SeriesKey]] = {}
        self._resources: dict[tuple[tuple[str, str], ...], tuple[Labels, tuple[tuple[str, str], ...]]] = {}
        self._names: dict[tuple[str, str, str, bool], str] = {}
        self._metric_md: dict[tuple[str, str, str, str, bool, bool], MetricMetadata] = {}
        self._stored_metadata: dict[str, MetricMetadata] = {}
        # body-only path: resource attribute bytes -> (labels, target_info attributes), and the scope
        # attribute bytes, both learned from requests the full parser read
        self._raw_resources: dict[tuple[bytes, ...], tuple[Labels, tuple[tuple[str, str], ...]]] = {}
        self._raw_scopes: set[tuple[bytes, ...]] = set()
        self._body_templates: dict[int, list[_BodyTemplate]] = {}  # by body length
        self._template_bytes = 0
        self._gate = LearnGate()

    def decode_body(self, body: bytes) -> MetricsResult | None:
        """Decode a protobuf body without the full parse, when it is all steady gauge/sum points.

        The body is read by ``RawRequest`` (C; the request's own schema with points and attributes
        kept as bytes, so its wire structure, strings and unknown fields are checked as the full
        parser checks them). It is taken here only when every resource's and scope's attribute
        bytes were read by the full parser before (:meth:`decode` learns them), every metric is a
        gauge or sum without metadata, and every point is "[start time] time value <attribute
        bytes>" with attribute bytes the full parser read as exactly those attributes (see
        :meth:`_numbers_fast`). The points' keys are looked up per metric by C-level ``map``; their
        layout, times and values are then checked and read by numpy for the whole request. Anything
        else returns ``None`` and the caller runs the full parse and :meth:`decode`, which reads,
        rejects and words errors exactly as before. The result equals :meth:`decode`'s.
        """
        if len(self._canon) >= self.cache_size or len(self._resources) >= 100_000:
            return None  # decode() evicts first
        tpl = self._template_for(body)
        if tpl is not None:
            self._gate.hit()
            arr = np.frombuffer(body, dtype=np.uint8)
            t_ns = arr[tpl.time_at].copy().view("<u8").reshape(-1)
            raw_v = arr[tpl.value_at].copy()
            vals = np.where(
                tpl.is_int, raw_v.view("<i8").reshape(-1).astype(np.float64), raw_v.view("<f8").reshape(-1)
            )
            return self._finish(
                t_ns, vals, tpl.series, tpl.index, tpl.resources, dict(tpl.metadata), self._now_ms()
            )
        try:
            rms = _RawRequest.FromString(body).resource_metrics
        except (DecodeError, RuntimeError, ValueError):
            return None
        raw_resources, raw_scopes, metric_md, fast = (
            self._raw_resources,
            self._raw_scopes,
            self._metric_md,
            self._fast,
        )
        metadata: dict[str, MetricMetadata] = {}
        keys: list[Any] = []  # a SeriesKey per point
        dps_all: list[bytes] = []
        offs: list[int] = []  # per metric: 9 when its points start with a start time, else 0
        counts: list[int] = []  # points per metric
        resources: list[tuple[Labels, tuple[tuple[str, str], ...], int]] = []  # (base, info, end point)
        getitem = operator.getitem
        for rm in rms:
            r = rm.resource
            if r.entity_refs:
                return None
            found = raw_resources.get(tuple(r.attributes))
            if found is None:
                return None
            base, info = found
            for sm in rm.scope_metrics:
                sa = sm.scope.attributes
                if sa and tuple(sa) not in raw_scopes:
                    return None
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if kind == "gauge":
                        data = m.gauge
                        mk = (m.name, m.unit, m.description, kind, False, False)
                    elif kind == "sum":
                        data = m.sum
                        mono = data.is_monotonic
                        mk = (
                            m.name,
                            m.unit,
                            m.description,
                            kind,
                            mono,
                            data.aggregation_temporality == DELTA,
                        )
                    else:
                        return None
                    if m.metadata:
                        return None
                    md = metric_md.get(mk)
                    if md is None:
                        return None
                    name = md.metric
                    if name == "target_info":
                        return None
                    metadata[name] = md
                    dps = list(data.data_points)
                    if not dps:
                        continue
                    cache = fast.get((name, base))
                    if cache is None:
                        return None
                    off = 9 if dps[0][:1] == _START_BYTE else 0
                    got = list(map(cache.get, map(getitem, dps, repeat(_ATTR_SLICES[off]))))  # type: ignore[arg-type]
                    if None in got:
                        return None
                    keys += got
                    dps_all += dps
                    offs.append(off)
                    counts.append(len(got))
            resources.append((base, info, len(keys)))
        n = len(keys)
        now = self._now_ms()
        if n:
            lens = np.fromiter(map(len, dps_all), dtype=np.int64, count=n)
            blob = np.frombuffer(b"".join(dps_all), dtype=np.uint8)
            if len(blob) < 18:
                return None
            offset = np.repeat(np.asarray(offs, dtype=np.int64), counts)
            starts = np.zeros(n, dtype=np.int64)
            np.cumsum(lens[:-1], out=starts[1:])
            ok = lens >= offset + 18
            last = len(blob) - 1
            head = np.minimum(starts + offset, last)
            ok &= (blob[head] == _TIME_TAG) & ((offset == 0) | (blob[np.minimum(starts, last)] == _START_TAG))
            # each point's 17 bytes after the time tag, gathered through a sliding view of the blob
            window = np.lib.stride_tricks.as_strided(blob, shape=(len(blob) - 16, 17), strides=(1, 1))
            mat = window[np.minimum(head + 1, len(blob) - 17)]
            tag = mat[:, 8]
            ok &= (tag == _DOUBLE_TAG) | (tag == _INT_TAG)
            if not ok.all():
                return None
            t_ns = mat[:, 0:8].copy().view("<u8").reshape(n)
            raw = mat[:, 9:17].copy()
            is_int = tag == _INT_TAG
            vals = np.where(is_int, raw.view("<i8").reshape(n).astype(np.float64), raw.view("<f8").reshape(n))
            ids = np.fromiter(map(id, keys), dtype=np.int64, count=n)
            _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
            series = [keys[i] for i in first.tolist()]
            index = inverse.astype(np.int64, copy=False).reshape(n)
            self._learn_body(body, dps_all, head + 1, is_int, series, index, resources, metadata)
        else:
            t_ns = np.empty(0, dtype=np.uint64)
            vals = np.empty(0, dtype=np.float64)
            series, index = [], np.empty(0, dtype=np.int64)
        return self._finish(t_ns, vals, series, index, resources, metadata, now)

    def _template_for(self, body: bytes) -> _BodyTemplate | None:
        """The learned body ``body`` equals outside its points' times and values, if any."""
        for tpl in self._body_templates.get(len(body), ()):
            diff = np.frombuffer(body, dtype=np.uint8) != tpl.fixed
            diff[tpl.time_at] = False
            diff[tpl.value_at] = False
            if not diff.any():
                return tpl
        return None

    def _learn_body(
        self,
        body: bytes,
        dps: list[bytes],
        time_in_blob: np.ndarray,
        is_int: np.ndarray,
        series: list[SeriesKey],
        index: np.ndarray,
        resources: list[tuple[Labels, tuple[tuple[str, str], ...], int]],
        metadata: dict[str, MetricMetadata],
    ) -> None:
        """Remember where this body's point times and values are, for a body equal to it but them.

        A sender repeating its structure (an SDK exporter: same metrics, same attributes, same
        order) sends bodies that differ only in those fixed-width fields; any bit pattern there is a
        valid time or value, so a body equal to this one outside them parses as this one did, with
        its own times and values. The points' places are found by walking the wire format and
        checked against the bytes the C parser gave; anything unusual learns nothing.
        """
        if len(body) < 4096 or len(self._body_templates.get(len(body), ())) >= 4 or not self._gate.should():
            return
        self._gate.learned_one()  # an attempt, whether it succeeds or not
        spans = _point_spans(body)
        if spans is None or len(spans) != len(dps):
            return
        starts = np.asarray([a for a, _ in spans], dtype=np.int64)
        if b"".join([body[a : a + n] for a, n in spans]) != b"".join(dps):
            return
        blob_starts = np.zeros(len(dps), dtype=np.int64)
        np.cumsum(np.fromiter(map(len, dps), dtype=np.int64, count=len(dps))[:-1], out=blob_starts[1:])
        pos = np.int32 if len(body) < 2**31 else np.int64
        time_at = ((starts + (time_in_blob - blob_starts))[:, None] + np.arange(8)).astype(pos)
        value_at = time_at + 9
        fixed = np.frombuffer(body, dtype=np.uint8).copy()
        fixed[time_at] = 0
        fixed[value_at] = 0
        size = fixed.nbytes + time_at.nbytes + value_at.nbytes + index.nbytes
        if self._template_bytes + size > MAX_TEMPLATE_BYTES:
            self._body_templates.clear()
            self._template_bytes = 0
        tpl = _BodyTemplate(fixed, time_at, value_at, is_int, series, index, resources, dict(metadata))
        self._body_templates.setdefault(len(body), []).append(tpl)
        self._template_bytes += size

    def _finish(
        self,
        t_ns: np.ndarray,
        vals: np.ndarray,
        series: list[SeriesKey],
        index: np.ndarray,
        resources: list[tuple[Labels, tuple[tuple[str, str], ...], int]],
        metadata: dict[str, MetricMetadata],
        now: int,
    ) -> MetricsResult:
        """The batch of the body path: points (times in ns), then a target_info sample per resource."""
        res = MetricsResult(SampleBatch(), points=len(t_ns))
        t = (t_ns // np.uint64(1_000_000)).astype(np.int64)
        t[t == 0] = now
        # target_info: one sample per resource with attributes and points, at its latest time
        acc = _Acc(self.canonical)
        begin = 0
        for base, info, end in resources:
            if info and end > begin:
                self._target_info(acc, metadata, res, base, info, int(t[begin:end].max()))
            begin = end
        known = self._stored_metadata
        k = len(series)
        res.batch = SampleBatch(
            series=series + acc.series,
            series_index=np.concatenate([index, np.asarray(acc.idx, dtype=np.int64) + k]),
            ts_ms=np.concatenate([t, np.asarray(acc.ts, dtype=np.int64)]),
            values=np.concatenate([vals, np.asarray(acc.vals, dtype=np.float64)]),
            metadata={k2: v for k2, v in metadata.items() if known.get(k2) != v},
        )
        return res

    def _target_info(
        self,
        acc: _Acc,
        metadata: dict[str, MetricMetadata],
        res: MetricsResult,
        base: Labels,
        info: tuple[tuple[str, str], ...],
        latest: int,
    ) -> None:
        """One ``target_info`` sample for a resource with attributes, at its latest point's time."""
        try:
            labels = self._labels_for(base, info)
        except _Rejected as e:
            res.rejected += 1
            res.errors.append(f"target_info: {e}")
            return
        acc.add("target_info", labels, latest, 1.0)
        metadata.setdefault("target_info", MetricMetadata("target_info", MetricType.GAUGE, "Target metadata"))

    def decode(self, req: Any, body: bytes | None = None) -> MetricsResult:
        """Decode a parsed request; ``body``, the protobuf it was parsed from, lets gauges and sums
        be read from the client's own bytes instead of re-serializing them."""
        if len(self._canon) >= self.cache_size:  # evict only between requests: keys must stay canonical
            self._canon.clear()
            self._keys.clear()
            self._fast.clear()
            self._labels.clear()
            self._body_templates.clear()
            self._template_bytes = 0
        if len(self._resources) >= 100_000:
            self._resources.clear()
        acc = _Acc(self.canonical)
        res = MetricsResult(SampleBatch())
        now = acc.now = self._now_ms()
        raw_rms = _raw_view(body, req)
        for ri, rm in enumerate(req.resource_metrics):
            base, info = self._resource(rm.resource)
            latest = 0
            raw_sms = None
            if raw_rms is not None:
                raw_rm = raw_rms[ri]
                raw_sms = _same_len(raw_rm.scope_metrics, rm.scope_metrics)
                # the same wire bytes the full parser just read as this resource: learn them
                if len(self._raw_resources) >= 100_000:
                    self._raw_resources.clear()
                self._raw_resources[tuple(raw_rm.resource.attributes)] = (base, info)
            for si, sm in enumerate(rm.scope_metrics):
                raw_ms = _same_len(raw_sms[si].metrics, sm.metrics) if raw_sms is not None else None
                if raw_sms is not None and raw_ms is not None:
                    sa = raw_sms[si].scope.attributes
                    if sa:
                        if len(self._raw_scopes) >= 10_000:
                            self._raw_scopes.clear()
                        self._raw_scopes.add(tuple(sa))
                for mi, m in enumerate(sm.metrics):
                    try:
                        raw_m = raw_ms[mi] if raw_ms is not None else None
                        latest = max(latest, self._metric(m, base, acc, res, now, raw_m))
                    except _Rejected as e:
                        n = _count_points(m)
                        res.rejected += n
                        if len(res.errors) < 5:
                            res.errors.append(str(e))
            if info and latest:
                self._target_info(acc, acc.metadata, res, base, info, latest)
        # metadata rarely changes: send the store only what it has not acknowledged yet
        known = self._stored_metadata
        acc.metadata = {k: v for k, v in acc.metadata.items() if known.get(k) != v}
        res.batch = acc.build()
        return res

    def metadata_stored(self, batch: SampleBatch) -> None:
        """Note that ``batch`` (from :meth:`decode`) was written, so its metadata is not resent."""
        if len(self._stored_metadata) > 100_000:
            self._stored_metadata.clear()
        self._stored_metadata.update(batch.metadata)

    # -------------------------------------------------------------- resource
    def _resource(self, resource: Any) -> tuple[Labels, tuple[tuple[str, str], ...]]:
        """(labels every series of this resource gets, attributes for target_info), cached."""
        raw = tuple([(kv.key, _any_str(kv.value)) for kv in resource.attributes])
        found = self._resources.get(raw)
        if found is None:
            found = self._resources[raw] = self._resource_labels(raw)
        return found

    def _resource_labels(
        self, raw: tuple[tuple[str, str], ...]
    ) -> tuple[Labels, tuple[tuple[str, str], ...]]:
        attrs = dict(raw)
        base: dict[str, str] = {}
        info: list[tuple[str, str]] = []
        for k, v in attrs.items():
            if k in _IDENTIFYING:
                continue
            if k in PROMOTED_NAMES or k.startswith(PROMOTED_PREFIXES):
                base[sanitize_label_name(k)] = v
            info.append((k, v))
        service = attrs.get("service.name", "")
        ns = attrs.get("service.namespace", "")
        job = f"{ns}/{service}" if ns and service else service
        if job:
            base["job"] = job
        if attrs.get("service.instance.id"):
            base["instance"] = attrs["service.instance.id"]
        return tuple(sorted((k, v) for k, v in base.items() if v)), tuple(info)

    # -------------------------------------------------------------- labels
    def _labels_for(self, base: Labels, raw: tuple[tuple[str, str], ...]) -> Labels:
        ck = (base, raw)
        lab = self._labels.get(ck)
        if lab is not None:
            return lab
        merged: dict[str, str] = {}
        for k, v in sorted(raw):  # sorted by original key: collisions join in key order
            name = sanitize_label_name(k)
            if not name:
                raise _Rejected(f"attribute with an empty key in {dict(raw)!r}")
            merged[name] = f"{merged[name]};{v}" if name in merged else v
        out = {k: v for k, v in base if k not in ("job", "instance")}
        out.update(merged)
        for k, v in base:
            if k in ("job", "instance"):
                out[k] = v
        labels = tuple(sorted((k, v) for k, v in out.items() if v))
        if len(labels) > self.max_labels_per_series:
            raise _Rejected(
                f"{len(labels)} labels, over the limit of {self.max_labels_per_series} "
                "(limits.max_labels_per_series)"
            )
        for k, v in labels:
            if len(v) > self.max_label_value_bytes // 4 and len(v.encode()) > self.max_label_value_bytes:
                raise _Rejected(
                    f"label {k!r} has a value of {len(v.encode())} bytes, over the limit of "
                    f"{self.max_label_value_bytes} (limits.max_label_value_bytes)"
                )
        self._labels[ck] = labels
        return labels

    def _point_labels(self, base: Labels, attrs: Any) -> Labels:
        raw = tuple([(kv.key, _any_str(kv.value)) for kv in attrs])
        lab = self._labels.get((base, raw))
        return lab if lab is not None else self._labels_for(base, raw)

    # -------------------------------------------------------------- metrics
    def _name(self, m: Any, kind: str, monotonic: bool) -> str:
        ck = (m.name, m.unit, kind, monotonic)
        name = self._names.get(ck)
        if name is None:
            name = metric_name(m.name, m.unit, kind, monotonic)
            if len(self._names) < 100_000:
                self._names[ck] = name
        return name

    def _metric_metadata(self, m: Any, kind: str, monotonic: bool, delta: bool) -> MetricMetadata:
        """The Prometheus name, type, HELP and unit of an OTLP metric (cached by the caller)."""
        name = self._name(m, kind, monotonic)
        if not name:
            raise _Rejected(f"metric name {m.name!r} is empty after translation")
        if kind == "gauge" or (kind == "sum" and not monotonic and not delta):
            mtype = MetricType.GAUGE
        elif kind == "sum":
            mtype = MetricType.UNKNOWN if delta else MetricType.COUNTER
        elif kind in ("histogram", "exponential_histogram"):
            mtype = MetricType.UNKNOWN if delta else MetricType.HISTOGRAM
        else:
            mtype = MetricType.SUMMARY
        help_text = m.description
        if name != m.name or m.unit:
            help_text = f"{help_text} [otel: {m.name}, unit {m.unit or '-'}]".strip()
        if delta:
            help_text += " (delta)"
        unit_word = _clean_unit(_UNITS.get(m.unit, "")) if "/" not in m.unit else ""
        return MetricMetadata(name, mtype, help_text, unit_word)

    def _metric(self, m: Any, base: Labels, acc: _Acc, res: MetricsResult, now: int, raw: Any = None) -> int:
        """Add one metric's points; returns the latest timestamp seen (ms)."""
        kind = m.WhichOneof("data")
        if kind is None:
            raise _Rejected(f"metric {m.name!r} has no data")
        data = getattr(m, kind)
        monotonic = kind == "sum" and data.is_monotonic
        temporality = getattr(data, "aggregation_temporality", CUMULATIVE)
        mk = (m.name, m.unit, m.description, kind, monotonic, temporality == DELTA)
        md = self._metric_md.get(mk)
        if md is None:
            md = self._metric_metadata(m, kind, monotonic, temporality == DELTA)
            if len(self._metric_md) < 100_000:
                self._metric_md[mk] = md
        name = md.metric
        acc.metadata[name] = md
        if kind in ("gauge", "sum"):
            latest = self._numbers_fast(name, kind, data, raw, base, acc, res, now)
            if latest is not None:
                return latest
            return self._numbers(name, data.data_points, base, acc, res, now)
        if kind == "histogram":
            return self._histograms(name, data.data_points, base, acc, res, now)
        if kind == "exponential_histogram":
            return self._exp_histograms(name, data.data_points, base, acc, res, now)
        return self._summaries(name, data.data_points, base, acc, res, now)

    def _reject(self, res: MetricsResult, name: str, why: str) -> None:
        res.rejected += 1
        if len(res.errors) < 5:
            res.errors.append(f"{name}: {why}")

    def _numbers_fast(
        self, name: str, kind: str, data: Any, raw: Any, base: Labels, acc: _Acc, res: MetricsResult, now: int
    ) -> int | None:
        """All points of a gauge/sum from their bytes, if every one is a plain point of a known series.

        The points' bytes are the client's own (``raw``, from the body) when they are available and
        hold the same points as the parsed message, else the metric's points re-serialized (C;
        canonical field order: start time, time, value, then attributes). A point is "plain" when it
        is exactly
        ``[start_time] time (as_double | as_int) <attribute bytes>``; its attribute bytes are looked
        up in a cache that :meth:`_learn` fills only with bytes the full parser read as exactly those
        attributes and nothing else. Times and values are then read by numpy. ``None`` (nothing
        added) when any point is new or not plain: :meth:`_numbers` then takes the whole metric.
        """
        cache = self._fast.get((name, base))
        if not cache:
            return None
        if raw is not None and raw.WhichOneof("data") == kind:
            # the last gauge/sum of a Metric wins in both views; the client's view may also hold
            # points of an earlier one that a later histogram etc. replaced: equal counts rule it out
            dps = getattr(raw, kind).data_points
            if len(dps) == len(data.data_points):
                latest = self._fast_points(dps, cache, acc, res, now)
                if latest is not None:
                    return latest
        return self._fast_points(
            _RawPoints.FromString(data.SerializeToString()).data_points, cache, acc, res, now
        )

    def _fast_points(
        self, dps: Any, cache: dict[bytes, SeriesKey], acc: _Acc, res: MetricsResult, now: int
    ) -> int | None:
        get = cache.get
        index = acc.index_by_id
        series = acc.series
        idx = acc.idx
        start, s0 = len(idx), len(series)
        heads: list[bytes] = []
        try:
            for b in dps:
                off = 9 if b[0] == _START_TAG else 0
                tag = b[off + 9]
                if b[off] != _TIME_TAG or (tag != _DOUBLE_TAG and tag != _INT_TAG):
                    raise _NotPlain
                key = get(b[off + 18 :])
                if key is None:
                    raise _NotPlain
                i = index.get(id(key))
                if i is None:
                    i = index[id(key)] = len(series)
                    series.append(key)
                idx.append(i)
                heads.append(b[off + 1 : off + 18])
        except (IndexError, _NotPlain):  # not all plain and known: undo; the per-point decoder runs
            for key in series[s0:]:
                del index[id(key)]
            del series[s0:], idx[start:]
            return None
        n = len(heads)
        if not n:
            return None
        acc.ts.extend([0] * n)
        acc.vals.extend([0.0] * n)
        acc.head_pos.extend(range(start, start + n))
        blob = b"".join(heads)
        acc.heads.append(blob)
        res.points += n
        times = _time_fields(n).unpack(blob)  # the nanosecond times, for the resource's latest
        latest = max(times) // 1_000_000
        return max(latest, now) if min(times) < 1_000_000 else latest

    def _learn(self, name: str, base: Labels, dp: Any, key: SeriesKey) -> None:
        """Remember ``dp``'s attribute bytes as ``key`` if ``dp`` is a plain point (see _numbers_fast)."""
        if dp.flags or dp.exemplars:
            return
        b = dp.SerializeToString()
        off = 9 if b[:1] == bytes([_START_TAG]) else 0
        if len(b) < off + 18 or b[off] != _TIME_TAG or b[off + 9] not in (_DOUBLE_TAG, _INT_TAG):
            return
        attrs = b[off + 18 :]
        rest: Any = NumberDataPoint.FromString(attrs)
        if rest.attributes != dp.attributes or len(rest.ListFields()) > (1 if len(dp.attributes) else 0):
            return
        cache = self._fast.get((name, base))
        if cache is None:
            cache = self._fast[(name, base)] = {}
        cache[attrs] = key

    def _numbers(self, name: str, points: Any, base: Labels, acc: _Acc, res: MetricsResult, now: int) -> int:
        latest = 0
        index = acc.index_by_id
        series = acc.series
        idx, tss, vals = acc.idx, acc.ts, acc.vals
        cache = self._keys.get((name, base))
        if cache is None:
            cache = self._keys[(name, base)] = {}
        fast = self._fast.get((name, base))
        # learn the attribute bytes while the fast cache for this metric is small or incomplete
        learn = fast is None or len(fast) < len(points)
        for dp in points:
            # Fast path: read every attribute as a string (the common case) and look the series up.
            # A non-string attribute reads as "", and raw tuples holding "" are never cached, so a hit
            # means every attribute really was the string read here.
            raw = tuple([(kv.key, kv.value.string_value) for kv in dp.attributes])
            key = cache.get(raw)
            if key is None:
                try:
                    key = self._series_key(name, base, dp.attributes, cache)
                except _Rejected as e:
                    self._reject(res, name, str(e))
                    continue
            which = dp.WhichOneof("value")
            if dp.flags & FLAG_NO_RECORDED_VALUE:
                value = math.nan
                acc.stale.append(len(tss))
            elif which == "as_double":
                value = dp.as_double
            elif which == "as_int":
                value = float(dp.as_int)
            else:
                self._reject(res, name, "data point has no value")
                continue
            ts = dp.time_unix_nano // 1_000_000 or now
            if learn:
                self._learn(name, base, dp, key)
            i = index.get(id(key))
            if i is None:
                i = index[id(key)] = len(series)
                series.append(key)
            idx.append(i)
            tss.append(ts)
            vals.append(value)
            if ts > latest:
                latest = ts
        res.points += len(points)
        return latest

    def _series_key(
        self, name: str, base: Labels, attrs: Any, cache: dict[tuple[tuple[str, str], ...], SeriesKey]
    ) -> SeriesKey:
        """The canonical key of a point of ``name`` with ``attrs`` under resource labels ``base``."""
        raw = tuple([(kv.key, _any_str(kv.value)) for kv in attrs])
        key = cache.get(raw)
        if key is None:
            key = self.canonical(name, self._labels_for(base, raw))
            if all(v for _, v in raw):
                cache[raw] = key
        return key

    def canonical(self, name: str, labels: Labels) -> SeriesKey:
        """One :class:`SeriesKey` object per distinct series, so a batch can index series by ``id()``."""
        k = (name, labels)
        key = self._canon.get(k)
        if key is None:
            key = self._canon[k] = SeriesKey(name, labels)
        return key

    def _histograms(
        self, name: str, points: Any, base: Labels, acc: _Acc, res: MetricsResult, now: int
    ) -> int:
        latest = 0
        for dp in points:
            try:
                labels = self._point_labels(base, dp.attributes)
            except _Rejected as e:
                self._reject(res, name, str(e))
                continue
            ts = dp.time_unix_nano // 1_000_000 or now
            latest = max(latest, ts)
            no_value = bool(dp.flags & FLAG_NO_RECORDED_VALUE)
            bounds, counts = dp.explicit_bounds, dp.bucket_counts
            if counts and len(counts) != len(bounds) + 1:
                self._reject(res, name, f"{len(counts)} bucket counts for {len(bounds)} bounds")
                continue
            rows: list[tuple[str, Labels, float]] = []
            cum = 0
            for j, c in enumerate(counts):
                cum += c
                le = _fmt_float(bounds[j]) if j < len(bounds) else "+Inf"
                rows.append((name + "_bucket", tuple(sorted((*labels, ("le", le)))), float(cum)))
            rows.append((name + "_count", labels, float(dp.count)))
            if dp.HasField("sum"):
                rows.append((name + "_sum", labels, dp.sum))
            for n, lab, v in rows:
                if no_value:
                    acc.stale.append(len(acc.ts))
                acc.add(n, lab, ts, math.nan if no_value else v)
        res.points += len(points)
        return latest

    def _exp_histograms(
        self, name: str, points: Any, base: Labels, acc: _Acc, res: MetricsResult, now: int
    ) -> int:
        latest = 0
        for dp in points:
            try:
                labels = self._point_labels(base, dp.attributes)
            except _Rejected as e:
                self._reject(res, name, str(e))
                continue
            ts = dp.time_unix_nano // 1_000_000 or now
            latest = max(latest, ts)
            has_sum = dp.HasField("sum")
            if dp.flags & FLAG_NO_RECORDED_VALUE:
                for n in (name + "_count", name + "_sum"):
                    acc.stale.append(len(acc.ts))
                    acc.add(n, labels, ts, math.nan)
                continue
            acc.hists.append(
                ExpHistogramPoint(
                    series=SeriesKey(name, labels),
                    ts_ms=ts,
                    scale=dp.scale,
                    count=float(dp.count),
                    sum=dp.sum if has_sum else None,
                    zero_count=float(dp.zero_count),
                    zero_threshold=dp.zero_threshold,
                    positive_offset=dp.positive.offset,
                    positive_counts=tuple(float(c) for c in dp.positive.bucket_counts),
                    negative_offset=dp.negative.offset,
                    negative_counts=tuple(float(c) for c in dp.negative.bucket_counts),
                    min=dp.min if dp.HasField("min") else None,
                    max=dp.max if dp.HasField("max") else None,
                )
            )
            acc.add(name + "_count", labels, ts, float(dp.count))
            if has_sum:
                acc.add(name + "_sum", labels, ts, dp.sum)
        res.points += len(points)
        return latest

    def _summaries(
        self, name: str, points: Any, base: Labels, acc: _Acc, res: MetricsResult, now: int
    ) -> int:
        latest = 0
        for dp in points:
            try:
                labels = self._point_labels(base, dp.attributes)
            except _Rejected as e:
                self._reject(res, name, str(e))
                continue
            ts = dp.time_unix_nano // 1_000_000 or now
            latest = max(latest, ts)
            no_value = bool(dp.flags & FLAG_NO_RECORDED_VALUE)
            rows: list[tuple[str, Labels, float]] = [
                (name, tuple(sorted((*labels, ("quantile", _fmt_float(q.quantile))))), q.value)
                for q in dp.quantile_values
            ]
            rows += [(name + "_sum", labels, dp.sum), (name + "_count", labels, float(dp.count))]
            for n, lab, v in rows:
                if no_value:
                    acc.stale.append(len(acc.ts))
                acc.add(n, lab, ts, math.nan if no_value else v)
        res.points += len(points)
        return latest


def _count_points(m: Any) -> int:
    kind = m.WhichOneof("data")
    return len(getattr(m, kind).data_points) if kind else 1


# ---------------------------------------------------------------------- traces and logs
@dataclass(slots=True)
class SpansResult:
    spans: list[Span]
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class LogsResult:
    logs: list[LogRecord]
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


def _service(resource: Mapping[str, Any]) -> str:
    return str(resource.get("service.name") or "unknown_service")


def decode_traces(req: Any) -> SpansResult:
    """``ExportTraceServiceRequest`` → spans. Attributes keep their OTel names (``gen_ai.*`` intact)."""
    out = SpansResult([])
    for rs in req.resource_spans:
        resource = attributes(rs.resource.attributes)
        service = _service(resource)
        for ss in rs.scope_spans:
            scope = {"otel.scope.name": ss.scope.name, "otel.scope.version": ss.scope.version}
            for s in ss.spans:
                if len(s.trace_id) != 16 or len(s.span_id) != 8:
                    out.rejected += 1
                    if len(out.errors) < 5:
                        out.errors.append(
                            f"span {s.name!r}: trace_id must be 16 bytes and span_id 8 "
                            f"(got {len(s.trace_id)} and {len(s.span_id)})"
                        )
                    continue
                attrs = attributes(s.attributes)
                for k, v in scope.items():
                    if v:
                        attrs.setdefault(k, v)
                events = [
                    {"name": e.name, "ts_ns": e.time_unix_nano, "attributes": attributes(e.attributes)}
                    for e in s.events
                ]
                for link in s.links:
                    events.append(
                        {
                            "name": "link",
                            "trace_id": bytes(link.trace_id).hex(),
                            "span_id": bytes(link.span_id).hex(),
                            "attributes": attributes(link.attributes),
                        }
                    )
                out.spans.append(
                    Span(
                        trace_id=bytes(s.trace_id).hex(),
                        span_id=bytes(s.span_id).hex(),
                        parent_span_id=bytes(s.parent_span_id).hex(),
                        name=s.name,
                        kind=int(s.kind),
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        status_code=int(s.status.code),
                        status_message=s.status.message,
                        service=service,
                        attributes=attrs,
                        resource=resource,
                        events=events,
                    )
                )
    return out


def decode_logs(req: Any) -> LogsResult:
    """``ExportLogsServiceRequest`` → log records (non-string bodies as JSON text)."""
    out = LogsResult([])
    for rl in req.resource_logs:
        resource = attributes(rl.resource.attributes)
        service = _service(resource)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                body = any_value(r.body) if r.HasField("body") else None
                text = (
                    body if isinstance(body, str) else "" if body is None else json.dumps(body, default=str)
                )
                attrs = attributes(r.attributes)
                if r.event_name:
                    attrs.setdefault("event.name", r.event_name)
                out.logs.append(
                    LogRecord(
                        ts_ns=r.time_unix_nano or r.observed_time_unix_nano,
                        observed_ns=r.observed_time_unix_nano,
                        severity_number=int(r.severity_number),
                        severity_text=r.severity_text,
                        body=text,
                        trace_id=bytes(r.trace_id).hex(),
                        span_id=bytes(r.span_id).hex(),
                        service=service,
                        attributes=attrs,
                        resource=resource,
                    )
                )
    return out

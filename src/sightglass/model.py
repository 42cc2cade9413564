"""The data model: Prometheus and OpenTelemetry metric semantics on one model.

Every ingest path (Prometheus text, OTLP, remote-write, OpenLineage, the simulator) produces these
objects; the store persists them; everything above the store reads them back.

Metrics are columnar: a :class:`SampleBatch` holds a list of series (name + labels) and three
parallel arrays (series index, timestamp in milliseconds, value). That keeps the hot path out of
per-sample Python objects. A value of ``NaN`` is a real NaN sample; a *stale marker* (Prometheus'
special NaN, written when a series disappears from a scrape) is carried in ``stale`` and stored as
SQL NULL, so the two never mix.
"""

from __future__ import annotations

import enum
import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Prometheus' staleness marker: a signalling NaN with this exact bit pattern.
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

Labels = tuple[tuple[str, str], ...]
"""Labels of a series without ``__name__``, sorted by name: hashable and canonical."""


def is_stale_nan(value: float) -> bool:
    """True when ``value`` carries the exact bit pattern of Prometheus' stale marker."""
    return math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_NAN_BITS


class MetricType(enum.StrEnum):
    """The metric families both Prometheus and OTel know (OpenMetrics names)."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    GAUGE_HISTOGRAM = "gaugehistogram"
    SUMMARY = "summary"
    INFO = "info"
    STATESET = "stateset"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class MetricMetadata:
    """HELP/TYPE/UNIT of a metric family, as exposed by its source."""

    metric: str
    type: MetricType = MetricType.UNKNOWN
    help: str = ""
    unit: str = ""


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """A series identity: the metric name and its sorted labels (``__name__`` excluded)."""

    metric: str
    labels: Labels
    _hash: int = field(default=0, compare=False, repr=False)

    def __hash__(self) -> int:
        # series keys are dict keys on every ingest path: hash once, not per lookup
        h = self._hash
        if not h:
            h = hash((self.metric, self.labels)) or 1
            object.__setattr__(self, "_hash", h)
        return h

    @classmethod
    def of(cls, metric: str, labels: Mapping[str, str] | Iterable[tuple[str, str]]) -> SeriesKey:
        items = labels.items() if isinstance(labels, Mapping) else labels
        return cls(metric, tuple(sorted((k, v) for k, v in items if k != "__name__" and v != "")))

    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)

    def all_labels(self) -> dict[str, str]:
        """Labels including ``__name__``, as the Prometheus API returns them."""
        return {"__name__": self.metric, **dict(self.labels)}

    def text(self) -> str:
        """The series in exposition syntax: ``name{a="b",...}``."""
        if not self.labels:
            return self.metric
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in self.labels)
        return f"{self.metric}{{{inner}}}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass(slots=True)
class SampleBatch:
    """Columnar samples of many series: the unit of ingest and of one store write.

    ``series_index[i]`` points into ``series``; ``ts_ms[i]`` is Unix milliseconds; ``values[i]`` is
    float64. ``stale[i]`` marks a staleness marker (value then ignored). ``metadata`` carries the
    HELP/TYPE/UNIT the source gave.
    """

    series: list[SeriesKey] = field(default_factory=list)
    series_index: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    ts_ms: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    values: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    stale: np.ndarray | None = None
    metadata: dict[str, MetricMetadata] = field(default_factory=dict)
    exp_histograms: list[ExpHistogramPoint] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple[str, Mapping[str, str], int, float]],
        metadata: Mapping[str, MetricMetadata] | None = None,
    ) -> SampleBatch:
        """Build a batch from ``(metric, labels, ts_ms, value)`` rows (convenient, not fast)."""
        b = SampleBatchBuilder()
        for metric, labels, ts, value in rows:
            b.add(SeriesKey.of(metric, labels), ts, value)
        batch = b.build()
        if metadata:
            batch.metadata.update(metadata)
        return batch

    def rows(self) -> list[tuple[SeriesKey, int, float | None]]:
        """``(series, ts_ms, value)`` per sample, ``None`` for stale markers (tests, debugging)."""
        out: list[tuple[SeriesKey, int, float | None]] = []
        stale = self.stale if self.stale is not None else np.zeros(len(self), dtype=bool)
        for i in range(len(self)):
            v = None if stale[i] else float(self.values[i])
            out.append((self.series[int(self.series_index[i])], int(self.ts_ms[i]), v))
        return out

    def extend(self, other: SampleBatch) -> None:
        """Append ``other`` to this batch in place."""
        offset = len(self.series)
        self.series.extend(other.series)
        n_self = len(self)
        self.series_index = np.concatenate([self.series_index, other.series_index + offset])
        self.ts_ms = np.concatenate([self.ts_ms, other.ts_ms])
        self.values = np.concatenate([self.values, other.values])
        if self.stale is not None or other.stale is not None:
            a = self.stale if self.stale is not None else np.zeros(n_self, dtype=bool)
            b = other.stale if other.stale is not None else np.zeros(len(other), dtype=bool)
            self.stale = np.concatenate([a, b])
        self.metadata.update(other.metadata)
        self.exp_histograms.extend(other.exp_histograms)


class SampleBatchBuilder:
    """Accumulates samples row by row into a :class:`SampleBatch` (series deduplicated)."""

    __slots__ = ("_idx", "_index", "_series", "_stale", "_ts", "_vals", "metadata")

    def __init__(self) -> None:
        self._index: dict[SeriesKey, int] = {}
        self._series: list[SeriesKey] = []
        self._idx: list[int] = []
        self._ts: list[int] = []
        self._vals: list[float] = []
        self._stale: list[bool] = []
        self.metadata: dict[str, MetricMetadata] = {}

    def add(self, key: SeriesKey, ts_ms: int, value: float, *, stale: bool = False) -> None:
        i = self._index.get(key)
        if i is None:
            i = self._index[key] = len(self._series)
            self._series.append(key)
        self._idx.append(i)
        self._ts.append(ts_ms)
        self._vals.append(value)
        self._stale.append(stale)

    def __len__(self) -> int:
        return len(self._ts)

    def build(self) -> SampleBatch:
        stale = np.array(self._stale, dtype=bool)
        return SampleBatch(
            series=self._series,
            series_index=np.array(self._idx, dtype=np.int64),
            ts_ms=np.array(self._ts, dtype=np.int64),
            values=np.array(self._vals, dtype=np.float64),
            stale=stale if stale.any() else None,
            metadata=dict(self.metadata),
        )


@dataclass(frozen=True, slots=True)
class ExpHistogramPoint:
    """An OTel exponential histogram point (= a Prometheus native histogram), kept whole.

    Its ``_count`` and ``_sum`` also go into the batch as ordinary series so PromQL over them works;
    the buckets are kept here for exact quantiles.
    """

    series: SeriesKey
    ts_ms: int
    scale: int
    count: float
    sum: float | None
    zero_count: float
    zero_threshold: float
    positive_offset: int
    positive_counts: tuple[float, ...]
    negative_offset: int
    negative_counts: tuple[float, ...]
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened at an instant: an XID error, a deploy, a job start/stop, a config change.

    ``entity`` holds the labels that identify what it happened to (e.g. ``{"Hostname": "n12",
    "gpu": "3"}``); ``attributes`` the details. ``kind`` is a dotted name, e.g. ``gpu.xid``.
    """

    ts_ms: int
    kind: str
    entity: Mapping[str, str]
    attributes: Mapping[str, Any] = field(default_factory=dict)
    severity: str = "info"
    source: str = ""
    end_ts_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Entity:
    """A thing in the factory: a GPU, node, switch, pod, job, service, model, dataset, team."""

    id: str
    kind: str
    labels: Mapping[str, str]
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Relation:
    """A time-bounded edge between entities (``gpu-in-node``, ``job-uses-gpu``...)."""

    src: str
    kind: str
    dst: str
    start_ms: int
    end_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Span:
    """One OTLP span, flattened. Attributes keep OTel names (``gen_ai.usage.input_tokens``)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    service: str
    attributes: Mapping[str, Any]
    resource: Mapping[str, Any]
    events: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One OTLP log record, flattened."""

    ts_ns: int
    observed_ns: int
    severity_number: int
    severity_text: str
    body: str
    trace_id: str
    span_id: str
    service: str
    attributes: Mapping[str, Any]
    resource: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class LineageEvent:
    """An OpenLineage run event (START/RUNNING/COMPLETE/FAIL/ABORT) for the data-pipeline view."""

    ts_ms: int
    event_type: str
    job_namespace: str
    job_name: str
    run_id: str
    inputs: Sequence[str]
    outputs: Sequence[str]
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """The configuration of an entity at an instant (driver, VBIOS, engine settings...)."""

    ts_ms: int
    entity: Mapping[str, str]
    config: Mapping[str, Any]
    source: str = ""


class Matcher:
    """A label matcher: ``=``, ``!=``, ``=~``, ``!~`` with Prometheus semantics.

    Regexes are fully anchored (RE2 syntax, as Prometheus); a missing label matches as ``""``.
    """

    __slots__ = ("name", "op", "regex", "value")

    OPS = ("=", "!=", "=~", "!~")

    def __init__(self, name: str, op: str, value: str) -> None:
        if op not in self.OPS:
            raise ValueError(f"unknown matcher operator {op!r}")
        self.name, self.op, self.value = name, op, value
        self.regex: re.Pattern[str] | None = None
        if op in ("=~", "!~"):
            try:
                self.regex = re.compile(f"(?s:{value})\\Z")
            except re.error as e:
                raise ValueError(f"invalid regular expression {value!r} in matcher for {name}: {e}") from e

    def matches(self, v: str) -> bool:
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        assert self.regex is not None
        hit = self.regex.match(v) is not None
        return hit if self.op == "=~" else not hit

    def __repr__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Matcher) and (self.name, self.op, self.value) == (
            other.name,
            other.op,
            other.value,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.op, self.value))


@dataclass(slots=True)
class SeriesData:
    """Samples of one series read back from the store, ascending by time.

    ``values`` has NaN where a stale marker was stored; ``stale`` marks those positions.
    """

    key: SeriesKey
    ts_ms: np.ndarray
    values: np.ndarray
    stale: np.ndarray

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

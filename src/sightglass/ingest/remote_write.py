"""Prometheus remote-write: decode ``prometheus.WriteRequest`` (1.0) and ``io.prometheus.write.v2.Request``.

There is no official Python package with the ``prompb`` classes, so the message descriptors are
written here from the public specs (``remote_write_spec.md``, ``remote_write_spec_2_0.md``) and
turned into classes at runtime; parsing then runs in the C protobuf runtime (upb). A malformed body
is answered with the field and byte where it broke
(:func:`~sightglass.ingest.protowire.describe_decode_error`).

Mapping to the model:

- a float sample → one sample of the series; Prometheus' stale-NaN bit pattern → a stale marker;
- a native histogram → :class:`~sightglass.model.ExpHistogramPoint` (Prometheus bucket index ``i``
  covers ``(base^(i-1), base^i]``, OTel's ``(base^i, base^(i+1)]``, so the offset shifts by one), plus
  ``<name>_count`` and ``<name>_sum`` samples so PromQL over them works. Native histograms with custom
  buckets (schema -53) are not stored and are counted as rejected;
- exemplars are accepted and not stored (``X-Prometheus-Remote-Write-Exemplars-Written: 0``).

Validation (400 for the whole request, as Prometheus does): ``__name__`` present and a valid metric
name, label names valid and unique, values within ``max_label_value_bytes``, at most
``max_labels_per_series`` labels. Labels with empty values are dropped (Prometheus semantics).
Validated label sets are cached per decoder, so a sender's steady stream of the same series skips
validation, sorting and :class:`SeriesKey` construction.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from sightglass.ingest.learning import MAX_TEMPLATE_BYTES, LearnGate
from sightglass.ingest.limits import BadRequest, UnsupportedMediaType, snappy_block_compress
from sightglass.ingest.protowire import (
    BYTES,
    DOUBLE,
    INT64,
    MESSAGE,
    REPEATED,
    SINT32,
    SINT64,
    STRING,
    UINT32,
    UINT64,
    add_message,
    describe_decode_error,
)
from sightglass.ingest.varint import encode_varint
from sightglass.model import (
    LABEL_NAME_RE,
    METRIC_NAME_RE,
    STALE_NAN_BITS,
    ExpHistogramPoint,
    MetricMetadata,
    MetricType,
    SampleBatch,
    SeriesKey,
)

CONTENT_TYPE_V1 = "application/x-protobuf"
CONTENT_TYPE_V2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
NHCB_SCHEMA = -53  # native histograms with custom bucket boundaries
MAX_DENSE_BUCKETS = 16_384  # a span gap wider than this is an attack, not a histogram

_METRIC_TYPES = [
    MetricType.UNKNOWN,
    MetricType.COUNTER,
    MetricType.GAUGE,
    MetricType.HISTOGRAM,
    MetricType.GAUGE_HISTOGRAM,
    MetricType.SUMMARY,
    MetricType.INFO,
    MetricType.STATESET,
]
_TYPE_NUMBER = {t: i for i, t in enumerate(_METRIC_TYPES)}


def _histogram_fields(with_custom: bool) -> list[tuple[str, int, int, int | None, str | None, int | None]]:
    fields: list[tuple[str, int, int, int | None, str | None, int | None]] = [
        ("count_int", 1, UINT64, None, None, 0),
        ("count_float", 2, DOUBLE, None, None, 0),
        ("sum", 3, DOUBLE, None, None, None),
        ("schema", 4, SINT32, None, None, None),
        ("zero_threshold", 5, DOUBLE, None, None, None),
        ("zero_count_int", 6, UINT64, None, None, 1),
        ("zero_count_float", 7, DOUBLE, None, None, 1),
        ("negative_spans", 8, MESSAGE, REPEATED, "BucketSpan", None),
        ("negative_deltas", 9, SINT64, REPEATED, None, None),
        ("negative_counts", 10, DOUBLE, REPEATED, None, None),
        ("positive_spans", 11, MESSAGE, REPEATED, "BucketSpan", None),
        ("positive_deltas", 12, SINT64, REPEATED, None, None),
        ("positive_counts", 13, DOUBLE, REPEATED, None, None),
        ("reset_hint", 14, UINT32, None, None, None),  # an enum on the wire; read as its number
        ("timestamp", 15, INT64, None, None, None),
    ]
    if with_custom:
        fields.append(("custom_values", 16, DOUBLE, REPEATED, None, None))
    return fields


def _build_classes() -> dict[str, type[Message]]:
    pool = descriptor_pool.DescriptorPool()
    v1 = descriptor_pb2.FileDescriptorProto(
        name="sightglass/prompb.proto", package="prometheus", syntax="proto3"
    )
    add_message(v1, "Label", [("name", 1, STRING, None, None, None), ("value", 2, STRING, None, None, None)])
    add_message(
        v1, "Sample", [("value", 1, DOUBLE, None, None, None), ("timestamp", 2, INT64, None, None, None)]
    )
    add_message(
        v1,
        "Exemplar",
        [
            ("labels", 1, MESSAGE, REPEATED, ".prometheus.Label", None),
            ("value", 2, DOUBLE, None, None, None),
            ("timestamp", 3, INT64, None, None, None),
        ],
    )
    add_message(
        v1, "BucketSpan", [("offset", 1, SINT32, None, None, None), ("length", 2, UINT32, None, None, None)]
    )
    add_message(
        v1,
        "Histogram",
        [
            (n, no, t, lb, ".prometheus.BucketSpan" if tn else None, o)
            for n, no, t, lb, tn, o in _histogram_fields(True)
        ],
        oneofs=("count", "zero_count"),
    )
    add_message(
        v1,
        "TimeSeries",
        [
            ("labels", 1, MESSAGE, REPEATED, ".prometheus.Label", None),
            ("samples", 2, MESSAGE, REPEATED, ".prometheus.Sample", None),
            ("exemplars", 3, MESSAGE, REPEATED, ".prometheus.Exemplar", None),
            ("histograms", 4, MESSAGE, REPEATED, ".prometheus.Histogram", None),
        ],
    )
    add_message(
        v1,
        "MetricMetadata",
        [
            ("type", 1, UINT32, None, None, None),
            ("metric_family_name", 2, STRING, None, None, None),
            ("help", 4, STRING, None, None, None),
            ("unit", 5, STRING, None, None, None),
        ],
    )
    add_message(
        v1,
        "WriteRequest",
        [
            ("timeseries", 1, MESSAGE, REPEATED, ".prometheus.TimeSeries", None),
            ("metadata", 3, MESSAGE, REPEATED, ".prometheus.MetricMetadata", None),
        ],
    )
    # the same wire format with each TimeSeries left as its raw bytes (the fast path's first step)
    add_message(
        v1,
        "WriteRequestRaw",
        [
            ("timeseries", 1, BYTES, REPEATED, None, None),
            ("metadata", 3, MESSAGE, REPEATED, ".prometheus.MetricMetadata", None),
        ],
    )
    pool.Add(v1)

    v2 = descriptor_pb2.FileDescriptorProto(
        name="sightglass/prompb_v2.proto", package="io.prometheus.write.v2", syntax="proto3"
    )
    p = ".io.prometheus.write.v2."
    add_message(
        v2,
        "Sample",
        [
            ("value", 1, DOUBLE, None, None, None),
            ("timestamp", 2, INT64, None, None, None),
            ("start_timestamp", 3, INT64, None, None, None),
        ],
    )
    add_message(
        v2,
        "Exemplar",
        [
            ("labels_refs", 1, UINT32, REPEATED, None, None),
            ("value", 2, DOUBLE, None, None, None),
            ("timestamp", 3, INT64, None, None, None),
        ],
    )
    add_message(
        v2, "BucketSpan", [("offset", 1, SINT32, None, None, None), ("length", 2, UINT32, None, None, None)]
    )
    add_message(
        v2,
        "Histogram",
        [
            (n, no, t, lb, p + "BucketSpan" if tn else None, o)
            for n, no, t, lb, tn, o in _histogram_fields(True)
        ],
        oneofs=("count", "zero_count"),
    )
    add_message(
        v2,
        "Metadata",
        [
            ("type", 1, UINT32, None, None, None),
            ("help_ref", 3, UINT32, None, None, None),
            ("unit_ref", 4, UINT32, None, None, None),
        ],
    )
    add_message(
        v2,
        "TimeSeries",
        [
            ("labels_refs", 1, UINT32, REPEATED, None, None),
            ("samples", 2, MESSAGE, REPEATED, p + "Sample", None),
            ("histograms", 3, MESSAGE, REPEATED, p + "Histogram", None),
            ("exemplars", 4, MESSAGE, REPEATED, p + "Exemplar", None),
            ("metadata", 5, MESSAGE, None, p + "Metadata", None),
            ("created_timestamp", 6, INT64, None, None, None),
        ],
    )
    add_message(
        v2,
        "Request",
        [
            ("symbols", 4, STRING, REPEATED, None, None),
            ("timeseries", 5, MESSAGE, REPEATED, p + "TimeSeries", None),
        ],
    )
    pool.Add(v2)
    names = {
        "WriteRequest": "prometheus.WriteRequest",
        "WriteRequestRaw": "prometheus.WriteRequestRaw",
        "TimeSeries": "prometheus.TimeSeries",
        "Sample": "prometheus.Sample",
        "V2Request": "io.prometheus.write.v2.Request",
    }
    return {k: message_factory.GetMessageClass(pool.FindMessageTypeByName(v)) for k, v in names.items()}


_CLASSES = _build_classes()
WriteRequest = _CLASSES["WriteRequest"]
"""``prometheus.WriteRequest`` (remote-write 1.0), a protobuf message class built at import."""
V2Request = _CLASSES["V2Request"]
"""``io.prometheus.write.v2.Request`` (remote-write 2.0)."""
_WriteRequestRaw = _CLASSES["WriteRequestRaw"]
_TimeSeries = _CLASSES["TimeSeries"]
_Sample = _CLASSES["Sample"]

# A TimeSeries with one float sample ends in its ``samples`` field: tag 0x12, a one-byte length, then
# the Sample. With a millisecond timestamp of this century (a 6-byte varint) that Sample is 16 bytes
# ("0x09 <8-byte double> 0x10 <varint>"), or 7 when the value is 0.0 (proto3 leaves it out).
_SAMPLE_TAG = 0x12
_STEADY_SAMPLE_SIZES = (16, 7)
_MAX_SAMPLE_SIZE = 1 + 8 + 1 + 10
_LABELS_BEFORE = {16: slice(None, -18), 7: slice(None, -9)}  # a TimeSeries' bytes before its Sample field


class _Fallback(Exception):
    """The fast path met something it does not handle; the full decoder takes the request."""


def negotiate_version(content_type: str | None) -> int:
    """1 or 2 from the request's ``Content-Type``; 415 for anything else (spec: content negotiation)."""
    if not content_type:
        return 1
    parts = [p.strip() for p in content_type.split(";")]
    media = parts[0].lower()
    if media != CONTENT_TYPE_V1:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {content_type!r} for remote-write (expected {CONTENT_TYPE_V1} "
            f"or {CONTENT_TYPE_V2})"
        )
    proto = ""
    for p in parts[1:]:
        k, _, v = p.partition("=")
        if k.strip().lower() == "proto":
            proto = v.strip().strip('"')
    if proto in ("", "prometheus.WriteRequest"):
        return 1
    if proto == "io.prometheus.write.v2.Request":
        return 2
    raise UnsupportedMediaType(
        f"unsupported remote-write message {proto!r} (expected prometheus.WriteRequest "
        "or io.prometheus.write.v2.Request)"
    )


@dataclass(slots=True)
class RemoteWriteResult:
    """A decoded request: the batch to store and what the response headers report."""

    batch: SampleBatch
    samples: int = 0
    histograms: int = 0
    exemplars: int = 0
    rejected_histograms: int = 0
    warnings: list[str] = field(default_factory=list)


class RemoteWriteDecoder:
    """Decodes remote-write bodies (already decompressed) into :class:`SampleBatch` objects.

    Keep one per server: it caches validated label sets (bounded by ``cache_size``).
    """

    def __init__(
        self,
        *,
        max_label_value_bytes: int = 16 * 1024,
        max_labels_per_series: int = 64,
        cache_size: int = 500_000,
    ) -> None:
        self.max_label_value_bytes = max_label_value_bytes
        self.max_labels_per_series = max_labels_per_series
        self.cache_size = cache_size
        self._cache: dict[tuple[tuple[str, str], ...], SeriesKey] = {}
        # fast path (1.0): the raw bytes of a TimeSeries' labels -> series number; keys by number
        self._prefix: dict[bytes, int] = {}
        self._keys: list[SeriesKey] = []
        self._number_of: dict[SeriesKey, int] = {}
        # learned bodies by length: (bytes with their Samples zeroed, the Samples' positions, series numbers)
        self._templates: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        self._template_bytes = 0
        self._gate = LearnGate()

    # ------------------------------------------------------------------ public
    def decode(self, data: bytes, version: int = 1) -> RemoteWriteResult:
        """Decode a protobuf body of the given remote-write ``version`` (1 or 2)."""
        if version == 1:
            try:
                return self._decode_v1_fast(data)
            except _Fallback:
                pass
            except (BadRequest, DecodeError, RuntimeError, ValueError, IndexError):
                pass  # the full decoder below finds the fault and words the error
        cls = WriteRequest if version == 1 else V2Request
        req = cls()
        try:
            req.ParseFromString(data)
        except (DecodeError, RuntimeError, ValueError) as e:
            detail = describe_decode_error(data, cls.DESCRIPTOR)
            raise BadRequest(
                f"invalid remote-write {version}.0 protobuf: {detail} ({e})", reason="decode"
            ) from None
        return self._decode_v1(req) if version == 1 else self._decode_v2(req)

    # ------------------------------------------------------------------ v1, fast
    def _decode_v1_fast(self, data: bytes) -> RemoteWriteResult:
        """Decode a 1.0 body of float samples without building a message object per label.

        The body is split into its TimeSeries as raw bytes (in C). A series whose bytes are "known
        label bytes + one Sample field" is resolved by one dict lookup on those label bytes, and its
        Sample is decoded with numpy together with the others of its size. The label bytes were
        cached only after the full parser read exactly those bytes as that series' labels and
        nothing else, so a hit decodes the same as the full parser. Anything else (a new series,
        several samples, histograms, exemplars) goes through the full TimeSeries parser, series by
        series; a fault anywhere raises and the caller re-runs the whole body through
        :meth:`_decode_v1`, which words the error exactly as before.
        """
        if len(self._keys) >= self.cache_size:
            self._prefix.clear()
            self._keys.clear()
            self._number_of.clear()
            self._templates.clear()
            self._template_bytes = 0
        same = self._from_template(data)
        if same is not None:
            return self._result(None, *same)
        req: Any = _WriteRequestRaw()
        req.ParseFromString(data)
        tsbs = list(req.timeseries)
        steady = self._steady(tsbs)
        if steady is not None:
            numbers_arr, ts, values = steady
            if len(data) >= 4096:
                self._learn_template(data, tsbs, numbers_arr)
            return self._result(req, numbers_arr, ts, values)
        prefix_get = self._prefix.get
        numbers: list[int] = []  # series number per sample, steady samples first
        by_size: dict[int, list[bytes]] = {k: [] for k in _STEADY_SAMPLE_SIZES}
        by_size_pos: dict[int, list[int]] = {k: [] for k in _STEADY_SAMPLE_SIZES}
        other_pos: list[int] = []
        other_ts: list[int] = []
        other_vals: list[float] = []
        k0, k1 = _STEADY_SAMPLE_SIZES
        p0, p1 = by_size[k0], by_size[k1]
        q0, q1 = by_size_pos[k0], by_size_pos[k1]
        for tsb in tsbs:
            n = len(tsb)
            c = n - k0 - 2
            if c >= 0 and tsb[c] == _SAMPLE_TAG and tsb[c + 1] == k0:
                num = prefix_get(tsb[:c])
                if num is not None:
                    q0.append(len(numbers))
                    numbers.append(num)
                    p0.append(tsb[c + 2 :])
                    continue
            c = n - k1 - 2
            if c >= 0 and tsb[c] == _SAMPLE_TAG and tsb[c + 1] == k1:
                num = prefix_get(tsb[:c])
                if num is not None:
                    q1.append(len(numbers))
                    numbers.append(num)
                    p1.append(tsb[c + 2 :])
                    continue
            self._series_slow(tsb, numbers, other_pos, other_ts, other_vals)
        total = len(numbers)
        ts = np.empty(total, dtype=np.int64)
        values = np.empty(total, dtype=np.float64)
        for k in _STEADY_SAMPLE_SIZES:
            if by_size_pos[k]:
                pos = np.asarray(by_size_pos[k], dtype=np.int64)
                ts[pos], values[pos] = _decode_samples(by_size[k], k)
        if other_pos:
            pos = np.asarray(other_pos, dtype=np.int64)
            ts[pos] = np.asarray(other_ts, dtype=np.int64)
            values[pos] = np.asarray(other_vals, dtype=np.float64)
        return self._result(req, np.asarray(numbers, dtype=np.int64), ts, values)

    def _steady(self, tsbs: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Series numbers, times and values when every TimeSeries is "known label bytes + one Sample".

        The same test as the per-series loop of :meth:`_decode_v1_fast`, for the whole request at
        once: the label bytes before a 16-byte Sample field (7 bytes for a 0.0 value, which proto3
        leaves out) are looked up by C-level ``map``, the field's tag and length bytes are checked
        by numpy, and the Samples are read from a sliding view of the joined series. ``None`` when
        any series is something else; the loop then takes the request.
        """
        n = len(tsbs)
        if not n:
            return None
        get = self._prefix.get
        nums = list(map(get, map(operator.getitem, tsbs, repeat(_LABELS_BEFORE[16]))))  # type: ignore[arg-type]
        lens = np.fromiter(map(len, tsbs), dtype=np.int64, count=n)
        blob = np.frombuffer(b"".join(tsbs), dtype=np.uint8)
        if len(blob) < 18:
            return None
        ends = np.cumsum(lens)
        last = len(blob) - 1

        def layout(size: int) -> np.ndarray:
            at = np.clip(ends - size - 2, 0, last - 1)
            return (lens >= size + 2) & (blob[at] == _SAMPLE_TAG) & (blob[at + 1] == size)

        known = np.fromiter(map(operator.is_not, nums, repeat(None)), dtype=bool, count=n)
        big = known & layout(16)
        small = None
        if not big.all():
            # the rest may be 0.0 values (7-byte Samples): look those series up again at that size
            rest = np.flatnonzero(~big)
            if len(blob) < 9:
                return None
            small_nums = [get(tsbs[i][:-9]) for i in rest.tolist()]
            if None in small_nums:
                return None
            small = np.zeros(n, dtype=bool)
            small[rest] = True
            if not (small & layout(7))[rest].all():
                return None
            for i, num in zip(rest.tolist(), small_nums, strict=True):
                nums[i] = num
        numbers = np.asarray(nums, dtype=np.int64)
        ts = np.empty(n, dtype=np.int64)
        values = np.empty(n, dtype=np.float64)
        for size, mask in ((16, big), (7, small)):
            if mask is None or not mask.any():
                continue
            window = np.lib.stride_tricks.as_strided(blob, shape=(len(blob) - size + 1, size), strides=(1, 1))
            rows = window[ends[mask] - size]
            ts[mask], values[mask] = _decode_sample_rows(rows, size)
        return numbers, ts, values

    def _from_template(self, data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(numbers, times, values) of a body equal to a learned one outside its Samples' payloads.

        A sender repeating its series in the same order sends bodies that differ only in each
        Sample's 8-byte value and the 6 bytes of its timestamp varint. The value may be any bits;
        the varint's bytes are checked to keep their continuation bits (so it still ends where the
        learned one did), which ``_decode_sample_rows`` does for the canonical layout: then the body
        parses as the learned one did, with these samples. Anything else: ``None``.
        """
        for tpl in self._templates.get(len(data), ()):
            fixed, rows_at, numbers = tpl
            arr = np.frombuffer(data, dtype=np.uint8)
            diff = arr != fixed
            diff[rows_at] = False  # the Samples (their tag bytes are checked below)
            if diff.any():
                continue
            self._gate.hit()
            rows = arr[rows_at]
            ok = (rows[:, 0] == 0x09) & (rows[:, 9] == 0x10)
            ok &= np.all(rows[:, 10:15] >= 0x80, axis=1) & (rows[:, 15] < 0x80)
            if not ok.all():
                return None
            ts, values = _decode_sample_rows(rows, 16)
            return numbers, ts, values
        return None

    def _learn_template(self, data: bytes, tsbs: list[bytes], numbers: np.ndarray) -> None:
        """Remember where this body's Samples are (see :meth:`_from_template`), if it is only series
        each ending in a 16-byte Sample (checked by rebuilding the body from them)."""
        if len(self._templates.get(len(data), ())) >= 4 or not self._gate.should():
            return
        self._gate.learned_one()  # an attempt, whether it succeeds or not
        lens = np.fromiter(map(len, tsbs), dtype=np.int64, count=len(tsbs))
        head = 2 + sum((lens >= 1 << (7 * k)).astype(np.int64) for k in range(1, 5))  # tag + length varint
        ends = np.cumsum(lens + head)
        if len(lens) == 0 or int(ends[-1]) != len(data) or int(lens.min()) < 18:
            return  # other fields (metadata), or series too short to end in a 16-byte Sample
        arr = np.frombuffer(data, dtype=np.uint8)
        if not ((arr[ends - 18] == _SAMPLE_TAG) & (arr[ends - 17] == 16) & (arr[ends - 16] == 0x09)).all():
            return
        if b"".join([b"\x0a" + encode_varint(len(t)) + t for t in tsbs]) != data:
            return  # not what the parser saw
        rows_at = ((ends - 16)[:, None] + np.arange(16)).astype(np.int32 if len(data) < 2**31 else np.int64)
        fixed = arr.copy()
        fixed[rows_at] = 0
        size = fixed.nbytes + rows_at.nbytes + numbers.nbytes
        if self._template_bytes + size > MAX_TEMPLATE_BYTES:
            self._templates.clear()
            self._template_bytes = 0
        self._templates.setdefault(len(data), []).append((fixed, rows_at, numbers.copy()))
        self._template_bytes += size

    def _result(self, req: Any, numbers: np.ndarray, ts: np.ndarray, values: np.ndarray) -> RemoteWriteResult:
        total = len(numbers)
        metadata: dict[str, MetricMetadata] = {}
        for md in req.metadata if req is not None else ():
            t = _METRIC_TYPES[md.type] if md.type < len(_METRIC_TYPES) else MetricType.UNKNOWN
            if md.metric_family_name:
                metadata[md.metric_family_name] = MetricMetadata(md.metric_family_name, t, md.help, md.unit)
        keys = self._keys
        if total:
            uniq, inverse = np.unique(numbers, return_inverse=True)
            series = [keys[i] for i in uniq.tolist()]
        else:
            inverse, series = np.empty(0, dtype=np.int64), []
        stale_mask = values.view(np.uint64) == np.uint64(STALE_NAN_BITS)
        batch = SampleBatch(
            series=series,
            series_index=inverse.astype(np.int64, copy=False),
            ts_ms=ts,
            values=values,
            stale=stale_mask if stale_mask.any() else None,
            metadata=metadata,
        )
        return RemoteWriteResult(batch, samples=total)

    def _series_slow(
        self, tsb: bytes, numbers: list[int], pos: list[int], tss: list[int], vals: list[float]
    ) -> None:
        """One TimeSeries through the full parser (validated); caches its label bytes when it can."""
        ts: Any = _TimeSeries()
        ts.ParseFromString(tsb)
        if ts.histograms or ts.exemplars:
            raise _Fallback
        raw = tuple([(lb.name, lb.value) for lb in ts.labels])
        key = self._cache.get(raw)
        if key is None:
            key = self._key(raw)  # raises BadRequest for an invalid series
        samples = ts.samples
        if not samples:
            return
        num = self._number_of.get(key)
        if num is None:
            num = self._number_of[key] = len(self._keys)
            self._keys.append(key)
        for s in samples:
            pos.append(len(numbers))
            numbers.append(num)
            tss.append(s.timestamp)
            vals.append(s.value)
        if len(samples) == 1:
            self._learn_prefix(tsb, ts, num)

    def _learn_prefix(self, tsb: bytes, ts: Any, num: int) -> None:
        """Cache the label bytes of ``tsb`` if it is exactly "labels, then one Sample field"."""
        n = len(tsb)
        for k in range(min(_MAX_SAMPLE_SIZE, n - 2), -1, -1):
            c = n - k - 2
            if tsb[c] != _SAMPLE_TAG or tsb[c + 1] != k:
                continue
            head: Any = _TimeSeries()
            try:
                head.ParseFromString(tsb[:c])
            except (DecodeError, RuntimeError, ValueError):
                continue
            if head.samples or head.histograms or head.exemplars or list(head.labels) != list(ts.labels):
                continue
            self._prefix[tsb[:c]] = num
            return

    # ------------------------------------------------------------------ v1
    def _decode_v1(self, req: Any) -> RemoteWriteResult:
        acc = _Accumulator()
        cache = self._cache
        for ts in req.timeseries:
            raw = tuple([(lb.name, lb.value) for lb in ts.labels])
            key = cache.get(raw)
            if key is None:
                key = self._key(raw)
            acc.add_samples(key, ts.samples)
            if ts.histograms:
                acc.add_histograms(key, ts.histograms)
            acc.exemplars += len(ts.exemplars)
        for md in req.metadata:
            t = _METRIC_TYPES[md.type] if md.type < len(_METRIC_TYPES) else MetricType.UNKNOWN
            if md.metric_family_name:
                acc.metadata[md.metric_family_name] = MetricMetadata(
                    md.metric_family_name, t, md.help, md.unit
                )
        return acc.result()

    # ------------------------------------------------------------------ v2
    def _decode_v2(self, req: Any) -> RemoteWriteResult:
        acc = _Accumulator()
        symbols = list(req.symbols)
        nsym = len(symbols)
        if nsym and symbols[0] != "":
            raise BadRequest("remote-write 2.0: symbols[0] must be the empty string", reason="decode")
        cache = self._cache
        for n, ts in enumerate(req.timeseries):
            refs = ts.labels_refs
            if len(refs) % 2:
                raise BadRequest(
                    f"remote-write 2.0: timeseries[{n}] has an odd number of labels_refs", reason="decode"
                )
            try:
                raw = tuple([(symbols[refs[i]], symbols[refs[i + 1]]) for i in range(0, len(refs), 2)])
            except IndexError:
                raise BadRequest(
                    f"remote-write 2.0: timeseries[{n}] references a symbol past the table ({nsym} symbols)",
                    reason="decode",
                ) from None
            key = cache.get(raw)
            if key is None:
                key = self._key(raw)
            acc.add_samples(key, ts.samples)
            if ts.histograms:
                acc.add_histograms(key, ts.histograms)
            acc.exemplars += len(ts.exemplars)
            if ts.HasField("metadata"):
                md = ts.metadata
                if md.help_ref >= nsym or md.unit_ref >= nsym:
                    raise BadRequest(
                        f"remote-write 2.0: timeseries[{n}] metadata references a missing symbol",
                        reason="decode",
                    )
                if md.type or md.help_ref or md.unit_ref:
                    t = _METRIC_TYPES[md.type] if md.type < len(_METRIC_TYPES) else MetricType.UNKNOWN
                    acc.metadata[key.metric] = MetricMetadata(
                        key.metric, t, symbols[md.help_ref], symbols[md.unit_ref]
                    )
        return acc.result()

    # ------------------------------------------------------------------ validation
    def _key(self, raw: tuple[tuple[str, str], ...]) -> SeriesKey:
        """Validate a label set and make its key (cached)."""
        metric = ""
        seen: set[str] = set()
        labels: list[tuple[str, str]] = []
        if len(raw) > self.max_labels_per_series + 1:
            raise BadRequest(
                f"series {_show(raw)} has {len(raw) - 1} labels, over the limit of "
                f"{self.max_labels_per_series} (limits.max_labels_per_series)",
                reason="too_many_labels",
            )
        for name, value in raw:
            if name in seen:
                raise BadRequest(
                    f"series {_show(raw)} has duplicate label name {name!r}", reason="invalid_labels"
                )
            seen.add(name)
            if name == "__name__":
                metric = value
                continue
            if not LABEL_NAME_RE.match(name):
                raise BadRequest(
                    f"invalid label name {name!r} in series {_show(raw)}", reason="invalid_labels"
                )
            if len(value.encode()) > self.max_label_value_bytes:
                raise BadRequest(
                    f"label {name!r} of series {_show(raw)} has a value of {len(value.encode())} bytes, "
                    f"over the limit of {self.max_label_value_bytes} (limits.max_label_value_bytes)",
                    reason="label_value_too_long",
                )
            if value:
                labels.append((name, value))
        if not metric:
            raise BadRequest(f"series {_show(raw)} has no __name__ label", reason="invalid_metric_name")
        if not METRIC_NAME_RE.match(metric):
            raise BadRequest(f"invalid metric name {metric!r}", reason="invalid_metric_name")
        labels.sort()
        key = SeriesKey(metric, tuple(labels))
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[raw] = key
        return key


def _decode_samples(payloads: list[bytes], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, values) of Sample messages of ``size`` bytes each, decoded together by numpy."""
    return _decode_sample_rows(np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(-1, size), size)


def _decode_sample_rows(m: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, values) of the Sample messages in the rows of ``m`` (``size`` bytes each).

    The common layouts ("0x09 <double> 0x10 <6-byte varint>" for 16 bytes, "0x10 <6-byte varint>"
    for 7) are read column-wise; a row of another layout goes through the protobuf parser.
    """
    if size == 16:
        ok = (m[:, 0] == 0x09) & (m[:, 9] == 0x10)
        varint = m[:, 10:16]
        values = m[:, 1:9].copy().view("<f8").reshape(-1)
    else:
        ok = m[:, 0] == 0x10
        varint = m[:, 1:7]
        values = np.zeros(len(m), dtype=np.float64)
    ok &= np.all(varint[:, :5] >= 0x80, axis=1) & (varint[:, 5] < 0x80)
    seven = (varint & 0x7F).astype(np.int64)
    ts = np.zeros(len(m), dtype=np.int64)
    for j in range(6):
        ts |= seven[:, j] << (7 * j)
    if not ok.all():
        for i in np.flatnonzero(~ok).tolist():
            s: Any = _Sample()
            s.ParseFromString(m[i].tobytes())
            ts[i], values[i] = s.timestamp, s.value
    return ts, values


def _show(raw: Sequence[tuple[str, str]]) -> str:
    text = "{" + ", ".join(f"{k}={v[:40]!r}" for k, v in raw[:8]) + (", ..." if len(raw) > 8 else "") + "}"
    return text


class _Accumulator:
    """Columns of one request's samples plus its histograms."""

    __slots__ = ("exemplars", "hists", "idx", "index", "metadata", "rejected_hists", "series", "ts", "vals")

    def __init__(self) -> None:
        self.series: list[SeriesKey] = []
        self.index: dict[SeriesKey, int] = {}
        self.idx: list[int] = []
        self.ts: list[int] = []
        self.vals: list[float] = []
        self.hists: list[ExpHistogramPoint] = []
        self.metadata: dict[str, MetricMetadata] = {}
        self.exemplars = 0
        self.rejected_hists = 0

    def _sid(self, key: SeriesKey) -> int:
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.series)
            self.series.append(key)
        return i

    def add_samples(self, key: SeriesKey, samples: Any) -> None:
        n = len(samples)
        if not n:
            return
        i = self._sid(key)
        if n == 1:
            s = samples[0]
            self.idx.append(i)
            self.ts.append(s.timestamp)
            self.vals.append(s.value)
            return
        self.idx.extend([i] * n)
        self.ts.extend([s.timestamp for s in samples])
        self.vals.extend([s.value for s in samples])

    def add_histograms(self, key: SeriesKey, hists: Any) -> None:
        count_key = SeriesKey(key.metric + "_count", key.labels)
        sum_key = SeriesKey(key.metric + "_sum", key.labels)
        for h in hists:
            if h.schema == NHCB_SCHEMA:
                self.rejected_hists += 1
                continue
            point = _to_exp_point(key, h)
            self.hists.append(point)
            ci, si = self._sid(count_key), self._sid(sum_key)
            self.idx += [ci, si]
            self.ts += [point.ts_ms, point.ts_ms]
            self.vals += [point.count, point.sum if point.sum is not None else math.nan]

    def result(self) -> RemoteWriteResult:
        values = np.array(self.vals, dtype=np.float64)
        stale_mask = values.view(np.uint64) == np.uint64(STALE_NAN_BITS)
        batch = SampleBatch(
            series=self.series,
            series_index=np.array(self.idx, dtype=np.int64),
            ts_ms=np.array(self.ts, dtype=np.int64),
            values=values,
            stale=stale_mask if stale_mask.any() else None,
            metadata=self.metadata,
            exp_histograms=self.hists,
        )
        res = RemoteWriteResult(
            batch,
            samples=len(batch) - 2 * len(self.hists),
            histograms=len(self.hists),
            exemplars=self.exemplars,
            rejected_histograms=self.rejected_hists,
        )
        if self.rejected_hists:
            res.warnings.append(
                f"{self.rejected_hists} native histograms with custom buckets were not stored"
            )
        return res


def _dense(spans: Any, deltas: Any, counts: Any, what: str) -> tuple[int, tuple[float, ...]]:
    """Prometheus spans + delta-encoded (or float) counts → (OTel offset, dense counts)."""
    if not spans:
        if len(deltas) or len(counts):
            raise BadRequest(f"native histogram has {what} bucket counts but no spans", reason="decode")
        return 0, ()
    if len(counts):
        values = list(counts)
    else:
        values, acc = [], 0
        for d in deltas:
            acc += d
            values.append(float(acc))
    out: list[float] = []
    first = spans[0].offset
    pos = 0
    for n, sp in enumerate(spans):
        if n and sp.offset < 0:
            raise BadRequest(f"native histogram {what} span {n} has a negative offset", reason="decode")
        if n and sp.offset:
            out.extend([0.0] * sp.offset)
        out.extend(values[pos : pos + sp.length])
        pos += sp.length
        if len(out) > MAX_DENSE_BUCKETS:
            raise BadRequest(f"native histogram spans more than {MAX_DENSE_BUCKETS} buckets", reason="decode")
    if pos != len(values):
        raise BadRequest(
            f"native histogram {what} spans cover {pos} buckets but {len(values)} counts were sent",
            reason="decode",
        )
    return first - 1, tuple(out)


def _to_exp_point(key: SeriesKey, h: Any) -> ExpHistogramPoint:
    count = float(h.count_float) if h.WhichOneof("count") == "count_float" else float(h.count_int)
    zero = (
        float(h.zero_count_float)
        if h.WhichOneof("zero_count") == "zero_count_float"
        else float(h.zero_count_int)
    )
    pos_off, pos_counts = _dense(h.positive_spans, h.positive_deltas, h.positive_counts, "positive")
    neg_off, neg_counts = _dense(h.negative_spans, h.negative_deltas, h.negative_counts, "negative")
    return ExpHistogramPoint(
        series=key,
        ts_ms=h.timestamp,
        scale=h.schema,
        count=count,
        sum=h.sum,
        zero_count=zero,
        zero_threshold=h.zero_threshold,
        positive_offset=pos_off,
        positive_counts=pos_counts,
        negative_offset=neg_off,
        negative_counts=neg_counts,
    )


# ---------------------------------------------------------------------- encoder (tests, benchmarks)
def encode_write_request(
    series: Iterable[tuple[Mapping[str, str], Sequence[tuple[int, float]]]],
    *,
    histograms: Sequence[ExpHistogramPoint] = (),
    metadata: Sequence[MetricMetadata] = (),
) -> bytes:
    """Encode a remote-write 1.0 ``WriteRequest`` (uncompressed protobuf).

    ``series`` yields ``(labels including __name__, [(ts_ms, value), ...])``.
    """
    req: Any = WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for k in sorted(labels):
            ts.labels.add(name=k, value=labels[k])
        for t, v in samples:
            ts.samples.add(value=v, timestamp=t)
    for h in histograms:
        ts = req.timeseries.add()
        for name, value in sorted(h.series.all_labels().items()):
            ts.labels.add(name=name, value=value)
        _fill_histogram(ts.histograms.add(), h)
    for md in metadata:
        req.metadata.add(
            type=_TYPE_NUMBER.get(md.type, 0), metric_family_name=md.metric, help=md.help, unit=md.unit
        )
    return bytes(req.SerializeToString())


def encode_batch(batch: SampleBatch) -> bytes:
    """Encode a :class:`SampleBatch` (samples, stale markers, histograms, metadata) as a 1.0 request."""
    order = np.argsort(batch.series_index, kind="stable")
    sidx = batch.series_index[order]
    ts = batch.ts_ms[order]
    vals = batch.values[order].copy()
    if batch.stale is not None:
        vals[batch.stale[order]] = np.frombuffer(np.uint64(STALE_NAN_BITS).tobytes(), dtype=np.float64)[0]
    bounds = np.flatnonzero(np.diff(sidx)) + 1
    starts = np.concatenate([[0], bounds]).astype(np.int64) if len(sidx) else np.empty(0, np.int64)
    ends = np.concatenate([bounds, [len(sidx)]]).astype(np.int64) if len(sidx) else np.empty(0, np.int64)
    groups = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        key = batch.series[int(sidx[a])]
        groups.append((key.all_labels(), list(zip(ts[a:b].tolist(), vals[a:b].tolist(), strict=True))))
    return encode_write_request(
        groups, histograms=batch.exp_histograms, metadata=list(batch.metadata.values())
    )


def encode_v2_request(
    series: Iterable[tuple[Mapping[str, str], Sequence[tuple[int, float]]]],
    metadata: Mapping[str, MetricMetadata] | None = None,
) -> bytes:
    """Encode a remote-write 2.0 ``Request`` with its symbols table (uncompressed protobuf)."""
    req: Any = V2Request()
    symbols: dict[str, int] = {"": 0}

    def ref(s: str) -> int:
        i = symbols.get(s)
        if i is None:
            i = symbols[s] = len(symbols)
        return i

    for labels, samples in series:
        ts = req.timeseries.add()
        for k in sorted(labels):
            ts.labels_refs.extend([ref(k), ref(labels[k])])
        for t, v in samples:
            ts.samples.add(value=v, timestamp=t)
        md = (metadata or {}).get(labels.get("__name__", ""))
        if md is not None:
            ts.metadata.type = _TYPE_NUMBER.get(md.type, 0)
            ts.metadata.help_ref = ref(md.help)
            ts.metadata.unit_ref = ref(md.unit)
    req.symbols.extend(list(symbols))
    return bytes(req.SerializeToString())


def _fill_histogram(msg: Any, h: ExpHistogramPoint) -> None:
    msg.count_float = h.count
    msg.sum = h.sum if h.sum is not None else 0.0
    msg.schema = h.scale
    msg.zero_threshold = h.zero_threshold
    msg.zero_count_float = h.zero_count
    msg.timestamp = h.ts_ms
    if h.positive_counts:
        msg.positive_spans.add(offset=h.positive_offset + 1, length=len(h.positive_counts))
        msg.positive_counts.extend(h.positive_counts)
    if h.negative_counts:
        msg.negative_spans.add(offset=h.negative_offset + 1, length=len(h.negative_counts))
        msg.negative_counts.extend(h.negative_counts)


def compress(body: bytes) -> bytes:
    """Snappy-block-compress a protobuf body, as remote-write senders do."""
    return snappy_block_compress(body)

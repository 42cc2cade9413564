"""Remote-write 1.0 encoding for the agent, by hand: no protobuf runtime on the node.

A ``prometheus.WriteRequest`` is three small messages (``TimeSeries{labels=1, samples=2}``,
``Label{name=1, value=2}``, ``Sample{value=1 double, timestamp=2 int64}``) plus ``metadata=3``
(``MetricMetadata{type=1, metric_family_name=2, help=4, unit=5}``); writing them directly keeps
the agent's memory and CPU small (bench/agent.py). Labels are sorted by name, ``__name__``
included, as the spec requires. The body is then snappy block-compressed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

import cramjam

from sightglass.ingest.varint import encode_varint
from sightglass.model import MetricMetadata, MetricType, SeriesKey

_TYPES = {
    MetricType.UNKNOWN: 0,
    MetricType.COUNTER: 1,
    MetricType.GAUGE: 2,
    MetricType.HISTOGRAM: 3,
    MetricType.GAUGE_HISTOGRAM: 4,
    MetricType.SUMMARY: 5,
    MetricType.INFO: 6,
    MetricType.STATESET: 7,
}
_DOUBLE = struct.Struct("<d")


def _field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + encode_varint(len(payload)) + payload


def _string(tag: int, s: str) -> bytes:
    return _field(tag, s.encode())


def encode_series_labels(key: SeriesKey) -> bytes:
    """The encoded ``labels`` fields of one TimeSeries (cached by the caller per series)."""
    items = sorted((*key.labels, ("__name__", key.metric)))
    return b"".join(_field(0x0A, _string(0x0A, k) + _string(0x12, v)) for k, v in items)


def encode_write_request(
    series: Iterable[tuple[bytes, Iterable[tuple[int, float]]]],
    metadata: Mapping[str, MetricMetadata] | None = None,
) -> bytes:
    """``series`` yields ``(encoded labels, [(ts_ms, value), ...])``; returns the uncompressed body."""
    parts: list[bytes] = []
    for labels, samples in series:
        body = labels + b"".join(
            _field(0x12, b"\x09" + _DOUBLE.pack(v) + b"\x10" + encode_varint(ts)) for ts, v in samples
        )
        parts.append(_field(0x0A, body))
    for md in (metadata or {}).values():
        m = b"\x08" + encode_varint(_TYPES.get(md.type, 0)) + _string(0x12, md.metric)
        if md.help:
            m += _string(0x22, md.help)
        if md.unit:
            m += _string(0x2A, md.unit)
        parts.append(_field(0x1A, m))
    return b"".join(parts)


class RemoteWriteEncoder:
    """Encodes collections; remembers each series' encoded labels (the agent's series are stable)."""

    def __init__(self, max_cached: int = 200_000) -> None:
        self._labels: dict[SeriesKey, bytes] = {}
        self.max_cached = max_cached

    def labels(self, key: SeriesKey) -> bytes:
        b = self._labels.get(key)
        if b is None:
            if len(self._labels) >= self.max_cached:
                self._labels.clear()  # series churn (many short-lived PIDs): start over, stay bounded
            b = self._labels[key] = encode_series_labels(key)
        return b

    def encode_one_timestamp(
        self,
        keys: Iterable[SeriesKey],
        values: Iterable[float],
        ts_ms: int,
        metadata: Mapping[str, MetricMetadata],
    ) -> bytes:
        """One collection (every sample at ``ts_ms``), snappy-compressed. A series listed twice is
        sent as two TimeSeries entries, which remote-write receivers accept."""
        tail = b"\x10" + encode_varint(ts_ms)
        sample_len = encode_varint(9 + len(tail))
        pack = _DOUBLE.pack
        cache = self._labels
        parts: list[bytes] = []
        for key, v in zip(keys, values, strict=True):
            lb = cache.get(key)
            if lb is None:
                lb = self.labels(key)
            sample = b"\x12" + sample_len + b"\x09" + pack(v) + tail
            parts.append(b"\x0a" + encode_varint(len(lb) + len(sample)) + lb + sample)
        parts.append(encode_write_request((), metadata))
        return bytes(cramjam.snappy.compress_raw(b"".join(parts)))

    def encode(
        self, rows: Iterable[tuple[SeriesKey, int, float]], metadata: Mapping[str, MetricMetadata]
    ) -> bytes:
        """Rows with any timestamps, grouped per series, snappy-compressed."""
        by_series: dict[SeriesKey, list[tuple[int, float]]] = {}
        for key, ts, v in rows:
            by_series.setdefault(key, []).append((ts, v))
        body = encode_write_request(((self.labels(k), s) for k, s in by_series.items()), metadata)
        return bytes(cramjam.snappy.compress_raw(body))

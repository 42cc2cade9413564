"""The OTLP gauge/sum fast path (attribute bytes -> series cache, numpy time/value decoding) decodes
exactly as the per-point decoder does, and leaves every unusual point to it."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from sightglass.ingest.otlp import MetricsDecoder, parse_request
from sightglass.model import SampleBatch, SeriesKey

NOW = 1_790_000_999_000


def _reference() -> MetricsDecoder:
    d = MetricsDecoder(now_ms=lambda: NOW)
    d._numbers_fast = lambda *a: None  # type: ignore[method-assign]
    d._learn = lambda *a: None  # type: ignore[method-assign]
    return d


def _rows(batch: SampleBatch) -> list[tuple[SeriesKey, int, str]]:
    out = []
    for i in range(len(batch)):
        stale = bool(batch.stale[i]) if batch.stale is not None else False
        bits = "stale" if stale else struct.pack("<d", float(batch.values[i])).hex()
        out.append((batch.series[int(batch.series_index[i])], int(batch.ts_ms[i]), bits))
    return sorted(out, key=lambda r: (r[0].metric, r[0].labels, r[1], r[2]))


def _request(points: list[dict[str, Any]], *, kind: str = "gauge", host: str = "n1") -> bytes:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    for k, v in (("service.name", "dcgm"), ("host.name", host)):
        rm.resource.attributes.add(key=k).value.string_value = v
    m = rm.scope_metrics.add().metrics.add(name="gpu.utilization", unit="1")
    data = m.gauge if kind == "gauge" else m.sum
    if kind == "sum":
        m.sum.is_monotonic = True
        m.sum.aggregation_temporality = 2
    for p in points:
        dp = data.data_points.add()
        for k, v in p.get("attrs", {}).items():
            av = dp.attributes.add(key=k).value
            if isinstance(v, bool):
                av.bool_value = v
            elif isinstance(v, int):
                av.int_value = v
            else:
                av.string_value = v
        if p.get("start"):
            dp.start_time_unix_nano = p["start"]
        if p.get("time"):
            dp.time_unix_nano = p["time"]
        if "int" in p:
            dp.as_int = p["int"]
        elif "double" in p:
            dp.as_double = p["double"]
        if p.get("flags"):
            dp.flags = p["flags"]
        if p.get("exemplar"):
            dp.exemplars.add(as_double=1.0, time_unix_nano=p.get("time", 0))
    return bytes(req.SerializeToString())


def _decode(d: MetricsDecoder, body: bytes, *, with_body: bool = True) -> Any:
    return d.decode(parse_request(body, "protobuf", "metrics"), body if with_body else None)


def _gpus(t: int, v: float) -> list[dict[str, Any]]:
    return [
        {"attrs": {"gpu": str(g), "uuid": f"GPU-{g}"}, "start": 5, "time": t * 1_000_000, "double": v + g}
        for g in range(8)
    ]


@pytest.mark.parametrize("with_body", [True, False])
def test_steady_requests_hit_the_attribute_cache(with_body: bool) -> None:
    d = MetricsDecoder(now_ms=lambda: NOW)
    _decode(d, _request(_gpus(1_790_000_000_000, 1.0)), with_body=with_body)
    assert len(next(iter(d._fast.values()))) == 8
    calls = []
    slow = d._numbers
    d._numbers = lambda *a: calls.append(1) or slow(*a)  # type: ignore[method-assign,func-returns-value]
    for t, v in ((1_790_000_010_000, 2.0), (1_790_000_020_000, 0.0)):
        body = _request(_gpus(t, v))
        got = _decode(d, body, with_body=with_body)
        assert _rows(got.batch) == _rows(_decode(_reference(), body).batch)
    assert not calls  # both went through the fast path


def _metric_bytes(points: list[dict[str, Any]], kind: str) -> bytes:
    req = ExportMetricsServiceRequest.FromString(_request(points, kind=kind))
    return bytes(req.resource_metrics[0].scope_metrics[0].metrics[0].SerializeToString())


def _wrap(metric: bytes) -> bytes:
    """A request holding one resource, one scope and ``metric`` (raw Metric bytes, possibly merged)."""
    req = ExportMetricsServiceRequest.FromString(_request([]))
    rm = req.resource_metrics[0]
    resource = rm.resource.SerializeToString()
    scope = b"\x12" + _varint(len(metric)) + metric
    rm_bytes = b"\x0a" + _varint(len(resource)) + resource + b"\x12" + _varint(len(scope)) + scope
    return b"\x0a" + _varint(len(rm_bytes)) + rm_bytes


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def test_a_gauge_replaced_by_a_histogram_and_sent_again_is_read_as_protobuf_does() -> None:
    # Metric = gauge(A) + histogram + gauge(B): protobuf keeps gauge(B) alone (the oneof was reset)
    a = _metric_bytes(_gpus(1_790_000_000_000, 1.0), "gauge")
    b = _metric_bytes(_gpus(1_790_000_010_000, 5.0)[:4], "gauge")
    hist = b"\x4a\x00"  # field 9 (histogram), empty
    d = MetricsDecoder(now_ms=lambda: NOW)
    _decode(d, _request(_gpus(1_790_000_000_000, 1.0)))  # learn the 8 series
    body = _wrap(a + hist + b)
    got, want = _decode(d, body), _decode(_reference(), body)
    assert _rows(got.batch) == _rows(want.batch)
    assert len(got.batch) == 4 + 1  # gauge(B)'s 4 points and target_info


def test_client_bytes_in_another_field_order_still_hit_via_reserialization() -> None:
    d = MetricsDecoder(now_ms=lambda: NOW)
    _decode(d, _request(_gpus(1_790_000_000_000, 1.0)))
    req = ExportMetricsServiceRequest.FromString(_request(_gpus(1_790_000_010_000, 2.0)))
    m = req.resource_metrics[0].scope_metrics[0].metrics[0]
    # hand-encode the points attributes-first (legal protobuf, not the canonical order)
    pts = b""
    for dp in m.gauge.data_points:
        attrs = b"".join(b"\x3a" + _varint(kv.ByteSize()) + kv.SerializeToString() for kv in dp.attributes)
        fixed = dp.SerializeToString()[:27]
        raw = attrs + fixed
        pts += b"\x0a" + _varint(len(raw)) + raw
    gauge = b"\x2a" + _varint(len(pts)) + pts
    name = m.name.encode()
    unit = m.unit.encode()
    metric = b"\x0a" + _varint(len(name)) + name + b"\x1a" + _varint(len(unit)) + unit + gauge
    body = _wrap(metric)
    calls = []
    slow = d._numbers
    d._numbers = lambda *a: calls.append(1) or slow(*a)  # type: ignore[method-assign,func-returns-value]
    got, want = _decode(d, body), _decode(_reference(), body)
    assert _rows(got.batch) == _rows(want.batch) and len(got.batch) == 9
    assert not calls


def test_unusual_points_take_the_per_point_path() -> None:
    base = {"attrs": {"gpu": "0"}, "time": 1_790_000_000_000_000_000, "double": 1.0}
    variants: list[dict[str, Any]] = [
        {**base, "int": -7},  # as_int
        {**base, "start": 0},  # no start time
        {**base, "time": 0},  # no time: the arrival time
        {**base, "flags": 1},  # no recorded value: a stale marker
        {**base, "exemplar": True},
        {**base, "attrs": {"gpu": 0}},  # a non-string attribute
        {**base, "attrs": {"gpu": True, "x": ""}},
        {**base, "attrs": {}},
        {"attrs": {"gpu": "0"}, "time": 1_790_000_000_000_000_000},  # no value: rejected
    ]
    d = MetricsDecoder(now_ms=lambda: NOW)
    for _ in range(3):
        for kind in ("gauge", "sum"):
            for p in variants:
                body = _request([p, {**base, "attrs": {"gpu": "1"}}], kind=kind)
                got, want = _decode(d, body), _decode(_reference(), body)
                assert _rows(got.batch) == _rows(want.batch), p
                assert (got.points, got.rejected) == (want.points, want.rejected)


def test_a_new_series_among_known_ones() -> None:
    d = MetricsDecoder(now_ms=lambda: NOW)
    _decode(d, _request(_gpus(1_790_000_000_000, 1.0)))
    new = {"attrs": {"gpu": "8", "uuid": "GPU-8"}, "time": 1_790_000_010_000_000_000, "double": 9.0}
    pts = [*_gpus(1_790_000_010_000, 3.0), new]
    body = _request(pts)
    assert _rows(_decode(d, body).batch) == _rows(_decode(_reference(), body).batch)
    assert len(next(iter(d._fast.values()))) == 9


def test_the_same_attributes_under_another_resource_are_another_series() -> None:
    d = MetricsDecoder(now_ms=lambda: NOW)
    for host in ("n1", "n2", "n1", "n2"):
        body = _request(_gpus(1_790_000_000_000, 1.0), host=host)
        got = _decode(d, body).batch
        assert {dict(k.labels)["host_name"] for k in got.series if k.metric != "target_info"} == {host}


_attr = st.one_of(st.text(max_size=6), st.integers(-3, 3), st.booleans())
_point = st.fixed_dictionaries(
    {
        "attrs": st.dictionaries(st.sampled_from(["gpu", "a.b", "uuid"]), _attr, max_size=3),
        "time": st.one_of(st.just(0), st.integers(1, 2**63)),
        "start": st.one_of(st.just(0), st.integers(1, 2**63)),
    },
    optional={
        "double": st.floats(allow_nan=True),
        "int": st.integers(-(2**63), 2**63 - 1),
        "flags": st.integers(0, 3),
    },
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_point, max_size=8), st.sampled_from(["gauge", "sum"]))
def test_fast_path_equals_the_per_point_decoder(points: list[dict[str, Any]], kind: str) -> None:
    body = _request(points, kind=kind)
    want = _decode(_reference(), body)
    d = MetricsDecoder(now_ms=lambda: NOW)
    for _ in range(3):  # learn, then hit
        got = _decode(d, body)
        assert _rows(got.batch) == _rows(want.batch)
        assert (got.points, got.rejected) == (want.points, want.rejected)

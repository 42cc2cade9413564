"""The OTLP body-only path (``MetricsDecoder.decode_body``: no full parse for steady gauges/sums)
decodes exactly as the full parse + per-point decoder, and declines everything it was not taught."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from test_otlp_fast import NOW, _point, _reference, _request, _rows, _varint

from sightglass.ingest.limits import BadRequest
from sightglass.ingest.otlp import MetricsDecoder, MetricsResult, parse_request


def _server(d: MetricsDecoder, body: bytes) -> tuple[MetricsResult, bool]:
    """What the OTLP handler does: the body path first, else the full parse. (result, body path?)"""
    res = d.decode_body(body)
    if res is not None:
        return res, True
    return d.decode(parse_request(body, "protobuf", "metrics"), body), False


def _want(body: bytes) -> MetricsResult:
    return _reference().decode(parse_request(body, "protobuf", "metrics"))


def _fleet(t_ms: int, v: float, *, nodes: int = 3, start: bool = True) -> bytes:
    """A DCGM-like request: one resource per node, a gauge and a monotonic sum with 4 GPUs each."""
    req = ExportMetricsServiceRequest()
    for n in range(nodes):
        rm = req.resource_metrics.add()
        for k, val in (("service.name", "dcgm"), ("host.name", f"n{n}"), ("cloud.region", "eu")):
            rm.resource.attributes.add(key=k).value.string_value = val
        sm = rm.scope_metrics.add()
        sm.scope.name = "dcgm"
        sm.scope.attributes.add(key="lib").value.string_value = "x"
        g = sm.metrics.add(name="gpu.utilization", unit="1", description="util")
        s = sm.metrics.add(name="gpu.energy", unit="J")
        s.sum.is_monotonic = True
        s.sum.aggregation_temporality = 2
        for gpu in range(4):
            for data, value in ((g.gauge, v + gpu), (s.sum, 1000.0 * t_ms + gpu)):
                dp = data.data_points.add(time_unix_nano=t_ms * 1_000_000)
                if start:
                    dp.start_time_unix_nano = 5
                if gpu == 3 and data is s.sum:
                    dp.as_int = int(value) % 10_000
                else:
                    dp.as_double = value
                dp.attributes.add(key="gpu").value.string_value = str(gpu)
    return bytes(req.SerializeToString())


@pytest.mark.parametrize("start", [True, False])
def test_steady_requests_skip_the_full_parse_and_decode_the_same(start: bool) -> None:
    d = MetricsDecoder(now_ms=lambda: NOW)
    first, fast = _server(d, _fleet(1_790_000_000_000, 1.0, start=start))
    assert not fast  # nothing learned yet
    d.metadata_stored(first.batch)
    for k in range(1, 4):
        body = _fleet(1_790_000_000_000 + 10_000 * k, float(k), start=start)
        got, fast = _server(d, body)
        want = _want(body)
        assert fast
        assert _rows(got.batch) == _rows(want.batch)
        assert (got.points, got.rejected) == (want.points, want.rejected) == (24, 0)
        assert got.batch.metadata == {}  # stored after the first request, as decode() does
        assert sum(k.metric == "target_info" for k in got.batch.series) == 3


def test_metadata_and_target_info_times_match_the_full_path() -> None:
    d, ref = MetricsDecoder(now_ms=lambda: NOW), MetricsDecoder(now_ms=lambda: NOW)
    _server(d, _fleet(1_790_000_000_000, 1.0))
    req = ExportMetricsServiceRequest.FromString(_fleet(1_790_000_000_000, 2.0))
    for rm in req.resource_metrics:
        for m in rm.scope_metrics[0].metrics:
            for dp in getattr(m, m.WhichOneof("data")).data_points:
                dp.time_unix_nano = 500  # under 1 ms: read as "no time", so the arrival time
    body = bytes(req.SerializeToString())
    got, fast = _server(d, body)
    want = ref.decode(parse_request(body, "protobuf", "metrics"))
    assert fast
    assert _rows(got.batch) == _rows(want.batch)
    assert got.batch.metadata == want.batch.metadata and set(got.batch.metadata) == {
        "gpu_utilization_ratio", "gpu_energy_joules_total", "target_info",
    }  # fmt: skip


def _learned() -> MetricsDecoder:
    d = MetricsDecoder(now_ms=lambda: NOW)
    _server(d, _fleet(1_790_000_000_000, 1.0))
    return d


def _mutated(edit: Any) -> bytes:
    req = ExportMetricsServiceRequest.FromString(_fleet(1_790_000_010_000, 3.0))
    edit(req)
    return bytes(req.SerializeToString())


def _histogram(req: Any) -> None:
    h = req.resource_metrics[0].scope_metrics[0].metrics.add(name="lat", unit="s").histogram
    h.aggregation_temporality = 2
    h.data_points.add(time_unix_nano=1, count=1, sum=1.0, bucket_counts=[1], explicit_bounds=[])


def _exemplar(req: Any) -> None:
    req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].exemplars.add(as_double=1.0)


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: (
            r.resource_metrics[0]
            .resource.attributes.add(key="k8s.pod.name")
            .value.__setattr__("string_value", "p")
        ),  # a resource not read by the full parser yet
        lambda r: (
            r.resource_metrics[0]
            .scope_metrics[0]
            .scope.attributes.add(key="n")
            .value.__setattr__("int_value", 1)
        ),  # new scope attributes
        lambda r: r.resource_metrics[0].scope_metrics[0].metrics[0].metadata.add(key="m"),
        lambda r: r.resource_metrics[0].scope_metrics[0].metrics[0].__setattr__("unit", "%"),  # new metric
        lambda r: (
            r.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[1].__setattr__("flags", 1)
        ),  # a stale marker
        lambda r: (
            r.resource_metrics[0]
            .scope_metrics[0]
            .metrics[0]
            .gauge.data_points[2]
            .attributes.add(key="x")
            .value.__setattr__("string_value", "y")
        ),  # a new series
        lambda r: (
            r.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[3].ClearField("as_double")
        ),  # no value: rejected
        _histogram,
        _exemplar,
        lambda r: r.resource_metrics[0].scope_metrics[0].metrics.add(name="target.info"),  # no data
        lambda r: (
            r.resource_metrics[0]
            .scope_metrics[0]
            .metrics.add(name="target_info")
            .gauge.data_points.add(time_unix_nano=1, as_double=1.0)
        ),  # a metric that collides with target_info
    ],
)
def test_anything_not_learned_goes_to_the_full_parse(edit: Any) -> None:
    d = _learned()
    body = _mutated(edit)
    assert d.decode_body(body) is None
    got, _ = _server(d, body)
    want = _want(body)
    assert _rows(got.batch) == _rows(want.batch)
    assert (got.points, got.rejected, got.errors) == (want.points, want.rejected, want.errors)


def _ld(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


def test_hostile_bodies_are_refused_by_the_full_parse_with_the_precise_error() -> None:
    d = _learned()
    good = _fleet(1_790_000_010_000, 3.0)
    bad_scope_name = _ld(0x0A, _ld(0x12, _ld(0x0A, _ld(0x0A, b"\xff\xfe"))))  # scope.name not UTF-8
    bad_metric_name = _ld(0x0A, _ld(0x12, _ld(0x12, _ld(0x0A, b"\xc3"))))
    for body in (good[:-3], good + b"\x0a\x05ab", bad_scope_name, bad_metric_name, b"\xff" * 20):
        assert d.decode_body(body) is None
        with pytest.raises(BadRequest):
            parse_request(body, "protobuf", "metrics")


def test_a_point_whose_head_breaks_the_layout_is_not_taken() -> None:
    d = _learned()
    req = ExportMetricsServiceRequest.FromString(_fleet(1_790_000_010_000, 3.0))
    m = req.resource_metrics[0].scope_metrics[0].metrics[0]
    dp = m.gauge.data_points[0]
    attrs = b"".join(_ld(0x3A, kv.SerializeToString()) for kv in dp.attributes)
    # "start, value, time" (legal, not canonical), then the known attribute bytes: not a plain point
    odd = dp.SerializeToString()[:9] + dp.SerializeToString()[18:27] + dp.SerializeToString()[9:18] + attrs
    pts = _ld(0x0A, odd) + b"".join(_ld(0x0A, p.SerializeToString()) for p in m.gauge.data_points[1:])
    metric = _ld(0x0A, m.name.encode()) + _ld(0x12, m.description.encode()) + _ld(0x1A, m.unit.encode())
    metric += _ld(0x2A, pts)
    rm = req.resource_metrics[0]
    scope = _ld(0x0A, rm.scope_metrics[0].scope.SerializeToString()) + _ld(0x12, metric)
    body = _ld(0x0A, _ld(0x0A, rm.resource.SerializeToString()) + _ld(0x12, scope))
    assert d.decode_body(body) is None
    got, _ = _server(d, body)
    assert _rows(got.batch) == _rows(_want(body).batch)


def test_a_resource_sent_twice_in_one_message_merges_as_protobuf_does() -> None:
    d = _learned()
    req = ExportMetricsServiceRequest.FromString(_fleet(1_790_000_010_000, 3.0, nodes=1))
    rm = req.resource_metrics[0]
    res = rm.resource.SerializeToString()
    half = len(rm.resource.attributes) - 1
    first = b"".join(_ld(0x0A, kv.SerializeToString()) for kv in rm.resource.attributes[:half])
    second = b"".join(_ld(0x0A, kv.SerializeToString()) for kv in rm.resource.attributes[half:])
    assert first + second == res
    scopes = b"".join(_ld(0x12, sm.SerializeToString()) for sm in rm.scope_metrics)
    body = _ld(0x0A, _ld(0x0A, first) + scopes + _ld(0x0A, second))  # resource split in two fields
    got, fast = _server(d, body)
    assert fast  # the merged attributes are the learned ones
    assert _rows(got.batch) == _rows(_want(body).batch)


# points the body path can take (string attributes, a time, a value), and, mixed in, any point
_plain = st.tuples(
    st.dictionaries(st.sampled_from(["gpu", "a.b", "uuid"]), st.text(min_size=1, max_size=6), max_size=3),
    st.integers(1, 2**63),
    st.sampled_from([0, 5]),
    st.one_of(
        st.floats(allow_nan=True).map(lambda v: ("double", v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: ("int", v)),
    ),
).map(lambda t: {"attrs": t[0], "time": t[1], "start": t[2], t[3][0]: t[3][1]})
_same_start = st.tuples(st.lists(_plain, max_size=8), st.sampled_from([0, 5])).map(
    lambda t: [{**p, "start": t[1]} for p in t[0]]
)  # the body path reads a metric's points at one offset: all with or all without a start time
_points = st.one_of(_same_start, st.lists(st.one_of(_plain, _point), max_size=8))


@settings(max_examples=80, deadline=None)
@given(_points, st.sampled_from(["gauge", "sum"]), st.integers(1, 3))
def test_body_path_equals_the_full_decoder(points: list[dict[str, Any]], kind: str, hosts: int) -> None:
    req = ExportMetricsServiceRequest()
    for h in range(hosts):
        req.MergeFromString(_request(points, kind=kind, host=f"n{h}"))
    body = bytes(req.SerializeToString())
    want = _want(body)
    d = MetricsDecoder(now_ms=lambda: NOW)
    for _ in range(3):  # learn, then (where every point is plain and known) the body path
        got, _fast = _server(d, body)
        assert _rows(got.batch) == _rows(want.batch)
        assert (got.points, got.rejected) == (want.points, want.rejected)


def test_a_body_equal_but_for_times_and_values_is_read_from_the_learned_places() -> None:
    d = MetricsDecoder(now_ms=lambda: NOW)
    first = _fleet(1_790_000_000_000, 1.0, nodes=40)
    assert len(first) > 4096
    _server(d, first)  # learns the series (full parse)
    _server(d, _fleet(1_790_000_010_000, 2.0, nodes=40))  # body path: learns the places
    assert d._body_templates
    for k, value in ((2, 3.5), (3, float("nan")), (4, -0.0)):
        body = _fleet(1_790_000_000_000 + 10_000 * k, value, nodes=40)
        assert d._template_for(body) is not None
        got, fast = _server(d, body)
        want = _want(body)
        assert fast and _rows(got.batch) == _rows(want.batch)
        assert (got.points, got.rejected) == (want.points, want.rejected)


@pytest.mark.parametrize(
    "change",
    [
        (b"\x02n7", b"\x02x7"),  # another resource of the same size: new, so the full parse reads it
        (b"gpu.utilization", b"gpu.utilizatioN"),  # another metric name
    ],
)
def test_a_body_of_the_same_size_with_other_bytes_is_not_read_from_the_template(change: Any) -> None:
    d = MetricsDecoder(now_ms=lambda: NOW)
    _server(d, _fleet(1_790_000_000_000, 1.0, nodes=40))
    _server(d, _fleet(1_790_000_010_000, 2.0, nodes=40))
    body = _fleet(1_790_000_020_000, 3.0, nodes=40)
    old, new = change
    assert old in body
    body = body.replace(old, new, 1)
    assert d._template_for(body) is None
    got, _ = _server(d, body)
    assert _rows(got.batch) == _rows(_want(body).batch)


def test_a_value_switching_between_int_and_double_is_not_read_from_the_template() -> None:
    d = MetricsDecoder(now_ms=lambda: NOW)
    _server(d, _fleet(1_790_000_000_000, 1.0, nodes=40))
    _server(d, _fleet(1_790_000_010_000, 2.0, nodes=40))
    req = ExportMetricsServiceRequest.FromString(_fleet(1_790_000_020_000, 3.0, nodes=40))
    dp = req.resource_metrics[5].scope_metrics[0].metrics[0].gauge.data_points[2]
    dp.as_int = 12  # same size on the wire, another tag
    body = bytes(req.SerializeToString())
    assert d._template_for(body) is None
    got, _ = _server(d, body)
    want = _want(body)
    assert _rows(got.batch) == _rows(want.batch)
    assert 12.0 in got.batch.values.tolist()

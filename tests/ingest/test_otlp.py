"""OTLP decoding: the upstream JSON examples, the same data as protobuf, names, resources, limits."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from sightglass.ingest.limits import BadRequest, UnsupportedMediaType
from sightglass.ingest.otlp import (
    MetricsDecoder,
    decode_logs,
    decode_traces,
    encode_response,
    encode_status,
    media_type,
    metric_name,
    parse_request,
    sanitize_label_name,
)
from sightglass.model import MetricType, SeriesKey

REPO = Path(__file__).resolve().parents[2]
EXPOSITION = Path(os.environ.get("SIGHTGLASS_SHARED", REPO.parent / "shared")) / "data" / "exposition"


def fixture(name: str) -> bytes:
    """One of the upstream OTLP JSON examples (opentelemetry-proto ``examples/``, see PROVENANCE.md)."""
    return (EXPOSITION / f"otlp_example_{name}.json").read_bytes()


def as_protobuf(name: str, cls: Any) -> bytes:
    """The fixture as protobuf: via ``parse_request`` (which handles OTLP's hex ids)."""
    signal = {"metrics": "metrics", "trace": "traces", "logs": "logs"}[name]
    msg = parse_request(fixture(name), "json", signal)
    assert isinstance(msg, cls)
    return bytes(msg.SerializeToString())


def _rows(res: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(k.metric, k.labels): v for k, _, v in res.batch.rows()}


EXPECTED_FIXTURE_ROWS = {
    ("my_counter_total", (("job", "my.service"), ("my_counter_attr", "some value"))): 5.0,
    ("my_gauge_ratio", (("job", "my.service"), ("my_gauge_attr", "some value"))): 10.0,
    ("my_histogram_bucket", (("job", "my.service"), ("le", "1"), ("my_histogram_attr", "some value"))): 1.0,
    (
        "my_histogram_bucket",
        (("job", "my.service"), ("le", "+Inf"), ("my_histogram_attr", "some value")),
    ): 2.0,
    ("my_histogram_count", (("job", "my.service"), ("my_histogram_attr", "some value"))): 2.0,
    ("my_histogram_sum", (("job", "my.service"), ("my_histogram_attr", "some value"))): 2.0,
    (
        "my_exponential_histogram_count",
        (("job", "my.service"), ("my_exponential_histogram_attr", "some value")),
    ): 3.0,
    (
        "my_exponential_histogram_sum",
        (("job", "my.service"), ("my_exponential_histogram_attr", "some value")),
    ): 10.0,
}


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_metrics_fixture(encoding: str) -> None:
    body = fixture("metrics") if encoding == "json" else as_protobuf("metrics", ExportMetricsServiceRequest)
    res = MetricsDecoder().decode(parse_request(body, encoding, "metrics"))
    assert _rows(res) == EXPECTED_FIXTURE_ROWS
    assert set(res.batch.ts_ms.tolist()) == {1544712660300}
    assert res.points == 4 and res.rejected == 0
    (h,) = res.batch.exp_histograms
    assert h.series == SeriesKey(
        "my_exponential_histogram", (("job", "my.service"), ("my_exponential_histogram_attr", "some value"))
    )
    assert (h.scale, h.count, h.sum, h.zero_count, h.positive_offset, h.positive_counts) == (
        0,
        3.0,
        10.0,
        1.0,
        1,
        (0.0, 2.0),
    )
    assert (h.min, h.max) == (0.0, 5.0)
    md = res.batch.metadata
    assert md["my_gauge_ratio"].type is MetricType.GAUGE
    assert md["my_gauge_ratio"].help == "I am a Gauge [otel: my.gauge, unit 1]"
    # the fixture's sum and histograms are DELTA (aggregationTemporality 1): stored as they come
    assert md["my_counter_total"].type is MetricType.UNKNOWN and md["my_counter_total"].help.endswith(
        "(delta)"
    )


def test_traces_fixture_keeps_hex_ids() -> None:
    for body, enc in [
        (fixture("trace"), "json"),
        (as_protobuf("trace", ExportTraceServiceRequest), "protobuf"),
    ]:
        res = decode_traces(parse_request(body, enc, "traces"))
        (span,) = res.spans
        assert span.trace_id == "5b8efff798038103d269b633813fc60c"
        assert (span.span_id, span.parent_span_id) == ("eee19b7ec3c1b174", "eee19b7ec3c1b173")
        assert (span.kind, span.start_ns, span.end_ns) == (2, 1544712660000000000, 1544712661000000000)
        assert span.service == "my.service"
        assert span.attributes["my.span.attr"] == "some value"
        assert span.attributes["otel.scope.name"] == "my.library"


def test_logs_fixture() -> None:
    (rec,) = decode_logs(parse_request(fixture("logs"), "json", "logs")).logs
    assert (rec.body, rec.severity_number, rec.severity_text) == ("Example log record", 10, "Information")
    assert rec.trace_id == "5b8efff798038103d269b633813fc60c" and rec.span_id == "eee19b7ec3c1b174"
    assert rec.attributes["int.attribute"] == 10 and rec.attributes["boolean.attribute"] is True
    assert rec.attributes["array.attribute"] == ["many", "values"]
    assert rec.attributes["map.attribute"] == {"some.map.key": "some value"}


def test_gen_ai_span_attributes_intact() -> None:
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [_kv("service.name", "chatbot")]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331",
                                "name": "chat llama-70b",
                                "kind": 3,
                                "startTimeUnixNano": "1",
                                "endTimeUnixNano": "2",
                                "attributes": [
                                    _kv("gen_ai.operation.name", "chat"),
                                    _kv("gen_ai.request.model", "llama-70b"),
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "812"}},
                                    {
                                        "key": "gen_ai.response.finish_reasons",
                                        "value": {"arrayValue": {"values": [{"stringValue": "stop"}]}},
                                    },
                                ],
                                "status": {"code": 2, "message": "boom"},
                            }
                        ]
                    }
                ],
            }
        ]
    }
    (span,) = decode_traces(parse_request(json.dumps(doc).encode(), "json", "traces")).spans
    assert span.attributes["gen_ai.usage.input_tokens"] == 812
    assert span.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert span.attributes["gen_ai.request.model"] == "llama-70b"
    assert (span.status_code, span.status_message, span.service) == (2, "boom", "chatbot")


def test_span_with_bad_ids_rejected_alone() -> None:
    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add()
    spans.spans.add(trace_id=b"\1" * 16, span_id=b"\2" * 8, name="ok")
    spans.spans.add(trace_id=b"\1" * 3, span_id=b"\2" * 8, name="bad")
    res = decode_traces(req)
    assert [s.name for s in res.spans] == ["ok"] and res.rejected == 1


@pytest.mark.parametrize(
    ("name", "unit", "kind", "monotonic", "expected"),
    [
        (
            "gen_ai.server.time_to_first_token",
            "s",
            "histogram",
            False,
            "gen_ai_server_time_to_first_token_seconds",
        ),
        ("gen_ai.client.token.usage", "{token}", "histogram", False, "gen_ai_client_token_usage"),
        ("http.server.request.size", "By", "sum", True, "http_server_request_size_bytes_total"),
        ("requests.total", "1", "sum", True, "requests_total"),
        ("system.cpu.utilization", "1", "gauge", False, "system_cpu_utilization_ratio"),
        ("net.io", "By/s", "gauge", False, "net_io_bytes_per_second"),
        ("gpu.power", "W", "gauge", False, "gpu_power_watts"),
        ("gpu.temperature", "Cel", "gauge", False, "gpu_temperature_celsius"),
        ("latency_seconds", "s", "histogram", False, "latency_seconds"),
        ("queue-depth", "{request}", "sum", False, "queue_depth"),
        ("2xx.count", "", "sum", True, "_2xx_count_total"),
        ("....", "", "gauge", False, ""),
    ],
)
def test_metric_name(name: str, unit: str, kind: str, monotonic: bool, expected: str) -> None:
    assert metric_name(name, unit, kind, monotonic) == expected


@pytest.mark.parametrize(
    ("key", "expected"), [("k8s.pod.name", "k8s_pod_name"), ("a-b/c", "a_b_c"), ("9lives", "key_9lives")]
)
def test_sanitize_label_name(key: str, expected: str) -> None:
    assert sanitize_label_name(key) == expected


def _kv(k: str, v: str) -> dict[str, Any]:
    return {"key": k, "value": {"stringValue": v}}


def _gauge_request(
    resource: list[dict[str, Any]], points: list[dict[str, Any]], name: str = "gpu.util", unit: str = "1"
) -> ExportMetricsServiceRequest:
    doc = {
        "resourceMetrics": [
            {
                "resource": {"attributes": resource},
                "scopeMetrics": [
                    {"metrics": [{"name": name, "unit": unit, "gauge": {"dataPoints": points}}]}
                ],
            }
        ]
    }
    msg = ExportMetricsServiceRequest()
    json_format.ParseDict(doc, msg)
    return msg


def test_resource_attributes_job_instance_promotion_and_target_info() -> None:
    resource = [
        _kv("service.name", "vllm"),
        _kv("service.namespace", "inference"),
        _kv("service.instance.id", "pod-7"),
        _kv("k8s.pod.name", "vllm-7"),
        _kv("k8s.namespace.name", "llm"),
        _kv("host.name", "gpu-node-01"),
        _kv("slurm.job.id", "4242"),
        _kv("cloud.region", "eu-west-1"),
    ]
    points = [
        {
            "asDouble": 0.5,
            "timeUnixNano": "1700000000000000000",
            "attributes": [_kv("gpu", "3"), _kv("k8s.pod.name", "override")],
        }
    ]
    res = MetricsDecoder().decode(_gauge_request(resource, points))
    rows = _rows(res)
    labels = dict(next(lab for (m, lab) in rows if m == "gpu_util_ratio"))
    assert labels == {
        "job": "inference/vllm",
        "instance": "pod-7",
        "gpu": "3",
        "k8s_pod_name": "override",
        "k8s_namespace_name": "llm",
        "host_name": "gpu-node-01",
        "slurm_job_id": "4242",
    }
    info = dict(next(lab for (m, lab) in rows if m == "target_info"))
    assert (
        info["cloud_region"] == "eu-west-1"
        and info["job"] == "inference/vllm"
        and info["instance"] == "pod-7"
    )
    assert "service_name" not in info
    assert rows[("target_info", tuple(sorted(info.items())))] == 1.0


def test_non_string_attributes_and_collisions() -> None:
    points = [
        {
            "asInt": "7",
            "timeUnixNano": "1000000",
            "attributes": [
                {"key": "rank", "value": {"intValue": "3"}},
                {"key": "ok", "value": {"boolValue": True}},
                _kv("a.b", "1"),
                _kv("a_b", "2"),
                _kv("empty", ""),
            ],
        }
    ]
    res = MetricsDecoder().decode(_gauge_request([], points, name="x", unit=""))
    ((key, ts, value),) = res.batch.rows()
    assert key == SeriesKey("x", (("a_b", "1;2"), ("ok", "true"), ("rank", "3")))
    assert (ts, value) == (1, 7.0)


def test_fast_path_cache_tells_int_from_string() -> None:
    """An int attribute and an empty-string attribute must not share a cached series."""
    d = MetricsDecoder()
    p_int = [
        {"asDouble": 1, "timeUnixNano": "1000000", "attributes": [{"key": "r", "value": {"intValue": "3"}}]}
    ]
    p_empty = [{"asDouble": 2, "timeUnixNano": "1000000", "attributes": [_kv("r", "")]}]
    for _ in range(2):
        ((k1, _, _),) = d.decode(_gauge_request([], p_int, "x", "")).batch.rows()
        ((k2, _, _),) = d.decode(_gauge_request([], p_empty, "x", "")).batch.rows()
        assert k1.labels == (("r", "3"),) and k2.labels == ()


def test_no_recorded_value_is_a_stale_marker_and_missing_value_rejected() -> None:
    points: list[dict[str, Any]] = [
        {"timeUnixNano": "1000000", "flags": 1, "attributes": [_kv("g", "0")]},
        {"timeUnixNano": "2000000", "attributes": [_kv("g", "1")]},
        {"asDouble": "NaN", "timeUnixNano": "3000000", "attributes": [_kv("g", "2")]},
        {"asDouble": "-Infinity", "timeUnixNano": "3000000", "attributes": [_kv("g", "3")]},
    ]
    res = MetricsDecoder().decode(_gauge_request([], points, "x", ""))
    rows = {k.label_dict()["g"]: v for k, _, v in res.batch.rows()}
    assert rows["0"] is None and "1" not in rows
    assert math.isnan(rows["2"] or 0.0) and rows["3"] == -math.inf
    assert res.rejected == 1 and "no value" in res.error_message()


def test_label_limits_reject_points_alone() -> None:
    points = [
        {"asDouble": 1, "attributes": [_kv("big", "x" * 100)]},
        {"asDouble": 2, "attributes": [_kv("ok", "y")]},
    ]
    res = MetricsDecoder(max_label_value_bytes=50, now_ms=lambda: 42).decode(
        _gauge_request([], points, "x", "")
    )
    assert [(k.labels, t, v) for k, t, v in res.batch.rows()] == [((("ok", "y"),), 42, 2.0)]
    assert res.rejected == 1 and "limits.max_label_value_bytes" in res.error_message()
    many = [{"asDouble": 1, "attributes": [_kv(f"l{i}", "v") for i in range(10)]}]
    res = MetricsDecoder(max_labels_per_series=5).decode(_gauge_request([], many, "x", ""))
    assert res.rejected == 1 and "limits.max_labels_per_series" in res.error_message()


def test_cumulative_histogram_and_summary() -> None:
    doc = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "gen_ai.server.time_to_first_token",
                                "unit": "s",
                                "histogram": {
                                    "aggregationTemporality": 2,
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": "5000000",
                                            "count": "6",
                                            "sum": 1.5,
                                            "bucketCounts": ["1", "2", "3"],
                                            "explicitBounds": [0.005, 0.25],
                                        }
                                    ],
                                },
                            },
                            {
                                "name": "rpc.latency",
                                "unit": "ms",
                                "summary": {
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": "5000000",
                                            "count": "4",
                                            "sum": 20,
                                            "quantileValues": [
                                                {"quantile": 0.5, "value": 4},
                                                {"quantile": 0.99, "value": 9},
                                            ],
                                        }
                                    ]
                                },
                            },
                            {
                                "name": "requests",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [{"asInt": "12", "timeUnixNano": "5000000"}],
                                },
                            },
                            {
                                "name": "inflight",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": False,
                                    "dataPoints": [{"asInt": "3", "timeUnixNano": "5000000"}],
                                },
                            },
                        ]
                    }
                ]
            }
        ]
    }
    msg = ExportMetricsServiceRequest()
    json_format.ParseDict(doc, msg)
    res = MetricsDecoder().decode(msg)
    rows = {
        (k.metric, k.label_dict().get("le") or k.label_dict().get("quantile")): v
        for k, _, v in res.batch.rows()
    }
    n = "gen_ai_server_time_to_first_token_seconds"
    assert rows[(n + "_bucket", "0.005")] == 1.0
    assert rows[(n + "_bucket", "0.25")] == 3.0
    assert rows[(n + "_bucket", "+Inf")] == 6.0
    assert rows[(n + "_count", None)] == 6.0 and rows[(n + "_sum", None)] == 1.5
    assert (
        rows[("rpc_latency_milliseconds", "0.5")] == 4.0 and rows[("rpc_latency_milliseconds", "0.99")] == 9.0
    )
    assert rows[("rpc_latency_milliseconds_count", None)] == 4.0
    assert rows[("requests_total", None)] == 12.0 and rows[("inflight", None)] == 3.0
    md = res.batch.metadata
    assert md[n].type is MetricType.HISTOGRAM and md["requests_total"].type is MetricType.COUNTER
    assert (
        md["inflight"].type is MetricType.GAUGE and md["rpc_latency_milliseconds"].type is MetricType.SUMMARY
    )
    assert md[n].unit == "seconds"


def test_histogram_bucket_count_mismatch_rejected() -> None:
    doc = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "h",
                                "histogram": {
                                    "dataPoints": [
                                        {"count": "1", "bucketCounts": ["1"], "explicitBounds": [1, 2]}
                                    ]
                                },
                            }
                        ]
                    }
                ]
            }
        ]
    }
    msg = ExportMetricsServiceRequest()
    json_format.ParseDict(doc, msg)
    res = MetricsDecoder().decode(msg)
    assert res.rejected == 1 and len(res.batch) == 0


def test_media_type() -> None:
    assert media_type("application/x-protobuf") == "protobuf"
    assert media_type("application/json; charset=utf-8") == "json"
    with pytest.raises(UnsupportedMediaType):
        media_type("text/plain")
    with pytest.raises(UnsupportedMediaType):
        media_type(None)


@pytest.mark.parametrize(
    ("body", "encoding", "match"),
    [
        (b"{not json", "json", "invalid OTLP JSON"),
        (b"[]", "json", "must be an object"),
        (b'{"resourceMetrics": 5}', "json", "invalid OTLP JSON"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', "json", "not hex"),
        (b"\x0a\xff\xff\xff\x0f", "protobuf", "resource_metrics"),
    ],
)
def test_parse_errors(body: bytes, encoding: str, match: str) -> None:
    signal = "traces" if b"resourceSpans" in body else "metrics"
    with pytest.raises(BadRequest, match=match):
        parse_request(body, encoding, signal)


def test_unknown_json_fields_ignored() -> None:
    msg = parse_request(b'{"resourceMetrics": [], "somethingNew": 1}', "json", "metrics")
    assert len(msg.resource_metrics) == 0


def test_responses() -> None:
    resp = ExportMetricsServiceResponse()
    resp.ParseFromString(encode_response("metrics", "protobuf", 3, "bad points"))
    assert (resp.partial_success.rejected_data_points, resp.partial_success.error_message) == (
        3,
        "bad points",
    )
    assert json.loads(encode_response("metrics", "json")) == {}
    assert json.loads(encode_response("logs", "json", 2, "x")) == {
        "partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "x"}
    }
    assert json.loads(encode_status("json", 400, "nope")) == {"code": 3, "message": "nope"}
    assert encode_status("protobuf", 413, "big") == b"\x08\x08\x12\x03big"


def test_metadata_sent_until_stored() -> None:
    d = MetricsDecoder()
    req = parse_request(fixture("metrics"), "json", "metrics")
    first = d.decode(req).batch
    assert "my_gauge_ratio" in first.metadata
    assert "my_gauge_ratio" in d.decode(req).batch.metadata  # not acknowledged yet: sent again
    d.metadata_stored(first)
    assert d.decode(req).batch.metadata == {}


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": 5}]}]}]}, "has an invalid value"),
        (
            {
                "resourceMetrics": [
                    {"scopeMetrics": [{"metrics": [{"gauge": {"dataPoints": [{"timeUnixNano": "x"}]}}]}]}
                ]
            },
            "timeUnixNano",
        ),
        ({"resourceMetrics": {"a": 1}}, "must be an array"),
        (
            {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"bytesValue": "%%%"}}]}]}]},
            "not base64",
        ),
    ],
)
def test_json_type_errors(doc: dict[str, Any], match: str) -> None:
    signal = "logs" if "resourceLogs" in doc else "metrics"
    with pytest.raises(BadRequest, match=match):
        parse_request(json.dumps(doc).encode(), "json", signal)


def test_json_accepts_proto3_spellings() -> None:
    doc = {
        "resource_metrics": [
            {
                "scope_metrics": [
                    {
                        "metrics": [
                            {
                                "name": "g",
                                "gauge": {
                                    "data_points": [
                                        {
                                            "as_int": 3,
                                            "time_unix_nano": 2_000_000,
                                            "attributes": [{"key": "b", "value": {"bytesValue": "AQI="}}],
                                        },
                                        {"asDouble": "Infinity", "timeUnixNano": "2000000", "flags": None},
                                    ]
                                },
                            }
                        ]
                    }
                ]
            }
        ]
    }
    res = MetricsDecoder().decode(parse_request(json.dumps(doc).encode(), "json", "metrics"))
    assert sorted(v or 0.0 for _, _, v in res.batch.rows()) == [3.0, math.inf]
    assert res.batch.series[0].labels == (("b", "0102"),)  # bytes attributes become hex


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(
                st.sampled_from(["gpu", "node", "k8s.pod.name"]), st.text(min_size=1, max_size=6), max_size=3
            ),
            st.integers(min_value=1, max_value=2**62),
            st.floats(allow_nan=False),
        ),
        max_size=15,
    )
)
def test_gauge_round_trip_property(points: list[tuple[dict[str, str], int, float]]) -> None:
    """protobuf → decode → rows equals the points, with keys sanitised (twice, to exercise the caches)."""
    req = ExportMetricsServiceRequest()
    metric = req.resource_metrics.add().scope_metrics.add().metrics.add(name="gpu.temp", unit="Cel")
    for attrs, ts, value in points:
        dp = metric.gauge.data_points.add(time_unix_nano=ts, as_double=value)
        for k, v in attrs.items():
            dp.attributes.add(key=k).value.string_value = v
    expected = sorted(
        (tuple(sorted((sanitize_label_name(k), v) for k, v in attrs.items())), ts // 1_000_000 or 7, value)
        for attrs, ts, value in points
    )
    body = req.SerializeToString()
    d = MetricsDecoder(now_ms=lambda: 7)
    for _ in range(2):
        res = d.decode(parse_request(body, "protobuf", "metrics"))
        got = sorted((k.labels, t, v) for k, t, v in res.batch.rows())
        assert got == expected
        assert {k.metric for k, _, _ in res.batch.rows()} <= {"gpu_temp_celsius"}

"""The push ingest endpoints through the real app and a real DuckDB store.

Every bad request is followed by a good one, and the earlier good data is checked to still be there:
a bad request must never cost another request's data.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from sightglass.config import Config, LimitsConfig
from sightglass.ingest.limits import snappy_block_compress
from sightglass.ingest.otlp import parse_request
from sightglass.ingest.remote_write import (
    CONTENT_TYPE_V2,
    encode_batch,
    encode_v2_request,
    encode_write_request,
)
from sightglass.model import STALE_NAN, Matcher, SampleBatch, SeriesData
from sightglass.server import build_app
from sightglass.store.duckdb import DuckDBStore, StoreOptions

REPO = Path(__file__).resolve().parents[2]
EXPOSITION = REPO.parent / "shared" / "data" / "exposition"
RW_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
T0 = 1_700_000_000_000


class Harness:
    """The app over a fresh store, and a synchronous way to talk to it in-process."""

    def __init__(self, tmp_path: Path, **limits: Any) -> None:
        self.store = DuckDBStore(tmp_path / "data", options=StoreOptions(compact_every_s=3600))
        config = Config(data=str(tmp_path / "data"), limits=LimitsConfig(**limits))
        self.app, self.ctx = build_app(config, self.store)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sightglass") as c:
                return await c.request(method, path, **kw)

        return asyncio.run(go())

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.request("POST", path, content=content, headers=headers)

    def remote_write(self, batch: SampleBatch) -> httpx.Response:
        return self.post("/api/v1/write", snappy_block_compress(encode_batch(batch)), RW_HEADERS)

    def select(self, metric: str) -> list[SeriesData]:
        return self.store.select([Matcher("__name__", "=", metric)], 0, 2**50)

    # a known-good write and its check, used around every bad request
    def good_write(self, n: int) -> None:
        batch = SampleBatch.from_rows([("good_total", {"n": str(n)}, T0 + n, float(n))])
        r = self.remote_write(batch)
        assert r.status_code == 204, r.text

    def assert_good(self, upto: int) -> None:
        got = {s.key.label_dict()["n"]: float(s.values[0]) for s in self.select("good_total")}
        assert got == {str(i): float(i) for i in range(upto + 1)}


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        harness.store.close()


def fixture(name: str) -> bytes:
    return (EXPOSITION / f"otlp_example_{name}.json").read_bytes()


def fixture_protobuf(name: str) -> bytes:
    signal = {"metrics": "metrics", "trace": "traces", "logs": "logs"}[name]
    return bytes(parse_request(fixture(name), "json", signal).SerializeToString())


def query(h: Harness, expr: str, at_s: float) -> list[dict[str, Any]]:
    r = h.request("GET", "/api/v1/query", params={"query": expr, "time": str(at_s)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


# ---------------------------------------------------------------------- OTLP
@pytest.mark.parametrize("path", ["/v1/metrics", "/api/v1/otlp/v1/metrics"])
def test_otlp_metrics_json_fixture(h: Harness, path: str) -> None:
    r = h.post(path, fixture("metrics"), {"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {}
    result = query(h, "my_gauge_ratio", 1544712660.3)
    assert result == [
        {
            "metric": {"__name__": "my_gauge_ratio", "job": "my.service", "my_gauge_attr": "some value"},
            "value": [1544712660.3, "10"],
        }
    ]
    (bucket,) = [s for s in h.select("my_histogram_bucket") if s.key.label_dict()["le"] == "+Inf"]
    assert float(bucket.values[0]) == 2.0
    assert h.store.count("exp_histograms") == 1
    assert h.store.metadata("my_gauge_ratio")["my_gauge_ratio"][0].help.startswith("I am a Gauge")


def test_otlp_metrics_protobuf_gzip(h: Harness) -> None:
    body = gzip.compress(fixture_protobuf("metrics"))
    r = h.post("/v1/metrics", body, {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-protobuf"
    resp = ExportMetricsServiceResponse()
    resp.ParseFromString(r.content)
    assert not resp.HasField("partial_success")
    (s,) = h.select("my_counter_total")
    assert (int(s.ts_ms[0]), float(s.values[0])) == (1544712660300, 5.0)


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_otlp_traces_and_logs(h: Harness, encoding: str) -> None:
    ctype = "application/json" if encoding == "json" else "application/x-protobuf"
    for name, path in [("trace", "/v1/traces"), ("logs", "/v1/logs")]:
        body = fixture(name) if encoding == "json" else fixture_protobuf(name)
        r = h.post(path, body, {"Content-Type": ctype})
        assert r.status_code == 200, r.text
    (span,) = h.store.query_spans("5b8efff798038103d269b633813fc60c")
    assert (span["span_id"], span["parent_span_id"], span["service"]) == (
        "eee19b7ec3c1b174",
        "eee19b7ec3c1b173",
        "my.service",
    )
    assert json.loads(span["attributes"])["my.span.attr"] == "some value"
    assert h.store.count("logs") == 1


def test_otlp_partial_success(h: Harness) -> None:
    doc = json.loads(fixture("metrics"))
    points = doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][1]["gauge"]["dataPoints"]
    points.append({"timeUnixNano": "1544712660300000000", "attributes": []})  # no value
    r = h.post("/v1/metrics", json.dumps(doc).encode(), {"Content-Type": "application/json"})
    assert r.status_code == 200
    ps = r.json()["partialSuccess"]
    assert ps["rejectedDataPoints"] == "1" and "no value" in ps["errorMessage"]
    assert len(h.select("my_gauge_ratio")) == 1


def test_otlp_all_points_rejected_is_400(h: Harness) -> None:
    h.good_write(0)
    doc = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "x",
                                "gauge": {
                                    "dataPoints": [
                                        {
                                            "asDouble": 1,
                                            "attributes": [
                                                {"key": "big", "value": {"stringValue": "v" * 20_000}}
                                            ],
                                        }
                                    ]
                                },
                            }
                        ]
                    }
                ]
            }
        ]
    }
    r = h.post("/v1/metrics", json.dumps(doc).encode(), {"Content-Type": "application/json"})
    assert r.status_code == 400
    assert "limits.max_label_value_bytes" in r.json()["message"]
    h.good_write(1)
    h.assert_good(1)


# ---------------------------------------------------------------------- remote-write
def test_remote_write_round_trip(h: Harness) -> None:
    rng = np.random.default_rng(7)
    rows = [
        (
            "DCGM_FI_DEV_POWER_USAGE",
            {"Hostname": f"n{n}", "gpu": str(g)},
            T0 + 10_000 * t,
            float(rng.normal(300, 20)),
        )
        for n in range(3)
        for g in range(8)
        for t in range(5)
    ]
    batch = SampleBatch.from_rows(rows)
    r = h.remote_write(batch)
    assert r.status_code == 204
    assert r.headers["X-Prometheus-Remote-Write-Samples-Written"] == "120"
    assert r.headers["X-Prometheus-Remote-Write-Histograms-Written"] == "0"
    got = {
        (s.key.label_dict()["Hostname"], s.key.label_dict()["gpu"], int(t)): float(v)
        for s in h.select("DCGM_FI_DEV_POWER_USAGE")
        for t, v in zip(s.ts_ms, s.values, strict=True)
    }
    assert got == {(lab["Hostname"], lab["gpu"], ts): v for _, lab, ts, v in rows}
    (result,) = query(h, 'DCGM_FI_DEV_POWER_USAGE{Hostname="n1", gpu="2"}', (T0 + 40_000) / 1000)
    (expected,) = [v for _, lab, ts, v in rows if lab == {"Hostname": "n1", "gpu": "2"} and ts == T0 + 40_000]
    assert float(result["value"][1]) == expected  # values travel as strings, exactly (repr round trip)
    text = h.request("GET", "/metrics").text
    assert 'sightglass_ingest_samples_total{path="/api/v1/write"} 120.0' in text


def test_remote_write_v2(h: Harness) -> None:
    body = encode_v2_request([({"__name__": "up", "job": "dcgm"}, [(T0, 1.0)])])
    r = h.post("/api/v1/write", snappy_block_compress(body), {**RW_HEADERS, "Content-Type": CONTENT_TYPE_V2})
    assert r.status_code == 204 and r.headers["X-Prometheus-Remote-Write-Samples-Written"] == "1"
    assert [float(s.values[0]) for s in h.select("up")] == [1.0]


def test_remote_write_missing_encoding_means_snappy(h: Harness) -> None:
    body = snappy_block_compress(encode_write_request([({"__name__": "up"}, [(T0, 1.0)])]))
    r = h.post("/api/v1/write", body, {"Content-Type": "application/x-protobuf"})
    assert r.status_code == 204


def test_special_values_read_back(h: Harness) -> None:
    series = [
        ({"__name__": "special", "k": k}, [(T0, v)])
        for k, v in [("nan", math.nan), ("inf", math.inf), ("ninf", -math.inf), ("zero", -0.0)]
    ]
    series.append(({"__name__": "special", "k": "stale"}, [(T0 - 1, 5.0), (T0, STALE_NAN)]))
    r = h.post("/api/v1/write", snappy_block_compress(encode_write_request(series)), RW_HEADERS)
    assert r.status_code == 204
    got = {s.key.label_dict()["k"]: s for s in h.select("special")}
    assert math.isnan(got["nan"].values[0]) and not got["nan"].stale[0]
    assert got["inf"].values[0] == math.inf and got["ninf"].values[0] == -math.inf
    assert got["stale"].stale.tolist() == [False, True]
    result = {x["metric"]["k"]: x["value"][1] for x in query(h, "special", T0 / 1000)}
    assert (result["nan"], result["inf"], result["ninf"]) == ("NaN", "+Inf", "-Inf")
    assert "stale" not in result  # a stale marker ends the series


def test_duplicate_and_out_of_order_samples(h: Harness) -> None:
    """Accepted; on read each timestamp appears once, ascending, and the last write wins."""
    first = [({"__name__": "dup"}, [(T0 + 2000, 2.0), (T0, 0.0), (T0 + 1000, 1.0), (T0 + 1000, 1.5)])]
    assert (
        h.post("/api/v1/write", snappy_block_compress(encode_write_request(first)), RW_HEADERS).status_code
        == 204
    )
    second = [({"__name__": "dup"}, [(T0, 9.0)])]
    assert (
        h.post("/api/v1/write", snappy_block_compress(encode_write_request(second)), RW_HEADERS).status_code
        == 204
    )
    (s,) = h.select("dup")
    assert s.ts_ms.tolist() == [T0, T0 + 1000, T0 + 2000]
    assert s.values.tolist() == [9.0, 1.5, 2.0]


def test_native_histogram_via_remote_write(h: Harness) -> None:
    from sightglass.model import ExpHistogramPoint, SeriesKey

    hp = ExpHistogramPoint(
        SeriesKey("ttft_seconds", (("model", "m"),)), T0, 2, 5.0, 1.25, 1.0, 0.0, -1, (1.0, 3.0), 0, ()
    )
    r = h.post("/api/v1/write", snappy_block_compress(encode_write_request([], histograms=[hp])), RW_HEADERS)
    assert r.status_code == 204 and r.headers["X-Prometheus-Remote-Write-Histograms-Written"] == "1"
    assert h.store.count("exp_histograms") == 1
    assert [float(s.values[0]) for s in h.select("ttft_seconds_count")] == [5.0]


# ---------------------------------------------------------------------- bad requests
def _bomb_gzip() -> bytes:
    return gzip.compress(b"\0" * (8 * 1024 * 1024), compresslevel=9)


BAD_REQUESTS: list[tuple[str, str, Any, dict[str, str], int, str]] = [
    # (id, path, body, headers, status, text in the error)
    (
        "rw-truncated",
        "/api/v1/write",
        lambda: snappy_block_compress(encode_write_request([({"__name__": "x"}, [(T0, 1.0)] * 5)])[:-7]),
        RW_HEADERS,
        400,
        "truncated",
    ),
    ("rw-not-snappy", "/api/v1/write", lambda: b"plain bytes", RW_HEADERS, 400, "invalid snappy"),
    (
        "rw-json-type",
        "/api/v1/write",
        lambda: b"{}",
        {**RW_HEADERS, "Content-Type": "application/json"},
        415,
        "unsupported Content-Type",
    ),
    (
        "rw-unknown-proto",
        "/api/v1/write",
        lambda: b"",
        {**RW_HEADERS, "Content-Type": "application/x-protobuf;proto=x.Y"},
        415,
        "unsupported remote-write message",
    ),
    (
        "rw-snappy-bomb",
        "/api/v1/write",
        lambda: snappy_block_compress(b"\0" * (2 * 1024 * 1024)),
        RW_HEADERS,
        413,
        "decompressed body exceeds 1048576 bytes",
    ),
    (
        "rw-forged-snappy-header",
        "/api/v1/write",
        lambda: b"\x80\x80\x80\x80\x08junk",
        RW_HEADERS,
        413,
        "exceeds",
    ),
    (
        "rw-bad-metric-name",
        "/api/v1/write",
        lambda: snappy_block_compress(encode_write_request([({"__name__": "bad-name"}, [(T0, 1.0)])])),
        RW_HEADERS,
        400,
        "invalid metric name 'bad-name'",
    ),
    (
        "rw-bad-label-name",
        "/api/v1/write",
        lambda: snappy_block_compress(encode_write_request([({"__name__": "m", "0bad": "v"}, [(T0, 1.0)])])),
        RW_HEADERS,
        400,
        "invalid label name '0bad'",
    ),
    (
        "rw-huge-label-value",
        "/api/v1/write",
        lambda: snappy_block_compress(
            encode_write_request([({"__name__": "m", "v": "x" * 70_000}, [(T0, 1.0)])])
        ),
        RW_HEADERS,
        400,
        "limits.max_label_value_bytes",
    ),
    (
        "rw-unknown-encoding",
        "/api/v1/write",
        lambda: b"x",
        {**RW_HEADERS, "Content-Encoding": "br"},
        415,
        "Content-Encoding",
    ),
    (
        "otlp-text-type",
        "/v1/metrics",
        lambda: b"x",
        {"Content-Type": "text/plain"},
        415,
        "unsupported Content-Type",
    ),
    (
        "otlp-invalid-json",
        "/v1/metrics",
        lambda: b'{"resourceMetrics": [',
        {"Content-Type": "application/json"},
        400,
        "invalid OTLP JSON",
    ),
    (
        "otlp-truncated-protobuf",
        "/v1/metrics",
        lambda: fixture_protobuf("metrics")[:-20],
        {"Content-Type": "application/x-protobuf"},
        400,
        "ExportMetricsServiceRequest.resource_metrics",
    ),
    (
        "otlp-gzip-bomb",
        "/v1/metrics",
        _bomb_gzip,
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        413,
        "decompressed body exceeds",
    ),
    (
        "otlp-corrupt-gzip",
        "/v1/traces",
        lambda: b"\x1f\x8b garbage",
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        400,
        "gzip",
    ),
    (
        "otlp-oversized",
        "/v1/logs",
        lambda: b" " * (2 * 1024 * 1024 + 1),
        {"Content-Type": "application/json"},
        413,
        "exceeds the limit of 2097152 bytes",
    ),
    (
        "lineage-invalid",
        "/api/v1/lineage",
        lambda: b'{"eventType": "START"}',
        {"Content-Type": "application/json"},
        400,
        "eventTime is required",
    ),
    (
        "lineage-xml",
        "/api/v1/lineage",
        lambda: b"<x/>",
        {"Content-Type": "application/xml"},
        415,
        "Content-Type",
    ),
]


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(
        tmp_path,
        max_body_bytes=2 * 1024 * 1024,
        max_decompressed_bytes=1024 * 1024,
        max_new_series_per_request=50,
    )
    try:
        yield harness
    finally:
        harness.store.close()


def test_bad_requests_never_cost_good_data(small: Harness) -> None:
    h = small
    h.good_write(0)
    for i, (name, path, body, headers, status, text) in enumerate(BAD_REQUESTS, start=1):
        r = h.post(path, body(), headers)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert text in r.text, (name, r.text)
        h.good_write(i)
        h.assert_good(i)
    metrics = h.request("GET", "/metrics").text
    assert 'sightglass_ingest_rejected_requests_total{path="/api/v1/write",reason="too_large"} 2.0' in metrics
    assert 'reason="invalid_metric_name"' in metrics


def test_oversized_chunked_body_is_cut_off(small: Harness) -> None:
    async def chunks() -> Any:
        for _ in range(64):
            yield b"\0" * 65536  # 4 MiB in all, no Content-Length

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=small.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sightglass") as c:
            return await c.post(
                "/v1/metrics", content=chunks(), headers={"Content-Type": "application/x-protobuf"}
            )

    r = asyncio.run(go())
    assert r.status_code == 413
    small.good_write(0)
    small.assert_good(0)


def test_too_many_new_series(small: Harness) -> None:
    small.good_write(0)
    batch = SampleBatch.from_rows([("wide", {"i": str(i)}, T0, 1.0) for i in range(51)])
    r = small.remote_write(batch)
    assert r.status_code == 400
    assert "limits.max_new_series_per_request" in r.text
    assert small.select("wide") == []
    # the same series arriving in two requests under the limit are fine
    assert (
        small.remote_write(
            SampleBatch.from_rows([("wide", {"i": str(i)}, T0, 1.0) for i in range(40)])
        ).status_code
        == 204
    )
    assert (
        small.remote_write(
            SampleBatch.from_rows([("wide", {"i": str(i)}, T0, 1.0) for i in range(51)])
        ).status_code
        == 204
    )
    assert len(small.select("wide")) == 51
    small.good_write(1)
    small.assert_good(1)


def test_concurrent_good_and_bad_requests(h: Harness) -> None:
    """A bad batch group-committed with good ones fails alone."""
    good = [SampleBatch.from_rows([("conc", {"w": str(i)}, T0, float(i))]) for i in range(8)]

    async def go() -> list[int]:
        transport = httpx.ASGITransport(app=h.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sightglass") as c:
            reqs = [
                c.post("/api/v1/write", content=snappy_block_compress(encode_batch(b)), headers=RW_HEADERS)
                for b in good
            ]
            bad = encode_write_request([({"__name__": "conc", "bad-label": "x"}, [(T0, 1.0)])])
            reqs.insert(3, c.post("/api/v1/write", content=snappy_block_compress(bad), headers=RW_HEADERS))
            return [r.status_code for r in await asyncio.gather(*reqs)]

    codes = asyncio.run(go())
    assert codes.count(204) == 8 and codes.count(400) == 1
    assert sorted(float(s.values[0]) for s in h.select("conc")) == [float(i) for i in range(8)]


# ---------------------------------------------------------------------- OpenLineage
def test_lineage(h: Harness) -> None:
    events = [
        {
            "eventType": "START",
            "eventTime": "2026-11-24T12:00:00Z",
            "run": {"runId": "r1"},
            "job": {"namespace": "spark", "name": "tokenize"},
            "inputs": [{"namespace": "s3://raw", "name": "c"}],
        },
        {
            "eventType": "COMPLETE",
            "eventTime": "2026-11-24T12:05:00Z",
            "run": {"runId": "r1"},
            "job": {"namespace": "spark", "name": "tokenize"},
            "outputs": [{"namespace": "s3://tok", "name": "v1"}],
        },
    ]
    r = h.post("/api/v1/lineage", json.dumps(events).encode(), {"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json() == {"status": "success", "data": {"events": 2}}
    r = h.post("/api/v1/lineage", json.dumps(events[0]).encode(), {})
    assert r.status_code == 200
    assert h.store.count("lineage") == 3
    r = h.post("/api/v1/lineage", b"[{}]", {"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"
    assert "event[0]: eventType is required" in r.json()["error"]
    assert h.store.count("lineage") == 3


# ---------------------------------------------------------------------- a real server
def test_real_uvicorn_server(h: Harness) -> None:
    config = uvicorn.Config(h.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as c:
            batch = SampleBatch.from_rows([("real_http", {"a": "b"}, T0, 42.0)])
            r = c.post(
                "/api/v1/write", content=snappy_block_compress(encode_batch(batch)), headers=RW_HEADERS
            )
            assert r.status_code == 204
            r = c.post(
                "/v1/metrics",
                content=gzip.compress(fixture_protobuf("metrics")),
                headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
            )
            assert r.status_code == 200
            # a 1 GB Content-Length is refused from the headers, before the body is read
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(
                    b"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                    b"Content-Length: 1000000000\r\n\r\n" + b"\0" * 1000
                )
                assert sock.recv(100).startswith(b"HTTP/1.1 413")
            r = c.get("/api/v1/query", params={"query": "real_http", "time": str(T0 / 1000)})
            assert r.json()["data"]["result"][0]["value"][1] == "42"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_empty_requests_are_fine(h: Harness) -> None:
    empty: list[tuple[str, Any]] = [
        ("/v1/metrics", ExportMetricsServiceRequest),
        ("/v1/traces", ExportTraceServiceRequest),
        ("/v1/logs", ExportLogsServiceRequest),
    ]
    for path, signal in empty:
        r = h.post(path, signal().SerializeToString(), {"Content-Type": "application/x-protobuf"})
        assert r.status_code == 200
    assert h.post("/api/v1/write", snappy_block_compress(b""), RW_HEADERS).status_code == 204
    assert json_format.MessageToDict(ExportMetricsServiceRequest()) == {}


# ---------------------------------------------------------------------- store regressions found here
def test_store_gives_a_key_repeated_in_one_batch_one_series(h: Harness) -> None:
    """``SampleBatch.extend`` can list a series twice; the store must not create it twice."""
    batch = SampleBatch.from_rows([("twice", {"a": "1"}, T0, 1.0)])
    batch.extend(SampleBatch.from_rows([("twice", {"a": "1"}, T0 + 1, 2.0)]))
    assert len(batch.series) == 2
    h.store.append(batch)
    assert len(h.store.series([[Matcher("__name__", "=", "twice")]])) == 1
    (s,) = h.select("twice")
    assert s.values.tolist() == [1.0, 2.0]


def test_store_histogram_of_series_id_zero_is_not_duplicated(h: Harness) -> None:
    from sightglass.model import ExpHistogramPoint, SeriesKey

    hp = ExpHistogramPoint(SeriesKey("first_hist", ()), T0, 0, 1.0, 1.0, 0.0, 0.0, 0, (1.0,), 0, ())
    for i in range(2):
        b = SampleBatch()
        b.exp_histograms.append(hp)
        h.store.append(b)
        assert len(h.store.series([[Matcher("__name__", "=", "first_hist")]])) == 1, i

"""The read side of the Prometheus API through the real app, as Grafana and promtool call it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from sightglass.config import Config
from sightglass.model import MetricMetadata, MetricType, SampleBatch
from sightglass.server import build_app
from sightglass.store.duckdb import DuckDBStore

T0 = 1_700_000_000_000


def _call(store: DuckDBStore, method: str, url: str, **kw: Any) -> httpx.Response:
    app, _ = build_app(Config(data=str(store.data_dir)), store)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sg") as c:
            return await c.request(method, url, **kw)

    return asyncio.run(go())


def _seed(store: DuckDBStore) -> None:
    b = SampleBatch.from_rows(
        [
            ("up", {"job": j, "instance": f"{j}:1"}, T0 + i * 15_000, 1.0)
            for j in ("dcgm", "node")
            for i in range(4)
        ]
        + [("vllm:num_requests_running", {"model_name": "llama"}, T0, 3.0)]
    )
    b.metadata["up"] = MetricMetadata("up", MetricType.GAUGE, "target up", "")
    store.append(b)


def test_series_labels_values_metadata(store: DuckDBStore) -> None:
    _seed(store)
    r = _call(store, "GET", "/api/v1/series", params={"match[]": 'up{job="dcgm"}'})
    assert r.status_code == 200
    assert r.json() == {
        "status": "success",
        "data": [{"__name__": "up", "instance": "dcgm:1", "job": "dcgm"}],
    }
    r = _call(store, "POST", "/api/v1/series", data={"match[]": ["up", "vllm:num_requests_running"]})
    assert len(r.json()["data"]) == 3
    assert _call(store, "GET", "/api/v1/labels").json()["data"] == [
        "__name__",
        "instance",
        "job",
        "model_name",
    ]
    r = _call(store, "GET", "/api/v1/label/__name__/values")
    assert r.json()["data"] == ["up", "vllm:num_requests_running"]
    r = _call(store, "GET", "/api/v1/label/job/values", params={"match[]": "up", "limit": "1"})
    assert r.json()["data"] == ["dcgm"]
    assert _call(store, "GET", "/api/v1/metadata").json()["data"]["up"] == [
        {"type": "gauge", "help": "target up", "unit": ""}
    ]
    assert _call(store, "GET", "/api/v1/status/buildinfo").json()["data"]["version"]


def test_query_and_range_envelopes(store: DuckDBStore) -> None:
    _seed(store)
    r = _call(
        store, "GET", "/api/v1/query", params={"query": 'up{job="node"}', "time": str((T0 + 30_000) / 1000)}
    )
    assert r.json()["data"]["result"] == [
        {"metric": {"__name__": "up", "instance": "node:1", "job": "node"}, "value": [1700000030, "1"]}
    ]
    r = _call(
        store,
        "POST",
        "/api/v1/query_range",
        data={
            "query": 'up{job="node"}',
            "start": str(T0 / 1000),
            "end": str((T0 + 45_000) / 1000),
            "step": "15",
        },
    )
    body = r.json()
    assert body["data"]["resultType"] == "matrix"
    assert [v[0] for v in body["data"]["result"][0]["values"]] == [
        1700000000,
        1700000015,
        1700000030,
        1700000045,
    ]


def test_errors_use_the_prometheus_envelope(store: DuckDBStore) -> None:
    _seed(store)
    cases = [
        ("/api/v1/query", {"query": "up{"}),
        ("/api/v1/query", {}),
        ("/api/v1/query", {"query": "up", "time": "soon"}),
        ("/api/v1/query_range", {"query": "up", "start": "1", "end": "0", "step": "1"}),
        ("/api/v1/query_range", {"query": "up", "start": "0", "end": "1", "step": "0"}),
        ("/api/v1/query_range", {"query": "up", "start": "0", "end": "100000", "step": "1"}),
        ("/api/v1/series", {}),
        ("/api/v1/series", {"match[]": "rate(up[5m])"}),
        ("/api/v1/labels", {"limit": "-1"}),
    ]
    for path, params in cases:
        r = _call(store, "GET", path, params=params)
        assert r.status_code == 400, (path, params, r.text)
        body = r.json()
        assert body["status"] == "error" and body["errorType"] == "bad_data" and body["error"], body


def test_introspection_and_self_metrics(store: DuckDBStore) -> None:
    assert _call(store, "GET", "/-/health").json() == {"status": "ok"}
    assert _call(store, "GET", "/-/version").json()["data"]["version"]
    _call(store, "GET", "/api/v1/labels")
    assert "sightglass_http_request_duration_seconds" in _call(store, "GET", "/metrics").text


def test_admin_compact_moves_the_head_into_sealed_days(store: DuckDBStore) -> None:
    _seed(store)
    r = _call(store, "POST", "/-/compact")
    assert r.status_code == 200
    d = r.json()["data"]
    assert d["moved_samples"] == 9 and d["head_samples"] == 0 and d["compacted_samples"] == 9
    assert _call(store, "GET", "/-/compact").status_code == 405


def test_config_view_redacts_credentials() -> None:
    from sightglass.api.app import redact

    cfg = {
        "alerting": {"notifiers": [{"url": "http://h/x", "headers": {"Authorization": "Bearer s3cret"}}]},
        "backends": {"catalog": {"dsn": "postgresql://u:pw@db/sg"}, "metrics": {"url": "http://u:pw@vm:8428"}},
        "listen": "127.0.0.1:9464",
        "token": "",
    }
    out = redact(cfg)
    assert out["alerting"]["notifiers"][0]["headers"] == "<redacted>"
    assert out["alerting"]["notifiers"][0]["url"] == "http://h/x"
    assert out["backends"]["catalog"]["dsn"] == "<redacted>"
    assert out["backends"]["metrics"]["url"] == "http://<redacted>@vm:8428"
    assert out["listen"] == "127.0.0.1:9464"
    assert "s3cret" not in repr(out) and "pw" not in repr(out)

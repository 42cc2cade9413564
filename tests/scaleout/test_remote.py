"""The remote metric store on real VictoriaMetrics and Prometheus, and its answers to bad input:
hostile label values, bad PromQL, a backend that is down or answers garbage, limits, bad config."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from scaleout_helpers import Peer, fresh_database

from sightglass.cli import cli
from sightglass.config import Config, ConfigError
from sightglass.ingest.remote_write import compress, encode_write_request
from sightglass.model import Matcher, SampleBatch, SeriesKey
from sightglass.promql.result import QueryError
from sightglass.scaleout.config import load_backends
from sightglass.scaleout.store import open_scaleout
from sightglass.server import build_app
from sightglass.store.base import LimitExceeded, StoreError
from sightglass.store.remote import RemoteEngine, RemoteMetricStore, RemoteOptions, regex_literal

HOSTILE = ['a"b', "back\\slash", "new\nline", "re.ge+x|(x)*", "ünï cödé ✓", "{}[]", "trailing\\"]


@pytest.fixture(params=["vm", "prom"])
def peer(request: pytest.FixtureRequest) -> Peer:
    p: Peer = request.getfixturevalue(request.param)
    return p


def _flush(peer: Peer) -> None:
    if peer.kind == "vm":
        import _peers

        _peers.vm_flush(peer.server)
        time.sleep(1.2)


def test_hostile_label_values_round_trip(peer: Peer) -> None:
    metric = f"sg_hostile_{int(time.time() * 1000)}"
    now = int(time.time() * 1000) - 30_000
    rows = [
        (metric, {"v": v, "i": str(i)}, now + k * 1000, float(i * 10 + k))
        for i, v in enumerate(HOSTILE)
        for k in range(3)
    ]
    rows.sort(key=lambda r: r[2])
    w = RemoteMetricStore(RemoteOptions(peer.url, peer.write_url))
    assert w.append(SampleBatch.from_rows(rows)).samples_written == len(rows)
    w.close()
    _flush(peer)
    r = RemoteMetricStore(RemoteOptions(peer.url, None, refresh_every_s=0))
    try:
        for i, v in enumerate(HOSTILE):
            got = r.select([Matcher("__name__", "=", metric), Matcher("v", "=", v)], now - 1, now + 5000)
            assert [(s.key.label_dict()["v"], s.values.tolist()) for s in got] == [
                (v, [i * 10.0, i * 10 + 1, i * 10 + 2])
            ]
            got = r.select(
                [Matcher("__name__", "=", metric), Matcher("v", "=~", regex_literal(v))], now - 1, now + 5000
            )
            assert len(got) == 1, v
        # read_ids of a subset narrows by the label telling them apart; only those come back
        ids = r.select_ids([Matcher("__name__", "=", metric)])
        assert len(ids) == len(HOSTILE)
        some = ids[[0, 3, 5]]
        got = r.read_ids(some, now - 1, now + 5000)
        assert sorted(s.key.label_dict()["v"] for s in got) == sorted(
            r.key_of(int(i)).label_dict()["v"] for i in some
        )
        assert sorted(r.label_values("v", [[Matcher("__name__", "=", metric)]])) == sorted(HOSTILE)
    finally:
        r.close()


def test_bad_promql_is_the_backends_error(peer: Peer) -> None:
    store = RemoteMetricStore(RemoteOptions(peer.url, None))
    try:
        with pytest.raises(QueryError) as e:
            RemoteEngine(store).instant("sum(rate(x[5m])", int(time.time() * 1000))
        assert e.value.error_type in ("bad_data", "execution") and str(e.value)
    finally:
        store.close()


def test_down_backend_read_only_and_limits() -> None:
    down = RemoteMetricStore(
        RemoteOptions("http://127.0.0.1:9", "http://127.0.0.1:9/api/v1/write", timeout_s=2)
    )
    try:
        with pytest.raises(StoreError, match=r"127\.0\.0\.1:9"):
            down.select([Matcher("__name__", "=", "x")], 0, 1000)
        batch = SampleBatch.from_rows([("x", {"a": str(i)}, 1000, 1.0) for i in range(5)])
        with pytest.raises(LimitExceeded, match="max_new_series_per_request"):
            down.append(batch, max_new_series=3)
        with pytest.raises(StoreError, match="remote write"):
            down.append(batch)
        assert len(down.index) == 0  # nothing acknowledged, nothing known
    finally:
        down.close()
    ro = RemoteMetricStore(RemoteOptions("http://127.0.0.1:9", None))
    with pytest.raises(StoreError, match="read-only"):
        ro.append(batch)
    ro.close()


@pytest.mark.parametrize(
    ("status", "body", "match"),
    [
        (200, b"<html>not json</html>", "without JSON"),
        (502, b'{"status":"error","error":"upstream down"}', "upstream down"),
        (200, b'{"status":"success","data":{"resultType":"vector","result":[]}}', "answered vector"),
        (200, b'{"status":"success","data":{"resultType":"bogus","result":1}}', "unknown result type"),
    ],
)
def test_garbage_answers_are_clear_errors(status: int, body: bytes, match: str) -> None:
    transport = httpx.MockTransport(lambda req: httpx.Response(status, content=body))
    store = RemoteMetricStore(RemoteOptions("http://tsdb"), client=httpx.Client(transport=transport))
    with pytest.raises(StoreError, match=match):
        if match == "unknown result type":
            RemoteEngine(store).instant("up", 0)
        else:
            store.select([Matcher("__name__", "=", "up")], 0, 1000)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"metrics": {"url": "ftp://x"}}, r"backends\.metrics\.url"),
        ({"metrics": {"url": "http://x", "kind": "influx"}}, r"backends\.metrics\.kind"),
        ({"metrics": {"url": "http://x"}, "catalog": {"kind": "postgres"}}, "needs a dsn"),
        ({"metrics": {"url": "http://x"}, "replicas": {"enabled": True}}, "catalog.kind"),
        ({"metrics": {"url": "http://x"}, "bogus": 1}, r"backends\.bogus"),
        ({"metrics": {"url": "http://x", "refresh_every": "soon"}}, "refresh_every"),
        ({"catalog": {"kind": "postgres", "dsn": "postgresql://x"}}, "needs backends.metrics"),
    ],
)
def test_bad_backends_config_names_the_setting(raw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_backends(raw)


def test_attach_flag_rejects_a_bad_url(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["up", "--attach", "ftp://prom:9090", "--data", str(tmp_path)])
    assert r.exit_code != 0 and "--attach needs an http://" in r.output


def test_server_on_the_backends(vm: Peer, pg_server: Any, tmp_path: Path) -> None:
    """The HTTP API over VictoriaMetrics + PostgreSQL: remote-write in, PromQL and series out."""
    config = Config.load(None, data=str(tmp_path / "d")).model_copy(
        update={
            "backends": {
                "metrics": {
                    "kind": "victoriametrics",
                    "url": vm.url,
                    "remote_write_url": vm.write_url,
                    "refresh_every": "0s",
                },
                "catalog": {"kind": "postgres", "dsn": fresh_database(pg_server)},
            }
        }
    )
    store = open_scaleout(config)
    assert store is not None
    try:
        app, _ctx = build_app(config, store)
        asyncio.run(_api_checks(app, store, vm))
    finally:
        store.close()


async def _api_checks(app: Any, store: Any, vm: Peer) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sg") as client:
        now = int(time.time() * 1000) - 20_000
        metric = f"sg_api_{now}"
        body = compress(
            encode_write_request([({"__name__": metric, "gpu": "0"}, [(now, 1.5), (now + 1000, 2.5)])])
        )
        r = await client.post("/api/v1/write", content=body, headers={"Content-Encoding": "snappy",
                              "Content-Type": "application/x-protobuf"})  # fmt: skip
        assert r.status_code == 204, r.text
        await asyncio.to_thread(_flush, vm)
        r = await client.get(
            "/api/v1/query", params={"query": f"sum({metric})", "time": str((now + 1000) / 1000)}
        )
        assert r.json()["data"]["result"][0]["value"][1] == "2.5"
        r = await client.get("/api/v1/series", params={"match[]": metric})
        assert r.json()["data"] == [{"__name__": metric, "gpu": "0"}]
        r = await client.get("/api/v1/query", params={"query": "sum(", "time": "1"})
        assert r.status_code == 400 and r.json()["status"] == "error"
        stats = (await client.get("/-/stats")).json()["data"]
        assert stats["store"] == "scale-out" and stats["catalog"] == "postgres"
        assert SeriesKey.of(metric, {"gpu": "0"}) in store.index.ids
        assert json.dumps(stats)  # serialisable
        assert np.isfinite(store.metrics.newest_ms)


def test_backends_check_command(prom: Peer, tmp_path: Path) -> None:
    env = {"SIGHTGLASS_DATA": str(tmp_path / "d")}
    r = CliRunner().invoke(cli, ["backends", "check", "--attach", prom.url, "--json"], env=env)
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["read_only"] is True and info["backend"] == prom.url and info["catalog"] == "duckdb"
    r = CliRunner().invoke(cli, ["backends", "check"], env=env)
    assert r.exit_code != 0 and "no [backends] metrics" in r.output

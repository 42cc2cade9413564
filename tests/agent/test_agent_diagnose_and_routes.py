"""Self-diagnosis (why attribution is missing), the catalog endpoint (bad input), listen mode, CLI."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_paths import FIXTURES
from click.testing import CliRunner

from sightglass.agent.collection import Collection
from sightglass.agent.config import AgentConfig, load_agent_config
from sightglass.agent.diagnose import diagnose
from sightglass.agent.exposition import MetricsServer, render
from sightglass.agent.kubelet import PodDevice
from sightglass.agent.nvml import GpuProcess
from sightglass.agent.routes import CATALOG_PATH
from sightglass.agent.smi_xml import SmiXmlBackend
from sightglass.cli import cli
from sightglass.config import Config, ConfigError, LimitsConfig
from sightglass.model import ConfigSnapshot, Event, Relation
from sightglass.server import build_app
from sightglass.store.duckdb import DuckDBStore, StoreOptions

PROCFS = FIXTURES / "procfs"


class _Procs(SmiXmlBackend):
    pids: tuple[int, ...] = ()

    def processes(self, index: int) -> list[GpuProcess]:
        return [GpuProcess(pid, 1 << 30) for pid in self.pids]


def _backend(*pids: int) -> _Procs:
    b = _Procs((FIXTURES / "tesla-t4.xml").read_text())
    b.pids = pids
    return b


def _findings(report: Any, area: str = "attribution") -> list[tuple[str, str]]:
    return [(c.status, c.detail) for c in report.by_area(area)]


def test_diagnose_says_why_attribution_is_missing() -> None:
    cfg = AgentConfig(procfs=str(PROCFS), sysfs=str(FIXTURES / "sysfs"), hostname="gpu01", expected_gpus=2)
    kube = [PodDevice("ml", "trainer", "c", "nvidia.com/gpu", "GPU-someone-else")]

    class _K:
        def list_devices(self) -> list[PodDevice]:
            return kube

    r = diagnose(
        cfg,
        backend=_backend(4101, 999999, 4104, 4107),
        kubelet=_K(),
        slurm=None,
        own_pid_namespace_is_host=True,
    )
    f = _findings(r)
    assert ("fail", 'GPU 0 PID 999999: not in this procfs ("No such process")') in f
    assert any(s == "warn" and "PID 4101: pod 0b9c8f2e" in d and "did not assign" in d for s, d in f)
    assert any(s == "warn" and "PID 4104: docker fedcba987654 outside Kubernetes" in d for s, d in f)
    assert any(s == "warn" and "PID 4107" in d and "'nvidia-smi'" in d for s, d in f)
    gpu = _findings(r, "gpu")
    assert ("fail", "1 of 2 expected GPUs present") in gpu
    assert any("InfiniBand: i40iw0, mlx4_0" in d for _, d in _findings(r, "fabric"))
    assert _findings(r, "storage") == [("ok", f"3 NFS mounts in {PROCFS}/self/mountstats")]
    assert r.to_dict()["ok"] is False


def test_diagnose_agent_in_its_own_pid_namespace() -> None:
    cfg = AgentConfig(procfs=str(PROCFS))
    r = diagnose(cfg, backend=_backend(), own_pid_namespace_is_host=False)
    (bad,) = [c for c in r.checks if c.status == "fail"]
    assert "own PID namespace" in bad.detail and "hostPID: true" in bad.hint


def test_diagnose_without_nvidia_hardware_here() -> None:
    r = diagnose(AgentConfig(), kubelet=None)
    (gpu,) = r.by_area("gpu")
    assert gpu.status == "warn" and gpu.detail.startswith("NVML unavailable: ")


def test_cli_diagnose_and_once() -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["agent", "diagnose", "--json"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.output)
    assert {c["area"] for c in body["checks"]} >= {"gpu", "attribution"}
    res = runner.invoke(cli, ["agent", "--once", "--sysfs", str(FIXTURES / "sysfs")])
    assert res.exit_code == 0, res.output
    assert (
        "node_cpu_seconds_total{" in res.output
        and "node_infiniband_port_data_received_bytes_total{" in res.output
    )
    res = runner.invoke(cli, ["agent"])
    assert res.exit_code != 0 and "--server URL" in res.output


@pytest.mark.parametrize(
    ("raw", "msg"),
    [
        ({"server": "ftp://x"}, "agent.server: "),
        ({"server": "http://a", "listen": "0.0.0.0:9469"}, "not both"),
        ({"interval": "soon"}, "agent.interval: "),
        ({"collectors": ["host", "gpus"]}, "unknown collector(s) gpus"),
        ({"spool_max_bytes": 10}, "agent.spool_max_bytes"),
        ({"listen": "nope"}, "agent.listen"),
        ({"bogus": 1}, "agent.bogus"),
    ],
)
def test_bad_agent_config_names_the_setting(raw: dict[str, Any], msg: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_agent_config(raw)
    assert msg in str(e.value)


# ------------------------------------------------------------------ the catalog endpoint
class _App:
    def __init__(self, tmp_path: Path) -> None:
        self.store = DuckDBStore(tmp_path / "data", options=StoreOptions(compact_every_s=3600))
        limits = LimitsConfig(max_body_bytes=1 << 20, max_decompressed_bytes=4 << 20)
        self.app, _ = build_app(Config(data=str(tmp_path / "data"), limits=limits), self.store)

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self.app), base_url="http://s"
            ) as c:
                return await c.post(
                    CATALOG_PATH, content=body, headers=headers or {"Content-Type": "application/json"}
                )

        return asyncio.run(go())


@pytest.fixture
def app(tmp_path: Path) -> Iterator[_App]:
    a = _App(tmp_path)
    try:
        yield a
    finally:
        a.store.close()


def test_catalog_accepts_the_agents_payload(app: _App) -> None:
    col = Collection(1_700_000_000_000)
    col.events.append(
        Event(col.ts_ms, "gpu.xid", {"Hostname": "n1", "gpu": "0"}, {"xid": 79}, "critical", "agent")
    )
    col.configs.append(
        ConfigSnapshot(col.ts_ms, {"Hostname": "n1", "gpu": "0"}, {"power_limit_w": 700.0}, "agent")
    )
    col.relations.append(Relation("job:106", "job-uses-gpu", "gpu:GPU-1", col.ts_ms - 1000, col.ts_ms))
    body = gzip.compress(json.dumps(col.catalog_payload()).encode())
    r = app.post(body, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"events": 1, "configs": 1, "relations": 1}
    (ev,) = app.store.query_events(0, 2**50, kind="gpu.xid")
    assert ev.attributes == {"xid": 79} and ev.severity == "critical"
    assert app.store.count("configs") == 1 and app.store.relations()[0].end_ms == col.ts_ms


@pytest.mark.parametrize(
    ("body", "status", "msg"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 400, "must be a JSON object"),
        (b'{"events": {}}', 400, "events must be a list"),
        (b'{"spans": []}', 400, "unknown field(s) spans"),
        (b'{"events": [{"ts_ms": -1, "kind": "x", "entity": {}}]}', 400, "events[0].ts_ms"),
        (b'{"events": [{"ts_ms": 1, "kind": "", "entity": {}}]}', 400, "events[0].kind"),
        (b'{"events": [{"ts_ms": 1, "kind": "x", "entity": {"a": 1}}]}', 400, "events[0].entity"),
        (
            b'{"events": [{"ts_ms": 1, "kind": "x", "entity": {}, "severity": "apocalyptic"}]}',
            400,
            "severity",
        ),
        (b'{"configs": [{"ts_ms": 1, "entity": {}, "config": "x"}]}', 400, "configs[0].config"),
        (
            b'{"relations": [{"src": "a", "kind": "k", "dst": "b", "start_ms": 5, "end_ms": 1}]}',
            400,
            "before start_ms",
        ),
        (b'{"relations": [{"src": "a", "kind": "k", "dst": "b", "start_ms": true}]}', 400, "start_ms"),
    ],
)
def test_catalog_bad_input_is_refused_with_the_reason(app: _App, body: bytes, status: int, msg: str) -> None:
    r = app.post(body)
    assert r.status_code == status and msg in r.json()["error"], r.text
    assert app.store.count("events") == 0


def test_catalog_half_valid_stores_nothing(app: _App) -> None:
    good = {"ts_ms": 1, "kind": "gpu.xid", "entity": {"gpu": "0"}}
    r = app.post(json.dumps({"events": [good, {**good, "ts_ms": "yesterday"}]}).encode())
    assert r.status_code == 400 and "events[1].ts_ms" in r.json()["error"]
    assert app.store.count("events") == 0


def test_catalog_wrong_type_too_large_and_bombs(app: _App) -> None:
    assert app.post(b"{}", {"Content-Type": "text/plain"}).status_code == 415
    assert app.post(b"x" * (2 << 20)).status_code == 413
    bomb = gzip.compress(b"{" + b" " * (8 << 20) + b"}")
    r = app.post(bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code in (400, 413), r.text
    assert (
        app.post(
            b"\x1f\x8bnot gzip", {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        ).status_code
        == 400
    )


# ------------------------------------------------------------------ --listen mode
def test_listen_mode_serves_metrics() -> None:
    col = Collection(1_000)
    col.add("node_load1", {"instance": "n1"}, 0.5, help="1m load average.")
    col.add("DCGM_FI_DEV_GPU_TEMP", {"gpu": "0", "modelName": 'Tesla "T4"'}, 25)
    srv = MetricsServer("127.0.0.1", 0)
    srv.start()
    try:
        srv.publish(col.batch())
        r = httpx.get(srv.url + "/metrics", timeout=5)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert 'DCGM_FI_DEV_GPU_TEMP{gpu="0",modelName="Tesla \\"T4\\""} 25' in r.text
        assert "# TYPE node_load1 gauge" in r.text
        assert httpx.get(srv.url + "/nope", timeout=5).status_code == 404
    finally:
        srv.stop()
    from prometheus_client.parser import text_string_to_metric_families

    names = {f.name for f in text_string_to_metric_families(render(col.batch()).decode())}
    assert names == {"node_load1", "DCGM_FI_DEV_GPU_TEMP"}

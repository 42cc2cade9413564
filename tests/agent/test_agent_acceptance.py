"""Acceptance: the agent collects for real and pushes to a real ``sightglass up``; the server is killed
(SIGKILL) and restarted mid-run, and every sample the agent produced is in the store afterwards.

Collected for real: the host through psutil, the InfiniBand sysfs fixture tree, NFS mountstats,
and attribution of real PIDs on this machine (the test process and the server process) through
this machine's procfs, joined to a GPU backend replaying a recorded ``nvidia-smi -q -x``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from agent_paths import FIXTURES

from sightglass.agent.assemble import build
from sightglass.agent.collection import Collection
from sightglass.agent.config import AgentConfig
from sightglass.agent.gpu import GpuCollector
from sightglass.agent.nvml import GpuProcess, XidEvent
from sightglass.agent.smi_xml import SmiXmlBackend
from sightglass.model import Matcher
from sightglass.store.duckdb import DuckDBStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sightglass.cli", "up", "--data", str(data), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=open(data.parent / "server.log", "ab"),  # noqa: SIM115 - the child owns it
        env={k: v for k, v in os.environ.items() if k != "SIGHTGLASS_CONFIG"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (data.parent / "server.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"sightglass up exited with {proc.returncode}:\n{log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("sightglass up did not start within 60 s")


class _LivePids(SmiXmlBackend):
    """A recorded T4 whose processes are real PIDs of this machine (so attribution runs for real)."""

    pids: tuple[int, ...] = ()

    def processes(self, index: int) -> list[GpuProcess]:
        return [replace(p, pid=pid) for p, pid in zip(super().processes(index), self.pids, strict=False)]


def test_no_sample_lost_across_a_server_kill_and_restart(tmp_path: Path) -> None:
    data, port = tmp_path / "data", _free_port()
    server = _start(data, port)
    produced: dict[tuple[str, int], float] = {}
    events: list[tuple[int, str, int]] = []
    catalog_items = 0

    def record(col: Collection) -> None:
        nonlocal catalog_items
        for key, ts, v in col.rows():
            produced[(key.text(), ts)] = v
        events.extend((e.ts_ms, e.kind, int(e.attributes["xid"])) for e in col.events if e.kind == "gpu.xid")
        catalog_items += len(col.events) + len(col.configs) + len(col.relations)

    cfg = AgentConfig(
        server=f"http://127.0.0.1:{port}",
        interval="0.25s",
        hostname="agent-test-node",
        spool_dir=str(tmp_path / "spool"),
        max_backoff="0.5s",
        sysfs=str(FIXTURES / "sysfs"),
        collectors=["host", "infiniband", "nfs"],
    )
    asm = build(cfg)
    backend = _LivePids((FIXTURES / "tesla-t4.xml").read_text())
    backend.pids = (os.getpid(), server.pid)
    from sightglass.agent.attribution import Attributor

    attr = Attributor("/proc")
    asm.agent.collectors.append(
        GpuCollector(backend, cfg.hostname, process_labels=attr.labels, process_env=attr.nccl_env)
    )
    asm.agent.on_collection = record
    stop = threading.Event()
    asm.start()
    runner = threading.Thread(target=asm.agent.run, args=(stop,), daemon=True)
    runner.start()
    try:
        assert asm.pusher is not None and asm.spool is not None
        deadline = time.monotonic() + 30
        while asm.pusher.stats.sent_files < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert asm.pusher.stats.sent_files >= 4, asm.pusher.stats
        backend.xids.append(XidEvent(backend.gpus[0].info.uuid, 48, int(time.time() * 1000)))
        server.send_signal(signal.SIGKILL)
        server.wait()
        # the agent keeps collecting (and an XID arrives mid-outage); its pushes fail and pile up
        backend.xids.append(XidEvent(backend.gpus[0].info.uuid, 79, int(time.time() * 1000)))
        time.sleep(1.5)
        assert len(asm.spool) >= 3 and asm.pusher.stats.failures >= 1
        server = _start(data, port)
        time.sleep(1.0)
    finally:
        stop.set()
        runner.join(timeout=10)
        asm.stop()  # sends what is left
    try:
        assert len(asm.spool) == 0, (
            f"{len(asm.spool)} payloads still spooled: {asm.pusher.stats.last_error if asm.pusher else ''}"
        )
        assert asm.spool.dropped_samples == 0 and asm.spool.rejected_samples == 0
        # the agent's own report of the catalog it sent reached the server too
        r = httpx.get(f"http://127.0.0.1:{port}/-/stats", timeout=10)
        assert r.status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    store = DuckDBStore(data)
    try:
        stored: dict[tuple[str, int], float] = {}
        lo = min(ts for _, ts in produced)
        hi = max(ts for _, ts in produced)
        for sd in store.select([Matcher("instance", "=~", ".+")], lo, hi) + store.select(
            [Matcher("Hostname", "=", "agent-test-node")], lo, hi
        ):
            for t, v in zip(sd.ts_ms.tolist(), sd.values.tolist(), strict=True):
                stored[(sd.key.text(), t)] = v
        missing = [k for k in produced if k not in stored]
        assert not missing, f"{len(missing)} of {len(produced)} samples lost, e.g. {missing[:3]}"
        wrong = [k for k, v in produced.items() if stored[k] != v]
        assert not wrong, wrong[:3]
        assert len(produced) > 500
        names = {k.split("{", 1)[0] for k, _ in produced}
        assert {
            "node_cpu_seconds_total",
            "node_infiniband_port_data_received_bytes_total",
            "DCGM_FI_DEV_SM_CLOCK",
            "sightglass_gpu_process_memory_used_bytes",
        } <= names
        # attribution of the real PIDs: user and command resolved through this machine's procfs
        procs = [k for k, _ in produced if k.startswith("sightglass_gpu_process_memory_used_bytes")]
        assert any(f'pid="{os.getpid()}"' in k and 'command="' in k and 'user="' in k for k in procs), procs[
            :2
        ]
        assert store.count("configs") >= 1
        stored_xids = sorted(
            (e.ts_ms, e.kind, int(e.attributes["xid"])) for e in store.query_events(0, 2**50, kind="gpu.xid")
        )
        assert sorted(set(stored_xids)) == sorted(events) and {x for _, _, x in events} == {48, 79}
        assert catalog_items >= 1
    finally:
        store.close()
    assert json.dumps(asm.pusher.stats.by_status if asm.pusher else {})


def test_the_daemon_from_the_cli_pushes_to_a_real_server(tmp_path: Path) -> None:
    """``sightglass agent --server`` as a user runs it: it re-executes as ``python -m sightglass.agent``,
    pushes, and on SIGTERM sends what is left and exits 0."""
    data, port = tmp_path / "data", _free_port()
    server = _start(data, port)
    spool = tmp_path / "spool"
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sightglass.cli",
            "agent",
            "--server",
            f"http://127.0.0.1:{port}",
            "--interval",
            "0.3s",
            "--spool-dir",
            str(spool),
            "--sysfs",
            str(FIXTURES / "sysfs"),
            "--hostname",
            "cli-node",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v1/query"
        deadline, found = time.monotonic() + 60, []
        while time.monotonic() < deadline and not found:
            time.sleep(0.3)
            r = httpx.get(url, params={"query": 'node_infiniband_info{instance="cli-node"}'}, timeout=10)
            found = r.json()["data"]["result"] if r.status_code == 200 else []
        assert {x["metric"]["device"] for x in found} == {"i40iw0", "mlx4_0"}
        cmdline = Path(f"/proc/{agent.pid}/cmdline").read_bytes().split(b"\0")
        assert b"sightglass.agent" in cmdline  # the lean process, not the whole CLI
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
        err = agent.stderr.read().decode() if agent.stderr else ""
        assert "gpu: no NVIDIA GPU collection on this host: " in err  # one line, and the rest went on
        assert not list(spool.glob("*.rw"))
    finally:
        if agent.poll() is None:
            agent.kill()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

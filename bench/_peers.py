"""Servers for the ingest benchmark: a real VictoriaMetrics, a real Prometheus, a real ``sightglass up``.

Each is started on a free 127.0.0.1 port with its data in a fresh temporary directory, measured with
psutil (CPU seconds, peak RSS from ``VmHWM``) and stopped by its PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

VM_BIN = "victoria-metrics"
PROM_BIN = "prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dir_bytes(path: Path, *, exclude: tuple[str, ...] = ()) -> int:
    """Apparent size of every regular file under ``path`` (skipping top-level names in ``exclude``)."""
    total = 0
    for root, dirs, files in os.walk(path):
        if Path(root) == path:
            dirs[:] = [d for d in dirs if d not in exclude]
            files = [f for f in files if f not in exclude]
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 600,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def get_json(port: int, path: str, params: dict[str, str] | None = None) -> Any:
    q = ("?" + urllib.parse.urlencode(params)) if params else ""
    status, body = request(port, "GET", path + q)
    if status != 200:
        raise RuntimeError(f"GET {path}{q} -> {status}: {body[:300]!r}")
    return json.loads(body)


def peak_rss_bytes(pid: int) -> int:
    """Peak resident set size since the process started (Linux ``VmHWM``), else the current RSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(psutil.Process(pid).memory_info().rss)


@dataclass
class Server:
    """A server process started for the benchmark; ``kind`` is ``vm``, ``prometheus`` or ``sightglass``."""

    kind: str
    port: int
    data: Path
    proc: subprocess.Popen[bytes]
    tmp: Path
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and of its child processes (e.g. parse workers)."""
        proc = psutil.Process(self.pid)
        t = proc.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system  # children that exited
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                total += c.user + c.system
        return float(total)

    def peak_rss(self) -> int:
        """Peak RSS of the server plus that of each live child process."""
        total = peak_rss_bytes(self.pid)
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error, OSError):
                    total += peak_rss_bytes(child.pid)
        return total

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        return request(self.port, "POST", path, body, headers)

    def stop(self, *, keep_data: bool = False) -> None:
        """SIGTERM the PID, wait, SIGKILL if it lingers; remove the temp dir unless ``keep_data``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if not keep_data:
            self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def _spawn(kind: str, argv: list[str], tmp: Path, data: Path, port: int, ready_path: str,
           env: dict[str, str] | None = None, timeout: float = 60) -> Server:  # fmt: skip
    log = tmp / f"{kind}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=tmp, env=env)
    srv = Server(kind, port, data, proc, tmp, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            srv.cleanup()
            raise RuntimeError(f"{kind} exited with {proc.returncode}:\n{srv.log_tail()}")
        try:
            status, _ = request(port, "GET", ready_path, timeout=2)
            if status == 200:
                return srv
        except OSError:
            pass
        time.sleep(0.1)
    srv.stop()
    raise RuntimeError(f"{kind} did not become ready in {timeout:.0f} s:\n{srv.log_tail()}")


def have(binary: str) -> bool:
    return shutil.which(binary) is not None


def start_vm() -> Server:
    tmp = Path(tempfile.mkdtemp(prefix="sgbench-vm-"))
    data, port = tmp / "data", free_port()
    argv = [
        VM_BIN, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}", "-retentionPeriod=100y",
        "-search.latencyOffset=0s", "-search.maxUniqueTimeseries=10000000", "-loggerLevel=ERROR",
    ]  # fmt: skip
    return _spawn("vm", argv, tmp, data, port, "/health")


def start_prometheus() -> Server:
    tmp = Path(tempfile.mkdtemp(prefix="sgbench-prom-"))
    data, port = tmp / "data", free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
    argv = [
        PROM_BIN, f"--config.file={cfg}", f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-remote-write-receiver", "--web.enable-admin-api", "--storage.tsdb.retention.time=100y",
        "--log.level=error",
    ]  # fmt: skip
    return _spawn("prometheus", argv, tmp, data, port, "/-/ready")


def start_sightglass() -> Server:
    """``sightglass up`` (the real server, as a subprocess) with automatic compaction effectively off."""
    tmp = Path(tempfile.mkdtemp(prefix="sgbench-sg-"))
    data, port = tmp / "data", free_port()
    cfg = tmp / "sightglass.toml"
    cfg.write_text('log_level = "warning"\n[storage]\ncompact_every = "1h"\n')
    exe = shutil.which("sightglass") or str(Path(sys.executable).with_name("sightglass"))
    argv = [exe, "up", "--data", str(data), "--listen", f"127.0.0.1:{port}", "--config", str(cfg)]
    return _spawn("sightglass", argv, tmp, data, port, "/-/health")


STARTERS = {"vm": start_vm, "prometheus": start_prometheus, "sightglass": start_sightglass}


# ---------------------------------------------------------------------- verification and disk
def prom_query_scalar(srv: Server, expr: str, at_s: float, extra: dict[str, str] | None = None) -> float:
    params = {"query": expr, "time": f"{at_s:.3f}", **(extra or {})}
    res = get_json(srv.port, "/api/v1/query", params)["data"]["result"]
    return float(res[0]["value"][1]) if res else 0.0


def metric_value(srv: Server, name: str) -> float:
    """Sum of a metric family on the server's own ``/metrics`` page."""
    _status, body = request(srv.port, "GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def vm_flush(srv: Server) -> None:
    request(srv.port, "GET", "/internal/force_flush")


def vm_force_merge(srv: Server, timeout: float = 300) -> None:
    """Start a full merge and wait until VictoriaMetrics reports no active force merges."""
    request(srv.port, "GET", "/internal/force_merge")
    deadline = time.monotonic() + timeout
    time.sleep(0.5)
    while time.monotonic() < deadline and metric_value(srv, "vm_active_force_merges") > 0:
        time.sleep(0.5)


def prom_snapshot_bytes(srv: Server) -> int:
    """Write the head as a block (admin snapshot API) and return that block's size."""
    status, body = srv.post("/api/v1/admin/tsdb/snapshot", b"", {})
    if status != 200:
        raise RuntimeError(f"snapshot -> {status}: {body[:200]!r}")
    name = json.loads(body)["data"]["name"]
    return dir_bytes(srv.data / "snapshots" / name)

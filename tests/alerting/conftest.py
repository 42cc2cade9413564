"""Real local receivers for alerting tests: an HTTP server on 127.0.0.1, a real Alertmanager, and a
small simulated factory in a real DuckDB store."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from sightglass.store.duckdb import DuckDBStore, StoreOptions

SIM_START = "2026-11-16T00:00:00Z"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class Receiver:
    """A real HTTP server that records POSTs and answers with scripted status codes."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in order, then 200
    retry_after: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    got: threading.Event = field(default_factory=threading.Event)

    def wait(self, n: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.02)
        with self.lock:
            return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n)
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            with rec.lock:
                rec.requests.append(Received(self.path, dict(self.headers), body, time.time()))
                status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            if status == 429 and rec.retry_after:
                self.send_header("Retry-After", rec.retry_after)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}' if status < 300 else b'{"error": "scripted failure"}')

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{srv.server_address[1]}"
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield rec
    finally:
        srv.shutdown()
        srv.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Alertmanager:
    url: str
    webhook: Receiver


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: Receiver) -> Iterator[Alertmanager]:
    """A real Alertmanager on 127.0.0.1 routing everything to ``receiver`` (skips when not installed)."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.skip("prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)")
    port = _free_port()
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(
        "route:\n"
        "  receiver: hook\n"
        "  group_by: ['sightglass_incident']\n"
        "  group_wait: 1s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        "  - name: hook\n"
        "    webhook_configs:\n"
        f"      - url: '{receiver.url}/am'\n"
        "        send_resolved: true\n"
    )
    storage = tmp_path / "am-data"
    storage.mkdir()
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={cfg}",
            f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError(
                    "alertmanager did not start: " + (tmp_path / "alertmanager.log").read_text()[-2000:]
                )
            time.sleep(0.1)
        yield Alertmanager(url, receiver)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def alert_store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(tmp_path / "data", options=StoreOptions(compact_every_s=3600))
    try:
        yield s
    finally:
        s.close()


@dataclass
class SimFactory:
    store: DuckDBStore
    start_ms: int
    end_ms: int
    truth: list[dict[str, Any]]
    inventory: dict[str, Any]


@pytest.fixture(scope="session")
def leaf_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFactory]:
    """8 nodes (2 racks) for 40 minutes: a leaf switch of rack 1 fails at 10 min, and a GPU of rack 2
    has HBM ECC errors at 12 min. Two faults: two incidents expected."""
    from sightglass.simulate.fast import run_ingest
    from sightglass.simulate.faults import ScriptedFault
    from sightglass.timeutil import parse_time_ms

    d = tmp_path_factory.mktemp("leaf")
    store = DuckDBStore(d / "data", options=StoreOptions(compact_every_s=3600))
    start = parse_time_ms(SIM_START)
    faults = [
        ScriptedFault("leaf_switch_failure", 10 * 60_000, 20 * 60_000, {"switch": "leaf-01"}),
        ScriptedFault("hbm_ecc", 12 * 60_000, 15 * 60_000, {"Hostname": "node-07", "gpu": "3"}),
    ]
    _, sim = run_ingest(store, nodes=8, duration_s=40 * 60, seed=5, start_ms=start, scripted=faults)
    truth = [f.truth() for f in sim.faults if f.state.get("started")]
    try:
        yield SimFactory(store, start, start + 40 * 60_000, truth, sim.factory.describe())
    finally:
        store.close()

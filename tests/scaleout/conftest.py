"""Real backends for the scale-out tests: VictoriaMetrics, Prometheus and PostgreSQL on 127.0.0.1.

Each is started once per session in a temporary directory on a free port (the benchmark's starters in
``bench/_peers.py``; PostgreSQL through ``sightglass.scaleout.pgserver``) and stopped by PID. A test
that needs a missing binary is skipped and says which.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sightglass.model import Event, LineageEvent, SampleBatch
from sightglass.scaleout.pgserver import PgServer, pg_bindir, start_postgres

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import _peers  # noqa: E402  (the bench helpers are not a package)


@dataclass
class Peer:
    kind: str
    url: str
    server: Any

    @property
    def write_url(self) -> str:
        return self.url + "/api/v1/write"


def start_vm() -> Any:
    """VictoriaMetrics with its rollup cache off (tests re-read windows they just wrote)."""
    tmp = Path(tempfile.mkdtemp(prefix="sgtest-vm-"))
    data, port = tmp / "data", _peers.free_port()
    argv = [
        _peers.VM_BIN, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}", "-retentionPeriod=100y",
        "-search.latencyOffset=0s", "-search.disableCache", "-loggerLevel=ERROR", "-search.maxStalenessInterval=5m",
    ]  # fmt: skip
    return _peers._spawn("vm", argv, tmp, data, port, "/health")


@pytest.fixture(scope="session")
def vm() -> Iterator[Peer]:
    if not _peers.have(_peers.VM_BIN):
        pytest.skip("victoria-metrics is not installed (apt-get install victoria-metrics)")
    srv = start_vm()
    try:
        yield Peer("vm", f"http://127.0.0.1:{srv.port}", srv)
    finally:
        srv.stop()


@pytest.fixture
def own_vm() -> Iterator[Peer]:
    """A VictoriaMetrics of the test's own: nothing else's samples move its newest-sample clock."""
    if not _peers.have(_peers.VM_BIN):
        pytest.skip("victoria-metrics is not installed (apt-get install victoria-metrics)")
    srv = start_vm()
    try:
        yield Peer("vm", f"http://127.0.0.1:{srv.port}", srv)
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def prom() -> Iterator[Peer]:
    if not _peers.have(_peers.PROM_BIN):
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    srv = _peers.start_prometheus()
    try:
        yield Peer("prometheus", f"http://127.0.0.1:{srv.port}", srv)
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if pg_bindir() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'psycopg[binary]')")
    srv = start_postgres()
    try:
        yield srv
    finally:
        srv.stop()


def fresh_database(srv: PgServer) -> str:
    """A new empty database on the session's cluster; its DSN."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:10]
    with psycopg.connect(srv.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return srv.dsn.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    return fresh_database(pg_server)


@dataclass
class Capture:
    """Collects what the simulator writes, to replay it into any store."""

    batches: list[SampleBatch] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    lineage: list[LineageEvent] = field(default_factory=list)

    def append(self, batch: SampleBatch, **_: Any) -> None:
        self.batches.append(batch)

    def append_events(self, events: list[Event]) -> int:
        self.events.extend(events)
        return len(events)

    def append_lineage(self, events: list[LineageEvent]) -> int:
        self.lineage.extend(events)
        return len(events)

    def replay(self, store: Any) -> None:
        for b in self.batches:
            store.append(b)
        store.append_events(self.events)
        store.append_lineage(self.lineage)


def wait_for(pred: Any, timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def have_promtool() -> bool:
    return shutil.which("promtool") is not None

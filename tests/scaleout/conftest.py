"""Real backends for the scale-out tests: VictoriaMetrics, Prometheus and PostgreSQL on 127.0.0.1.

Each is started once per session in a temporary directory on a free port (the benchmark's starters in
``bench/_peers.py``; PostgreSQL through ``sightglass.scaleout.pgserver``) and stopped by PID. A test
that needs a missing binary is skipped and says which.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sightglass.scaleout.pgserver import PgServer, pg_bindir, start_postgres

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import _peers  # noqa: E402  (the bench helpers are not a package)
from scaleout_helpers import Peer, fresh_database  # noqa: E402


def start_vm() -> Any:
    """VictoriaMetrics with its rollup cache off (tests re-read windows they just wrote)."""
    tmp = Path(tempfile.mkdtemp(prefix="sgtest-vm-"))
    data, port = tmp / "data", _peers.free_port()
    argv = [
        _peers.VM_BIN, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}", "-retentionPeriod=100y",
        "-search.latencyOffset=0s", "-search.disableCache", "-loggerLevel=ERROR", "-search.maxStalenessInterval=5m",
    ]  # fmt: skip
    return _peers._spawn("vm", argv, tmp, data, port, "/health")


def _vm_peer() -> Iterator[Peer]:
    if not _peers.have(_peers.VM_BIN):
        pytest.skip("victoria-metrics is not installed (apt-get install victoria-metrics)")
    srv = start_vm()
    try:
        yield Peer("vm", f"http://127.0.0.1:{srv.port}", srv)
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def vm() -> Iterator[Peer]:
    yield from _vm_peer()


@pytest.fixture
def own_vm() -> Iterator[Peer]:
    """A VictoriaMetrics of the test's own: nothing else's samples move its newest-sample clock."""
    yield from _vm_peer()


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


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    return fresh_database(pg_server)


def have_promtool() -> bool:
    return shutil.which("promtool") is not None

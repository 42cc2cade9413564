"""What the scale-out tests share besides fixtures: peer handles, fresh databases and
polling. (A module of its own, not conftest: several test folders have a conftest.)"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from sightglass.scaleout.pgserver import PgServer


@dataclass
class Peer:
    kind: str
    url: str
    server: Any

    @property
    def write_url(self) -> str:
        return self.url + "/api/v1/write"


def fresh_database(srv: PgServer) -> str:
    """A new empty database on the session's cluster; its DSN."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:10]
    with psycopg.connect(srv.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return srv.dsn.rsplit("/", 1)[0] + "/" + name


def wait_for(pred: Any, timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)

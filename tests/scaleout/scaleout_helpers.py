"""What the scale-out tests share besides fixtures: peer handles, fresh databases, the simulator capture
and polling. (A module of its own, not conftest: several test folders have a conftest.)"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sightglass.model import Event, LineageEvent, SampleBatch
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

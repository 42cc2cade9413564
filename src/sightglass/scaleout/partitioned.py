"""Analytics cut into partitions by host, each run from a lease's watermark in batches.

A series belongs to partition ``crc32(host) % parts`` where host is the node it is about
(``sightglass.topology.infer.host_of``; the series' entity when it has no host), so the GPUs, NICs and
disks of one node — the peers the detector compares — stay together. Each owned partition has its
own :class:`~sightglass.analytics.runner.AnomalyRunner` over a :class:`PartitionView` of the store.

A partition's state (baselines, CUSUM sums) lives in the replica that owns it; a new owner refits on
the ``history`` before the committed watermark, then detects from there, so no step is skipped.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sightglass.analytics.runner import AnomalyRunner
from sightglass.model import Event, Matcher, SeriesData, SeriesKey
from sightglass.scaleout.leases import Lease, Leases
from sightglass.topology.infer import TopologyBuilder, entity_of_series, host_of

log = logging.getLogger("sightglass.scaleout")


def partition_of(key: SeriesKey, parts: int) -> int:
    if parts <= 1:
        return 0
    anchor = host_of(key.label_dict()) or entity_of_series(key) or key.metric
    return zlib.crc32(anchor.encode()) % parts


class _KeysView:
    __slots__ = ("keys",)

    def __init__(self, keys: dict[int, SeriesKey]) -> None:
        self.keys = keys


class PartitionView:
    """The store as one partition's analytics see it: only that partition's series in ``index``."""

    def __init__(self, store: Any, part: int, parts: int) -> None:
        self.store, self.part, self.parts = store, part, parts
        self._seen = -1
        self._keys: dict[int, SeriesKey] = {}
        self._parts_of: dict[int, int] = {}

    @property
    def index(self) -> _KeysView:
        full = self.store.index.keys
        if len(full) != self._seen:
            for sid, k in list(full.items()):
                if sid not in self._parts_of:
                    p = self._parts_of[sid] = partition_of(k, self.parts)
                    if p == self.part:
                        self._keys[sid] = k
            self._seen = len(full)
        return _KeysView(self._keys)

    def metadata(self, metric: str | None = None) -> Any:
        return self.store.metadata(metric)

    def read_ids(self, ids: np.ndarray, start_ms: int, end_ms: int, **kw: Any) -> list[SeriesData]:
        return list(self.store.read_ids(ids, start_ms, end_ms, **kw))

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, **kw: Any) -> list[SeriesData]:
        mine = self.index.keys
        ids = np.array([i for i in self.store.select_ids(matchers).tolist() if i in mine], dtype=np.int64)
        return self.read_ids(ids, start_ms, end_ms, **kw) if len(ids) else []

    def query_events(
        self, start_ms: int, end_ms: int, kind: str | None = None, entity: Mapping[str, str] | None = None
    ) -> list[Event]:
        return list(self.store.query_events(start_ms, end_ms, kind, entity))

    def append_events(self, events: Sequence[Event]) -> int:
        raise RuntimeError("partitioned analytics commit events with their batch, not one by one")

    def cursor(self) -> Any:
        return self.store.cursor()

    def entities(self, kind: str | None = None) -> Any:
        return self.store.entities(kind)

    def relations(self) -> Any:
        return self.store.relations()


@dataclass(slots=True)
class _Part:
    lease: Lease
    view: PartitionView
    runner: AnomalyRunner


@dataclass
class PartitionedAnalytics:
    """One replica's share of the analytics: :meth:`step` renews leases and runs due batches."""

    store: Any
    leases: Leases
    parts: int
    interval_ms: int
    history_ms: int
    batch_ms: int = 300_000
    backfill_ms: int = 3_600_000
    step_ms: int = 10_000
    renew_every_s: float = 1.0
    owned: dict[int, _Part] = field(default_factory=dict)
    batches: int = 0
    events: int = 0
    lost: int = 0
    steps: int = 0
    last_error: str | None = None
    last_step_s: float = 0.0
    last_until_ms: int | None = None
    _renewed: float = 0.0
    _held: dict[int, Lease] = field(default_factory=dict)

    def _keepalive(self, part: _Part) -> bool:
        """Heartbeat (renew, rebalance) when one is due; False if ``part`` is no longer ours."""
        if time.monotonic() - self._renewed >= self.renew_every_s:
            self._sync(self.leases.heartbeat())
        return part.lease.part in self.owned

    def _sync(self, leases: dict[int, Lease]) -> None:
        self._renewed = time.monotonic()
        self._held = leases
        for p in [p for p in self.owned if p not in leases or leases[p].epoch != self.owned[p].lease.epoch]:
            self.owned.pop(p)  # lost or given back: its state goes

    def _runner(self) -> AnomalyRunner:
        return AnomalyRunner(builder=TopologyBuilder(), history_ms=self.history_ms, write_events=False)

    def step(self) -> int:
        """Renew leases and commit every batch due up to the newest sample; returns batches committed."""
        t0 = time.perf_counter()
        self._sync(self.leases.heartbeat())
        newest = int(self.store.latest_ms() or 0)
        if newest <= 0:
            return 0
        until = newest - self.interval_ms
        until -= until % self.step_ms
        done = 0
        for p in range(self.parts):
            lease = self._held.get(p)
            if lease is None:
                continue
            part = self.owned.get(p)
            if part is None:
                part = self.owned[p] = _Part(lease, PartitionView(self.store, p, self.parts), self._runner())
            done += self._advance(part, until)
        self.steps += 1
        self.last_until_ms = until
        self.last_step_s = time.perf_counter() - t0
        return done

    def _advance(self, part: _Part, until: int) -> int:
        runner, lease = part.runner, part.lease
        wm = lease.watermark_ms
        done = 0
        if runner.watermark_ms is None:
            if not self._keepalive(part):
                return 0
            if wm is None:  # never analysed: fit ``backfill`` behind the newest, commit that as the start
                start = until - self.backfill_ms
                start -= start % self.step_ms
                runner.step(part.view, start)
                if not self._commit(part, None, start, []):
                    return 0
                done += 1
            else:  # taken over (or restarted): refit on the history before the committed watermark
                runner.step(part.view, wm)
        while runner.watermark_ms is not None and runner.watermark_ms < until:
            if not self._keepalive(part):
                return done
            frm = runner.watermark_ms
            to = min(frm + self.batch_ms, until)
            report = runner.step(part.view, to)
            if not self._commit(part, frm, to, report.to_events()):
                return done
            done += 1
        return done

    def _commit(self, part: _Part, frm: int | None, to: int, events: list[Event]) -> bool:
        ok = self.leases.commit(part.lease, frm, to, events)
        if ok:
            part.lease = Lease(part.lease.part, part.lease.epoch, to)
            self.batches += 1
            self.events += len(events)
        else:
            self.lost += 1
            self.owned.pop(part.lease.part, None)
            log.warning(
                "lease on partition %d lost before commit; batch %s..%s dropped", part.lease.part, frm, to
            )
        return ok

    def status(self) -> dict[str, Any]:
        return {
            "mode": "partitioned",
            "owner": self.leases.owner,
            "partitions": self.parts,
            "owned": sorted(self.owned),
            "watermarks": {p: x.lease.watermark_ms for p, x in sorted(self.owned.items())},
            "batches": self.batches,
            "events": self.events,
            "lost_commits": self.lost,
            "steps": self.steps,
            "last_step_seconds": round(self.last_step_s, 3),
            "analysed_until_ms": self.last_until_ms,
            "last_error": self.last_error,
        }

"""The agent loop: collect from every collector each interval, then push (spool) or publish.

A collector that fails says why in one line (once per distinct reason, in the log and in
``sightglass_agent_collector_up{collector}=0``) and the others go on: a node without NVIDIA
hardware still reports its host, fabric and attribution.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from sightglass.agent.collection import Collection
from sightglass.agent.config import AgentConfig
from sightglass.agent.spool import Spool
from sightglass.agent.wire import RemoteWriteEncoder
from sightglass.model import MetricType

log = logging.getLogger("sightglass.agent")


class Collector(Protocol):
    """Anything with a ``name`` that writes readings into a collection."""

    name: str

    def collect(self, out: Collection) -> None: ...


class Sink(Protocol):
    def publish(self, col: Collection) -> None: ...


class SpoolSink:
    """Encode a collection as remote-write (samples) and JSON (catalog) files in the spool."""

    def __init__(self, spool: Spool, notify: Callable[[], None] | None = None) -> None:
        self.spool = spool
        self.notify = notify
        self.encoder = RemoteWriteEncoder()

    def publish(self, col: Collection) -> None:
        if len(col):
            body = self.encoder.encode_one_timestamp(col.keys, col.values, col.ts_ms, col.metadata)
            self.spool.append(body, "rw", samples=len(col))
        if col.has_catalog():
            body = gzip.compress(json.dumps(col.catalog_payload(), separators=(",", ":")).encode(), 5)
            n = len(col.events) + len(col.configs) + len(col.relations)
            self.spool.append(body, "cat", samples=n)
        if self.notify:
            self.notify()


class Agent:
    """Runs collectors on a fixed interval and hands each collection to a sink."""

    def __init__(
        self,
        config: AgentConfig,
        collectors: list[Collector],
        sink: Sink,
        *,
        spool: Spool | None = None,
        push_stats: Any = None,
        on_collection: Callable[[Collection], None] | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.config = config
        self.collectors = collectors
        self.sink = sink
        self.spool = spool
        self.push_stats = push_stats
        self.on_collection = on_collection
        self.clock_ms = clock_ms
        self.base = {"instance": config.hostname, "job": config.job}
        self._said: dict[str, str] = {}
        self._keys: dict[Any, Any] = {}
        self.cycles = 0
        self.lost_cycles = 0

    def collect_once(self) -> Collection:
        col = Collection(self.clock_ms(), key_cache=self._keys)
        for c in self.collectors:
            t0 = time.perf_counter()
            try:
                c.collect(col)
                ok = 1
                if self._said.pop(c.name, None) is not None:
                    log.info("collector %s works again", c.name)
            except Exception as e:  # one collector's failure never stops the others
                ok = 0
                why = f"{type(e).__name__}: {e}"
                col.errors[c.name] = why
                if self._said.get(c.name) != why:
                    log.warning("collector %s failed: %s", c.name, why)
                    self._said[c.name] = why
            lb = {**self.base, "collector": c.name}
            col.add(
                "sightglass_agent_collector_up", lb, ok, help="1 when the collector's last run succeeded."
            )
            col.add(
                "sightglass_agent_collect_duration_seconds",
                lb,
                time.perf_counter() - t0,
                help="Time the collector's last run took.",
                unit="s",
            )
        self._self_metrics(col)
        self.cycles += 1
        return col

    def _self_metrics(self, col: Collection) -> None:
        C = MetricType.COUNTER
        if self.spool is not None:
            col.add(
                "sightglass_agent_spool_bytes",
                self.base,
                self.spool.size_bytes,
                help="Bytes waiting in the on-disk spool.",
                unit="By",
            )
            col.add(
                "sightglass_agent_spool_files",
                self.base,
                len(self.spool),
                help="Payloads waiting in the on-disk spool.",
            )
            col.add(
                "sightglass_agent_spool_dropped_samples_total",
                self.base,
                self.spool.dropped_samples,
                type=C,
                help="Samples dropped because the spool reached its size cap (oldest first).",
            )
            col.add(
                "sightglass_agent_spool_rejected_samples_total",
                self.base,
                self.spool.rejected_samples,
                type=C,
                help="Samples the server rejected as invalid (not retried).",
            )
        col.add(
            "sightglass_agent_lost_cycles_total",
            self.base,
            self.lost_cycles,
            type=C,
            help="Cycles whose samples could not be spooled (disk full or unwritable).",
        )
        if self.push_stats is not None:
            col.add(
                "sightglass_agent_push_failures_total",
                self.base,
                self.push_stats.failures,
                type=C,
                help="Push attempts that failed and will be retried.",
            )

    def step(self) -> Collection:
        col = self.collect_once()
        if self.on_collection:
            self.on_collection(col)
        try:
            self.sink.publish(col)
        except OSError as e:  # the spool's disk is full or gone: say so, keep collecting
            why = f"{type(e).__name__}: {e}"
            if self._said.get("__sink__") != why:
                log.error("cannot store this cycle's %d samples: %s", len(col), why)
                self._said["__sink__"] = why
            self.lost_cycles += 1
        else:
            self._said.pop("__sink__", None)
        return col

    def run(self, stop: threading.Event, *, max_cycles: int | None = None) -> None:
        interval = self.config.interval_s
        next_t = time.monotonic()
        while not stop.is_set():
            self.step()
            if max_cycles is not None and self.cycles >= max_cycles:
                return
            next_t += interval
            delay = next_t - time.monotonic()
            if delay < 0:  # a slow cycle: skip the missed ticks rather than bursting
                next_t = time.monotonic()
                delay = 0
            stop.wait(delay)

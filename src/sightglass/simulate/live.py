"""Live mode: the simulator in real time behind real HTTP exporters, and ``sightglass demo``.

Layout: **one port per exporter instance** on 127.0.0.1, each serving ``GET /metrics`` in Prometheus
text 0.0.4 — every node gets a dcgm-exporter port and a node_exporter port, every vLLM replica, the
trainer exporter of each node, kube-state-metrics, the pipeline exporter and the fabric exporter one
port each, exactly as a scrape config would list real targets. ``Exporters.scrape_configs()`` returns
the matching Prometheus-style scrape jobs (``job_name`` = the exporter kind). Ports are bound (port 0,
the OS picks) before the server starts, so the config is known up front.

The demo runs the simulator as a background task of the Sightglass server: every tick it steps the
simulator (in a worker thread), swaps the exposition the exporters serve, and posts events, lineage
and GenAI spans to the store / the server's own ingest routes. When the scraper
(``sightglass.ingest.scrape``) is not installed, the demo writes samples straight into the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sightglass.simulate.engine import Simulator
from sightglass.simulate.exposition import Frame, render_prometheus
from sightglass.simulate.fast import to_events, to_lineage

log = logging.getLogger("sightglass.simulate")

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class Exporters:
    """HTTP endpoints for every simulated exporter instance (one socket each)."""

    def __init__(self, sim: Simulator, host: str = "127.0.0.1") -> None:
        self.sim = sim
        self.host = host
        self.sockets: dict[int, socket.socket] = {}
        self.ports: dict[int, int] = {}
        for tid in range(len(sim.labels.targets)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            s.listen(64)
            s.setblocking(False)
            self.sockets[tid] = s
            self.ports[tid] = s.getsockname()[1]
        self.bodies: dict[int, bytes] = {}
        self.servers: list[asyncio.AbstractServer] = []

    def publish(self, frame: Frame) -> None:
        labels = self.sim.labels
        self.bodies = {tid: render_prometheus(frame, labels, tid).encode() for tid in self.sockets}

    def scrape_configs(self, interval: str) -> list[dict[str, Any]]:
        jobs: dict[str, list[dict[str, Any]]] = {}
        for tid, (job, inst) in enumerate(self.sim.labels.targets):
            if tid not in self.ports:
                continue
            host = inst.split(":")[0]
            labels = {"sim_instance": inst}
            if job in ("dcgm-exporter", "node-exporter", "trainer", "vllm"):
                labels["node"] = host
            jobs.setdefault(job, []).append({"targets": [f"{self.host}:{self.ports[tid]}"], "labels": labels})
        return [{"job_name": j, "scrape_interval": interval, "static_configs": sc} for j, sc in jobs.items()]

    async def start(self) -> None:
        for tid, sock in self.sockets.items():
            self.servers.append(await asyncio.start_server(self._handler(tid), sock=sock))

    async def stop(self) -> None:
        for s in self.servers:
            s.close()
            with contextlib.suppress(Exception):
                await s.wait_closed()

    def _handler(self, tid: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    line = head.split(b"\r\n", 1)[0].split()
                    path = line[1].split(b"?")[0] if len(line) > 1 else b"/"
                    if path == b"/metrics":
                        body, status = self.bodies.get(tid, b""), b"200 OK"
                    else:
                        body, status = b"not found\n", b"404 Not Found"
                    writer.write(
                        b"HTTP/1.1 "
                        + status
                        + b"\r\nContent-Type: "
                        + CONTENT_TYPE
                        + b"\r\nContent-Length: "
                        + str(len(body)).encode()
                        + b"\r\n\r\n"
                        + body
                    )
                    await writer.drain()
                    if b"connection: close" in head.lower():
                        break
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                pass
            finally:
                writer.close()

        return handle


def scraper_available() -> bool:
    try:
        return importlib.util.find_spec("sightglass.ingest.scrape") is not None
    except ModuleNotFoundError:
        return False


def run_demo(
    *,
    listen: str,
    nodes: int,
    seed: int,
    duration_s: float | None,
    fault_every_s: float,
    tick_s: float,
    push: bool | None,
    on_ready: Callable[[str], None],
) -> None:
    """Start the Sightglass server on a temporary store with a live simulated factory next to it."""
    from sightglass.config import Config
    from sightglass.server import serve

    sim = Simulator(
        nodes, seed, int(time.time() // tick_s * tick_s * 1000), dt_s=tick_s, fault_every_s=fault_every_s
    )
    exporters = Exporters(sim)
    use_scraper = scraper_available() if push is None else not push
    data = tempfile.mkdtemp(prefix="sightglass-demo-")
    interval = f"{int(tick_s)}s"
    scrape = exporters.scrape_configs(interval) if use_scraper else []
    config = Config.model_validate(
        {"data": data, "listen": listen, "scrape_configs": scrape, "global_scrape_interval": interval}
    )
    state: dict[str, Any] = {"url": None}

    def ready(url: str) -> None:
        state["url"] = url
        on_ready(url)

    async def simulate(ctx: Any) -> None:
        await exporters.start()
        started = time.monotonic()
        try:
            await _loop(
                ctx,
                sim,
                exporters,
                state,
                push_samples=not use_scraper,
                started=started,
                duration_s=duration_s,
            )
        finally:
            await exporters.stop()

    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        serve(config, background=[simulate], on_ready=ready)
    except KeyboardInterrupt:
        if not state.get("done"):  # a real Ctrl-C; --duration ends quietly
            raise
    finally:
        shutil.rmtree(data, ignore_errors=True)


async def _loop(
    ctx: Any,
    sim: Simulator,
    exporters: Exporters,
    state: dict[str, Any],
    *,
    push_samples: bool,
    started: float,
    duration_s: float | None,
    max_ticks: int | None = None,
) -> None:
    from sightglass.model import SampleBatch, SeriesKey

    sent = {"events": 0, "lineage": 0, "spans": 0}
    next_tick = time.monotonic()
    sim.rebase(int(time.time() * 1000))
    while True:
        frame = await asyncio.to_thread(sim.step)
        exporters.publish(frame)
        if push_samples:
            batch = _frame_batch(frame, sim, SampleBatch, SeriesKey)
            await asyncio.to_thread(ctx.store.append, batch)
        new_events = sim.events[sent["events"] :]
        if new_events:
            await asyncio.to_thread(ctx.store.append_events, to_events(new_events))
            sent["events"] = len(sim.events)
        new_lineage = sim.lineage[sent["lineage"] :]
        if new_lineage:
            await asyncio.to_thread(ctx.store.append_lineage, to_lineage(new_lineage))
            sent["lineage"] = len(sim.lineage)
        await _post_spans(state.get("url"), sim.spans[sent["spans"] :])
        sent["spans"] = len(sim.spans)
        if max_ticks is not None and sim.tick >= max_ticks:
            return
        if duration_s is not None and time.monotonic() - started >= duration_s:
            log.info("demo duration reached; stopping")
            state["done"] = True
            os.kill(os.getpid(), signal.SIGINT)
            return
        next_tick += sim.dt
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))


async def _post_spans(url: str | None, bodies: list[dict[str, Any]]) -> None:
    if not url or not bodies:
        return
    import httpx

    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            for body in bodies:
                r = await client.post(
                    f"{url}/v1/traces", content=json.dumps(body), headers={"Content-Type": "application/json"}
                )
                if r.status_code == 404:
                    return
    except httpx.HTTPError as e:  # the demo keeps running without traces
        log.debug("posting spans failed: %s", e)


def _frame_batch(frame: Frame, sim: Simulator, SampleBatch: Any, SeriesKey: Any) -> Any:
    """One tick as a SampleBatch (the push path when no scraper runs)."""
    import numpy as np

    from sightglass.simulate.exposition import _le

    labels = sim.labels
    series: list[Any] = []
    vals: list[float] = []
    meta = {}
    for fam, ids, values in frame.parts:
        meta[fam.name] = fam.metadata()
        for j, sid in enumerate(ids.tolist()):
            pairs = labels.full_pairs(sid)
            if fam.type != "histogram":
                series.append(SeriesKey.of(fam.name, pairs))
                vals.append(float(values[j]))
                continue
            row = values[j]
            for b, c in zip(fam.buckets, row[: len(fam.buckets)].tolist(), strict=True):
                series.append(SeriesKey.of(f"{fam.name}_bucket", (*pairs, ("le", _le(b)))))
                vals.append(c)
            series.append(SeriesKey.of(f"{fam.name}_bucket", (*pairs, ("le", "+Inf"))))
            vals.append(float(row[-2]))
            series.append(SeriesKey.of(f"{fam.name}_count", pairs))
            vals.append(float(row[-2]))
            series.append(SeriesKey.of(f"{fam.name}_sum", pairs))
            vals.append(float(row[-1]))
    n = len(series)
    return SampleBatch(
        series=series,
        series_index=np.arange(n, dtype=np.int64),
        ts_ms=np.full(n, frame.ts_ms, dtype=np.int64),
        values=np.asarray(vals, dtype=np.float64),
        metadata=meta,
    )

"""The web dashboard: static HTML/JS pages, each filled from its JSON twin under ``/api/v1/ui/<page>``.

Every twin answers in the Prometheus envelope and takes ``time`` (the instant shown; default now)
and ``range`` (the span of its charts: ``15m``, ``1h``, ``6h``, ``24h``, ``7d`` or a duration). Numbers
come only from PromQL on the engine and the store: a missing signal is ``null``, never ``0``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from sightglass.api.envelope import APIError, error, success
from sightglass.topology.graph import Topology
from sightglass.web import layers, maps, overview, panels
from sightglass.web.query import Window, parse_window

STATIC = Path(__file__).parent / "static"
PAGES = (
    "overview", "topology", "heatmap", "inference", "training", "pipelines", "network",
    "cost", "incidents", "drift", "explore", "entity",
)  # fmt: skip
MAX_RCA_BODY = 64 * 1024
TWIN_TTL_S = 4.0  # viewers polling "now" within this share one computation
TWIN_STALE_S = 30.0  # ... and up to this old, get it at once while a fresh one is computed


class _Shared:
    """One computation per key at a time, reused for ``ttl_s``: N viewers polling cost one query set.

    An answer older than ``ttl_s`` but younger than ``stale_s`` is still served at once while a fresh
    one is computed in the background (stale-while-revalidate), so a polling page never waits; the
    answer carries its own ``window.at_ms``, which the page shows.
    """

    def __init__(self, ttl_s: float, stale_s: float, size: int = 16) -> None:
        self.ttl_s, self.stale_s, self.size = ttl_s, stale_s, size
        self.done: dict[Any, tuple[float, Any]] = {}
        self.running: dict[Any, asyncio.Task[Any]] = {}

    async def _compute(self, key: Any, compute: Callable[[], Awaitable[Any]]) -> Any:
        try:
            value = await compute()
        finally:
            self.running.pop(key, None)
        self.done[key] = (time.monotonic(), value)
        while len(self.done) > self.size:
            self.done.pop(next(iter(self.done)))
        return value

    async def get(self, key: Any, compute: Callable[[], Awaitable[Any]]) -> Any:
        hit = self.done.get(key)
        age = time.monotonic() - hit[0] if hit is not None else None
        task = self.running.get(key)
        if hit is not None and age is not None and age < self.ttl_s:
            return hit[1]
        if task is None:
            task = self.running[key] = asyncio.ensure_future(self._compute(key, compute))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no warning
        if hit is not None and age is not None and age < self.stale_s:
            return hit[1]
        return await asyncio.shield(task)


__all__ = ["PAGES", "make_routes"]


async def _topology(ctx: Any) -> Topology:
    """The topology graph the topology routes keep up to date (``ctx.extras["topology"]``)."""
    holder = ctx.extras.get("topology")
    if holder is None:
        raise APIError("the topology is not available on this server", "unavailable")
    topo: Topology = await holder.topology()
    return topo


def make_routes(ctx: Any) -> list[BaseRoute]:
    def page(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            return FileResponse(STATIC / f"{name}.html", media_type="text/html")

        return handler

    shared = _Shared(TWIN_TTL_S, TWIN_STALE_S, size=64)

    def twin(
        name: str, fn: Callable[[Request, Window], Awaitable[Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            try:
                w = parse_window(request.query_params)
                # "now" moves: viewers within the TTL share one answer; a fixed time is its own key
                params = tuple(sorted((k, v) for k, v in request.query_params.items() if k != "time"))
                when = w.at_ms if "time" in request.query_params else "now"
                return success(await shared.get((name, when, params), lambda: fn(request, w)))
            except APIError as e:
                return error(str(e), e.error_type, e.status)

        return handler

    def threaded(fn: Callable[..., Any]) -> Callable[[Request, Window], Awaitable[Any]]:
        async def run(request: Request, w: Window) -> Any:
            return await asyncio.to_thread(fn, ctx, w)

        return run

    async def overview_twin(request: Request, w: Window) -> Any:
        out = await asyncio.to_thread(overview.build, ctx, w)
        return await overview.add_features(request, out, w)

    async def heatmap_twin(request: Request, w: Window) -> Any:
        return await asyncio.to_thread(
            maps.heatmap, ctx, w, request.query_params.get("metric") or "sm_active"
        )

    async def topology_twin(request: Request, w: Window) -> Any:
        topo = await _topology(ctx)
        return await asyncio.to_thread(maps.topology_map, ctx, w, topo)

    async def entity_twin(request: Request, w: Window) -> Any:
        eid = request.query_params.get("id")
        if not eid:
            raise APIError('parameter "id" is required (an entity id such as node:node-01)')
        topo = await _topology(ctx)
        return await asyncio.to_thread(maps.entity, ctx, w, topo, eid)

    def panel(name: str) -> Callable[[Request, Window], Awaitable[Any]]:
        async def run(request: Request, w: Window) -> Any:
            return await panels.gather(request, name, w)

        return run

    async def rca_twin(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_RCA_BODY:
            return error(f"body over {MAX_RCA_BODY} bytes", "too_large")
        try:
            body = json.loads(raw or b"{}")
        except ValueError as e:
            return error(f"body is not JSON: {e}")
        if not isinstance(body, dict):
            return error("body must be a JSON object (the symptom)")
        return success(await panels.rca(request, body))

    twins: dict[str, Callable[[Request, Window], Awaitable[Any]]] = {
        "overview": overview_twin,
        "topology": topology_twin,
        "heatmap": heatmap_twin,
        "inference": threaded(layers.inference),
        "training": threaded(layers.training),
        "pipelines": threaded(layers.pipelines),
        "network": threaded(layers.network),
        "cost": panel("cost"),
        "incidents": panel("incidents"),
        "drift": panel("drift"),
        "entity": entity_twin,
    }
    routes: list[BaseRoute] = [Route("/", page("overview"))]
    routes += [Route(f"/ui/{name}", page(name)) for name in PAGES]
    routes += [Route(f"/api/v1/ui/{name}", twin(name, fn)) for name, fn in twins.items()]
    routes.append(Route("/api/v1/ui/rca", rca_twin, methods=["POST"]))
    routes.append(Mount("/ui/static", app=StaticFiles(directory=STATIC), name="ui-static"))
    return routes

"""``/api/v1/topology/*``: the topology graph over HTTP, in the Prometheus envelope.

The graph is built once per app from the store and refreshed incrementally (at most every
``REFRESH_S`` seconds) when a request comes in.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sightglass.api.envelope import APIError, error, success
from sightglass.timeutil import parse_time_ms
from sightglass.topology.graph import Topology, entity_dict
from sightglass.topology.infer import TopologyBuilder

REFRESH_S = 10.0


class _Holder:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.builder = TopologyBuilder()
        self.updated = 0.0
        self.lock = asyncio.Lock()

    async def topology(self) -> Topology:
        async with self.lock:
            if time.monotonic() - self.updated > REFRESH_S or self.updated == 0.0:
                await asyncio.to_thread(self.builder.update, self.store)
                self.updated = time.monotonic()
        return self.builder.topology


def _at(request: Request) -> int | None:
    raw = request.query_params.get("time")
    if not raw:
        return None
    try:
        return parse_time_ms(raw)
    except ValueError as e:
        raise APIError(f'invalid parameter "time": {e}') from None


def _entity_or_404(topo: Topology, entity_id: str) -> dict[str, Any]:
    e = topo.entity(entity_id)
    if e is None:
        raise APIError(f"no entity {entity_id!r}", "not_found")
    return entity_dict(e)


def make_routes(ctx: Any) -> list[Route]:
    holder = _Holder(ctx.store)
    ctx.extras["topology"] = holder

    async def run(request: Request, fn: Any) -> Response:
        try:
            topo = await holder.topology()
            return success(fn(topo, request))
        except APIError as e:
            return error(str(e), e.error_type, e.status)

    def _entities(topo: Topology, request: Request) -> Any:
        kind = request.query_params.get("kind") or None
        return [entity_dict(e) for e in topo.entities(kind)]

    def _entity(topo: Topology, request: Request) -> Any:
        eid = request.path_params["id"]
        out = _entity_or_404(topo, eid)
        out["owner"] = topo.owner(eid, _at(request))
        return out

    def _neighbours(topo: Topology, request: Request) -> Any:
        eid = request.path_params["id"]
        _entity_or_404(topo, eid)
        return [e.to_dict() for e in topo.neighbours(eid, _at(request))]

    def _walk(up: bool) -> Any:
        def handler(topo: Topology, request: Request) -> Any:
            eid = request.path_params["id"]
            _entity_or_404(topo, eid)
            found = topo.depends_on(eid, _at(request)) if up else topo.dependents(eid, _at(request))
            return [
                {
                    "id": i,
                    "kind": topo.entities_by_id[i].kind if i in topo.entities_by_id else "",
                    "distance": d,
                }
                for i, d in found.items()
            ]

        return handler

    def _path(topo: Topology, request: Request) -> Any:
        a, b = request.query_params.get("from"), request.query_params.get("to")
        if not a or not b:
            raise APIError('parameters "from" and "to" are required')
        _entity_or_404(topo, a)
        _entity_or_404(topo, b)
        steps = topo.path(a, b, _at(request))
        if steps is None:
            raise APIError(f"no path from {a!r} to {b!r}", "not_found")
        return [s.to_dict() for s in steps]

    def route(path: str, fn: Any) -> Route:
        async def endpoint(request: Request) -> Response:
            return await run(request, fn)

        return Route(path, endpoint, methods=["GET"])

    base = "/api/v1/topology"
    return [
        route(f"{base}/entities", _entities),
        route(f"{base}/path", _path),
        route(base + "/entity/{id:path}/neighbours", _neighbours),
        route(base + "/entity/{id:path}/depends_on", _walk(True)),
        route(base + "/entity/{id:path}/dependents", _walk(False)),
        route(base + "/entity/{id:path}", _entity),
    ]

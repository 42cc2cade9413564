"""``POST /api/v1/rca`` and ``POST /api/v1/rca/alertmanager``: root cause analysis over HTTP.

Answers use the Prometheus envelope; ``data`` is ``RcaResult.to_dict()`` (docs/rca.md), a list of
them for an Alertmanager notification (one per firing alert). Analyses run one at a time in a
worker thread, over a topology kept up to date incrementally.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sightglass.api.envelope import error, success
from sightglass.rca.engine import RcaError, analyze
from sightglass.rca.request import (
    MAX_BODY_BYTES,
    RcaRequest,
    RequestError,
    parse_alertmanager,
    parse_rca_body,
)
from sightglass.topology.infer import TopologyBuilder


async def _json_body(request: Request) -> Any:
    ctype = request.headers.get("content-type", "")
    if ctype and "json" not in ctype:
        raise RequestError(f"unsupported content type {ctype!r}: send application/json")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge()
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise RequestError("empty body: send a JSON object")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"invalid JSON: {e}") from None


class _TooLarge(Exception):
    pass


def make_routes(ctx: Any) -> list[Route]:
    builder = TopologyBuilder()
    lock = asyncio.Lock()

    async def run(req: RcaRequest) -> dict[str, Any]:
        async with lock:
            res = await asyncio.to_thread(
                analyze, ctx.store, req.symptom, req.at_ms, engine=ctx.engine, builder=builder, top=req.top, window_ms=req.window_ms
            )
        d = res.to_dict()
        if req.alert:
            d["alert"] = req.alert
        return d

    async def rca(request: Request) -> Response:
        try:
            req = parse_rca_body(await _json_body(request))
            return success(await run(req))
        except _TooLarge:
            return error(f"body larger than {MAX_BODY_BYTES} bytes", "too_large")
        except (RequestError, RcaError) as e:
            return error(str(e), getattr(e, "error_type", "bad_data"))

    async def alertmanager(request: Request) -> Response:
        try:
            reqs = parse_alertmanager(await _json_body(request))
            out = []
            for r in reqs:
                try:
                    out.append(await run(r))
                except RcaError as e:
                    out.append({"alert": r.alert, "symptom": {"query": r.symptom}, "error": str(e)})
            return success(out)
        except _TooLarge:
            return error(f"body larger than {MAX_BODY_BYTES} bytes", "too_large")
        except RequestError as e:
            return error(str(e))

    return [
        Route("/api/v1/rca", rca, methods=["POST"]),
        Route("/api/v1/rca/alertmanager", alertmanager, methods=["POST"]),
    ]

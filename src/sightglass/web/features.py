"""Answers of other features' APIs (cost, alerting, RCA, analytics), read in-process for the twins.

The dashboard never reaches into those packages: it asks their HTTP routes through the app itself
(a direct ASGI call: no socket, no client library), so a page shows exactly what the API says, and a
feature this server does not have (its route answers 404) is reported as ``{"available": false}``
instead of failing the page.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

TIMEOUT_S = 60.0
NOT_AVAILABLE = "not available on this server"


async def _call(app: Any, method: str, path: str, query: str, body: bytes) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"sightglass"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 0),
        "server": ("sightglass", 80),
    }
    sent = False
    status = 500
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)  # the app only waits here for a disconnect
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await asyncio.wait_for(app(scope, receive, send), TIMEOUT_S)
    return status, b"".join(chunks)


async def get(
    request: Request,
    path: str,
    params: dict[str, str] | None = None,
    *,
    method: str = "GET",
    body: Any = None,
) -> dict[str, Any]:
    """``{"available": bool, "status": http status, "data": ..., "error": ...}`` of one API call."""
    raw = json.dumps(body).encode() if body is not None else b""
    try:
        status, content = await _call(request.app, method, path, urlencode(params or {}), raw)
    except TimeoutError:
        return {
            "available": True,
            "status": None,
            "data": None,
            "error": f"{path} took over {TIMEOUT_S:.0f} s",
        }
    try:
        doc = json.loads(content) if content else None
    except ValueError:
        doc = None
    is_error_envelope = isinstance(doc, dict) and doc.get("status") == "error"
    if status in (404, 405) and not is_error_envelope:  # no such route: the feature is absent
        return {"available": False, "status": status, "data": None, "error": NOT_AVAILABLE}
    if not isinstance(doc, dict):
        return {
            "available": True,
            "status": status,
            "data": None,
            "error": f"HTTP {status}: answer is not JSON",
        }
    if doc.get("status") == "success":
        return {"available": True, "status": status, "data": doc.get("data"), "error": None}
    return {
        "available": True,
        "status": status,
        "data": None,
        "error": str(doc.get("error") or f"HTTP {status}"),
    }

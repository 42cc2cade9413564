"""Answers of other features' APIs (cost, alerting, RCA, analytics), read in-process for the twins.

The dashboard never reaches into those packages: it asks their HTTP routes through the app itself
(an ASGI call, no socket), so a page shows exactly what the API says, and a feature this server does
not have (its route answers 404) is reported as ``{"available": false}`` instead of failing the page.
"""

from __future__ import annotations

from typing import Any

import httpx
from starlette.requests import Request

TIMEOUT_S = 10.0


async def get(
    request: Request,
    path: str,
    params: dict[str, str] | None = None,
    *,
    method: str = "GET",
    body: Any = None,
) -> dict[str, Any]:
    """``{"available": bool, "status": http status, "data": ..., "error": ...}`` of one API call."""
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sightglass", timeout=TIMEOUT_S) as c:
        try:
            r = await c.request(method, path, params=params, json=body)
        except httpx.HTTPError as e:
            return {"available": False, "status": None, "data": None, "error": str(e)}
    if r.status_code in (404, 405) and not _is_envelope_error(r, "not_found"):
        return {
            "available": False,
            "status": r.status_code,
            "data": None,
            "error": "not available on this server",
        }
    try:
        doc = r.json()
    except ValueError:
        return {"available": True, "status": r.status_code, "data": None, "error": "answer is not JSON"}
    if not isinstance(doc, dict):
        return {"available": True, "status": r.status_code, "data": doc, "error": None}
    if doc.get("status") == "success":
        return {"available": True, "status": r.status_code, "data": doc.get("data"), "error": None}
    return {
        "available": True,
        "status": r.status_code,
        "data": None,
        "error": str(doc.get("error") or f"HTTP {r.status_code}"),
    }


def _is_envelope_error(r: httpx.Response, error_type: str) -> bool:
    """A 404 from a route that exists (``{"errorType": "not_found"}``) is an answer, not a missing route."""
    try:
        doc = r.json()
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("errorType") == error_type

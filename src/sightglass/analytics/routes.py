"""``/api/v1/{anomalies,drift,predictability,kpis}`` and ``/api/v1/analytics/status``.

Answers come from the store (the events and series the analytics loop wrote), so they are the same
whether the loop runs in this server or ran before (``sightglass analytics run``), and they can be
asked "as of" a time. Prometheus envelope; bad parameters are ``400 bad_data`` naming the parameter.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sightglass.analytics import views
from sightglass.api.envelope import APIError, error, success
from sightglass.timeutil import parse_time_ms

MAX_LIMIT = 10_000
MAX_PARAM_CHARS = 1_000


def _param(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_PARAM_CHARS:
        raise APIError(f'parameter "{name}" is too long ({len(raw)} characters, at most {MAX_PARAM_CHARS})')
    return raw


def _time(request: Request, name: str) -> int | None:
    raw = _param(request, name)
    if raw is None:
        return None
    try:
        return parse_time_ms(raw)
    except (ValueError, OverflowError) as e:
        raise APIError(f'invalid parameter "{name}": {e}') from None


def _limit(request: Request, default: int = 1000) -> int:
    raw = _param(request, "limit")
    if raw is None:
        return default
    try:
        n = int(raw)
    except ValueError:
        raise APIError(f'invalid parameter "limit": {raw!r} is not an integer') from None
    if not 1 <= n <= MAX_LIMIT:
        raise APIError(f'invalid parameter "limit": {n} is not in 1..{MAX_LIMIT}')
    return n


def _window(request: Request, store: Any, default_ms: int) -> tuple[int, int]:
    end = _time(request, "end") or _time(request, "time") or views.newest_ms(store)
    start = _time(request, "start")
    if start is None:
        start = end - default_ms
    if start > end:
        raise APIError('invalid parameters: "start" is after "end"')
    return start, end


def make_routes(ctx: Any) -> list[Route]:
    store = ctx.store

    def service() -> Any:
        return ctx.extras.get("analytics")

    async def run(fn: Any, request: Request) -> Response:
        try:
            data = await asyncio.to_thread(fn, request)
            return success(data)
        except APIError as e:
            return error(str(e), e.error_type, e.status)

    def _status(request: Request) -> Any:
        svc = service()
        if svc is None:
            return {"enabled": False, "reason": "the analytics loop is not running in this server"}
        return svc.status()

    def _anomalies(request: Request) -> Any:
        start, end = _window(request, store, 3_600_000)
        return views.anomalies(store, start, end, entity=_param(request, "entity"), limit=_limit(request))

    def _drift(request: Request) -> Any:
        at = _time(request, "time") or _time(request, "end") or views.newest_ms(store)
        start = _time(request, "start")
        svc = service()
        return views.drift(
            store,
            at,
            changes_since_ms=start if start is not None else at - 24 * 3_600_000,
            entity=_param(request, "entity"),
            limit=_limit(request),
            tracker=svc.drift if svc is not None else None,
        )

    def _predictability(request: Request) -> Any:
        at = _time(request, "time") or _time(request, "end") or views.newest_ms(store)
        return views.predictability(store, at, kind=_param(request, "kind"))

    def _kpis(request: Request) -> Any:
        at = _time(request, "time") or views.newest_ms(store)
        name = _param(request, "name")
        if name is not None and name not in views.KPI_HELP:
            raise APIError(f'unknown KPI "{name}"; GET /api/v1/kpis lists them', "not_found")
        return views.kpis(store, at, name=name, limit=_limit(request))

    def route(path: str, fn: Any) -> Route:
        async def endpoint(request: Request) -> Response:
            return await run(fn, request)

        return Route(path, endpoint, methods=["GET"])

    return [
        route("/api/v1/analytics/status", _status),
        route("/api/v1/anomalies", _anomalies),
        route("/api/v1/drift", _drift),
        route("/api/v1/predictability", _predictability),
        route("/api/v1/kpis", _kpis),
    ]

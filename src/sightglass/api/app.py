"""``create_app``: the Starlette application serving ingest, the APIs and (later) the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

import sightglass
from sightglass.api import ingest, prom
from sightglass.api.context import AppContext
from sightglass.api.envelope import success

BackgroundTask = Callable[[AppContext], Awaitable[Any]]


def create_app(
    ctx: AppContext,
    *,
    extra_routes: list[BaseRoute] | None = None,
    background: list[BackgroundTask] | None = None,
) -> Starlette:
    """Build the app over an open store. ``background`` coroutines run for the app's lifetime."""

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def version(request: Request) -> Response:
        return success({"version": sightglass.__version__})

    async def config_view(request: Request) -> Response:
        return success(redact(ctx.config.model_dump()))

    async def self_metrics(request: Request) -> Response:
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def stats(request: Request) -> Response:
        return success(ctx.store.stats())

    async def compact(request: Request) -> Response:
        """Compact and seal everything now (admin): for disk measurements and before a backup."""
        moved = await asyncio.to_thread(ctx.store.compact, force=True)
        return success({"moved_samples": moved, **ctx.store.stats()})

    routes: list[BaseRoute] = [
        Route("/-/health", health),
        Route("/-/healthy", health),
        Route("/-/ready", health),
        Route("/-/version", version),
        Route("/-/config", config_view),
        Route("/-/stats", stats),
        Route("/-/compact", compact, methods=["POST"]),
        Route("/metrics", self_metrics),
        *prom.make_routes(ctx),
        *ingest.make_routes(ctx),
        *_optional_routes(ctx),
        *(extra_routes or []),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[Any]] = [asyncio.ensure_future(fn(ctx)) for fn in (background or [])]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t

    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(_TimingMiddleware, ctx=ctx)
    return app


_SECRET_KEYS = ("headers", "password", "passwd", "secret", "token", "authorization", "api_key", "dsn")
_REDACTED = "<redacted>"


def redact(value: Any) -> Any:
    """The config as ``/-/config`` shows it: credentials (webhook headers, DSNs, tokens) masked."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            secret = any(s in str(k).lower() for s in _SECRET_KEYS)
            out[k] = _REDACTED if secret and v not in (None, "", {}, []) else redact(v)
        return out
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str) and "://" in value and "@" in value.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = value.split("://", 1)
        return f"{scheme}://{_REDACTED}@{rest.split('@', 1)[1]}"  # user:password@host in a URL
    return value


# Features that add routes with ``make_routes(ctx)``; each lands with its issue.
ROUTE_MODULES = [
    ("sightglass.ingest.text_push", "make_import_routes"),
    ("sightglass.ingest.scrape", "make_routes"),
    ("sightglass.topology.routes", "make_routes"),
    ("sightglass.analytics.routes", "make_routes"),
    ("sightglass.rca.routes", "make_routes"),
    ("sightglass.cost.routes", "make_routes"),
    ("sightglass.alerting.routes", "make_routes"),
    ("sightglass.web.routes", "make_routes"),
    ("sightglass.agent.routes", "make_routes"),
]


def _optional_routes(ctx: AppContext) -> list[BaseRoute]:
    import importlib

    out: list[BaseRoute] = []
    for module, fn in ROUTE_MODULES:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):
                continue
            raise
        out.extend(getattr(mod, fn)(ctx))
    return out


class _TimingMiddleware:
    """Times every HTTP request into ``sightglass_http_request_duration_seconds`` (plain ASGI)."""

    def __init__(self, app: Any, ctx: AppContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "other")
            self.ctx.metrics.request_seconds.labels(path).observe(time.perf_counter() - t0)

"""Run the server: open the store, start background work (scraping), serve HTTP with uvicorn."""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from sightglass.api.app import create_app
from sightglass.api.context import AppContext
from sightglass.config import Config, parse_duration_ms, parse_listen
from sightglass.store.duckdb import DAY_MS, DuckDBStore, StoreOptions

log = logging.getLogger("sightglass")

SERVER_FILE = "server.json"


def store_options(config: Config) -> StoreOptions:
    s = config.storage
    return StoreOptions(
        retention_ms=parse_duration_ms(s.retention),
        rollup_retention_ms=max(parse_duration_ms(s.rollup_retention), DAY_MS),
        head_ms=parse_duration_ms(s.head),
        compact_every_s=parse_duration_ms(s.compact_every) / 1000,
    )


def open_store(config: Config) -> Any:
    """The embedded DuckDB store, or the scale-out one when ``[backends] metrics`` is set."""
    from sightglass.scaleout.store import open_scaleout

    remote = open_scaleout(config)
    if remote is not None:
        return remote
    return DuckDBStore(config.data, options=store_options(config))


def build_app(
    config: Config,
    store: Any,
    *,
    extra_routes: list[BaseRoute] | None = None,
    background: list[Callable[[AppContext], Awaitable[Any]]] | None = None,
) -> tuple[Starlette, AppContext]:
    ctx = AppContext.build(config, store)
    tasks = list(background or [])
    tasks.extend(feature_background_tasks(ctx))
    if config.scrape_configs:
        from sightglass.ingest.scrape import run_scrapers

        tasks.append(run_scrapers)
    return create_app(ctx, extra_routes=extra_routes, background=tasks), ctx


# Features that run work for the server's lifetime: ``background_tasks(ctx)`` returns coroutine
# functions (or none when the feature is switched off in the config). Each lands with its issue.
BACKGROUND_MODULES = [
    "sightglass.analytics.service",
    "sightglass.alerting.service",
    "sightglass.cost.service",
    "sightglass.scaleout.service",
]


def feature_background_tasks(ctx: AppContext) -> list[Callable[[AppContext], Awaitable[Any]]]:
    import importlib

    out: list[Callable[[AppContext], Awaitable[Any]]] = []
    for name in BACKGROUND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):
                continue
            raise
        out.extend(mod.background_tasks(ctx))
    return out


def serve(
    config: Config,
    *,
    extra_routes: list[BaseRoute] | None = None,
    background: list[Callable[[AppContext], Awaitable[Any]]] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. Writes ``<data>/server.json`` so the CLI can find this server."""
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host, port = parse_listen(config.listen)
    store = open_store(config)
    marker = Path(config.data) / SERVER_FILE
    try:
        app, _ctx = build_app(config, store, extra_routes=extra_routes, background=background)
        uv_config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        server = uvicorn.Server(uv_config)

        original_startup = server.startup

        async def startup(sockets: Any = None) -> None:
            await original_startup(sockets=sockets)
            bound = port
            for s in server.servers:
                for sock in s.sockets:
                    bound = sock.getsockname()[1]
            url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{bound}"
            marker.write_text(json.dumps({"url": url, "pid": os.getpid()}))
            if on_ready:
                on_ready(url)

        server.startup = startup  # type: ignore[method-assign]
        server.run()
    finally:
        marker.unlink(missing_ok=True)
        store.close()


def running_server_url(data_dir: str | os.PathLike[str]) -> str | None:
    """The URL of a live server over ``data_dir``, if ``server.json`` names a running process."""
    p = Path(data_dir) / SERVER_FILE
    try:
        info = json.loads(p.read_text())
        os.kill(int(info["pid"]), 0)
        return str(info["url"])
    except (OSError, ValueError, KeyError):
        return None


def install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)

"""Ingest endpoints: OTLP/HTTP, Prometheus remote-write, text push, OpenLineage.

Each handler: check limits (body size, decompressed size), decode with the module of its wire format
in ``sightglass.ingest``, write through the store, answer 2xx only after the write committed.
"""

from __future__ import annotations

from starlette.routing import Route

from sightglass.api.context import AppContext


def make_routes(ctx: AppContext) -> list[Route]:
    return []

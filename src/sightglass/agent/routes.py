"""``POST /api/v1/agent/catalog``: the agent's events, config snapshots and job → GPU intervals.

Samples travel by remote-write (``/api/v1/write``); what is not a sample has no standard wire format,
so the agent posts this small JSON document (optionally gzip)::

    {"events":    [{"ts_ms", "kind", "entity": {...}, "attributes": {...}, "severity", "source", "end_ts_ms"?}],
     "configs":   [{"ts_ms", "entity": {...}, "config": {...}, "source"}],
     "relations": [{"src", "kind", "dst", "start_ms", "end_ms"?}]}

Every item is validated before anything is written; a bad document is answered 400 naming the
first bad item, with nothing stored.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sightglass.api.context import AppContext
from sightglass.api.envelope import error, success
from sightglass.ingest.limits import IngestError, decompress, read_body
from sightglass.model import ConfigSnapshot, Event, Relation

CATALOG_PATH = "/api/v1/agent/catalog"
MAX_ITEMS = 100_000
_SEVERITIES = {"debug", "info", "warning", "critical", "error"}


class CatalogError(ValueError):
    pass


def _str_map(v: Any, where: str) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise CatalogError(f"{where} must be an object of strings")
    return v


def _int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**62:
        raise CatalogError(f"{where} must be a non-negative integer (Unix ms)")
    return v


def _text(v: Any, where: str, *, required: bool = True) -> str:
    if v is None and not required:
        return ""
    if not isinstance(v, str) or (required and not v) or len(v) > 1024:
        raise CatalogError(f"{where} must be a non-empty string of at most 1024 characters")
    return v


def parse_catalog(body: bytes) -> tuple[list[Event], list[ConfigSnapshot], list[Relation]]:
    """Validate and convert a catalog document; raises :class:`CatalogError` naming the bad item."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CatalogError(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CatalogError("body must be a JSON object with events, configs and/or relations")
    unknown = set(doc) - {"events", "configs", "relations"}
    if unknown:
        raise CatalogError(
            f"unknown field(s) {', '.join(sorted(unknown))} (expected events, configs, relations)"
        )
    lists = {k: doc.get(k, []) for k in ("events", "configs", "relations")}
    for k, v in lists.items():
        if not isinstance(v, list):
            raise CatalogError(f"{k} must be a list")
    if sum(len(v) for v in lists.values()) > MAX_ITEMS:
        raise CatalogError(f"too many items (at most {MAX_ITEMS} per request)")
    events, configs, relations = [], [], []
    for i, e in enumerate(lists["events"]):
        w = f"events[{i}]"
        if not isinstance(e, dict):
            raise CatalogError(f"{w} must be an object")
        sev = e.get("severity", "info")
        if sev not in _SEVERITIES:
            raise CatalogError(f"{w}.severity must be one of {', '.join(sorted(_SEVERITIES))}")
        attrs = e.get("attributes", {})
        if not isinstance(attrs, dict):
            raise CatalogError(f"{w}.attributes must be an object")
        end = e.get("end_ts_ms")
        events.append(
            Event(
                _int(e.get("ts_ms"), f"{w}.ts_ms"),
                _text(e.get("kind"), f"{w}.kind"),
                _str_map(e.get("entity"), f"{w}.entity"),
                attrs,
                sev,
                _text(e.get("source"), f"{w}.source", required=False),
                None if end is None else _int(end, f"{w}.end_ts_ms"),
            )
        )
    for i, c in enumerate(lists["configs"]):
        w = f"configs[{i}]"
        if not isinstance(c, dict):
            raise CatalogError(f"{w} must be an object")
        if not isinstance(c.get("config"), dict):
            raise CatalogError(f"{w}.config must be an object")
        configs.append(
            ConfigSnapshot(
                _int(c.get("ts_ms"), f"{w}.ts_ms"),
                _str_map(c.get("entity"), f"{w}.entity"),
                c["config"],
                _text(c.get("source"), f"{w}.source", required=False),
            )
        )
    for i, r in enumerate(lists["relations"]):
        w = f"relations[{i}]"
        if not isinstance(r, dict):
            raise CatalogError(f"{w} must be an object")
        end = r.get("end_ms")
        start = _int(r.get("start_ms"), f"{w}.start_ms")
        end_ms = None if end is None else _int(end, f"{w}.end_ms")
        if end_ms is not None and end_ms < start:
            raise CatalogError(f"{w}.end_ms is before start_ms")
        relations.append(
            Relation(
                _text(r.get("src"), f"{w}.src"),
                _text(r.get("kind"), f"{w}.kind"),
                _text(r.get("dst"), f"{w}.dst"),
                start,
                end_ms,
            )
        )
    return events, configs, relations


def make_routes(ctx: AppContext) -> list[BaseRoute]:
    limits = ctx.config.limits

    async def catalog(request: Request) -> Response:
        ctype = (request.headers.get("content-type") or "application/json").split(";")[0].strip().lower()
        if ctype != "application/json":
            return error(f"unsupported Content-Type {ctype!r} (expected application/json)", "bad_data", 415)
        try:
            raw = await read_body(request, limits.max_body_bytes)
            body = await asyncio.to_thread(
                decompress, raw, request.headers.get("content-encoding"), limits.max_decompressed_bytes
            )
            events, configs, relations = await asyncio.to_thread(parse_catalog, body)
        except IngestError as e:
            return error(str(e), "too_large" if e.status == 413 else "bad_data", e.status)
        except CatalogError as e:
            return error(str(e), "bad_data", 400)

        def write() -> None:
            if events:
                ctx.store.append_events(events)
            if configs:
                ctx.store.append_configs(configs)
            if relations:
                ctx.store.append_relations(relations)

        try:
            await asyncio.to_thread(write)
        except Exception as e:  # nothing acknowledged: the agent keeps the file and retries
            return error(f"the store could not write this request: {e}", "unavailable", 503)
        return success({"events": len(events), "configs": len(configs), "relations": len(relations)})

    return [Route(CATALOG_PATH, catalog, methods=["POST"])]

"""The read side of the Prometheus HTTP API: query, query_range, series, labels, label values, metadata."""

from __future__ import annotations

import asyncio
import math
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import sightglass
from sightglass.api.context import AppContext
from sightglass.api.envelope import APIError, error, success, success_json
from sightglass.config import parse_duration_ms
from sightglass.model import Matcher
from sightglass.promql.engine import parse_selector
from sightglass.promql.result import QueryError
from sightglass.store.base import StoreError
from sightglass.timeutil import now_ms, parse_step_ms, parse_time_ms

MAX_POINTS = 11_000  # Prometheus' limit on points per series in a range query


async def _params(request: Request) -> dict[str, list[str]]:
    """GET query string and POST form (application/x-www-form-urlencoded), merged like Prometheus."""
    out: dict[str, list[str]] = {}
    for k, v in request.query_params.multi_items():
        out.setdefault(k, []).append(v)
    if request.method == "POST":
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/x-www-form-urlencoded"):
            # parsed here: starlette's request.form() needs the optional python-multipart package
            body = (await request.body()).decode("utf-8", "replace")
            for k, v in parse_qsl(body, keep_blank_values=True):
                out.setdefault(k, []).append(v)
        elif ctype.startswith("multipart/form-data"):
            form = await request.form()
            for k, item in form.multi_items():
                if isinstance(item, str):
                    out.setdefault(k, []).append(item)
    return out


def _one(params: dict[str, list[str]], name: str) -> str | None:
    vals = params.get(name)
    return vals[-1] if vals else None


def _time(params: dict[str, list[str]], name: str, default: int | None = None) -> int | None:
    v = _one(params, name)
    if v is None or v == "":
        return default
    try:
        return parse_time_ms(v)
    except ValueError as e:
        raise APIError(f'invalid parameter "{name}": {e}') from None


def _matcher_sets(params: dict[str, list[str]]) -> list[list[Matcher]]:
    out = []
    for text in params.get("match[]", []):
        try:
            out.append(parse_selector(text))
        except QueryError as e:
            raise APIError(str(e)) from None
    return out


def _timeout_s(ctx: AppContext, params: dict[str, list[str]]) -> float:
    limit = parse_duration_ms(ctx.config.query.timeout) / 1000
    t = _one(params, "timeout")
    if t:
        try:
            limit = min(limit, parse_duration_ms(t) / 1000)
        except ValueError as e:
            raise APIError(f'invalid parameter "timeout": {e}') from None
    return limit


def make_routes(ctx: AppContext) -> list[Route]:
    async def handle(request: Request, fn: Any) -> Response:
        try:
            params = await _params(request)
            return await fn(params)
        except APIError as e:
            return error(str(e), e.error_type, e.status)
        except QueryError as e:
            return error(str(e), e.error_type)
        except StoreError as e:
            return error(str(e), "execution")
        except TimeoutError:
            return error("query timed out in expression evaluation", "timeout")

    async def query(request: Request) -> Response:
        async def run(params: dict[str, list[str]]) -> Response:
            q = _one(params, "query")
            if not q:
                raise APIError('invalid parameter "query": unknown position: parse error: no expression found in input')
            t = _time(params, "time", now_ms())
            assert t is not None
            limit = _timeout_s(ctx, params)
            res = await asyncio.wait_for(
                asyncio.to_thread(ctx.engine.instant, q, t, timeout_s=limit), timeout=limit + 1
            )
            return success_json(res.to_json(), res.warnings)

        return await handle(request, run)

    async def query_range(request: Request) -> Response:
        async def run(params: dict[str, list[str]]) -> Response:
            q = _one(params, "query")
            if not q:
                raise APIError('invalid parameter "query": unknown position: parse error: no expression found in input')
            start, end = _time(params, "start"), _time(params, "end")
            if start is None:
                raise APIError('invalid parameter "start": missing')
            if end is None:
                raise APIError('invalid parameter "end": missing')
            if end < start:
                raise APIError('invalid parameter "end": end timestamp must not be before start time')
            step_s = _one(params, "step")
            if not step_s:
                raise APIError('invalid parameter "step": missing')
            try:
                step = parse_step_ms(step_s)
            except ValueError as e:
                raise APIError(f'invalid parameter "step": {e}') from None
            if (end - start) / step > MAX_POINTS:
                raise APIError(
                    "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query "
                    "resolution (?step=XX)"
                )
            limit = _timeout_s(ctx, params)
            res = await asyncio.wait_for(
                asyncio.to_thread(ctx.engine.range, q, start, end, step, timeout_s=limit), timeout=limit + 1
            )
            return success_json(res.to_json(), res.warnings)

        return await handle(request, run)

    async def series(request: Request) -> Response:
        async def run(params: dict[str, list[str]]) -> Response:
            sets = _matcher_sets(params)
            if not sets:
                raise APIError("no match[] parameter provided")
            keys = await asyncio.to_thread(ctx.store.series, sets, _time(params, "start"), _time(params, "end"))
            limit = _limit(params)
            data = [k.all_labels() for k in keys]
            warnings = None
            if limit and len(data) > limit:
                data, warnings = data[:limit], ["results truncated due to limit"]
            return success(data, warnings)

        return await handle(request, run)

    async def labels(request: Request) -> Response:
        async def run(params: dict[str, list[str]]) -> Response:
            names = await asyncio.to_thread(
                ctx.store.label_names, _matcher_sets(params), _time(params, "start"), _time(params, "end")
            )
            return success(_truncate(names, _limit(params)))

        return await handle(request, run)

    async def label_values(request: Request) -> Response:
        name = request.path_params["name"]

        async def run(params: dict[str, list[str]]) -> Response:
            label = name
            if label.startswith("U__"):  # Prometheus' escaping for UTF-8 label names
                label = _unescape_label(label)
            values = await asyncio.to_thread(
                ctx.store.label_values, label, _matcher_sets(params), _time(params, "start"), _time(params, "end")
            )
            return success(_truncate(values, _limit(params)))

        return await handle(request, run)

    async def metadata(request: Request) -> Response:
        async def run(params: dict[str, list[str]]) -> Response:
            md = ctx.store.metadata(_one(params, "metric"))
            limit = _limit(params)
            out: dict[str, Any] = {}
            for metric, entries in md.items():
                if limit and len(out) >= limit:
                    break
                out[metric] = [{"type": e.type.value, "help": e.help, "unit": e.unit} for e in entries]
            return success(out)

        return await handle(request, run)

    async def buildinfo(request: Request) -> Response:
        return success(
            {
                "version": "2.53.0",  # the Prometheus API level we speak; Grafana checks it for features
                "revision": "",
                "branch": "sightglass",
                "buildUser": "sightglass",
                "buildDate": "",
                "goVersion": "python",
                "sightglassVersion": sightglass.__version__,
            }
        )

    async def not_supported(request: Request) -> Response:
        return success([])

    return [
        Route("/api/v1/query", query, methods=["GET", "POST"]),
        Route("/api/v1/query_range", query_range, methods=["GET", "POST"]),
        Route("/api/v1/series", series, methods=["GET", "POST"]),
        Route("/api/v1/labels", labels, methods=["GET", "POST"]),
        Route("/api/v1/label/{name}/values", label_values, methods=["GET"]),
        Route("/api/v1/metadata", metadata, methods=["GET"]),
        Route("/api/v1/status/buildinfo", buildinfo, methods=["GET"]),
        Route("/api/v1/query_exemplars", not_supported, methods=["GET", "POST"]),
    ]


def _limit(params: dict[str, list[str]]) -> int:
    v = _one(params, "limit")
    if not v:
        return 0
    try:
        n = int(v)
    except ValueError:
        raise APIError(f'invalid parameter "limit": {v!r} is not an integer') from None
    if n < 0:
        raise APIError('invalid parameter "limit": must be >= 0')
    return n


def _truncate(items: list[str], limit: int) -> list[str]:
    return items[:limit] if limit else items


def _unescape_label(name: str) -> str:
    out, i, s = [], 0, name[3:]
    while i < len(s):
        if s[i] == "_" and i + 1 < len(s) and s[i + 1] == "_":
            out.append("_")
            i += 2
        elif s[i] == "_":
            j = s.find("_", i + 1)
            if j < 0:
                return name
            try:
                out.append(chr(int(s[i + 1 : j], 16)))
            except ValueError:
                return name
            i = j + 1
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def finite(v: float) -> bool:
    return math.isfinite(v)

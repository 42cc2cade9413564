"""``sightglass query``: evaluate against the files, or against the running server that holds them."""

from __future__ import annotations

from typing import Any

import httpx

from sightglass.config import Config, parse_duration_ms
from sightglass.promql.engine import Engine
from sightglass.promql.result import QueryError
from sightglass.store.base import StoreError
from sightglass.store.duckdb import DuckDBStore
from sightglass.timeutil import now_ms, parse_step_ms, parse_time_ms


def _err(message: str, error_type: str = "bad_data") -> dict[str, Any]:
    return {"status": "error", "errorType": error_type, "error": message}


def run_query(
    config: Config,
    expr: str,
    *,
    at: str | None = None,
    start: str | None = None,
    end: str | None = None,
    step: str | None = None,
    server: str | None = None,
) -> dict[str, Any]:
    """Answer with the Prometheus API envelope, from the store or from a server over HTTP."""
    from sightglass.server import running_server_url

    try:
        now = now_ms()
        if start is not None:
            s = parse_time_ms(start, now=now)
            e = parse_time_ms(end, now=now) if end else now
            st = parse_step_ms(step) if step else max(1000, (e - s) // 250)
        else:
            t = parse_time_ms(at, now=now) if at else now
    except ValueError as ex:
        return _err(str(ex))
    url = server or running_server_url(config.data)
    if url:
        params: dict[str, Any] = {"query": expr}
        if start is not None:
            params.update(start=s / 1000, end=e / 1000, step=st / 1000)
            path = "/api/v1/query_range"
        else:
            params["time"] = t / 1000
            path = "/api/v1/query"
        try:
            r = httpx.post(url.rstrip("/") + path, data=params, timeout=120)
        except httpx.HTTPError as ex:
            return _err(f"cannot reach server at {url}: {ex}", "unavailable")
        try:
            body: dict[str, Any] = r.json()
        except ValueError:
            return _err(f"server at {url} answered HTTP {r.status_code} without JSON", "internal")
        return body
    try:
        with DuckDBStore(config.data, read_only=True) as store:
            engine = Engine(
                store,
                lookback_ms=parse_duration_ms(config.query.lookback_delta),
                max_samples=config.query.max_samples,
            )
            res = engine.range(expr, s, e, st) if start is not None else engine.instant(expr, t)
            return {
                "status": "success",
                "data": res.to_api(),
                **({"warnings": res.warnings} if res.warnings else {}),
            }
    except QueryError as ex:
        return _err(str(ex), ex.error_type)
    except StoreError as ex:
        return _err(str(ex), "execution")

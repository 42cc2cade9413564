"""``POST /api/v1/import/prometheus``: push Prometheus text, as VictoriaMetrics accepts it.

The body is Prometheus exposition text (gzip allowed), lines may carry millisecond timestamps, lines
without one get the arrival time; ``extra_label=name=value`` query parameters add labels to every
series. Answers 204 once the samples are committed; a malformed body is refused whole with 400 and the
line at fault.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sightglass.api.envelope import error
from sightglass.ingest.limits import IngestError, decompress, read_body
from sightglass.ingest.prometheus_text import ParseError, ParseResult, ParserLimits, TextParser
from sightglass.ingest.workers import TextParsePool
from sightglass.model import LABEL_NAME_RE, SeriesKey
from sightglass.store.base import LimitExceeded, StoreError

PATH = "/api/v1/import/prometheus"


def make_import_routes(ctx: Any) -> list[Route]:
    limits = ctx.config.limits
    parser_limits = ParserLimits(limits.max_label_value_bytes, limits.max_labels_per_series)
    parser = TextParser(parser_limits)
    lock = threading.Lock()  # the parser's series cache is shared by all pushes
    pool = TextParsePool(parser_limits)  # large bodies: parsed in worker processes (other cores)
    ctx.extras["text_parse_pool"] = pool

    def parse(body: bytes, now_ms: int) -> ParseResult:
        with lock:
            return parser.parse(body, openmetrics=False, default_ts_ms=now_ms)

    def write(res: ParseResult, extra: dict[str, str]) -> int:
        batch = res.batch
        if extra:
            batch.series = [SeriesKey.of(k.metric, {**dict(k.labels), **extra}) for k in batch.series]
        if len(batch):
            ctx.store.append(batch, max_new_series=limits.max_new_series_per_request)
        return len(batch)

    def whole(raw: bytes, encoding: str | None, extra: dict[str, str]) -> int:
        """Decompress, parse and write in one worker-thread hop (no parse workers): samples written."""
        body = decompress(raw, encoding, limits.max_decompressed_bytes)
        return write(parse(body, int(time.time() * 1000)), extra)

    async def push(request: Request) -> Response:
        extra: dict[str, str] = {}
        for item in request.query_params.getlist("extra_label"):
            name, sep, value = item.partition("=")
            if not sep or not LABEL_NAME_RE.match(name):
                return _reject(ctx, "bad_data", f"invalid extra_label {item!r}: expected name=value", 400)
            extra[name] = value
        encoding = request.headers.get("content-encoding")
        try:
            raw = await read_body(request, limits.max_body_bytes)
            if pool.workers <= 0:
                n = await asyncio.to_thread(whole, raw, encoding, extra)
            else:
                body = await asyncio.to_thread(decompress, raw, encoding, limits.max_decompressed_bytes)
                now_ms = int(time.time() * 1000)
                res = await pool.parse(body, now_ms) if pool.wants(body) else None
                if res is None:
                    res = await asyncio.to_thread(parse, body, now_ms)
                n = await asyncio.to_thread(write, res, extra)
        except IngestError as e:
            return _reject(ctx, e.reason, str(e), e.status)
        except ParseError as e:
            return _reject(ctx, "decode", f"cannot parse the body: {e}", 400)
        except LimitExceeded as e:
            return _reject(ctx, "too_many_series", str(e), 400)
        except StoreError as e:
            return _reject(ctx, "store", f"the store could not write this request: {e}", 503)
        if n:
            ctx.metrics.ingested_samples.labels(PATH).inc(n)
        return Response(status_code=204)

    return [Route(PATH, push, methods=["POST"])]


def _reject(ctx: Any, reason: str, message: str, status: int) -> Response:
    ctx.metrics.rejected_requests.labels(PATH, reason).inc()
    return error(message, "bad_data" if status < 500 else "unavailable", status)

"""Ingest endpoints: OTLP/HTTP, Prometheus remote-write, OpenLineage.

Each handler: read the body within ``limits.max_body_bytes``, decompress within
``limits.max_decompressed_bytes``, decode with the module of its wire format in
``sightglass.ingest`` (off the event loop), write through the store, and answer 2xx only after the
write committed (the store's ``append`` returns after COMMIT, so an acknowledged write survives
``kill -9``). A bad request is answered alone: the store commits each request's batch or fails it
alone, so it never costs another request's data.

Routes:

- ``POST /v1/metrics``, ``/v1/traces``, ``/v1/logs`` (OTLP/HTTP, protobuf or JSON, optional gzip),
  also under ``/api/v1/otlp/`` like Prometheus' native OTLP receiver;
- ``POST /api/v1/write`` (remote-write 1.0 and 2.0, snappy);
- ``POST /api/v1/lineage`` (OpenLineage run events, Marquez' path).

Status codes: 400 undecodable or invalid (do not retry), 413 too large, 415 unsupported content type
or encoding, 503 when the store cannot write (retry). OTLP errors carry a ``google.rpc.Status`` in
the request's encoding; remote-write errors are plain text (as Prometheus answers); lineage errors
use the API envelope.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sightglass.api.context import AppContext
from sightglass.api.envelope import error, success
from sightglass.ingest import openlineage, otlp, remote_write
from sightglass.ingest.limits import BadRequest, IngestError, decompress, read_body
from sightglass.model import SampleBatch
from sightglass.store.base import LimitExceeded, StoreError

log = logging.getLogger(__name__)

OTLP_PATHS = {"metrics": "/v1/metrics", "traces": "/v1/traces", "logs": "/v1/logs"}
OTLP_PREFIX_ALIAS = "/api/v1/otlp"
REMOTE_WRITE_PATH = "/api/v1/write"
LINEAGE_PATH = "/api/v1/lineage"

Handler = Callable[[Request], Awaitable[Response]]


class _Rejection(Exception):
    """An error that is not the client's wire format: too many series, or the store failing."""

    def __init__(self, message: str, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def make_routes(ctx: AppContext) -> list[Route]:
    limits = ctx.config.limits
    metrics_decoder = otlp.MetricsDecoder(
        max_label_value_bytes=limits.max_label_value_bytes, max_labels_per_series=limits.max_labels_per_series
    )
    rw_decoder = remote_write.RemoteWriteDecoder(
        max_label_value_bytes=limits.max_label_value_bytes, max_labels_per_series=limits.max_labels_per_series
    )
    # the decoders keep caches that are not safe for concurrent use; decoding holds the GIL anyway
    metrics_lock = threading.Lock()
    rw_lock = threading.Lock()

    async def body_of(request: Request, default_encoding: str | None = None) -> bytes:
        raw = await read_body(request, limits.max_body_bytes)
        encoding = request.headers.get("content-encoding") or default_encoding
        if not encoding or encoding.lower() == "identity":
            return decompress(raw, None, limits.max_decompressed_bytes)
        return await asyncio.to_thread(decompress, raw, encoding, limits.max_decompressed_bytes)

    async def write(batch: SampleBatch, path: str) -> None:
        if not len(batch) and not batch.exp_histograms:
            return
        try:
            await asyncio.to_thread(ctx.store.append, batch, max_new_series=limits.max_new_series_per_request)
        except LimitExceeded as e:
            raise _Rejection(str(e), 400, "too_many_series") from None
        except StoreError as e:
            log.warning("ingest write failed on %s: %s", path, e)
            raise _Rejection(f"the store could not write this request: {e}", 503, "store") from None
        ctx.metrics.ingested_samples.labels(path).inc(len(batch))

    async def write_catalog(fn: Callable[[Any], int], items: list[Any]) -> None:
        if not items:
            return
        try:
            await asyncio.to_thread(fn, items)
        except Exception as e:  # the catalog write failed as a whole: nothing was acknowledged
            log.warning("catalog write failed: %s", e)
            raise _Rejection(f"the store could not write this request: {e}", 503, "store") from None

    def rejected(path: str, reason: str) -> None:
        ctx.metrics.rejected_requests.labels(path, reason).inc()

    # ------------------------------------------------------------------ OTLP
    def otlp_handler(signal: str, path: str) -> Handler:
        async def handle(request: Request) -> Response:
            encoding = "json"
            try:
                encoding = otlp.media_type(request.headers.get("content-type"))
                body = await body_of(request)
                fast = None
                if signal == "metrics" and encoding == "protobuf":
                    # steady gauges/sums straight from the body; None: the full parse below
                    fast = await asyncio.to_thread(decode_metrics_body, body)
                if fast is not None:
                    n_rejected, message = await write_metrics(fast, path)
                else:
                    req = await asyncio.to_thread(otlp.parse_request, body, encoding, signal)
                    raw = body if encoding == "protobuf" else None  # lets the decoder read points' bytes
                    n_rejected, message = await ingest_otlp(signal, req, path, raw)
            except (IngestError, _Rejection) as e:
                rejected(path, e.reason)
                media = otlp.PROTOBUF if encoding == "protobuf" else otlp.JSON
                return Response(otlp.encode_status(encoding, e.status, str(e)), e.status, media_type=media)
            media = otlp.PROTOBUF if encoding == "protobuf" else otlp.JSON
            return Response(
                otlp.encode_response(signal, encoding, n_rejected, message), 200, media_type=media
            )

        return handle

    def decode_metrics_body(body: bytes) -> otlp.MetricsResult | None:
        with metrics_lock:
            return metrics_decoder.decode_body(body)

    async def write_metrics(res: otlp.MetricsResult, path: str) -> tuple[int, str]:
        if res.rejected and res.rejected >= res.points:
            raise BadRequest(f"every data point was rejected: {res.error_message()}", reason="invalid_points")
        await write(res.batch, path)
        metrics_decoder.metadata_stored(res.batch)
        return res.rejected, res.error_message()

    async def ingest_otlp(signal: str, req: Any, path: str, body: bytes | None = None) -> tuple[int, str]:
        if signal == "metrics":

            def decode() -> otlp.MetricsResult:
                with metrics_lock:
                    return metrics_decoder.decode(req, body)

            return await write_metrics(await asyncio.to_thread(decode), path)
        if signal == "traces":
            spans = await asyncio.to_thread(otlp.decode_traces, req)
            if spans.rejected and not spans.spans:
                raise BadRequest(
                    "every span was rejected: " + "; ".join(spans.errors), reason="invalid_spans"
                )
            await write_catalog(ctx.store.append_spans, spans.spans)
            ctx.metrics.ingested_samples.labels(path).inc(len(spans.spans))
            return spans.rejected, "; ".join(spans.errors)
        logs = await asyncio.to_thread(otlp.decode_logs, req)
        await write_catalog(ctx.store.append_logs, logs.logs)
        ctx.metrics.ingested_samples.labels(path).inc(len(logs.logs))
        return logs.rejected, "; ".join(logs.errors)

    # ------------------------------------------------------------------ remote-write
    async def remote_write_handler(request: Request) -> Response:
        path = REMOTE_WRITE_PATH
        try:
            version = remote_write.negotiate_version(request.headers.get("content-type"))
            # the spec requires snappy; Prometheus reads a missing Content-Encoding as snappy too
            body = await body_of(request, default_encoding="snappy")

            def decode() -> remote_write.RemoteWriteResult:
                with rw_lock:
                    return rw_decoder.decode(body, version)

            res = await asyncio.to_thread(decode)
            await write(res.batch, path)
        except (IngestError, _Rejection) as e:
            rejected(path, e.reason)
            return Response(str(e) + "\n", e.status, media_type="text/plain; charset=utf-8")
        headers = {
            "X-Prometheus-Remote-Write-Samples-Written": str(res.samples),
            "X-Prometheus-Remote-Write-Histograms-Written": str(res.histograms),
            "X-Prometheus-Remote-Write-Exemplars-Written": "0",
        }
        return Response(status_code=204, headers=headers)

    # ------------------------------------------------------------------ OpenLineage
    async def lineage_handler(request: Request) -> Response:
        path = LINEAGE_PATH
        try:
            ctype = (request.headers.get("content-type") or "application/json").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise IngestError(
                    f"unsupported Content-Type {ctype!r} for OpenLineage (expected application/json)",
                    reason="unsupported_media_type",
                    status=415,
                )
            body = await body_of(request)
            events = await asyncio.to_thread(openlineage.parse_events, body)
            await write_catalog(ctx.store.append_lineage, events)
        except (IngestError, _Rejection) as e:
            rejected(path, e.reason)
            kind = {413: "too_large", 415: "unsupported_media_type", 503: "unavailable"}.get(
                e.status, "bad_data"
            )
            return error(str(e), kind, e.status)
        ctx.metrics.ingested_samples.labels(path).inc(len(events))
        return success({"events": len(events)})

    routes: list[Route] = []
    for signal, p in OTLP_PATHS.items():
        handler = otlp_handler(signal, p)
        routes.append(Route(p, handler, methods=["POST"]))
        routes.append(Route(OTLP_PREFIX_ALIAS + p, handler, methods=["POST"]))
    routes.append(Route(REMOTE_WRITE_PATH, remote_write_handler, methods=["POST"]))
    routes.append(Route(LINEAGE_PATH, lineage_handler, methods=["POST"]))
    return routes

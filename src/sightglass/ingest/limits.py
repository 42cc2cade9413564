"""Reading request bodies within limits: body size, decompressed size, and the errors ingest answers.

Every push path (OTLP, remote-write, OpenLineage) reads its body through :func:`read_body` and
:func:`decompress`, so a client can never make the server hold more than ``max_body_bytes`` of
compressed input or allocate more than ``max_decompressed_bytes`` of output (gzip and snappy bombs
fail early, before the memory is taken).
"""

from __future__ import annotations

import zlib

import cramjam
from starlette.requests import ClientDisconnect, Request


class IngestError(Exception):
    """A request ingest refuses: carries the HTTP status and a short reason label for metrics.

    ``str(error)`` is the message for the client; ``reason`` is a low-cardinality label such as
    ``too_large`` or ``decode`` for ``sightglass_ingest_rejected_requests``.
    """

    status = 400
    reason = "bad_data"

    def __init__(self, message: str, *, reason: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        if status is not None:
            self.status = status


class BadRequest(IngestError):
    """The body cannot be decoded or fails validation (400: do not retry)."""


class BodyTooLarge(IngestError):
    """The body, or what it decompresses to, is over a configured limit (413)."""

    status = 413
    reason = "too_large"


class UnsupportedMediaType(IngestError):
    """Content-Type or Content-Encoding this path does not speak (415)."""

    status = 415
    reason = "unsupported_media_type"


async def read_body(request: Request, max_bytes: int) -> bytes:
    """Read the whole body, refusing (413) as soon as it passes ``max_bytes``.

    A ``Content-Length`` over the limit is refused before a byte is read; a chunked or lying body is
    cut off while streaming, so at most ``max_bytes`` plus one chunk is ever held.
    """
    length = request.headers.get("content-length")
    if length:
        try:
            declared = int(length)
        except ValueError:
            raise BadRequest(f"invalid Content-Length {length!r}", reason="bad_header") from None
        if declared > max_bytes:
            raise BodyTooLarge(f"body of {declared} bytes exceeds the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            if not chunk:
                continue
            total += len(chunk)
            if total > max_bytes:
                raise BodyTooLarge(f"body exceeds the limit of {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest("client disconnected before sending the whole body", reason="disconnect") from None
    return b"".join(chunks)


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding`` (``gzip``, ``deflate``, ``snappy`` block, or none) within ``max_bytes``.

    Raises :class:`BodyTooLarge` when the output would pass ``max_bytes`` (without allocating it),
    :class:`BadRequest` for corrupt input and :class:`UnsupportedMediaType` for other encodings.
    """
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        if len(body) > max_bytes:
            raise BodyTooLarge(f"decompressed body exceeds {max_bytes} bytes")
        return body
    if enc in ("gzip", "x-gzip"):
        return _inflate(body, zlib.MAX_WBITS | 16, max_bytes, "gzip", multi_member=True)
    if enc == "deflate":
        # HTTP "deflate" is zlib-wrapped (RFC 9110), but some clients send raw deflate: accept both.
        if body[:1] and (body[0] & 0x0F) == 8 and int.from_bytes(body[:2], "big") % 31 == 0:
            return _inflate(body, zlib.MAX_WBITS, max_bytes, "deflate")
        return _inflate(body, -zlib.MAX_WBITS, max_bytes, "deflate")
    if enc == "snappy":
        return snappy_block_decompress(body, max_bytes)
    raise UnsupportedMediaType(
        f"unsupported Content-Encoding {encoding!r} (supported: gzip, deflate, snappy, identity)",
        reason="unsupported_encoding",
    )


def _inflate(body: bytes, wbits: int, max_bytes: int, name: str, *, multi_member: bool = False) -> bytes:
    out: list[bytes] = []
    total = 0
    data = body
    while True:
        d = zlib.decompressobj(wbits)
        try:
            # max_length bounds what one call may produce: max_bytes + 1 tells "over" from "exactly".
            chunk = d.decompress(data, max_bytes - total + 1)
        except zlib.error as e:
            raise BadRequest(f"invalid {name} body: {e}", reason="decompress") from None
        total += len(chunk)
        if total > max_bytes:
            raise BodyTooLarge(f"decompressed body exceeds {max_bytes} bytes")
        out.append(chunk)
        if not d.eof:
            if d.unconsumed_tail:
                # output stopped exactly at the limit with input left: one more byte would pass it
                raise BodyTooLarge(f"decompressed body exceeds {max_bytes} bytes")
            raise BadRequest(f"truncated {name} body", reason="decompress")
        data = d.unused_data
        if not (multi_member and data):
            break
    return b"".join(out)


def snappy_uncompressed_length(body: bytes) -> int:
    """The uncompressed length a snappy block declares in its varint header."""
    result = 0
    shift = 0
    for i in range(min(len(body), 5)):
        b = body[i]
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result
        shift += 7
    raise BadRequest("invalid snappy block: bad length header", reason="decompress")


def snappy_block_decompress(body: bytes, max_bytes: int) -> bytes:
    """Decompress a snappy *block* (not framed), checking the declared size before allocating it."""
    if body[:10] == b"\xff\x06\x00\x00sNaPpY":
        raise BadRequest("snappy framed format is not allowed; send the block format", reason="decompress")
    n = snappy_uncompressed_length(body)
    if n > max_bytes:
        raise BodyTooLarge(f"decompressed body exceeds {max_bytes} bytes (snappy header declares {n})")
    try:
        out = bytes(cramjam.snappy.decompress_raw(body))
    except Exception as e:  # cramjam.DecompressionError, but keep a bad body from becoming a 500
        raise BadRequest(f"invalid snappy block: {e}", reason="decompress") from None
    if len(out) != n:
        raise BadRequest("invalid snappy block: length does not match its header", reason="decompress")
    return out


def snappy_block_compress(data: bytes) -> bytes:
    """Compress ``data`` as one snappy block (what remote-write senders do)."""
    return bytes(cramjam.snappy.compress_raw(data))

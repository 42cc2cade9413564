"""Body limits: streaming size cap, and decompression that never allocates past the limit."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import cramjam
import pytest
from starlette.requests import Request

from sightglass.ingest.limits import (
    BadRequest,
    BodyTooLarge,
    UnsupportedMediaType,
    decompress,
    read_body,
    snappy_block_compress,
    snappy_block_decompress,
)

MB = 1024 * 1024


def _request(chunks: list[bytes], headers: dict[str, str] | None = None) -> Request:
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": raw_headers, "query_string": b""}
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return Request(scope, receive)


def _read(chunks: list[bytes], limit: int, headers: dict[str, str] | None = None) -> bytes:
    return asyncio.run(read_body(_request(chunks, headers), limit))


def test_read_body_within_limit() -> None:
    assert _read([b"abc", b"def"], 6) == b"abcdef"


def test_read_body_streaming_over_limit() -> None:
    with pytest.raises(BodyTooLarge, match="exceeds the limit of 5 bytes"):
        _read([b"abc", b"def"], 5)


def test_read_body_content_length_checked_up_front() -> None:
    consumed = []

    async def receive() -> dict[str, object]:
        consumed.append(1)
        return {"type": "http.request", "body": b"x", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"100")]}

    async def go() -> None:
        await read_body(Request(scope, receive), 10)

    with pytest.raises(BodyTooLarge, match="body of 100 bytes"):
        asyncio.run(go())
    assert consumed == []  # refused before reading a byte


def test_read_body_invalid_content_length() -> None:
    with pytest.raises(BadRequest):
        _read([b"x"], 10, {"content-length": "ten"})


def test_error_carries_status_and_reason() -> None:
    e = BodyTooLarge("x")
    assert (e.status, e.reason) == (413, "too_large")
    assert (UnsupportedMediaType("x").status, BadRequest("x").status) == (415, 400)


@pytest.mark.parametrize("encoding", [None, "", "identity"])
def test_identity(encoding: str | None) -> None:
    assert decompress(b"hello", encoding, 10) == b"hello"
    with pytest.raises(BodyTooLarge):
        decompress(b"hello", encoding, 4)


def test_gzip_round_trip_and_exact_limit() -> None:
    data = b"x" * 1000
    assert decompress(gzip.compress(data), "gzip", 1000) == data
    with pytest.raises(BodyTooLarge, match="decompressed body exceeds 999 bytes"):
        decompress(gzip.compress(data), "gzip", 999)


def test_gzip_multi_member() -> None:
    body = gzip.compress(b"abc") + gzip.compress(b"def")
    assert decompress(body, "gzip", 100) == b"abcdef"
    with pytest.raises(BodyTooLarge):
        decompress(body, "gzip", 5)


def test_gzip_bomb_is_stopped_early() -> None:
    bomb = gzip.compress(b"\0" * (64 * MB), compresslevel=9)  # ~64 KiB on the wire
    assert len(bomb) < 100_000
    with pytest.raises(BodyTooLarge, match=f"exceeds {MB} bytes"):
        decompress(bomb, "gzip", MB)


def test_gzip_corrupt_and_truncated() -> None:
    with pytest.raises(BadRequest, match="invalid gzip"):
        decompress(b"not gzip at all", "gzip", 100)
    with pytest.raises(BadRequest, match="truncated gzip"):
        decompress(gzip.compress(b"y" * 1000)[:-10], "gzip", 10_000)


def test_deflate_zlib_and_raw() -> None:
    data = b"deflate me " * 50
    assert decompress(zlib.compress(data), "deflate", 10_000) == data
    raw = zlib.compressobj(wbits=-15)
    body = raw.compress(data) + raw.flush()
    assert decompress(body, "deflate", 10_000) == data
    with pytest.raises(BodyTooLarge):
        decompress(zlib.compress(data), "deflate", 100)


def test_snappy_round_trip() -> None:
    data = b"snappy block " * 100
    assert decompress(snappy_block_compress(data), "snappy", 10_000) == data


def test_snappy_bomb_rejected_from_header() -> None:
    body = snappy_block_compress(b"\0" * (4 * MB))
    with pytest.raises(BodyTooLarge, match="snappy header declares 4194304"):
        snappy_block_decompress(body, MB)
    # a forged header claiming 2 GiB with no data behind it never reaches the allocator
    forged = b"\x80\x80\x80\x80\x08" + b"\0" * 10
    with pytest.raises(BodyTooLarge):
        decompress(forged, "snappy", MB)


def test_snappy_corrupt_and_framed() -> None:
    with pytest.raises(BadRequest, match="invalid snappy"):
        decompress(b"\x10garbage", "snappy", 100)
    framed = bytes(cramjam.snappy.compress(b"framed data"))
    with pytest.raises(BadRequest, match="framed format"):
        decompress(framed, "snappy", 100)


def test_unsupported_encoding() -> None:
    with pytest.raises(UnsupportedMediaType, match="br"):
        decompress(b"x", "br", 100)

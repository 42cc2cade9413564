"""Protobuf base-128 varints, written and read by hand where a message is built from or walked as bytes
(remote-write and OTLP fast paths, the agent's pushes). No protobuf import, so the agent stays light."""

from __future__ import annotations


def encode_varint(n: int) -> bytes:
    """``n`` as a protobuf varint; a negative int64 as its 10-byte two's complement."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``buf[pos:end]`` and the position after it; ValueError if it runs past ``end``."""
    result = shift = 0
    while pos < end and shift < 64:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
    raise ValueError("bad varint")

"""Protobuf base-128 varints, written by hand where a message is built from bytes (remote-write and
OTLP fast paths, the agent's pushes). No protobuf import, so the agent stays light."""

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

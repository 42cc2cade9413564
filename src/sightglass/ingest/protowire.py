"""Protobuf helpers shared by the binary ingest paths: runtime descriptors and precise decode errors.

The C (upb) parser says only "Error parsing message" for a bad body. A client deserves to know
where its body broke, so on failure :func:`describe_decode_error` walks the wire format against the
message descriptor and names the first field that is truncated, has a bad wire type or invalid UTF-8.
It runs only on the error path, so it may be slow.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

_F = descriptor_pb2.FieldDescriptorProto

# short names for building descriptors by hand
DOUBLE, INT64, UINT64, UINT32, SINT32, SINT64 = (
    _F.TYPE_DOUBLE,
    _F.TYPE_INT64,
    _F.TYPE_UINT64,
    _F.TYPE_UINT32,
    _F.TYPE_SINT32,
    _F.TYPE_SINT64,
)
STRING, MESSAGE, ENUM, BYTES = _F.TYPE_STRING, _F.TYPE_MESSAGE, _F.TYPE_ENUM, _F.TYPE_BYTES
REPEATED = _F.LABEL_REPEATED


def add_message(
    fdp: descriptor_pb2.FileDescriptorProto,
    name: str,
    fields: list[tuple[str, int, int, int | None, str | None, int | None]],
    oneofs: tuple[str, ...] = (),
) -> descriptor_pb2.DescriptorProto:
    """Add message ``name`` with ``(name, number, type, label, type_name, oneof_index)`` fields."""
    msg = fdp.message_type.add(name=name)
    for oneof in oneofs:
        msg.oneof_decl.add(name=oneof)
    for fname, number, ftype, label, type_name, oneof_index in fields:
        f = msg.field.add(name=fname, number=number, type=ftype, label=label or _F.LABEL_OPTIONAL)
        if type_name:
            f.type_name = type_name
        if oneof_index is not None:
            f.oneof_index = oneof_index
    return msg


class _Truncated(Exception):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    n = len(data)
    while True:
        if pos >= n:
            raise _Truncated
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


MAX_FIELDS_WALKED = 200_000  # the walk is pure Python: bound the CPU a hostile body can cost


class _OutOfBudget(Exception):
    pass


def describe_decode_error(data: bytes, desc: Descriptor) -> str:
    """Why ``data`` is not a valid ``desc`` message, with the byte offset and field path."""
    try:
        found = _walk(data, 0, len(data), desc, desc.name, [MAX_FIELDS_WALKED])
    except RecursionError:
        found = "message nesting is too deep"
    except _OutOfBudget:
        found = f"malformed protobuf (fault not within the first {MAX_FIELDS_WALKED} fields)"
    return found or "malformed protobuf (no specific fault found)"


def _walk(
    data: bytes, pos: int, end: int, desc: Descriptor | None, path: str, budget: list[int]
) -> str | None:
    while pos < end:
        budget[0] -= 1
        if budget[0] < 0:
            raise _OutOfBudget
        start = pos
        try:
            tag, pos = _varint(data, pos)
        except _Truncated:
            return f"{path}: truncated field tag at byte {start}"
        except ValueError as e:
            return f"{path}: {e} at byte {start}"
        number, wire = tag >> 3, tag & 7
        if number == 0:
            return f"{path}: invalid field number 0 at byte {start}"
        field: FieldDescriptor | None = desc.fields_by_number.get(number) if desc is not None else None
        where = f"{path}.{field.name if field else number}"
        if pos > end:
            return f"{where}: truncated at byte {start}"
        if wire == 0:
            try:
                _, pos = _varint(data, pos)
            except (_Truncated, ValueError):
                return f"{where}: truncated or invalid varint at byte {start}"
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > end:
                return f"{where}: truncated fixed-width value at byte {start}"
        elif wire == 2:
            try:
                length, pos = _varint(data, pos)
            except (_Truncated, ValueError):
                return f"{where}: truncated length at byte {start}"
            if pos + length > end:
                return (
                    f"{where}: field at byte {start} declares {length} bytes but only {end - pos} remain "
                    "(truncated body?)"
                )
            if field is not None and field.type == FieldDescriptor.TYPE_MESSAGE:
                inner = _walk(data, pos, pos + length, field.message_type, where, budget)
                if inner:
                    return inner
            elif field is not None and field.type == FieldDescriptor.TYPE_STRING:
                try:
                    data[pos : pos + length].decode("utf-8")
                except UnicodeDecodeError:
                    return f"{where}: string at byte {start} is not valid UTF-8"
            pos += length
        else:
            return f"{where}: unsupported wire type {wire} at byte {start}"
        if field is not None and not _wire_fits(field, wire):
            return f"{where}: wire type {wire} does not match the field's type at byte {start}"
    return None


def _wire_fits(field: FieldDescriptor, wire: int) -> bool:
    t = field.type
    if t in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return wire == 2
    packable = is_repeated(field) and wire == 2
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64):
        return wire == 1 or packable
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_SFIXED32):
        return wire == 5 or packable
    return wire == 0 or packable


def is_repeated(field: FieldDescriptor) -> bool:
    rep = getattr(field, "is_repeated", None)  # protobuf >= 6 has the property, older only ``label``
    if rep is not None:
        return bool(rep)
    return bool(field.label == FieldDescriptor.LABEL_REPEATED)

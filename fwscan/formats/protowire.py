"""A minimal, typed codec for the protocol buffers wire format.

Only what fwscan needs to read and write proto2 messages such as the A/B OTA payload manifest:
varints, 32/64-bit fixed fields and length-delimited fields (bytes, strings, nested messages).
Groups (wire types 3 and 4) are deprecated and refused.

Decoding is defensive: every length is checked against the bytes that remain, varints are at
most 10 bytes and 64 bits, and nested messages are decoded at most :data:`MAX_DEPTH` deep.
Encoding is deterministic: fields are written in field-number order, repeated fields in the
order they were added.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

from fwscan.errors import UnpackError

MAX_DEPTH = 32
"""How deep :meth:`Field.message` lets messages nest before refusing the input."""

_MAX_FIELD_NUMBER = (1 << 29) - 1
_RESERVED_NUMBERS = range(19000, 20000)
_U64_LIMIT = 1 << 64
_U32_LIMIT = 1 << 32


class WireError(UnpackError):
    """The bytes are not a well-formed protobuf message."""


class WireType(enum.IntEnum):
    """The low three bits of a field key: how the value is encoded."""

    VARINT = 0
    I64 = 1
    LEN = 2
    SGROUP = 3
    EGROUP = 4
    I32 = 5


def encode_varint(value: int) -> bytes:
    """The base-128 varint encoding of an unsigned 64-bit ``value``."""
    if not 0 <= value < _U64_LIMIT:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode the varint at ``data[pos:]``; return ``(value, position after it)``."""
    end = len(data)
    if pos < end and data[pos] < 0x80:  # the common one-byte case
        return data[pos], pos + 1
    value = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")
    if value >= _U64_LIMIT:
        raise WireError("varint larger than 64 bits")
    return value, pos


@dataclass(frozen=True, slots=True)
class Field:
    """One decoded field: its number, wire type and raw value, and how deep it was found."""

    number: int
    wire_type: WireType
    value: int | bytes
    """An ``int`` for VARINT, I32 and I64 fields; ``bytes`` for LEN fields."""
    depth: int = 0
    """Nesting depth of the message holding this field (0 for the outermost message)."""

    def as_int(self) -> int:
        """The value of a VARINT, I32 or I64 field (unsigned)."""
        if isinstance(self.value, bytes):
            raise WireError(f"field {self.number}: expected a number, found a LEN value")
        return self.value

    def as_bytes(self) -> bytes:
        """The payload of a LEN field."""
        if not isinstance(self.value, bytes):
            raise WireError(
                f"field {self.number}: expected a LEN value, found {self.wire_type.name}"
            )
        return self.value

    def as_str(self) -> str:
        """The payload of a LEN field decoded as strict UTF-8."""
        try:
            return self.as_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WireError(f"field {self.number}: string is not valid UTF-8") from exc

    def message(self) -> Iterator[Field]:
        """The fields of the nested message carried by this LEN field."""
        if self.depth + 1 > MAX_DEPTH:
            raise WireError(f"messages nested deeper than {MAX_DEPTH}")
        return iter_fields(self.as_bytes(), depth=self.depth + 1)


def iter_fields(data: bytes, *, depth: int = 0) -> Iterator[Field]:
    """Decode the fields of one message, in the order they appear.

    ``depth`` is the nesting depth of this message; nested messages are decoded with
    :meth:`Field.message`, which counts the depth for you. Raises :class:`WireError` on
    truncated or malformed input.
    """
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = decode_varint(data, pos)
        number = key >> 3
        try:
            wire_type = WireType(key & 7)
        except ValueError:
            raise WireError(f"field {number}: invalid wire type {key & 7}") from None
        if number == 0:
            raise WireError("field number 0")
        value: int | bytes
        if wire_type is WireType.VARINT:
            value, pos = decode_varint(data, pos)
        elif wire_type is WireType.LEN:
            length, pos = decode_varint(data, pos)
            if length > end - pos:
                raise WireError(f"field {number}: length {length} past the end of the message")
            value = bytes(data[pos : pos + length])
            pos += length
        elif wire_type is WireType.I64 or wire_type is WireType.I32:
            width = 8 if wire_type is WireType.I64 else 4
            if width > end - pos:
                raise WireError(f"field {number}: truncated fixed{width * 8} value")
            value = int.from_bytes(data[pos : pos + width], "little")
            pos += width
        else:
            raise WireError(f"field {number}: groups are not supported")
        yield Field(number, wire_type, value, depth)


def _key(number: int, wire_type: WireType) -> bytes:
    if not 1 <= number <= _MAX_FIELD_NUMBER or number in _RESERVED_NUMBERS:
        raise ValueError(f"invalid field number {number}")
    return encode_varint(number << 3 | wire_type)


class MessageWriter:
    """Builds one message; :meth:`encode` writes its fields sorted by field number.

    Each method appends one field and returns the writer, so calls can be chained. Adding the
    same field number several times makes a repeated field, kept in the order added.
    """

    def __init__(self) -> None:
        self._fields: list[tuple[int, bytes]] = []

    def varint(self, number: int, value: int) -> Self:
        """Add an unsigned varint field (uint32/uint64/bool/enum)."""
        self._fields.append((number, _key(number, WireType.VARINT) + encode_varint(value)))
        return self

    def fixed32(self, number: int, value: int) -> Self:
        """Add a little-endian 32-bit field."""
        if not 0 <= value < _U32_LIMIT:
            raise ValueError(f"fixed32 out of range: {value}")
        self._fields.append((number, _key(number, WireType.I32) + value.to_bytes(4, "little")))
        return self

    def fixed64(self, number: int, value: int) -> Self:
        """Add a little-endian 64-bit field."""
        if not 0 <= value < _U64_LIMIT:
            raise ValueError(f"fixed64 out of range: {value}")
        self._fields.append((number, _key(number, WireType.I64) + value.to_bytes(8, "little")))
        return self

    def blob(self, number: int, data: bytes) -> Self:
        """Add a length-delimited field holding ``data``."""
        self._fields.append((number, _key(number, WireType.LEN) + encode_varint(len(data)) + data))
        return self

    def string(self, number: int, text: str) -> Self:
        """Add a string field (UTF-8)."""
        return self.blob(number, text.encode("utf-8"))

    def message(self, number: int, sub: MessageWriter) -> Self:
        """Add a nested message field."""
        return self.blob(number, sub.encode())

    def encode(self) -> bytes:
        """The serialized message, fields in ascending field-number order."""
        ordered = sorted(self._fields, key=lambda item: item[0])  # stable: repeats keep order
        return b"".join(raw for _, raw in ordered)

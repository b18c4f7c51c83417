"""A fast, bounded reader of DEX files (Dalvik executable, versions 035 to 041).

It reads what an identifier-flow analysis needs and nothing more, lazily and without per-byte
Python loops over the whole file: the id tables are loaded as :class:`array.array` slices,
strings are decoded on demand (or all at once with :meth:`DexFile.strings`), class data and code
items are parsed only when asked for, and :func:`decode` turns one method's code units into
instructions.

Every size and offset read from the file is checked against the file (for a version 041
container, against the container) before it is used, so a hostile file raises
:class:`DexFormatError` quickly and never makes the reader allocate more than the file holds.

Layout facts follow source.android.com ("Dalvik executable format", "Dalvik bytecode",
"Dalvik executable instruction formats") and AOSP's ``libdexfile/dex/dex_instruction_list.h``:

* version 041 files are *containers*: several DEX entries one after the other, each with a
  0x78-byte header ending in ``container_size`` and ``header_offset``; the offsets inside every
  entry count from the start of the container. :func:`load_dex` returns one :class:`DexFile`
  per entry.
* Opcodes ``0xe3``-``0xf2`` are ART's *quickened* member accesses, found in optimized DEX
  (e.g. inside VDEX files): their index operand is a vtable or field offset, not an id, so a
  reader cannot name the member. :data:`QUICKENED` lists them; they are decoded with their ART
  formats (``0x73``, quickened ``return-void``, is a plain ``10x``), ``0xf3``-``0xf9`` as
  one-unit unused opcodes, ``0xfa``-``0xff`` as the version 038+ method-handle instructions.
* ``packed-switch``, ``sparse-switch`` and ``fill-array-data`` payloads are pseudo-instructions
  stored among the code units (first unit ``0x0100``, ``0x0200``, ``0x0300``); :func:`decode`
  yields them with the opcodes :data:`PACKED_SWITCH_PAYLOAD`, :data:`SPARSE_SWITCH_PAYLOAD`
  and :data:`FILL_ARRAY_DATA_PAYLOAD` and steps over them by their size.
"""

from __future__ import annotations

import re
import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import accumulate, repeat
from typing import Any, NamedTuple

from fwscan.errors import AnalysisError


class DexFormatError(AnalysisError):
    """A DEX file is truncated, inconsistent or out of the format's bounds."""


HEADER_SIZE = 0x70
"""Size of the header of DEX versions 035 to 040."""
CONTAINER_HEADER_SIZE = 0x78
"""Size of the header of version 041, which adds ``container_size`` and ``header_offset``."""
VERSIONS = frozenset((35, 36, 37, 38, 39, 40, 41))
"""Format versions this reader accepts (the magic is ``dex\\n0NN\\0``)."""
NO_INDEX = 0xFFFFFFFF
"""The "no index" value of 32-bit index fields (e.g. a class without a superclass)."""
ENDIAN_CONSTANT = 0x12345678

PACKED_SWITCH_PAYLOAD = 0x100
"""Pseudo-opcode :func:`decode` yields for a ``packed-switch`` payload."""
SPARSE_SWITCH_PAYLOAD = 0x200
"""Pseudo-opcode :func:`decode` yields for a ``sparse-switch`` payload."""
FILL_ARRAY_DATA_PAYLOAD = 0x300
"""Pseudo-opcode :func:`decode` yields for a ``fill-array-data`` payload."""

# Instruction formats, as named by "Dalvik executable instruction formats".
F10X, F12X, F11N, F11X, F10T, F20T, F22X, F21T, F21S, F21H, F21C = range(11)
F23X, F22B, F22T, F22S, F22C, F32X, F30T, F31T, F31I, F31C = range(11, 21)
F35C, F3RC, F45CC, F4RCC, F51L = range(21, 26)

_FORMAT_WIDTH = (1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 4, 4, 5)


def _format_table() -> bytes:
    """The format code of every opcode 0x00-0xff."""
    table = bytearray(256)  # F10X by default: nop, returns, unused opcodes
    runs: tuple[tuple[int, int, int], ...] = (
        (0x01, 0x01, F12X), (0x02, 0x02, F22X), (0x03, 0x03, F32X),
        (0x04, 0x04, F12X), (0x05, 0x05, F22X), (0x06, 0x06, F32X),
        (0x07, 0x07, F12X), (0x08, 0x08, F22X), (0x09, 0x09, F32X),
        (0x0A, 0x0D, F11X), (0x0F, 0x11, F11X), (0x12, 0x12, F11N), (0x13, 0x13, F21S),
        (0x14, 0x14, F31I), (0x15, 0x15, F21H), (0x16, 0x16, F21S), (0x17, 0x17, F31I),
        (0x18, 0x18, F51L), (0x19, 0x19, F21H), (0x1A, 0x1A, F21C), (0x1B, 0x1B, F31C),
        (0x1C, 0x1C, F21C), (0x1D, 0x1E, F11X), (0x1F, 0x1F, F21C), (0x20, 0x20, F22C),
        (0x21, 0x21, F12X), (0x22, 0x22, F21C), (0x23, 0x23, F22C), (0x24, 0x24, F35C),
        (0x25, 0x25, F3RC), (0x26, 0x26, F31T), (0x27, 0x27, F11X), (0x28, 0x28, F10T),
        (0x29, 0x29, F20T), (0x2A, 0x2A, F30T), (0x2B, 0x2C, F31T), (0x2D, 0x31, F23X),
        (0x32, 0x37, F22T), (0x38, 0x3D, F21T), (0x44, 0x51, F23X), (0x52, 0x5F, F22C),
        (0x60, 0x6D, F21C), (0x6E, 0x72, F35C), (0x74, 0x78, F3RC), (0x7B, 0x8F, F12X),
        (0x90, 0xAF, F23X), (0xB0, 0xCF, F12X), (0xD0, 0xD7, F22S), (0xD8, 0xE2, F22B),
        (0xE3, 0xE8, F22C), (0xE9, 0xE9, F35C), (0xEA, 0xEA, F3RC), (0xEB, 0xF2, F22C),
        (0xFA, 0xFA, F45CC), (0xFB, 0xFB, F4RCC), (0xFC, 0xFC, F35C), (0xFD, 0xFD, F3RC),
        (0xFE, 0xFF, F21C),
    )  # fmt: skip
    for first, last, fmt in runs:
        table[first : last + 1] = bytes((fmt,)) * (last - first + 1)
    return bytes(table)


FORMATS: bytes = _format_table()
"""``FORMATS[opcode]`` is the format code (``F10X``...) of an opcode."""
WIDTHS: bytes = bytes(_FORMAT_WIDTH[f] for f in FORMATS)
"""``WIDTHS[opcode]`` is the length of an instruction in 16-bit code units."""
QUICKENED = frozenset(range(0xE3, 0xF3))
"""ART quickened member accesses (``iget-quick``, ``iput-quick``, ``invoke-virtual-quick``...):
their index operand is a field or vtable offset, not a DEX id. (``0x73``, ART's
``return-void-no-barrier``, is quickened too but names no member.)"""
INVOKES = frozenset((*range(0x6E, 0x73), *range(0x74, 0x79)))
"""``invoke-kind`` and ``invoke-kind/range``: the operand index is a method id."""

Operands = tuple[Any, ...]
"""What :func:`decode` yields per instruction; see :func:`decode` for the shape per format."""

_HEADER = struct.Struct("<8sI20s20I")
_CODE_ITEM = struct.Struct("<4HII")
_TRY_ITEM = struct.Struct("<IHH")
_LITTLE = sys.byteorder == "little"
_SURROGATE = re.compile("[\ud800-\udfff]")


def _u32_array(data: bytes, offset: int, count: int) -> array[int]:
    """``count`` little-endian uint32 values at ``offset`` (bounds already checked)."""
    out = array("I")
    out.frombytes(data[offset : offset + 4 * count])
    if not _LITTLE:
        out.byteswap()
    return out


def _u16_array(data: bytes, offset: int, count: int) -> array[int]:
    """``count`` little-endian uint16 values at ``offset`` (bounds already checked)."""
    out = array("H")
    out.frombytes(data[offset : offset + 2 * count])
    if not _LITTLE:
        out.byteswap()
    return out


def read_uleb128(data: bytes, pos: int) -> tuple[int, int]:
    """The unsigned LEB128 value at ``pos`` and the position after it (at most 5 bytes)."""
    try:
        byte = data[pos]
        if byte < 0x80:
            return byte, pos + 1
        value = byte & 0x7F
        for shift in (7, 14, 21, 28):
            pos += 1
            byte = data[pos]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos + 1
    except IndexError:
        raise DexFormatError(f"LEB128 value at {pos:#x} runs past the end") from None
    raise DexFormatError(f"LEB128 value at {pos:#x} is longer than 5 bytes")


def uleb128(value: int) -> bytes:
    """The unsigned LEB128 encoding of ``value`` (the writers' side of :func:`read_uleb128`)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_uleb128_list(data: bytes, pos: int, count: int) -> tuple[list[int], int]:
    """``count`` consecutive unsigned LEB128 values from ``pos``, and the position after them."""
    values: list[int] = []
    append = values.append
    try:
        for _ in range(count):
            b0 = data[pos]
            if b0 < 0x80:
                append(b0)
                pos += 1
                continue
            b1 = data[pos + 1]
            if b1 < 0x80:
                append(b0 & 0x7F | b1 << 7)
                pos += 2
                continue
            b2 = data[pos + 2]
            if b2 < 0x80:
                append(b0 & 0x7F | (b1 & 0x7F) << 7 | b2 << 14)
                pos += 3
                continue
            b3 = data[pos + 3]
            if b3 < 0x80:
                append(b0 & 0x7F | (b1 & 0x7F) << 7 | (b2 & 0x7F) << 14 | b3 << 21)
                pos += 4
                continue
            b4 = data[pos + 4]
            if b4 >= 0x80:
                raise DexFormatError(f"LEB128 value at {pos:#x} is longer than 5 bytes")
            append(b0 & 0x7F | (b1 & 0x7F) << 7 | (b2 & 0x7F) << 14 | (b3 & 0x7F) << 21 | b4 << 28)
            pos += 5
    except IndexError:
        raise DexFormatError(f"LEB128 values at {pos:#x} run past the end") from None
    return values, pos


def read_sleb128(data: bytes, pos: int) -> tuple[int, int]:
    """The signed LEB128 value at ``pos`` and the position after it."""
    start = pos
    value, pos = read_uleb128(data, pos)
    bits = 7 * (pos - start)
    if value >> (bits - 1) & 1:
        value -= 1 << bits
    return value, pos


def decode_mutf8(raw: bytes) -> str:
    """Text of MUTF-8 bytes (NUL as ``C0 80``, surrogates encoded one by one).

    A valid surrogate pair becomes its supplementary character; a lone surrogate is kept as is.
    Bytes that are not MUTF-8 at all decode to U+FFFD.
    """
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        pass
    raw = raw.replace(b"\xc0\x80", b"\x00")
    try:
        text = raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")
    if _SURROGATE.search(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return text


def utf16_key(text: str) -> bytes:
    """Sort key of DEX string order (UTF-16 code units)."""
    return text.encode("utf-16-be", "surrogatepass")


class ClassDef(NamedTuple):
    """One ``class_def_item``."""

    position: int
    """Position in the class_defs table."""
    class_idx: int
    """Type id of the class."""
    access: int
    superclass_idx: int
    """Type id of the superclass, or :data:`NO_INDEX`."""
    class_data_off: int
    """Offset of the class_data_item, 0 when the class has no members."""


class EncodedMethod(NamedTuple):
    """A method declared in a class_data_item."""

    method_idx: int
    access: int
    code_off: int
    """Offset of the code_item, 0 for abstract and native methods."""


class _ClassData(NamedTuple):
    fields: list[int]
    methods: list[int]
    access: list[int]
    code_offs: list[int]


class CodeItem(NamedTuple):
    """The header of a ``code_item`` and where its instructions are."""

    offset: int
    registers: int
    ins: int
    """Words of incoming arguments: they occupy the last ``ins`` registers."""
    outs: int
    tries: int
    insns_off: int
    """File offset of the first 16-bit code unit."""
    insns_size: int
    """Number of 16-bit code units."""


class TryBlock(NamedTuple):
    """A ``try_item`` with the handler addresses it leads to."""

    start: int
    """First covered code unit."""
    length: int
    """Number of covered code units."""
    handlers: tuple[int, ...]
    """Code-unit addresses of its catch handlers (typed ones, then the catch-all)."""


class DexFile:
    """One DEX file (or one entry of a version 041 container), read lazily.

    ``base`` is where the container starts in ``data`` and ``limit`` where it ends; offsets in
    the file count from ``base``. Use :func:`load_dex` rather than this constructor.
    """

    def __init__(self, data: bytes, name: str = "classes.dex", header_offset: int = 0) -> None:
        self.data = data
        """The bytes of the whole file (or container)."""
        self.name = name
        """The inner name, e.g. ``classes2.dex``."""
        if len(data) - header_offset < HEADER_SIZE or header_offset < 0:
            raise DexFormatError(f"{name}: {len(data)} bytes is too short for a DEX header")
        magic = data[header_offset : header_offset + 8]
        if magic[:4] != b"dex\n" or magic[7] != 0 or not magic[4:7].isdigit():
            raise DexFormatError(f"{name}: bad magic {magic!r}")
        self.version = int(magic[4:7])
        """Format version, 35 to 41."""
        if self.version not in VERSIONS:
            raise DexFormatError(f"{name}: unsupported DEX version {magic[4:7].decode()}")
        fields = _HEADER.unpack_from(data, header_offset)[3:]
        (file_size, header_size, endian, _link_size, _link_off, map_off) = fields[:6]
        if endian != ENDIAN_CONSTANT:
            raise DexFormatError(f"{name}: endian tag {endian:#x} (only little-endian is read)")
        need = CONTAINER_HEADER_SIZE if self.version >= 41 else HEADER_SIZE
        if header_size < need or header_size > file_size:
            raise DexFormatError(f"{name}: header_size {header_size:#x} is invalid")
        if file_size > len(data) - header_offset:
            raise DexFormatError(
                f"{name}: file_size {file_size} exceeds the {len(data) - header_offset} bytes read"
            )
        if self.version >= 41:
            container_size, container_header = struct.unpack_from("<2I", data, header_offset + 112)
            if container_header != header_offset:
                raise DexFormatError(f"{name}: header_offset {container_header:#x} is wrong")
            if container_size > len(data) or header_offset + file_size > container_size:
                raise DexFormatError(f"{name}: container_size {container_size} is invalid")
            self.limit = container_size
        else:
            self.limit = file_size
        self.header_offset = header_offset
        """Where this entry's header is (0 except in version 041 containers)."""
        self.file_size = file_size
        """Size of this entry in bytes."""
        counts = fields[6:20]
        tables = []
        for i, item_size in enumerate((4, 4, 12, 8, 8, 32)):
            count, offset = counts[2 * i], counts[2 * i + 1]
            self._check_range(offset, count * item_size, ("string_ids", "type_ids", "proto_ids",
                              "field_ids", "method_ids", "class_defs")[i])  # fmt: skip
            tables.append((count, offset))
        if map_off:
            self._check_range(map_off, 4, "map")
        data_size, data_off = counts[12], counts[13]
        self._check_range(data_off, data_size, "data")
        (self.string_count, self._string_ids_off) = tables[0]
        (self.type_count, self._type_ids_off) = tables[1]
        (self.proto_count, self._proto_ids_off) = tables[2]
        (self.field_count, self._field_ids_off) = tables[3]
        (self.method_count, self._method_ids_off) = tables[4]
        (self.class_count, self._class_defs_off) = tables[5]
        self._string_offsets: array[int] | None = None
        self._string_cache: dict[int, str] = {}
        self._all_strings: list[str] | None = None
        self._type_ids: array[int] | None = None
        self._proto_ids: array[int] | None = None
        self._field_ids: array[int] | None = None
        self._method_ids: array[int] | None = None
        self._class_defs: tuple[ClassDef, ...] | None = None
        self._proto_cache: dict[int, tuple[tuple[str, ...], str]] = {}
        self._class_data_cache: dict[int, _ClassData] = {}

    def _check_range(self, offset: int, size: int, what: str) -> None:
        if size and (offset < 0 or offset + size > self.limit):
            raise DexFormatError(
                f"{self.name}: {what} ({size} bytes at {offset:#x}) lies outside the file"
            )

    # strings

    def _offsets(self) -> array[int]:
        if self._string_offsets is None:
            offsets = _u32_array(self.data, self._string_ids_off, self.string_count)
            if offsets and max(offsets) >= self.limit:
                raise DexFormatError(f"{self.name}: a string_data_off lies outside the file")
            self._string_offsets = offsets
        return self._string_offsets

    def _decode_string(self, offset: int) -> str:
        data = self.data
        _, start = read_uleb128(data, offset)
        end = data.find(b"\0", start, self.limit)
        if end < 0:
            raise DexFormatError(f"{self.name}: string data at {offset:#x} is not terminated")
        return decode_mutf8(data[start:end])

    def string(self, index: int) -> str:
        """The string with id ``index``."""
        if not 0 <= index < self.string_count:
            raise DexFormatError(f"{self.name}: string index {index} out of range")
        if self._all_strings is not None:
            return self._all_strings[index]
        text = self._string_cache.get(index)
        if text is None:
            text = self._decode_string(self._offsets()[index])
            self._string_cache[index] = text
        return text

    def strings(self) -> list[str]:
        """Every string of the file, in id order (decoded once, then kept)."""
        if self._all_strings is None:
            data, limit, find = self.data, self.limit, self.data.find
            out: list[str] = []
            append = out.append
            try:
                for offset in self._offsets():
                    start = offset + 1
                    if data[offset] >= 0x80:
                        _, start = read_uleb128(data, offset)
                    end = find(b"\0", start, limit)
                    if end < 0:
                        raise DexFormatError(f"{self.name}: string at {offset:#x} not terminated")
                    raw = data[start:end]
                    append(raw.decode("ascii") if raw.isascii() else decode_mutf8(raw))
            except IndexError:
                raise DexFormatError(f"{self.name}: string data runs past the end") from None
            self._all_strings = out
        return self._all_strings

    def find_string(self, text: str) -> int | None:
        """The id of a string, by binary search in the sorted string table."""
        key = utf16_key(text)
        index = bisect_left(range(self.string_count), key, key=lambda i: utf16_key(self.string(i)))
        if index < self.string_count and self.string(index) == text:
            return index
        return None

    # types and prototypes

    def _types(self) -> array[int]:
        if self._type_ids is None:
            self._type_ids = _u32_array(self.data, self._type_ids_off, self.type_count)
        return self._type_ids

    def type_descriptor(self, index: int) -> str:
        """The descriptor of type id ``index``, e.g. ``Ljava/lang/String;``."""
        types = self._types()
        if not 0 <= index < len(types):
            raise DexFormatError(f"{self.name}: type index {index} out of range")
        return self.string(types[index])

    def type_descriptors(self) -> list[str]:
        """Every type descriptor, in type id order."""
        strings, count = self.strings(), self.string_count
        types = self._types()
        if types and max(types) >= count:
            raise DexFormatError(f"{self.name}: a type_id names no string")
        return [strings[t] for t in types]

    def find_type(self, descriptor: str) -> int | None:
        """The type id of a descriptor (type_ids are sorted by string id)."""
        string_idx = self.find_string(descriptor)
        if string_idx is None:
            return None
        types = self._types()
        index = bisect_left(types, string_idx)
        if index < len(types) and types[index] == string_idx:
            return index
        return None

    def _type_list(self, offset: int) -> tuple[str, ...]:
        if not offset:
            return ()
        self._check_range(offset, 4, "type_list")
        (size,) = struct.unpack_from("<I", self.data, offset)
        self._check_range(offset + 4, 2 * size, "type_list")
        return tuple(self.type_descriptor(t) for t in _u16_array(self.data, offset + 4, size))

    def proto(self, index: int) -> tuple[tuple[str, ...], str]:
        """Parameter descriptors and return descriptor of proto id ``index``."""
        cached = self._proto_cache.get(index)
        if cached is None:
            if self._proto_ids is None:
                self._proto_ids = _u32_array(self.data, self._proto_ids_off, 3 * self.proto_count)
            if not 0 <= index < self.proto_count:
                raise DexFormatError(f"{self.name}: proto index {index} out of range")
            ids = self._proto_ids
            cached = (self._type_list(ids[3 * index + 2]), self.type_descriptor(ids[3 * index + 1]))
            self._proto_cache[index] = cached
        return cached

    def proto_descriptor(self, index: int) -> str:
        """The method descriptor of proto id ``index``, e.g. ``(I)Ljava/lang/String;``."""
        params, returns = self.proto(index)
        return "(" + "".join(params) + ")" + returns

    # fields and methods: each id is (class_idx: u16, type or proto: u16, name_idx: u32)

    def _members(self, fields: bool) -> array[int]:
        table = self._field_ids if fields else self._method_ids
        if table is None:
            count = self.field_count if fields else self.method_count
            offset = self._field_ids_off if fields else self._method_ids_off
            table = _u16_array(self.data, offset, 4 * count)
            if fields:
                self._field_ids = table
            else:
                self._method_ids = table
        return table

    def field(self, index: int) -> tuple[str, str, str]:
        """Declaring class, name and type descriptor of field id ``index``."""
        ids = self._members(True)
        if not 0 <= index < self.field_count:
            raise DexFormatError(f"{self.name}: field index {index} out of range")
        base = 4 * index
        return (
            self.type_descriptor(ids[base]),
            self.string(ids[base + 2] | ids[base + 3] << 16),
            self.type_descriptor(ids[base + 1]),
        )

    def method(self, index: int) -> tuple[str, str, str]:
        """Declaring class, name and descriptor of method id ``index``."""
        ids = self._members(False)
        if not 0 <= index < self.method_count:
            raise DexFormatError(f"{self.name}: method index {index} out of range")
        base = 4 * index
        return (
            self.type_descriptor(ids[base]),
            self.string(ids[base + 2] | ids[base + 3] << 16),
            self.proto_descriptor(ids[base + 1]),
        )

    def _member_range(self, class_idx: int, name_idx: int, field: bool) -> range:
        ids = self._members(field)
        count = self.field_count if field else self.method_count

        def key(i: int) -> tuple[int, int]:
            return ids[4 * i], ids[4 * i + 2] | ids[4 * i + 3] << 16

        first = bisect_left(range(count), (class_idx, name_idx), key=key)
        last = bisect_left(range(first, count), (class_idx, name_idx + 1), key=key) + first
        return range(first, last)

    def find_members(self, class_name: str, name: str, *, field: bool) -> range:
        """Ids of the fields (or methods) of a class with a given name (sorted tables)."""
        class_idx = self.find_type(class_name)
        name_idx = self.find_string(name)
        if class_idx is None or name_idx is None:
            return range(0)
        return self._member_range(class_idx, name_idx, field)

    def members_named(self, name: str, *, field: bool) -> list[int]:
        """Ids of every field (or method) with this name, whatever the class."""
        name_idx = self.find_string(name)
        if name_idx is None:
            return []
        start = self._field_ids_off if field else self._method_ids_off
        end = start + 8 * (self.field_count if field else self.method_count)
        needle = name_idx.to_bytes(4, "little")
        found = []
        pos = self.data.find(needle, start, end)
        while pos >= 0:
            if (pos - start) % 8 == 4:
                found.append((pos - start) // 8)
            pos = self.data.find(needle, pos + 1, end)
        return found

    # classes and code

    def class_defs(self) -> tuple[ClassDef, ...]:
        """Every class definition, in file order."""
        if self._class_defs is None:
            raw = _u32_array(self.data, self._class_defs_off, 8 * self.class_count)
            self._class_defs = tuple(
                ClassDef(i, raw[8 * i], raw[8 * i + 1], raw[8 * i + 2], raw[8 * i + 6])
                for i in range(self.class_count)
            )
        return self._class_defs

    def _class_data(self, class_def: ClassDef) -> _ClassData:
        """Field ids, and method ids, access flags and code offsets, of a class's members."""
        cached = self._class_data_cache.get(class_def.position)
        if cached is not None:
            return cached
        offset = class_def.class_data_off
        result = _ClassData([], [], [], [])
        if offset:
            self._check_range(offset, 4, "class_data")
            data = self.data
            counts, pos = read_uleb128_list(data, offset, 4)
            fields = counts[0] + counts[1]
            direct, virtual = counts[2], counts[3]
            # a field takes at least 2 bytes and a method 3: refuse counts the file cannot hold
            if 2 * fields + 3 * (direct + virtual) > self.limit - pos:
                raise DexFormatError(
                    f"{self.name}: class_data at {offset:#x} has impossible counts"
                )
            field_values, pos = read_uleb128_list(data, pos, 2 * fields)
            split = 2 * counts[0]
            field_indexes = [
                *accumulate(field_values[0:split:2]),
                *accumulate(field_values[split::2]),
            ]
            values, pos = read_uleb128_list(data, pos, 3 * (direct + virtual))
            split = 3 * direct
            indexes = [*accumulate(values[0:split:3]), *accumulate(values[split::3])]
            result = _ClassData(field_indexes, indexes, values[1::3], values[2::3])
        self._class_data_cache[class_def.position] = result
        return result

    def class_methods(self, class_def: ClassDef) -> tuple[EncodedMethod, ...]:
        """The direct and virtual methods of a class, from its class_data_item."""
        data = self._class_data(class_def)
        return tuple(map(EncodedMethod, data.methods, data.access, data.code_offs))

    def class_fields(self, class_def: ClassDef) -> list[int]:
        """Ids of the static and instance fields a class declares."""
        return self._class_data(class_def).fields

    def code_owners(self) -> list[tuple[int, int, int]]:
        """``(code_off, class position, method_idx)`` of every method with code, sorted."""
        owners: list[tuple[int, int, int]] = []
        for class_def in self.class_defs():
            data = self._class_data(class_def)
            owners.extend(zip(data.code_offs, repeat(class_def.position), data.methods))
        owners.sort()
        return owners[bisect_left(owners, (1,)) :]

    def code_item(self, offset: int) -> CodeItem:
        """The code_item at ``offset``, checked to lie inside the file."""
        self._check_range(offset, 16, "code_item")
        registers, ins, outs, tries, _debug, size = _CODE_ITEM.unpack_from(self.data, offset)
        self._check_range(offset + 16, 2 * size, "code_item insns")
        if ins > registers:
            raise DexFormatError(f"{self.name}: code_item at {offset:#x} has ins > registers")
        return CodeItem(offset, registers, ins, outs, tries, offset + 16, size)

    def code_units(self, code: CodeItem) -> array[int]:
        """The instructions of a code item as 16-bit code units."""
        return _u16_array(self.data, code.insns_off, code.insns_size)

    def try_blocks(self, code: CodeItem) -> tuple[TryBlock, ...]:
        """The try blocks of a code item, with their handler addresses."""
        if not code.tries:
            return ()
        tries_off = code.insns_off + 2 * code.insns_size + 2 * (code.insns_size & 1)
        self._check_range(tries_off, 8 * code.tries, "try_items")
        handlers_off = tries_off + 8 * code.tries
        blocks = []
        data = self.data
        for i in range(code.tries):
            start, count, handler_off = _TRY_ITEM.unpack_from(data, tries_off + 8 * i)
            pos = handlers_off + handler_off
            self._check_range(pos, 1, "catch handler")
            size, pos = read_sleb128(data, pos)
            if abs(size) > self.limit - pos:
                raise DexFormatError(f"{self.name}: catch handler at {pos:#x} is too large")
            addresses = []
            for _ in range(abs(size)):
                _, pos = read_uleb128(data, pos)
                address, pos = read_uleb128(data, pos)
                addresses.append(address)
            if size <= 0:
                address, pos = read_uleb128(data, pos)
                addresses.append(address)
            blocks.append(TryBlock(start, count, tuple(addresses)))
        return tuple(blocks)


def load_dex(name: str, data: bytes) -> tuple[DexFile, ...]:
    """The DEX file(s) in ``data``: one, or one per entry of a version 041 container.

    Entries after the first are named ``<name>/1``, ``<name>/2``...
    """
    first = DexFile(data, name)
    if first.version < 41:
        return (first,)
    entries = [first]
    offset = first.file_size
    while offset < first.limit:
        if offset % 4 or len(entries) >= 1 << 16:
            raise DexFormatError(f"{name}: container entry at {offset:#x} is misplaced")
        entry = DexFile(data, f"{name}/{len(entries)}", offset)
        entries.append(entry)
        offset += entry.file_size
    return tuple(entries)


def _payload_width(units: Sequence[int], pc: int, end: int) -> int:
    """Length in code units of the payload pseudo-instruction at ``pc``, 0 if there is none."""
    ident = units[pc]
    if ident not in (PACKED_SWITCH_PAYLOAD, SPARSE_SWITCH_PAYLOAD, FILL_ARRAY_DATA_PAYLOAD):
        return 0
    if pc + (2 if ident == SPARSE_SWITCH_PAYLOAD else 4) > end:
        raise DexFormatError(f"payload at {pc:#x} runs past the end of the code")
    size = units[pc + 1]
    if ident == PACKED_SWITCH_PAYLOAD:
        width = 4 + 2 * size
    elif ident == SPARSE_SWITCH_PAYLOAD:
        width = 2 + 4 * size
    else:
        width = 4 + (size * (units[pc + 2] | units[pc + 3] << 16) + 1) // 2
    if pc + width > end:
        raise DexFormatError(f"payload at {pc:#x} runs past the end of the code")
    return width


def instruction_starts(units: Sequence[int]) -> list[int]:
    """Code-unit offsets of every instruction (payloads included), walking lengths only."""
    starts: list[int] = []
    append = starts.append
    widths = WIDTHS
    end = len(units)
    pc = 0
    while pc < end:
        append(pc)
        unit = units[pc]
        width = widths[unit & 0xFF]
        if unit & 0xFF == 0 and unit:
            width = _payload_width(units, pc, end) or 1
        pc += width
    if pc != end:
        raise DexFormatError(f"the last instruction runs {pc - end} code units past the end")
    return starts


def decode(units: Sequence[int]) -> Iterator[tuple[int, int, Operands]]:
    """Decode code units into ``(offset, opcode, operands)``, offsets in code units.

    Operands per format (registers as numbers, literals sign-extended, branch offsets relative
    to the instruction): ``10x`` ``()``; ``12x``/``22x``/``32x`` ``(A, B)``; ``11n``/``21s``/
    ``21h``/``31i``/``51l`` ``(A, literal)`` (``21h`` already shifted); ``11x`` ``(A,)``;
    ``10t``/``20t``/``30t`` ``(offset,)``; ``21t``/``31t`` ``(A, offset)``; ``21c``/``31c``
    ``(A, index)``; ``23x`` ``(A, B, C)``; ``22b``/``22s`` ``(A, B, literal)``; ``22t``
    ``(A, B, offset)``; ``22c`` ``(A, B, index)``; ``35c``/``3rc`` ``(index, registers)``;
    ``45cc``/``4rcc`` ``(index, registers, proto)``. Payloads come with their pseudo-opcode and
    ``(targets,)`` (switches; targets relative to the switch instruction) or
    ``(element_width, count)`` (array data).
    """
    end = len(units)
    formats = FORMATS
    pc = 0
    while pc < end:
        unit = units[pc]
        op = unit & 0xFF
        fmt = formats[op]
        high = unit >> 8
        if op == 0 and unit:
            width = _payload_width(units, pc, end)
            if width:
                size = units[pc + 1]
                if unit == FILL_ARRAY_DATA_PAYLOAD:
                    yield pc, unit, (size, units[pc + 2] | units[pc + 3] << 16)
                else:
                    first = pc + (4 if unit == PACKED_SWITCH_PAYLOAD else 2 + 2 * size)
                    targets = tuple(
                        _signed32(units[first + 2 * i] | units[first + 2 * i + 1] << 16)
                        for i in range(size)
                    )
                    yield pc, unit, (targets,)
                pc += width
                continue
        width = _FORMAT_WIDTH[fmt]
        if pc + width > end:
            raise DexFormatError(f"instruction at {pc:#x} runs past the end of the code")
        operands: Operands
        if fmt in (F35C, F45CC):
            count = high >> 4
            if count > 5:
                raise DexFormatError(f"instruction at {pc:#x} passes {count} registers")
            packed = units[pc + 2]
            regs = (packed & 0xF, packed >> 4 & 0xF, packed >> 8 & 0xF, packed >> 12, high & 0xF)
            operands = (units[pc + 1], regs[:count])
            if fmt == F45CC:
                operands += (units[pc + 3],)
        elif fmt in (F21C, F22X):
            operands = (high, units[pc + 1])
        elif fmt == F22C:
            operands = (high & 0xF, high >> 4, units[pc + 1])
        elif fmt == F12X:
            operands = (high & 0xF, high >> 4)
        elif fmt == F11X:
            operands = (high,)
        elif fmt == F10X:
            operands = ()
        elif fmt in (F3RC, F4RCC):
            first_reg = units[pc + 2]
            operands = (units[pc + 1], tuple(range(first_reg, first_reg + high)))
            if fmt == F4RCC:
                operands += (units[pc + 3],)
        elif fmt == F23X:
            second = units[pc + 1]
            operands = (high, second & 0xFF, second >> 8)
        elif fmt == F11N:
            operands = (high & 0xF, (high >> 4) - 16 if high >= 0x80 else high >> 4)
        elif fmt in (F21T, F21S):
            second = units[pc + 1]
            operands = (high, second - 0x10000 if second & 0x8000 else second)
        elif fmt in (F22T, F22S):
            second = units[pc + 1]
            operands = (high & 0xF, high >> 4, second - 0x10000 if second & 0x8000 else second)
        elif fmt == F22B:
            second = units[pc + 1]
            lit = (second >> 8) - 256 if second >= 0x8000 else second >> 8
            operands = (high, second & 0xFF, lit)
        elif fmt == F10T:
            operands = (high - 256 if high >= 0x80 else high,)
        elif fmt == F20T:
            second = units[pc + 1]
            operands = (second - 0x10000 if second & 0x8000 else second,)
        elif fmt == F21H:
            second = units[pc + 1]
            value = second - 0x10000 if second & 0x8000 else second
            operands = (high, value << (16 if op == 0x15 else 48))
        elif fmt == F32X:
            operands = (units[pc + 1], units[pc + 2])
        elif fmt == F30T:
            operands = (_signed32(units[pc + 1] | units[pc + 2] << 16),)
        elif fmt == F31C:
            operands = (high, units[pc + 1] | units[pc + 2] << 16)
        elif fmt in (F31T, F31I):
            operands = (high, _signed32(units[pc + 1] | units[pc + 2] << 16))
        else:  # F51L
            value = units[pc + 1] | units[pc + 2] << 16 | units[pc + 3] << 32 | units[pc + 4] << 48
            operands = (high, value - (1 << 64) if value >> 63 else value)
        yield pc, op, operands
        pc += width


def _signed32(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value

"""CompactDex (``cdex001``) to standard DEX, and the DEX item model both directions share.

Pre-optimised Android 9 to 13 builds run dex2oat with ``--compact-dex-level=fast`` (the build
default, ``ART_DEFAULT_COMPACT_DEX_LEVEL``), so the DEX code a VDEX carries is *CompactDex*.
:func:`compact_to_standard` turns one CompactDex, plus the data section it points into, into a
standard DEX file that :mod:`fwscan.analyze.dex`, androguard and ``dexdump`` read.

Format facts (AOSP ``art``, the same in Android 9 to 13; read in ``libdexfile/dex/
compact_dex_file.h`` and ``.cc``, ``compact_offset_table.h`` and ``.cc``, ``dex_file.h``,
``dex_file.cc``, ``dex_file_loader.cc``, ``dexlayout/compact_dex_writer.cc``,
``dexlayout/dex_writer.cc``):

* The header is the standard 0x70-byte header (magic ``cdex001\\0``) followed by six ``uint32``:
  ``feature_flags`` (bit 0: the input supported default methods, i.e. was version 037 or
  later), ``debug_info_offsets_pos``, ``debug_info_offsets_table_offset``, ``debug_info_base``,
  ``owned_data_begin``, ``owned_data_end``; ``header_size`` is 0x88.
* ``file_size`` covers only the header and the id sections (string, type, proto, field and
  method ids, class defs, then call-site ids and method handles): the *main section*. Every
  other item lives in a *data section* that starts at ``data_off`` bytes from the CompactDex's
  first byte and is ``data_size`` bytes long (``DexFileLoader::OpenCommon``). In a VDEX the
  data sections of all the DEX files are one shared section after the last DEX, and items
  (string data above all) may be shared between DEX files; ``data_size`` is how much of the
  shared section this DEX may use.
* Every data offset (``string_data_off``, proto ``parameters_off``, class def
  ``interfaces_off``/``annotations_off``/``class_data_off``/``static_values_off``,
  ``code_off`` in class data, the offsets inside annotation items, ``map_off``, the map's
  data-item offsets) counts from the data section's start (``DexFile::DataBegin``). The map's
  call-site-id and method-handle offsets count from the CompactDex's start
  (``DexFile::InitializeSectionsFromMapList``). Offset 0 means "none": the writer reserves the
  first 8 bytes of the data section (``kDataSectionAlignment``).
* A compact code item is 2-byte aligned: ``uint16 fields`` (4 bits each, high to low:
  registers minus ins, ins, outs, tries), ``uint16 insns_count_and_flags`` (high 11 bits:
  instruction count; low 5 bits: which values continue in the preheader), then the code units.
  The *preheader* is 16-bit words stored just before the item, read backwards from it: with
  flag 0x10 the instruction count gains the word at -1 and the word at -2 shifted left by 16;
  then, in that order, flags 0x1 (registers), 0x2 (ins), 0x4 (outs), 0x8 (tries) each add the
  next word down. ``registers = stored registers + ins``. ``code_off`` points past the
  preheader, at ``fields``. There is no ``debug_info_off``: debug info is found by method index
  through a ``CompactOffsetTable`` at ``debug_info_offsets_pos``. After the code units come,
  as in a standard code item, the try items at the next 4-byte boundary (of the address, so
  of the data-section offset, the section being 4-byte aligned) and the encoded catch handler
  list. The writer pads 2 bytes before a code item whose instructions hold a switch or
  fill-array-data so that its code units, and so its payloads, stay 4-byte aligned.
* Class data, string data, type lists, annotations and encoded arrays are encoded as in a
  standard DEX.

The conversion reads every item reachable from the id sections (and call sites and method
handles from the map), then lays out a new standard DEX: header, id sections, then code items,
type lists, annotation set ref lists, annotation sets, annotations directories, annotation
items, encoded arrays, class data, string data, hidden-API data and the map list, each item
once, with a
fresh map list, Adler-32 checksum and SHA-1 signature. Debug info is dropped
(``debug_info_off`` 0); hidden-API class data (found through the map, type 0xF000, in boot class
path and framework JARs) is kept as one block, its offsets being relative to itself.
The version written is 035, 037 when ``feature_flags`` says default methods, 038 with call
sites, 039 with method handles.

Every size, count and offset read is checked against the section it points into before use;
a malformed input raises :class:`CompactDexError` (an :class:`~fwscan.errors.UnpackError`)
naming what is wrong, and the work done is proportional to the input's size.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from fwscan.analyze.dex import (
    DexFormatError,
    read_sleb128,
    read_uleb128,
    read_uleb128_list,
    uleb128,
)
from fwscan.errors import UnpackError

__all__ = [
    "CDEX_HEADER_SIZE",
    "CDEX_MAGIC",
    "AnnotationsDirectory",
    "ClassData",
    "CodeItem",
    "CompactDexError",
    "CompactHeader",
    "DexContents",
    "compact_file_to_standard",
    "compact_to_standard",
    "read_compact_header",
    "read_contents",
    "uleb128",
    "write_standard",
]

CDEX_MAGIC = b"cdex001\x00"
"""Magic and version of the CompactDex files Android 9 to 13 write."""
CDEX_HEADER_SIZE = 0x88
"""The standard 0x70-byte header plus the six CompactDex fields."""
DEX_HEADER_SIZE = 0x70
ENDIAN_CONSTANT = 0x12345678
FEATURE_DEFAULT_METHODS = 0x1
"""``CompactDexFile::FeatureFlags::kDefaultMethods``."""
MAX_NESTING = 64
"""Deepest nesting of encoded arrays and annotations accepted inside one value."""

# map_list item types (dex_file.h, MapItemType)
TYPE_HEADER = 0x0000
TYPE_STRING_ID = 0x0001
TYPE_TYPE_ID = 0x0002
TYPE_PROTO_ID = 0x0003
TYPE_FIELD_ID = 0x0004
TYPE_METHOD_ID = 0x0005
TYPE_CLASS_DEF = 0x0006
TYPE_CALL_SITE_ID = 0x0007
TYPE_METHOD_HANDLE = 0x0008
TYPE_MAP_LIST = 0x1000
TYPE_TYPE_LIST = 0x1001
TYPE_ANNOTATION_SET_REF_LIST = 0x1002
TYPE_ANNOTATION_SET = 0x1003
TYPE_CLASS_DATA = 0x2000
TYPE_CODE = 0x2001
TYPE_STRING_DATA = 0x2002
TYPE_DEBUG_INFO = 0x2003
TYPE_ANNOTATION = 0x2004
TYPE_ENCODED_ARRAY = 0x2005
TYPE_ANNOTATIONS_DIRECTORY = 0x2006
TYPE_HIDDENAPI_CLASS_DATA = 0xF000

# Compact code item preheader flags (CompactDexFile::CodeItem::kFlagPreHeader*).
PREHEADER_REGISTERS = 0x1
PREHEADER_INS = 0x2
PREHEADER_OUTS = 0x4
PREHEADER_TRIES = 0x8
PREHEADER_INSNS = 0x10
INSNS_SHIFT = 5

_HEADER = struct.Struct("<8sI20s20I")
_COMPACT_EXTRA = struct.Struct("<6I")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TRY = struct.Struct("<IHH")
_STD_CODE = struct.Struct("<4HII")
_MAP_ITEM = struct.Struct("<HHII")

# Encoded value types whose payload is value_arg + 1 bytes.
_SIZED_VALUES = frozenset(
    (0x00, 0x02, 0x03, 0x04, 0x06, 0x10, 0x11, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B)
)


class CompactDexError(UnpackError):
    """A CompactDex (or the DEX given to the CompactDex writer) is malformed."""


class CompactHeader(NamedTuple):
    """The fields of a CompactDex header that locate its sections."""

    file_size: int
    """Size of the main section (header and id sections)."""
    map_off: int
    string_ids: tuple[int, int]
    """``(count, offset)``; likewise the other id sections."""
    type_ids: tuple[int, int]
    proto_ids: tuple[int, int]
    field_ids: tuple[int, int]
    method_ids: tuple[int, int]
    class_defs: tuple[int, int]
    data_size: int
    data_off: int
    """Where the data section starts, counted from the CompactDex's first byte."""
    feature_flags: int
    owned_data_begin: int
    owned_data_end: int


def read_compact_header(buf: bytes | memoryview, offset: int = 0) -> CompactHeader:
    """The CompactDex header at ``offset`` of ``buf``, checked for magic, sizes and endianness
    (the id sections are checked when the file is read)."""
    if offset < 0 or len(buf) - offset < CDEX_HEADER_SIZE:
        raise CompactDexError(f"{len(buf) - offset} bytes is too short for a CompactDex header")
    fields = _HEADER.unpack_from(buf, offset)
    magic: bytes = fields[0]
    if magic[:4] != CDEX_MAGIC[:4]:
        raise CompactDexError(f"bad magic {magic!r}")
    if magic != CDEX_MAGIC:
        raise CompactDexError(f"CompactDex version {magic[4:7]!r} is not supported (only 001)")
    values = fields[3:]
    file_size, header_size, endian = values[0], values[1], values[2]
    if endian != ENDIAN_CONSTANT:
        raise CompactDexError(f"endian tag {endian:#x} (only little-endian is read)")
    if header_size != CDEX_HEADER_SIZE:
        raise CompactDexError(f"header_size {header_size:#x}, expected {CDEX_HEADER_SIZE:#x}")
    if file_size < CDEX_HEADER_SIZE:
        raise CompactDexError(f"file_size {file_size} is smaller than the header")
    extra = _COMPACT_EXTRA.unpack_from(buf, offset + DEX_HEADER_SIZE)
    pairs = [(values[6 + 2 * i], values[7 + 2 * i]) for i in range(6)]
    return CompactHeader(
        file_size=file_size,
        map_off=values[5],
        string_ids=pairs[0],
        type_ids=pairs[1],
        proto_ids=pairs[2],
        field_ids=pairs[3],
        method_ids=pairs[4],
        class_defs=pairs[5],
        data_size=values[18],
        data_off=values[19],
        feature_flags=extra[0],
        owned_data_begin=extra[4],
        owned_data_end=extra[5],
    )


# --- the item model ----------------------------------------------------------------------------


@dataclass
class CodeItem:
    """A method body, whatever the format it came from."""

    registers: int
    ins: int
    outs: int
    tries_size: int
    insns: bytes
    """The code units, little-endian, ``2 * count`` bytes."""
    tries: bytes
    """The try items and the encoded catch handler list, as stored (empty without tries)."""


@dataclass
class ClassData:
    """A class_data_item: the member lists as stored, code offsets replaced by item keys."""

    sizes: tuple[int, int, int, int]
    """Static fields, instance fields, direct methods, virtual methods."""
    fields: list[int]
    """``field_idx_diff, access_flags`` for every field, flattened."""
    methods: list[int]
    """``method_idx_diff, access_flags, code key`` for every method, flattened (key 0: none)."""


@dataclass
class AnnotationsDirectory:
    """An annotations_directory_item, offsets replaced by item keys."""

    class_annotations: int
    fields: list[tuple[int, int]]
    """``(field_idx, annotation set key)``."""
    methods: list[tuple[int, int]]
    """``(method_idx, annotation set key)``."""
    parameters: list[tuple[int, int]]
    """``(method_idx, annotation set ref list key)``."""


@dataclass
class DexContents:
    """Everything a DEX file holds that fwscan keeps, with data items keyed by their offset in
    the file they were read from (0 meaning "none")."""

    version: int
    """The standard DEX version (35 to 39) the contents need."""
    signature: bytes
    string_ids: list[int]
    type_ids: bytes
    proto_ids: list[tuple[int, int, int]]
    """``(shorty_idx, return_type_idx, parameters key)``."""
    field_ids: bytes
    method_ids: bytes
    class_defs: list[tuple[int, int, int, int, int, int, int, int]]
    """The eight class_def_item fields, the four offsets replaced by keys."""
    call_site_ids: list[int]
    """Encoded array key of every call site."""
    method_handles: bytes
    string_data: dict[int, bytes] = field(default_factory=dict)
    type_lists: dict[int, bytes] = field(default_factory=dict)
    encoded_arrays: dict[int, bytes] = field(default_factory=dict)
    annotations: dict[int, bytes] = field(default_factory=dict)
    annotation_sets: dict[int, list[int]] = field(default_factory=dict)
    annotation_set_ref_lists: dict[int, list[int]] = field(default_factory=dict)
    annotations_directories: dict[int, AnnotationsDirectory] = field(default_factory=dict)
    class_data: dict[int, ClassData] = field(default_factory=dict)
    code_items: dict[int, CodeItem] = field(default_factory=dict)
    hiddenapi: bytes = b""
    """The hiddenapi_class_data_item (hidden-API flags of boot class path members), as stored:
    its offsets count from its own start, so it moves as one block."""


def _align4(value: int) -> int:
    return (value + 3) & ~3


class _Reader:
    """Reads the items of one DEX file: the id sections from ``main``, the rest from ``data``
    (the same buffer for a standard DEX), every read bounded."""

    def __init__(self, main: bytes, data: bytes, *, compact: bool) -> None:
        self.main = main
        self.data = data
        self.compact = compact
        self.kind = "CompactDex" if compact else "DEX"
        # Items of a well-formed file do not overlap, so reading them all reads each data byte
        # about once; hostile files whose items overlap would make the work quadratic.
        self.budget = 2 * len(data) + (1 << 20)

    # bounded primitive reads

    def fail(self, message: str) -> CompactDexError:
        return CompactDexError(f"{self.kind}: {message}")

    def need(self, offset: int, length: int, what: str, *, main: bool = False) -> None:
        size = len(self.main if main else self.data)
        if offset < 0 or length < 0 or offset + length > size:
            where = ("main section" if main else "data section") if self.compact else "file"
            raise self.fail(
                f"{what} ({length} bytes at offset {offset:#x}) runs past the end of the "
                f"{where} ({size} bytes)"
            )

    def spend(self, length: int, offset: int) -> None:
        """Count ``length`` bytes of items read; too many means the items overlap."""
        self.budget -= length
        if self.budget < 0:
            raise self.fail(f"items overlap (at {offset:#x}): more item bytes than data")

    def u32(self, offset: int, what: str) -> int:
        self.need(offset, 4, what)
        return int(_U32.unpack_from(self.data, offset)[0])

    def uleb(self, pos: int, what: str) -> tuple[int, int]:
        try:
            return read_uleb128(self.data, pos)
        except DexFormatError:
            raise self.fail(f"{what}: bad LEB128 value at {pos:#x}") from None

    def ulebs(self, pos: int, count: int, what: str) -> tuple[list[int], int]:
        if count > len(self.data) - pos:
            raise self.fail(f"{what} at {pos:#x}: {count} values cannot fit")
        try:
            return read_uleb128_list(self.data, pos, count)
        except DexFormatError:
            raise self.fail(f"{what}: bad LEB128 values at {pos:#x}") from None

    def count_fits(self, count: int, unit: int, pos: int, what: str) -> None:
        if count * unit > len(self.data) - pos:
            raise self.fail(f"{what} at {pos:#x}: count {count} cannot fit in the data section")

    def offset_ok(self, offset: int, what: str) -> None:
        if not 0 < offset < len(self.data):
            raise self.fail(
                f"{what} offset {offset:#x} lies outside the data section ({len(self.data)} bytes)"
            )

    # encoded values (annotations, static values, call sites)

    def skip_value(self, pos: int, depth: int) -> int:
        self.need(pos, 1, "encoded value")
        head = self.data[pos]
        value_type, arg = head & 0x1F, head >> 5
        pos += 1
        if value_type in _SIZED_VALUES:
            self.need(pos, arg + 1, "encoded value")
            return pos + arg + 1
        if value_type == 0x1C:
            return self.skip_array(pos, depth + 1)
        if value_type == 0x1D:
            return self.skip_annotation(pos, depth + 1)
        if value_type in (0x1E, 0x1F):
            return pos
        raise self.fail(f"encoded value at {pos - 1:#x} has unknown type {value_type:#x}")

    def skip_array(self, pos: int, depth: int) -> int:
        if depth > MAX_NESTING:
            raise self.fail(f"encoded values nested more than {MAX_NESTING} deep at {pos:#x}")
        size, pos = self.uleb(pos, "encoded array size")
        self.count_fits(size, 1, pos, "encoded array")
        for _ in range(size):
            pos = self.skip_value(pos, depth)
        return pos

    def skip_annotation(self, pos: int, depth: int) -> int:
        if depth > MAX_NESTING:
            raise self.fail(f"encoded values nested more than {MAX_NESTING} deep at {pos:#x}")
        _, pos = self.uleb(pos, "annotation type")
        size, pos = self.uleb(pos, "annotation size")
        self.count_fits(size, 2, pos, "annotation elements")
        for _ in range(size):
            _, pos = self.uleb(pos, "annotation element name")
            pos = self.skip_value(pos, depth)
        return pos

    # data items: each returns its key (the offset), 0 for none

    def string_data(self, offset: int, out: DexContents) -> int:
        if offset in out.string_data:
            return offset
        self.offset_ok(offset, "string_data")
        _, start = self.uleb(offset, "string_data length")
        end = self.data.find(b"\x00", start)
        if end < 0:
            raise self.fail(f"string data at {offset:#x} is not terminated")
        self.spend(end + 1 - offset, offset)
        out.string_data[offset] = self.data[offset : end + 1]
        return offset

    def type_list(self, offset: int, out: DexContents) -> int:
        if not offset or offset in out.type_lists:
            return offset
        self.offset_ok(offset, "type_list")
        size = self.u32(offset, "type_list")
        self.need(offset + 4, 2 * size, "type_list")
        self.spend(4 + 2 * size, offset)
        out.type_lists[offset] = self.data[offset : offset + 4 + 2 * size]
        return offset

    def encoded_array(self, offset: int, out: DexContents) -> int:
        if not offset or offset in out.encoded_arrays:
            return offset
        self.offset_ok(offset, "encoded_array")
        end = self.skip_array(offset, 1)
        self.spend(end - offset, offset)
        out.encoded_arrays[offset] = self.data[offset:end]
        return offset

    def annotation(self, offset: int, out: DexContents) -> int:
        if offset in out.annotations:
            return offset
        self.offset_ok(offset, "annotation_item")
        end = self.skip_annotation(offset + 1, 1)  # after the visibility byte
        self.spend(end - offset, offset)
        out.annotations[offset] = self.data[offset:end]
        return offset

    def annotation_set(self, offset: int, out: DexContents) -> int:
        if not offset or offset in out.annotation_sets:
            return offset
        self.offset_ok(offset, "annotation_set_item")
        size = self.u32(offset, "annotation_set_item")
        self.need(offset + 4, 4 * size, "annotation_set_item")
        self.spend(4 + 4 * size, offset)
        entries = [
            int(v) for (v,) in _U32.iter_unpack(self.data[offset + 4 : offset + 4 + 4 * size])
        ]
        out.annotation_sets[offset] = [self.annotation(v, out) for v in entries]
        return offset

    def annotation_set_ref_list(self, offset: int, out: DexContents) -> int:
        if not offset or offset in out.annotation_set_ref_lists:
            return offset
        self.offset_ok(offset, "annotation_set_ref_list")
        size = self.u32(offset, "annotation_set_ref_list")
        self.need(offset + 4, 4 * size, "annotation_set_ref_list")
        self.spend(4 + 4 * size, offset)
        entries = [
            int(v) for (v,) in _U32.iter_unpack(self.data[offset + 4 : offset + 4 + 4 * size])
        ]
        out.annotation_set_ref_lists[offset] = [self.annotation_set(v, out) for v in entries]
        return offset

    def annotations_directory(self, offset: int, out: DexContents) -> int:
        if not offset or offset in out.annotations_directories:
            return offset
        self.offset_ok(offset, "annotations_directory_item")
        self.need(offset, 16, "annotations_directory_item")
        class_set, n_fields, n_methods, n_params = struct.unpack_from("<4I", self.data, offset)
        total = n_fields + n_methods + n_params
        self.need(offset + 16, 8 * total, "annotations_directory_item entries")
        self.spend(16 + 8 * total, offset)
        pairs = [
            (int(a), int(b))
            for a, b in struct.iter_unpack("<II", self.data[offset + 16 : offset + 16 + 8 * total])
        ]
        directory = AnnotationsDirectory(
            class_annotations=self.annotation_set(class_set, out),
            fields=[(i, self.annotation_set(o, out)) for i, o in pairs[:n_fields]],
            methods=[
                (i, self.annotation_set(o, out)) for i, o in pairs[n_fields : n_fields + n_methods]
            ],
            parameters=[
                (i, self.annotation_set_ref_list(o, out)) for i, o in pairs[n_fields + n_methods :]
            ],
        )
        out.annotations_directories[offset] = directory
        return offset

    def class_data(self, offset: int, out: DexContents) -> int:
        if not offset or offset in out.class_data:
            return offset
        self.offset_ok(offset, "class_data_item")
        sizes, pos = self.ulebs(offset, 4, "class_data_item sizes")
        n_fields, n_methods = sizes[0] + sizes[1], sizes[2] + sizes[3]
        if 2 * n_fields + 3 * n_methods > len(self.data) - pos:
            raise self.fail(f"class_data_item at {offset:#x} has impossible member counts")
        fields, pos = self.ulebs(pos, 2 * n_fields, "class_data_item fields")
        methods, pos = self.ulebs(pos, 3 * n_methods, "class_data_item methods")
        self.spend(pos - offset, offset)
        for i in range(2, len(methods), 3):
            if methods[i]:
                methods[i] = self.code_item(methods[i], out)
        out.class_data[offset] = ClassData(
            (sizes[0], sizes[1], sizes[2], sizes[3]), fields, methods
        )
        return offset

    def hiddenapi(self, offset: int, class_count: int) -> bytes:
        self.offset_ok(offset, "hiddenapi_class_data_item")
        size = self.u32(offset, "hiddenapi_class_data_item")
        if size < 4 * (class_count + 1):
            raise self.fail(f"hiddenapi_class_data_item at {offset:#x}: size {size} too small")
        self.need(offset, size, "hiddenapi_class_data_item")
        self.spend(size, offset)
        return self.data[offset : offset + size]

    def handlers(self, pos: int, what: str) -> tuple[set[int], int]:
        """The start offsets (relative to the list) of the handlers in the encoded catch
        handler list at ``pos``, and where the list ends."""
        start = pos
        size, pos = self.uleb(pos, f"{what} handler list size")
        self.count_fits(size, 1, pos, f"{what} handler list")
        starts: set[int] = set()
        for _ in range(size):
            starts.add(pos - start)
            try:
                count, pos = read_sleb128(self.data, pos)
            except DexFormatError:
                raise self.fail(f"{what}: bad catch handler size at {pos:#x}") from None
            self.count_fits(abs(count), 2, pos, f"{what} catch handler")
            _, pos = self.ulebs(pos, 2 * abs(count), f"{what} catch handler")
            if count <= 0:
                _, pos = self.uleb(pos, f"{what} catch-all address")
        return starts, pos

    def code_tail(self, offset: int, insns_end: int, tries: int) -> bytes:
        """The try items and handlers after code units ending at ``insns_end``."""
        if not tries:
            return b""
        what = f"code item at {offset:#x}"
        tries_off = _align4(insns_end)
        self.need(tries_off, 8 * tries, f"{what} try items")
        handlers_off = tries_off + 8 * tries
        starts, end = self.handlers(handlers_off, what)
        for _, _, handler_off in _TRY.iter_unpack(self.data[tries_off:handlers_off]):
            if handler_off not in starts:
                raise self.fail(f"{what}: a try item's handler_off {handler_off} is no handler")
        return self.data[tries_off:end]

    def code_item(self, offset: int, out: DexContents) -> int:
        if offset in out.code_items:
            return offset
        self.offset_ok(offset, "code_item")
        what = f"code item at {offset:#x}"
        data = self.data
        if self.compact:
            self.need(offset, 4, what)
            fields, flags = struct.unpack_from("<HH", data, offset)
            insns = flags >> INSNS_SHIFT
            registers, ins = fields >> 12, fields >> 8 & 0xF
            outs, tries = fields >> 4 & 0xF, fields & 0xF
            if flags & 0x1F:
                words: list[int] = []
                wanted = (2 if flags & PREHEADER_INSNS else 0) + bin(flags & 0xF).count("1")
                if offset - 2 * wanted < 0:
                    raise self.fail(f"{what}: its preheader starts before the data section")
                words = [
                    int(_U16.unpack_from(data, offset - 2 * (i + 1))[0]) for i in range(wanted)
                ]
                if flags & PREHEADER_INSNS:
                    insns += words.pop(0) + (words.pop(0) << 16)
                if flags & PREHEADER_REGISTERS:
                    registers += words.pop(0)
                if flags & PREHEADER_INS:
                    ins += words.pop(0)
                if flags & PREHEADER_OUTS:
                    outs += words.pop(0)
                if flags & PREHEADER_TRIES:
                    tries += words.pop(0)
            registers += ins
            if max(registers, ins, outs, tries) > 0xFFFF:
                raise self.fail(
                    f"{what}: preheader gives sizes over 65535 (registers {registers}, ins {ins}, "
                    f"outs {outs}, tries {tries})"
                )
            insns_off = offset + 4
        else:
            self.need(offset, 16, what)
            registers, ins, outs, tries, _debug, insns = _STD_CODE.unpack_from(data, offset)
            if ins > registers:
                raise self.fail(f"{what}: ins_size {ins} > registers_size {registers}")
            insns_off = offset + 16
        self.need(insns_off, 2 * insns, f"{what} instructions")
        insns_end = insns_off + 2 * insns
        tail = self.code_tail(offset, insns_end, tries)
        self.spend(insns_end - offset + len(tail), offset)
        out.code_items[offset] = CodeItem(
            registers, ins, outs, tries, data[insns_off:insns_end], tail
        )
        return offset


def _id_table(reader: _Reader, pair: tuple[int, int], item_size: int, what: str) -> bytes:
    """The bytes of one id section (``(count, offset)`` from the header), bounds checked."""
    count, offset = pair
    if not count:
        return b""
    reader.need(offset, count * item_size, what, main=True)
    return reader.main[offset : offset + count * item_size]


def read_contents(main: bytes, data: bytes, *, compact: bool) -> DexContents:
    """Every item of a DEX file reachable from its id sections (and its map's call sites and
    method handles).

    For a CompactDex ``main`` is the CompactDex (header and id sections) and ``data`` its data
    section; for a standard DEX (035 to 039) both are the whole file. Debug info is not
    read. Raises :class:`CompactDexError` on anything out of bounds or malformed.
    """
    if compact:
        header = read_compact_header(main)
        if header.file_size > len(main):
            raise CompactDexError(
                f"CompactDex: file_size {header.file_size} exceeds the {len(main)} bytes given"
            )
        main = main[: header.file_size]
        version = 37 if header.feature_flags & FEATURE_DEFAULT_METHODS else 35
        signature = bytes(main[12:32])
        pairs = [header.string_ids, header.type_ids, header.proto_ids, header.field_ids,
                 header.method_ids, header.class_defs]  # fmt: skip
        map_off = header.map_off
    else:
        if len(main) < DEX_HEADER_SIZE:
            raise CompactDexError(f"DEX: {len(main)} bytes is too short for a header")
        fields = _HEADER.unpack_from(main, 0)
        magic: bytes = fields[0]
        if magic[:4] != b"dex\n" or magic[7] != 0 or magic[4:7] not in (
            b"035", b"036", b"037", b"038", b"039"
        ):  # fmt: skip
            raise CompactDexError(f"DEX: magic {magic!r} is not a DEX file of version 035 to 039")
        values = fields[3:]
        if values[2] != ENDIAN_CONSTANT or values[1] != DEX_HEADER_SIZE:
            raise CompactDexError("DEX: bad endian tag or header size")
        if values[0] > len(main):
            raise CompactDexError(f"DEX: file_size {values[0]} exceeds the {len(main)} bytes given")
        main = data = main[: values[0]]
        version = int(magic[4:7])
        signature = bytes(fields[2])
        pairs = [(values[6 + 2 * i], values[7 + 2 * i]) for i in range(6)]
        map_off = values[5]
    reader = _Reader(main, data, compact=compact)
    raw_strings = _id_table(reader, pairs[0], 4, "string_ids")
    type_ids = _id_table(reader, pairs[1], 4, "type_ids")
    raw_protos = _id_table(reader, pairs[2], 12, "proto_ids")
    field_ids = _id_table(reader, pairs[3], 8, "field_ids")
    method_ids = _id_table(reader, pairs[4], 8, "method_ids")
    raw_classes = _id_table(reader, pairs[5], 32, "class_defs")

    # call sites and method handles are found through the map list only
    call_site_ids: list[int] = []
    method_handles = b""
    hiddenapi = b""
    if map_off:
        reader.offset_ok(map_off, "map_list")
        count = reader.u32(map_off, "map_list")
        reader.need(map_off + 4, 12 * count, "map_list")
        for kind, _, size, offset in _MAP_ITEM.iter_unpack(
            data[map_off + 4 : map_off + 4 + 12 * count]
        ):
            if kind == TYPE_CALL_SITE_ID and size:
                reader.need(offset, 4 * size, "call_site_ids", main=True)
                call_site_ids = [v for (v,) in _U32.iter_unpack(main[offset : offset + 4 * size])]
            elif kind == TYPE_METHOD_HANDLE and size:
                reader.need(offset, 8 * size, "method_handles", main=True)
                method_handles = main[offset : offset + 8 * size]
            elif kind == TYPE_HIDDENAPI_CLASS_DATA and size:
                hiddenapi = reader.hiddenapi(offset, len(raw_classes) // 32)
    if call_site_ids:
        version = max(version, 38)
    if method_handles:
        version = max(version, 39)

    out = DexContents(
        version=version,
        signature=signature,
        string_ids=[],
        type_ids=type_ids,
        proto_ids=[],
        field_ids=field_ids,
        method_ids=method_ids,
        class_defs=[],
        call_site_ids=[],
        method_handles=method_handles,
        hiddenapi=hiddenapi,
    )
    out.string_ids = [reader.string_data(v, out) for (v,) in _U32.iter_unpack(raw_strings)]
    out.proto_ids = [
        (shorty, ret, reader.type_list(params, out))
        for shorty, ret, params in struct.iter_unpack("<3I", raw_protos)
    ]
    for cls, access, sup, ifaces, source, annos, cdata, statics in struct.iter_unpack(
        "<8I", raw_classes
    ):
        out.class_defs.append(
            (
                cls,
                access,
                sup,
                reader.type_list(ifaces, out),
                source,
                reader.annotations_directory(annos, out),
                reader.class_data(cdata, out),
                reader.encoded_array(statics, out),
            )
        )
    for offset in call_site_ids:
        if not offset:
            raise CompactDexError(f"{reader.kind}: a call site has no encoded array")
        out.call_site_ids.append(reader.encoded_array(offset, out))
    return out


# --- writing a standard DEX --------------------------------------------------------------------


def _code_bytes(code: CodeItem) -> bytes:
    """A standard code_item (debug_info_off 0)."""
    units = len(code.insns) // 2
    head = _STD_CODE.pack(code.registers, code.ins, code.outs, code.tries_size, 0, units)
    if not code.tries:
        return head + code.insns
    padding = b"\x00\x00" if units & 1 else b""
    return head + code.insns + padding + code.tries


def class_data_bytes(item: ClassData, code_at: Callable[[int], int]) -> bytes:
    """A class_data_item, the code offset of each method (key) given by ``code_at``."""
    out = bytearray()
    for value in (*item.sizes, *item.fields):
        out += uleb128(value)
    methods = item.methods
    for i in range(0, len(methods), 3):
        out += uleb128(methods[i])
        out += uleb128(methods[i + 1])
        out += uleb128(code_at(methods[i + 2]) if methods[i + 2] else 0)
    return bytes(out)


def directory_bytes(
    item: AnnotationsDirectory, sets: dict[int, int], refs: dict[int, int]
) -> bytes:
    """An annotations_directory_item, with the offsets its annotation sets (``sets``) and set
    ref lists (``refs``) were written at."""
    out = bytearray(
        struct.pack(
            "<4I",
            _at_key(sets, item.class_annotations),
            len(item.fields),
            len(item.methods),
            len(item.parameters),
        )
    )
    for idx, key in item.fields:
        out += struct.pack("<II", idx, _at_key(sets, key))
    for idx, key in item.methods:
        out += struct.pack("<II", idx, _at_key(sets, key))
    for idx, key in item.parameters:
        out += struct.pack("<II", idx, _at_key(refs, key))
    return bytes(out)


def _at_key(table: dict[int, int], key: int) -> int:
    """The new offset of item ``key`` (0 stays 0: no item)."""
    return table[key] if key else 0


def proto_ids_bytes(contents: DexContents, types: dict[int, int]) -> bytes:
    """The proto_id items, with the offsets their parameter type lists were written at."""
    return b"".join(struct.pack("<3I", s, r, _at_key(types, p)) for s, r, p in contents.proto_ids)


def class_defs_bytes(
    contents: DexContents,
    types: dict[int, int],
    dirs: dict[int, int],
    classes: dict[int, int],
    arrays: dict[int, int],
) -> bytes:
    """The class_def items, with the offsets their interfaces, annotations directories, class
    data and static values were written at."""
    return b"".join(
        struct.pack(
            "<8I",
            cls,
            access,
            sup,
            _at_key(types, ifaces),
            source,
            _at_key(dirs, annotations),
            _at_key(classes, cdata),
            _at_key(arrays, statics),
        )
        for cls, access, sup, ifaces, source, annotations, cdata, statics in contents.class_defs
    )


def offset_list(keys: list[int], table: dict[int, int]) -> bytes:
    """A count and the written offsets of ``keys`` (annotation sets and set ref lists)."""
    return _U32.pack(len(keys)) + b"".join(_U32.pack(table[k] if k else 0) for k in keys)


def write_standard(contents: DexContents) -> bytes:
    """A standard DEX file holding ``contents``, with its map list, checksum and signature."""

    # id sections
    n_strings, n_types = len(contents.string_ids), len(contents.type_ids) // 4
    n_protos, n_fields = len(contents.proto_ids), len(contents.field_ids) // 8
    n_methods, n_classes = len(contents.method_ids) // 8, len(contents.class_defs)
    n_call_sites, n_handles = len(contents.call_site_ids), len(contents.method_handles) // 8
    cursor = DEX_HEADER_SIZE
    id_offsets: list[int] = []
    id_sizes = ((n_strings, 4), (n_types, 4), (n_protos, 12), (n_fields, 8), (n_methods, 8),
                (n_classes, 32), (n_call_sites, 4), (n_handles, 8))  # fmt: skip
    for count, size in id_sizes:
        id_offsets.append(cursor if count else 0)
        cursor += count * size
    data_off = cursor

    # data layout: (map type, alignment, {key: bytes}) in file order; class data and the items
    # that hold offsets are encoded once the offsets they need are known.
    offsets: dict[int, dict[int, int]] = {}
    sections: list[tuple[int, int, int]] = []  # (map type, count, offset)
    blobs: list[tuple[int, bytes]] = []

    def place(kind: int, align: int, items: dict[int, int]) -> None:
        """Give every key of ``items`` (key -> size) an offset, in key order."""
        nonlocal cursor
        table: dict[int, int] = {}
        first = None
        for key in sorted(items):
            if align == 4:
                cursor = _align4(cursor)
            if first is None:
                first = cursor
            table[key] = cursor
            cursor += items[key]
        offsets[kind] = table
        if first is not None:
            sections.append((kind, len(table), first))

    code_blobs = {k: _code_bytes(c) for k, c in contents.code_items.items()}
    place(TYPE_CODE, 4, {k: len(b) for k, b in code_blobs.items()})
    place(TYPE_TYPE_LIST, 4, {k: len(b) for k, b in contents.type_lists.items()})
    place(TYPE_ANNOTATION_SET_REF_LIST, 4,
          {k: 4 + 4 * len(v) for k, v in contents.annotation_set_ref_lists.items()})  # fmt: skip
    place(TYPE_ANNOTATION_SET, 4, {k: 4 + 4 * len(v) for k, v in contents.annotation_sets.items()})
    place(
        TYPE_ANNOTATIONS_DIRECTORY,
        4,
        {
            k: 16 + 8 * (len(d.fields) + len(d.methods) + len(d.parameters))
            for k, d in contents.annotations_directories.items()
        },
    )
    place(TYPE_ANNOTATION, 1, {k: len(b) for k, b in contents.annotations.items()})
    place(TYPE_ENCODED_ARRAY, 1, {k: len(b) for k, b in contents.encoded_arrays.items()})
    code_at = offsets[TYPE_CODE].__getitem__
    class_blobs = {k: class_data_bytes(c, code_at) for k, c in contents.class_data.items()}
    place(TYPE_CLASS_DATA, 1, {k: len(b) for k, b in class_blobs.items()})
    place(TYPE_STRING_DATA, 1, {k: len(b) for k, b in contents.string_data.items()})
    place(TYPE_HIDDENAPI_CLASS_DATA, 4, {1: len(contents.hiddenapi)} if contents.hiddenapi else {})
    cursor = _align4(cursor)
    map_off = cursor

    sets, refs = offsets[TYPE_ANNOTATION_SET], offsets[TYPE_ANNOTATION_SET_REF_LIST]
    annos = offsets[TYPE_ANNOTATION]
    item_bytes: dict[int, Callable[[int], bytes]] = {
        TYPE_CODE: code_blobs.__getitem__,
        TYPE_TYPE_LIST: contents.type_lists.__getitem__,
        TYPE_ANNOTATION_SET_REF_LIST: lambda k: offset_list(
            contents.annotation_set_ref_lists[k], sets
        ),
        TYPE_ANNOTATION_SET: lambda k: offset_list(contents.annotation_sets[k], annos),
        TYPE_ANNOTATIONS_DIRECTORY: lambda k: directory_bytes(
            contents.annotations_directories[k], sets, refs
        ),
        TYPE_ANNOTATION: contents.annotations.__getitem__,
        TYPE_ENCODED_ARRAY: contents.encoded_arrays.__getitem__,
        TYPE_CLASS_DATA: class_blobs.__getitem__,
        TYPE_STRING_DATA: contents.string_data.__getitem__,
        TYPE_HIDDENAPI_CLASS_DATA: lambda _: contents.hiddenapi,
    }
    for kind, _, _ in sections:
        render = item_bytes[kind]
        blobs.extend((where, render(key)) for key, where in offsets[kind].items())

    map_items = [(TYPE_HEADER, 1, 0)]
    id_kinds = (TYPE_STRING_ID, TYPE_TYPE_ID, TYPE_PROTO_ID, TYPE_FIELD_ID, TYPE_METHOD_ID,
                TYPE_CLASS_DEF, TYPE_CALL_SITE_ID, TYPE_METHOD_HANDLE)  # fmt: skip
    id_counts = (n_strings, n_types, n_protos, n_fields, n_methods, n_classes, n_call_sites,
                 n_handles)  # fmt: skip
    map_items += [(k, n, o) for k, n, o in zip(id_kinds, id_counts, id_offsets, strict=True) if n]
    map_items += sections
    map_items.append((TYPE_MAP_LIST, 1, map_off))
    map_items.sort(key=lambda item: item[2])
    map_bytes = _U32.pack(len(map_items)) + b"".join(
        _MAP_ITEM.pack(kind, 0, count, offset) for kind, count, offset in map_items
    )
    file_size = map_off + len(map_bytes)

    out = bytearray(file_size)
    strings = offsets[TYPE_STRING_DATA]
    types = offsets[TYPE_TYPE_LIST]
    arrays = offsets[TYPE_ENCODED_ARRAY]
    dirs = offsets[TYPE_ANNOTATIONS_DIRECTORY]
    classes = offsets[TYPE_CLASS_DATA]
    pieces: list[bytes] = [
        b"".join(_U32.pack(strings[k]) for k in contents.string_ids),
        contents.type_ids,
        proto_ids_bytes(contents, types),
        contents.field_ids,
        contents.method_ids,
        class_defs_bytes(contents, types, dirs, classes, arrays),
        b"".join(_U32.pack(arrays[k]) for k in contents.call_site_ids),
        contents.method_handles,
    ]
    position = DEX_HEADER_SIZE
    for piece in pieces:
        out[position : position + len(piece)] = piece
        position += len(piece)
    for where, blob in blobs:
        out[where : where + len(blob)] = blob
    out[map_off:file_size] = map_bytes

    header = struct.pack(
        "<8sI20s20I",
        b"dex\n%03d\x00" % contents.version,
        0,
        bytes(20),
        file_size,
        DEX_HEADER_SIZE,
        ENDIAN_CONSTANT,
        0,
        0,
        map_off,
        n_strings, id_offsets[0], n_types, id_offsets[1], n_protos, id_offsets[2],
        n_fields, id_offsets[3], n_methods, id_offsets[4], n_classes, id_offsets[5],
        file_size - data_off,
        data_off,
    )  # fmt: skip
    out[:DEX_HEADER_SIZE] = header
    out[12:32] = hashlib.sha1(out[32:]).digest()
    out[8:12] = _U32.pack(zlib.adler32(out[12:]))
    return bytes(out)


# --- CompactDex to standard DEX ----------------------------------------------------------------


def compact_to_standard(cdex: bytes | memoryview, data: bytes | memoryview) -> bytes:
    """The standard DEX file equivalent to one CompactDex.

    ``cdex`` holds the CompactDex from its header on (at least ``file_size`` bytes); ``data``
    is its data section: the ``data_size`` bytes at ``data_off`` from the CompactDex's start
    (in a VDEX, inside the shared data section). The data section must start at a 4-byte
    aligned file offset, as dex2oat writes it (try items are aligned to the address).
    Raises :class:`CompactDexError` when the input is malformed.
    """
    header = read_compact_header(cdex)
    if len(data) < header.data_size:
        raise CompactDexError(
            f"CompactDex: data_size {header.data_size} exceeds the {len(data)}-byte data section"
        )
    if header.file_size > len(cdex):
        raise CompactDexError(
            f"CompactDex: file_size {header.file_size} exceeds the {len(cdex)} bytes given"
        )
    main = bytes(cdex[: header.file_size])
    contents = read_contents(main, bytes(data[: header.data_size]), compact=True)
    return write_standard(contents)


def compact_file_to_standard(blob: bytes | memoryview) -> bytes:
    """The standard DEX equivalent to a stand-alone CompactDex file, whose data section lies
    inside the same file (at ``data_off``, as dexlayout writes a single CompactDex)."""
    header = read_compact_header(blob)
    start, end = header.data_off, header.data_off + header.data_size
    if header.data_size and (start % 4 or end > len(blob)):
        raise CompactDexError(
            f"CompactDex: data section ({header.data_size} bytes at {start:#x}) is misaligned "
            f"or runs past the end of the file ({len(blob)} bytes)"
        )
    return compact_to_standard(blob, memoryview(blob)[start:end])

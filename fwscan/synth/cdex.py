"""A writer of CompactDex files and of the VDEX files that carry them, for tests.

:func:`write_compact` turns standard DEX files into CompactDex (``cdex001``) main sections and
one shared data section, laid out as dex2oat's compact DEX writer does (AOSP
``dexlayout/compact_dex_writer.cc``, Android 9 to 13):

* the main section is the 0x88-byte header, the string, type, proto, field and method ids, the
  class defs, the call-site ids and the method handles, padded to 8 bytes;
* the data section starts with 8 reserved bytes (offset 0 means "none"); each DEX's items
  follow, 8-byte aligned, in the writer's order: code items, (debug info), encoded arrays,
  annotations, annotation sets, annotation set ref lists, annotations directories, type lists,
  class data, string data, hidden-API data, then the map list and the debug-info offset table.
  String data already written for an earlier DEX of the same set is shared, not written again,
  as dex2oat deduplicates data items across the DEX files of one VDEX;
* a code item is 2-byte aligned, with its preheader words before it for registers (minus ins),
  ins, outs and tries of 16 or more and for more than 2047 code units, and 2 bytes of padding
  first when its instructions hold a switch or fill-array-data and would otherwise not start on
  a 4-byte boundary;
* debug info is not written: the offset table (``compact_offset_table.cc``) says "none" for
  every method; the header checksum is ``CompactDexFile::CalculateChecksum``.

:func:`compact_file` gives one stand-alone CompactDex with its data section inside the file
(``data_off`` = ``file_size``), the form ``dexdump`` opens. :func:`build_vdex` wraps DEX files,
compact or standard, into a VDEX of version 019 (Android 9), 021 (10, 11) or 027 (12 to 14),
with the shared data section where each version keeps it (``runtime/vdex_file.h`` and
``dex2oat/linker/oat_writer.cc`` of each release) and each CompactDex's ``data_off`` pointing at
it. The verifier-deps bytes are filler: fwscan does not read them.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from fwscan.analyze.cdex import (
    CDEX_HEADER_SIZE,
    CDEX_MAGIC,
    ENDIAN_CONSTANT,
    FEATURE_DEFAULT_METHODS,
    INSNS_SHIFT,
    PREHEADER_INS,
    PREHEADER_INSNS,
    PREHEADER_OUTS,
    PREHEADER_REGISTERS,
    PREHEADER_TRIES,
    TYPE_ANNOTATION,
    TYPE_ANNOTATION_SET,
    TYPE_ANNOTATION_SET_REF_LIST,
    TYPE_ANNOTATIONS_DIRECTORY,
    TYPE_CALL_SITE_ID,
    TYPE_CLASS_DATA,
    TYPE_CLASS_DEF,
    TYPE_CODE,
    TYPE_ENCODED_ARRAY,
    TYPE_FIELD_ID,
    TYPE_HEADER,
    TYPE_HIDDENAPI_CLASS_DATA,
    TYPE_MAP_LIST,
    TYPE_METHOD_HANDLE,
    TYPE_METHOD_ID,
    TYPE_PROTO_ID,
    TYPE_STRING_DATA,
    TYPE_STRING_ID,
    TYPE_TYPE_ID,
    TYPE_TYPE_LIST,
    CodeItem,
    DexContents,
    class_data_bytes,
    class_defs_bytes,
    directory_bytes,
    offset_list,
    proto_ids_bytes,
    read_contents,
)
from fwscan.analyze.dex import DexFormatError, instruction_starts

__all__ = ["DATA_SECTION_ALIGNMENT", "CompactDexSet", "build_vdex", "compact_file", "write_compact"]

DATA_SECTION_ALIGNMENT = 8
"""``CompactDexWriter::kDataSectionAlignment``."""
_PAYLOAD_OPCODES = frozenset((0x26, 0x2B, 0x2C))
"""fill-array-data, packed-switch, sparse-switch."""
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class CompactDexSet:
    """CompactDex main sections sharing one data section."""

    mains: tuple[bytes, ...]
    """One per DEX, in order; each header's ``data_off`` is its own ``file_size`` (data right
    after the main section), which a container rewrites."""
    data: bytes
    """The shared data section."""
    checksums: tuple[int, ...]
    """The Adler-32 checksum of each input DEX (what a VDEX lists)."""


def _pad(buf: bytearray, alignment: int) -> None:
    buf += bytes(-len(buf) % alignment)


def _has_payload(insns: bytes) -> bool:
    units = _U16.unpack_from
    try:
        starts = instruction_starts([units(insns, 2 * i)[0] for i in range(len(insns) // 2)])
    except DexFormatError:
        return False
    return any(insns[2 * pc] in _PAYLOAD_OPCODES for pc in starts)


def _write_code(data: bytearray, code: CodeItem) -> int:
    """Append one compact code item (and its preheader); return its offset."""
    _pad(data, 2)
    stored_registers = code.registers - code.ins
    fields = (
        (stored_registers & 0xF) << 12
        | (code.ins & 0xF) << 8
        | (code.outs & 0xF) << 4
        | (code.tries_size & 0xF)
    )
    count = len(code.insns) // 2
    masked = count & ((1 << (16 - INSNS_SHIFT)) - 1)
    flags = masked << INSNS_SHIFT
    rest = count - masked
    words: list[int] = []  # from the code item downwards
    if rest:
        flags |= PREHEADER_INSNS
        words += [rest & 0xFFFF, rest >> 16]
    for value, flag in (
        (stored_registers, PREHEADER_REGISTERS),
        (code.ins, PREHEADER_INS),
        (code.outs, PREHEADER_OUTS),
        (code.tries_size, PREHEADER_TRIES),
    ):
        if value & ~0xF:
            flags |= flag
            words.append(value & ~0xF)
    if (len(data) + 2 * len(words)) % 4 and _has_payload(code.insns):
        data += bytes(2)
    data += b"".join(_U16.pack(w) for w in reversed(words))
    offset = len(data)
    data += struct.pack("<HH", fields, flags) + code.insns
    if code.tries:
        _pad(data, 4)
        data += code.tries
    return offset


def _offset_table(method_count: int) -> tuple[bytes, int, int]:
    """A debug-info offset table saying "no debug info" for every method: its bytes, the
    offset of its index inside them, and the base offset (``CompactOffsetTable::Build``)."""
    blocks = (method_count + 15) // 16
    table = bytearray(2 * blocks)  # one all-zero 16-bit mask per block of 16 methods, no LEBs
    _pad(table, 4)
    index_at = len(table)
    table += b"".join(_U32.pack(2 * i) for i in range(blocks))
    return bytes(table), index_at, 0xFFFFFFFF


def _checksum(main: bytes, data: bytes) -> int:
    """``CompactDexFile::CalculateChecksum``: the header with checksum, data_off and data_size
    zeroed, then the rest of the main section, then the data section, each Adler-32, chained
    as ``(sum * 31) ^ next``."""
    header = bytearray(main[:CDEX_HEADER_SIZE])
    header[8:12] = bytes(4)
    header[0x68:0x70] = bytes(8)
    value = zlib.adler32(bytes(header))
    value = (value * 31 ^ zlib.adler32(main[CDEX_HEADER_SIZE:])) & 0xFFFFFFFF
    return (value * 31 ^ zlib.adler32(data)) & 0xFFFFFFFF


def _write_one(contents: DexContents, data: bytearray, shared_strings: dict[bytes, int]) -> bytes:
    """Append one DEX's items to ``data``; return its main section."""
    _pad(data, DATA_SECTION_ALIGNMENT)
    owned_begin = len(data)
    starts: dict[int, int] = {}  # map type -> offset of the first item written

    def put(kind: int, alignment: int, blob: bytes) -> int:
        _pad(data, alignment)
        starts.setdefault(kind, len(data))
        offset = len(data)
        data.extend(blob)
        return offset

    code: dict[int, int] = {}
    for key in sorted(contents.code_items):
        offset = _write_code(data, contents.code_items[key])
        starts.setdefault(TYPE_CODE, offset)
        code[key] = offset
    arrays = {
        k: put(TYPE_ENCODED_ARRAY, 1, contents.encoded_arrays[k])
        for k in sorted(contents.encoded_arrays)
    }
    annos = {
        k: put(TYPE_ANNOTATION, 1, contents.annotations[k]) for k in sorted(contents.annotations)
    }
    sets = {
        k: put(TYPE_ANNOTATION_SET, 4, offset_list(v, annos))
        for k, v in sorted(contents.annotation_sets.items())
    }
    refs = {
        k: put(TYPE_ANNOTATION_SET_REF_LIST, 4, offset_list(v, sets))
        for k, v in sorted(contents.annotation_set_ref_lists.items())
    }
    dirs = {
        k: put(TYPE_ANNOTATIONS_DIRECTORY, 4, directory_bytes(item, sets, refs))
        for k, item in sorted(contents.annotations_directories.items())
    }
    types = {k: put(TYPE_TYPE_LIST, 4, contents.type_lists[k]) for k in sorted(contents.type_lists)}
    classes = {
        k: put(TYPE_CLASS_DATA, 1, class_data_bytes(cdata, code.__getitem__))
        for k, cdata in sorted(contents.class_data.items())
    }
    strings: dict[int, int] = {}
    for key in sorted(contents.string_data):
        raw = contents.string_data[key]
        if raw not in shared_strings:
            shared_strings[raw] = put(TYPE_STRING_DATA, 1, raw)
        strings[key] = shared_strings[raw]
        starts.setdefault(TYPE_STRING_DATA, strings[key])
    if contents.hiddenapi:
        put(TYPE_HIDDENAPI_CLASS_DATA, 4, contents.hiddenapi)

    # main section: the id sections (offsets in the main section)
    main = bytearray(CDEX_HEADER_SIZE)
    ids: list[tuple[int, int, int]] = []  # (map type, count, offset)

    def section(kind: int, count: int, blob: bytes) -> tuple[int, int]:
        offset = len(main) if count else 0
        main.extend(blob)
        if count:
            ids.append((kind, count, offset))
        return count, offset

    string_ids = section(
        TYPE_STRING_ID,
        len(contents.string_ids),
        b"".join(_U32.pack(strings[k]) for k in contents.string_ids),
    )
    type_ids = section(TYPE_TYPE_ID, len(contents.type_ids) // 4, contents.type_ids)
    proto_ids = section(
        TYPE_PROTO_ID,
        len(contents.proto_ids),
        proto_ids_bytes(contents, types),
    )
    field_ids = section(TYPE_FIELD_ID, len(contents.field_ids) // 8, contents.field_ids)
    method_ids = section(TYPE_METHOD_ID, len(contents.method_ids) // 8, contents.method_ids)
    class_defs = section(
        TYPE_CLASS_DEF,
        len(contents.class_defs),
        class_defs_bytes(contents, types, dirs, classes, arrays),
    )
    section(
        TYPE_CALL_SITE_ID,
        len(contents.call_site_ids),
        b"".join(_U32.pack(arrays[k]) for k in contents.call_site_ids),
    )
    section(TYPE_METHOD_HANDLE, len(contents.method_handles) // 8, contents.method_handles)

    # the map list (data-item offsets in the data section), then the debug-info offset table
    counts = {
        TYPE_CODE: len(contents.code_items),
        TYPE_ENCODED_ARRAY: len(contents.encoded_arrays),
        TYPE_ANNOTATION: len(contents.annotations),
        TYPE_ANNOTATION_SET: len(contents.annotation_sets),
        TYPE_ANNOTATION_SET_REF_LIST: len(contents.annotation_set_ref_lists),
        TYPE_ANNOTATIONS_DIRECTORY: len(contents.annotations_directories),
        TYPE_TYPE_LIST: len(contents.type_lists),
        TYPE_CLASS_DATA: len(contents.class_data),
        TYPE_STRING_DATA: len(contents.string_data),
        TYPE_HIDDENAPI_CLASS_DATA: 1,
    }
    _pad(data, 4)
    map_off = len(data)
    entries = [(TYPE_HEADER, 1, 0), *ids, (TYPE_MAP_LIST, 1, map_off)]
    entries += [(kind, counts[kind], offset) for kind, offset in starts.items() if counts[kind]]
    entries.sort(key=lambda entry: entry[2])
    data += _U32.pack(len(entries))
    data += b"".join(struct.pack("<HHII", kind, 0, n, offset) for kind, n, offset in entries)
    table, table_offset, debug_base = _offset_table(method_ids[0])
    _pad(data, 4)
    debug_pos = len(data)
    data += table
    _pad(data, DATA_SECTION_ALIGNMENT)
    data_size = len(data)

    _pad(main, DATA_SECTION_ALIGNMENT)
    file_size = len(main)
    header = struct.pack(
        "<8sI20s20I6I",
        CDEX_MAGIC,
        0,
        contents.signature,
        file_size,
        CDEX_HEADER_SIZE,
        ENDIAN_CONSTANT,
        0,
        0,
        map_off,
        *string_ids, *type_ids, *proto_ids, *field_ids, *method_ids, *class_defs,
        data_size,
        file_size,
        FEATURE_DEFAULT_METHODS if contents.version >= 37 else 0,
        debug_pos,
        table_offset,
        debug_base,
        owned_begin,
        data_size,
    )  # fmt: skip
    main[:CDEX_HEADER_SIZE] = header
    main[8:12] = _U32.pack(_checksum(bytes(main), bytes(data)))
    return bytes(main)


def write_compact(dex_files: Sequence[bytes]) -> CompactDexSet:
    """CompactDex main sections for standard DEX files (035 to 039), sharing one data section.

    Raises :class:`~fwscan.analyze.cdex.CompactDexError` for a DEX that cannot be read.
    """
    data = bytearray(DATA_SECTION_ALIGNMENT)
    shared: dict[bytes, int] = {}
    mains = tuple(_write_one(read_contents(d, d, compact=False), data, shared) for d in dex_files)
    checksums = tuple(int(_U32.unpack_from(d, 8)[0]) for d in dex_files)
    return CompactDexSet(mains, bytes(data), checksums)


def _set_data_off(main: bytes, data_off: int) -> bytes:
    """``main`` with its header's ``data_off`` replaced (not part of the checksum)."""
    return main[:0x6C] + _U32.pack(data_off) + main[0x70:]


def compact_file(dex: bytes) -> bytes:
    """One stand-alone CompactDex file: the main section, then its data section."""
    result = write_compact([dex])
    return result.mains[0] + result.data


def _dex_section(
    dex_files: Sequence[bytes], compact: bool, table_offsets: bool
) -> tuple[bytes, int, int, tuple[int, ...]]:
    """The DEX files (each preceded by a 4-byte quickening-table offset if ``table_offsets``)
    and the shared data section, laid out from a 4-byte aligned file offset: the bytes, the
    size of the DEX part, the size of the shared data, and the checksums."""
    if compact:
        result = write_compact(dex_files)
        mains, data, checksums = list(result.mains), result.data, result.checksums
    else:
        mains, data = list(dex_files), b""
        checksums = tuple(int(_U32.unpack_from(d, 8)[0]) for d in dex_files)
    out = bytearray()
    places: list[int] = []
    for main in mains:
        _pad(out, 4)
        if table_offsets:
            out += bytes(4)
        places.append(len(out))
        out += main
    _pad(out, 4)
    dex_size = len(out)
    for i, where in enumerate(places):
        if mains[i][:4] == CDEX_MAGIC[:4]:
            out[where : where + len(mains[i])] = _set_data_off(mains[i], dex_size - where)
    out += data
    return bytes(out), dex_size, len(data), checksums


def build_vdex(
    dex_files: Sequence[bytes],
    version: Literal["019", "021", "027"] = "027",
    *,
    compact: bool = True,
) -> bytes:
    """A VDEX file holding ``dex_files`` (standard DEX), converted to CompactDex if ``compact``.

    * 019 (Android 9) and 021 (10, 11): the verifier-deps header (with the boot class path
      checksums and class loader context sizes in 021), the DEX checksums, the DexSectionHeader
      (``dex_size``, ``dex_shared_data_size``, ``quickening_info_size``), each DEX after a
      4-byte quickening-table offset, then the shared data, the verifier deps and the two
      strings.
    * 027 (Android 12 to 14): the header, four section headers (checksums, DEX files,
      verifier deps, type lookup tables), then the sections; the DEX section holds the DEX
      files and, after them, the shared data.
    """
    deps = b"\x00" * 8
    if version in ("019", "021"):
        body, dex_size, shared_size, checksums = _dex_section(dex_files, compact, True)
        clc = b"PCL[]"
        header = b"vdex" + version.encode() + b"\x00002\x00"
        header += struct.pack("<II", len(dex_files), len(deps))
        if version == "021":
            header += struct.pack("<II", 0, len(clc))
        out = header + b"".join(_U32.pack(c) for c in checksums)
        out += struct.pack("<III", dex_size, shared_size, 0) + body + deps
        return out + (clc if version == "021" else b"")
    start = 12 + 4 * 12
    checksum_size = 4 * len(dex_files)
    dex_offset = start + checksum_size  # already 4-aligned
    body, _, _, checksums = _dex_section(dex_files, compact, False)
    deps_offset = dex_offset + len(body)
    lookup_offset = deps_offset + len(deps)
    sections = [
        (0, start, checksum_size),
        (1, dex_offset, len(body)),
        (2, deps_offset, len(deps)),
        (3, lookup_offset, 0),
    ]
    header = b"vdex027\x00" + _U32.pack(len(sections))
    header += b"".join(struct.pack("<III", *s) for s in sections)
    return header + b"".join(_U32.pack(c) for c in checksums) + body + deps

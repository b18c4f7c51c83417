"""Native code: ELF libraries and executables, and the DEX files inside OAT and VDEX files.

This is the only module of fwscan that imports LIEF (its logging is turned off at import, so a
malformed file never prints to the terminal). :func:`analyze_elf` reads what a reviewer needs
from an ELF file: machine and type, ``DT_SONAME`` and ``DT_NEEDED``, imported and exported
functions (with the JNI entry points apart), and the printable strings of its read-only data
with their file offsets. :func:`find_embedded_dex` finds the DEX files inside an OAT (``.odex``,
``.oat``) file by their headers; :func:`vdex_dex_files` reads the DEX files of a VDEX file,
turning CompactDex into standard DEX (:mod:`fwscan.analyze.cdex`).

Everything is bounded: sections or segments that point past the end of the file are skipped,
strings are cut into runs of at most :data:`MAX_STRING_CHARS` characters and at most
:data:`MAX_STRINGS` are kept per file; each limit reached or problem seen is written in the
report's ``errors`` (or, for the DEX finders, in the caller's ``errors`` list); only input that
is not an ELF file (or that LIEF cannot open at all) raises :class:`~fwscan.errors.UnpackError`.

LIEF facts (1.0): ``lief.ELF.parse`` takes ``bytes``; ``lief.DEX.parse`` and
``lief.VDEX.parse`` take ``bytes`` for a *file name* (pass DEX data as ``list(data)``; VDEX
only parses from a path, and only versions up to 011), hence the VDEX reader here.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import lief

from fwscan.errors import UnpackError
from fwscan.rules import NativeRule

lief.logging.disable()

__all__ = [
    "MAX_DEX_FILES",
    "MAX_STRINGS",
    "MAX_STRING_CHARS",
    "MIN_STRING_CHARS",
    "ElfString",
    "NativeReport",
    "analyze_elf",
    "find_embedded_dex",
    "looks_like_property",
    "vdex_dex_files",
]

MIN_STRING_CHARS = 4
"""Shortest run of printable characters taken as a string."""
MAX_STRING_CHARS = 4096
"""Longer runs are cut into consecutive strings of at most this many characters."""
MAX_STRINGS = 100_000
"""Most strings kept per file (after the filter); the rest are dropped, and ``errors`` says so."""
MAX_DEX_FILES = 4096
"""Most DEX files taken from one OAT or VDEX file."""

_ELF_MAGIC = b"\x7fELF"

# Candidate runs: printable ASCII, tab, and bytes that may belong to UTF-8 sequences. This
# simple class is fast; runs holding non-ASCII bytes are then split with the exact pattern.
_CANDIDATE_RE = re.compile(rb"[\t\x20-\x7e\x80-\xbf\xc2-\xf4]{%d,}" % MIN_STRING_CHARS)
# Exactly the well-formed UTF-8 encodings (RFC 3629: no overlong forms, no surrogates, nothing
# above U+10FFFF) of printable characters: tab, U+0020-U+007E, U+00A0 and above (no C1 controls).
_UTF8_RE = re.compile(
    rb"(?:[\t\x20-\x7e]"
    rb"|\xc2[\xa0-\xbf]|[\xc3-\xdf][\x80-\xbf]"
    rb"|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}"
    rb"){%d,%d}" % (MIN_STRING_CHARS, MAX_STRING_CHARS)
)

# An Android system property name: dot-separated words of letters, digits and ``_-@:``
# (``ro.serialno``, ``persist.radio.imei``, ``ro.boot.hardware.sku``), at most 256 characters.
_PROPERTY_RE = re.compile(r"[A-Za-z0-9_@:-]+(?:\.[A-Za-z0-9_@:-]+)+")
_MAX_PROPERTY_CHARS = 256

_MACHINES = {40: "arm", 183: "aarch64", 62: "x86_64", 3: "x86", 8: "mips", 243: "riscv"}
"""``e_machine`` values and their names; others are written ``em_<number>``."""
_ELF_TYPES = {0: "none", 1: "rel", 2: "exec", 3: "dyn", 4: "core"}
"""``e_type`` values and their names; others are written ``et_<hex>``."""

_MAX_SECTIONS = 100_000
_PT_LOAD = 1
_PT_DYNAMIC = 2
_PF_X = 1
_SHT_NULL = 0
_SHT_NOBITS = 8
_DT_NULL = 0
_DT_STRTAB = 5
_DT_STRSZ = 10


@dataclass(frozen=True)
class ElfString:
    """A printable string in an ELF file's read-only data."""

    value: str
    section: str
    """The section it lies in (``.rodata``...), or ``PT_LOAD#<n>`` (the ``n``-th program
    header) when the file has no usable section headers."""
    offset: int
    """File offset of the string's first byte: ``data[offset:offset + len(value.encode())]``
    is the string's UTF-8 encoding."""


@dataclass(frozen=True)
class NativeReport:
    """What :func:`analyze_elf` read from one ELF file."""

    machine: str
    """``aarch64``, ``arm``, ``x86_64``, ``x86``, ``mips``, ``riscv``, or ``em_<number>``."""
    elf_type: str
    """``e_type`` in lower case: ``dyn`` (libraries and PIE executables), ``exec``, ``rel``,
    ``core``, ``none``, or ``et_<hex>``."""
    soname: str | None
    needed: tuple[str, ...]
    """``DT_NEEDED`` entries in file order."""
    imports: tuple[str, ...]
    """Imported (undefined dynamic) function names, sorted, without duplicates."""
    exports: tuple[str, ...]
    """Exported (defined dynamic) function names, sorted, without duplicates."""
    jni_exports: tuple[str, ...]
    """The exports that are JNI entry points: ``Java_*``, ``JNI_OnLoad``, ``JNI_OnUnload``."""
    strings: tuple[ElfString, ...]
    """Strings of the read-only data that pass the caller's filter or name a property of a
    property rule, by file offset."""
    properties: tuple[ElfString, ...]
    """The strings that look like Android system property names and match a ``property``
    :class:`~fwscan.rules.NativeRule`, by file offset."""
    errors: tuple[str, ...]
    """What could not be read (truncation, out-of-bounds headers) or was cut by a limit."""


def looks_like_property(value: str) -> bool:
    """Whether ``value`` has the shape of an Android system property name (``ro.serialno``)."""
    return len(value) <= _MAX_PROPERTY_CHARS and _PROPERTY_RE.fullmatch(value) is not None


class _PropertyMatcher:
    """The ``property`` rules, as one set of exact names and one tuple of prefixes."""

    def __init__(self, rules: Sequence[NativeRule]) -> None:
        self.exact = frozenset(
            r.pattern for r in rules if r.kind == "property" and not r.pattern.endswith("*")
        )
        self.prefixes = tuple(
            r.pattern[:-1] for r in rules if r.kind == "property" and r.pattern.endswith("*")
        )

    def __call__(self, value: str) -> bool:
        if not (self.exact or self.prefixes) or not looks_like_property(value):
            return False
        return value in self.exact or (bool(self.prefixes) and value.startswith(self.prefixes))


def _iter_strings(region: bytes, base: int) -> Iterator[tuple[int, str]]:
    """Every printable run in ``region`` as ``(file offset, text)``; ``base`` is the region's
    file offset. One regular-expression scan; only runs with non-ASCII bytes are scanned again."""
    for match in _CANDIDATE_RE.finditer(region):
        run = match.group()
        start = base + match.start()
        if run.isascii():
            for i in range(0, len(run), MAX_STRING_CHARS):
                part = run[i : i + MAX_STRING_CHARS]
                if len(part) >= MIN_STRING_CHARS:
                    yield start + i, part.decode("ascii")
        else:
            for sub in _UTF8_RE.finditer(run):
                yield start + sub.start(), sub.group().decode("utf-8")


def _text(value: object) -> str:
    """A name from LIEF as text: LIEF gives ``bytes`` for names that are not valid UTF-8."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    return str(value)


@dataclass(frozen=True)
class _Segment:
    index: int
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int


@dataclass(frozen=True)
class _Section:
    name: str
    type: int
    offset: int
    size: int


@dataclass(frozen=True)
class _Layout:
    """The ELF header fields, program headers and section headers, read with bounds checks."""

    is64: bool
    endian: str
    e_type: int
    e_machine: int
    segments: tuple[_Segment, ...]
    sections: tuple[_Section, ...]


def _table_fits(offset: int, count: int, entsize: int, size: int) -> bool:
    return offset + count * entsize <= size


def _read_layout(data: bytes, errors: list[str]) -> _Layout:
    """Read the ELF header and header tables ourselves (LIEF's Python enums warn on values
    they do not know, which hostile files are full of); every table is checked against the
    file size and skipped, with a note, when it does not fit."""
    if not data:
        raise UnpackError("not an ELF file: empty")
    if data[:4] != _ELF_MAGIC:
        raise UnpackError("not an ELF file: bad magic")
    if len(data) < 52 or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise UnpackError("not an ELF file: truncated header or bad class/data byte")
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    size = len(data)
    if is64:
        if size < 64:
            raise UnpackError("not an ELF file: truncated ELF64 header")
        e_type, e_machine = struct.unpack_from(endian + "HH", data, 16)
        phoff, shoff = struct.unpack_from(endian + "QQ", data, 32)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(
            endian + "HHHHH", data, 54
        )
        min_ph, min_sh = 56, 64
    else:
        e_type, e_machine = struct.unpack_from(endian + "HH", data, 16)
        phoff, shoff = struct.unpack_from(endian + "II", data, 28)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(
            endian + "HHHHH", data, 42
        )
        min_ph, min_sh = 32, 40

    segments: list[_Segment] = []
    if phnum and (phentsize < min_ph or not _table_fits(phoff, phnum, phentsize, size)):
        errors.append(
            f"program header table ({phnum} entries of {phentsize} bytes at offset {phoff}) "
            f"does not fit in the file ({size} bytes): skipped"
        )
    elif phnum:
        for index in range(phnum):
            at = phoff + index * phentsize
            if is64:
                p_type, p_flags, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
                    endian + "IIQQQQ", data, at
                )
            else:
                p_type, p_offset, p_vaddr, _, p_filesz, _, p_flags = struct.unpack_from(
                    endian + "IIIIIII", data, at
                )
            segments.append(_Segment(index, p_type, p_flags, p_offset, p_vaddr, p_filesz))

    sections: list[_Section] = []
    fits0 = shoff != 0 and shentsize >= min_sh and _table_fits(shoff, 1, shentsize, size)
    if shnum == 0 and fits0:  # extended numbering: the count is in section 0's sh_size
        shnum = struct.unpack_from(
            endian + ("Q" if is64 else "I"), data, shoff + (32 if is64 else 20)
        )[0]
    if shstrndx == 0xFFFF and fits0:  # SHN_XINDEX: the index is in section 0's sh_link
        shstrndx = struct.unpack_from(endian + "I", data, shoff + (40 if is64 else 24))[0]
    if shnum > _MAX_SECTIONS:
        errors.append(f"{shnum} section headers: more than {_MAX_SECTIONS}, skipped")
    elif shnum and (shentsize < min_sh or not _table_fits(shoff, shnum, shentsize, size)):
        errors.append(
            f"section header table ({shnum} entries of {shentsize} bytes at offset {shoff}) "
            f"does not fit in the file ({size} bytes): skipped"
        )
    elif shnum:
        raw: list[tuple[int, int, int, int]] = []
        for index in range(shnum):
            at = shoff + index * shentsize
            if is64:
                sh_name, sh_type, _, _, sh_offset, sh_size = struct.unpack_from(
                    endian + "IIQQQQ", data, at
                )
            else:
                sh_name, sh_type, _, _, sh_offset, sh_size = struct.unpack_from(
                    endian + "IIIIII", data, at
                )
            raw.append((sh_name, sh_type, sh_offset, sh_size))
        names = b""
        if shstrndx < len(raw):
            _, _, str_offset, str_size = raw[shstrndx]
            if str_offset + str_size <= size:
                names = data[str_offset : str_offset + str_size]
            else:
                errors.append("section name table lies past the end of the file: names lost")
        for sh_name, sh_type, sh_offset, sh_size in raw:
            end = names.find(b"\x00", sh_name, sh_name + 256)
            name = names[sh_name:end] if end >= 0 else b""
            sections.append(
                _Section(name.decode("utf-8", "backslashreplace"), sh_type, sh_offset, sh_size)
            )
    return _Layout(is64, endian, e_type, e_machine, tuple(segments), tuple(sections))


def _parse(data: bytes) -> Any:
    config = lief.ELF.ParserConfig()
    config.parse_relocations = False
    config.parse_notes = False
    config.parse_overlay = False
    config.parse_symtab_symbols = False
    try:
        binary = lief.ELF.parse(data, config)
    except Exception as exc:  # noqa: BLE001 - LIEF's own failures become ours
        raise UnpackError(f"not a readable ELF file: LIEF failed: {exc}") from None
    if binary is None:
        raise UnpackError("not a readable ELF file: LIEF could not parse it")
    return binary


def _is_string_section(name: str) -> bool:
    return name in {".rodata", ".data.rel.ro"} or name.startswith((".rodata.", ".data.rel.ro."))


def _regions(layout: _Layout, size: int, errors: list[str]) -> list[tuple[str, int, int]]:
    """The ``(name, offset, length)`` file ranges to scan for strings."""
    regions: list[tuple[str, int, int]] = []
    sections = [s for s in layout.sections if s.type != _SHT_NULL]
    if any(s.name == ".text" or _is_string_section(s.name) for s in sections):
        for sec in sections:
            if not _is_string_section(sec.name) or sec.type == _SHT_NOBITS:
                continue
            if sec.offset + sec.size > size:
                errors.append(
                    f"section {sec.name} (offset {sec.offset}, {sec.size} bytes) lies past the "
                    f"end of the file ({size} bytes): skipped"
                )
                continue
            regions.append((sec.name, sec.offset, sec.size))
        return regions
    # No usable section headers: the loadable segments that are not executable.
    if sections:
        errors.append("section names unusable (no .text or .rodata): scanned the segments")
    for seg in layout.segments:
        if seg.type != _PT_LOAD or seg.flags & _PF_X:
            continue
        if seg.offset + seg.filesz > size:
            errors.append(
                f"PT_LOAD#{seg.index} (offset {seg.offset}, {seg.filesz} bytes) lies past the "
                f"end of the file ({size} bytes): skipped"
            )
            continue
        regions.append((f"PT_LOAD#{seg.index}", seg.offset, seg.filesz))
    return regions


def _dynstr_range(data: bytes, layout: _Layout) -> tuple[int, int] | None:
    """The file range of the dynamic string table, from ``DT_STRTAB`` and ``DT_STRSZ`` in
    ``PT_DYNAMIC``, mapped to a file offset through the ``PT_LOAD`` segments."""
    entry = struct.Struct(layout.endian + ("qQ" if layout.is64 else "iI"))
    address = length = None
    for seg in layout.segments:
        if seg.type != _PT_DYNAMIC:
            continue
        end = min(seg.offset + seg.filesz, len(data))
        for at in range(seg.offset, end - entry.size + 1, entry.size):
            tag, value = entry.unpack_from(data, at)
            if tag == _DT_NULL:
                break
            if tag == _DT_STRTAB:
                address = value
            elif tag == _DT_STRSZ:
                length = value
        break
    if address is None or length is None:
        return None
    for seg in layout.segments:
        if seg.type == _PT_LOAD and seg.vaddr <= address < seg.vaddr + seg.filesz:
            offset = seg.offset + address - seg.vaddr
            return offset, offset + length
    return None


def analyze_elf(
    data: bytes,
    *,
    string_filter: Callable[[str], bool],
    property_rules: Sequence[NativeRule],
    max_strings: int = MAX_STRINGS,
) -> NativeReport:
    """Read one ELF file (a library, an executable, an OAT file).

    ``string_filter`` chooses the strings worth keeping (URLs, host names...); strings that
    look like system property names (:func:`looks_like_property`) and match one of the
    ``property`` rules among ``property_rules`` are kept as well and also listed in
    ``properties`` (rules of other kinds are ignored). Strings are runs of at least
    :data:`MIN_STRING_CHARS` printable UTF-8 characters in ``.rodata``, ``.rodata.*`` and
    ``.data.rel.ro`` (never ``.dynstr``); in a file without usable section headers, in the
    ``PT_LOAD`` segments that are not executable, minus the dynamic string table.

    The ELF header and its tables are read here; LIEF reads the dynamic section and the
    dynamic symbols. Raises :class:`~fwscan.errors.UnpackError` when ``data`` is not an ELF
    file or LIEF cannot open it; a truncated or partly corrupt file gives a partial report
    whose ``errors`` say what was skipped.
    """
    errors: list[str] = []
    layout = _read_layout(data, errors)
    binary = _parse(data)
    size = len(data)
    for seg in layout.segments:
        if seg.type == _PT_DYNAMIC and seg.offset + seg.filesz > size:
            errors.append(
                f"PT_DYNAMIC (program header {seg.index}) lies past the end of the file "
                f"({size} bytes): libraries and symbols may be missing"
            )

    soname: str | None = None
    needed: list[str] = []
    for entry in binary.dynamic_entries:
        if isinstance(entry, lief.ELF.DynamicEntryLibrary):
            needed.append(_text(entry.name))
        elif isinstance(entry, lief.ELF.DynamicSharedObject) and soname is None:
            soname = _text(entry.name)
    imports = tuple(sorted({_text(f.name) for f in binary.imported_functions if f.name}))
    exports = tuple(sorted({_text(f.name) for f in binary.exported_functions if f.name}))
    jni = tuple(n for n in exports if n.startswith("Java_") or n in {"JNI_OnLoad", "JNI_OnUnload"})

    regions = _regions(layout, size, errors)
    scans_segments = bool(regions) and regions[0][0].startswith("PT_LOAD#")
    excluded = _dynstr_range(data, layout) if scans_segments else None
    is_property = _PropertyMatcher(property_rules)
    seen: set[int] = set()
    strings: list[ElfString] = []
    properties: list[ElfString] = []
    dropped = 0
    for name, offset, length in regions:
        for where, value in _iter_strings(data[offset : offset + length], offset):
            if where in seen or (excluded is not None and excluded[0] <= where < excluded[1]):
                continue
            seen.add(where)
            prop = is_property(value)
            if not (prop or string_filter(value)):
                continue
            if len(strings) >= max_strings:
                dropped += 1
                continue
            found = ElfString(value=value, section=name, offset=where)
            strings.append(found)
            if prop:
                properties.append(found)
    if dropped:
        errors.append(f"string limit reached: kept {max_strings}, dropped {dropped} more")
    strings.sort(key=lambda s: s.offset)
    properties.sort(key=lambda s: s.offset)
    return NativeReport(
        machine=_MACHINES.get(layout.e_machine, f"em_{layout.e_machine}"),
        elf_type=_ELF_TYPES.get(layout.e_type, f"et_{layout.e_type:#x}"),
        soname=soname,
        needed=tuple(needed),
        imports=imports,
        exports=exports,
        jni_exports=jni,
        strings=tuple(strings),
        properties=tuple(properties),
        errors=tuple(errors),
    )


# --- DEX inside OAT files -------------------------------------------------------------------

_DEX_MAGIC_RE = re.compile(rb"dex\n0[0-9]{2}\x00")
_CDEX_MAGIC = b"cdex"
_DEX_HEADER_SIZE = 0x70
_DEX_ENDIAN_TAG = 0x12345678


def _dex_size_at(data: bytes, offset: int) -> int | None:
    """The ``file_size`` of a plausible DEX header at ``offset``, or ``None``.

    Plausible: a ``header_size`` of 0x70 (0x78 for the version-41 container header), the
    little-endian ``endian_tag``, and a ``file_size`` at least as large as the header.
    """
    if offset < 0 or offset + _DEX_HEADER_SIZE > len(data):
        return None
    file_size, header_size, endian = struct.unpack_from("<III", data, offset + 32)
    if header_size not in (0x70, 0x78) or endian != _DEX_ENDIAN_TAG:
        return None
    if file_size < header_size:
        return None
    return int(file_size)


def find_embedded_dex(data: bytes, *, errors: list[str] | None = None) -> list[tuple[int, bytes]]:
    """Every DEX file inside ``data`` (an OAT/ODEX file), as ``(offset, bytes)`` in file order.

    A DEX is found by its magic ``dex\\n0NN\\0`` and a plausible header (see
    :func:`_dex_size_at`); its length is the header's ``file_size``. This does not need the
    OAT header to be understood, so it works for every OAT version (LIEF 1.0 fails on some
    Android 5.1 OAT files). A DEX whose ``file_size`` runs past the end of ``data`` is not
    returned (a note goes to ``errors``); the search resumes after each DEX found, so bytes
    inside one DEX are never taken for another. At most :data:`MAX_DEX_FILES` are returned.
    """
    found: list[tuple[int, bytes]] = []
    position = 0
    while True:
        match = _DEX_MAGIC_RE.search(data, position)
        if match is None:
            break
        offset = match.start()
        dex_size = _dex_size_at(data, offset)
        if dex_size is None:
            position = offset + 1
            continue
        if offset + dex_size > len(data):
            if errors is not None:
                errors.append(
                    f"DEX at offset {offset}: file_size {dex_size} runs past the end of the "
                    f"file ({len(data)} bytes): skipped"
                )
            position = offset + 1
            continue
        if len(found) >= MAX_DEX_FILES:
            if errors is not None:
                errors.append(f"DEX limit reached: kept the first {MAX_DEX_FILES}")
            break
        found.append((offset, data[offset : offset + dex_size]))
        position = offset + dex_size
    return found


# --- VDEX ------------------------------------------------------------------------------------


def _u32(data: bytes, offset: int) -> int:
    if offset < 0 or offset + 4 > len(data):
        raise UnpackError(f"VDEX truncated: 4 bytes at offset {offset} past the end")
    return int(struct.unpack_from("<I", data, offset)[0])


def _align4(value: int) -> int:
    return (value + 3) & ~3


def _take_dex(
    data: bytes, offset: int, end: int, errors: list[str], shared: tuple[int, int] | None
) -> tuple[bytes | None, int | None]:
    """The DEX file at ``offset``, which must end by ``end``, and the bytes it takes there.

    A CompactDex (``cdex``) is converted to a standard DEX (see :mod:`fwscan.analyze.cdex`);
    its data section must lie inside ``shared``, the file range of the VDEX's shared data
    section (``None``: the VDEX version has none). Returns ``(None, size)`` with a note when a
    CompactDex cannot be read but its size is known (the next DEX can still be found), and
    ``(None, None)`` with a note when the bytes there are not a whole DEX.
    """
    if data[offset : offset + 4] == _CDEX_MAGIC:
        return _take_compact_dex(data, offset, end, errors, shared)
    if _DEX_MAGIC_RE.match(data, offset) is None:
        errors.append(f"no DEX header at offset {offset}")
        return None, None
    dex_size = _dex_size_at(data, offset)
    if dex_size is None or offset + dex_size > end:
        errors.append(f"DEX at offset {offset}: bad header or size past the DEX section's end")
        return None, None
    return data[offset : offset + dex_size], dex_size


def _take_compact_dex(
    data: bytes, offset: int, end: int, errors: list[str], shared: tuple[int, int] | None
) -> tuple[bytes | None, int | None]:
    from fwscan.analyze.cdex import compact_to_standard, read_compact_header

    where = f"compact DEX (cdex) at offset {offset}"
    try:
        header = read_compact_header(memoryview(data)[offset:end])
    except UnpackError as exc:
        errors.append(f"{where}: {exc}: skipped")
        return None, None
    size = header.file_size
    if offset + size > end:
        errors.append(f"{where}: file_size {size} runs past the DEX section's end: skipped")
        return None, None
    if shared is None:
        errors.append(f"{where}: this VDEX version has no shared data section: skipped")
        return None, size
    start, stop = offset + header.data_off, offset + header.data_off + header.data_size
    if header.data_size and not (shared[0] <= start and stop <= shared[1]):
        errors.append(
            f"{where}: its data section ({header.data_size} bytes at {start}) lies outside the "
            f"shared data section ({shared[0]} to {shared[1]}): skipped"
        )
        return None, size
    if start % 4:
        errors.append(f"{where}: its data section at {start} is not 4-byte aligned: skipped")
        return None, size
    view = memoryview(data)
    try:
        dex = compact_to_standard(view[offset : offset + size], view[start:stop])
    except UnpackError as exc:
        errors.append(f"{where}: {exc}: skipped")
        return None, size
    return dex, size


def vdex_dex_files(data: bytes, *, errors: list[str] | None = None) -> list[bytes]:
    """The DEX files stored in a VDEX file (Android 8 to 14), in order.

    LIEF 1.0's ``lief.VDEX`` only knows the versions up to 011 (Android 8.x), so this reads
    the header itself, following AOSP ``art/runtime/vdex_file.h`` and ``vdex_file.cc``
    (``GetNextDexFileData``) of each release; all integers are little-endian ``uint32``:

    * 006 (Android 8.0) and 010 (8.1): ``"vdex"``, version[4], number_of_dex_files,
      dex_size, verifier_deps_size, quickening_info_size (24 bytes); then one checksum per DEX;
      then the DEX files back to back, ``dex_size`` bytes in all (010 aligns each to 4 bytes).
    * 019 (Android 9) and 021 (Android 10, 11): ``"vdex"``, verifier-deps version[4],
      dex-section version[4] (``"002"``: a DEX section follows; ``"000"``: none),
      number_of_dex_files, verifier_deps_size (20 bytes), plus bootclasspath_checksums_size and
      class_loader_context_size in 021 (28 bytes); one checksum per DEX; a DexSectionHeader of
      dex_size, dex_shared_data_size, quickening_info_size; then, for each DEX, a 4-byte
      quickening-table offset followed by the DEX, each aligned to 4 bytes (``dex_size`` bytes
      in all); then the shared data section of the CompactDex files, dex_shared_data_size bytes
      (``VdexFile::GetDexSectionSize``, ``OatWriter::WriteDexFiles``).
    * 027 (Android 12 to 14): ``"vdex"``, version[4], number_of_sections; then that many
      section headers (kind, offset, size): 0 checksums (so DEX count = size / 4), 1 the DEX
      files (back to back from the section's offset, each aligned to 4, then the 4-aligned
      shared data section, all inside the section's size), 2 verifier deps, 3 type lookup
      tables.

    A VDEX without a DEX section (common from Android 10 on, when the APK keeps its DEX
    uncompressed) gives ``[]``. The DEX files of 006 to 021 may be quickened. From Android 9 on,
    dex2oat writes CompactDex (``cdex001``) by default; each one's ``data_off`` (counted from
    its header) and ``data_size`` must lie inside the shared data section, and it is returned
    converted to a standard DEX (:func:`fwscan.analyze.cdex.compact_to_standard`, debug info
    dropped). A CompactDex that cannot be converted is skipped with a note, and the next DEX is
    still read. Problems inside the file are noted in ``errors``; a file that is not a VDEX of
    a known version, or whose header points past its end, raises
    :class:`~fwscan.errors.UnpackError`.
    """
    notes: list[str] = [] if errors is None else errors
    noted = len(notes)
    if len(data) < 12 or data[:4] != b"vdex":
        raise UnpackError("not a VDEX file: bad magic or too short")
    version = data[4:8]
    out: list[bytes] = []

    def take_all(cursor: int, end: int, skip: int, shared: tuple[int, int] | None) -> None:
        """The DEX files from ``cursor`` (each after ``skip`` bytes) until ``end``, at most
        ``count``; each starts on a 4-byte boundary, except in 006."""
        seen = 0
        while seen < min(count, MAX_DEX_FILES) and cursor + skip < end:
            dex, size = _take_dex(data, cursor + skip, end, notes, shared)
            if size is None:
                break
            seen += 1
            if dex is not None:
                out.append(dex)
            cursor += skip + size
            if version != b"006\x00":
                cursor = _align4(cursor)

    if version in (b"006\x00", b"010\x00"):
        count, dex_size = _u32(data, 8), _u32(data, 12)
        start = 24 + 4 * count
        end = start + dex_size
        if dex_size == 0:
            return []
        if end > len(data):
            notes.append(f"VDEX DEX section ({dex_size} bytes at {start}) runs past the end")
            end = len(data)
        take_all(start, end, 0, None)
    elif version in (b"019\x00", b"021\x00"):
        dex_section_version = data[8:12]
        count = _u32(data, 12)
        if dex_section_version == b"000\x00":
            return []
        if dex_section_version != b"002\x00":
            raise UnpackError(f"VDEX: unknown DEX section version {dex_section_version!r}")
        header_size = 20 if version == b"019\x00" else 28
        section = header_size + 4 * count
        dex_size, shared_size = _u32(data, section), _u32(data, section + 4)
        start = section + 12
        end = start + dex_size
        if end > len(data):
            notes.append(f"VDEX DEX section ({dex_size} bytes at {start}) runs past the end")
            end = len(data)
        shared = (end, min(end + shared_size, len(data)))
        take_all(start, end, 4, shared)  # skip each DEX's quickening-table offset
    elif version == b"027\x00":
        sections = _u32(data, 8)
        if sections < 2:
            return []
        checksum_size = _u32(data, 12 + 8)
        dex_offset, dex_size = _u32(data, 24 + 4), _u32(data, 24 + 8)
        count = checksum_size // 4
        if dex_size == 0 or count == 0:
            return []
        end = dex_offset + dex_size
        if end > len(data):
            notes.append(f"VDEX DEX section ({dex_size} bytes at {dex_offset}) runs past the end")
            end = len(data)
        take_all(dex_offset, end, 0, (dex_offset, end))  # the shared data ends the section
    else:
        raise UnpackError(f"VDEX version {version!r} is not supported (006, 010, 019, 021, 027)")
    if len(out) < count and len(notes) == noted:
        notes.append(f"VDEX lists {count} DEX files, {len(out)} found")
    return out

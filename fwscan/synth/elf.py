"""Small, valid ELF shared libraries and executables for synthesized Android firmware.

The files follow the System V ABI / ``elf.h``: ELF64 for AArch64 and ELF32 (EABI5, soft-float
calling convention) for ARM, little-endian, always ``ET_DYN`` (Android executables are
position independent, so ``exec`` gives a PIE with ``PT_INTERP`` set to Android's linker and
``DF_1_PIE``). The layout is the one ``lld`` uses, in three ``PT_LOAD`` segments:

* read-only: ELF header, program headers, ``.interp`` (executables), ``.dynsym``,
  ``.dynstr``, ``.hash``, ``.rodata`` (the given strings, each NUL-terminated);
* read + execute: ``.text``, one return instruction per export (an ``exit(0)`` system call
  at the entry point of executables);
* read + write: ``.dynamic`` (``DT_NEEDED``, ``DT_SONAME``, ``DT_HASH``, ``DT_STRTAB``,
  ``DT_SYMTAB``, ``DT_STRSZ``, ``DT_SYMENT``, ...),

plus ``PT_PHDR``, ``PT_DYNAMIC`` and ``PT_GNU_STACK``, and a section header table with
``.shstrtab``. Imported symbols are undefined ``FUNC GLOBAL`` symbols; exports are defined
``FUNC GLOBAL`` symbols in ``.text``. Nothing is relocated, so there is no relocation table.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from fwscan.errors import ManifestError

__all__ = ["MACHINES", "build_elf", "elf_hash"]

MACHINES = ("aarch64", "arm")
"""The ``machine`` values :func:`build_elf` accepts."""

KINDS = ("shared", "exec")
"""The ``kind`` values :func:`build_elf` accepts."""

# elf.h constants.
_ET_DYN = 3
_EM_ARM = 40
_EM_AARCH64 = 183
_EF_ARM_EABI_VER5 = 0x05000000
_EF_ARM_ABI_FLOAT_SOFT = 0x00000200
_PT_LOAD = 1
_PT_DYNAMIC = 2
_PT_INTERP = 3
_PT_PHDR = 6
_PT_GNU_STACK = 0x6474E551
_PF_X, _PF_W, _PF_R = 1, 2, 4
_SHT_PROGBITS = 1
_SHT_STRTAB = 3
_SHT_HASH = 5
_SHT_DYNAMIC = 6
_SHT_DYNSYM = 11
_SHF_WRITE, _SHF_ALLOC, _SHF_EXECINSTR = 1, 2, 4
_STB_GLOBAL = 1
_STT_FUNC = 2
_DT_NULL = 0
_DT_NEEDED = 1
_DT_HASH = 4
_DT_STRTAB = 5
_DT_SYMTAB = 6
_DT_STRSZ = 10
_DT_SYMENT = 11
_DT_SONAME = 14
_DT_DEBUG = 21
_DT_FLAGS_1 = 0x6FFFFFFB
_DF_1_PIE = 0x08000000


@dataclass(frozen=True)
class _Arch:
    is64: bool
    machine: int
    flags: int
    page: int
    interp: bytes
    ret: bytes
    exit0: bytes

    @property
    def word(self) -> int:
        return 8 if self.is64 else 4


_ARCHES = {
    "aarch64": _Arch(
        is64=True,
        machine=_EM_AARCH64,
        flags=0,
        page=0x4000,  # 16 KiB, as current NDKs link for arm64
        interp=b"/system/bin/linker64",
        ret=struct.pack("<I", 0xD65F03C0),  # ret
        # mov x0, #0 ; mov x8, #93 (exit) ; svc #0
        exit0=struct.pack("<III", 0xD2800000, 0xD2800BA8, 0xD4000001),
    ),
    "arm": _Arch(
        is64=False,
        machine=_EM_ARM,
        flags=_EF_ARM_EABI_VER5 | _EF_ARM_ABI_FLOAT_SOFT,
        page=0x1000,
        interp=b"/system/bin/linker",
        ret=struct.pack("<I", 0xE12FFF1E),  # bx lr
        # mov r0, #0 ; mov r7, #1 (exit) ; svc #0
        exit0=struct.pack("<III", 0xE3A00000, 0xE3A07001, 0xEF000000),
    ),
}


def elf_hash(name: bytes) -> int:
    """The System V ABI hash of a symbol name, as stored in ``.hash``."""
    h = 0
    for byte in name:
        h = (h << 4) + byte
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


class _StrTab:
    """A string table that starts with the empty string and stores each string once."""

    def __init__(self) -> None:
        self.data = bytearray(b"\x00")
        self._index: dict[bytes, int] = {b"": 0}

    def add(self, text: bytes) -> int:
        found = self._index.get(text)
        if found is None:
            found = len(self.data)
            self.data += text + b"\x00"
            self._index[text] = found
        return found


@dataclass
class _Section:
    name: str
    type: int
    flags: int
    data: bytes
    align: int
    entsize: int = 0
    link: str | None = None
    info: int = 0
    offset: int = 0
    addr: int = 0


def _names(where: str, values: Sequence[str]) -> list[bytes]:
    if isinstance(values, str):
        raise ManifestError(f"{where}: expected a list of names, not one string")
    out: list[bytes] = []
    for i, value in enumerate(values):
        out.append(_name(f"{where}[{i}]", value))
    if len(set(out)) != len(out):
        raise ManifestError(f"{where}: names are not unique")
    return out


def _name(where: str, value: object) -> bytes:
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}: expected a non-empty name")
    if "\x00" in value:
        raise ManifestError(f"{where}: {value!r} contains a NUL character")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise ManifestError(f"{where}: {value!r} is not encodable as UTF-8") from None


def _align(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def build_elf(
    *,
    machine: str,
    kind: str,
    soname: str | None,
    needed: Sequence[str] = (),
    imports: Sequence[str] = (),
    exports: Sequence[str] = (),
    rodata_strings: Sequence[str] = (),
) -> bytes:
    """A minimal but valid ELF file: ``machine`` ``"aarch64"`` or ``"arm"``, ``kind``
    ``"shared"`` (a library) or ``"exec"`` (a PIE executable).

    ``soname`` becomes ``DT_SONAME``; ``needed`` the ``DT_NEEDED`` entries in order;
    ``imports`` undefined and ``exports`` defined (in ``.text``) global function symbols in
    ``.dynsym``; ``rodata_strings`` the NUL-terminated content of ``.rodata``. Raises
    :class:`~fwscan.errors.ManifestError` for an unknown machine or kind, an empty, duplicate
    or NUL-containing name, or a symbol both imported and exported. The output is deterministic.
    """
    arch = _ARCHES.get(machine) if isinstance(machine, str) else None
    if arch is None:
        raise ManifestError(f"machine: {machine!r} is not one of {MACHINES}")
    if kind not in KINDS:
        raise ManifestError(f"kind: {kind!r} is not one of {KINDS}")
    is_exec = kind == "exec"
    soname_b = None if soname is None else _name("soname", soname)
    needed_b = _names("needed", needed)
    imports_b = _names("imports", imports)
    exports_b = _names("exports", exports)
    if set(imports_b) & set(exports_b):
        raise ManifestError("imports, exports: a symbol cannot be both imported and exported")
    if isinstance(rodata_strings, str):
        raise ManifestError("rodata_strings: expected a list of strings, not one string")
    rodata = bytearray()
    for i, string in enumerate(rodata_strings):
        if not isinstance(string, str) or "\x00" in string:
            raise ManifestError(f"rodata_strings[{i}]: expected text without NUL characters")
        try:
            rodata += string.encode("utf-8") + b"\x00"
        except UnicodeEncodeError:
            raise ManifestError(f"rodata_strings[{i}]: not encodable as UTF-8") from None

    w = arch.word
    ehsize, phentsize, shentsize = (64, 56, 64) if arch.is64 else (52, 32, 40)
    symsize, dynsize = (24, 16) if arch.is64 else (16, 8)

    # .text: the entry point of an executable, then one return per export.
    text = bytearray(arch.exit0 if is_exec else b"")
    export_offsets = []
    for _ in exports_b:
        export_offsets.append(len(text))
        text += arch.ret
    if not text:
        text += arch.ret

    dynstr = _StrTab()
    soname_off = None if soname_b is None else dynstr.add(soname_b)
    needed_offs = [dynstr.add(name) for name in needed_b]
    symbols: list[tuple[bytes, int | None]] = [(name, None) for name in imports_b]
    symbols += list(zip(exports_b, export_offsets, strict=True))
    sym_names = [dynstr.add(name) for name, _ in symbols]

    nsyms = len(symbols) + 1
    nbucket = max(1, nsyms // 2)
    buckets = [0] * nbucket
    chains = [0] * nsyms
    for index, (name, _) in enumerate(symbols, start=1):
        slot = elf_hash(name) % nbucket
        chains[index] = buckets[slot]
        buckets[slot] = index
    hash_data = struct.pack(f"<{2 + nbucket + nsyms}I", nbucket, nsyms, *buckets, *chains)

    num_phdrs = 7 if is_exec else 6
    sections: list[_Section] = []
    if is_exec:
        sections.append(_Section(".interp", _SHT_PROGBITS, _SHF_ALLOC, arch.interp + b"\x00", 1))
    dynsym = _Section(".dynsym", _SHT_DYNSYM, _SHF_ALLOC, b"", w, symsize, link=".dynstr", info=1)
    sections.append(dynsym)
    sections.append(_Section(".dynstr", _SHT_STRTAB, _SHF_ALLOC, bytes(dynstr.data), 1))
    hash_sec = _Section(".hash", _SHT_HASH, _SHF_ALLOC, hash_data, w, 4, link=".dynsym")
    sections.append(hash_sec)
    if rodata:
        sections.append(_Section(".rodata", _SHT_PROGBITS, _SHF_ALLOC, bytes(rodata), 1))
    text_sec = _Section(".text", _SHT_PROGBITS, _SHF_ALLOC | _SHF_EXECINSTR, bytes(text), 4)
    dynamic = _Section(
        ".dynamic", _SHT_DYNAMIC, _SHF_ALLOC | _SHF_WRITE, b"", w, dynsize, link=".dynstr"
    )
    sections += [text_sec, dynamic]

    # Number of .dynamic entries, so every size is known before addresses are assigned.
    num_dyn = len(needed_b) + (soname_b is not None) + 5 + (2 if is_exec else 0) + 1
    dynsym.data = b"\x00" * (symsize * nsyms)
    dynamic.data = b"\x00" * (dynsize * num_dyn)

    # Assign offsets and addresses; a new segment starts at .text and at .dynamic, on a new
    # page in memory with the same offset modulo the page size.
    offset = ehsize + phentsize * num_phdrs
    delta = 0
    end_addr = offset
    for sec in sections:
        offset = _align(offset, sec.align)
        if sec is text_sec or sec is dynamic:
            start = _align(end_addr, arch.page) + offset % arch.page
            delta = start - offset
        sec.offset = offset
        sec.addr = offset + delta
        offset += len(sec.data)
        end_addr = offset + delta

    # Now the contents that hold addresses.
    sec_index = {sec.name: i for i, sec in enumerate(sections, start=1)}
    syms = bytearray(b"\x00" * symsize)
    info = (_STB_GLOBAL << 4) | _STT_FUNC
    for name_off, (_, text_off) in zip(sym_names, symbols, strict=True):
        if text_off is None:  # imported: undefined
            value, size, shndx = 0, 0, 0
        else:
            value, size, shndx = text_sec.addr + text_off, len(arch.ret), sec_index[".text"]
        if arch.is64:
            syms += struct.pack("<IBBHQQ", name_off, info, 0, shndx, value, size)
        else:
            syms += struct.pack("<IIIBBH", name_off, value, size, info, 0, shndx)
    dynsym.data = bytes(syms)

    dyn_entries = [(_DT_NEEDED, off) for off in needed_offs]
    if soname_off is not None:
        dyn_entries.append((_DT_SONAME, soname_off))
    dynstr_sec = sections[sec_index[".dynstr"] - 1]
    dyn_entries += [
        (_DT_HASH, hash_sec.addr),
        (_DT_STRTAB, dynstr_sec.addr),
        (_DT_SYMTAB, dynsym.addr),
        (_DT_STRSZ, len(dynstr_sec.data)),
        (_DT_SYMENT, symsize),
    ]
    if is_exec:
        dyn_entries += [(_DT_DEBUG, 0), (_DT_FLAGS_1, _DF_1_PIE)]
    dyn_entries.append((_DT_NULL, 0))
    assert len(dyn_entries) == num_dyn
    dyn_fmt = "<qQ" if arch.is64 else "<iI"
    dynamic.data = b"".join(struct.pack(dyn_fmt, tag, val) for tag, val in dyn_entries)

    # .shstrtab and the section header table.
    shstrtab = _StrTab()
    name_offs = [shstrtab.add(sec.name.encode()) for sec in sections]
    shstrtab_name = shstrtab.add(b".shstrtab")
    shstrtab_off = offset
    offset += len(shstrtab.data)
    shoff = _align(offset, w)

    # Program headers: (type, flags, offset, vaddr, filesz, memsz, align).
    ro_end = sections[sections.index(text_sec) - 1]  # last section of the read-only segment
    phdrs = [(_PT_PHDR, _PF_R, ehsize, ehsize, phentsize * num_phdrs, phentsize * num_phdrs, w)]
    if is_exec:
        interp = sections[0]
        phdrs.append(
            (_PT_INTERP, _PF_R, interp.offset, interp.addr, len(interp.data), len(interp.data), 1)
        )
    ro_size = ro_end.offset + len(ro_end.data)
    phdrs += [
        (_PT_LOAD, _PF_R, 0, 0, ro_size, ro_size, arch.page),
        (
            _PT_LOAD,
            _PF_R | _PF_X,
            text_sec.offset,
            text_sec.addr,
            len(text_sec.data),
            len(text_sec.data),
            arch.page,
        ),
        (
            _PT_LOAD,
            _PF_R | _PF_W,
            dynamic.offset,
            dynamic.addr,
            len(dynamic.data),
            len(dynamic.data),
            arch.page,
        ),
        (
            _PT_DYNAMIC,
            _PF_R | _PF_W,
            dynamic.offset,
            dynamic.addr,
            len(dynamic.data),
            len(dynamic.data),
            w,
        ),
        (_PT_GNU_STACK, _PF_R | _PF_W, 0, 0, 0, 0, 0),
    ]
    assert len(phdrs) == num_phdrs

    out = bytearray()
    entry = text_sec.addr if is_exec else 0
    ident = b"\x7fELF" + bytes([2 if arch.is64 else 1, 1, 1, 0, 0]) + b"\x00" * 7
    shnum = len(sections) + 2  # null section and .shstrtab
    header_fmt = "<16sHHIQQQIHHHHHH" if arch.is64 else "<16sHHIIIIIHHHHHH"
    out += struct.pack(
        header_fmt,
        ident,
        _ET_DYN,
        arch.machine,
        1,  # EV_CURRENT
        entry,
        ehsize,
        shoff,
        arch.flags,
        ehsize,
        phentsize,
        len(phdrs),
        shentsize,
        shnum,
        shnum - 1,  # .shstrtab is last
    )
    for p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz, p_align in phdrs:
        if arch.is64:
            out += struct.pack(
                "<IIQQQQQQ", p_type, p_flags, p_offset, p_vaddr, p_vaddr, p_filesz, p_memsz, p_align
            )
        else:
            out += struct.pack(
                "<IIIIIIII", p_type, p_offset, p_vaddr, p_vaddr, p_filesz, p_memsz, p_flags, p_align
            )
    for sec in sections:
        out += b"\x00" * (sec.offset - len(out))
        out += sec.data
    out += shstrtab.data
    out += b"\x00" * (shoff - len(out))

    shdr_fmt = "<IIQQQQIIQQ" if arch.is64 else "<IIIIIIIIII"
    out += b"\x00" * shentsize
    for name_off, sec in zip(name_offs, sections, strict=True):
        link = 0 if sec.link is None else sec_index[sec.link]
        out += struct.pack(
            shdr_fmt,
            name_off,
            sec.type,
            sec.flags,
            sec.addr,
            sec.offset,
            len(sec.data),
            link,
            sec.info,
            sec.align,
            sec.entsize,
        )
    out += struct.pack(
        shdr_fmt, shstrtab_name, _SHT_STRTAB, 0, 0, shstrtab_off, len(shstrtab.data), 0, 0, 1, 0
    )
    return bytes(out)

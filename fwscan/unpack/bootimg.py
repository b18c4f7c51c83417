"""Android boot images and their ramdisks, read as cpio "newc" filesystems.

Formats, as AOSP's ``system/tools/mkbootimg/include/bootimg/bootimg.h`` defines them (all
little-endian):

* ``ANDROID!`` boot images (boot, recovery, init_boot). Header versions 0-2 have a page size in
  the header; the header takes one page, then come the kernel, the ramdisk, the second-stage
  loader, (v1+) the recovery DTBO/ACPIO and (v2) the DTB, each starting on a page boundary.
  Versions 3 and 4 fix the page size at 4096: header, kernel, ramdisk, (v4) boot signature.
  Before header versions existed, some vendors stored a device-tree size in the same field;
  a value above 4 is read that way (a ``dt`` section after the second stage).
* ``VNDRBOOT`` vendor boot images, v3 and v4: header pages, the vendor ramdisk section, the DTB,
  (v4) the vendor ramdisk table and the bootconfig section. A v4 table lists several ramdisks
  (size, offset in the section, type, name, board id); each is one child.

:class:`BootImageContainer` yields each ramdisk, decompressed (gzip, lz4 legacy as made by
``lz4 -l`` and the kernel's build, lz4 frame, xz, legacy lzma, bzip2, zstd) into the work
directory, or read in place when it is stored uncompressed. The other sections (kernel, second
stage, DTBs, signature, bootconfig) are listed as skipped children so the coverage names them.
Ramdisk children carry no partition name: they take the boot image's own (``boot``,
``recovery``, ``init_boot``, ``vendor_boot``), so a ramdisk file is listed as ``init.rc`` of
partition ``boot``. When a v4 vendor boot image holds several ramdisks, each is the partition
``vendor_boot:<name>`` (``vendor_boot:<index>`` for an unnamed one) so their files stay apart.

:class:`CpioFileSystem` lists a cpio archive in the "newc" format (``070701``, and ``070702``
whose per-file checksum is not verified) as a read-only
:class:`~fwscan.unpack.base.FileSystem`: the walk detects decompressed ramdisks with
:func:`probe_cpio`. Several archives in a row (separated by zero padding) are read as one tree,
later entries replacing earlier ones as the kernel does when it unpacks an initramfs. Missing
parent directories are implied. Hard links (``nlink`` > 1, the data stored with the last link)
share their data.

Hostile input: header fields are checked against the image size, page sizes must be powers of
two from 2 KiB to 128 KiB, the vendor ramdisk table is bounded in size and entry count, and each
section past the end of the image becomes a child with an error while the others still come
out. cpio names are limited to 4096 bytes, names with ``..`` are refused (recorded in
``errors`` and skipped), leading slashes dropped, directory depth is bounded by
``Limits.max_depth``, entries by ``Limits.max_files``, file sizes by the archive size and
``Limits.max_file_size``; symlink targets are recorded and never followed. Nothing is written
to the host from a cpio archive.

Limitations: the old binary and ``odc`` (``070707``) cpio formats are not read; kernels, DTBs
and boot signatures are not analysed; AVB footers are not checked; bootconfig is not parsed.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from fwscan.errors import LimitError, UnpackError
from fwscan.limits import DEFAULT_LIMITS, Limits
from fwscan.safepath import clean_relpath
from fwscan.unpack.archive import HEAD_SIZE, extract_to_workdir, stream_format
from fwscan.unpack.base import Child, EntryType, FsEntry, UnpackContext, Window

BOOT_MAGIC = b"ANDROID!"
VENDOR_BOOT_MAGIC = b"VNDRBOOT"
PAGE_SIZES = frozenset(1 << k for k in range(11, 18))
"""Page sizes accepted in v0-v2 and vendor boot headers: 2 KiB to 128 KiB."""
V3_PAGE_SIZE = 4096
MAX_VENDOR_RAMDISKS = 256
"""Entries accepted in a v4 vendor ramdisk table."""

_V0 = struct.Struct("<8s10I16s512s32s1024s")
_V1 = struct.Struct("<IQI")  # recovery_dtbo_size, recovery_dtbo_offset, header_size
_V2 = struct.Struct("<IQ")  # dtb_size, dtb_addr
_V3 = struct.Struct("<8s4I4II1536s")
_V4 = struct.Struct("<I")  # signature_size
_VENDOR_V3 = struct.Struct("<8s5I2048sI16sIIQ")
_VENDOR_V4 = struct.Struct("<4I")
_VENDOR_ENTRY = struct.Struct("<3I32s64s")
_VENDOR_RAMDISK_TYPES = {0: "none", 1: "platform", 2: "recovery", 3: "dlkm"}
_LZMA_ALONE = b"\x5d\x00\x00"

CPIO_MAGICS = (b"070701", b"070702")
CPIO_TRAILER = "TRAILER!!!"
CPIO_HEADER_SIZE = 110
MAX_CPIO_NAME = 4096
MAX_LINK_TARGET = 4096
_HEX = frozenset(b"0123456789abcdefABCDEF")


# -- boot image headers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One part of a boot image: where it lies in the image, and how long it is."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class Ramdisk:
    """One ramdisk of a boot image (a vendor boot v4 image may hold several)."""

    name: str
    """The table entry's name (empty for the only ramdisk of other images)."""
    offset: int
    size: int
    type: str = "none"
    """The vendor ramdisk type: ``none``, ``platform``, ``recovery``, ``dlkm`` or a number."""


@dataclass(frozen=True)
class BootImage:
    """A parsed boot or vendor boot header."""

    kind: str
    """``boot`` (``ANDROID!``) or ``vendor_boot`` (``VNDRBOOT``)."""
    header_version: int
    page_size: int
    os_version: int
    """Packed OS version and patch level (0 for vendor boot images, which have none)."""
    cmdline: str
    sections: tuple[Section, ...]
    """The parts that are not ramdisks, in image order."""
    ramdisks: tuple[Ramdisk, ...]

    @property
    def os_release(self) -> str:
        """The OS version ``A.B.C`` of the header, or empty."""
        ver = self.os_version >> 11
        if not ver:
            return ""
        return f"{ver >> 14 & 0x7F}.{ver >> 7 & 0x7F}.{ver & 0x7F}"

    @property
    def patch_level(self) -> str:
        """The security patch level ``YYYY-MM`` of the header, or empty."""
        lvl = self.os_version & 0x7FF
        if not lvl:
            return ""
        return f"{2000 + (lvl >> 4)}-{lvl & 0xF:02d}"


def _pages(size: int, page: int) -> int:
    return -(-size // page) * page


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _check_page_size(page: int) -> None:
    if page not in PAGE_SIZES:
        raise UnpackError(f"page size {page}: not a power of two from 2048 to 131072")


def _layout(start: int, page: int, parts: list[tuple[str, int]]) -> list[Section]:
    sections = []
    pos = start
    for name, size in parts:
        sections.append(Section(name, pos, size))
        pos += _pages(size, page)
    return sections


def _read_header(window: Window, size: int) -> bytes:
    raw = window.read_head(size)
    if len(raw) < size:
        raise UnpackError(f"boot image header truncated ({len(raw)} of {size} bytes)")
    return raw


def parse_boot_image(window: Window) -> BootImage:
    """The header of the boot or vendor boot image in ``window``.

    Raises :class:`UnpackError` for a bad magic, a truncated header, a bad page size or a bad
    vendor ramdisk table. Section sizes are not checked against the image here: see
    :meth:`BootImageContainer.expand`.
    """
    head = window.read_head(8)
    if head == BOOT_MAGIC:
        return _parse_boot(window)
    if head == VENDOR_BOOT_MAGIC:
        return _parse_vendor_boot(window)
    raise UnpackError("not an Android boot image (no ANDROID! or VNDRBOOT magic)")


def _parse_boot(window: Window) -> BootImage:
    raw = _read_header(window, 44)
    version = struct.unpack_from("<I", raw, 40)[0]
    if version in (3, 4):
        raw = _read_header(window, _V3.size + (_V4.size if version == 4 else 0))
        _m, kernel, ramdisk, os_version, _hsize, *_reserved, _ver, cmdline = _V3.unpack_from(raw)
        parts = [("kernel", kernel), ("ramdisk", ramdisk)]
        if version == 4:
            parts.append(("signature", _V4.unpack_from(raw, _V3.size)[0]))
        sections = _layout(V3_PAGE_SIZE, V3_PAGE_SIZE, parts)
        return _boot_image("boot", version, V3_PAGE_SIZE, os_version, _text(cmdline), sections)
    size = _V0.size + (_V1.size if version >= 1 else 0) + (_V2.size if version == 2 else 0)
    if version > 4:  # a pre-versioning header whose field holds a device-tree size
        size = _V0.size
    raw = _read_header(window, size)
    fields = _V0.unpack_from(raw)
    kernel, _ka, ramdisk, _ra, second, _sa, _ta, page, _ver, os_version = fields[1:11]
    cmdline = _text(fields[12]) + _text(fields[14])
    _check_page_size(page)
    parts = [("kernel", kernel), ("ramdisk", ramdisk), ("second", second)]
    if version > 4:
        parts.append(("dt", version))
    if 1 <= version <= 2:
        parts.append(("recovery_dtbo", _V1.unpack_from(raw, _V0.size)[0]))
    if version == 2:
        parts.append(("dtb", _V2.unpack_from(raw, _V0.size + _V1.size)[0]))
    sections = _layout(page, page, parts)
    version = version if version <= 2 else 0
    return _boot_image("boot", version, page, os_version, cmdline, sections)


def _boot_image(
    kind: str, version: int, page: int, os_version: int, cmdline: str, sections: list[Section]
) -> BootImage:
    ramdisks = tuple(Ramdisk("", s.offset, s.size) for s in sections if s.name == "ramdisk")
    others = tuple(s for s in sections if s.name != "ramdisk")
    return BootImage(kind, version, page, os_version, cmdline, others, ramdisks)


def _parse_vendor_boot(window: Window) -> BootImage:
    raw = _read_header(window, 16)
    version, page = struct.unpack_from("<II", raw, 8)
    if version not in (3, 4):
        raise UnpackError(f"vendor boot header version {version}: only 3 and 4 exist")
    _check_page_size(page)
    raw = _read_header(window, _VENDOR_V3.size + (_VENDOR_V4.size if version == 4 else 0))
    fields = _VENDOR_V3.unpack_from(raw)
    ramdisk_size, cmdline, dtb_size = fields[5], _text(fields[6]), fields[10]
    table_size = entries = entry_size = bootconfig = 0
    if version == 4:
        table_size, entries, entry_size, bootconfig = _VENDOR_V4.unpack_from(raw, _VENDOR_V3.size)
    start = _pages(_VENDOR_V3.size + (_VENDOR_V4.size if version == 4 else 0), page)
    parts = [("vendor_ramdisk", ramdisk_size), ("dtb", dtb_size)]
    if version == 4:
        parts += [("vendor_ramdisk_table", table_size), ("bootconfig", bootconfig)]
    sections = _layout(start, page, parts)
    section = sections[0]
    if version == 3:
        ramdisks: tuple[Ramdisk, ...] = (Ramdisk("", section.offset, section.size),)
    else:
        ramdisks = _ramdisk_table(window, sections[2], entries, entry_size, section)
    others = tuple(s for s in sections if s.name not in ("vendor_ramdisk", "vendor_ramdisk_table"))
    return BootImage("vendor_boot", version, page, 0, cmdline, others, ramdisks)


def _ramdisk_table(
    window: Window, table: Section, entries: int, entry_size: int, section: Section
) -> tuple[Ramdisk, ...]:
    if entries > MAX_VENDOR_RAMDISKS:
        raise UnpackError(f"vendor ramdisk table with {entries} entries")
    if entries and entry_size < _VENDOR_ENTRY.size:
        raise UnpackError(f"vendor ramdisk table entries of {entry_size} bytes are too short")
    if entries * entry_size > table.size:
        raise UnpackError("vendor ramdisk table entries overflow the table")
    if table.offset + table.size > window.size():
        raise UnpackError("vendor ramdisk table past the end of the image")
    with window.open() as f:
        f.seek(table.offset)
        raw = f.read(entries * entry_size)
    ramdisks = []
    for i in range(entries):
        size, offset, kind, name, _board = _VENDOR_ENTRY.unpack_from(raw, i * entry_size)
        if offset + size > section.size:
            raise UnpackError(f"vendor ramdisk {i} lies outside the vendor ramdisk section")
        rtype = _VENDOR_RAMDISK_TYPES.get(kind, str(kind))
        ramdisks.append(Ramdisk(_text(name), section.offset + offset, size, rtype))
    return tuple(ramdisks)


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:64]


class BootImageContainer:
    """Boot (``ANDROID!``, v0-v4) and vendor boot (``VNDRBOOT``, v3-v4) images."""

    name = "bootimg"

    def probe(self, window: Window, head: bytes) -> bool:
        """The ``ANDROID!`` or ``VNDRBOOT`` magic."""
        return head.startswith((BOOT_MAGIC, VENDOR_BOOT_MAGIC))

    def expand(self, window: Window, ctx: UnpackContext) -> Iterator[Child]:
        """The ramdisks (decompressed) and, skipped, the other sections, in image order."""
        img = parse_boot_image(window)
        total = window.size()
        named = len(img.ramdisks) > 1
        items: list[tuple[int, Section | Ramdisk, int]] = [
            (s.offset, s, 0) for s in img.sections if s.size
        ]
        items += [(r.offset, r, i) for i, r in enumerate(img.ramdisks)]
        for _offset, item, index in sorted(items, key=lambda t: (t[0], isinstance(t[1], Section))):
            if isinstance(item, Section):
                if item.offset + item.size > total:
                    yield Child(item.name, None, error=_past_end(item.name, item, total))
                else:
                    yield Child(item.name, None, skipped=f"{item.size} bytes, not unpacked")
                continue
            label = "ramdisk"
            partition = None
            if named:
                tag = _safe_name(item.name) or str(index)
                label, partition = f"ramdisk:{tag}", f"vendor_boot:{tag}"
            yield from self._ramdisk(window, item, label, partition, total, ctx)

    def _ramdisk(
        self,
        window: Window,
        rd: Ramdisk,
        label: str,
        partition: str | None,
        total: int,
        ctx: UnpackContext,
    ) -> Iterator[Child]:
        if rd.size == 0:
            yield Child(label, None, partition=partition, skipped="empty ramdisk")
            return
        if rd.offset + rd.size > total:
            err = _past_end(label, rd, total)
            yield Child(label, None, partition=partition, error=err, format="ramdisk")
            return
        inner = Window(window.path, window.offset + rd.offset, rd.size)
        head = inner.read_head(HEAD_SIZE)
        fmt = stream_format(head) or ("lzma" if head.startswith(_LZMA_ALONE) else None)
        if fmt is None:  # stored uncompressed (cpio) or unknown: the walk decides
            yield Child(label, inner, partition=partition)
            return
        try:
            with inner.open() as src:
                out = extract_to_workdir(src, ctx, label, f"{label} ({fmt})", fmt=fmt)
        except UnpackError as exc:
            yield Child(label, None, partition=partition, error=exc, format="ramdisk")
            return
        try:
            yield Child(label, Window(out), partition=partition)
        finally:
            out.unlink(missing_ok=True)


def _past_end(name: str, part: Section | Ramdisk, total: int) -> UnpackError:
    return UnpackError(
        f"{name}: {part.size} bytes at {part.offset} run past the end of the "
        f"{total}-byte image (truncated or bad header)"
    )


# -- cpio newc ------------------------------------------------------------------------------


def probe_cpio(head: bytes) -> bool:
    """A cpio "newc" header (``070701`` or ``070702`` and 13 hexadecimal fields)."""
    return (
        len(head) >= CPIO_HEADER_SIZE
        and head[:6] in CPIO_MAGICS
        and all(b in _HEX for b in head[6:CPIO_HEADER_SIZE])
    )


@dataclass
class _Member:
    path: str
    type: EntryType
    mode: int
    uid: int
    gid: int
    ino: int
    size: int
    data: int
    """Offset of the data in the window."""
    link_target: str | None = None


def _align4(n: int) -> int:
    return (n + 3) & ~3


class CpioFileSystem:
    """A cpio newc archive (an Android ramdisk) seen as a read-only filesystem.

    The archive is indexed when opened (headers only; data is read by :meth:`iter_content`).
    Raises :class:`UnpackError` when the first header is not cpio newc; later damage is recorded
    in :attr:`errors` and the entries before it are still listed.
    """

    errors: list[UnpackError]
    """Entries refused (``..`` names, too deep, bad links) and damage found while indexing."""

    def __init__(self, window: Window, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._base = window.offset
        self._length = window.size()
        self._members: dict[str, _Member] = {}
        self._index_errors: list[UnpackError] = []
        self.errors = []
        self._fd = os.open(window.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            self._index()
        except BaseException:
            self.close()
            raise
        self.errors = list(self._index_errors)

    # -- public API ---------------------------------------------------------------------------

    def walk(self) -> Iterator[FsEntry]:
        """Every entry, parents before children, siblings sorted by name bytes."""
        self.errors = list(self._index_errors)
        entries: dict[str, FsEntry] = {}
        children: dict[str, list[str]] = {"": []}

        def ensure_dir(path: str) -> bool:
            if path == "":
                return True
            have = entries.get(path)
            if have is not None:
                return have.type is EntryType.DIR
            parent = path.rpartition("/")[0]
            if not ensure_dir(parent):
                return False
            entries[path] = FsEntry(path, EntryType.DIR, stat.S_IFDIR | 0o755, 0, 0, 0, 0)
            children[parent].append(path)
            children[path] = []
            return True

        for m in self._members.values():
            entry = FsEntry(m.path, m.type, m.mode, m.size, m.uid, m.gid, m.ino, m.link_target)
            if m.path in entries:  # an implied directory made explicit
                if entries[m.path].type is EntryType.DIR and m.type is EntryType.DIR:
                    entries[m.path] = entry
                    continue
                self._record(m.path, "a directory in the archive is also a non-directory")
                continue
            parent = m.path.rpartition("/")[0]
            if not ensure_dir(parent):
                self._record(m.path, f"its parent {parent!r} is not a directory")
                continue
            entries[m.path] = entry
            children[parent].append(m.path)
            if m.type is EntryType.DIR:
                children.setdefault(m.path, [])

        def key(path: str) -> bytes:
            return path.rpartition("/")[2].encode("utf-8", "surrogateescape")

        stack = [iter(sorted(children[""], key=key))]
        while stack:
            path = next(stack[-1], None)
            if path is None:
                stack.pop()
                continue
            yield entries[path]
            kids = children.get(path)
            if kids:
                stack.append(iter(sorted(kids, key=key)))

    def iter_content(self, entry: FsEntry, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The bytes of a regular file, in chunks of at most ``chunk_size``."""
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        member = self._members.get(entry.path)
        if member is None or member.type is not EntryType.FILE:
            raise UnpackError(f"{entry.path}: not a regular file of this archive")
        if member.size > self._limits.max_file_size:
            raise LimitError(
                f"{entry.path}: file size {member.size} exceeds the limit of "
                f"{self._limits.max_file_size}"
            )
        pos, end = member.data, member.data + member.size
        while pos < end:
            chunk = self._pread(pos, min(chunk_size, end - pos))
            if not chunk:
                raise UnpackError(f"{entry.path}: data past the end of the archive")
            yield chunk
            pos += len(chunk)

    def close(self) -> None:
        """Release the archive file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> CpioFileSystem:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- indexing -----------------------------------------------------------------------------

    def _pread(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self._length - offset))
        if length == 0:
            return b""
        return os.pread(self._fd, length, self._base + offset)

    def _record(self, path: str, message: str, cls: type[UnpackError] = UnpackError) -> None:
        self.errors.append(cls(f"{path}: {message}"))

    def _index_error(self, message: str, cls: type[UnpackError] = UnpackError) -> None:
        self._index_errors.append(cls(message))

    def _index(self) -> None:
        pos = 0
        count = 0
        ended = False
        links: dict[tuple[int, int, int], list[_Member]] = {}
        while True:
            hdr = self._pread(pos, CPIO_HEADER_SIZE)
            if not probe_cpio(hdr):
                if pos == 0:
                    raise UnpackError("not a cpio newc archive")
                if ended:
                    return  # data after a trailer that is not another archive: ignored
                self._index_error(f"cpio: bad or truncated header at offset {pos}")
                return
            fields = [int(hdr[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
            ino, mode, uid, gid, nlink, _mtime, size, dmaj, dmin = fields[:9]
            namesize = fields[11]
            if not 1 <= namesize <= MAX_CPIO_NAME:
                self._index_error(f"cpio: name of {namesize} bytes at offset {pos}")
                return
            raw_name = self._pread(pos + CPIO_HEADER_SIZE, namesize)
            data = _align4(pos + CPIO_HEADER_SIZE + namesize)
            if len(raw_name) < namesize or data + size > self._length:
                self._index_error(f"cpio: entry at offset {pos} runs past the end (truncated)")
                return
            name = raw_name.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            pos = _align4(data + size)
            if name == CPIO_TRAILER:
                ended = True
                pos = self._skip_zeros(pos)
                if pos >= self._length:
                    return
                continue
            ended = False
            count += 1
            if count > self._limits.max_files:
                self._index_error(
                    f"cpio: more than {self._limits.max_files} entries", cls=LimitError
                )
                return
            member = self._member(name, mode, uid, gid, ino, size, data)
            if member is None:
                continue
            self._members[member.path] = member
            if member.type is EntryType.FILE and nlink > 1:
                group = links.setdefault((ino, dmaj, dmin), [])
                group.append(member)
                _share_data(group)

    def _skip_zeros(self, pos: int) -> int:
        while pos < self._length:
            chunk = self._pread(pos, 1 << 16)
            stripped = chunk.lstrip(b"\0")
            if stripped:
                return pos + len(chunk) - len(stripped)
            pos += len(chunk)
        return pos

    def _member(
        self, name: str, mode: int, uid: int, gid: int, ino: int, size: int, data: int
    ) -> _Member | None:
        if name.strip("/") in ("", "."):
            return None  # the root
        try:
            path = clean_relpath(name)
        except UnpackError as exc:
            self._index_error(f"cpio: {exc}")
            return None
        if path.count("/") >= self._limits.max_depth:
            self._index_error(
                f"{path}: nesting deeper than {self._limits.max_depth} directories",
                cls=LimitError,
            )
            return None
        fmt = stat.S_IFMT(mode)
        target = None
        if fmt == stat.S_IFREG:
            kind = EntryType.FILE
        elif fmt == stat.S_IFDIR:
            kind, size = EntryType.DIR, 0
        elif fmt == stat.S_IFLNK:
            kind = EntryType.SYMLINK
            if size > MAX_LINK_TARGET:
                self._index_error(f"{path}: symlink target of {size} bytes")
                return None
            target = self._pread(data, size).decode("utf-8", "surrogateescape")
        else:
            kind, size = EntryType.OTHER, 0
        return _Member(path, kind, mode, uid, gid, ino, size, data, target)


def _share_data(group: list[_Member]) -> None:
    """newc stores a hard-linked file's data once, with its last link: give it to all."""
    source = next((m for m in reversed(group) if m.size), None)
    if source is None:
        return
    for m in group:
        if not m.size:
            m.size, m.data = source.size, source.data

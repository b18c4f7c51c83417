"""The ``super`` partition of dynamic-partition devices: LP metadata and the logical partitions.

Format (AOSP ``system/core/fs_mgr/liblp/include/liblp/metadata_format.h``, metadata version
10.0 to 10.2), all fields little-endian, sectors of 512 bytes:

- Layout of a super image: 4096 reserved bytes; the geometry at 4096 and its backup copy at
  8192 (4096 bytes each); then ``metadata_slot_count`` primary metadata copies of
  ``metadata_max_size`` bytes each, followed by as many backup copies; then the partition data,
  from the first logical sector of block device 0.
- The *image-file* layout (``super_empty.img``, written by ``lpmake`` / ``WriteToImageFile``):
  the geometry at 0 and one metadata copy at 4096, no data. Both are read.
- Geometry (52 bytes): magic ``0x616c4467``, struct size, SHA-256 of the struct with the
  checksum field zeroed, ``metadata_max_size`` (a multiple of 512), ``metadata_slot_count``,
  ``logical_block_size``. A geometry with a bad checksum is replaced by its backup.
- Metadata header: magic ``0x414C5030`` (``0PLA``), major 10, minor 0 to 2; its size is 128
  bytes below minor 2 and 256 bytes from minor 2 (adding ``flags``); SHA-256 of the header with
  the checksum zeroed; ``tables_size`` and the SHA-256 of the tables, which follow the header;
  four table descriptors (offset from the end of the header, entry count, entry size) for the
  partitions (52-byte entries: name, attributes, first extent index, extent count, group
  index), extents (24 bytes: sectors, target type ``LINEAR`` 0 or ``ZERO`` 1, target data =
  first sector on the block device, target source = block device index), groups (48 bytes:
  name, flags, maximum size) and block devices (64 bytes: first logical sector, alignment,
  alignment offset, size, partition name, flags). A metadata copy that fails a check is
  replaced by its backup copy.

How it is read: slots 0 and 1 (when the geometry has two or more) are parsed. Partitions are
named as the metadata names them (``system_a``, ``system_b``; or ``system`` on retrofit
devices, whose entries carry the ``SLOT_SUFFIXED`` attribute instead). The partition list is
that of slot 0; slot 1 adds the names it alone holds and replaces the ``_b`` entries, since
the metadata of a slot is authoritative for that slot's partitions (``lpmake`` writes the
same metadata into every slot, and then slot 1 changes nothing). Each partition with extents
is assembled into a work-directory image: ``LINEAR`` extents are copied from block device 0
(the super image itself), ``ZERO`` extents are left as holes. A partition without extents is
recorded as skipped (``empty partition``).

Bounds: metadata is read into memory only up to :data:`MAX_METADATA_SIZE`; tables must lie
within ``tables_size``, which must fit in ``metadata_max_size``; entry sizes must be the known
ones (so counts are bounded by the metadata size); extent indexes, group indexes and block
device indexes are checked; a partition's size is bounded by
:attr:`~fwscan.limits.Limits.max_partition_size`.

Limitations: extents on block devices other than device 0 (retrofit devices, whose logical
partitions span the old ``system``/``vendor`` partitions) cannot be read from the super image
alone and fail that partition with a clear message; partition attributes are reported, not
enforced (unknown bits are tolerated); slots past 1 (the third slot of Virtual A/B) are not
read; the retrofit ``SLOT_SUFFIXED`` renaming is not applied.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fwscan.errors import FwscanError, IntegrityError, LimitError, UnpackError
from fwscan.limits import DEFAULT_LIMITS, Limits
from fwscan.unpack.base import Child, UnpackContext, Window
from fwscan.unpack.sparse import RangeCopier

GEOMETRY_MAGIC = 0x616C4467
HEADER_MAGIC = 0x414C5030
GEOMETRY_SIZE = 4096
"""Space reserved for each geometry copy."""
RESERVED_BYTES = 4096
"""Bytes at the start of a super partition before the geometry."""
SECTOR = 512
MAJOR_VERSION = 10
MINOR_VERSION_MAX = 2
MAX_METADATA_SIZE = 16 << 20
"""Largest ``metadata_max_size`` read (real devices use 64 KiB)."""
SLOTS_READ = 2
"""Metadata slots read: 0 (``_a``) and 1 (``_b``)."""

TARGET_LINEAR = 0
TARGET_ZERO = 1

ATTR_READONLY = 1 << 0
ATTR_SLOT_SUFFIXED = 1 << 1
ATTR_UPDATED = 1 << 2
ATTR_DISABLED = 1 << 3

LAYOUT_SUPER = "super"
"""Geometry at 4096: a whole super partition."""
LAYOUT_IMAGE_FILE = "image-file"
"""Geometry at 0, one metadata copy at 4096 (``super_empty.img``)."""

PROBE_SIZE = 2 * GEOMETRY_SIZE + RESERVED_BYTES + 4
"""Bytes :func:`probe` looks at: the magic of the primary or backup geometry."""

_GEOMETRY = struct.Struct("<II32sIII")  # 52
_HEADER_V1_0 = struct.Struct("<IHHI32sI32sIIIIIIIIIIII")  # 128
_HEADER_V1_2_SIZE = 256
_PARTITION = struct.Struct("<36sIIII")  # 52
_EXTENT = struct.Struct("<QIQI")  # 24
_GROUP = struct.Struct("<36sIQ")  # 48
_BLOCK_DEVICE = struct.Struct("<QIIQ36sI")  # 64
_Reader = Callable[[int, int], bytes]
"""Reads ``n`` bytes at an offset of the window, or raises :class:`UnpackError`."""


@dataclass(frozen=True)
class Geometry:
    """Where the metadata lies, as the geometry block records it."""

    metadata_max_size: int
    metadata_slot_count: int
    logical_block_size: int
    copy: str = "primary"
    """``primary`` or ``backup``: the copy that was read."""


@dataclass(frozen=True)
class Extent:
    """A run of sectors of a logical partition."""

    num_sectors: int
    target_type: int
    """:data:`TARGET_LINEAR` or :data:`TARGET_ZERO` (other values are reported as found)."""
    target_data: int
    """LINEAR: the first sector on the block device."""
    target_source: int
    """LINEAR: the block device index."""


@dataclass(frozen=True)
class Group:
    """An update group: partitions whose total size is capped."""

    name: str
    flags: int
    maximum_size: int
    """0: no maximum."""


@dataclass(frozen=True)
class BlockDevice:
    """A physical partition holding logical partition data (device 0 holds the metadata)."""

    name: str
    first_logical_sector: int
    alignment: int
    alignment_offset: int
    size: int
    flags: int


@dataclass(frozen=True)
class Partition:
    """A logical partition, as one metadata slot records it."""

    name: str
    attributes: int
    group: str | None
    """The group name, ``None`` when the index is out of range."""
    extents: tuple[Extent, ...]
    slot: int
    """The metadata slot this entry was read from."""
    problem: str | None = None
    """Why the partition cannot be read (bad extent range), when it cannot."""

    @property
    def size(self) -> int:
        """Bytes of the assembled partition."""
        return sum(e.num_sectors for e in self.extents) * SECTOR

    @property
    def base_name(self) -> str:
        """The name without its ``_a``/``_b`` slot suffix."""
        if self.name.endswith(("_a", "_b")) and len(self.name) > 2:
            return self.name[:-2]
        return self.name


@dataclass(frozen=True)
class Metadata:
    """One metadata slot."""

    slot: int
    major_version: int
    minor_version: int
    flags: int
    partitions: tuple[Partition, ...]
    groups: tuple[Group, ...]
    block_devices: tuple[BlockDevice, ...]
    copy: str = "primary"
    """``primary`` or ``backup``: the copy that was read."""
    raw: bytes = field(default=b"", repr=False, compare=False)
    """Header and tables as stored (to tell identical slots apart)."""


@dataclass(frozen=True)
class SuperImage:
    """The LP metadata of a super image."""

    layout: str
    """:data:`LAYOUT_SUPER` or :data:`LAYOUT_IMAGE_FILE`."""
    geometry: Geometry
    slots: tuple[Metadata, ...]
    """The slots read, slot 0 first."""
    slot_errors: tuple[tuple[int, UnpackError], ...] = ()
    """Slots (after 0) that could not be read, with why."""

    def partitions(self) -> list[Partition]:
        """The partitions, merged across slots (see the module documentation). A name that
        a slot repeats comes out again, as a partition with a :attr:`~Partition.problem`."""
        merged: list[Partition] = []
        where: dict[str, int] = {}
        first = self.slots[0]
        for part in first.partitions:
            if part.name not in where:
                where[part.name] = len(merged)
            merged.append(part)
        for meta in self.slots[1:]:
            if meta.raw == first.raw:
                continue
            suffix = "_" + chr(ord("a") + meta.slot)
            seen: set[str] = set()
            for part in meta.partitions:
                if part.name in seen:
                    continue
                seen.add(part.name)
                if part.name not in where:
                    where[part.name] = len(merged)
                    merged.append(part)
                elif part.name.endswith(suffix):
                    merged[where[part.name]] = part
        return merged


def probe(head: bytes) -> bool:
    """Whether ``head`` (at least :data:`PROBE_SIZE` bytes for a whole super image, 4 for a
    ``super_empty.img``) holds an LP geometry magic at 0, 4096 or 8192."""
    return any(
        len(head) >= off + 4 and int.from_bytes(head[off : off + 4], "little") == GEOMETRY_MAGIC
        for off in (0, RESERVED_BYTES, RESERVED_BYTES + GEOMETRY_SIZE)
    )


def read_super(window: Window, limits: Limits = DEFAULT_LIMITS) -> SuperImage:
    """The geometry and metadata slots of the super image in ``window``.

    Raises :class:`UnpackError` (or :class:`IntegrityError` for checksums) when no geometry or
    no slot-0 metadata copy is valid.
    """
    size = window.size()
    with open(window.path, "rb", buffering=0) as f:
        fd = f.fileno()

        def read(off: int, n: int) -> bytes:
            if off < 0 or off + n > size:
                raise UnpackError(
                    f"super image truncated: {n} bytes at offset {off} pass its end ({size})"
                )
            data = os.pread(fd, n, window.offset + off)
            if len(data) != n:
                raise UnpackError(f"super image truncated at offset {off + len(data)}")
            return data

        head = read(0, min(size, 4))
        if int.from_bytes(head[:4], "little") == GEOMETRY_MAGIC:
            layout = LAYOUT_IMAGE_FILE
            geometry = _parse_geometry(read(0, min(size, GEOMETRY_SIZE)), "primary")
            offsets: list[tuple[int, int | None]] = [(GEOMETRY_SIZE, None)]
        else:
            layout = LAYOUT_SUPER
            geometry = _read_geometry(read)
            base = RESERVED_BYTES + 2 * GEOMETRY_SIZE
            mx = geometry.metadata_max_size
            count = geometry.metadata_slot_count
            offsets = [
                (base + mx * slot, base + mx * (count + slot))
                for slot in range(min(count, SLOTS_READ))
            ]
        slots: list[Metadata] = []
        errors: list[tuple[int, UnpackError]] = []
        for slot, (primary, backup) in enumerate(offsets):
            try:
                slots.append(_read_slot(read, geometry, slot, primary, backup))
            except UnpackError as exc:
                if slot == 0:
                    raise
                errors.append((slot, exc))
    return SuperImage(layout, geometry, tuple(slots), tuple(errors))


def extract_partition(
    window: Window, part: Partition, out_path: Path, limits: Limits = DEFAULT_LIMITS
) -> None:
    """Assemble ``part`` from its extents into ``out_path``.

    Raises :class:`LimitError` when it is larger than ``limits.max_partition_size``,
    :class:`UnpackError` when it cannot be read (an extent past the end of the super image, on
    another block device, of an unknown type); nothing is written then.
    """
    check_partition(window, part, limits)
    try:
        with open(window.path, "rb", buffering=0) as src, open(out_path, "wb", buffering=0) as dst:
            copier = RangeCopier(src.fileno(), dst.fileno())
            pos = 0
            for ext in part.extents:
                nbytes = ext.num_sectors * SECTOR
                if ext.target_type == TARGET_LINEAR:
                    copier.copy(window.offset + ext.target_data * SECTOR, pos, nbytes)
                pos += nbytes
            os.ftruncate(dst.fileno(), pos)
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise


def check_partition(window: Window, part: Partition, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise what :func:`extract_partition` would raise before writing, without writing."""
    if part.problem is not None:
        raise UnpackError(f"partition {part.name}: {part.problem}")
    if part.size > limits.max_partition_size:
        raise LimitError(
            f"partition {part.name}: {part.size} bytes exceeds the partition size limit "
            f"of {limits.max_partition_size} bytes"
        )
    super_size = window.size()
    for i, ext in enumerate(part.extents):
        where = f"partition {part.name}, extent {i}"
        if ext.target_type == TARGET_ZERO:
            continue
        if ext.target_type != TARGET_LINEAR:
            raise UnpackError(f"{where}: unknown target type {ext.target_type}")
        if ext.target_source != 0:
            raise UnpackError(
                f"{where}: lies on block device {ext.target_source}, a separate partition "
                "that is not part of this image"
            )
        start = ext.target_data * SECTOR
        end = start + ext.num_sectors * SECTOR
        if end > super_size:
            raise UnpackError(
                f"{where}: sectors {ext.target_data}..{ext.target_data + ext.num_sectors} "
                f"(bytes {start}..{end}) lie past the end of the super image ({super_size} bytes)"
            )


class SuperContainer:
    """Super images with LP metadata: each logical partition, assembled from its extents."""

    name = "super"

    def probe(self, window: Window, head: bytes) -> bool:
        """The geometry magic at 0 (``super_empty.img``), 4096 or 8192: reads its own
        :data:`PROBE_SIZE` bytes, as the geometry lies past the usual 4096-byte head."""
        if probe(head[:4]):
            return True
        if len(head) < PROBE_SIZE:
            head = window.read_head(PROBE_SIZE)
        return probe(head)

    def expand(self, window: Window, ctx: UnpackContext) -> Iterator[Child]:
        """Each logical partition, one at a time, removed once it has been read."""
        image = read_super(window, ctx.limits)
        for slot, exc in image.slot_errors:
            yield Child(f"metadata slot {slot}", None, error=exc, format="super")
        for part in image.partitions():
            if not part.extents and part.problem is None:
                yield Child(part.name, None, partition=part.base_name, skipped="empty partition")
                continue
            out = ctx.new_image_path(part.name)
            try:
                check_partition(window, part, ctx.limits)
                ctx.account(part.size)
                extract_partition(window, part, out, ctx.limits)
            except FwscanError as exc:
                out.unlink(missing_ok=True)
                yield Child(part.name, None, partition=part.base_name, error=exc)
                continue
            try:
                yield Child(part.name, Window(out), partition=part.base_name)
            finally:
                out.unlink(missing_ok=True)


# --- parsing ------------------------------------------------------------------------------------


def _parse_geometry(raw: bytes, copy: str) -> Geometry:
    if len(raw) < _GEOMETRY.size:
        raise UnpackError(f"{copy} LP geometry truncated")
    magic, struct_size, checksum, max_size, slots, block = _GEOMETRY.unpack_from(raw)
    if magic != GEOMETRY_MAGIC:
        raise UnpackError(f"{copy} LP geometry: bad magic 0x{magic:08x}")
    if struct_size != _GEOMETRY.size:
        raise UnpackError(f"{copy} LP geometry: struct size {struct_size}, expected 52")
    zeroed = raw[:8] + bytes(32) + raw[40 : _GEOMETRY.size]
    if hashlib.sha256(zeroed).digest() != checksum:
        raise IntegrityError(f"{copy} LP geometry: checksum mismatch")
    if max_size == 0 or max_size % SECTOR:
        raise UnpackError(f"{copy} LP geometry: metadata size {max_size} is not a sector multiple")
    if max_size > MAX_METADATA_SIZE:
        raise LimitError(
            f"{copy} LP geometry: metadata size {max_size} exceeds {MAX_METADATA_SIZE} bytes"
        )
    if slots == 0:
        raise UnpackError(f"{copy} LP geometry: no metadata slots")
    if block == 0 or block % SECTOR:
        raise UnpackError(f"{copy} LP geometry: logical block size {block} is not valid")
    return Geometry(max_size, slots, block, copy)


def _read_geometry(read: _Reader) -> Geometry:
    try:
        return _parse_geometry(read(RESERVED_BYTES, _GEOMETRY.size), "primary")
    except UnpackError as primary:
        try:
            return _parse_geometry(read(RESERVED_BYTES + GEOMETRY_SIZE, _GEOMETRY.size), "backup")
        except UnpackError as backup:
            raise type(primary)(f"{primary}; {backup}") from primary


def _read_slot(
    read: _Reader, geometry: Geometry, slot: int, primary: int, backup: int | None
) -> Metadata:
    try:
        return _parse_metadata(read, geometry, slot, primary, "primary")
    except UnpackError as first:
        if backup is None:
            raise
        try:
            return _parse_metadata(read, geometry, slot, backup, "backup")
        except UnpackError as second:
            raise type(first)(f"{first}; {second}") from first


def _parse_metadata(
    read: _Reader, geometry: Geometry, slot: int, offset: int, copy: str
) -> Metadata:
    where = f"slot {slot} {copy} metadata"
    raw = read(offset, _HEADER_V1_0.size)
    (
        magic,
        major,
        minor,
        header_size,
        header_sum,
        tables_size,
        tables_sum,
        *descriptors,
    ) = _HEADER_V1_0.unpack(raw)
    if magic != HEADER_MAGIC:
        raise UnpackError(f"{where}: bad magic 0x{magic:08x}")
    if major != MAJOR_VERSION or minor > MINOR_VERSION_MAX:
        raise UnpackError(f"{where}: version {major}.{minor} is not supported (10.0 to 10.2)")
    expected = _HEADER_V1_0.size if minor < 2 else _HEADER_V1_2_SIZE
    if header_size != expected:
        raise UnpackError(f"{where}: header size {header_size}, expected {expected} for 10.{minor}")
    if header_size + tables_size > geometry.metadata_max_size:
        raise UnpackError(
            f"{where}: header and tables ({header_size} + {tables_size} bytes) exceed the "
            f"metadata size {geometry.metadata_max_size}"
        )
    header = read(offset, header_size)
    zeroed = header[:12] + bytes(32) + header[44:]
    if hashlib.sha256(zeroed).digest() != header_sum:
        raise IntegrityError(f"{where}: header checksum mismatch")
    tables = read(offset + header_size, tables_size)
    if hashlib.sha256(tables).digest() != tables_sum:
        raise IntegrityError(f"{where}: tables checksum mismatch")
    flags = int.from_bytes(header[128:132], "little") if minor >= 2 else 0

    def table(index: int, what: str, st: struct.Struct) -> list[tuple[Any, ...]]:
        off, count, entry_size = descriptors[3 * index : 3 * index + 3]
        if entry_size != st.size:
            raise UnpackError(f"{where}: {what} entry size {entry_size}, expected {st.size}")
        if off + count * entry_size > tables_size:
            raise UnpackError(
                f"{where}: {what} table ({count} entries at {off}) passes the tables' "
                f"{tables_size} bytes"
            )
        return [st.unpack_from(tables, off + i * entry_size) for i in range(count)]

    part_rows = table(0, "partition", _PARTITION)
    extents = [Extent(*row) for row in table(1, "extent", _EXTENT)]
    groups = [
        Group(_name(name), flags_, max_size) for name, flags_, max_size in table(2, "group", _GROUP)
    ]
    devices = [
        BlockDevice(_name(name), first, align, align_off, dev_size, dev_flags)
        for first, align, align_off, dev_size, name, dev_flags in table(
            3, "block device", _BLOCK_DEVICE
        )
    ]
    partitions: list[Partition] = []
    names: set[str] = set()
    for name_raw, attributes, first_extent, num_extents, group_index in part_rows:
        name = _name(name_raw)
        group = groups[group_index].name if group_index < len(groups) else None
        problem = None
        chosen: tuple[Extent, ...] = ()
        if first_extent + num_extents > len(extents):
            problem = (
                f"extents {first_extent}..{first_extent + num_extents} pass the extent table "
                f"({len(extents)} entries)"
            )
        else:
            chosen = tuple(extents[first_extent : first_extent + num_extents])
        if name in names:
            problem = "duplicate partition name (the first entry is read)"
        names.add(name)
        partitions.append(Partition(name, attributes, group, chosen, slot, problem))
    return Metadata(
        slot,
        major,
        minor,
        flags,
        tuple(partitions),
        tuple(groups),
        tuple(devices),
        copy,
        header + tables,
    )


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "backslashreplace")

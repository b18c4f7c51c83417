"""Write ``super.img`` files with LP metadata (dynamic partitions), byte for byte reproducible.

The layout and structures are those of AOSP ``liblp`` (``metadata_format.h``), version 10.2
(256-byte header, ``flags`` 0), as :mod:`fwscan.unpack.superimg` documents them:

- 4096 zero bytes, the geometry at 4096 and its backup at 8192, ``metadata_slots`` metadata
  copies of ``metadata_size`` bytes followed by as many backup copies (all slots hold the same
  metadata, as ``lpmake`` writes them);
- the partition data from the first 1 MiB boundary after the metadata, each partition one
  ``LINEAR`` extent on block device 0 (``super``) starting on a 1 MiB boundary;
- groups ``default`` (no maximum) and ``group`` (or ``group_a`` and ``group_b`` when ``ab``),
  capped at the space after the metadata; one block device, ``super``, 1 MiB alignment;
- with ``ab``, each partition ``name`` is written as ``name_a`` (in ``group_a``, with its data)
  followed by an empty ``name_b`` (in ``group_b``, no extents), as a freshly flashed A/B device
  has them; partitions are ``READONLY``.

Gaps are left as holes in the output file; nothing depends on the clock or the host.
Limitations: one block device only (no retrofit layout), one extent per partition, no
``super_empty.img`` (image-file) layout.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path

from fwscan.unpack.sparse import RangeCopier
from fwscan.unpack.superimg import (
    ATTR_READONLY,
    GEOMETRY_MAGIC,
    GEOMETRY_SIZE,
    HEADER_MAGIC,
    MAX_METADATA_SIZE,
    RESERVED_BYTES,
    SECTOR,
    TARGET_LINEAR,
)

ALIGNMENT = 1 << 20
"""Alignment of the first logical sector and of every partition start."""

_NAME_RE = re.compile(r"[A-Za-z0-9_]+")
_HEADER_SIZE = 256
_PARTITION = struct.Struct("<36sIIII")
_EXTENT = struct.Struct("<QIQI")
_GROUP = struct.Struct("<36sIQ")
_BLOCK_DEVICE = struct.Struct("<QIIQ36sI")


def write_super(
    out: Path,
    partitions: Sequence[tuple[str, Path]],
    *,
    metadata_slots: int = 2,
    block_size: int = 4096,
    group: str = "main",
    ab: bool = True,
    metadata_size: int = 65536,
) -> None:
    """Write a super image holding ``partitions`` (name, image file) to ``out``.

    Every image size must be a multiple of ``block_size``. Raises :class:`ValueError` for bad
    names (only letters, digits and ``_``; 36 bytes at most with the suffix), duplicates,
    sizes, or metadata larger than ``metadata_size``.
    """
    if metadata_slots < 1:
        raise ValueError("metadata_slots must be at least 1")
    if block_size <= 0 or block_size % SECTOR:
        raise ValueError(f"block size {block_size} is not a multiple of {SECTOR}")
    if metadata_size <= 0 or metadata_size % SECTOR or metadata_size > MAX_METADATA_SIZE:
        raise ValueError(f"metadata size {metadata_size} is not a valid sector multiple")
    suffixes = ("_a", "_b") if ab else ("",)
    names = [name for name, _ in partitions]
    if len(set(names)) != len(names):
        raise ValueError("duplicate partition names")
    for name in [*names, group]:
        full = name + suffixes[-1]
        if not _NAME_RE.fullmatch(name) or len(full) > 36:
            raise ValueError(f"bad name {name!r}: letters, digits and _, up to 36 bytes")
    sizes = [path.stat().st_size for _, path in partitions]
    for (name, path), size in zip(partitions, sizes, strict=True):
        if size == 0 or size % block_size:
            raise ValueError(f"{path}: size {size} of {name} is not a multiple of {block_size}")

    metadata_end = RESERVED_BYTES + 2 * GEOMETRY_SIZE + 2 * metadata_slots * metadata_size
    first_logical = _align(metadata_end)
    starts: list[int] = []
    pos = first_logical
    for size in sizes:
        starts.append(pos)
        pos = _align(pos + size)
    device_size = pos

    part_table = bytearray()
    extent_table = bytearray()
    group_names = ["default", *(group + s for s in suffixes)]
    for (name, _), size, start in zip(partitions, sizes, starts, strict=True):
        for slot, suffix in enumerate(suffixes):
            with_data = slot == 0
            part_table += _PARTITION.pack(
                (name + suffix).encode(),
                ATTR_READONLY,
                len(extent_table) // _EXTENT.size,
                1 if with_data else 0,
                1 + slot,
            )
            if with_data:
                extent_table += _EXTENT.pack(size // SECTOR, TARGET_LINEAR, start // SECTOR, 0)
    group_table = b"".join(
        _GROUP.pack(g.encode(), 0, 0 if i == 0 else device_size - first_logical)
        for i, g in enumerate(group_names)
    )
    device_table = _BLOCK_DEVICE.pack(
        first_logical // SECTOR, ALIGNMENT, 0, device_size, b"super", 0
    )
    tables = bytes(part_table + extent_table + group_table + device_table)
    if _HEADER_SIZE + len(tables) > metadata_size:
        raise ValueError(f"metadata needs {_HEADER_SIZE + len(tables)} bytes, over {metadata_size}")
    descriptors = []
    offset = 0
    for blob, entry in (
        (part_table, _PARTITION),
        (extent_table, _EXTENT),
        (group_table, _GROUP),
        (device_table, _BLOCK_DEVICE),
    ):
        descriptors += [offset, len(blob) // entry.size, entry.size]
        offset += len(blob)
    header = bytearray(_HEADER_SIZE)
    struct.pack_into(
        "<IHHI32sI32s12I",
        header,
        0,
        HEADER_MAGIC,
        10,
        2,
        _HEADER_SIZE,
        bytes(32),
        len(tables),
        hashlib.sha256(tables).digest(),
        *descriptors,
    )  # flags (at 128) and the reserved bytes stay 0
    header[12:44] = hashlib.sha256(header).digest()
    metadata = bytes(header) + tables

    geometry = bytearray(
        struct.pack(
            "<II32sIII", GEOMETRY_MAGIC, 52, bytes(32), metadata_size, metadata_slots, block_size
        )
    )
    geometry[8:40] = hashlib.sha256(geometry).digest()

    out.unlink(missing_ok=True)
    try:
        with open(out, "wb", buffering=0) as f:
            fd = f.fileno()
            os.pwrite(fd, geometry, RESERVED_BYTES)
            os.pwrite(fd, geometry, RESERVED_BYTES + GEOMETRY_SIZE)
            base = RESERVED_BYTES + 2 * GEOMETRY_SIZE
            for copy in range(2 * metadata_slots):
                os.pwrite(fd, metadata, base + copy * metadata_size)
            for (_, path), size, start in zip(partitions, sizes, starts, strict=True):
                with open(path, "rb", buffering=0) as src:
                    RangeCopier(src.fileno(), fd).copy(0, start, size)
            os.ftruncate(fd, device_size)
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def _align(value: int) -> int:
    return -(-value // ALIGNMENT) * ALIGNMENT

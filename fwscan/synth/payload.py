"""Writing deterministic full A/B OTA payloads (``payload.bin``) from partition images.

Each image is cut into ``chunk_size`` pieces; an all-zero piece becomes a ZERO operation, any
other piece a REPLACE_XZ / REPLACE_BZ / REPLACE_ZSTD operation, or REPLACE when compressing
does not make it smaller. Compression runs on a thread pool; blobs are laid out in operation
order, so the output is byte-identical from run to run.
"""

from __future__ import annotations

import base64
import bz2
import hashlib
import lzma
import struct
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

import zstandard

from fwscan.formats.protowire import MessageWriter
from fwscan.limits import MiB
from fwscan.unpack.payload import MAGIC, SUPPORTED_MAJOR_VERSION, OpType

COMPRESSIONS = ("xz", "bz2", "zstd", "none")
"""The values :attr:`PartitionImage.compression` accepts."""

_ZSTD_LEVEL = 3
_BZ2_LEVEL = 9
_COPY_SIZE = 1 * MiB


@dataclass(frozen=True)
class PartitionImage:
    """A partition to put in a payload: its name, its image file and how to compress it."""

    name: str
    path: Path
    compression: str = "xz"
    """One of :data:`COMPRESSIONS`."""


@dataclass(frozen=True)
class PayloadProperties:
    """What AOSP writes to ``payload_properties.txt`` for an unsigned payload."""

    FILE_HASH: str
    """Base64 SHA-256 of the whole payload file."""
    FILE_SIZE: int
    METADATA_HASH: str
    """Base64 SHA-256 of the header and manifest."""
    METADATA_SIZE: int
    """Size of the header and manifest."""

    def text(self) -> str:
        """The ``payload_properties.txt`` content: one ``KEY=value`` line each."""
        return (
            f"FILE_HASH={self.FILE_HASH}\n"
            f"FILE_SIZE={self.FILE_SIZE}\n"
            f"METADATA_HASH={self.METADATA_HASH}\n"
            f"METADATA_SIZE={self.METADATA_SIZE}\n"
        )


def write_payload(
    out: Path,
    partitions: Sequence[PartitionImage],
    *,
    block_size: int = 4096,
    chunk_size: int = 2 * MiB,
    xz_preset: int = 6,
    workers: int = 2,
) -> PayloadProperties:
    """Write a full payload (major version 2, minor version 0) of ``partitions`` to ``out``.

    Image sizes must be multiples of ``block_size`` (a power of two, 512..64K) and
    ``chunk_size`` a multiple of ``block_size``. XZ blobs use CRC32 checks, as update_engine's
    xz-embedded decoder requires. The metadata signature is empty and the payload unsigned.
    A temporary ``<out>.blobs`` file holds the blobs until the manifest is known.
    """
    _check_arguments(partitions, block_size, chunk_size, workers)
    blobs_path = out.with_name(out.name + ".blobs")
    manifest = MessageWriter().varint(3, block_size).varint(12, 0)
    try:
        with open(blobs_path, "w+b") as blobs, ThreadPoolExecutor(max_workers=workers) as pool:
            for part in partitions:
                compress = _compressor(part.compression, xz_preset)
                manifest.message(
                    13,
                    _write_partition(part, compress, blobs, pool, block_size, chunk_size, workers),
                )
            raw_manifest = manifest.encode()
            header = struct.pack(">4sQQI", MAGIC, SUPPORTED_MAJOR_VERSION, len(raw_manifest), 0)
            metadata = header + raw_manifest
            file_sha = hashlib.sha256(metadata)
            with open(out, "wb") as f:
                f.write(metadata)
                blobs.seek(0)
                while chunk := blobs.read(_COPY_SIZE):
                    file_sha.update(chunk)
                    f.write(chunk)
                file_size = f.tell()
    finally:
        blobs_path.unlink(missing_ok=True)
    return PayloadProperties(
        FILE_HASH=base64.b64encode(file_sha.digest()).decode("ascii"),
        FILE_SIZE=file_size,
        METADATA_HASH=base64.b64encode(hashlib.sha256(metadata).digest()).decode("ascii"),
        METADATA_SIZE=len(metadata),
    )


def _check_arguments(
    partitions: Sequence[PartitionImage], block_size: int, chunk_size: int, workers: int
) -> None:
    if not 512 <= block_size <= 65536 or block_size & (block_size - 1):
        raise ValueError(f"block_size {block_size} is not a power of two in 512..64K")
    if chunk_size <= 0 or chunk_size % block_size:
        raise ValueError(f"chunk_size {chunk_size} is not a positive multiple of {block_size}")
    if workers < 1:
        raise ValueError("workers must be at least 1")
    names = [p.name for p in partitions]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate partition names in {names}")
    for part in partitions:
        if part.compression not in COMPRESSIONS:
            raise ValueError(f"{part.name}: unknown compression {part.compression!r}")
        size = part.path.stat().st_size
        if size % block_size:
            raise ValueError(f"{part.path}: size {size} is not a multiple of {block_size}")


_Compressor = tuple[OpType, Callable[[bytes], bytes]] | None


def _compressor(name: str, xz_preset: int) -> _Compressor:
    if name == "xz":
        return OpType.REPLACE_XZ, partial(
            lzma.compress, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=xz_preset
        )
    if name == "bz2":
        return OpType.REPLACE_BZ, partial(bz2.compress, compresslevel=_BZ2_LEVEL)
    if name == "zstd":
        return OpType.REPLACE_ZSTD, _zstd_compress
    return None


def _zstd_compress(data: bytes) -> bytes:
    # One compressor per call: ZstdCompressor objects are not thread-safe.
    result: bytes = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(data)
    return result


def _write_partition(
    part: PartitionImage,
    compress: _Compressor,
    blobs: BinaryIO,
    pool: ThreadPoolExecutor,
    block_size: int,
    chunk_size: int,
    workers: int,
) -> MessageWriter:
    """Append the blobs of one image to ``blobs``; return its ``PartitionUpdate``."""
    image_sha = hashlib.sha256()
    zeros = bytes(chunk_size)
    ops: list[MessageWriter] = []
    pending: deque[tuple[int, bytes, bool, Future[bytes] | None]] = deque()

    def finish() -> None:
        offset, raw, is_zero, future = pending.popleft()
        op = MessageWriter()
        extent = MessageWriter().varint(1, offset // block_size).varint(2, len(raw) // block_size)
        if is_zero:
            op.varint(1, OpType.ZERO).message(6, extent)
        else:
            blob = future.result() if future is not None else raw
            op_type = OpType.REPLACE
            if compress is not None and len(blob) < len(raw):
                op_type = compress[0]
            else:
                blob = raw
            data_offset = blobs.tell()
            blobs.write(blob)
            op.varint(1, op_type).varint(2, data_offset).varint(3, len(blob))
            op.message(6, extent).blob(8, hashlib.sha256(blob).digest())
        ops.append(op)

    with open(part.path, "rb") as image:
        offset = 0
        while raw := image.read(chunk_size):
            image_sha.update(raw)
            is_zero = raw == zeros[: len(raw)]
            future = None
            if compress is not None and not is_zero:
                future = pool.submit(compress[1], raw)
            pending.append((offset, raw, is_zero, future))
            offset += len(raw)
            while len(pending) > 2 * workers:
                finish()
        while pending:
            finish()
    info = MessageWriter().varint(1, offset).blob(2, image_sha.digest())
    update = MessageWriter().string(1, part.name).message(7, info)
    for op in ops:
        update.message(8, op)
    return update

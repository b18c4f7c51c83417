"""Android sparse images (``simg``): the reader and the container that expands them.

Format (AOSP ``system/core/libsparse/sparse_format.h``), all fields little-endian:

- File header, ``file_hdr_sz`` bytes (28 in version 1.0): magic ``0xED26FF3A``, major version
  (1; higher majors are refused), minor version (any), ``file_hdr_sz``, ``chunk_hdr_sz``,
  ``blk_sz`` (a multiple of 4), ``total_blks`` (blocks in the expanded image),
  ``total_chunks``, ``image_checksum``. Bytes past the 28 known ones are skipped.
- ``total_chunks`` chunks, each a ``chunk_hdr_sz``-byte header (12 in version 1.0: type,
  reserved, ``chunk_sz`` in output blocks, ``total_sz`` in input bytes including the header)
  followed by its data:

  ``RAW`` (``0xCAC1``)
      ``chunk_sz * blk_sz`` bytes copied as they are.
  ``FILL`` (``0xCAC2``)
      4 bytes repeated over ``chunk_sz`` blocks.
  ``DONT_CARE`` (``0xCAC3``)
      no data; the blocks read as zeros (they stay holes in the output file).
  ``CRC32`` (``0xCAC4``)
      4 bytes: the CRC-32 (IEEE 802.3, as :func:`zlib.crc32`) of the whole output written so
      far, don't-care blocks counted as zeros; no output blocks. Verified here
      (:class:`~fwscan.errors.IntegrityError` on a mismatch), which ``simg2img`` does not do.

The chunks must cover exactly ``total_blks`` blocks, in order, as ``libsparse`` requires.

How it is read: the header is checked and the output size (``total_blks * blk_sz``) bounded
by :attr:`~fwscan.limits.Limits.max_partition_size` before anything is written; a first pass
walks the chunk headers and validates them all (types, sizes, the data lying inside the input,
the block total), so a truncated or malformed image fails before a byte is written; the second
pass writes. ``RAW`` data is copied in the kernel (``copy_file_range``, falling back to large
``pread``/``pwrite`` calls), ``DONT_CARE`` and zero ``FILL`` chunks are left as holes, and the
file is cut to its final size at the end. When the image holds ``CRC32`` chunks the data goes
through user space to be checksummed (holes are accounted for arithmetically, without reading
zeros).

Limitations: the header's ``image_checksum`` is not verified (``libsparse`` ignores it too and
tools write 0); only the single-file form is read (not the split ``*.img.0``, ``*.img.1`` sets
``fastboot`` produces, each of which is a complete sparse image on its own anyway).
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fwscan.errors import FwscanError, IntegrityError, LimitError, UnpackError
from fwscan.limits import DEFAULT_LIMITS, Limits
from fwscan.unpack.base import Child, UnpackContext, Window

MAGIC = 0xED26FF3A
"""The first four bytes of a sparse image, little-endian."""

CHUNK_RAW = 0xCAC1
CHUNK_FILL = 0xCAC2
CHUNK_DONT_CARE = 0xCAC3
CHUNK_CRC32 = 0xCAC4

_FILE_HEADER = struct.Struct("<IHHHHIIII")  # 28 bytes
_CHUNK_HEADER = struct.Struct("<HHII")  # 12 bytes
_COPY_SIZE = 8 << 20
"""Bytes moved per system call."""
_FILL_BUFFER = 1 << 20
"""Size of the repeated-pattern buffer written for ``FILL`` chunks (a multiple of 4)."""
_CRC_POLY = 0xEDB88320
"""The reflected IEEE 802.3 CRC-32 polynomial (without the ``x^32`` term)."""


@dataclass(frozen=True)
class SparseHeader:
    """The file header of a sparse image."""

    major_version: int
    minor_version: int
    file_hdr_sz: int
    chunk_hdr_sz: int
    blk_sz: int
    total_blks: int
    total_chunks: int
    image_checksum: int

    @property
    def output_size(self) -> int:
        """Bytes of the expanded image."""
        return self.total_blks * self.blk_sz


@dataclass(frozen=True)
class _Chunk:
    index: int
    type: int
    block: int
    """First output block."""
    blocks: int
    data_offset: int
    """Where the chunk's data starts, as an offset in the input file (not the window)."""
    value: int
    """FILL: the 4-byte pattern as a little-endian integer; CRC32: the expected CRC."""
    pattern: bytes
    """FILL: the 4 bytes as stored."""


def probe(head: bytes) -> bool:
    """Whether ``head`` starts with the sparse magic."""
    return len(head) >= 4 and int.from_bytes(head[:4], "little") == MAGIC


def read_header(window: Window, limits: Limits = DEFAULT_LIMITS) -> SparseHeader:
    """The validated file header of the sparse image in ``window``.

    Raises :class:`UnpackError` for a bad magic, version or field, or when the input is too
    short to hold the chunk headers it announces; :class:`LimitError` when the expanded size
    exceeds ``limits.max_partition_size``.
    """
    size = window.size()
    raw = window.read_head(_FILE_HEADER.size)
    if len(raw) < _FILE_HEADER.size:
        raise UnpackError(f"sparse image truncated: {len(raw)} bytes, the header needs 28")
    header = SparseHeader(*_FILE_HEADER.unpack(raw)[1:])
    if not probe(raw):
        raise UnpackError("not a sparse image: bad magic")
    if header.major_version != 1:
        raise UnpackError(f"sparse image version {header.major_version}.x is not supported")
    if header.file_hdr_sz < _FILE_HEADER.size:
        raise UnpackError(f"sparse file header size {header.file_hdr_sz} is below 28")
    if header.chunk_hdr_sz < _CHUNK_HEADER.size:
        raise UnpackError(f"sparse chunk header size {header.chunk_hdr_sz} is below 12")
    if header.blk_sz == 0 or header.blk_sz % 4:
        raise UnpackError(f"sparse block size {header.blk_sz} is not a positive multiple of 4")
    if header.output_size > limits.max_partition_size:
        raise LimitError(
            f"sparse image expands to {header.output_size} bytes "
            f"({header.total_blks} blocks of {header.blk_sz}), over the partition size limit "
            f"of {limits.max_partition_size} bytes"
        )
    room = size - header.file_hdr_sz
    if header.total_chunks * header.chunk_hdr_sz > room:
        raise UnpackError(
            f"sparse image truncated: {header.total_chunks} chunks announced, "
            f"{max(room, 0)} bytes after the header"
        )
    return header


def expand_sparse(window: Window, out_path: Path, limits: Limits = DEFAULT_LIMITS) -> None:
    """Write the expanded image of the sparse image in ``window`` to ``out_path``.

    Nothing is written unless the whole chunk list is valid. Raises :class:`UnpackError` for a
    malformed or truncated image, :class:`IntegrityError` for a CRC32 chunk that does not
    match, :class:`LimitError` for an image that would exceed ``limits.max_partition_size``; a
    partial output is removed.
    """
    header = read_header(window, limits)
    with open(window.path, "rb", buffering=0) as src:
        fd = src.fileno()
        has_crc = False
        for chunk in _chunks(fd, window, header):
            has_crc = has_crc or chunk.type == CHUNK_CRC32
        try:
            with open(out_path, "wb", buffering=0) as dst:
                _write(fd, dst.fileno(), window, header, verify=has_crc)
        except BaseException:
            out_path.unlink(missing_ok=True)
            raise


class SparseContainer:
    """Android sparse images: one child, the expanded raw image (its partition name is the
    parent's)."""

    name = "sparse"

    def probe(self, window: Window, head: bytes) -> bool:
        """The sparse magic."""
        return probe(head)

    def expand(self, window: Window, ctx: UnpackContext) -> Iterator[Child]:
        """The raw image, expanded into the work directory and removed once it has been read."""
        try:
            header = read_header(window, ctx.limits)
        except LimitError as exc:
            yield Child("raw", None, error=exc, format="sparse")
            return
        out = ctx.new_image_path("raw")
        try:
            ctx.account(header.output_size)
            expand_sparse(window, out, ctx.limits)
        except FwscanError as exc:
            out.unlink(missing_ok=True)
            yield Child("raw", None, error=exc, format="sparse")
            return
        try:
            yield Child("raw", Window(out), partition=None)
        finally:
            out.unlink(missing_ok=True)


def _chunks(fd: int, window: Window, header: SparseHeader) -> Iterator[_Chunk]:
    """The validated chunks, in order; raises :class:`UnpackError` at the first bad one."""
    end = window.offset + window.size()
    pos = window.offset + header.file_hdr_sz
    block = 0
    for index in range(header.total_chunks):
        where = f"sparse chunk {index} at offset {pos - window.offset}"
        raw = os.pread(fd, _CHUNK_HEADER.size, pos)
        if len(raw) < _CHUNK_HEADER.size or pos + header.chunk_hdr_sz > end:
            raise UnpackError(f"{where}: truncated chunk header")
        ctype, _reserved, blocks, total_sz = _CHUNK_HEADER.unpack(raw)
        if total_sz < header.chunk_hdr_sz:
            raise UnpackError(f"{where}: total size {total_sz} is below the chunk header size")
        data_offset = pos + header.chunk_hdr_sz
        data_len = total_sz - header.chunk_hdr_sz
        if data_offset + data_len > end:
            raise UnpackError(
                f"{where}: truncated: the chunk needs {data_len} bytes of data, "
                f"{max(end - data_offset, 0)} are left"
            )
        value = 0
        pattern = b""
        if ctype == CHUNK_RAW:
            if data_len != blocks * header.blk_sz:
                raise UnpackError(
                    f"{where}: raw chunk of {blocks} blocks holds {data_len} bytes, "
                    f"expected {blocks * header.blk_sz}"
                )
        elif ctype in (CHUNK_FILL, CHUNK_CRC32):
            if data_len != 4:
                raise UnpackError(f"{where}: {_type_name(ctype)} chunk holds {data_len} bytes")
            pattern = os.pread(fd, 4, data_offset)
            if len(pattern) != 4:
                raise UnpackError(f"{where}: truncated chunk data")
            value = int.from_bytes(pattern, "little")
            if ctype == CHUNK_CRC32:
                blocks = 0  # a checksum covers no output blocks
        elif ctype == CHUNK_DONT_CARE:
            if data_len != 0:
                raise UnpackError(f"{where}: don't-care chunk holds {data_len} bytes of data")
        else:
            raise UnpackError(f"{where}: unknown chunk type 0x{ctype:04x}")
        if block + blocks > header.total_blks:
            raise UnpackError(
                f"{where}: blocks {block}..{block + blocks} pass the image's "
                f"{header.total_blks} blocks"
            )
        yield _Chunk(index, ctype, block, blocks, data_offset, value, pattern)
        block += blocks
        pos = data_offset + data_len
    if block != header.total_blks:
        raise UnpackError(
            f"sparse chunks cover {block} blocks, the header announces {header.total_blks}"
        )


def _type_name(ctype: int) -> str:
    return {CHUNK_FILL: "fill", CHUNK_CRC32: "CRC32"}.get(ctype, hex(ctype))


def _write(src: int, dst: int, window: Window, header: SparseHeader, *, verify: bool) -> None:
    crc = 0
    copier = RangeCopier(src, dst)
    fills: dict[bytes, bytes] = {}
    for chunk in _chunks(src, window, header):
        out_off = chunk.block * header.blk_sz
        nbytes = chunk.blocks * header.blk_sz
        if chunk.type == CHUNK_RAW:
            if verify:
                crc = copier.copy_crc(chunk.data_offset, out_off, nbytes, crc)
            else:
                copier.copy(chunk.data_offset, out_off, nbytes)
        elif chunk.type == CHUNK_FILL:
            if chunk.value == 0:  # zeros: a hole
                if verify:
                    crc = _crc32_zeros(crc, nbytes)
                continue
            buf = fills.get(chunk.pattern)
            if buf is None:
                buf = fills.setdefault(chunk.pattern, chunk.pattern * (_FILL_BUFFER // 4))
            done = 0
            while done < nbytes:
                part = memoryview(buf)[: min(len(buf), nbytes - done)]
                _pwrite_all(dst, part, out_off + done)
                if verify:
                    crc = zlib.crc32(part, crc)
                done += len(part)
        elif chunk.type == CHUNK_DONT_CARE:
            if verify:
                crc = _crc32_zeros(crc, nbytes)
        elif chunk.value != crc:
            raise IntegrityError(
                f"sparse chunk {chunk.index}: CRC32 0x{chunk.value:08x} does not match the data "
                f"before it (0x{crc:08x})"
            )
    os.ftruncate(dst, header.output_size)


class RangeCopier:
    """Moves byte ranges between two open files, in the kernel (``copy_file_range``) when it
    can, else through one large buffer (also used when a CRC-32 of the bytes is wanted)."""

    def __init__(self, src: int, dst: int) -> None:
        self.src = src
        self.dst = dst
        self.kernel = hasattr(os, "copy_file_range")
        self._buf: bytearray | None = None

    def _buffer(self) -> memoryview:
        if self._buf is None:
            self._buf = bytearray(_COPY_SIZE)
        return memoryview(self._buf)

    def copy(self, src_off: int, dst_off: int, nbytes: int) -> None:
        """Copy ``nbytes`` from ``src_off`` in the source to ``dst_off`` in the output."""
        while nbytes > 0 and self.kernel:
            try:
                n = os.copy_file_range(self.src, self.dst, min(nbytes, 1 << 30), src_off, dst_off)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                self.kernel = False
                break
            if n == 0:
                raise UnpackError("sparse image truncated while copying (the file shrank)")
            src_off += n
            dst_off += n
            nbytes -= n
        if nbytes > 0:
            self.copy_crc(src_off, dst_off, nbytes, 0)

    def copy_crc(self, src_off: int, dst_off: int, nbytes: int, crc: int) -> int:
        """Copy through user space; return the CRC-32 continued over the bytes copied."""
        buf = self._buffer()
        while nbytes > 0:
            n = os.preadv(self.src, [buf[: min(nbytes, len(buf))]], src_off)
            if n == 0:
                raise UnpackError("sparse image truncated while copying (the file shrank)")
            part = buf[:n]
            _pwrite_all(self.dst, part, dst_off)
            crc = zlib.crc32(part, crc)
            src_off += n
            dst_off += n
            nbytes -= n
        return crc


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        n = os.pwrite(fd, data, offset)
        data = data[n:]
        offset += n


def _gf2_mulmod(a: int, b: int) -> int:
    """``a * b`` modulo the CRC polynomial, both in the reflected bit order (``x^0`` is bit
    31)."""
    product = 0
    for _ in range(32):
        if a & 0x80000000:
            product ^= b
        a = (a << 1) & 0xFFFFFFFF
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1
    return product


def _crc32_zeros(crc: int, nbytes: int) -> int:
    """``zlib.crc32(bytes(nbytes), crc)`` in O(log n): appending a zero byte multiplies the
    CRC register by ``x^8`` modulo the polynomial, so ``n`` zero bytes multiply it by
    ``x^(8n)``, computed by repeated squaring."""
    factor = 0x80000000  # x^0
    power = 1 << (31 - 8)  # x^8
    while nbytes:
        if nbytes & 1:
            factor = _gf2_mulmod(factor, power)
        power = _gf2_mulmod(power, power)
        nbytes >>= 1
    return _gf2_mulmod(crc ^ 0xFFFFFFFF, factor) ^ 0xFFFFFFFF

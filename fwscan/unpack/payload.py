"""A/B OTA ``payload.bin`` (update_engine, major version 2), read in pure Python.

Layout: a 24-byte header (magic ``CrAU``, u64 BE major version, u64 BE manifest size, u32 BE
metadata signature size), the ``DeltaArchiveManifest`` protobuf, the metadata signature, then
the data blobs. An operation's ``data_offset`` counts from the end of the metadata signature.

:meth:`Payload.open` parses and checks the header and manifest; :meth:`Payload.extract` rebuilds
one partition of a full payload, decompressing operations in parallel (lzma, bz2 and zstandard
release the GIL) with a bounded number of operations in flight, streaming each one so memory
stays small whatever the operation size, and verifying every recorded hash.
"""

from __future__ import annotations

import bz2
import contextlib
import enum
import hashlib
import itertools
import lzma
import os
import struct
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, NamedTuple, Protocol, cast

import zstandard

from fwscan.errors import IntegrityError, LimitError, NeedsSourceError, UnpackError
from fwscan.formats.protowire import Field, WireError, iter_fields
from fwscan.limits import DEFAULT_LIMITS, Limits, MiB
from fwscan.unpack.base import Window

MAGIC = b"CrAU"
"""The first four bytes of every payload."""
SUPPORTED_MAJOR_VERSION = 2
HEADER_SIZE = 24
"""Magic, major version, manifest size and metadata signature size."""
MAX_METADATA_SIGNATURE_SIZE = 1 * MiB
"""A metadata signature holds a few RSA/EC signatures: a larger size is hostile."""

_HEADER = struct.Struct(">4sQQI")
_SHA256_SIZE = 32
_MIN_BLOCK_SIZE = 512
_MAX_BLOCK_SIZE = 64 * 1024
_DEFAULT_BLOCK_SIZE = 4096
_READ_SIZE = 1 * MiB
"""Compressed bytes read from the payload at a time."""
_PIECE = 1 * MiB
"""Most decompressed bytes asked of a decompressor at a time."""
_XZ_MEMLIMIT = 256 * MiB
_ZSTD_MAX_WINDOW = 128 * MiB
_INFLIGHT_PER_WORKER = 2


class OpType(enum.IntEnum):
    """``InstallOperation.Type``: what an operation does to its destination blocks."""

    REPLACE = 0
    REPLACE_BZ = 1
    MOVE = 2
    BSDIFF = 3
    SOURCE_COPY = 4
    SOURCE_BSDIFF = 5
    ZERO = 6
    DISCARD = 7
    REPLACE_XZ = 8
    PUFFDIFF = 9
    BROTLI_BSDIFF = 10
    ZUCCHINI = 11
    LZ4DIFF_BSDIFF = 12
    LZ4DIFF_PUFFDIFF = 13
    REPLACE_ZSTD = 14


SOURCE_OP_TYPES = frozenset(
    {
        OpType.MOVE,
        OpType.BSDIFF,
        OpType.SOURCE_COPY,
        OpType.SOURCE_BSDIFF,
        OpType.PUFFDIFF,
        OpType.BROTLI_BSDIFF,
        OpType.ZUCCHINI,
        OpType.LZ4DIFF_BSDIFF,
        OpType.LZ4DIFF_PUFFDIFF,
    }
)
"""Operation types that read the old partition: only the source build can apply them."""

_NO_DATA_TYPES = frozenset({OpType.ZERO, OpType.DISCARD})


class Extent(NamedTuple):
    """A run of blocks."""

    start_block: int
    num_blocks: int


@dataclass(frozen=True, slots=True)
class Operation:
    """One ``InstallOperation`` of a partition."""

    type: OpType
    data_offset: int
    """Where the blob starts, counted from the end of the metadata signature."""
    data_length: int
    src_extents: tuple[Extent, ...]
    dst_extents: tuple[Extent, ...]
    data_sha256: bytes | None
    """SHA-256 of the blob, when the payload records one."""


@dataclass(frozen=True)
class PartitionInfo:
    """One ``PartitionUpdate``: the image it builds and the operations that build it."""

    name: str
    new_size: int
    new_hash: bytes | None
    """SHA-256 of the new image, when recorded."""
    old_size: int | None
    """Size of the source image (incremental payloads only)."""
    old_hash: bytes | None
    operations: tuple[Operation, ...]

    @property
    def op_counts(self) -> dict[OpType, int]:
        """How many operations of each type, by type value."""
        return dict(sorted(Counter(op.type for op in self.operations).items()))

    @property
    def source_op_types(self) -> tuple[OpType, ...]:
        """The operation types found that need the source build, in type order."""
        return tuple(t for t in self.op_counts if t in SOURCE_OP_TYPES)

    @property
    def is_incremental(self) -> bool:
        """Whether rebuilding this partition needs the source build."""
        return bool(self.source_op_types)


@dataclass(frozen=True)
class PayloadInfo:
    """What the header and manifest of a payload say."""

    major_version: int
    minor_version: int
    """0 for a full payload; a delta payload's version otherwise."""
    block_size: int
    partitions: tuple[PartitionInfo, ...]

    @property
    def is_incremental(self) -> bool:
        """Whether this is a delta payload (it may still fully replace some partitions)."""
        return self.minor_version != 0 or any(p.is_incremental for p in self.partitions)


def probe(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts like a payload."""
    return head[:4] == MAGIC


class Payload:
    """An opened, validated payload. Use :meth:`open`; it holds no open file."""

    def __init__(self, window: Window, info: PayloadInfo, data_start: int) -> None:
        self.window = window
        """Where the payload's bytes are."""
        self.info = info
        """The parsed header and manifest."""
        self.data_start = data_start
        """Offset in the window of the first data blob (end of the metadata signature)."""

    @classmethod
    def open(cls, window: Window, limits: Limits = DEFAULT_LIMITS) -> Payload:
        """Parse and check the header and manifest of the payload in ``window``.

        Raises :class:`UnpackError` (or :class:`LimitError`) for a bad magic, an unsupported
        major version, sizes past the end of the file or past ``limits``, a malformed manifest,
        destination extents outside their partition or data ranges outside the file.
        """
        file_size = window.size()
        head = window.read_head(HEADER_SIZE)
        if head[:4] != MAGIC:
            raise UnpackError(f"not an A/B OTA payload: bad magic {head[:4]!r} (expected b'CrAU')")
        if len(head) >= 12:
            major = int.from_bytes(head[4:12], "big")
            if major == 1:
                raise UnpackError(
                    "payload major version 1 (the legacy Chrome OS format) is not supported; "
                    "only major version 2 is"
                )
            if major != SUPPORTED_MAJOR_VERSION:
                raise UnpackError(
                    f"unsupported payload major version {major}; only major version 2 is supported"
                )
        if len(head) < HEADER_SIZE:
            raise UnpackError(f"truncated payload: {file_size} bytes, shorter than its header")
        _, major, manifest_size, signature_size = _HEADER.unpack(head)
        if manifest_size > limits.max_manifest_size:
            raise LimitError(
                f"payload manifest size {manifest_size} exceeds the limit "
                f"{limits.max_manifest_size}"
            )
        if HEADER_SIZE + manifest_size > file_size:
            raise UnpackError(
                f"truncated payload: the manifest ({manifest_size} bytes) extends past the end "
                f"of the file ({file_size} bytes)"
            )
        if signature_size > MAX_METADATA_SIGNATURE_SIZE:
            raise LimitError(
                f"payload metadata signature size {signature_size} exceeds the limit "
                f"{MAX_METADATA_SIGNATURE_SIZE}"
            )
        data_start = HEADER_SIZE + manifest_size + signature_size
        if data_start > file_size:
            raise UnpackError(
                f"truncated payload: the metadata signature ({signature_size} bytes) extends "
                f"past the end of the file ({file_size} bytes)"
            )
        with window.open() as f:
            f.seek(HEADER_SIZE)
            manifest = _read_exact(f, manifest_size)
        info = _parse_manifest(manifest, major, limits)
        _check_ranges(info, file_size - data_start, data_start)
        return cls(window, info, data_start)

    def partition(self, name: str) -> PartitionInfo:
        """The partition called ``name``; :class:`UnpackError` if there is none."""
        for part in self.info.partitions:
            if part.name == name:
                return part
        names = ", ".join(p.name for p in self.info.partitions)
        raise UnpackError(f"no partition {name!r} in the payload (it has: {names})")

    def extract(self, name: str, out_path: Path, *, workers: int = 2) -> None:
        """Rebuild partition ``name`` into ``out_path`` and verify it.

        ``out_path`` is created or truncated to the partition size, so regions no operation
        writes (ZERO, DISCARD) stay sparse holes. Operations run on ``workers`` threads. Each
        blob is checked against its SHA-256, the image against ``new_partition_info.hash``.
        Raises :class:`NeedsSourceError` for an incremental partition, :class:`IntegrityError`
        on a hash mismatch and :class:`UnpackError` on malformed data; ``out_path`` is removed
        when extraction fails.
        """
        if workers < 1:
            raise ValueError("workers must be at least 1")
        part = self.partition(name)
        if part.is_incremental:
            found = " and ".join(t.name for t in part.source_op_types)
            raise NeedsSourceError(
                f"partition {name!r} is an incremental update ({found} operations): "
                "the source build is needed to rebuild it"
            )
        _check_no_overlap(part, self.info.block_size)
        fd = os.open(out_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, part.new_size)
            _check_image_hash(part, self._apply_all(part, fd, workers))
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                out_path.unlink()
            raise
        os.close(fd)

    def _apply_all(self, part: PartitionInfo, fd: int, workers: int) -> bytes:
        """Run every operation of ``part``; return the SHA-256 of the resulting image."""
        hasher = _ImageHasher(fd, part.new_size)
        block = self.info.block_size
        pending: deque[tuple[Operation, Future[None] | None]] = deque()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="payload") as pool:
            try:
                for index, op in enumerate(part.operations):
                    future = None
                    if op.type not in _NO_DATA_TYPES:
                        future = pool.submit(self.apply_data_op, part.name, index, op, fd)
                    pending.append((op, future))
                    while len(pending) > workers * _INFLIGHT_PER_WORKER:
                        _finish(pending.popleft(), hasher, block)
                while pending:
                    _finish(pending.popleft(), hasher, block)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return hasher.digest()

    def apply_data_op(self, part_name: str, index: int, op: Operation, fd: int) -> None:
        """Decode one operation that carries its own data (a type in :data:`DATA_OP_TYPES`)
        into its destination extents of the image open as ``fd`` (thread-safe)."""
        sink = _ExtentSink(fd, op.dst_extents, self.info.block_size)
        failure: _BadDataError | None = None
        with self.window.open() as f:
            f.seek(self.data_start + op.data_offset)
            blob = _BlobReader(f, op.data_length)
            try:
                _DECODERS[op.type](blob, sink)
                sink.finish()
            except _BadDataError as exc:
                failure = exc
            blob.drain()
        where = f"partition {part_name!r}, operation {index} ({op.type.name})"
        if op.data_sha256 is not None and blob.digest() != op.data_sha256:
            raise IntegrityError(f"{where}: the data blob's SHA-256 does not match the manifest")
        if failure is not None:
            raise UnpackError(f"{where}: {failure}") from failure


def _check_image_hash(part: PartitionInfo, digest: bytes) -> None:
    if part.new_hash is not None and digest != part.new_hash:
        raise IntegrityError(
            f"partition {part.name!r}: the image's SHA-256 {digest.hex()} does not match "
            f"the recorded {part.new_hash.hex()}"
        )


def _finish(
    entry: tuple[Operation, Future[None] | None], hasher: _ImageHasher, block_size: int
) -> None:
    op, future = entry
    if future is not None:
        future.result()
    hasher.advance(op.dst_extents, block_size)


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = f.read(n - len(data))
        if not chunk:
            raise UnpackError("truncated payload: file ended while reading")
        data += chunk
    return bytes(data)


# --- manifest ---------------------------------------------------------------------------------


def _parse_manifest(raw: bytes, major: int, limits: Limits) -> PayloadInfo:
    block_size = _DEFAULT_BLOCK_SIZE
    minor = 0
    part_fields: list[Field] = []
    try:
        for field in iter_fields(raw):
            if field.number == 3:
                block_size = field.as_int()
            elif field.number == 12:
                minor = field.as_int()
            elif field.number == 13:
                part_fields.append(field)
    except WireError as exc:
        raise UnpackError(f"malformed payload manifest: {exc}") from exc
    if not _MIN_BLOCK_SIZE <= block_size <= _MAX_BLOCK_SIZE or block_size & (block_size - 1):
        raise UnpackError(f"payload block size {block_size} is not a power of two in 512..64K")

    budget = [limits.max_operations]
    parts: list[PartitionInfo] = []
    names: set[str] = set()
    total = 0
    for number, field in enumerate(part_fields):
        part = _parse_partition(field, number, block_size, limits, budget)
        if part.name in names:
            raise UnpackError(f"partition {part.name!r} appears twice in the payload")
        names.add(part.name)
        total += part.new_size
        if total > limits.max_total_extracted:
            raise LimitError(
                f"payload partitions add up to more than the limit {limits.max_total_extracted}"
            )
        parts.append(part)
    return PayloadInfo(major, minor, block_size, tuple(parts))


def _parse_partition(
    field: Field, number: int, block_size: int, limits: Limits, budget: list[int]
) -> PartitionInfo:
    where = f"payload partition #{number}"
    name: str | None = None
    new_info: tuple[int, bytes | None] | None = None
    old_info: tuple[int, bytes | None] | None = None
    op_fields: list[Field] = []
    try:
        for sub in field.message():
            if sub.number == 1:
                name = sub.as_str()
                where = f"partition {name!r}"
            elif sub.number == 6:
                old_info = _parse_info(sub)
            elif sub.number == 7:
                new_info = _parse_info(sub)
            elif sub.number == 8:
                budget[0] -= 1
                if budget[0] < 0:
                    raise LimitError(
                        f"payload has more than the limit of {limits.max_operations} operations"
                    )
                op_fields.append(sub)
        if name is None:
            raise UnpackError(f"{where} has no name")
        _check_name(name)
        if new_info is None:
            raise UnpackError(f"{where} has no new_partition_info")
        new_size, new_hash = new_info
        if new_size > limits.max_partition_size:
            raise LimitError(
                f"{where}: size {new_size} exceeds the limit {limits.max_partition_size}"
            )
        ops = tuple(_parse_operation(f, i, where) for i, f in enumerate(op_fields))
    except WireError as exc:
        raise UnpackError(f"{where}: malformed manifest entry: {exc}") from exc
    for index, op in enumerate(ops):
        for ext in op.dst_extents:
            if (ext.start_block + ext.num_blocks) * block_size > new_size:
                raise UnpackError(
                    f"{where}, operation {index}: dst extent {ext.start_block}+{ext.num_blocks} "
                    f"lies past the partition size {new_size}"
                )
    old_size, old_hash = old_info if old_info is not None else (None, None)
    return PartitionInfo(name, new_size, new_hash, old_size, old_hash, ops)


def _check_name(name: str) -> None:
    bad = not name or name in (".", "..") or any(c in name for c in "/\\") or not name.isprintable()
    if bad or len(name.encode("utf-8")) > 255:
        raise UnpackError(f"refused partition name {name!r}")


def _parse_info(field: Field) -> tuple[int, bytes | None]:
    size = 0
    digest: bytes | None = None
    for sub in field.message():
        if sub.number == 1:
            size = sub.as_int()
        elif sub.number == 2:
            digest = _parse_hash(sub)
    return size, digest


def _parse_hash(field: Field) -> bytes | None:
    digest = field.as_bytes()
    if not digest:
        return None
    if len(digest) != _SHA256_SIZE:
        raise WireError(f"field {field.number}: a SHA-256 hash of {len(digest)} bytes")
    return digest


def _parse_extent(field: Field) -> Extent:
    start = count = 0
    for sub in field.message():
        if sub.number == 1:
            start = sub.as_int()
        elif sub.number == 2:
            count = sub.as_int()
    return Extent(start, count)


def _parse_operation(field: Field, index: int, where: str) -> Operation:
    op_type: int | None = None
    data_offset = data_length = 0
    src: list[Extent] = []
    dst: list[Extent] = []
    digest: bytes | None = None
    for sub in field.message():
        number = sub.number
        if number == 1:
            op_type = sub.as_int()
        elif number == 2:
            data_offset = sub.as_int()
        elif number == 3:
            data_length = sub.as_int()
        elif number == 4:
            src.append(_parse_extent(sub))
        elif number == 6:
            dst.append(_parse_extent(sub))
        elif number == 8:
            digest = _parse_hash(sub)
    if op_type is None:
        raise UnpackError(f"{where}, operation {index}: no type")
    try:
        kind = OpType(op_type)
    except ValueError:
        raise UnpackError(f"{where}, operation {index}: unknown operation type {op_type}") from None
    return Operation(kind, data_offset, data_length, tuple(src), tuple(dst), digest)


def _check_ranges(info: PayloadInfo, data_size: int, data_start: int) -> None:
    """Every blob must lie inside the data area of the file."""
    for part in info.partitions:
        for index, op in enumerate(part.operations):
            if op.data_length and op.data_offset + op.data_length > data_size:
                raise UnpackError(
                    f"truncated payload: partition {part.name!r}, operation {index}: data at "
                    f"{data_start + op.data_offset}+{op.data_length} lies past the end of the "
                    f"file ({data_start + data_size} bytes)"
                )


def _check_no_overlap(part: PartitionInfo, block_size: int) -> None:
    """Operations run in parallel, so no two may write the same block."""
    runs = sorted(
        (ext.start_block, ext.start_block + ext.num_blocks, index)
        for index, op in enumerate(part.operations)
        for ext in op.dst_extents
        if ext.num_blocks
    )
    for (_, prev_end, prev_index), (start, _, index) in itertools.pairwise(runs):
        if start < prev_end:
            raise UnpackError(
                f"partition {part.name!r}: operations {prev_index} and {index} write "
                f"overlapping blocks (at block {start}, block size {block_size})"
            )


# --- operations -------------------------------------------------------------------------------


class _BadDataError(Exception):
    """An operation's blob does not decode to its destination extents."""


class _BlobReader:
    """Reads one blob from the payload, hashing every byte read."""

    def __init__(self, f: BinaryIO, length: int) -> None:
        self._f = f
        self._left = length
        self._sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that remain if ``n`` < 0); ``b""`` at the end of the blob."""
        n = self._left if n < 0 else min(n, self._left)
        if n == 0:
            return b""
        data = self._f.read(n)
        if not data:
            raise UnpackError("truncated payload: the file ended inside a data blob")
        self._left -= len(data)
        self._sha.update(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_READ_SIZE):
            yield chunk

    def drain(self) -> None:
        """Read (and hash) whatever the decoder left unread."""
        for _ in self:
            pass

    def digest(self) -> bytes:
        """SHA-256 of the bytes read so far."""
        return self._sha.digest()


class _ExtentSink:
    """Writes a stream of bytes across an operation's destination extents with ``pwrite``."""

    def __init__(self, fd: int, extents: tuple[Extent, ...], block_size: int) -> None:
        self._fd = fd
        self._block_size = block_size
        self._runs = [
            (e.start_block * block_size, e.num_blocks * block_size) for e in extents if e.num_blocks
        ]
        self._total = sum(length for _, length in self._runs)
        self._written = 0
        self._run = 0
        self._run_pos = 0

    def write(self, data: bytes) -> None:
        """Write the next bytes; :class:`_BadDataError` if they overflow the extents."""
        if len(data) > self._total - self._written:
            raise _BadDataError(
                f"the data decodes to more than the {self._total} bytes of its dst extents"
            )
        view = memoryview(data)
        while view:
            start, length = self._runs[self._run]
            take = min(length - self._run_pos, len(view))
            _pwrite_all(self._fd, view[:take], start + self._run_pos)
            view = view[take:]
            self._written += take
            self._run_pos += take
            if self._run_pos == length:
                self._run += 1
                self._run_pos = 0

    def finish(self) -> None:
        """Check the output filled the extents, but for a zero-padded last block."""
        if self._total - self._written >= self._block_size:
            raise _BadDataError(
                f"the data decodes to {self._written} bytes, short of the {self._total} bytes "
                "of its dst extents"
            )


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data = data[n:]
        offset += n


class _ImageHasher:
    """SHA-256 of the image, advanced while operations complete in order.

    As long as completed operations cover the image contiguously from its start, their output
    is read back and hashed at once (overlapping with the workers); the rest is hashed by
    :meth:`digest` in one pass. Operations never overlap, so a hashed prefix is final.
    """

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self._sha = hashlib.sha256()
        self._done = 0
        self._in_order = True
        self._buf = bytearray(_READ_SIZE)

    def advance(self, extents: tuple[Extent, ...], block_size: int) -> None:
        """An operation writing ``extents`` has completed."""
        if not self._in_order:
            return
        for ext in extents:
            if not ext.num_blocks:
                continue
            if ext.start_block * block_size != self._done:
                self._in_order = False
                return
            self._hash_to((ext.start_block + ext.num_blocks) * block_size)

    def digest(self) -> bytes:
        """Hash what is left and return the digest of the whole image."""
        self._hash_to(self._size)
        return self._sha.digest()

    def _hash_to(self, end: int) -> None:
        view = memoryview(self._buf)
        while self._done < end:
            n = os.preadv(self._fd, [view[: min(len(view), end - self._done)]], self._done)
            if n == 0:
                raise UnpackError("the partition image shrank while it was being written")
            self._sha.update(view[:n])
            self._done += n


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def needs_input(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


def _copy(blob: _BlobReader, sink: _ExtentSink) -> None:
    for chunk in blob:
        sink.write(chunk)


def _inflate(
    blob: _BlobReader,
    sink: _ExtentSink,
    make: Callable[[], _Decompressor],
    errors: tuple[type[Exception], ...],
    kind: str,
) -> None:
    """Stream ``blob`` through decompressors from ``make`` (concatenated streams allowed),
    asking for at most :data:`_PIECE` bytes of output at a time."""
    decoder: _Decompressor | None = make()
    for chunk in blob:
        data = chunk
        while True:
            if decoder is None:
                if not data:
                    break
                decoder = make()
            try:
                out = decoder.decompress(data, _PIECE)
            except errors as exc:
                raise _BadDataError(f"corrupt {kind} data: {exc}") from exc
            data = b""
            sink.write(out)
            if decoder.eof:
                data = decoder.unused_data
                decoder = None
            elif decoder.needs_input:
                break
    if decoder is not None:
        raise _BadDataError(f"truncated {kind} data")


def _unxz(blob: _BlobReader, sink: _ExtentSink) -> None:
    _inflate(
        blob,
        sink,
        lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=_XZ_MEMLIMIT),
        (lzma.LZMAError,),
        "xz",
    )


def _unbz2(blob: _BlobReader, sink: _ExtentSink) -> None:
    # BZ2Decompressor reports corrupt data as OSError.
    _inflate(blob, sink, bz2.BZ2Decompressor, (OSError, ValueError), "bzip2")


def _unzstd(blob: _BlobReader, sink: _ExtentSink) -> None:
    dctx = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
    try:
        # zstandard only calls read() on its source.
        with dctx.stream_reader(
            cast("IO[bytes]", blob), read_size=_READ_SIZE, read_across_frames=True, closefd=False
        ) as reader:
            while out := reader.read(_PIECE):
                sink.write(out)
    except zstandard.ZstdError as exc:
        raise _BadDataError(f"corrupt zstd data: {exc}") from exc


_DECODERS: dict[OpType, Callable[[_BlobReader, _ExtentSink], None]] = {
    OpType.REPLACE: _copy,
    OpType.REPLACE_BZ: _unbz2,
    OpType.REPLACE_XZ: _unxz,
    OpType.REPLACE_ZSTD: _unzstd,
}
DATA_OP_TYPES = frozenset(_DECODERS)
"""The operation types :meth:`Payload.apply_data_op` decodes (their data is the new bytes)."""

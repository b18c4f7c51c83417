"""Incremental (delta) A/B payloads applied to their source build, and bsdiff patches.

An incremental ``payload.bin`` (``minor_version`` >= 2) rebuilds a partition from the same
partition of the build it updates. :func:`apply_incremental` does what update_engine does when it
writes the inactive slot, reading the source image given on the command line instead of the
other slot:

- ``SOURCE_COPY``: the source blocks of ``src_extents`` are copied to ``dst_extents``.
- ``SOURCE_BSDIFF`` and ``BROTLI_BSDIFF``: a bsdiff patch (the blob) is applied to the bytes of
  ``src_extents`` (whole blocks, concatenated) and the result written to ``dst_extents``. Both
  types accept both patch formats, told apart by their magic as AOSP ``external/bsdiff`` does
  (in practice ``SOURCE_BSDIFF`` carries ``BSDIFF40`` and ``BROTLI_BSDIFF`` carries ``BSDF2``).
- ``REPLACE``, ``REPLACE_BZ``, ``REPLACE_XZ``, ``REPLACE_ZSTD``: delegated to the full-payload
  reader (:mod:`fwscan.unpack.payload`), which also checks the blob's SHA-256.
- ``ZERO`` and ``DISCARD``: nothing to write, the output starts as a sparse file of zeros.

Integrity: when the manifest records ``old_partition_info.hash``, the first ``old_size`` bytes of
the source image must have that SHA-256 (so a wrong source is named as such before any work);
each operation's ``src_sha256_hash`` is checked against its source extents and
``data_sha256_hash`` against its blob; the result against ``new_partition_info.hash``. A
mismatch is an :class:`~fwscan.errors.IntegrityError`.

Patch formats (:func:`bspatch`), after AOSP ``external/bsdiff`` (``patch_reader.cc``,
``bspatch.cc``): a 32-byte header (8-byte magic, then the compressed control and diff stream
lengths and the output size, each a 64-bit little-endian sign-and-magnitude integer), then the
control, diff and extra streams. ``BSDIFF40`` compresses all three with bzip2; ``BSDF2`` gives
one compression type per stream in the magic's last three bytes (0 none, 1 bzip2, 2 brotli;
AOSP's reader itself only takes 1 and 2). The control stream is a list of
``(diff_len, extra_len, old_seek)`` triples: add ``diff_len`` diff bytes to as many old bytes
(old bytes outside the old data count as zero), copy ``extra_len`` extra bytes, then move the old
position by ``old_seek``. Control entries are read until the output is complete; streams are
decompressed only as far as the control entries use them (at most the output size), so a
compression bomb cannot grow past that. The additions themselves run in ``bsdiff4``'s C core.

Limitations: ``PUFFDIFF``, ``ZUCCHINI`` and ``LZ4DIFF_*`` operations, and the in-place ``MOVE``
and ``BSDIFF`` operations of minor version 1 (Chrome OS), are refused with an
:class:`~fwscan.errors.UnpackError` naming the operation. One bsdiff operation keeps its source
and output in memory, bounded by :data:`MAX_PATCH_SIZE`. Operations run one at a time.
"""

from __future__ import annotations

import bz2
import contextlib
import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import brotli  # type: ignore[import-untyped]
import bsdiff4.core  # type: ignore[import-untyped]

from fwscan.errors import FwscanError, IntegrityError, LimitError, NeedsSourceError, UnpackError
from fwscan.formats.protowire import WireError, iter_fields
from fwscan.limits import GiB, MiB
from fwscan.unpack import payload as payload_mod
from fwscan.unpack.base import Child, UnpackContext, Window
from fwscan.unpack.payload import Extent, Operation, OpType, PartitionInfo, Payload

MAX_PATCH_SIZE = 1 * GiB
"""Largest source or output of one bsdiff patch (both are held in memory while it applies)."""
MAX_CONTROL_SIZE = 128 * MiB
"""Most decompressed control-stream bytes read from one bsdiff patch."""

BSDIFF40_MAGIC = b"BSDIFF40"
BSDF2_MAGIC = b"BSDF2"
_PATCH_HEADER_SIZE = 32
_CONTROL_ENTRY_SIZE = 24
_MAX_OLD_POS = 1 << 62
_STREAM_TYPES = {0: "none", 1: "bzip2", 2: "brotli"}
_CHUNK = 1 * MiB
_PAYLOAD_HEADER_SIZE = 24

_DIFF_TYPES = frozenset({OpType.SOURCE_BSDIFF, OpType.BROTLI_BSDIFF})
_UNSUPPORTED = {
    OpType.PUFFDIFF: "PUFFDIFF operations cannot be applied yet",
    OpType.ZUCCHINI: "ZUCCHINI operations cannot be applied yet",
    OpType.LZ4DIFF_BSDIFF: "LZ4DIFF_BSDIFF operations cannot be applied yet",
    OpType.LZ4DIFF_PUFFDIFF: "LZ4DIFF_PUFFDIFF operations cannot be applied yet",
    OpType.MOVE: "MOVE operations (in-place deltas of minor version 1) cannot be applied",
    OpType.BSDIFF: "BSDIFF operations (in-place deltas of minor version 1) cannot be applied",
}


# --- bsdiff patches ---------------------------------------------------------------------------


def _offtin(raw: bytes) -> int:
    """A bsdiff integer: 64-bit little-endian magnitude with the sign in the top bit."""
    magnitude = int.from_bytes(raw, "little") & ((1 << 63) - 1)
    return -magnitude if raw[7] & 0x80 else magnitude


def patch_new_size(patch: bytes) -> int:
    """The output size a ``BSDIFF40``/``BSDF2`` patch declares (:class:`UnpackError` if it has
    no valid header)."""
    _stream_types(patch)
    return _offtin(patch[24:32])


def _stream_types(patch: bytes) -> tuple[int, int, int]:
    if len(patch) < _PATCH_HEADER_SIZE:
        raise UnpackError(f"bsdiff patch of {len(patch)} bytes, shorter than its 32-byte header")
    if patch[:8] == BSDIFF40_MAGIC:
        return (1, 1, 1)
    if patch[:5] == BSDF2_MAGIC:
        ctrl, diff, extra = patch[5], patch[6], patch[7]
        for kind in (ctrl, diff, extra):
            if kind not in _STREAM_TYPES:
                raise UnpackError(f"BSDF2 patch: unknown stream compression type {kind}")
        return (ctrl, diff, extra)
    raise UnpackError(f"not a bsdiff patch: magic {patch[:8]!r} (expected BSDIFF40 or BSDF2)")


def _decompress(kind: int, data: bytes, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of the stream ``data`` compressed with ``kind``."""
    if limit <= 0 or not data:
        return b""
    try:
        if kind == 0:
            return data[:limit]
        if kind == 1:
            return bz2.BZ2Decompressor().decompress(data, max_length=limit)
        out: bytes = brotli.Decompressor().process(data, output_buffer_limit=limit)
        return out[:limit]
    except (OSError, ValueError, EOFError, brotli.error) as exc:
        raise UnpackError(
            f"bsdiff patch: corrupt {_STREAM_TYPES[kind]} {what} stream: {exc}"
        ) from exc


def bspatch(old: bytes, patch: bytes, *, max_new_size: int = MAX_PATCH_SIZE) -> bytes:
    """Apply a ``BSDIFF40`` or ``BSDF2`` patch to ``old`` and return the new bytes.

    Raises :class:`UnpackError` for a malformed or truncated patch, :class:`LimitError` when the
    declared output is larger than ``max_new_size``.
    """
    types = _stream_types(patch)
    ctrl_len = _offtin(patch[8:16])
    diff_len = _offtin(patch[16:24])
    new_size = _offtin(patch[24:32])
    body = len(patch) - _PATCH_HEADER_SIZE
    if ctrl_len < 0 or diff_len < 0 or new_size < 0 or ctrl_len + diff_len > body:
        raise UnpackError(
            f"corrupt bsdiff patch header: control {ctrl_len}, diff {diff_len}, output "
            f"{new_size} bytes in a patch of {len(patch)} bytes"
        )
    if new_size > max_new_size:
        raise LimitError(f"bsdiff patch output of {new_size} bytes exceeds {max_new_size}")
    diff_start = _PATCH_HEADER_SIZE + ctrl_len
    extra_start = diff_start + diff_len
    ctrl_limit = min(_CONTROL_ENTRY_SIZE * (new_size + 1), MAX_CONTROL_SIZE)
    ctrl = _decompress(types[0], patch[_PATCH_HEADER_SIZE:diff_start], ctrl_limit, "control")
    diff = _decompress(types[1], patch[diff_start:extra_start], new_size, "diff")
    extra = _decompress(types[2], patch[extra_start:], new_size, "extra")

    pos = new_pos = old_pos = diff_used = extra_used = 0
    while new_pos < new_size:
        if pos + _CONTROL_ENTRY_SIZE > len(ctrl):
            raise UnpackError(
                f"bsdiff patch: the control stream ends at output byte {new_pos} of {new_size}"
            )
        add = _offtin(ctrl[pos : pos + 8])
        copy = _offtin(ctrl[pos + 8 : pos + 16])
        seek = _offtin(ctrl[pos + 16 : pos + 24])
        pos += _CONTROL_ENTRY_SIZE
        if add < 0 or copy < 0 or new_pos + add + copy > new_size:
            raise UnpackError(
                f"bsdiff patch: control entry ({add}, {copy}) at output byte {new_pos} goes "
                f"past the output size {new_size}"
            )
        new_pos += add + copy
        diff_used += add
        extra_used += copy
        old_pos += add + seek
        if abs(old_pos) > _MAX_OLD_POS:
            raise UnpackError("bsdiff patch: the old position runs out of range")
    if diff_used > len(diff) or extra_used > len(extra):
        raise UnpackError(
            f"bsdiff patch: truncated streams (diff {len(diff)} of {diff_used} bytes, extra "
            f"{len(extra)} of {extra_used} bytes)"
        )
    try:
        out = bsdiff4.core.patch(old, new_size, ctrl[:pos], diff[:diff_used], extra[:extra_used])
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise UnpackError(f"bsdiff patch cannot be applied: {exc}") from exc
    if not isinstance(out, bytes) or len(out) != new_size:
        raise UnpackError("bsdiff patch: the output does not have the declared size")
    return out


# --- incremental payload operations -----------------------------------------------------------


def apply_incremental(payload: Payload, name: str, source_image: Path, out_path: Path) -> None:
    """Rebuild partition ``name`` of an incremental payload from ``source_image``.

    ``out_path`` is created (or truncated) to the new partition size; it is removed when the
    rebuild fails. Raises :class:`IntegrityError` when the source image, an operation's source
    blocks or blob, or the result do not match the hashes in the manifest;
    :class:`UnpackError` for malformed operations, source extents past the end of the source
    image, or operation types not supported (see the module documentation); :class:`LimitError`
    when one bsdiff operation exceeds :data:`MAX_PATCH_SIZE`.
    """
    part = payload.partition(name)
    block = payload.info.block_size
    for index, op in enumerate(part.operations):
        if op.type in _UNSUPPORTED:
            raise UnpackError(f"partition {name!r}, operation {index}: {_UNSUPPORTED[op.type]}")
    src_hashes = _source_hashes(payload, name, len(part.operations))
    try:
        src_fd = os.open(source_image, os.O_RDONLY)
    except OSError as exc:
        raise UnpackError(
            f"partition {name!r}: cannot open the source image {source_image}: {exc.strerror}"
        ) from exc
    try:
        src_size = os.fstat(src_fd).st_size
        _check_source_image(part, src_fd, src_size)
        fd = os.open(out_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, part.new_size)
            for index, op in enumerate(part.operations):
                where = f"partition {name!r}, operation {index} ({op.type.name})"
                if op.type in payload_mod.DATA_OP_TYPES:
                    payload.apply_data_op(name, index, op, fd)
                elif op.type == OpType.SOURCE_COPY:
                    _source_copy(op, src_fd, src_size, fd, block, src_hashes[index], where)
                elif op.type in _DIFF_TYPES:
                    _source_diff(payload, op, src_fd, src_size, fd, block, src_hashes[index], where)
                # ZERO and DISCARD: the blocks of the fresh sparse file are already zeros.
            _check_result(part, fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                out_path.unlink()
            raise
        os.close(fd)
    finally:
        os.close(src_fd)


def _source_hashes(payload: Payload, name: str, count: int) -> tuple[bytes | None, ...]:
    """``src_sha256_hash`` of each operation of ``name`` (the shared reader does not keep it)."""
    head = payload.window.read_head(_PAYLOAD_HEADER_SIZE)
    manifest_size = int.from_bytes(head[12:20], "big")
    with payload.window.open() as f:
        f.seek(_PAYLOAD_HEADER_SIZE)
        raw = f.read(manifest_size)
    try:
        for field in iter_fields(raw):
            if field.number != 13:
                continue
            part_name: str | None = None
            hashes: list[bytes | None] = []
            for sub in field.message():
                if sub.number == 1:
                    part_name = sub.as_str()
                elif sub.number == 8:
                    digest: bytes | None = None
                    for item in sub.message():
                        if item.number == 9:
                            digest = item.as_bytes() or None
                    if digest is not None and len(digest) != hashlib.sha256().digest_size:
                        raise UnpackError(
                            f"partition {name!r}: a src_sha256_hash of {len(digest)} bytes"
                        )
                    hashes.append(digest)
            if part_name == name:
                if len(hashes) != count:
                    raise UnpackError(f"partition {name!r}: operations changed while reading")
                return tuple(hashes)
    except WireError as exc:
        raise UnpackError(f"malformed payload manifest: {exc}") from exc
    raise UnpackError(f"no partition {name!r} in the payload manifest")


def _check_source_image(part: PartitionInfo, fd: int, size: int) -> None:
    if part.old_size is None:
        return
    if size < part.old_size:
        raise UnpackError(
            f"partition {part.name!r}: the source image has {size} bytes, fewer than the "
            f"{part.old_size} the payload was made from"
        )
    if part.old_hash is None:
        return
    digest = _hash_file(fd, part.old_size)
    if digest != part.old_hash:
        raise IntegrityError(
            f"partition {part.name!r}: the source image is not the build this update applies "
            f"to (SHA-256 of its first {part.old_size} bytes is {digest.hex()}, the payload "
            f"expects {part.old_hash.hex()})"
        )


def _hash_file(fd: int, size: int) -> bytes:
    sha = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    done = 0
    while done < size:
        n = os.preadv(fd, [view[: min(_CHUNK, size - done)]], done)
        if n == 0:
            raise UnpackError("a file shrank while it was being hashed")
        sha.update(view[:n])
        done += n
    return sha.digest()


def _check_result(part: PartitionInfo, fd: int) -> None:
    if part.new_hash is None:
        return
    digest = _hash_file(fd, part.new_size)
    if digest != part.new_hash:
        raise IntegrityError(
            f"partition {part.name!r}: the rebuilt image's SHA-256 {digest.hex()} does not match "
            f"the recorded {part.new_hash.hex()}"
        )


def _runs(extents: tuple[Extent, ...], block: int) -> list[tuple[int, int]]:
    return [(e.start_block * block, e.num_blocks * block) for e in extents if e.num_blocks]


def _iter_source(
    src_fd: int, src_size: int, extents: tuple[Extent, ...], block: int, where: str
) -> Iterator[bytes]:
    """The bytes of ``extents`` in the source image, in chunks; a short last block reads as
    zero-padded, an extent past the end is refused."""
    src_blocks = -(-src_size // block)
    for ext in extents:
        if ext.start_block + ext.num_blocks > src_blocks:
            raise UnpackError(
                f"{where}: src extent {ext.start_block}+{ext.num_blocks} lies past the end of "
                f"the source image ({src_blocks} blocks)"
            )
    for offset, length in _runs(extents, block):
        done = 0
        while done < length:
            want = min(_CHUNK, length - done)
            data = os.pread(src_fd, want, offset + done)
            if len(data) < want:
                data += bytes(want - len(data))
            yield data
            done += want


def _write_extents(fd: int, extents: tuple[Extent, ...], block: int, data: bytes) -> None:
    view = memoryview(data)
    for offset, length in _runs(extents, block):
        if not view:
            return
        piece = view[:length]
        _pwrite_all(fd, piece, offset)
        view = view[len(piece) :]


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data = data[n:]
        offset += n


def _check_src_hash(sha: hashlib._Hash, expected: bytes | None, where: str) -> None:
    if expected is not None and sha.digest() != expected:
        raise IntegrityError(
            f"{where}: the source blocks do not match src_sha256_hash (a different source build?)"
        )


def _source_copy(
    op: Operation,
    src_fd: int,
    src_size: int,
    fd: int,
    block: int,
    src_hash: bytes | None,
    where: str,
) -> None:
    src_blocks = sum(e.num_blocks for e in op.src_extents)
    dst_blocks = sum(e.num_blocks for e in op.dst_extents)
    if src_blocks != dst_blocks:
        raise UnpackError(f"{where}: {src_blocks} source blocks for {dst_blocks} destination ones")
    sha = hashlib.sha256()
    runs = _runs(op.dst_extents, block)
    run = run_pos = 0
    for chunk in _iter_source(src_fd, src_size, op.src_extents, block, where):
        sha.update(chunk)
        view = memoryview(chunk)
        while view:
            start, length = runs[run]
            take = min(length - run_pos, len(view))
            _pwrite_all(fd, view[:take], start + run_pos)
            view = view[take:]
            run_pos += take
            if run_pos == length:
                run += 1
                run_pos = 0
    _check_src_hash(sha, src_hash, where)


def _source_diff(
    payload: Payload,
    op: Operation,
    src_fd: int,
    src_size: int,
    fd: int,
    block: int,
    src_hash: bytes | None,
    where: str,
) -> None:
    src_bytes = sum(e.num_blocks for e in op.src_extents) * block
    dst_bytes = sum(e.num_blocks for e in op.dst_extents) * block
    if max(src_bytes, dst_bytes, op.data_length) > MAX_PATCH_SIZE:
        raise LimitError(f"{where}: a bsdiff operation larger than {MAX_PATCH_SIZE} bytes")
    sha = hashlib.sha256()
    old = bytearray()
    for chunk in _iter_source(src_fd, src_size, op.src_extents, block, where):
        sha.update(chunk)
        old += chunk
    _check_src_hash(sha, src_hash, where)
    blob = _read_blob(payload, op)
    if op.data_sha256 is not None and hashlib.sha256(blob).digest() != op.data_sha256:
        raise IntegrityError(f"{where}: the data blob's SHA-256 does not match the manifest")
    try:
        new = bspatch(bytes(old), blob, max_new_size=dst_bytes)
    except LimitError as exc:
        raise UnpackError(f"{where}: the patch output is larger than its dst extents") from exc
    except UnpackError as exc:
        raise UnpackError(f"{where}: {exc}") from exc
    if dst_bytes - len(new) >= block:
        raise UnpackError(
            f"{where}: the patch output ({len(new)} bytes) is short of the {dst_bytes} bytes of "
            "its dst extents"
        )
    _write_extents(fd, op.dst_extents, block, new)


def _read_blob(payload: Payload, op: Operation) -> bytes:
    with payload.window.open() as f:
        f.seek(payload.data_start + op.data_offset)
        return _read_exact(f, op.data_length)


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = f.read(n - len(data))
        if not chunk:
            raise UnpackError("truncated payload: the file ended inside a data blob")
        data += chunk
    return bytes(data)


# --- container --------------------------------------------------------------------------------


class DeltaPayloadContainer:
    """A/B payloads, full or incremental.

    Full partitions are extracted with :meth:`Payload.extract`. An incremental partition is
    rebuilt with :func:`apply_incremental` when ``source`` maps its name to the source build's
    image; otherwise it becomes a child with a
    :class:`NeedsSourceError`. Each image is deleted once the walk has read it.
    """

    name = "payload"

    def __init__(self, source: Mapping[str, Path] | None = None) -> None:
        self.source: dict[str, Path] = dict(source or {})
        """Partition name -> image of that partition in the source build."""

    def probe(self, window: Window, head: bytes) -> bool:
        """The ``CrAU`` magic."""
        return payload_mod.probe(head)

    def expand(self, window: Window, ctx: UnpackContext) -> Iterator[Child]:
        """Each partition image, extracted or rebuilt and verified, one at a time."""
        pl = Payload.open(window, ctx.limits)
        for part in pl.info.partitions:
            source = self.source.get(part.name) if part.is_incremental else None
            if part.is_incremental and source is None:
                types = ", ".join(t.name for t in part.source_op_types)
                needs = NeedsSourceError(
                    f"incremental update ({types}): the source build is needed to rebuild "
                    "this partition"
                )
                yield Child(part.name, None, partition=part.name, error=needs, format="payload")
                continue
            if part.new_size > ctx.limits.max_partition_size:
                big = LimitError(f"{part.new_size} bytes exceeds the partition size limit")
                yield Child(part.name, None, partition=part.name, error=big)
                continue
            out = ctx.new_image_path(part.name)
            try:
                ctx.account(part.new_size)
                if source is not None:
                    apply_incremental(pl, part.name, source, out)
                else:
                    pl.extract(part.name, out)
            except FwscanError as exc:
                out.unlink(missing_ok=True)
                yield Child(part.name, None, partition=part.name, error=exc)
                continue
            try:
                yield Child(part.name, Window(out), partition=part.name)
            finally:
                out.unlink(missing_ok=True)

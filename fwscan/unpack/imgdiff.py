"""imgdiff patches (``IMGDIFF2``): bsdiff for files made of deflate streams, such as APKs.

Block OTAs patch a zip file (APK, JAR) with the transfer-list command ``imgdiff`` instead of
``bsdiff``: a small change inside one compressed member changes the whole compressed stream, so a
bsdiff of the compressed bytes is about as large as the file. AOSP ``imgdiff``
(``bootable/recovery/applypatch/imgdiff.cpp``) cuts the target into chunks, patches deflated
members in their inflated form and records how to deflate them again; the recovery's
``ApplyImagePatch`` (``applypatch/imgpatch.cpp``) applies the patch. The updater
(``updater/blockimg.cpp``) runs it on the source buffer of the command, exactly like ``bsdiff``,
and the output must fill the target blocks exactly. :func:`apply_imgdiff` does the same in
memory; :mod:`fwscan.synth.imgdiff` writes such patches.

Format (all integers little-endian and signed; the 8-byte ones are offsets and lengths):

- ``IMGDIFF2`` (8 bytes), the chunk count (4 bytes), then one header per chunk: its type
  (4 bytes) and
- ``CHUNK_NORMAL`` (0): source start, source length, bsdiff patch offset (8 bytes each). The
  output is the bsdiff patch applied to ``old[start:start+length]``.
- ``CHUNK_DEFLATE`` (2): source start, source length, bsdiff patch offset, expanded source length,
  target length (8 bytes each), then the zlib parameters level, method, windowBits, memLevel and
  strategy (4 bytes each). The source bytes are a raw deflate stream that must inflate to exactly
  the expanded length; the bsdiff patch applied to the inflated data must give exactly the target
  length, and that is deflated with the given parameters (``deflateInit2``) to give the output.
  AOSP's writer only uses level 6 or 9, method 8, windowBits -15 (raw deflate), memLevel 8,
  strategy 0, and only for members whose compressed bytes it can reproduce so.
- ``CHUNK_RAW`` (3): a length (4 bytes) and as many bytes, copied to the output.
- after the headers, the bsdiff patches (``BSDIFF40`` from AOSP's writer; ``BSDF2`` is accepted
  as well, see :func:`fwscan.unpack.delta.bspatch`), in chunk order. A patch offset counts from
  the start of the imgdiff patch. The output is the chunk outputs, concatenated.

``IMGDIFF1`` and its ``CHUNK_GZIP`` (1) are no longer applied by AOSP and are refused here.

Checks (each a :class:`~fwscan.errors.UnpackError` naming the chunk, or a
:class:`~fwscan.errors.LimitError` for a limit): every header is read and checked before any
work: the chunk count must fit the patch (and :data:`MAX_CHUNKS`), source ranges must lie in
``old``, patch offsets in the patch, zlib parameters in the ranges zlib accepts, expanded and
target lengths at most ``max_expanded_size`` each and ``max_total_expanded`` together; the
output may not grow past ``max_new_size``. Inflation is bounded by the expanded length.

Differences from AOSP: each bsdiff patch is taken to end where the next one (by offset) begins,
or at the end of the imgdiff patch (AOSP hands bspatch everything from the offset on; its writer
lays the patches back to back, so this is the same patch). A deflate chunk with a target length
of 0 is refused (AOSP aborts on it). Bonus data (recovery-from-boot patches) is not supported;
block OTAs never use it. Re-deflating uses Python's zlib: the output matches the target only if
that zlib compresses as the one the patch was made with (AOSP's, from Chromium since Android 11);
the transfer list's target SHA-1 (versions 3 and 4) catches a difference.
"""

from __future__ import annotations

import bisect
import dataclasses
import struct
import zlib
from dataclasses import dataclass

from fwscan.errors import LimitError, UnpackError
from fwscan.limits import GiB, MiB
from fwscan.unpack.delta import bspatch, patch_new_size

IMGDIFF2_MAGIC = b"IMGDIFF2"
IMGDIFF1_MAGIC = b"IMGDIFF1"
CHUNK_NORMAL = 0
CHUNK_GZIP = 1
"""Version 1 only; refused."""
CHUNK_DEFLATE = 2
CHUNK_RAW = 3
CHUNK_NAMES = {
    CHUNK_NORMAL: "normal",
    CHUNK_GZIP: "gzip",
    CHUNK_DEFLATE: "deflate",
    CHUNK_RAW: "raw",
}

MAX_CHUNKS = 1 << 20
"""Most chunks in one patch (an APK gives about two per deflated member)."""
MAX_EXPANDED_SIZE = 1 * GiB
"""Largest inflated source or uncompressed target of one deflate chunk (held in memory)."""
MAX_TOTAL_EXPANDED = 4 * GiB
"""Most inflated source and uncompressed target bytes of all deflate chunks together."""

HEADER_SIZE = 12
NORMAL_HEADER = struct.Struct("<qqq")
DEFLATE_HEADER = struct.Struct("<qqqqqiiiii")
RAW_HEADER = struct.Struct("<i")
_INT32 = struct.Struct("<i")
_BSDIFF_HEADER_SIZE = 32
_MIN_CHUNK_HEADER = 4 + RAW_HEADER.size
_DEFLATE_PIECE = 1 * MiB

# The values zlib's deflateInit2 accepts (zlib 1.2.9 and later refuse a raw window of 8 bits).
_LEVELS = range(-1, 10)
_WINDOW_BITS = (*range(-15, -8), *range(8, 16), *range(25, 32))
_MEM_LEVELS = range(1, 10)
_STRATEGIES = range(5)


@dataclass(frozen=True)
class ImgdiffChunk:
    """One chunk header of an imgdiff patch (the fields its type has; the others are 0)."""

    kind: int
    """``CHUNK_NORMAL``, ``CHUNK_DEFLATE`` or ``CHUNK_RAW``."""
    src_start: int = 0
    src_len: int = 0
    patch_offset: int = 0
    """Where the chunk's bsdiff patch starts in the imgdiff patch (normal and deflate chunks)."""
    patch_end: int = 0
    """Where it is taken to end: the next patch offset, or the end of the imgdiff patch."""
    expanded_len: int = 0
    target_len: int = 0
    zlib_params: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    """level, method, windowBits, memLevel, strategy (deflate chunks)."""
    raw_start: int = 0
    """Where a raw chunk's data starts in the imgdiff patch."""
    raw_len: int = 0

    @property
    def name(self) -> str:
        return CHUNK_NAMES.get(self.kind, str(self.kind))


def parse_imgdiff(
    patch: bytes,
    old_size: int,
    *,
    max_expanded_size: int = MAX_EXPANDED_SIZE,
    max_total_expanded: int = MAX_TOTAL_EXPANDED,
) -> list[ImgdiffChunk]:
    """The chunk headers of ``patch``, each checked against a source of ``old_size`` bytes.

    Raises :class:`UnpackError` for a malformed header, :class:`LimitError` when the chunk count
    or the expanded lengths exceed the limits.
    """
    if len(patch) < HEADER_SIZE:
        raise UnpackError(
            f"imgdiff patch of {len(patch)} bytes, shorter than its {HEADER_SIZE}-byte header"
        )
    magic = patch[:8]
    if magic == IMGDIFF1_MAGIC:
        raise UnpackError("IMGDIFF1 patches (version 1, CHUNK_GZIP) are not supported, as in AOSP")
    if magic != IMGDIFF2_MAGIC:
        raise UnpackError(f"not an imgdiff patch: magic {magic!r} (expected b'IMGDIFF2')")
    (count,) = _INT32.unpack_from(patch, 8)
    if count < 0:
        raise UnpackError(f"imgdiff patch: negative chunk count {count}")
    if count * _MIN_CHUNK_HEADER > len(patch) - HEADER_SIZE:
        raise UnpackError(
            f"imgdiff patch: {count} chunk headers cannot fit in a patch of {len(patch)} bytes"
        )
    if count > MAX_CHUNKS:
        raise LimitError(f"imgdiff patch: {count} chunks, more than {MAX_CHUNKS}")
    chunks: list[ImgdiffChunk] = []
    pos = HEADER_SIZE
    expanded_total = 0
    for index in range(count):
        where = f"imgdiff chunk {index}"
        if pos + 4 > len(patch):
            raise UnpackError(f"{where}: the patch ends before its header")
        (kind,) = _INT32.unpack_from(patch, pos)
        pos += 4
        if kind == CHUNK_NORMAL:
            _need(patch, pos, NORMAL_HEADER.size, where, "normal")
            start, length, offset = NORMAL_HEADER.unpack_from(patch, pos)
            pos += NORMAL_HEADER.size
            _check_source(start, length, old_size, where)
            _check_patch_offset(offset, len(patch), where)
            chunks.append(ImgdiffChunk(kind, start, length, offset))
        elif kind == CHUNK_DEFLATE:
            _need(patch, pos, DEFLATE_HEADER.size, where, "deflate")
            start, length, offset, expanded, target, *params = DEFLATE_HEADER.unpack_from(
                patch, pos
            )
            pos += DEFLATE_HEADER.size
            _check_source(start, length, old_size, where)
            _check_patch_offset(offset, len(patch), where)
            level, method, wbits, mem_level, strategy = params
            _check_zlib(level, method, wbits, mem_level, strategy, where)
            if expanded < 0 or target <= 0:
                raise UnpackError(
                    f"{where}: bad lengths (expanded source {expanded}, target {target} bytes)"
                )
            for what, value in (("expanded source", expanded), ("target", target)):
                if value > max_expanded_size:
                    raise LimitError(
                        f"{where}: {what} of {value} bytes exceeds {max_expanded_size}"
                    )
            expanded_total += expanded + target
            if expanded_total > max_total_expanded:
                raise LimitError(
                    f"{where}: the deflate chunks expand to more than {max_total_expanded} bytes"
                )
            zp = (level, method, wbits, mem_level, strategy)
            chunks.append(ImgdiffChunk(kind, start, length, offset, 0, expanded, target, zp))
        elif kind == CHUNK_RAW:
            _need(patch, pos, RAW_HEADER.size, where, "raw")
            (length,) = RAW_HEADER.unpack_from(patch, pos)
            pos += RAW_HEADER.size
            if length < 0 or pos + length > len(patch):
                raise UnpackError(
                    f"{where}: raw data of {length} bytes at {pos} lies outside the "
                    f"{len(patch)}-byte patch"
                )
            chunks.append(ImgdiffChunk(kind, raw_start=pos, raw_len=length))
            pos += length
        elif kind == CHUNK_GZIP:
            raise UnpackError(f"{where}: CHUNK_GZIP belongs to IMGDIFF1, not IMGDIFF2")
        else:
            raise UnpackError(f"{where}: unknown chunk type {kind}")
    return _with_patch_ends(chunks, len(patch))


def _need(patch: bytes, pos: int, size: int, where: str, kind: str) -> None:
    if pos + size > len(patch):
        raise UnpackError(f"{where}: the patch ends inside its {kind} header")


def _check_source(start: int, length: int, old_size: int, where: str) -> None:
    if start < 0 or length < 0 or start + length > old_size:
        raise UnpackError(
            f"{where}: source {start}+{length} lies outside the {old_size}-byte source"
        )


def _check_patch_offset(offset: int, patch_size: int, where: str) -> None:
    if offset < 0 or offset + _BSDIFF_HEADER_SIZE > patch_size:
        raise UnpackError(
            f"{where}: bsdiff patch offset {offset} lies outside the {patch_size}-byte patch"
        )


def _check_zlib(
    level: int, method: int, wbits: int, mem_level: int, strategy: int, where: str
) -> None:
    if (
        level not in _LEVELS
        or method != zlib.DEFLATED
        or wbits not in _WINDOW_BITS
        or mem_level not in _MEM_LEVELS
        or strategy not in _STRATEGIES
    ):
        raise UnpackError(
            f"{where}: zlib parameters zlib refuses (level {level}, method {method}, windowBits "
            f"{wbits}, memLevel {mem_level}, strategy {strategy})"
        )


def _with_patch_ends(chunks: list[ImgdiffChunk], patch_size: int) -> list[ImgdiffChunk]:
    offsets = sorted({c.patch_offset for c in chunks if c.kind != CHUNK_RAW})

    def end(offset: int) -> int:
        nxt = bisect.bisect_right(offsets, offset)
        return offsets[nxt] if nxt < len(offsets) else patch_size

    return [
        c if c.kind == CHUNK_RAW else dataclasses.replace(c, patch_end=end(c.patch_offset))
        for c in chunks
    ]


def apply_imgdiff(
    old: bytes,
    patch: bytes,
    *,
    max_new_size: int,
    max_expanded_size: int = MAX_EXPANDED_SIZE,
    max_total_expanded: int = MAX_TOTAL_EXPANDED,
) -> bytes:
    """Apply the ``IMGDIFF2`` patch ``patch`` to ``old`` and return the new bytes.

    Raises :class:`UnpackError` for a malformed, truncated or inconsistent patch (the message
    names the chunk), :class:`LimitError` when the output would exceed ``max_new_size`` or a
    limit of :func:`parse_imgdiff` is exceeded.
    """
    chunks = parse_imgdiff(
        patch,
        len(old),
        max_expanded_size=max_expanded_size,
        max_total_expanded=max_total_expanded,
    )
    known = 0  # Output sizes known from the headers: raw data and normal patches.
    for index, chunk in enumerate(chunks):
        if chunk.kind == CHUNK_RAW:
            known += chunk.raw_len
        elif chunk.kind == CHUNK_NORMAL:
            head_end = min(chunk.patch_end, chunk.patch_offset + _BSDIFF_HEADER_SIZE)
            known += _bsdiff_size(patch[chunk.patch_offset : head_end], index, chunk)
    if known > max_new_size:
        raise LimitError(
            f"imgdiff patch: an output of {known} bytes or more exceeds {max_new_size}"
        )
    out = bytearray()
    for index, chunk in enumerate(chunks):
        room = max_new_size - len(out)
        if chunk.kind == CHUNK_RAW:
            piece = patch[chunk.raw_start : chunk.raw_start + chunk.raw_len]
        elif chunk.kind == CHUNK_NORMAL:
            piece = _normal(old, patch, chunk, index, room)
        else:
            piece = _deflate(old, patch, chunk, index, room)
        if len(piece) > room:
            raise LimitError(
                f"imgdiff chunk {index} ({chunk.name}): the output grows past {max_new_size} bytes"
            )
        out += piece
    return bytes(out)


def _where(index: int, chunk: ImgdiffChunk) -> str:
    return f"imgdiff chunk {index} ({chunk.name})"


def _bsdiff_size(bsdiff: bytes, index: int, chunk: ImgdiffChunk) -> int:
    try:
        size = patch_new_size(bsdiff)
    except UnpackError as exc:
        raise UnpackError(f"{_where(index, chunk)}: {exc}") from exc
    if size < 0:
        raise UnpackError(f"{_where(index, chunk)}: bsdiff patch of negative size {size}")
    return size


def _bspatch(old: bytes, bsdiff: bytes, limit: int, index: int, chunk: ImgdiffChunk) -> bytes:
    try:
        return bspatch(old, bsdiff, max_new_size=limit)
    except LimitError as exc:
        raise LimitError(f"{_where(index, chunk)}: {exc}") from exc
    except UnpackError as exc:
        raise UnpackError(f"{_where(index, chunk)}: {exc}") from exc


def _normal(old: bytes, patch: bytes, chunk: ImgdiffChunk, index: int, room: int) -> bytes:
    source = old[chunk.src_start : chunk.src_start + chunk.src_len]
    bsdiff = patch[chunk.patch_offset : chunk.patch_end]
    return _bspatch(source, bsdiff, room, index, chunk)


def _deflate(old: bytes, patch: bytes, chunk: ImgdiffChunk, index: int, room: int) -> bytes:
    where = _where(index, chunk)
    source = old[chunk.src_start : chunk.src_start + chunk.src_len]
    # As AOSP: an expanded length of 0 skips inflating (the source is then empty).
    expanded = _inflate(source, chunk.expanded_len, where) if chunk.expanded_len else b""
    bsdiff = patch[chunk.patch_offset : chunk.patch_end]
    declared = _bsdiff_size(bsdiff, index, chunk)
    if declared != chunk.target_len:
        raise UnpackError(
            f"{where}: the bsdiff patch makes {declared} bytes, the header says {chunk.target_len}"
        )
    target = _bspatch(expanded, bsdiff, chunk.target_len, index, chunk)
    del expanded
    level, method, wbits, mem_level, strategy = chunk.zlib_params
    try:
        comp = zlib.compressobj(level, method, wbits, mem_level, strategy)
        out = bytearray()
        view = memoryview(target)
        for pos in range(0, len(target), _DEFLATE_PIECE):
            out += comp.compress(view[pos : pos + _DEFLATE_PIECE])
            if len(out) > room:
                break
        else:
            out += comp.flush()
    except (zlib.error, ValueError) as exc:
        raise UnpackError(f"{where}: cannot deflate the target: {exc}") from exc
    return bytes(out)


def _inflate(source: bytes, expanded_len: int, where: str) -> bytes:
    """The raw deflate stream ``source``, which must end after exactly ``expanded_len`` bytes
    (bytes after the end of the stream are ignored, as by zlib's inflate)."""
    inflater = zlib.decompressobj(-15)
    try:
        data = inflater.decompress(source, expanded_len)
        # At the limit, the stream must end here, without more output.
        at_limit = not inflater.eof and len(data) == expanded_len
        if at_limit and inflater.decompress(inflater.unconsumed_tail, 1):
            raise UnpackError(f"{where}: the source inflates to more than {expanded_len} bytes")
    except zlib.error as exc:
        raise UnpackError(f"{where}: the source is not a valid deflate stream: {exc}") from exc
    if not inflater.eof:
        raise UnpackError(
            f"{where}: the source deflate stream is incomplete after {len(data)} of "
            f"{expanded_len} bytes"
        )
    if len(data) != expanded_len:
        raise UnpackError(
            f"{where}: the source inflates to {len(data)} bytes, the header says {expanded_len}"
        )
    return data

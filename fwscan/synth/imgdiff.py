"""Writing imgdiff patches (``IMGDIFF2``) as AOSP ``imgdiff`` writes them.

The format is described in :mod:`fwscan.unpack.imgdiff`, which applies these patches. Block OTAs
carry them in ``NAME.patch.dat`` for ``imgdiff`` commands, made by AOSP
``bootable/recovery/applypatch/imgdiff.cpp``; :func:`make_imgdiff` follows its zip mode (``-z``,
which ``blockimgdiff.py`` uses for ``.apk``, ``.jar`` and ``.zip`` files):

- The target is cut at its deflated members (method 8, found through the central directory;
  each member's data starts after its local header): one chunk per deflated member, and one
  normal chunk for everything between them (local headers, stored members, data descriptors,
  the central directory and anything after the end record, such as the zeros that pad a file to
  whole blocks).
- A deflated target member becomes a ``CHUNK_DEFLATE`` only when the source has a deflated member
  of the same name (the first one) with different compressed bytes, and deflating the target's
  inflated data with zlib level 6 or else 9 (method 8, windowBits -15, memLevel 8, default
  strategy, AOSP's only candidates) reproduces its compressed bytes exactly; otherwise it is
  normal data. Its patch is a bsdiff of the inflated source member to the inflated target member.
  A member that inflates to nothing stays normal (the applier refuses an empty deflate target).
- Adjacent normal chunks are merged; a normal chunk is patched against the whole source file.
- A chunk becomes ``CHUNK_RAW`` (its bytes inline) when it is a normal chunk of at most 160
  bytes, or when its bytes are shorter than its patch.
- The header is followed by the bsdiff patches (``BSDIFF40``, from ``bsdiff4``), back to back in
  chunk order.

Data that is not a zip (``mode="image"``, or ``"auto"`` when either side is not a zip) is one
chunk patched against the whole source; AOSP's image mode does the same for data without gzip
streams (it would also split out gzip members, as in boot images; that is not done here). The
same inputs always give the same patch.
"""

from __future__ import annotations

import io
import itertools
import struct
import zipfile
import zlib
from dataclasses import dataclass

import bsdiff4  # type: ignore[import-untyped]

from fwscan.unpack.imgdiff import (
    CHUNK_DEFLATE,
    CHUNK_NORMAL,
    CHUNK_RAW,
    DEFLATE_HEADER,
    HEADER_SIZE,
    IMGDIFF2_MAGIC,
    NORMAL_HEADER,
    RAW_HEADER,
)

MODES = ("auto", "zip", "image")
"""The values ``mode`` accepts."""
RAW_LIMIT = 160
"""Normal chunks up to this size are stored raw (as AOSP does)."""
LEVELS = (6, 9)
"""The zlib levels tried to reproduce a deflated member (AOSP's candidates)."""
METHOD = zlib.DEFLATED
WINDOW_BITS = -15
MEM_LEVEL = 8
STRATEGY = zlib.Z_DEFAULT_STRATEGY

_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_LOCAL = b"PK\x03\x04"
_LOCAL_SIZE = 30
_INT32 = struct.Struct("<i")
_INT32_MAX = (1 << 31) - 1


@dataclass
class _Chunk:
    kind: int
    start: int
    data: bytes
    """The bytes in the file (compressed, for a deflated member)."""
    name: str = ""
    inflated: bytes = b""
    level: int = 0


@dataclass(frozen=True)
class _Member:
    name: str
    offset: int
    data: bytes
    inflated: bytes


def make_imgdiff(old: bytes, new: bytes, *, mode: str = "auto") -> bytes:
    """An ``IMGDIFF2`` patch that turns ``old`` into ``new``.

    ``mode`` is ``"zip"`` (both must be zip files), ``"image"`` (any data, one chunk) or
    ``"auto"`` (zip mode when both are zips). Raises :class:`ValueError` for an unknown mode, a
    zip that cannot be split in zip mode (bad local header, overlapping or undecodable members)
    or a raw chunk larger than the format's 2 GiB.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: must be one of {', '.join(MODES)}")
    old_members = new_members = None
    if mode != "image":
        old_members = _deflated_members(old)
        new_members = _deflated_members(new) if old_members is not None else None
        if mode == "zip" and (old_members is None or new_members is None):
            raise ValueError("zip mode: the old or the new data is not a zip file")
    if old_members is None or new_members is None:
        chunks = [_Chunk(CHUNK_NORMAL, 0, new)] if new else []
        return _write(old, chunks, {})
    chunks = _split(new, new_members)
    sources = _match_sources(chunks, old_members)
    return _write(old, _merge_normal(chunks), sources)


# --- zip files --------------------------------------------------------------------------------


def _zip_size(data: bytes) -> int | None:
    """Where the zip ends: after the last end-of-central-directory record and its comment."""
    pos = len(data) - _EOCD_SIZE
    while pos >= 0:
        pos = data.rfind(_EOCD, 0, pos + len(_EOCD))
        if pos < 0:
            return None
        end = pos + _EOCD_SIZE + int.from_bytes(data[pos + 20 : pos + 22], "little")
        if end <= len(data):
            return end
        pos -= 1
    return None


def _deflated_members(data: bytes) -> list[_Member] | None:
    """The deflated members with data, by offset; ``None`` when ``data`` is not a zip file."""
    size = _zip_size(data)
    if size is None:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data[:size])) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError):
        return None
    members = []
    for info in infos:
        if info.compress_type != zipfile.ZIP_DEFLATED or info.compress_size == 0:
            continue
        head = info.header_offset
        if data[head : head + 4] != _LOCAL or head + _LOCAL_SIZE > size:
            raise ValueError(f"zip member {info.filename!r}: no local header at {head}")
        name_len = int.from_bytes(data[head + 26 : head + 28], "little")
        extra_len = int.from_bytes(data[head + 28 : head + 30], "little")
        offset = head + _LOCAL_SIZE + name_len + extra_len
        end = offset + info.compress_size
        if end > size:
            raise ValueError(f"zip member {info.filename!r}: its data runs past the zip")
        compressed = data[offset:end]
        inflater = zlib.decompressobj(WINDOW_BITS)
        try:
            inflated = inflater.decompress(compressed, info.file_size + 1)
        except zlib.error as exc:
            raise ValueError(f"zip member {info.filename!r}: cannot inflate: {exc}") from exc
        if not inflater.eof or len(inflated) != info.file_size:
            raise ValueError(f"zip member {info.filename!r}: does not inflate to its size")
        members.append(_Member(info.filename, offset, compressed, inflated))
    members.sort(key=lambda m: m.offset)
    for before, after in itertools.pairwise(members):
        if after.offset < before.offset + len(before.data):
            raise ValueError(f"zip members {before.name!r} and {after.name!r} overlap")
    return members


def _split(data: bytes, members: list[_Member]) -> list[_Chunk]:
    """The target's chunks: each deflated member, and the bytes between them."""
    chunks = []
    pos = 0
    for member in members:
        if member.offset > pos:
            chunks.append(_Chunk(CHUNK_NORMAL, pos, data[pos : member.offset]))
        chunks.append(
            _Chunk(CHUNK_DEFLATE, member.offset, member.data, member.name, member.inflated)
        )
        pos = member.offset + len(member.data)
    if pos < len(data):
        chunks.append(_Chunk(CHUNK_NORMAL, pos, data[pos:]))
    return chunks


def _match_sources(chunks: list[_Chunk], old_members: list[_Member]) -> dict[int, _Member]:
    """Decide which target members stay deflate chunks; their source members, by chunk start."""
    available: dict[str, _Member] = {}
    for member in old_members:
        available.setdefault(member.name, member)
    sources = {}
    for chunk in chunks:
        if chunk.kind != CHUNK_DEFLATE:
            continue
        src = available.get(chunk.name)
        level = None
        if src is not None and src.data != chunk.data and chunk.inflated:
            level = _reproducing_level(chunk.inflated, chunk.data)
        if src is None or level is None:
            # Patched as plain bytes; as AOSP, the source member is not offered again.
            chunk.kind = CHUNK_NORMAL
            available.pop(chunk.name, None)
            continue
        chunk.level = level
        sources[chunk.start] = src
    return sources


def _reproducing_level(inflated: bytes, compressed: bytes) -> int | None:
    for level in LEVELS:
        comp = zlib.compressobj(level, METHOD, WINDOW_BITS, MEM_LEVEL, STRATEGY)
        if comp.compress(inflated) + comp.flush() == compressed:
            return level
    return None


def _merge_normal(chunks: list[_Chunk]) -> list[_Chunk]:
    out: list[_Chunk] = []
    for chunk in chunks:
        prev = out[-1] if out else None
        if (
            prev is not None
            and prev.kind == chunk.kind == CHUNK_NORMAL
            and prev.start + len(prev.data) == chunk.start
        ):
            prev.data += chunk.data
        else:
            out.append(chunk)
    return out


# --- the patch --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Planned:
    kind: int
    chunk: _Chunk
    patch: bytes = b""


def _plan(old: bytes, chunks: list[_Chunk], sources: dict[int, _Member]) -> list[_Planned]:
    """Each chunk's type in the patch and its bsdiff patch (none for raw chunks)."""
    planned = []
    for chunk in chunks:
        if chunk.kind == CHUNK_NORMAL and len(chunk.data) <= RAW_LIMIT:
            planned.append(_Planned(CHUNK_RAW, chunk))
            continue
        if chunk.kind == CHUNK_DEFLATE:
            patch: bytes = bsdiff4.diff(sources[chunk.start].inflated, chunk.inflated)
        else:
            patch = bsdiff4.diff(old, chunk.data)
        if len(chunk.data) < len(patch):
            planned.append(_Planned(CHUNK_RAW, chunk))
        else:
            planned.append(_Planned(chunk.kind, chunk, patch))
    return planned


def _header_size(item: _Planned) -> int:
    if item.kind == CHUNK_RAW:
        return 4 + RAW_HEADER.size + len(item.chunk.data)
    if item.kind == CHUNK_DEFLATE:
        return 4 + DEFLATE_HEADER.size
    return 4 + NORMAL_HEADER.size


def _write(old: bytes, chunks: list[_Chunk], sources: dict[int, _Member]) -> bytes:
    planned = _plan(old, chunks, sources)
    offset = HEADER_SIZE + sum(_header_size(item) for item in planned)
    out = bytearray(IMGDIFF2_MAGIC + _INT32.pack(len(planned)))
    for item in planned:
        chunk = item.chunk
        out += _INT32.pack(item.kind)
        if item.kind == CHUNK_RAW:
            if len(chunk.data) > _INT32_MAX:
                raise ValueError(f"a raw chunk of {len(chunk.data)} bytes does not fit the format")
            out += RAW_HEADER.pack(len(chunk.data)) + chunk.data
            continue
        if item.kind == CHUNK_DEFLATE:
            src = sources[chunk.start]
            out += DEFLATE_HEADER.pack(
                src.offset,
                len(src.data),
                offset,
                len(src.inflated),
                len(chunk.inflated),
                chunk.level,
                METHOD,
                WINDOW_BITS,
                MEM_LEVEL,
                STRATEGY,
            )
        else:
            out += NORMAL_HEADER.pack(0, len(old), offset)
        offset += len(item.patch)
    for item in planned:
        out += item.patch
    return bytes(out)

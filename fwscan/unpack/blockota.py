"""Block-based (non-A/B) OTA zips: partition images rebuilt from ``*.transfer.list`` files.

A block OTA (``ota_from_target_files`` for non-A/B devices, Android 5 to 9 and later non-A/B
builds) holds, for each updated partition ``NAME``: ``NAME.transfer.list`` (text commands),
``NAME.new.dat`` (the blocks the update writes literally, concatenated in command order; often
``NAME.new.dat.br``, a brotli stream, here also ``NAME.new.dat.lz4``, an LZ4 frame stream) and
``NAME.patch.dat`` (the concatenated patches of an incremental update, empty in a full one).
The recovery's updater (AOSP ``bootable/recovery/updater/blockimg.cpp``) executes the commands
on the block device; :class:`BlockOtaContainer` executes them on an image file in the work
directory. The format is written by AOSP ``build/make/tools/releasetools/blockimgdiff.py``.

Transfer list, all versions: line 1 the version (1 to 4), line 2 the number of blocks the
commands write (``new``, ``zero``, ``move`` and patches; not ``erase``). Versions 2 and up add
line 3, the stash slots needed at once (unused from version 3), and line 4, the most blocks
stashed at once. Then one command a line. A range set is ``COUNT,START,END,...`` with ``COUNT``
the number of integers that follow and blocks ``[START, END)`` of 4096 bytes.

- ``new R``: the next ``|R|`` blocks of the new data stream. ``zero R``: zeros. ``erase R``:
  discard (zeros here).
- ``move`` and ``bsdiff OFF LEN`` / ``imgdiff OFF LEN`` (the patch is ``patch.dat[OFF:OFF+LEN]``,
  applied to the source blocks, written to the target blocks). Operands: version 1
  ``SRC TGT``; version 2 ``TGT SRCSPEC``; versions 3 and 4 ``move HASH TGT SRCSPEC`` and
  ``bsdiff OFF LEN SRCHASH TGTHASH TGT SRCSPEC`` (SHA-1s, hex). ``SRCSPEC`` is ``N SRC``, or
  ``N - ID:LOCS ...`` or ``N SRC LOCS ID:LOCS ...``: a buffer of ``N`` blocks assembled from the
  source blocks ``SRC`` (placed at buffer blocks ``LOCS`` when stashes are involved) and from
  stashes (placed at their ``LOCS``).
- ``stash ID R`` keeps source blocks for a later command (``ID`` a slot number in version 2, the
  SHA-1 of the blocks from version 3); ``free ID`` drops them. In version 2 a stash is consumed
  by the command that uses it.
- ``compute_hash_tree`` (Android 9+) rebuilds the dm-verity hash tree; see Limitations.

An incremental update patches the source partition in place: the output starts as a copy of the
source image (``BlockOtaContainer(source={name: path})``), unchanged blocks are never mentioned.
blockimgdiff guarantees that no block is read after it has been written, so sources and stashes
are read from the untouched source image. Integrity (versions 3 and 4): the source buffer of each
``move``/``bsdiff`` must match its SHA-1, a stash its ID, and a patched or moved target its target
SHA-1, else :class:`~fwscan.errors.IntegrityError`. Versions 1 and 2 carry no hashes (the
updater-script's ``range_sha1`` checks are not evaluated).

Bounds: every range must end within ``limits.max_partition_size``; the blocks written by counted
commands may not exceed the header's total; source ranges must lie in the source image; one
command's buffer is held in memory up to :data:`MAX_COMMAND_SIZE` (the inflated members of an
``imgdiff`` patch up to the limits of :mod:`fwscan.unpack.imgdiff`). The image is as large as the
largest block any command names (an incremental one at least as large as its source image).

``imgdiff`` patches (AOSP's patches for zip files such as APKs) are applied by
:func:`fwscan.unpack.imgdiff.apply_imgdiff`: deflated members are inflated, patched and deflated
again with Python's zlib; where that zlib compresses differently from the one the patch was made
with, the target SHA-1 (versions 3 and 4) names the mismatch.

Limitations: ``compute_hash_tree`` is not executed, so the dm-verity hash tree blocks stay zero
(the filesystem is complete); new data left over after the last command is ignored, as the
updater does; only top-level ``NAME.transfer.list`` members are read.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import io
import itertools
import os
import re
import shutil
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import brotli  # type: ignore[import-untyped]
import lz4.frame  # type: ignore[import-untyped]

from fwscan.errors import FwscanError, IntegrityError, LimitError, NeedsSourceError, UnpackError
from fwscan.limits import DEFAULT_LIMITS, GiB, Limits, MiB
from fwscan.unpack.base import Child, UnpackContext, Window
from fwscan.unpack.delta import bspatch
from fwscan.unpack.imgdiff import apply_imgdiff

BLOCK_SIZE = 4096
"""The block size of every transfer list (fixed by the format)."""
TRANSFER_LIST_SUFFIX = ".transfer.list"
MAX_TRANSFER_LIST_SIZE = 64 * MiB
"""Largest transfer list read (a full system image's list is a few hundred kilobytes)."""
MAX_COMMAND_SIZE = 1 * GiB
"""Largest source buffer or patch of one command held in memory."""
NEW_DATA_SUFFIXES = (".new.dat.br", ".new.dat.lz4", ".new.dat")
"""The new data members looked for, in this order of preference."""

_PAYLOAD = "payload.bin"
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_SHA1_RE = re.compile(r"[0-9a-fA-F]{40}")
_INT_RE = re.compile(r"[0-9]{1,20}")
_RANGES_RE = re.compile(r"[0-9]{1,20}(?:,[0-9]{1,20})*")
_READ_SIZE = 1 * MiB
_PIECE = 1 * MiB
_ZERO_CHUNK = bytes(1 * MiB)
_SOURCE_KINDS = ("move", "bsdiff", "imgdiff", "stash")


# --- range sets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RangeSet:
    """Block ranges ``[start, end)`` in the order the transfer list gives them."""

    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, text: str, limit_blocks: int) -> RangeSet:
        """Parse ``COUNT,START,END,...``; :class:`UnpackError` if malformed,
        :class:`LimitError` if a range ends past ``limit_blocks``."""
        if not _RANGES_RE.fullmatch(text):
            raise UnpackError(f"bad range set {_clip(text)!r}")
        values = list(map(int, text.split(",")))
        count = values[0]
        if count == 0 or count % 2 or count != len(values) - 1:
            raise UnpackError(f"bad range set {_clip(text)!r}: count {count}")
        pairs = tuple(zip(values[1::2], values[2::2], strict=True))
        for start, end in pairs:
            if start >= end:
                raise UnpackError(f"bad range set {_clip(text)!r}: empty range {start}-{end}")
            if end > limit_blocks:
                raise LimitError(
                    f"range {start}-{end} ends past the partition size limit "
                    f"({limit_blocks} blocks)"
                )
        return cls(pairs)

    @property
    def blocks(self) -> int:
        """The number of blocks."""
        return sum(end - start for start, end in self.ranges)

    @property
    def end(self) -> int:
        """One past the highest block."""
        return max(end for _, end in self.ranges)


def _clip(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


class _Blocks:
    """A growing set of blocks kept as sorted, disjoint ``[start, end)`` runs."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def add(self, start: int, end: int) -> None:
        i = bisect.bisect_left(self._ends, start)
        j = bisect.bisect_right(self._starts, end)
        if i < j:
            start = min(start, self._starts[i])
            end = max(end, self._ends[j - 1])
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]

    def intersect(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        i = bisect.bisect_right(self._ends, start)
        while i < len(self._starts) and self._starts[i] < end:
            yield max(start, self._starts[i]), min(end, self._ends[i])
            i += 1


# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """Where the source buffer of a ``move``/``bsdiff``/``imgdiff`` comes from."""

    blocks: int
    ranges: RangeSet | None
    """Source image blocks, packed in order (or placed at ``locs``)."""
    locs: RangeSet | None
    stashes: tuple[tuple[str, RangeSet], ...]
    """Stash ID and the buffer blocks it fills."""


@dataclass(frozen=True)
class Command:
    """One parsed transfer list command."""

    kind: str
    """``new``, ``zero``, ``erase``, ``move``, ``bsdiff``, ``imgdiff``, ``stash``, ``free``,
    ``compute_hash_tree``."""
    line: int
    target: RangeSet | None = None
    source: SourceSpec | None = None
    src_hash: str | None = None
    tgt_hash: str | None = None
    patch_offset: int = 0
    patch_length: int = 0
    stash_id: str = ""
    stash_ranges: RangeSet | None = None


@dataclass(frozen=True)
class TransferList:
    """A checked transfer list: its header, a summary, and its commands parsed on demand (a
    list of millions of commands is never held as objects)."""

    version: int
    total_blocks: int
    """Blocks the counted commands write, as the header says."""
    stash_entries: int
    max_stash_blocks: int
    source_kinds: tuple[str, ...]
    """The commands present that read the source build, in a fixed order."""
    image_blocks: int
    """One past the highest block a command names."""
    text: str = field(repr=False)
    limits: Limits = field(repr=False, default=DEFAULT_LIMITS)

    def commands(self) -> Iterator[Command]:
        """The commands, parsed again one at a time (they were all checked already)."""
        limit_blocks = self.limits.max_partition_size // BLOCK_SIZE
        for number, tokens in _command_lines(self.text, self.version):
            yield _parse_command(tokens, number, self.version, limit_blocks)


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` without building a list of all lines."""
    for number, line in enumerate(io.StringIO(text, newline="\n"), start=1):
        yield number, line.rstrip("\n")


def _command_lines(text: str, version: int) -> Iterator[tuple[int, list[str]]]:
    header = 2 if version == 1 else 4
    for number, line in _lines(text):
        if number > header and (tokens := line.split()):
            yield number, tokens


def parse_transfer_list(text: str, limits: Limits = DEFAULT_LIMITS) -> TransferList:
    """Parse and check a transfer list of version 1 to 4 (see the module documentation).

    Raises :class:`UnpackError` for a malformed header, command or range set, and
    :class:`LimitError` for ranges or totals past ``limits.max_partition_size``.
    """
    limit_blocks = limits.max_partition_size // BLOCK_SIZE
    head = [line for _, line in itertools.islice(_lines(text), 4)]
    version = _header_int(head, 0, "version")
    if version not in (1, 2, 3, 4):
        raise UnpackError(f"transfer list version {version} is not supported (1 to 4 are)")
    total = _header_int(head, 1, "total block count")
    if total > limit_blocks:
        raise LimitError(f"transfer list total of {total} blocks exceeds the partition limit")
    stash_entries = max_stash = 0
    if version >= 2:
        stash_entries = _header_int(head, 2, "stash entry count")
        max_stash = _header_int(head, 3, "maximum stash block count")
    kinds: set[str] = set()
    image_blocks = 0
    for number, tokens in _command_lines(text, version):
        cmd = _parse_command(tokens, number, version, limit_blocks)
        kinds.add(cmd.kind)
        if cmd.target is not None:
            image_blocks = max(image_blocks, cmd.target.end)
        if version == 2:
            ids = [cmd.stash_id] if cmd.kind in ("stash", "free") else []
            ids += [sid for sid, _ in (cmd.source.stashes if cmd.source else ())]
            for sid in ids:
                if int(sid) >= stash_entries:
                    raise UnpackError(
                        f"transfer list line {cmd.line}: stash slot {sid} past the "
                        f"{stash_entries} slots the header declares"
                    )
    source_kinds = tuple(k for k in _SOURCE_KINDS if k in kinds)
    return TransferList(
        version, total, stash_entries, max_stash, source_kinds, image_blocks, text, limits
    )


def _header_int(lines: list[str], index: int, what: str) -> int:
    value = lines[index].strip() if index < len(lines) else ""
    if not _INT_RE.fullmatch(value):
        raise UnpackError(f"transfer list line {index + 1}: bad {what} {_clip(value)!r}")
    return int(value)


class _Tokens:
    def __init__(self, tokens: list[str], line: int) -> None:
        self._tokens = tokens
        self._pos = 1
        self.line = line

    def error(self, message: str) -> UnpackError:
        return UnpackError(f"transfer list line {self.line} ({self._tokens[0]}): {message}")

    def next(self, what: str) -> str:
        if self._pos >= len(self._tokens):
            raise self.error(f"missing {what}")
        token = self._tokens[self._pos]
        self._pos += 1
        return token

    def peek(self) -> str | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def rest(self) -> list[str]:
        rest = self._tokens[self._pos :]
        self._pos = len(self._tokens)
        return rest

    def done(self) -> None:
        if self._pos != len(self._tokens):
            raise self.error(f"unexpected {_clip(self._tokens[self._pos])!r}")

    def number(self, what: str) -> int:
        token = self.next(what)
        if not _INT_RE.fullmatch(token):
            raise self.error(f"bad {what} {_clip(token)!r}")
        return int(token)

    def sha1(self, what: str) -> str:
        token = self.next(what)
        if not _SHA1_RE.fullmatch(token):
            raise self.error(f"bad {what} {_clip(token)!r} (expected a SHA-1 in hex)")
        return token.lower()

    def ranges(self, what: str, limit_blocks: int) -> RangeSet:
        token = self.next(what)
        try:
            return RangeSet.parse(token, limit_blocks)
        except LimitError as exc:
            raise LimitError(f"transfer list line {self.line}: {exc}") from exc
        except UnpackError as exc:
            raise self.error(str(exc)) from exc

    def stash_id(self, version: int) -> str:
        return self.sha1("stash id") if version >= 3 else str(self.number("stash slot"))


def _parse_command(tokens: list[str], line: int, version: int, limit: int) -> Command:
    kind = tokens[0]
    t = _Tokens(tokens, line)
    if kind in ("new", "zero", "erase"):
        cmd = Command(kind, line, target=t.ranges("target ranges", limit))
    elif kind == "move" and version == 1:
        src = t.ranges("source ranges", limit)
        cmd = Command(kind, line, target=t.ranges("target ranges", limit), source=_plain(src))
    elif kind == "move":
        digest = t.sha1("hash") if version >= 3 else None
        target = t.ranges("target ranges", limit)
        source = _source_spec(t, version, limit)
        cmd = Command(kind, line, target, source, src_hash=digest, tgt_hash=digest)
    elif kind in ("bsdiff", "imgdiff"):
        offset = t.number("patch offset")
        length = t.number("patch length")
        if version == 1:
            source = _plain(t.ranges("source ranges", limit))
            target = t.ranges("target ranges", limit)
            src_hash = tgt_hash = None
        else:
            src_hash = t.sha1("source hash") if version >= 3 else None
            tgt_hash = t.sha1("target hash") if version >= 3 else None
            target = t.ranges("target ranges", limit)
            source = _source_spec(t, version, limit)
        cmd = Command(kind, line, target, source, src_hash, tgt_hash, offset, length)
    elif kind == "stash" and version >= 2:
        sid = t.stash_id(version)
        cmd = Command(kind, line, stash_id=sid, stash_ranges=t.ranges("source ranges", limit))
    elif kind == "free" and version >= 2:
        cmd = Command(kind, line, stash_id=t.stash_id(version))
    elif kind == "compute_hash_tree" and version >= 4:
        hashtree = t.ranges("hash tree ranges", limit)
        t.ranges("filesystem ranges", limit)
        t.rest()
        cmd = Command(kind, line, target=hashtree)
    else:
        raise UnpackError(
            f"transfer list line {line}: unknown command {_clip(kind)!r} in version {version}"
        )
    t.done()
    spec, tgt = cmd.source, cmd.target
    if cmd.kind == "move" and spec is not None and tgt is not None and spec.blocks != tgt.blocks:
        raise t.error(f"{spec.blocks} source blocks for {tgt.blocks} target blocks")
    return cmd


def _plain(src: RangeSet) -> SourceSpec:
    return SourceSpec(src.blocks, src, None, ())


def _source_spec(t: _Tokens, version: int, limit: int) -> SourceSpec:
    blocks = t.number("source block count")
    if blocks > limit:
        raise LimitError(f"transfer list line {t.line}: {blocks} source blocks past the limit")
    ranges = locs = None
    if t.peek() == "-":
        t.next("-")
    else:
        ranges = t.ranges("source ranges", limit)
        if t.peek() is not None:
            locs = t.ranges("source locations", limit)
    stashes = []
    for item in t.rest():
        sid, sep, where = item.partition(":")
        valid = _SHA1_RE.fullmatch(sid) if version >= 3 else _INT_RE.fullmatch(sid)
        if not sep or not valid:
            raise t.error(f"bad stash reference {_clip(item)!r}")
        try:
            stash_locs = RangeSet.parse(where, limit)
        except UnpackError as exc:
            raise t.error(f"stash reference {_clip(item)!r}: {exc}") from exc
        stashes.append((sid.lower() if version >= 3 else str(int(sid)), stash_locs))
    spec = SourceSpec(blocks, ranges, locs, tuple(stashes))
    _check_coverage(spec, t)
    return spec


def _check_coverage(spec: SourceSpec, t: _Tokens) -> None:
    """Every buffer block must come from exactly one place."""
    if spec.ranges is not None and spec.locs is None and not spec.stashes:
        if spec.ranges.blocks != spec.blocks:
            raise t.error(f"{spec.ranges.blocks} source blocks for a buffer of {spec.blocks}")
        return
    if spec.ranges is not None and spec.locs is None:
        raise t.error("source ranges with stashes but no source locations")
    pieces: list[tuple[int, int]] = []
    if spec.ranges is not None and spec.locs is not None:
        if spec.ranges.blocks != spec.locs.blocks:
            raise t.error("source ranges and source locations differ in size")
        pieces += spec.locs.ranges
    for _, locs in spec.stashes:
        pieces += locs.ranges
    pieces.sort()
    pos = 0
    for start, end in pieces:
        if start != pos:
            raise t.error(f"buffer block {min(start, pos)} is given twice or not at all")
        pos = end
    if pos != spec.blocks:
        raise t.error(f"the sources fill {pos} of {spec.blocks} buffer blocks")


# --- new data stream --------------------------------------------------------------------------


class _Decoder(Protocol):
    def __call__(self, raw: IO[bytes]) -> Iterator[bytes]: ...


def _plain_pieces(raw: IO[bytes]) -> Iterator[bytes]:
    while chunk := raw.read(_READ_SIZE):
        yield chunk


def _brotli_pieces(raw: IO[bytes]) -> Iterator[bytes]:
    dec = brotli.Decompressor()
    while True:
        if dec.can_accept_more_data():
            if dec.is_finished():
                return
            chunk = raw.read(_READ_SIZE)
            out = dec.process(chunk, output_buffer_limit=_PIECE)
            if not chunk and not out and not dec.is_finished():
                raise UnpackError("truncated brotli new data stream")
        else:
            out = dec.process(b"", output_buffer_limit=_PIECE)
        if out:
            yield out


def _lz4_pieces(raw: IO[bytes]) -> Iterator[bytes]:
    dec = lz4.frame.LZ4FrameDecompressor()
    pending = b""
    started = False
    while True:
        if not pending and dec.needs_input:
            pending = raw.read(_READ_SIZE)
            if not pending:
                if started:
                    raise UnpackError("truncated LZ4 new data stream")
                return
        started = True
        out = dec.decompress(pending, max_length=_PIECE)
        pending = b""
        if out:
            yield out
        if dec.eof:
            pending = dec.unused_data or b""
            dec = lz4.frame.LZ4FrameDecompressor()
            started = bool(pending)


_DECODERS: dict[str, _Decoder] = {
    ".new.dat.br": _brotli_pieces,
    ".new.dat.lz4": _lz4_pieces,
    ".new.dat": _plain_pieces,
}
_DECODE_ERRORS = (brotli.error, RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError)


class _NewData:
    """The decompressed new data of one partition, read in order, a piece at a time."""

    def __init__(self, raw: IO[bytes], suffix: str, label: str) -> None:
        self._pieces = _DECODERS[suffix](raw)
        self._label = label
        self._buf = b""
        self.consumed = 0

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes; :class:`UnpackError` if the stream ends first."""
        out = bytearray()
        while len(out) < n:
            if not self._buf:
                try:
                    self._buf = next(self._pieces, b"")
                except _DECODE_ERRORS as exc:
                    raise UnpackError(f"{self._label}: corrupt new data: {exc}") from exc
                if not self._buf:
                    raise UnpackError(
                        f"{self._label}: the new data ends after {self.consumed + len(out)} "
                        "bytes, the transfer list needs more"
                    )
            take = self._buf[: n - len(out)]
            self._buf = self._buf[len(take) :]
            out += take
        self.consumed += n
        return bytes(out)


# --- applying ---------------------------------------------------------------------------------


class _Image:
    """The partition image being written, and the source image it reads from."""

    def __init__(self, fd: int, src_fd: int | None, src_blocks: int, name: str) -> None:
        self.fd = fd
        self.src_fd = src_fd
        self.src_blocks = src_blocks
        self.name = name
        self.dirty = _Blocks()
        """Blocks that may hold non-zero bytes (``zero`` writes only there)."""
        if src_blocks:
            self.dirty.add(0, src_blocks)

    def write(self, target: RangeSet, data: bytes | memoryview) -> None:
        view = memoryview(data)
        for start, end in target.ranges:
            length = (end - start) * BLOCK_SIZE
            _pwrite_all(self.fd, view[:length], start * BLOCK_SIZE)
            view = view[length:]
            self.dirty.add(start, end)

    def zero(self, target: RangeSet) -> None:
        for start, end in target.ranges:
            for lo, hi in list(self.dirty.intersect(start, end)):
                offset, stop = lo * BLOCK_SIZE, hi * BLOCK_SIZE
                while offset < stop:
                    n = min(len(_ZERO_CHUNK), stop - offset)
                    _pwrite_all(self.fd, memoryview(_ZERO_CHUNK)[:n], offset)
                    offset += n

    def read_source(self, ranges: RangeSet, line: int) -> bytes:
        if self.src_fd is None:
            raise UnpackError(f"transfer list line {line}: reads the source, none was given")
        if ranges.end > self.src_blocks:
            raise UnpackError(
                f"{self.name}: transfer list line {line}: source range ends at block "
                f"{ranges.end}, past the end of the source image ({self.src_blocks} blocks)"
            )
        out = bytearray()
        for start, end in ranges.ranges:
            want = (end - start) * BLOCK_SIZE
            data = os.pread(self.src_fd, want, start * BLOCK_SIZE)
            out += data
            out += bytes(want - len(data))
        return bytes(out)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data = data[n:]
        offset += n


class _PatchData:
    """Slices of ``NAME.patch.dat``."""

    def __init__(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo | None, label: str) -> None:
        self._zf = zf
        self._info = info
        self._label = label

    def read(self, offset: int, length: int, line: int) -> bytes:
        if self._info is None:
            raise UnpackError(f"transfer list line {line}: a patch, and no {self._label}")
        if offset + length > self._info.file_size:
            raise UnpackError(
                f"transfer list line {line}: patch {offset}+{length} lies past the end of "
                f"{self._label} ({self._info.file_size} bytes)"
            )
        if length > MAX_COMMAND_SIZE:
            raise LimitError(f"transfer list line {line}: a patch of {length} bytes")
        try:
            with self._zf.open(self._info) as f:
                f.seek(offset)
                data = f.read(length)
        except _DECODE_ERRORS as exc:
            raise UnpackError(f"{self._label}: cannot read: {exc}") from exc
        if len(data) != length:
            raise UnpackError(f"{self._label}: truncated")
        return data


class _Runner:
    """Executes the commands of one transfer list."""

    def __init__(
        self,
        tl: TransferList,
        image: _Image,
        new_data: _NewData | None,
        patches: _PatchData,
    ) -> None:
        self.tl = tl
        self.image = image
        self.new_data = new_data
        self.patches = patches
        self.stashes: dict[str, RangeSet] = {}
        self.written = 0

    def run(self) -> None:
        for cmd in self.tl.commands():
            self._count(cmd)
            getattr(self, "_do_" + cmd.kind)(cmd)

    def _count(self, cmd: Command) -> None:
        if cmd.kind in ("new", "zero", "move", "bsdiff", "imgdiff") and cmd.target is not None:
            self.written += cmd.target.blocks
            if self.written > self.tl.total_blocks:
                raise UnpackError(
                    f"transfer list line {cmd.line}: the commands write more blocks than the "
                    f"{self.tl.total_blocks} the header declares"
                )

    def _do_new(self, cmd: Command) -> None:
        assert cmd.target is not None
        if self.new_data is None:
            raise UnpackError(f"transfer list line {cmd.line}: new data, and no new.dat member")
        for start, end in cmd.target.ranges:
            # Piece by piece, so memory stays bounded whatever the range size.
            for block in range(start, end, _PIECE // BLOCK_SIZE):
                stop = min(end, block + _PIECE // BLOCK_SIZE)
                data = self.new_data.read((stop - block) * BLOCK_SIZE)
                self.image.write(RangeSet(((block, stop),)), data)

    def _do_zero(self, cmd: Command) -> None:
        assert cmd.target is not None
        self.image.zero(cmd.target)

    _do_erase = _do_zero

    def _do_stash(self, cmd: Command) -> None:
        assert cmd.stash_ranges is not None
        if self.tl.version >= 3:
            data = self._read_bounded(cmd.stash_ranges, cmd.line)
            digest = hashlib.sha1(data).hexdigest()
            if digest != cmd.stash_id:
                raise IntegrityError(
                    f"{self.image.name}: transfer list line {cmd.line}: the source blocks to "
                    f"stash have SHA-1 {digest}, not {cmd.stash_id} (a different source build?)"
                )
        elif cmd.stash_ranges.end > self.image.src_blocks:
            self.image.read_source(cmd.stash_ranges, cmd.line)  # raises: past the end
        self.stashes[cmd.stash_id] = cmd.stash_ranges

    def _do_free(self, cmd: Command) -> None:
        self.stashes.pop(cmd.stash_id, None)

    def _do_compute_hash_tree(self, cmd: Command) -> None:
        """Not executed (see the module documentation)."""

    def _do_move(self, cmd: Command) -> None:
        assert cmd.target is not None
        data = self._load_source(cmd)
        self._check_target(cmd, data)
        self.image.write(cmd.target, data)

    def _do_bsdiff(self, cmd: Command) -> None:
        self._patch(cmd)

    def _do_imgdiff(self, cmd: Command) -> None:
        self._patch(cmd)

    def _patch(self, cmd: Command) -> None:
        """``bsdiff`` and ``imgdiff``: the patch applied to the source buffer must fill the
        target blocks exactly."""
        assert cmd.target is not None
        old = self._load_source(cmd)
        patch = self.patches.read(cmd.patch_offset, cmd.patch_length, cmd.line)
        size = cmd.target.blocks * BLOCK_SIZE
        try:
            if cmd.kind == "imgdiff":
                new = apply_imgdiff(old, patch, max_new_size=size)
            else:
                new = bspatch(old, patch, max_new_size=size)
        except FwscanError as exc:
            # A bsdiff output past the target is malformed; imgdiff also has memory limits.
            limit = isinstance(exc, LimitError) and cmd.kind == "imgdiff"
            error = LimitError if limit else UnpackError
            raise error(f"transfer list line {cmd.line} ({cmd.kind}): {exc}") from exc
        if len(new) != size:
            raise UnpackError(
                f"transfer list line {cmd.line} ({cmd.kind}): the patch makes {len(new)} bytes "
                f"for {cmd.target.blocks} target blocks"
            )
        self._check_target(cmd, new)
        self.image.write(cmd.target, new)

    def _read_bounded(self, ranges: RangeSet, line: int) -> bytes:
        if ranges.blocks * BLOCK_SIZE > MAX_COMMAND_SIZE:
            raise LimitError(f"transfer list line {line}: more than {MAX_COMMAND_SIZE} bytes")
        return self.image.read_source(ranges, line)

    def _load_source(self, cmd: Command) -> bytes:
        spec = cmd.source
        assert spec is not None
        if spec.blocks * BLOCK_SIZE > MAX_COMMAND_SIZE:
            raise LimitError(
                f"transfer list line {cmd.line}: a source of {spec.blocks} blocks is larger than "
                f"{MAX_COMMAND_SIZE} bytes"
            )
        if spec.ranges is not None and spec.locs is None:
            buffer = bytearray(self._read_bounded(spec.ranges, cmd.line))
        else:
            buffer = bytearray(spec.blocks * BLOCK_SIZE)
            if spec.ranges is not None and spec.locs is not None:
                _place(buffer, spec.locs, self._read_bounded(spec.ranges, cmd.line))
            for sid, locs in spec.stashes:
                ranges = self.stashes.get(sid)
                if ranges is None:
                    raise UnpackError(
                        f"transfer list line {cmd.line}: stash {sid} is used but not stashed"
                    )
                if ranges.blocks != locs.blocks:
                    raise UnpackError(
                        f"transfer list line {cmd.line}: stash {sid} holds {ranges.blocks} "
                        f"blocks, {locs.blocks} are placed"
                    )
                _place(buffer, locs, self._read_bounded(ranges, cmd.line))
                if self.tl.version == 2:
                    del self.stashes[sid]
        if cmd.src_hash is not None:
            digest = hashlib.sha1(buffer).hexdigest()
            if digest != cmd.src_hash:
                raise IntegrityError(
                    f"{self.image.name}: transfer list line {cmd.line} ({cmd.kind}): the source "
                    f"blocks have SHA-1 {digest}, not {cmd.src_hash} (a different source build?)"
                )
        return bytes(buffer)

    def _check_target(self, cmd: Command, data: bytes) -> None:
        if cmd.tgt_hash is not None and hashlib.sha1(data).hexdigest() != cmd.tgt_hash:
            hint = (
                " (if the patch is right, the build's zlib deflates differently from this one)"
                if cmd.kind == "imgdiff"
                else ""
            )
            raise IntegrityError(
                f"{self.image.name}: transfer list line {cmd.line} ({cmd.kind}): the result does "
                f"not match its target SHA-1 {cmd.tgt_hash}{hint}"
            )


def _place(buffer: bytearray, locs: RangeSet, data: bytes) -> None:
    """Put the packed blocks of ``data`` at the buffer blocks ``locs``."""
    pos = 0
    for start, end in locs.ranges:
        length = (end - start) * BLOCK_SIZE
        buffer[start * BLOCK_SIZE : end * BLOCK_SIZE] = data[pos : pos + length]
        pos += length


def _build_image(
    name: str,
    tl: TransferList,
    out_path: Path,
    *,
    new_data: _NewData | None,
    patches: _PatchData,
    source_image: Path | None,
    size_blocks: int,
) -> None:
    """Write the image of ``tl`` to ``out_path`` (removed again on failure)."""
    src_fd: int | None = None
    src_blocks = 0
    fd = -1
    try:
        if source_image is not None:
            src_fd = os.open(source_image, os.O_RDONLY)
            src_blocks = -(-os.fstat(src_fd).st_size // BLOCK_SIZE)
            shutil.copyfile(source_image, out_path)
            fd = os.open(out_path, os.O_RDWR)
        else:
            fd = os.open(out_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(fd, max(size_blocks, src_blocks) * BLOCK_SIZE)
        image = _Image(fd, src_fd, src_blocks, name)
        _Runner(tl, image, new_data, patches).run()
    except BaseException:
        if fd >= 0:
            os.close(fd)
            fd = -1
        out_path.unlink(missing_ok=True)
        raise
    finally:
        if fd >= 0:
            os.close(fd)
        if src_fd is not None:
            os.close(src_fd)


# --- container --------------------------------------------------------------------------------


def _partitions(zf: zipfile.ZipFile) -> list[str]:
    """The partition names of the top-level transfer lists, sorted."""
    names = []
    for member in zf.namelist():
        if member.endswith(TRANSFER_LIST_SUFFIX) and "/" not in member:
            names.append(member[: -len(TRANSFER_LIST_SUFFIX)])
    return sorted(set(names))


class BlockOtaContainer:
    """Block-based OTA zips: one partition image per ``NAME.transfer.list``.

    ``source`` maps partition names to images of the source build, for incremental updates;
    without one, an incremental partition becomes a child with a :class:`NeedsSourceError`.
    """

    name = "block-ota-zip"

    def __init__(self, source: Mapping[str, Path] | None = None) -> None:
        self.source: dict[str, Path] = dict(source or {})
        """Partition name -> image of that partition in the source build."""

    def probe(self, window: Window, head: bytes) -> bool:
        """A zip whose central directory lists a top-level ``*.transfer.list`` and no
        ``payload.bin`` (that is an A/B OTA)."""
        if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            return False
        try:
            with window.open() as f, zipfile.ZipFile(f) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError):
            return False
        if _PAYLOAD in names:
            return False
        return any(n.endswith(TRANSFER_LIST_SUFFIX) and "/" not in n for n in names)

    def expand(self, window: Window, ctx: UnpackContext) -> Iterator[Child]:
        """Each partition image, rebuilt in the work directory and deleted once read."""
        try:
            with window.open() as f, zipfile.ZipFile(f) as zf:
                for part in _partitions(zf):
                    yield from self._partition(zf, part, ctx)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise UnpackError(f"not a readable zip: {exc}") from exc

    def _partition(self, zf: zipfile.ZipFile, part: str, ctx: UnpackContext) -> Iterator[Child]:
        if not _NAME_RE.fullmatch(part) or part in (".", ".."):
            bad = UnpackError(f"refused partition name {part!r}")
            yield Child(_clip(part), None, error=bad, format=self.name)
            return
        out = ctx.new_image_path(part)
        try:
            self._build(zf, part, out, ctx)
        except FwscanError as exc:
            out.unlink(missing_ok=True)
            if not isinstance(exc, NeedsSourceError) and not str(exc).startswith(part + ":"):
                exc = type(exc)(f"{part}: {exc}")
            yield Child(part, None, partition=part, error=exc, format=self.name)
            return
        except (OSError, *_DECODE_ERRORS) as exc:
            out.unlink(missing_ok=True)
            err = UnpackError(f"{part}: {exc}")
            yield Child(part, None, partition=part, error=err, format=self.name)
            return
        try:
            yield Child(part, Window(out), partition=part)
        finally:
            out.unlink(missing_ok=True)

    def _build(self, zf: zipfile.ZipFile, part: str, out: Path, ctx: UnpackContext) -> None:
        members = {i.filename: i for i in zf.infolist()}
        tl_info = members[part + TRANSFER_LIST_SUFFIX]
        if tl_info.file_size > MAX_TRANSFER_LIST_SIZE:
            raise LimitError(f"a transfer list of {tl_info.file_size} bytes")
        with zf.open(tl_info) as f:
            raw = f.read(MAX_TRANSFER_LIST_SIZE + 1)
        if len(raw) > MAX_TRANSFER_LIST_SIZE:
            raise LimitError(f"a transfer list of more than {MAX_TRANSFER_LIST_SIZE} bytes")
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise UnpackError("the transfer list is not ASCII text") from None
        tl = parse_transfer_list(text, ctx.limits)
        source = self.source.get(part)
        if tl.source_kinds and source is None:
            kinds = ", ".join(tl.source_kinds)
            raise NeedsSourceError(
                f"{part}: incremental block OTA ({kinds}): the source build is needed"
            )
        if not tl.source_kinds:
            source = None
        src_blocks = 0
        if source is not None:
            try:
                src_blocks = -(-source.stat().st_size // BLOCK_SIZE)
            except OSError as exc:
                raise UnpackError(f"cannot read the source image {source}: {exc.strerror}") from exc
        size = max(tl.image_blocks, src_blocks) * BLOCK_SIZE
        if size > ctx.limits.max_partition_size:
            raise LimitError(f"an image of {size} bytes exceeds the partition size limit")
        ctx.account(size)
        new_suffix = next((s for s in NEW_DATA_SUFFIXES if part + s in members), None)
        patch_name = part + ".patch.dat"
        patches = _PatchData(zf, members.get(patch_name), patch_name)
        with contextlib.ExitStack() as stack:
            new_data = None
            if new_suffix is not None:
                raw_new = stack.enter_context(zf.open(members[part + new_suffix]))
                new_data = _NewData(raw_new, new_suffix, part + new_suffix)
            _build_image(
                part,
                tl,
                out,
                new_data=new_data,
                patches=patches,
                source_image=source,
                size_blocks=size // BLOCK_SIZE,
            )

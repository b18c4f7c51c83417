"""Generic archives (zip, tar) and single compressed streams, read as containers.

Two containers live here:

* :class:`ArchiveContainer` (``archive``) reads zip and tar archives whose members are partition
  images or further archives: Pixel factory images (a zip with ``image-<device>-<build>.zip``
  inside, which holds ``system.img``, ``vendor.img``, ...), vendor zips of ``*.img``, Samsung
  ``.tar.md5`` packages (a ustar archive followed by an ``md5sum`` line, which the tar reader
  never reaches because it stops at the end-of-archive blocks) with ``*.img.lz4`` members, and
  ustar, GNU (long names, sparse members) and pax tars, read with Python's :mod:`tarfile`. It
  must be registered *after* every specific zip container (A/B OTA, APEX): its probe accepts
  any zip. A zip that is an Android app (``AndroidManifest.xml`` at its root, no APEX payload)
  is refused with :class:`~fwscan.errors.InputError`: apps are analysed inside partitions.
* :class:`CompressedContainer` (``compressed``) decompresses one stream: gzip (several members
  in a row are read as one stream, as ``gzip -d`` does), xz, lz4 (frame format and the legacy
  format that ``lz4 -l`` and the kernel use), bzip2 and zstd, all found by their magic numbers.

Brotli streams have no magic number, so they are recognised by name only: a member whose name
ends in ``.br`` is decompressed by the archive container while it is extracted (block-based OTA
packages hold ``system.new.dat.br``). A brotli file given on its own is not detected. The
archive container decompresses members that start with a stream magic the same way (so
``system.img.lz4`` comes out as ``system.img`` in one step, without a second temporary copy).

Members stored without compression (zip method 0, every regular tar member) are read in place
through a :class:`~fwscan.unpack.base.Window`; the others are written to the work directory,
one at a time, and deleted once the walk has read them.

Each member becomes one :class:`~fwscan.unpack.base.Child`. A member named like a partition
image (``system.img``, ``product_a.img``, ``super.img.lz4``, ``system.img.ext4``,
``radio-angler-xyz.img``) gets the partition name (:func:`partition_name`). Members that cannot
hold an image are *skipped* with a reason, so the coverage list still names them: empty files,
small text files (``android-info.txt``, ``flash-all.sh``), apps and code (APK, DEX, ELF: fwscan
analyses those inside partitions), links and device nodes (never extracted, never followed).
Every other member is handed to the walk, which records what it cannot read.

Hostile input: member names are labels only and never reach the disk (output files are named by
:meth:`~fwscan.unpack.base.UnpackContext.new_image_path`); names with ``..`` are refused, leading
slashes dropped. Every byte written is counted with
:meth:`~fwscan.unpack.base.UnpackContext.account` *before* it is written, each output is bounded
by ``Limits.max_partition_size``, zip members must produce exactly their declared size, a
declared size beyond what deflate can reach is refused, overlapping zip members (the
"overlapped" zip bomb construction) are refused, and more than ``Limits.max_files`` members fail
the archive. A stream that expands more than :data:`MAX_RATIO` times beyond
:data:`RATIO_FLOOR` bytes is stopped as a decompression bomb. Nesting is bounded by the walk
(``Limits.max_nesting``). One broken member becomes a child with an error; the rest still come
out. A tar whose headers break midway fails after the members before the damage.

Limitations: encrypted zip members and zip compression methods other than stored, deflate,
bzip2 and lzma are failed children; CRCs of stored zip members read in place are not checked;
old v7 tars (no ``ustar`` magic) are not detected; multi-volume tars are not read; cpio
archives are a filesystem (:mod:`fwscan.unpack.bootimg`), not an archive here; data after the
end of a compressed stream (other than another stream of the same format or zero padding) is
ignored. A member whose content no registered format reads is still extracted when it is
compressed, only for the walk to record it as unknown.

The lz4 and brotli decoders come from the ``lz4`` and ``brotli`` packages, imported when first
needed; zstd from ``zstandard``.
"""

from __future__ import annotations

import bz2
import importlib
import lzma
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import IO, Any, BinaryIO, Protocol, cast

import zstandard

from fwscan.errors import FwscanError, InputError, LimitError, UnpackError
from fwscan.safepath import clean_relpath
from fwscan.unpack.base import Child, UnpackContext, Window

HEAD_SIZE = 4096
"""Bytes of a member looked at to decide what it is."""
CHUNK = 1 << 20
"""Size of the reads and writes while extracting."""
TEXT_MAX = 1 << 20
"""Members that look like text and are at most this long are skipped as text files."""
RATIO_FLOOR = 1 << 30
"""Output below this size is never suspected of being a decompression bomb."""
MAX_RATIO = 4096
"""Beyond :data:`RATIO_FLOOR`, output larger than this many times the input read is refused.
Deflate cannot pass about 1032:1 and lz4 about 255:1; xz, bzip2, zstd and brotli can, and a
partition image is never that empty."""
DEFLATE_MAX_RATIO = 1032
"""The largest expansion deflate can encode (258-byte matches in about 2 bits each)."""
MAX_HEADER_READ = 16 << 20
"""The largest tar extended header (pax, GNU long name) read into memory."""
LZ4_LEGACY_MAGIC = 0x184C2102
LZ4_LEGACY_BLOCK = 8 << 20
"""Every block of the legacy lz4 format decompresses to this size, except the last."""
_LZ4_LEGACY_BOUND = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK // 255 + 16  # LZ4_COMPRESSBOUND

_MAGICS: tuple[tuple[str, bytes], ...] = (
    ("gzip", b"\x1f\x8b\x08"),
    ("xz", b"\xfd7zXZ\x00"),
    ("lz4", b"\x04\x22\x4d\x18"),
    ("lz4-legacy", b"\x02\x21\x4c\x18"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
)
_BZIP2 = re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)", re.DOTALL)
_STREAM_SUFFIXES = (".lz4", ".gz", ".xz", ".br", ".bz2", ".zst", ".zstd")
_PARTITION_RE = re.compile(r"[A-Za-z0-9_.]{1,64}")
_APP_SUFFIXES = (".apk", ".jar", ".dex", ".odex", ".vdex", ".oat", ".so")
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")

STREAM_FORMATS = ("gzip", "xz", "lz4", "lz4-legacy", "bzip2", "zstd", "brotli", "lzma")
"""What :func:`decompress` reads. ``brotli`` and ``lzma`` (the legacy ``.lzma`` format of
some old ramdisks) have no reliable magic and are only used when the caller knows."""


# -- recognising things ---------------------------------------------------------------------


def stream_format(head: bytes) -> str | None:
    """The compressed-stream format whose magic starts ``head`` (never ``brotli``/``lzma``)."""
    for fmt, magic in _MAGICS:
        if head.startswith(magic):
            return fmt
    if _BZIP2.match(head):
        return "bzip2"
    return None


def is_zip(head: bytes) -> bool:
    """A zip local header, or the end record of an empty zip, at the start."""
    return head.startswith((b"PK\x03\x04", b"PK\x05\x06"))


def is_tar(head: bytes) -> bool:
    """A ustar/GNU/pax tar header (``ustar`` magic and a valid checksum) at the start."""
    if len(head) < 512 or head[257:262] != b"ustar":
        return False
    block = head[:512]
    field = block[148:156].split(b"\0", 1)[0].strip(b" ")
    if not field or any(c not in b"01234567" for c in field):
        return False
    recorded = int(field, 8)
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b >= 0x80)
    return recorded in (unsigned, signed)


def looks_like_text(head: bytes) -> bool:
    """UTF-8 text without NUL or control characters other than whitespace."""
    if not head or b"\0" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # a character cut at the end of the head is fine
            return False
        text = head[: exc.start].decode("utf-8")
    return all(ch.isprintable() or ch in "\t\n\r\f\v\x1b" for ch in text)


def partition_name(member: str) -> str | None:
    """The partition a member named like a partition image holds, else ``None``.

    The directory part and compression suffixes (``.lz4``, ``.gz``, ``.xz``, ``.br``,
    ``.bz2``, ``.zst``) are dropped, then Samsung's ``.ext4``; what is left must end in
    ``.img``. A ``-`` starts a version tail in factory images (``radio-angler-x.img`` holds
    ``radio``) and an ``_a``/``_b`` slot suffix is dropped (``product_a.img`` holds ``product``).
    """
    base = member.replace("\\", "/").rsplit("/", 1)[-1]
    lower = base.lower()
    stripped = True
    while stripped:
        stripped = False
        for suffix in _STREAM_SUFFIXES:
            if lower.endswith(suffix):
                base, lower = base[: -len(suffix)], lower[: -len(suffix)]
                stripped = True
    if lower.endswith(".ext4"):
        base, lower = base[:-5], lower[:-5]
    if not lower.endswith(".img"):
        return None
    base = base[:-4].split("-", 1)[0]
    if base.endswith(("_a", "_b")) and len(base) > 2:
        base = base[:-2]
    return base if _PARTITION_RE.fullmatch(base) else None


# -- decompression --------------------------------------------------------------------------


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        package = name.split(".", 1)[0]
        raise UnpackError(f"the Python package {package!r} is needed to read this data") from exc


class _Decoder(Protocol):
    """The shape of the standard library's incremental decompressors."""

    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _ZlibDecoder:
    """``zlib.decompressobj`` for gzip, shaped like :class:`_Decoder`."""

    def __init__(self) -> None:
        self._obj = zlib.decompressobj(wbits=31)

    @property
    def eof(self) -> bool:
        return self._obj.eof

    @property
    def needs_input(self) -> bool:
        return not self._obj.unconsumed_tail

    @property
    def unused_data(self) -> bytes:
        return self._obj.unused_data

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        return self._obj.decompress(self._obj.unconsumed_tail + data, max(0, max_length))


class _BrotliDecoder:
    """``brotli.Decompressor``, shaped like :class:`_Decoder` (brotli 1.2 bounds the output)."""

    def __init__(self) -> None:
        self._obj: Any = _module("brotli").Decompressor()

    @property
    def eof(self) -> bool:
        return bool(self._obj.is_finished())

    @property
    def needs_input(self) -> bool:
        return bool(self._obj.can_accept_more_data())

    @property
    def unused_data(self) -> bytes:
        return b""

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        return bytes(self._obj.process(data, output_buffer_limit=max_length))


def _lz4_frame_decoder() -> _Decoder:
    decoder: _Decoder = _module("lz4.frame").LZ4FrameDecompressor()
    return decoder


_DECODERS: dict[str, tuple[Callable[[], _Decoder], bytes]] = {
    "gzip": (_ZlibDecoder, b"\x1f\x8b\x08"),
    "xz": (lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ), b"\xfd7zXZ\x00"),
    "lzma": (lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE), b"\x5d\x00\x00"),
    "bzip2": (bz2.BZ2Decompressor, b"BZh"),
    "lz4": (_lz4_frame_decoder, b"\x04\x22\x4d\x18"),
    "brotli": (_BrotliDecoder, b""),
}
"""Each incremental decoder and the magic a following stream of the same format starts with
(empty: the format is never continued)."""


class Readable(Protocol):
    """Anything with ``read(n)``: a file, a zip member, a window."""

    def read(self, n: int = -1, /) -> bytes: ...


class _CountingReader:
    """A source stream that counts the bytes read from it (for the ratio check)."""

    def __init__(self, src: Readable) -> None:
        self._src = src
        self.count = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self._src.read(n)
        self.count += len(data)
        return data


class _Sink:
    """Writes output after counting it against the limits."""

    def __init__(
        self, out: BinaryIO, ctx: UnpackContext, what: str, src: _CountingReader | None
    ) -> None:
        self._out = out
        self._ctx = ctx
        self._what = what
        self._src = src
        self.written = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        new = self.written + len(data)
        limit = self._ctx.limits.max_partition_size
        if new > limit:
            raise LimitError(f"{self._what}: more than {limit} bytes once decompressed")
        if (
            self._src is not None
            and new > RATIO_FLOOR
            and new > MAX_RATIO * max(1, self._src.count)
        ):
            raise LimitError(
                f"{self._what}: expands more than {MAX_RATIO} times "
                f"({self._src.count} bytes to over {new}): refused as a decompression bomb"
            )
        budget = self._ctx.limits.max_total_extracted
        if self._ctx.extracted_bytes + len(data) > budget:  # checked first: the count stays true
            raise LimitError(f"extracted data exceeds the limit of {budget} bytes")
        self._ctx.account(len(data))
        self._out.write(data)
        self.written = new


_CODEC_ERRORS: tuple[type[BaseException], ...] = (
    zlib.error,
    lzma.LZMAError,
    OSError,
    EOFError,
    ValueError,
    RuntimeError,
    zstandard.ZstdError,
)


def _codec_errors() -> tuple[type[BaseException], ...]:
    extra: list[type[BaseException]] = []
    for module, attr in (("brotli", "error"), ("lz4.block", "LZ4BlockError")):
        try:
            extra.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):
            continue
    return _CODEC_ERRORS + tuple(extra)


def _pump(fmt: str, src: _CountingReader, sink: _Sink) -> None:
    make, magic = _DECODERS[fmt]
    decoder = make()
    pending = b""
    exhausted = False
    idle = 0
    while True:
        data = b""
        if pending:  # the start of a following stream, for a fresh decoder
            data, pending = pending, b""
        elif decoder.needs_input and not exhausted:
            data = src.read(CHUNK)
            exhausted = not data
        out = decoder.decompress(data, CHUNK)
        sink.write(out)
        if not decoder.eof:
            # Without input, a decoder may still hold output (brotli says it wants input
            # while it does); only a call that gives nothing means the data is cut short.
            if exhausted and not out:
                raise UnpackError(f"truncated {fmt} stream")
            idle = 0 if data or out else idle + 1
            if idle > 100:
                raise UnpackError(f"{fmt} decoder makes no progress")
            continue
        # The end of one stream: zero padding, another stream of the same format, or the end.
        rest = decoder.unused_data or b""  # lz4 gives None
        while True:
            rest = rest.lstrip(b"\0")
            if len(rest) >= max(1, len(magic)):
                break
            more = src.read(CHUNK)
            if not more:
                break
            rest += more
        if not magic or not rest.startswith(magic):
            return  # the end, zero padding, or trailing data that is not ours (ignored)
        decoder = make()
        pending = rest


def _pump_zstd(src: _CountingReader, sink: _Sink) -> None:
    # stream_reader only calls read(); its annotation asks for a whole IO object.
    reader = zstandard.ZstdDecompressor().stream_reader(
        cast("IO[bytes]", src), read_across_frames=True
    )
    while chunk := reader.read(CHUNK):
        sink.write(chunk)


def _pump_lz4_legacy(src: _CountingReader, sink: _Sink) -> None:
    """The legacy lz4 format: the magic, then blocks of a 32-bit size and LZ4 block data, each
    decoding to :data:`LZ4_LEGACY_BLOCK` bytes but the last; no end mark (the data ends, a zero
    size, or the magic again, which starts another legacy frame)."""
    block_mod: Any = _module("lz4.block")
    if src.read(4) != LZ4_LEGACY_MAGIC.to_bytes(4, "little"):
        raise UnpackError("not an lz4 legacy stream")
    while True:
        raw = src.read(4)
        if len(raw) < 4:
            if any(raw):
                raise UnpackError("truncated lz4 legacy block size")
            return
        size = int.from_bytes(raw, "little")
        if size == LZ4_LEGACY_MAGIC:
            continue
        if size == 0:
            return
        if size > _LZ4_LEGACY_BOUND:
            raise UnpackError(f"lz4 legacy block of {size} bytes is larger than the format allows")
        block = src.read(size)
        if len(block) != size:
            raise UnpackError("truncated lz4 legacy block")
        sink.write(bytes(block_mod.decompress(block, uncompressed_size=LZ4_LEGACY_BLOCK)))


def decompress(src: Readable, fmt: str, out: BinaryIO, ctx: UnpackContext, what: str) -> int:
    """Decompress the ``fmt`` stream read from ``src`` into ``out``; return the bytes written.

    Output is counted with ``ctx.account`` before it is written and bounded by
    ``Limits.max_partition_size`` and the ratio check. Raises :class:`UnpackError` (or
    :class:`LimitError`) naming ``what`` for corrupt or truncated data.
    """
    counting = _CountingReader(src)
    sink = _Sink(out, ctx, what, counting)
    try:
        if fmt == "zstd":
            _pump_zstd(counting, sink)
        elif fmt == "lz4-legacy":
            _pump_lz4_legacy(counting, sink)
        elif fmt in _DECODERS:
            _pump(fmt, counting, sink)
        else:
            raise UnpackError(f"{what}: unknown stream format {fmt!r}")
    except FwscanError:
        raise
    except _codec_errors() as exc:
        raise UnpackError(f"{what}: corrupt {fmt} data: {exc}") from exc
    return sink.written


def extract_to_workdir(
    src: Readable,
    ctx: UnpackContext,
    name: str,
    what: str,
    *,
    fmt: str | None = None,
    declared: int | None = None,
) -> Path:
    """Copy ``src`` (decompressing it when ``fmt`` is given) to a new file of the work directory.

    ``declared`` is the size the source promises; a copy must match it exactly. A failure
    removes the partial file and raises :class:`UnpackError` or :class:`LimitError`.
    """
    out = ctx.new_image_path(name)
    try:
        with open(out, "xb") as dst:
            if fmt is not None:
                decompress(src, fmt, dst, ctx, what)
            else:
                _copy(src, _Sink(dst, ctx, what, None), what, declared)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out


def _copy(src: Readable, sink: _Sink, what: str, declared: int | None) -> None:
    while chunk := src.read(CHUNK):
        if declared is not None and sink.written + len(chunk) > declared:
            raise UnpackError(f"{what}: more data than the declared {declared} bytes")
        sink.write(chunk)
    if declared is not None and sink.written != declared:
        raise UnpackError(f"{what}: {sink.written} bytes where {declared} were declared")


# -- zip ------------------------------------------------------------------------------------


def open_zip(window: Window) -> zipfile.ZipFile:
    """The zip in ``window`` (central directory read, members not yet)."""
    try:
        return zipfile.ZipFile(window.open())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise UnpackError(f"not a readable zip: {exc}") from exc


def stored_window(window: Window, info: zipfile.ZipInfo) -> Window:
    """The bytes of a stored zip member, in place, after checking its local header."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise UnpackError(f"{info.filename}: not stored")
    if info.compress_size != info.file_size:
        raise UnpackError(
            f"{info.filename}: stored member of {info.compress_size} bytes declares "
            f"{info.file_size}"
        )
    with window.open() as f:
        f.seek(info.header_offset)
        raw = f.read(_LOCAL_HEADER.size)
    if len(raw) != _LOCAL_HEADER.size:
        raise UnpackError(f"{info.filename}: local header past the end of the zip")
    sig, *_rest, name_len, extra_len = _LOCAL_HEADER.unpack(raw)
    if sig != b"PK\x03\x04":
        raise UnpackError(f"{info.filename}: bad local header signature")
    start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    if start + info.compress_size > window.size():
        raise UnpackError(f"{info.filename}: member data past the end of the zip")
    return Window(window.path, window.offset + start, info.compress_size)


def check_zip_member(info: zipfile.ZipInfo, ctx: UnpackContext) -> None:
    """Refuse members that are encrypted, too large, or declare an impossible ratio."""
    if info.flag_bits & 0x1:
        raise UnpackError(f"{info.filename}: encrypted member")
    if info.file_size > ctx.limits.max_partition_size:
        raise LimitError(f"{info.filename}: {info.file_size} bytes exceeds the size limit")
    if (
        info.compress_type == zipfile.ZIP_DEFLATED
        and info.file_size > DEFLATE_MAX_RATIO * info.compress_size + 1024
    ):
        raise UnpackError(
            f"{info.filename}: declares {info.file_size} bytes from {info.compress_size}, "
            "more than deflate can produce"
        )


def _overlapping(infos: list[zipfile.ZipInfo]) -> set[str]:
    """Members whose data overlaps the member before them in the file (a zip bomb trick)."""
    bad: set[str] = set()
    previous_end = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < previous_end:
            bad.add(info.filename)
        previous_end = max(previous_end, info.header_offset + 30 + info.compress_size)
    return bad


def _is_symlink_info(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


# -- tar ------------------------------------------------------------------------------------


class _GuardedReader:
    """The archive stream as :mod:`tarfile` reads it, refusing huge single reads (a pax or GNU
    long-name header claiming gigabytes would otherwise be read into memory)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def read(self, size: int = -1, /) -> bytes:
        if size < 0 or size > MAX_HEADER_READ:
            raise LimitError(f"tar header data of {size} bytes is larger than {MAX_HEADER_READ}")
        return self._raw.read(size)

    def write(self, b: bytes, /) -> int:
        raise UnpackError("read-only")

    def tell(self) -> int:
        return self._raw.tell()

    def seek(self, pos: int, whence: int = 0, /) -> int:
        return self._raw.seek(pos, whence)

    def close(self) -> None:
        self._raw.close()


# -- the containers -------------------------------------------------------------------------


def _as_error(exc: Exception) -> FwscanError:
    if isinstance(exc, FwscanError):
        return exc
    return UnpackError(f"unexpected {type(exc).__name__}: {exc}")


def _skip_reason(name: str, head: bytes, size: int) -> str | None:
    """Why a member with a non-compressed head is not handed to the walk, if it is not."""
    lower = name.lower()
    if lower.endswith(_APP_SUFFIXES) or head.startswith((b"dex\n", b"\x7fELF")):
        return "an app or code file: fwscan analyses those inside partitions"
    if size <= TEXT_MAX and looks_like_text(head):
        return f"text file ({size} bytes), not an image or archive"
    return None


class ArchiveContainer:
    """Zip and tar archives of images (register it after the specific zip containers)."""

    name = "archive"

    def probe(self, window: Window, head: bytes) -> bool:
        """Any zip, or a tar with a ``ustar`` header."""
        return is_zip(head) or is_tar(head)

    def expand(self, window: Window, ctx: UnpackContext) -> Iterator[Child]:
        """The members, one child each (see the module documentation for the rules)."""
        if is_zip(window.read_head(4)):
            yield from self._expand_zip(window, ctx)
        else:
            yield from self._expand_tar(window, ctx)

    # zip

    def _expand_zip(self, window: Window, ctx: UnpackContext) -> Iterator[Child]:
        with open_zip(window) as zf:
            infos = zf.infolist()
            if len(infos) > ctx.limits.max_files:
                raise LimitError(f"zip with {len(infos)} members: over the limit")
            names = {i.filename for i in infos}
            if "AndroidManifest.xml" in names and not names & {"apex_payload.img", "original_apex"}:
                raise InputError(
                    "an Android app (APK), not a firmware archive: apps are analysed inside "
                    "partitions (or read a folder of apps with --as-files)"
                )
            overlapping = _overlapping(infos)
            for info in infos:
                if info.is_dir():
                    continue
                child, made = self._zip_member(zf, window, info, ctx, overlapping)
                try:
                    yield child
                finally:
                    if made is not None:
                        made.unlink(missing_ok=True)

    def _zip_member(
        self,
        zf: zipfile.ZipFile,
        window: Window,
        info: zipfile.ZipInfo,
        ctx: UnpackContext,
        overlapping: set[str],
    ) -> tuple[Child, Path | None]:
        try:
            return _zip_member(zf, window, info, ctx, overlapping)
        except Exception as exc:  # noqa: BLE001 - one broken member must not end the archive
            return Child(_label(info.filename), None, error=_as_error(exc)), None

    # tar

    def _expand_tar(self, window: Window, ctx: UnpackContext) -> Iterator[Child]:
        raw = window.open()
        try:
            tf = tarfile.TarFile(fileobj=_GuardedReader(raw), mode="r")
        except (tarfile.TarError, OSError, EOFError, ValueError, UnicodeError) as exc:
            raw.close()
            raise UnpackError(f"not a readable tar: {exc}") from exc
        with tf:
            count = 0
            while True:
                try:
                    info = tf.next()
                except (tarfile.TarError, OSError, EOFError, ValueError, UnicodeError) as exc:
                    raise UnpackError(f"tar broken after {count} members: {exc}") from exc
                if info is None:
                    _check_tar_end(window, tf.offset)
                    return
                # Nothing is looked up later: keep memory flat over huge archives.
                tf.members.clear()  # type: ignore[attr-defined]
                count += 1
                if count > ctx.limits.max_files:
                    raise LimitError(f"tar with more than {ctx.limits.max_files} members")
                if info.isdir():
                    continue
                child, made = self._tar_member(tf, window, info, ctx)
                try:
                    yield child
                finally:
                    if made is not None:
                        made.unlink(missing_ok=True)

    def _tar_member(
        self, tf: tarfile.TarFile, window: Window, info: tarfile.TarInfo, ctx: UnpackContext
    ) -> tuple[Child, Path | None]:
        try:
            return _tar_member(tf, window, info, ctx)
        except Exception as exc:  # noqa: BLE001 - one broken member must not end the archive
            return Child(_label(info.name), None, error=_as_error(exc)), None


def _label(name: str) -> str:
    """A member's name for the source chain (its cleaned path, or the raw name if refused)."""
    try:
        return clean_relpath(name)
    except UnpackError:
        return name


def _zip_member(
    zf: zipfile.ZipFile,
    window: Window,
    info: zipfile.ZipInfo,
    ctx: UnpackContext,
    overlapping: set[str],
) -> tuple[Child, Path | None]:
    """One zip member as a child, and the work file made for it (raises on damage)."""
    label = clean_relpath(info.filename)
    part = partition_name(label)
    if _is_symlink_info(info):
        return Child(label, None, skipped="symbolic link member: never extracted"), None
    if info.filename in overlapping:
        raise UnpackError("member data overlaps another member (zip bomb construction)")
    check_zip_member(info, ctx)
    if info.file_size == 0:
        return Child(label, None, skipped="empty file"), None
    inplace = stored_window(window, info) if info.compress_type == zipfile.ZIP_STORED else None
    if inplace is not None:
        head = inplace.read_head(HEAD_SIZE)
    else:
        with zf.open(info) as src:
            head = src.read(HEAD_SIZE)
    fmt = stream_format(head) or ("brotli" if label.lower().endswith(".br") else None)
    if fmt is None:
        reason = _skip_reason(label, head, info.file_size)
        if reason is not None:
            return Child(label, None, partition=part, skipped=reason), None
        if inplace is not None:
            return Child(label, inplace, partition=part), None
    with inplace.open() if inplace is not None else zf.open(info) as src:
        out = extract_to_workdir(
            src,
            ctx,
            part or label.rsplit("/", 1)[-1],
            f"zip member {label}",
            fmt=fmt,
            declared=None if fmt else info.file_size,
        )
    return Child(label, Window(out), partition=part), out


def _tar_member(
    tf: tarfile.TarFile, window: Window, info: tarfile.TarInfo, ctx: UnpackContext
) -> tuple[Child, Path | None]:
    """One tar member as a child, and the work file made for it (raises on damage)."""
    label = clean_relpath(info.name)
    part = partition_name(label)
    if info.issym() or info.islnk():
        kind = "symbolic" if info.issym() else "hard"
        why = f"{kind} link to {info.linkname!r}: links are never followed"
        return Child(label, None, skipped=why), None
    if not info.isreg():
        return Child(label, None, skipped=f"tar entry of type {info.type!r}"), None
    if info.size > ctx.limits.max_partition_size:
        raise LimitError(f"{info.size} bytes exceeds the size limit")
    if info.size == 0:
        return Child(label, None, skipped="empty file"), None
    what = f"tar member {label}"
    name = part or label.rsplit("/", 1)[-1]
    if info.issparse():
        extracted = tf.extractfile(info)
        if extracted is None:
            raise UnpackError("sparse member without data")
        with extracted as src:
            out = extract_to_workdir(src, ctx, name, what, declared=info.size)
        return Child(label, Window(out), partition=part), out
    if info.offset_data + info.size > window.size():
        raise UnpackError(
            f"member data ({info.size} bytes at {info.offset_data}) past the end of the "
            "archive: truncated"
        )
    inplace = Window(window.path, window.offset + info.offset_data, info.size)
    head = inplace.read_head(HEAD_SIZE)
    fmt = stream_format(head) or ("brotli" if label.lower().endswith(".br") else None)
    if fmt is None:
        reason = _skip_reason(label, head, info.size)
        if reason is not None:
            return Child(label, None, partition=part, skipped=reason), None
        return Child(label, inplace, partition=part), None
    with inplace.open() as src:
        out = extract_to_workdir(src, ctx, name, what, fmt=fmt)
    return Child(label, Window(out), partition=part), out


def _check_tar_end(window: Window, offset: int) -> None:
    """After the last member: the end-of-archive zero block or the end of the data, else the
    header there is damaged (tarfile stops quietly at a bad header)."""
    with window.open() as f:
        f.seek(offset)
        block = f.read(512)
    if block.strip(b"\0"):
        raise UnpackError(f"unreadable tar header at offset {offset}: damaged archive")


def _gzip_name(head: bytes) -> str | None:
    """The original file name a gzip header records (``FNAME``), when it has one."""
    if len(head) < 10 or not head[3] & 0x08:
        return None
    pos = 10
    if head[3] & 0x04:  # FEXTRA
        if len(head) < 12:
            return None
        pos = 12 + int.from_bytes(head[10:12], "little")
    end = head.find(b"\0", pos)
    if end < 0:
        return None
    try:
        return clean_relpath(head[pos:end].decode("latin-1")).rsplit("/", 1)[-1]
    except UnpackError:
        return None


class CompressedContainer:
    """A single gzip, xz, lz4 (frame or legacy), bzip2 or zstd stream."""

    name = "compressed"

    def probe(self, window: Window, head: bytes) -> bool:
        """A stream magic at the start."""
        return stream_format(head) is not None

    def expand(self, window: Window, ctx: UnpackContext) -> Iterator[Child]:
        """The decompressed data, written to the work directory.

        The child is named by the gzip ``FNAME`` field when there is one (which also gives the
        partition of ``system.img.gz``), else ``decompressed``. Corrupt or truncated data
        raises :class:`UnpackError`.
        """
        head = window.read_head(HEAD_SIZE)
        fmt = stream_format(head)
        if fmt is None:
            raise UnpackError("not a compressed stream")
        label = (_gzip_name(head) if fmt == "gzip" else None) or "decompressed"
        part = partition_name(label) if label != "decompressed" else None
        with window.open() as src:
            out = extract_to_workdir(src, ctx, part or fmt, f"{fmt} stream", fmt=fmt)
        try:
            yield Child(label, Window(out), partition=part)
        finally:
            out.unlink(missing_ok=True)

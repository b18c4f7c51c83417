"""Read EROFS images in place, without mounting them.

EROFS ("Enhanced Read-Only File System") is what Android system, vendor and product images are
made of since Android 13, usually compressed with LZ4HC. This reader follows the on-disk format
as Linux defines it (``fs/erofs/erofs_fs.h``, ``Documentation/filesystems/erofs.rst``) and as
erofs-utils reads it (``include/erofs_fs.h``, ``lib/zmap.c``, ``lib/data.c``,
``lib/decompress.c``). The format, as far as this module needs it:

*Superblock* (128 bytes, plus ``sb_extslots`` * 16) at byte 1024: magic ``0xE0F5E1E2``, block
size ``1 << blkszbits`` (512 bytes to 64 KiB), ``root_nid``, ``meta_blkaddr``, feature flags.
Unknown *incompat* flags are refused; *compat* flags (superblock checksum, mtime, xattr filter)
change nothing for a reader and are ignored (the crc32c checksum is not verified).

*Inodes* live at ``meta_blkaddr * block_size + nid * 32``: a 32-byte compact or a 64-byte
extended core (bit 0 of ``i_format``), then the inline extended attributes
(``12 + 4 * (i_xattr_icount - 1)`` bytes when the count is not zero; skipped), then the data
layout's own metadata. The layout is bits 1-3 of ``i_format``:

- ``FLAT_PLAIN`` (0): the data in consecutive blocks from ``i_u`` (``0xFFFFFFFF``: all zeros).
- ``FLAT_INLINE`` (2): the same, except the last partial block ("tail") which follows the inode
  and its attributes in the metadata area, without crossing a block boundary.
- ``CHUNK_BASED`` (4): the file cut in chunks of ``block_size << (format & 31)`` bytes, each
  mapped by a 4-byte block address or an 8-byte chunk index (``0xFFFFFFFF``: a hole).
- ``COMPRESSED_FULL`` (1) and ``COMPRESSED_COMPACT`` (3): an 8-byte map header (algorithms of
  HEAD1 and HEAD2 lclusters, logical cluster size, advise bits, tail information) at the next
  8-byte boundary, then one index per logical cluster ("lcluster", one block): 8-byte
  ``z_erofs_lcluster_index`` records (after 8 reserved bytes) in the full layout, bit-packed packs
  in the compact one (2 lclusters in 8 bytes, or 16 in 32 bytes with ``COMPACTED_2B``, each pack
  ending with a 32-bit base block address from which the heads' addresses are counted). A
  HEAD1/HEAD2/PLAIN lcluster starts an extent at its ``clusterofs``; NONHEAD lclusters continue
  it, and the first NONHEAD of a big pcluster carries the compressed block count (CBLKCNT). An
  extent runs to the next head; its physical cluster ("pcluster") is decoded once, as a whole.
  With ``lz4_0padding`` the compressed data is right-aligned in its pcluster after zero bytes;
  without it (``-Elegacy-compress`` images) it starts at the first byte and is followed by zeros.
  ``ztailpacking`` keeps the last pcluster inline after the index; ``fragments`` keeps a file's
  tail (or the whole file) in the special "packed" inode at ``h_fragmentoff``. PLAIN pclusters
  hold the bytes uncompressed (shifted, or "interlaced": rotated in their block).

*Compression*: LZ4 (LZ4HC is the same format) through ``lz4.block``; LZMA, which EROFS stores
as *MicroLZMA*: LZMA1 without header, whose first byte is the bitwise negation of the LZMA
properties byte (``(pb * 5 + lp) * 9 + lc``) and takes the place of the range coder's first
byte, which is always zero; the dictionary size is not in the stream (a dictionary as large as
the pcluster's decoded size suffices) and there is no end marker. It is decoded here as raw
LZMA1 after putting the zero byte back, up to the known decoded size. DEFLATE (raw, through
``zlib``) and Zstandard (through ``zstandard``) pclusters are read too.

*Directories* are blocks of 12-byte ``erofs_dirent`` records (nid, name offset, file type)
followed by the names; the first record's name offset gives the record count; the last name of
a block ends at the first zero byte or at the block's end. Symlink targets are the link's data.

Not supported (each refused with a clear :class:`UnpackError`): the ``48bit`` and ``metabox``
layouts (erofs-utils 1.9 options, not used by Android), directory blocks larger than the block
size, data on extra devices (``--blobdev``), extent-based compressed indexes
(``Z_EROFS_ADVISE_EXTENTS``), compression algorithms other than the four above. Extended
attributes (SELinux labels, capabilities) are skipped, not reported.

Everything read from the image is untrusted: every block address and length is checked against
the image, pclusters are bounded (1 MiB encoded, 12 MiB decoded, as the kernel does), the
decoded output is bounded by the file size, directories by ``Limits.max_dir_entries``, nesting
by ``Limits.max_depth``, and cycles are detected. A damaged file fails alone:
:meth:`ErofsFileSystem.iter_content` raises :class:`UnpackError` for it, and
:meth:`ErofsFileSystem.walk` records a damaged directory or entry in
:attr:`ErofsFileSystem.errors` and goes on. A damaged superblock or root directory fails at once.

Speed: one file descriptor read with ``os.pread``; metadata through a small cache of 64 KiB
slices; compressed indexes decoded a pack at a time, without per-byte work; each file streamed
extent by extent, consecutive pclusters read with one system call per MiB, each pcluster decoded
once (the last one is kept for deduplicated extents that refer to it again, the packed inode's
in a small cache) and handed out as it is, without copying pieces together; runs of
uncompressed blocks read directly in large pieces. Walking and hashing a 1.2 GiB LZ4HC image
takes about as long as ``fsck.erofs --extract`` writing it out.

Checked against images from mkfs.erofs 1.5 (Debian 12: uncompressed, chunked, LZ4, LZ4HC,
legacy indexes, big pclusters, ztailpacking) and 1.9 (also LZMA, DEFLATE, Zstandard, fragments,
dedupe, compressed directories, 512 to 2048-byte blocks), with ``fsck.erofs`` and ``dump.erofs``.
"""

from __future__ import annotations

import bisect
import importlib
import io
import lzma
import os
import re
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fwscan.errors import LimitError, UnpackError
from fwscan.limits import DEFAULT_LIMITS, Limits
from fwscan.unpack.base import FsEntry, Window, inode_entry, join_name, walk_inodes

_SB_OFFSET = 1024
_SB_SIZE = 128
_MAGIC = 0xE0F5E1E2

_INCOMPAT_ZERO_PADDING = 0x0001
_INCOMPAT_COMPR_CFGS = 0x0002  # also BIG_PCLUSTER
_INCOMPAT_CHUNKED_FILE = 0x0004
_INCOMPAT_DEVICE_TABLE = 0x0008  # also COMPR_HEAD2
_INCOMPAT_ZTAILPACKING = 0x0010
_INCOMPAT_FRAGMENTS = 0x0020  # also DEDUPE
_INCOMPAT_XATTR_PREFIXES = 0x0040
_INCOMPAT_48BIT = 0x0080
_INCOMPAT_METABOX = 0x0100
_INCOMPAT_NAMES = {
    _INCOMPAT_ZERO_PADDING: "lz4_0padding",
    _INCOMPAT_COMPR_CFGS: "compr_cfgs/big_pcluster",
    _INCOMPAT_CHUNKED_FILE: "chunked_file",
    _INCOMPAT_DEVICE_TABLE: "device_table/compr_head2",
    _INCOMPAT_ZTAILPACKING: "ztailpacking",
    _INCOMPAT_FRAGMENTS: "fragments/dedupe",
    _INCOMPAT_XATTR_PREFIXES: "xattr_prefixes",
    _INCOMPAT_48BIT: "48bit",
    _INCOMPAT_METABOX: "metabox",
}
_INCOMPAT_REFUSED = {
    _INCOMPAT_48BIT: "48-bit block addresses (erofs-utils -E48bit) are not supported",
    _INCOMPAT_METABOX: "inodes in a metadata box (erofs-utils -m) are not supported",
}
_INCOMPAT_KNOWN = sum(_INCOMPAT_NAMES)

_LAYOUT_FLAT_PLAIN = 0
_LAYOUT_COMPRESSED_FULL = 1
_LAYOUT_FLAT_INLINE = 2
_LAYOUT_COMPRESSED_COMPACT = 3
_LAYOUT_CHUNK_BASED = 4
_LAYOUT_NAMES = {0: "flat plain", 1: "compressed full", 2: "flat inline", 3: "compressed compact"}
_I_ALL = 0x1F  # version, layout and the nlink-1 / dot-omitted bit
_NULL_ADDR = 0xFFFFFFFF

_CHUNK_BLKBITS_MASK = 0x001F
_CHUNK_INDEXES = 0x0020
_CHUNK_FORMAT_ALL = 0x003F

_S_IFMT = 0xF000
_S_IFREG = 0x8000
_S_IFDIR = 0x4000
_S_IFLNK = 0xA000
_S_OTHER = (0x1000, 0x2000, 0x6000, 0xC000)  # fifo, char, block, socket
# Directory entry file types and the inode types they name.

_INODE_COMPACT = struct.Struct("<HHHHIIIIHHI")
_INODE_EXTENDED = struct.Struct("<HHHHQIIIIQII16x")
_DIRENT = struct.Struct("<QHBx")
_DIRENT_SIZE = 12
_NAME_LEN = 255
_SYMLINK_MAX = 4096

# Compression (map header, lcluster indexes, algorithms).
_ADVISE_COMPACTED_2B = 0x0001  # COMPRESSED_COMPACT; in COMPRESSED_FULL the same bit is EXTENTS
_ADVISE_BIG_PCLUSTER_1 = 0x0002
_ADVISE_BIG_PCLUSTER_2 = 0x0004
_ADVISE_INLINE_PCLUSTER = 0x0008
_ADVISE_INTERLACED_PCLUSTER = 0x0010
_ADVISE_FRAGMENT_PCLUSTER = 0x0020
_FRAGMENT_INODE = 0x80  # in h_clusterbits: the whole file is in the packed inode
_LC_PLAIN = 0
_LC_HEAD1 = 1
_LC_NONHEAD = 2
_LC_HEAD2 = 3
_D0_CBLKCNT = 1 << 11
_PARTIAL_REF = 1 << 15
_PCLUSTER_MAX = 1 << 20  # Z_EROFS_PCLUSTER_MAX_SIZE
_PCLUSTER_MAX_DSIZE = 12 << 20  # Z_EROFS_PCLUSTER_MAX_DSIZE
_ALG_LZ4 = 0
_ALG_LZMA = 1
_ALG_DEFLATE = 2
_ALG_ZSTD = 3
_ALG_NAMES = {_ALG_LZ4: "lz4", _ALG_LZMA: "lzma", _ALG_DEFLATE: "deflate", _ALG_ZSTD: "zstd"}
_LZMA_MAX_DICT = 8 << 20

# Extent kinds: how the bytes ``[la, la + llen)`` of a file are obtained.
_K_ZERO = 0  # zeros (holes)
_K_RAW = 1  # image bytes [pa, pa + llen)
_K_INTERLACED = 2  # an uncompressed pcluster of one block, rotated by blkoff(la)
_K_FRAGMENT = 3  # packed inode bytes [pa, pa + llen)
_K_ALG = 16  # + algorithm: a compressed pcluster image[pa, pa + plen)

# (logical start, logical length, kind, physical start, physical length, partial reference)
_Extent = tuple[int, int, int, int, int, bool]

_META_SLICE = 1 << 16
_META_CACHE_SLICES = 64
_BATCH = 1 << 20
_RAW_DIRECT = 1 << 16
_INDEX_READ = 1 << 16
_PCL_CACHE = 16
_PACKED_MAX_EXTENTS = 1 << 20  # extents of the packed inode kept in memory (fragments)
_NONZERO = re.compile(rb"[^\x00]")


def probe(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of an image) holds an EROFS superblock magic."""
    return len(head) >= _SB_OFFSET + 4 and head[_SB_OFFSET : _SB_OFFSET + 4] == b"\xe2\xe1\xf5\xe0"


def _feature_names(bits: int) -> str:
    return ", ".join(
        f"{_INCOMPAT_NAMES.get(1 << b, 'unknown')} (0x{1 << b:x})"
        for b in range(32)
        if bits & (1 << b)
    )


@dataclass(frozen=True, slots=True)
class _Inode:
    nid: int
    mode: int
    uid: int
    gid: int
    size: int
    layout: int
    u: int
    """``i_u``: start block (flat), chunk format (chunk-based), compressed block count."""
    data_start: int
    """Image offset just past the inode core and its inline extended attributes."""

    @property
    def kind(self) -> int:
        return self.mode & _S_IFMT


class _Lz4:
    """The ``lz4.block`` functions, imported on first use (the package has no type hints)."""

    decompress: Callable[..., bytes]
    error: type[Exception]

    def __init__(self) -> None:
        try:
            mod: Any = importlib.import_module("lz4.block")
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise UnpackError("LZ4-compressed EROFS needs the 'lz4' Python package") from exc
        self.decompress = mod.decompress
        self.error = mod.LZ4BlockError


def _lz4_stream_end(buf: bytes, start: int, end: int) -> tuple[int, int]:
    """``(end offset, decoded size)`` of an LZ4 block at ``buf[start:]`` followed by zeros.

    Images without ``lz4_0padding`` put the compressed bytes first and zeros after them; the
    block has no length of its own. It ends after a sequence's literals where no match offset
    follows (an offset of zero is invalid), or at the end of the pcluster.
    """
    pos = start
    out = 0
    while pos < end:
        token = buf[pos]
        pos += 1
        lit = token >> 4
        if lit == 15:
            lit, pos = _lz4_more(buf, pos, end, lit, "literal")
        pos += lit
        out += lit
        if pos > end:
            raise UnpackError("LZ4 literals run past the pcluster")
        if pos + 2 > end or (buf[pos] == 0 and buf[pos + 1] == 0):
            return pos, out
        pos += 2
        mlen = (token & 15) + 4
        if token & 15 == 15:
            mlen, pos = _lz4_more(buf, pos, end, mlen, "match")
        out += mlen
    return pos, out


def _lz4_more(buf: bytes | bytearray, pos: int, end: int, value: int, what: str) -> tuple[int, int]:
    """An LZ4 length continued in bytes of 255 (and a last byte below): the total, and where
    the bytes after it start."""
    while True:
        if pos >= end:
            raise UnpackError(f"LZ4 {what} length runs past the pcluster")
        b = buf[pos]
        pos += 1
        value += b
        if b != 255:
            return value, pos


def _microlzma(src: bytes | memoryview, llen: int) -> bytes:
    """Decode ``llen`` bytes of a MicroLZMA stream (see the module documentation)."""
    if not src:
        raise UnpackError("empty LZMA pcluster")
    props = ~src[0] & 0xFF
    if props >= 9 * 5 * 5:
        raise UnpackError(f"bad MicroLZMA properties byte 0x{src[0]:02x}")
    lc, rest = props % 9, props // 9
    lp, pb = rest % 5, rest // 5
    if lc + lp > 4:
        raise UnpackError(f"unsupported LZMA properties lc={lc} lp={lp}")
    dict_size = max(4096, min(llen, _LZMA_MAX_DICT))
    filt = {"id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": lc, "lp": lp, "pb": pb}
    dec = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt])
    try:
        out = dec.decompress(b"\x00" + bytes(src[1:]), max_length=llen)
    except lzma.LZMAError as exc:
        raise UnpackError(f"corrupt LZMA pcluster: {exc}") from None
    return out


class ErofsFileSystem:
    """An EROFS image, listed and read without mounting.

    ``window`` is where the image lies (it may start inside a larger file); nothing outside it is
    read. Raises :class:`UnpackError` when the superblock or the root directory are unusable, or
    when the image needs a feature this reader does not have.
    """

    errors: list[UnpackError]
    """What the last :meth:`walk` skipped (a damaged directory or entry) or doubted (a directory
    entry whose type disagrees with its inode), one error each, the message starting with the
    path."""

    _bs: int
    _bits: int
    _meta_base: int
    _root_nid: int
    _incompat: int
    _algs: int
    _extra_devices: int
    _packed_nid: int

    def __init__(self, window: Window, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._base = window.offset
        self._length = window.size()
        self.errors = []
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._pcl_cache: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._packed: tuple[list[int], list[_Extent]] | None = None
        self._lz4: _Lz4 | None = None
        self._last: tuple[int, int, bytes | memoryview] = (-1, -1, b"")
        """The last pcluster decoded: ``(pa, kind, data)``."""
        self._fd = os.open(window.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            self._read_superblock()
            self._root()
        except UnpackError:
            self.close()
            raise

    # -- public API ---------------------------------------------------------------------------

    @property
    def block_size(self) -> int:
        """The filesystem block size in bytes."""
        return self._bs

    def walk(self) -> Iterator[FsEntry]:
        """Every entry except the root: parents before children, siblings sorted by name bytes.

        Hard links are listed at each of their paths. A directory or entry that cannot be read
        is recorded in :attr:`errors` and skipped; an unreadable root raises
        :class:`UnpackError`.
        """
        self.errors = []
        root = self._root()
        yield from walk_inodes(
            root,
            root.nid,
            load=self._inode,
            entry=self._entry,
            list_dir=self._list_dir,
            record=self._record,
            max_depth=self._limits.max_depth,
            id_name="nid",
        )

    def iter_content(self, entry: FsEntry, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The bytes of a regular file, in chunks of at most ``chunk_size``.

        A compressed file comes one decoded pcluster (a few KiB to a few hundred KiB) per
        chunk, uncompressed data in chunks of ``chunk_size``. Holes read as zeros. Raises
        :class:`UnpackError` (naming the path) when the file's data is damaged or uses an
        unsupported layout or algorithm, and :class:`LimitError` when it is larger than
        ``Limits.max_file_size``.
        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        try:
            yield from self._content(self._regular(entry.inode), chunk_size)
        except UnpackError as exc:
            raise type(exc)(f"{entry.path}: {exc}") from None

    def close(self) -> None:
        """Release the image file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._cache.clear()
        self._pcl_cache.clear()
        self._packed = None
        self._last = (-1, -1, b"")

    def __enter__(self) -> ErofsFileSystem:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- low-level reads ------------------------------------------------------------------------

    def _pread(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self._length:
            raise UnpackError(
                f"read of {length} bytes at offset {offset} is outside the image"
                f" ({self._length} bytes)"
            )
        if self._fd < 0:
            raise UnpackError("the image is closed")
        data = os.pread(self._fd, length, self._base + offset)
        if len(data) != length:
            raise UnpackError(f"short read at offset {offset}: the image file shrank")
        return data

    def _meta(self, offset: int, length: int) -> bytes:
        """Metadata bytes, through a cache of 64 KiB slices."""
        first = offset // _META_SLICE
        if offset < 0 or (offset + length - 1) // _META_SLICE != first or length <= 0:
            return self._pread(offset, length)
        buf = self._cache.get(first)
        if buf is None:
            start = first * _META_SLICE
            buf = self._pread(start, min(_META_SLICE, self._length - start))
            self._cache[first] = buf
            if len(self._cache) > _META_CACHE_SLICES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(first)
        pos = offset - first * _META_SLICE
        if pos + length > len(buf):
            raise UnpackError(f"metadata at offset {offset} runs past the end of the image")
        return buf[pos : pos + length]

    def _check_blocks(self, start: int, count: int, what: str) -> None:
        if start < 0 or count < 0 or (start + count) * self._bs > self._length:
            extra = " (data on an extra device is not supported)" if self._extra_devices else ""
            raise UnpackError(
                f"{what} at block {start} (+{count}) is past the end of the image"
                f" ({self._length // self._bs} blocks){extra}"
            )

    # -- superblock ----------------------------------------------------------------------------

    def _read_superblock(self) -> None:
        if self._length < _SB_OFFSET + _SB_SIZE:
            raise UnpackError(f"erofs: image of {self._length} bytes is too short for a superblock")
        sb = self._pread(_SB_OFFSET, _SB_SIZE)
        (magic, _checksum, _compat, bits, extslots, root_nid) = struct.unpack_from("<IIIBBH", sb)
        if magic != _MAGIC:
            raise UnpackError(f"erofs: bad superblock magic 0x{magic:08x} (expected 0xe0f5e1e2)")
        (blocks, meta_blkaddr) = struct.unpack_from("<II", sb, 36)
        (incompat, algs, extra_devices) = struct.unpack_from("<IHH", sb, 80)
        dirblkbits = sb[90]
        (packed_nid,) = struct.unpack_from("<Q", sb, 96)

        unknown = incompat & ~_INCOMPAT_KNOWN
        if unknown:
            raise UnpackError(
                f"erofs: unknown incompatible feature(s) {_feature_names(unknown)}:"
                " cannot read safely"
            )
        for bit, why in _INCOMPAT_REFUSED.items():
            if incompat & bit:
                raise UnpackError(f"erofs: feature {_INCOMPAT_NAMES[bit]}: {why}")
        if bits < 9 or bits > 16:
            raise UnpackError(f"erofs: bad block size 2^{bits} (512 bytes to 64 KiB allowed)")
        if dirblkbits:
            raise UnpackError(f"erofs: directory blocks of 2^{dirblkbits} blocks are not supported")
        bs = 1 << bits
        sb_size = _SB_SIZE + extslots * 16
        if _SB_OFFSET + sb_size > self._length:
            raise UnpackError(f"erofs: superblock of {sb_size} bytes runs past the image")
        if blocks * bs > self._length:
            raise UnpackError(
                f"erofs: truncated image: {blocks} blocks of {bs} bytes need {blocks * bs} bytes,"
                f" the image has {self._length}"
            )
        if meta_blkaddr * bs >= self._length:
            raise UnpackError(f"erofs: metadata start block {meta_blkaddr} is past the image")
        self._bs = bs
        self._bits = bits
        self._meta_base = meta_blkaddr * bs
        self._root_nid = root_nid
        self._incompat = incompat
        self._extra_devices = extra_devices
        self._packed_nid = packed_nid if incompat & _INCOMPAT_FRAGMENTS else 0
        if incompat & _INCOMPAT_COMPR_CFGS:
            if algs & ~0xF:
                raise UnpackError(f"erofs: unknown compression algorithm(s) in bitmap 0x{algs:04x}")
            self._algs = algs
            self._read_compr_cfgs(_SB_OFFSET + sb_size)
        else:
            self._algs = 1 << _ALG_LZ4

    def _read_compr_cfgs(self, offset: int) -> None:
        """Check the per-algorithm configuration records that follow the superblock."""
        for alg in range(4):
            if not self._algs & (1 << alg):
                continue
            offset = (offset + 3) & ~3
            (size,) = struct.unpack("<H", self._pread(offset, 2))
            if size == 0:
                raise UnpackError(f"erofs: empty {_ALG_NAMES[alg]} configuration record")
            data = self._pread(offset + 2, size)
            offset += 2 + size
            if alg == _ALG_LZMA:
                if size < 14:
                    raise UnpackError(f"erofs: lzma configuration of {size} bytes is too short")
                dict_size, fmt = struct.unpack_from("<IH", data)
                if fmt:
                    raise UnpackError(f"erofs: unknown lzma format {fmt}")
                if dict_size < 4096 or dict_size > _LZMA_MAX_DICT:
                    raise UnpackError(f"erofs: unsupported lzma dictionary size {dict_size}")

    def _root(self) -> _Inode:
        root = self._inode(self._root_nid)
        if root.kind != _S_IFDIR:
            raise UnpackError(f"erofs: the root inode is not a directory (mode {root.mode:o})")
        return root

    # -- inodes ----------------------------------------------------------------------------

    def _inode(self, nid: int) -> _Inode:
        iloc = self._meta_base + nid * 32
        if nid < 0 or iloc + 32 > self._length:
            raise UnpackError(f"nid {nid} is past the end of the image")
        raw = self._meta(iloc, 32)
        fmt = raw[0] | (raw[1] << 8)
        if fmt & ~_I_ALL:
            raise UnpackError(f"nid {nid}: unsupported inode format 0x{fmt:x}")
        layout = (fmt >> 1) & 7
        if fmt & 1:
            if iloc + 64 > self._length:
                raise UnpackError(f"nid {nid}: extended inode runs past the end of the image")
            (_, icount, mode, _, size, u, _, uid, gid, _, _, _) = _INODE_EXTENDED.unpack(
                self._meta(iloc, 64)
            )
            isize = 64
        else:
            (_, icount, mode, _, size, _, u, _, uid, gid, _) = _INODE_COMPACT.unpack(raw)
            isize = 32
        xattr_size = 12 + 4 * (icount - 1) if icount else 0
        kind = mode & _S_IFMT
        if kind not in (_S_IFREG, _S_IFDIR, _S_IFLNK, *_S_OTHER):
            raise UnpackError(f"nid {nid}: bad inode mode {mode:o}")
        if layout > _LAYOUT_CHUNK_BASED:
            raise UnpackError(f"nid {nid}: unsupported data layout {layout}")
        return _Inode(nid, mode, uid, gid, size, layout, u, iloc + isize + xattr_size)

    def _record(self, path: str, exc: UnpackError) -> None:
        self.errors.append(type(exc)(f"{path}: {exc}"))

    def _entry(self, path: str, inode: _Inode) -> FsEntry:
        return inode_entry(
            path,
            inode.mode,
            inode.size,
            inode.uid,
            inode.gid,
            inode.nid,
            lambda: self._symlink_target(inode),
        )

    def _symlink_target(self, inode: _Inode) -> bytes:
        if inode.size > _SYMLINK_MAX:
            raise UnpackError(f"symlink target of {inode.size} bytes is too long")
        return b"".join(self._content(inode, _SYMLINK_MAX))

    # -- file data -----------------------------------------------------------------------------

    def _regular(self, nid: int) -> _Inode:
        inode = self._inode(nid)
        if inode.kind != _S_IFREG:
            raise UnpackError(f"not a regular file (mode {inode.mode:o})")
        return inode

    def _content(self, inode: _Inode, chunk_size: int, exact: bool = False) -> Iterator[bytes]:
        """The data of ``inode`` in chunks of at most ``chunk_size`` bytes: each decoded
        pcluster as it comes (no copy to glue pieces together), or, when ``exact``, in chunks
        of exactly ``chunk_size`` bytes but the last (directory blocks)."""
        if inode.size > self._limits.max_file_size:
            raise LimitError(
                f"file size {inode.size} exceeds the limit of {self._limits.max_file_size}"
            )
        produced = 0
        if exact:
            for chunk in self._rechunk(self._pieces(inode, chunk_size), chunk_size):
                produced += len(chunk)
                yield chunk
        else:
            for piece in self._pieces(inode, chunk_size):
                n = len(piece)
                produced += n
                if n <= chunk_size:
                    yield piece if type(piece) is bytes else bytes(piece)
                else:
                    view = memoryview(piece)
                    for pos in range(0, n, chunk_size):
                        yield bytes(view[pos : pos + chunk_size])
        if produced != inode.size:
            raise UnpackError(f"data holds {produced} bytes, the inode says {inode.size}")

    @staticmethod
    def _rechunk(pieces: Iterable[bytes | memoryview], chunk_size: int) -> Iterator[bytes]:
        parts: list[bytes | memoryview] = []
        have = 0
        for piece in pieces:
            n = len(piece)
            if not have and n == chunk_size:
                yield piece if isinstance(piece, bytes) else bytes(piece)
                continue
            pos = 0
            view = memoryview(piece) if n > chunk_size - have else piece
            while pos < n:
                take = min(n - pos, chunk_size - have)
                parts.append(view[pos : pos + take] if take != n else piece)
                have += take
                pos += take
                if have == chunk_size:
                    yield b"".join(parts)
                    parts.clear()
                    have = 0
        if have:
            yield b"".join(parts)

    def _pieces(self, inode: _Inode, chunk_size: int) -> Iterator[bytes | memoryview]:
        """The file's bytes in order, as pieces of any size: long uncompressed runs read
        directly, other extents batched (one read per MiB of consecutive pclusters)."""
        direct = max(_RAW_DIRECT, min(chunk_size, 16 << 20))
        batch: list[_Extent] = []
        bstart = bend = 0
        for exts in self._extent_lists(inode):
            for ext in exts:
                _, llen, kind, pa, plen, _ = ext
                if kind >= _K_ALG or kind == _K_INTERLACED or (kind == _K_RAW and llen < direct):
                    if batch:
                        if pa == bend and bend - bstart + plen <= _BATCH:
                            batch.append(ext)
                            bend += plen
                            continue
                        yield from self._decode_batch(batch, bstart, bend)
                    batch = [ext]
                    bstart = pa
                    bend = pa + plen
                    continue
                if batch:
                    yield from self._decode_batch(batch, bstart, bend)
                    batch = []
                if kind == _K_RAW:
                    for pos in range(0, llen, direct):
                        yield self._pread(pa + pos, min(direct, llen - pos))
                elif kind == _K_ZERO:
                    zeros = bytes(min(direct, llen))
                    for pos in range(0, llen, direct):
                        yield zeros if llen - pos >= direct else zeros[: llen - pos]
                else:
                    yield from self._packed_range(pa, llen)
        if batch:
            yield from self._decode_batch(batch, bstart, bend)

    def _decode_batch(self, batch: list[_Extent], start: int, end: int) -> list[bytes | memoryview]:
        """Read the physical bytes of consecutive extents at once and decode each."""
        buf = self._pread(start, end - start)
        view = memoryview(buf)
        out: list[bytes | memoryview] = []
        append = out.append
        lz4 = self._lz4
        if lz4 is None:
            lz4 = self._lz4 = _Lz4()
        fast_lz4 = _K_ALG + _ALG_LZ4 if self._incompat & _INCOMPAT_ZERO_PADDING else -1
        decompress = lz4.decompress
        search = _NONZERO.search
        last_pa, last_kind, last = self._last
        data: bytes | memoryview
        for ext in batch:
            _, llen, kind, pa, plen, _ = ext
            off = pa - start
            if pa == last_pa and kind == last_kind and llen <= len(last):
                # Deduplicated extents refer to the head of a pcluster just decoded.
                append(last[:llen])
                continue
            if kind == fast_lz4:  # the common case, inlined: LZ4 right-aligned in its pcluster
                found = search(buf, off, off + plen)
                if found is None:
                    raise UnpackError(f"empty LZ4 pcluster at byte {pa}")
                try:
                    data = decompress(view[found.start() : off + plen], uncompressed_size=llen)
                except lz4.error:
                    # The pcluster decodes to more than this extent (a partial reference):
                    # decode it whole, within the kernel's bound, and keep the head.
                    data = self._lz4_partial(lz4, view[found.start() : off + plen], llen, pa)
                if len(data) != llen:
                    raise UnpackError(
                        f"lz4 pcluster at byte {pa} decoded to {len(data)} bytes, {llen} expected"
                    )
                append(data)
            elif kind < _K_ALG:  # uncompressed (an interlaced one depends on its extent)
                append(self._decode(buf, view, off, ext))
                continue
            else:
                data = self._decode(buf, view, off, ext)
                append(data)
            last_pa, last_kind, last = pa, kind, data
        self._last = (last_pa, last_kind, last)
        return out

    def _decode(self, buf: bytes, view: memoryview, off: int, ext: _Extent) -> bytes | memoryview:
        """The ``llen`` bytes of one extent whose physical data is ``buf[off:off + plen]``."""
        la, llen, kind, pa, plen, partial = ext
        if kind == _K_RAW:
            return view[off : off + llen]
        if kind == _K_INTERLACED:
            # The first bytes, up to the logical block's end, sit at the end of the pcluster.
            first = self._bs - (la & (self._bs - 1))
            start = plen - first
            if start < 0:
                raise UnpackError(f"interlaced pcluster of {plen} bytes at byte {pa} is too short")
            if first >= llen:
                return view[off + start : off + start + llen]
            return bytes(view[off + start : off + plen]) + bytes(view[off : off + llen - first])
        alg = kind - _K_ALG
        end = off + plen
        if alg == _ALG_LZ4:
            lz4 = self._lz4
            if lz4 is None:
                lz4 = self._lz4 = _Lz4()
            if self._incompat & _INCOMPAT_ZERO_PADDING:
                found = _NONZERO.search(buf, off, end)
                if found is None:
                    raise UnpackError(f"empty LZ4 pcluster at byte {pa}")
                src = view[found.start() : end]
                try:
                    out = lz4.decompress(src, uncompressed_size=llen)
                except lz4.error:
                    out = self._lz4_partial(lz4, src, llen, pa)
            else:
                stop, total = _lz4_stream_end(buf, off, end)
                if total < llen or total > _PCLUSTER_MAX_DSIZE:
                    raise UnpackError(
                        f"LZ4 pcluster at byte {pa} holds {total} bytes, {llen} expected"
                    )
                try:
                    out = lz4.decompress(view[off:stop], uncompressed_size=total)
                except lz4.error as exc:
                    raise UnpackError(f"corrupt LZ4 pcluster at byte {pa}: {exc}") from None
                out = out[:llen]
        else:
            found = _NONZERO.search(buf, off, end)
            if found is None:
                raise UnpackError(f"empty {_ALG_NAMES.get(alg, '?')} pcluster at byte {pa}")
            src = view[found.start() : end]
            if alg == _ALG_LZMA:
                out = _microlzma(src, llen)
            elif alg == _ALG_DEFLATE:
                try:
                    out = zlib.decompressobj(-15).decompress(src, llen)
                except zlib.error as exc:
                    raise UnpackError(f"corrupt DEFLATE pcluster at byte {pa}: {exc}") from None
            elif alg == _ALG_ZSTD:
                out = self._zstd(src, llen, pa)
            else:
                raise UnpackError(f"unsupported compression algorithm {alg}")
        if len(out) != llen:
            raise UnpackError(
                f"{_ALG_NAMES.get(alg, '?')} pcluster at byte {pa} decoded to {len(out)} bytes,"
                f" {llen} expected{' (partial reference)' if partial else ''}"
            )
        return out

    @staticmethod
    def _lz4_partial(lz4: _Lz4, src: memoryview, llen: int, pa: int) -> bytes:
        try:
            out = lz4.decompress(src, uncompressed_size=_PCLUSTER_MAX_DSIZE)
        except lz4.error as exc:
            raise UnpackError(f"corrupt LZ4 pcluster at byte {pa}: {exc}") from None
        return out[:llen]

    @staticmethod
    def _zstd(src: memoryview, llen: int, pa: int) -> bytes:
        try:
            zstandard: Any = importlib.import_module("zstandard")
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise UnpackError("Zstandard-compressed EROFS needs the 'zstandard' package") from exc
        try:
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(bytes(src)))
            out: bytes = reader.read(llen)
        except zstandard.ZstdError as exc:
            raise UnpackError(f"corrupt Zstandard pcluster at byte {pa}: {exc}") from None
        return out

    # -- extents -------------------------------------------------------------------------------

    def _extents(self, inode: _Inode) -> Iterator[_Extent]:
        """``(la, llen, kind, pa, plen, partial)`` covering the file in order."""
        for exts in self._extent_lists(inode):
            yield from exts

    def _extent_lists(self, inode: _Inode) -> Iterator[list[_Extent]]:
        """The extents in lists (one per slice of the block map or index), consecutive
        uncompressed extents merged into one."""
        if inode.size == 0:
            return
        layout = inode.layout
        if layout in (_LAYOUT_FLAT_PLAIN, _LAYOUT_FLAT_INLINE):
            yield self._flat_extents(inode)
        elif layout == _LAYOUT_CHUNK_BASED:
            yield from self._chunk_extents(inode)
        else:
            yield from self._z_extents(inode)

    def _flat_extents(self, inode: _Inode) -> list[_Extent]:
        size = inode.size
        bs = self._bs
        if inode.layout == _LAYOUT_FLAT_PLAIN and inode.u == _NULL_ADDR:
            return [(0, size, _K_ZERO, 0, size, False)]
        out: list[_Extent] = []
        nblocks = -(-size // bs)
        tail = inode.layout == _LAYOUT_FLAT_INLINE
        head_len = min(size, (nblocks - tail) * bs)
        if head_len:
            self._check_blocks(inode.u, -(-head_len // bs), "data")
            out.append((0, head_len, _K_RAW, inode.u * bs, head_len, False))
        if tail:
            tail_len = size - head_len
            pa = inode.data_start
            if (pa & (bs - 1)) + tail_len > bs:
                raise UnpackError(f"inline data of {tail_len} bytes crosses a block boundary")
            if pa + tail_len > self._length:
                raise UnpackError("inline data runs past the end of the image")
            out.append((head_len, tail_len, _K_RAW, pa, tail_len, False))
        return out

    def _chunk_extents(self, inode: _Inode) -> Iterator[list[_Extent]]:
        if not self._incompat & _INCOMPAT_CHUNKED_FILE:
            raise UnpackError("chunk-based file in an image without the chunked_file feature")
        fmt = inode.u & 0xFFFF
        if fmt & ~_CHUNK_FORMAT_ALL:
            raise UnpackError(f"unsupported chunk format 0x{fmt:x}")
        chunkbits = self._bits + (fmt & _CHUNK_BLKBITS_MASK)
        if chunkbits > 40:
            raise UnpackError(f"chunk size 2^{chunkbits} is too large")
        chunk = 1 << chunkbits
        bs = self._bs
        size = inode.size
        count = -(-size // chunk)
        unit = 8 if fmt & _CHUNK_INDEXES else 4
        pos = -(-inode.data_start // unit) * unit
        if pos + count * unit > self._length:
            raise UnpackError(f"chunk table of {count} entries runs past the end of the image")
        mask = 1
        while mask < self._extra_devices + 1:
            mask <<= 1
        mask -= 1
        per_read = _INDEX_READ // unit
        for first in range(0, count, per_read):
            n = min(per_read, count - first)
            table = self._pread(pos + first * unit, n * unit)
            if unit == 8:
                addrs = [(blk, dev) for _, dev, blk in struct.iter_unpack("<HHI", table)]
            else:
                addrs = [(blk, 0) for (blk,) in struct.iter_unpack("<I", table)]
            out: list[_Extent] = []
            for i, (blk, dev) in enumerate(addrs):
                la = (first + i) << chunkbits
                llen = min(chunk, size - la)
                if blk == _NULL_ADDR:
                    ext = (la, llen, _K_ZERO, 0, llen, False)
                else:
                    if dev & mask:
                        raise UnpackError(
                            f"chunk at byte {la} is on extra device {dev & mask}, which is not read"
                        )
                    self._check_blocks(blk, -(-llen // bs), "chunk")
                    ext = (la, llen, _K_RAW, blk * bs, llen, False)
                if out:
                    last = out[-1]
                    if last[2] == ext[2] and (ext[2] == _K_ZERO or last[3] + last[1] == ext[3]):
                        out[-1] = (last[0], last[1] + llen, last[2], last[3], last[4] + llen, False)
                        continue
                out.append(ext)
            yield out

    # -- compressed files ----------------------------------------------------------------------

    def _z_extents(self, inode: _Inode) -> Iterator[list[_Extent]]:
        """Extents of a compressed file, from its map header and lcluster indexes."""
        size = inode.size
        hpos = (inode.data_start + 7) & ~7
        if hpos + 8 > self._length:
            raise UnpackError("compression map header runs past the end of the image")
        header = self._meta(hpos, 8)
        (frag_or_idata, advise, algtype, cbits) = struct.unpack("<IHBB", header)
        if cbits & _FRAGMENT_INODE:
            if not self._packed_nid or inode.nid == self._packed_nid:
                raise UnpackError("file kept in a packed inode that does not exist")
            offset = int.from_bytes(header, "little") ^ (1 << 63)
            yield [(0, size, _K_FRAGMENT, offset, size, False)]
            return
        full = inode.layout == _LAYOUT_COMPRESSED_FULL
        if full and advise & 0x0001:
            raise UnpackError("extent-based compressed indexes are not supported")
        lbits = self._bits + (cbits & 15)
        big1 = bool(advise & _ADVISE_BIG_PCLUSTER_1)
        big2 = bool(advise & _ADVISE_BIG_PCLUSTER_2)
        if not full and big1 != big2:
            raise UnpackError("inconsistent big pcluster flags for compact indexes")
        fragment = bool(advise & _ADVISE_FRAGMENT_PCLUSTER)
        idata_size = frag_or_idata >> 16
        ztail = not fragment and bool(advise & _ADVISE_INLINE_PCLUSTER) and idata_size > 0
        if fragment and (not self._packed_nid or inode.nid == self._packed_nid):
            raise UnpackError("file tail kept in a packed inode that does not exist")
        interlaced = bool(advise & _ADVISE_INTERLACED_PCLUSTER)
        kinds = (_K_ALG + (algtype & 15), _K_ALG + (algtype >> 4))
        declared = (bool(self._algs >> (algtype & 15) & 1), bool(self._algs >> (algtype >> 4) & 1))
        lsize = 1 << lbits
        count = -(-size // lsize)
        if full:
            ibase = hpos + 16
            lclusters = self._full_lclusters(ibase, count)
            tail_next = ibase + count * 8
        else:
            if lbits > 14:
                raise UnpackError(f"compact indexes with 2^{lbits}-byte lclusters")
            lclusters, tail_next = self._compact_lclusters(
                hpos + 8,
                count,
                -(-size // self._bs),
                lbits,
                bool(advise & _ADVISE_COMPACTED_2B),
                big1,
            )
        bs = self._bs
        nblocks = self._length // bs
        # The pending head (its extent ends at the next head), and the type and low bits of
        # the lcluster just after it (where a big pcluster's block count is).
        h_la = -1
        h_typ = h_pblk = h_lcn = 0
        h_partial = False
        a_typ = -1
        a_lo = 0
        lcn = 0
        for lcl in lclusters:
            out: list[_Extent] = []
            for typ, lo, pblk, partial in lcl:
                if typ == _LC_NONHEAD:
                    if h_la < 0:
                        raise UnpackError(f"lcluster {lcn} continues an extent that has no head")
                    if lcn == h_lcn + 1:
                        a_typ = typ
                        a_lo = lo
                    if lo & _D0_CBLKCNT and not (big1 or big2):
                        raise UnpackError(f"block count at lcluster {lcn} without big pclusters")
                    lcn += 1
                    continue
                if lo >= lsize:
                    raise UnpackError(f"cluster offset {lo} at lcluster {lcn} is too large")
                if lcn == h_lcn + 1:
                    a_typ = typ
                    a_lo = lo
                la = (lcn << lbits) + lo
                if la >= size:  # an end marker after the last extent
                    lcn += 1
                    continue
                if h_la < 0:
                    if la:
                        raise UnpackError("the first extent does not start at byte 0")
                else:
                    # The extent of the pending head ends here (its pcluster is on disk).
                    llen = la - h_la
                    cblks = 1
                    if (
                        (big1 if h_typ == _LC_HEAD1 else big2)
                        and (h_lcn + 1) << lbits < size
                        and a_typ == _LC_NONHEAD
                    ):
                        cblks = a_lo & ~_D0_CBLKCNT
                        if not a_lo & _D0_CBLKCNT or not cblks:
                            raise UnpackError(f"no compressed block count after lcluster {h_lcn}")
                    if h_pblk + cblks > nblocks:
                        self._check_blocks(h_pblk, cblks, "pcluster")
                    pa = h_pblk * bs
                    plen = cblks * bs
                    if plen > _PCLUSTER_MAX:
                        raise UnpackError(f"pcluster of {plen} bytes exceeds {_PCLUSTER_MAX}")
                    if h_typ == _LC_PLAIN:
                        if llen > plen:
                            raise UnpackError(
                                f"uncompressed extent of {llen} bytes in {plen} bytes"
                            )
                        if interlaced:
                            if plen > bs:
                                raise UnpackError("interlaced pcluster larger than a block")
                            out.append((h_la, llen, _K_INTERLACED, pa, plen, False))
                        elif out and out[-1][2] == _K_RAW and out[-1][3] + out[-1][1] == pa:
                            last = out[-1]
                            out[-1] = (
                                last[0],
                                last[1] + llen,
                                _K_RAW,
                                last[3],
                                last[1] + llen,
                                False,
                            )
                        else:
                            out.append((h_la, llen, _K_RAW, pa, llen, False))
                    else:
                        if llen > _PCLUSTER_MAX_DSIZE:
                            raise UnpackError(
                                f"extent of {llen} bytes exceeds {_PCLUSTER_MAX_DSIZE}"
                            )
                        second = h_typ != _LC_HEAD1
                        if not declared[second]:
                            raise UnpackError(
                                f"compression algorithm {kinds[second] - _K_ALG} is not"
                                " declared by the image"
                            )
                        out.append((h_la, llen, kinds[second], pa, plen, h_partial))
                h_la, h_typ, h_pblk, h_partial, h_lcn = la, typ, pblk, partial, lcn
                a_typ = -1
                lcn += 1
            if out:
                yield out
        if h_la < 0:
            raise UnpackError("compressed file without any head lcluster")
        # The last extent: inline (ztailpacking), in the packed inode (fragments) or on disk.
        llen = size - h_la
        if fragment:
            fragoff = frag_or_idata | (h_pblk << 32 if full else 0)
            yield [(h_la, llen, _K_FRAGMENT, fragoff, llen, False)]
            return
        if ztail:
            pa = tail_next
            plen = idata_size
            if (pa & (bs - 1)) + plen > bs or pa + plen > self._length:
                raise UnpackError(f"bad inline pcluster of {plen} bytes")
        else:
            cblks = 1
            if (
                (big1 if h_typ == _LC_HEAD1 else big2)
                and (h_lcn + 1) << lbits < size
                and a_typ == _LC_NONHEAD
            ):
                cblks = a_lo & ~_D0_CBLKCNT
                if not a_lo & _D0_CBLKCNT or not cblks:
                    raise UnpackError(f"no compressed block count after lcluster {h_lcn}")
            self._check_blocks(h_pblk, cblks, "pcluster")
            pa = h_pblk * bs
            plen = cblks * bs
        if plen > _PCLUSTER_MAX:
            raise UnpackError(f"pcluster of {plen} bytes exceeds {_PCLUSTER_MAX}")
        if h_typ == _LC_PLAIN:
            if llen > plen:
                raise UnpackError(f"uncompressed extent of {llen} bytes in {plen} bytes")
            if interlaced:
                if plen > bs:
                    raise UnpackError("interlaced pcluster larger than a block")
                yield [(h_la, llen, _K_INTERLACED, pa, plen, False)]
            else:
                yield [(h_la, llen, _K_RAW, pa, llen, False)]
            return
        if llen > _PCLUSTER_MAX_DSIZE:
            raise UnpackError(f"extent of {llen} bytes exceeds {_PCLUSTER_MAX_DSIZE}")
        second = h_typ != _LC_HEAD1
        if not declared[second]:
            raise UnpackError(
                f"compression algorithm {kinds[second] - _K_ALG} is not declared by the image"
            )
        yield [(h_la, llen, kinds[second], pa, plen, h_partial)]

    def _full_lclusters(self, ibase: int, count: int) -> Iterator[list[tuple[int, int, int, bool]]]:
        """Full (8-byte) lcluster indexes as ``(type, lo, pblk, partial)`` lists."""
        if ibase + count * 8 > self._length:
            raise UnpackError(f"index of {count} lclusters runs past the end of the image")
        per = _INDEX_READ // 8
        for first in range(0, count, per):
            n = min(per, count - first)
            out: list[tuple[int, int, int, bool]] = []
            for advise, ofs, u in struct.iter_unpack("<HHI", self._pread(ibase + first * 8, n * 8)):
                typ = advise & 3
                if typ == _LC_NONHEAD:
                    out.append((typ, u & 0xFFFF, 0, False))
                else:
                    out.append((typ, ofs, u, bool(advise & _PARTIAL_REF)))
            yield out

    def _compact_lclusters(
        self, ebase: int, count: int, totalidx: int, lbits: int, two_byte: bool, big: bool
    ) -> tuple[Iterator[list[tuple[int, int, int, bool]]], int]:
        """Compact lcluster indexes as ``(type, lo, pblk, partial)`` lists, and the offset just
        after the pack that holds the last lcluster (where an inline tail pcluster starts)."""
        init4 = ((32 - ebase % 32) // 4) & 7
        c2b = 0
        if two_byte and init4 < totalidx:
            c2b = (totalidx - init4) // 16 * 16
        # Regions: (offset, lclusters, lclusters per pack, bytes per pack): 4-byte packs up
        # to a 32-byte boundary, then 2-byte packs (16 lclusters), then 4-byte packs again.
        n4a = min(init4, count)
        n2 = min(c2b, count - n4a)
        n4b = count - n4a - n2
        regions = [
            (pos, n, vcnt, packsize)
            for pos, n, vcnt, packsize in (
                (ebase, n4a, 2, 8),
                (ebase + init4 * 4, n2, 16, 32),
                (ebase + init4 * 4 + c2b * 2, n4b, 2, 8),
            )
            if n > 0
        ]
        if n2 and lbits > 12:
            raise UnpackError(f"2-byte compact indexes with 2^{lbits}-byte lclusters")
        last_pos, last_n, last_vcnt, last_pack = regions[-1]
        tail_next = last_pos + -(-last_n // last_vcnt) * last_pack
        if tail_next > self._length:
            raise UnpackError(f"index of {count} lclusters runs past the end of the image")
        lobits = max(lbits, 12)

        def generate() -> Iterator[list[tuple[int, int, int, bool]]]:
            for rpos, n, vcnt, packsize in regions:
                npacks = -(-n // vcnt)
                per_read = max(1, _INDEX_READ // packsize)
                done = 0
                for first in range(0, npacks, per_read):
                    k = min(per_read, npacks - first)
                    data = self._pread(rpos + first * packsize, k * packsize)
                    out = self._decode_packs(data, vcnt, packsize, lobits, big)
                    if done + len(out) > n:
                        del out[n - done :]
                    done += len(out)
                    yield out

        return generate(), tail_next

    @staticmethod
    def _decode_packs(
        data: bytes, vcnt: int, packsize: int, lobits: int, big: bool
    ) -> list[tuple[int, int, int, bool]]:
        """Decode compact packs: each ends with a base block address from which the heads'
        block addresses are counted (one per head without big pclusters; the compressed block
        counts, or one for a head without one, with them)."""
        encodebits = (packsize - 4) * 8 // vcnt
        emask = (1 << encodebits) - 1
        lomask = (1 << lobits) - 1
        out: list[tuple[int, int, int, bool]] = []
        append = out.append
        for p in range(0, len(data), packsize):
            v = int.from_bytes(data[p : p + packsize - 4], "little")
            base = int.from_bytes(data[p + packsize - 4 : p + packsize], "little")
            if big:
                acc = 0
                prev_head = False
                for _ in range(vcnt):
                    e = v & emask
                    v >>= encodebits
                    typ = (e >> lobits) & 3
                    lo = e & lomask
                    if typ == _LC_NONHEAD:
                        if lo & _D0_CBLKCNT:
                            acc += (lo & ~_D0_CBLKCNT) - (1 if prev_head else 0)
                        prev_head = False
                        append((typ, lo, 0, False))
                    else:
                        append((typ, lo, base + acc, False))
                        acc += 1
                        prev_head = True
            else:
                nblk = 1
                for _ in range(vcnt):
                    e = v & emask
                    v >>= encodebits
                    typ = (e >> lobits) & 3
                    if typ == _LC_NONHEAD:
                        append((typ, e & lomask, 0, False))
                    else:
                        append((typ, e & lomask, base + nblk, False))
                        nblk += 1
        return out

    # -- the packed inode (fragments) ----------------------------------------------------------

    def _packed_extents(self) -> tuple[list[int], list[_Extent]]:
        if self._packed is None:
            packed = self._inode(self._packed_nid)
            if packed.kind != _S_IFREG:
                raise UnpackError("the packed inode is not a regular file")
            if packed.size > self._limits.max_file_size:
                raise LimitError(f"packed inode of {packed.size} bytes exceeds the file limit")
            exts: list[_Extent] = []
            for part in self._extent_lists(packed):
                exts += part
                if len(exts) > _PACKED_MAX_EXTENTS:
                    raise LimitError(f"packed inode of more than {_PACKED_MAX_EXTENTS} extents")
            if any(e[2] == _K_FRAGMENT for e in exts):
                raise UnpackError("the packed inode has fragments of its own")
            self._packed = ([e[0] for e in exts], exts)
        return self._packed

    def _packed_range(self, offset: int, length: int) -> Iterator[bytes | memoryview]:
        """Bytes ``[offset, offset + length)`` of the packed inode, pclusters cached."""
        starts, exts = self._packed_extents()
        end = offset + length
        if not exts or end > exts[-1][0] + exts[-1][1]:
            raise UnpackError(f"fragment of {length} bytes at {offset} is past the packed inode")
        i = max(0, bisect.bisect_right(starts, offset) - 1)
        pos = offset
        while pos < end:
            ext = exts[i]
            la, llen, kind, pa, plen, _ = ext
            within = pos - la
            take = min(end - pos, llen - within)
            if kind == _K_ZERO:
                yield bytes(take)
            elif kind == _K_RAW:
                yield self._pread(pa + within, take)
            else:
                key = (pa, kind, llen)
                data = self._pcl_cache.get(key)
                if data is None:
                    raw = self._pread(pa, plen)
                    data = bytes(self._decode(raw, memoryview(raw), 0, ext))
                    self._pcl_cache[key] = data
                    if len(self._pcl_cache) > _PCL_CACHE:
                        self._pcl_cache.popitem(last=False)
                else:
                    self._pcl_cache.move_to_end(key)
                yield memoryview(data)[within : within + take]
            pos += take
            i += 1

    # -- directories ---------------------------------------------------------------------------

    def _list_dir(self, inode: _Inode, path: str) -> list[tuple[bytes, int, int]]:
        """``(name, nid, dirent file type)`` of a directory (without ``.`` and ``..``), sorted
        by name bytes."""
        if inode.size > self._limits.max_file_size:
            raise LimitError(f"directory of {inode.size} bytes exceeds the file size limit")
        entries: list[tuple[bytes, int, int]] = []
        for block in self._content(inode, self._bs, exact=True):
            self._parse_dirents(block, entries, path)
        entries.sort()
        unique: list[tuple[bytes, int, int]] = []
        for name, nid, ftype in entries:
            if unique and unique[-1][0] == name:
                self._record(
                    join_name(path, name), UnpackError("duplicate name, second entry skipped")
                )
                continue
            unique.append((name, nid, ftype))
        return unique

    def _parse_dirents(self, block: bytes, out: list[tuple[bytes, int, int]], path: str) -> None:
        size = len(block)
        if size < _DIRENT_SIZE:
            raise UnpackError(f"directory block of {size} bytes is too short")
        (nameoff0,) = struct.unpack_from("<H", block, 8)
        if nameoff0 < _DIRENT_SIZE or nameoff0 >= size or nameoff0 % _DIRENT_SIZE:
            raise UnpackError(f"bad first name offset {nameoff0} in a {size}-byte block")
        records = list(_DIRENT.iter_unpack(block[:nameoff0]))
        for i, (nid, nameoff, ftype) in enumerate(records):
            if i + 1 < len(records):
                name_end = records[i + 1][1]
            else:
                name_end = block.find(b"\0", nameoff, size)
                if name_end < 0:
                    name_end = size
            if nameoff < nameoff0 or name_end > size or not 0 < name_end - nameoff <= _NAME_LEN:
                raise UnpackError(
                    f"bad directory entry {i}: name at {nameoff}..{name_end} in a {size}-byte block"
                )
            name = block[nameoff:name_end]
            if name in (b".", b".."):
                continue
            if b"/" in name or b"\0" in name:
                self._record(join_name(path, name), UnpackError("invalid file name, skipped"))
                continue
            out.append((name, nid, ftype))
            if len(out) > self._limits.max_dir_entries:
                raise LimitError(f"more than {self._limits.max_dir_entries} directory entries")

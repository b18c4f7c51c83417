"""Read ext2, ext3 and ext4 images in place, without mounting them.

The reader follows the on-disk format of the kernel's "ext4 Data Structures and Algorithms":
superblock at byte 1024, group descriptors (32 bytes, or ``s_desc_size`` with ``64bit``; also
``meta_bg`` placement), inode tables, legacy block maps (direct, indirect, double, triple),
extent trees, ``inline_data`` (``i_block`` plus the ``system.data`` attribute in the inode body)
and linear directory blocks (hash-tree index blocks look like empty entries and are skipped).
Android's ``shared_blocks`` read-only feature needs nothing: shared blocks are just read.

Everything read from the image is untrusted. Block numbers are checked against the filesystem
size, extent trees for depth, counts, order and loops, directories for record lengths, cycles,
nesting (``Limits.max_depth``) and size (``Limits.max_dir_entries``). A damaged file fails on its
own: :meth:`Ext4FileSystem.iter_content` raises :class:`UnpackError` for it, and
:meth:`Ext4FileSystem.walk` records a damaged directory or entry in
:attr:`Ext4FileSystem.errors`, skips it and goes on. A damaged superblock, group descriptor
table or root directory fails at once.

Reads go through one file descriptor with ``os.pread``: inode tables in 256 KiB slices kept in a
small cache, file data in runs merged across physically contiguous extents, so a large file costs
one system call per chunk and no per-block Python work (except legacy block maps, where every
block pointer has to be looked at).
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from fwscan.errors import LimitError, UnpackError
from fwscan.limits import DEFAULT_LIMITS, Limits
from fwscan.unpack.base import FsEntry, Window, inode_entry, join_name, walk_inodes

_SB_OFFSET = 1024
_MAGIC = 0xEF53
_ROOT_INO = 2

_COMPAT_SPARSE_SUPER2 = 0x0200

_RO_COMPAT_SPARSE_SUPER = 0x0001
_RO_COMPAT_HUGE_FILE = 0x0008
_RO_COMPAT_GDT_CSUM = 0x0010
_RO_COMPAT_BIGALLOC = 0x0200
_RO_COMPAT_METADATA_CSUM = 0x0400

_INCOMPAT_FILETYPE = 0x0002
_INCOMPAT_META_BG = 0x0010
_INCOMPAT_64BIT = 0x0080
_INCOMPAT_LARGEDIR = 0x4000
_INCOMPAT_NAMES = {
    0x0001: "compression",
    0x0002: "filetype",
    0x0004: "needs_recovery",
    0x0008: "journal_dev",
    0x0010: "meta_bg",
    0x0040: "extent",
    0x0080: "64bit",
    0x0100: "mmp",
    0x0200: "flex_bg",
    0x0400: "ea_inode",
    0x1000: "dirdata",
    0x2000: "metadata_csum_seed",
    0x4000: "large_dir",
    0x8000: "inline_data",
    0x10000: "encrypt",
    0x20000: "casefold",
}
_INCOMPAT_REFUSED = {
    0x0001: "ext2 compression (e2compr) is not supported",
    0x0008: "the image is an external journal device and holds no files",
    0x1000: "dirdata (Lustre directory data) is not supported",
}
# Every other named feature is read. ``encrypt`` is accepted for the volume: only the encrypted
# files and directories fail, each with its own message. ``needs_recovery`` is read like debugfs
# does: as of the last checkpoint, without replaying the journal.
_INCOMPAT_KNOWN = sum(_INCOMPAT_NAMES)

_FL_ENCRYPT = 0x00000800
_FL_HUGE_FILE = 0x00040000
_FL_EXTENTS = 0x00080000
_FL_INLINE_DATA = 0x10000000

_BG_INODE_UNINIT = 0x0001

_S_IFMT = 0xF000
_S_IFREG = 0x8000
_S_IFDIR = 0x4000
_S_IFLNK = 0xA000

# Directory entry file types (with the ``filetype`` feature) and the inode types they name.

_EXT_MAGIC = 0xF30A
_EXT_MAX_DEPTH = 5
_EXT_INIT_MAX_LEN = 32768
_XATTR_MAGIC = 0xEA020000
_XATTR_INDEX_SYSTEM = 7
_GOOD_OLD_INODE_SIZE = 128
_I_BLOCK_SIZE = 60

_INODE = struct.Struct("<HHI16xHHII4x60s4xII4xHHHH4x")
_DIRENT = struct.Struct("<IHBB")
_EXT_HEADER = struct.Struct("<HHHH")
_EXT_LEAF = struct.Struct("<IHHI")
_EXT_INDEX = struct.Struct("<IIH")
_XATTR_ENTRY = struct.Struct("<BBHII")

_ITABLE_SLICE = 256 * 1024
_ITABLE_CACHE_SLICES = 64
_DIR_READ = 256 * 1024


def probe(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of an image) holds an ext2/3/4 superblock magic."""
    return len(head) >= 1082 and head[1080:1082] == b"\x53\xef"


@dataclass(frozen=True, slots=True)
class _Inode:
    ino: int
    mode: int
    uid: int
    gid: int
    size: int
    flags: int
    data_blocks: int
    """Blocks holding data, in 512-byte units (extended attribute block excluded)."""
    block: bytes
    """``i_block``: 60 bytes of block map, extent root, inline data or fast symlink."""
    raw: bytes

    @property
    def kind(self) -> int:
        return self.mode & _S_IFMT


class Ext4FileSystem:
    """An ext2/ext3/ext4 image, listed and read without mounting.

    ``window`` is where the image lies (it may start inside a larger file); nothing outside it is
    read. Raises :class:`UnpackError` when the superblock, the group descriptors or the root
    directory are unusable, or when the image needs a feature this reader does not have.
    """

    errors: list[UnpackError]
    """What the last :meth:`walk` skipped (a damaged directory or entry) or doubted (a directory
    entry whose type disagrees with its inode), one error each, the message starting with the
    path."""

    _bs: int
    _blocks: int
    _first_data: int
    _bpg: int
    _ipg: int
    _isz: int
    _inodes_count: int
    _groups: int
    _desc_size: int
    _first_meta_bg: int
    _compat: int
    _incompat: int
    _ro_compat: int
    _itable_blocks: int
    _per_slice: int
    _backup_bgs: tuple[int, ...]

    def __init__(self, window: Window, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._base = window.offset
        self._length = window.size()
        self.errors = []
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._fd = os.open(window.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            self._read_superblock()
            self._read_group_descriptors()
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
            _ROOT_INO,
            load=self._inode,
            entry=self._entry,
            list_dir=self._list_dir,
            record=self._record,
            max_depth=self._limits.max_depth,
            id_name="inode",
        )

    def iter_content(self, entry: FsEntry, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The bytes of a regular file, in chunks of at most ``chunk_size``.

        Holes and unwritten extents read as zeros. Raises :class:`UnpackError` (naming the path)
        when the file's block map is damaged, and :class:`LimitError` when it is larger than
        ``Limits.max_file_size``.
        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        try:
            yield from self._file_chunks(self._inode(entry.inode), chunk_size)
        except UnpackError as exc:
            raise type(exc)(f"{entry.path}: {exc}") from None

    def close(self) -> None:
        """Release the image file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._cache.clear()

    def __enter__(self) -> Ext4FileSystem:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _file_chunks(self, inode: _Inode, chunk_size: int) -> Iterator[bytes]:
        if inode.kind != _S_IFREG:
            raise UnpackError(f"not a regular file (mode {inode.mode:o})")
        if inode.size > self._limits.max_file_size:
            raise LimitError(
                f"file size {inode.size} exceeds the limit of {self._limits.max_file_size}"
            )
        if inode.flags & _FL_ENCRYPT:
            raise UnpackError("encrypted file (fscrypt): its content cannot be read")
        if inode.flags & _FL_INLINE_DATA:
            data = self._inline_data(inode)
            for pos in range(0, len(data), chunk_size):
                yield data[pos : pos + chunk_size]
            return
        yield from self._chunks(self._segments(inode), chunk_size)

    # -- superblock and group descriptors ----------------------------------------------------

    def _read_superblock(self) -> None:
        if self._length < _SB_OFFSET + 1024:
            raise UnpackError(f"ext4: image of {self._length} bytes is too short for a superblock")
        sb = self._pread(_SB_OFFSET, 1024)
        (magic,) = struct.unpack_from("<H", sb, 0x38)
        if magic != _MAGIC:
            raise UnpackError(f"ext4: bad superblock magic 0x{magic:04x} (expected 0xef53)")
        inodes_count, blocks_lo, _, _, _, first_data, log_bs, log_cluster = struct.unpack_from(
            "<8I", sb, 0
        )
        bpg, _, ipg = struct.unpack_from("<3I", sb, 0x20)
        (rev,) = struct.unpack_from("<I", sb, 0x4C)
        (isz,) = struct.unpack_from("<H", sb, 0x58)
        compat, incompat, ro_compat = struct.unpack_from("<3I", sb, 0x5C)
        (desc_size,) = struct.unpack_from("<H", sb, 0xFE)
        (first_meta_bg,) = struct.unpack_from("<I", sb, 0x104)
        (blocks_hi,) = struct.unpack_from("<I", sb, 0x150)
        self._backup_bgs = struct.unpack_from("<2I", sb, 0x24C)

        unknown = incompat & ~_INCOMPAT_KNOWN
        if unknown:
            bits = ", ".join(f"0x{1 << b:x}" for b in range(32) if unknown & (1 << b))
            raise UnpackError(f"ext4: unknown incompatible feature(s) {bits}: cannot read safely")
        for bit, why in _INCOMPAT_REFUSED.items():
            if incompat & bit:
                raise UnpackError(f"ext4: feature {_INCOMPAT_NAMES[bit]}: {why}")
        if log_bs > 6:
            raise UnpackError(f"ext4: bad block size 2^(10+{log_bs}) (1 KiB to 64 KiB allowed)")
        bs = 1024 << log_bs
        if rev == 0:
            isz = _GOOD_OLD_INODE_SIZE
        elif isz < _GOOD_OLD_INODE_SIZE or isz > bs or isz & (isz - 1):
            raise UnpackError(f"ext4: bad inode size {isz}")
        if incompat & _INCOMPAT_64BIT:
            if desc_size < 64 or desc_size > bs or desc_size & (desc_size - 1):
                raise UnpackError(f"ext4: bad group descriptor size {desc_size} for 64bit")
            blocks = blocks_lo | (blocks_hi << 32)
        else:
            desc_size = 32
            blocks = blocks_lo
        if blocks * bs > self._length:
            raise UnpackError(
                f"ext4: truncated image: {blocks} blocks of {bs} bytes need {blocks * bs} bytes,"
                f" the image has {self._length}"
            )
        if first_data >= blocks or first_data > 1:
            raise UnpackError(f"ext4: bad first data block {first_data} (block count {blocks})")
        cluster_ratio = 1 << max(0, log_cluster - log_bs) if ro_compat & _RO_COMPAT_BIGALLOC else 1
        if bpg < 8 or bpg > 8 * bs * cluster_ratio or ipg == 0 or ipg > 8 * bs:
            raise UnpackError(f"ext4: bad group geometry ({bpg} blocks, {ipg} inodes per group)")
        groups = -(-(blocks - first_data) // bpg)
        if inodes_count < _ROOT_INO or inodes_count > groups * ipg:
            raise UnpackError(f"ext4: bad inode count {inodes_count} for {groups} groups")

        self._bs = bs
        self._blocks = blocks
        self._first_data = first_data
        self._bpg = bpg
        self._ipg = ipg
        self._isz = isz
        self._inodes_count = inodes_count
        self._groups = groups
        self._desc_size = desc_size
        self._first_meta_bg = first_meta_bg
        self._compat = compat
        self._incompat = incompat
        self._ro_compat = ro_compat
        self._itable_blocks = -(-ipg * isz // bs)
        self._per_slice = max(1, _ITABLE_SLICE // isz)

    def _root(self) -> _Inode:
        root = self._inode(_ROOT_INO)
        if root.kind != _S_IFDIR:
            raise UnpackError(f"ext4: the root inode is not a directory (mode {root.mode:o})")
        return root

    def _has_super(self, group: int) -> bool:
        if group == 0:
            return True
        if self._compat & _COMPAT_SPARSE_SUPER2:
            return group in self._backup_bgs
        if group == 1 or not self._ro_compat & _RO_COMPAT_SPARSE_SUPER:
            return True
        for base in (3, 5, 7):
            n = base
            while n < group:
                n *= base
            if n == group:
                return True
        return False

    def _read_group_descriptors(self) -> None:
        per_block = self._bs // self._desc_size
        nblocks = -(-self._groups // per_block)
        meta_bg = bool(self._incompat & _INCOMPAT_META_BG)
        table = bytearray()
        for i in range(nblocks):
            if meta_bg and i >= self._first_meta_bg:
                group = i * per_block
                blk = self._first_data + group * self._bpg + self._has_super(group)
            else:
                blk = self._first_data + 1 + i
            self._check_range(blk, 1, "group descriptor block")
            table += self._pread(blk * self._bs, self._bs)
        csum = bool(self._ro_compat & (_RO_COMPAT_GDT_CSUM | _RO_COMPAT_METADATA_CSUM))
        wide = self._desc_size >= 64
        self._itable: list[int] = []
        self._iused: list[int] = []
        for g in range(self._groups):
            off = g * self._desc_size
            (itable,) = struct.unpack_from("<I", table, off + 8)
            flags, unused = struct.unpack_from("<H8xH", table, off + 0x12)
            if wide:
                itable |= struct.unpack_from("<I", table, off + 0x28)[0] << 32
                unused |= struct.unpack_from("<H", table, off + 0x32)[0] << 16
            used = self._ipg
            if csum:
                used = 0 if flags & _BG_INODE_UNINIT else max(0, self._ipg - unused)
            self._itable.append(itable)
            self._iused.append(used)

    # -- low-level reads ---------------------------------------------------------------------

    def _pread(self, offset: int, length: int) -> bytes:
        if self._fd < 0:
            raise UnpackError("ext4: the image is closed")
        if offset < 0 or offset + length > self._length:
            raise UnpackError(f"read of {length} bytes at {offset} is outside the image")
        data = os.pread(self._fd, length, self._base + offset)
        if len(data) != length:
            raise UnpackError(f"image truncated: short read at offset {offset}")
        return data

    def _check_range(self, block: int, count: int, what: str) -> None:
        if block <= self._first_data or block + count > self._blocks:
            raise UnpackError(
                f"{what} at block {block} (+{count}) is outside the filesystem"
                f" ({self._blocks} blocks)"
            )

    def _inode(self, ino: int) -> _Inode:
        if not 1 <= ino <= self._inodes_count:
            raise UnpackError(f"inode {ino} is out of range (1..{self._inodes_count})")
        group, index = divmod(ino - 1, self._ipg)
        if index >= self._iused[group]:
            raise UnpackError(f"inode {ino} is not in use (uninitialised part of group {group})")
        slice_no, slot = divmod(index, self._per_slice)
        key = (group, slice_no)
        buf = self._cache.get(key)
        if buf is None:
            self._check_range(self._itable[group], self._itable_blocks, f"group {group} inodes")
            first = slice_no * self._per_slice
            count = min(self._per_slice, self._ipg - first)
            offset = self._itable[group] * self._bs + first * self._isz
            buf = self._pread(offset, count * self._isz)
            self._cache[key] = buf
            if len(self._cache) > _ITABLE_CACHE_SLICES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        raw = buf[slot * self._isz : (slot + 1) * self._isz]
        (
            mode,
            uid,
            size,
            gid,
            _,
            blocks,
            flags,
            block,
            acl,
            size_hi,
            blocks_hi,
            acl_hi,
            uid_hi,
            gid_hi,
        ) = _INODE.unpack_from(raw)
        if mode == 0:
            raise UnpackError(f"inode {ino} is not in use")
        kind = mode & _S_IFMT
        if kind == _S_IFREG or self._incompat & _INCOMPAT_LARGEDIR:
            size |= size_hi << 32
        if self._ro_compat & _RO_COMPAT_HUGE_FILE:
            blocks |= blocks_hi << 32
        if flags & _FL_HUGE_FILE:
            blocks *= self._bs // 512
        if acl or acl_hi:
            blocks -= self._bs // 512
        return _Inode(
            ino,
            mode,
            uid | (uid_hi << 16),
            gid | (gid_hi << 16),
            size,
            flags,
            blocks,
            block,
            raw,
        )

    # -- entries -----------------------------------------------------------------------------

    def _record(self, path: str, exc: UnpackError) -> None:
        self.errors.append(type(exc)(f"{path}: {exc}"))

    def _entry(self, path: str, inode: _Inode) -> FsEntry:
        return inode_entry(
            path,
            inode.mode,
            inode.size,
            inode.uid,
            inode.gid,
            inode.ino,
            lambda: self._symlink_target(inode),
        )

    def _symlink_target(self, inode: _Inode) -> bytes:
        if inode.size > min(self._bs, 4096):
            raise UnpackError(f"symlink target of {inode.size} bytes is too long")
        if inode.flags & _FL_ENCRYPT:
            raise UnpackError("encrypted symlink (fscrypt): its target cannot be read")
        if inode.flags & _FL_INLINE_DATA:
            return self._inline_data(inode)
        if inode.size < _I_BLOCK_SIZE and inode.data_blocks <= 0:
            return inode.block[: inode.size]
        return b"".join(self._chunks(self._segments(inode), self._bs))

    # -- inline data --------------------------------------------------------------------------

    def _inline_attr(self, inode: _Inode) -> bytes:
        """The value of ``system.data`` in the inode body (empty when there is none)."""
        raw = inode.raw
        if self._isz <= _GOOD_OLD_INODE_SIZE:
            return b""
        (extra,) = struct.unpack_from("<H", raw, _GOOD_OLD_INODE_SIZE)
        start = _GOOD_OLD_INODE_SIZE + extra + 4
        if extra % 4 or start > self._isz:
            return b""
        (magic,) = struct.unpack_from("<I", raw, start - 4)
        if magic != _XATTR_MAGIC:
            return b""
        off = start
        while off + _XATTR_ENTRY.size <= self._isz:
            if raw[off : off + 4] == b"\0\0\0\0":
                break
            name_len, index, value_off, value_inum, value_size = _XATTR_ENTRY.unpack_from(raw, off)
            name_end = off + 16 + name_len
            if name_end > self._isz:
                raise UnpackError("extended attribute entry runs past the inode")
            if index == _XATTR_INDEX_SYSTEM and raw[off + 16 : name_end] == b"data":
                if value_inum:
                    raise UnpackError("inline data kept in an EA inode is not supported")
                if start + value_off + value_size > self._isz:
                    raise UnpackError("inline data attribute runs past the inode")
                return raw[start + value_off : start + value_off + value_size]
            off = (name_end + 3) & ~3
        return b""

    def _inline_data(self, inode: _Inode) -> bytes:
        data = inode.block + self._inline_attr(inode)
        if inode.size > len(data):
            raise UnpackError(f"inline data holds {len(data)} bytes, the inode says {inode.size}")
        return data[: inode.size]

    # -- block mapping -------------------------------------------------------------------------

    def _runs(self, inode: _Inode) -> Iterator[tuple[int, int, int]]:
        """``(logical block, physical block or 0 for zeros, count)`` in logical order."""
        if inode.flags & _FL_EXTENTS:
            return self._extent_runs(inode.block, _I_BLOCK_SIZE, None, set())
        nblocks = -(-inode.size // self._bs)
        return self._blockmap_runs(inode.block, nblocks)

    def _extent_runs(
        self, node: bytes, node_size: int, depth: int | None, seen: set[int]
    ) -> Iterator[tuple[int, int, int]]:
        magic, entries, cap, node_depth = _EXT_HEADER.unpack_from(node)
        if magic != _EXT_MAGIC:
            raise UnpackError(f"bad extent header magic 0x{magic:04x}")
        if depth is None:
            if node_depth > _EXT_MAX_DEPTH:
                raise UnpackError(f"extent tree depth {node_depth} exceeds {_EXT_MAX_DEPTH}")
        elif node_depth != depth:
            raise UnpackError(f"extent node depth {node_depth}, expected {depth}")
        if cap > (node_size - 12) // 12 or entries > cap:
            raise UnpackError(f"bad extent node counts ({entries} entries, {cap} max)")
        if node_depth == 0:
            for i in range(entries):
                lblk, length, hi, lo = _EXT_LEAF.unpack_from(node, 12 + 12 * i)
                unwritten = length > _EXT_INIT_MAX_LEN
                if unwritten:
                    length -= _EXT_INIT_MAX_LEN
                if length == 0:
                    raise UnpackError(f"empty extent at logical block {lblk}")
                phys = (hi << 32) | lo
                self._check_range(phys, length, "extent")
                yield lblk, 0 if unwritten else phys, length
            return
        for i in range(entries):
            _, lo, hi = _EXT_INDEX.unpack_from(node, 12 + 12 * i)
            child = (hi << 32) | lo
            self._check_range(child, 1, "extent tree node")
            if child in seen:
                raise UnpackError(f"extent tree loop at block {child}")
            seen.add(child)
            data = self._pread(child * self._bs, self._bs)
            yield from self._extent_runs(data, self._bs, node_depth - 1, seen)

    def _blockmap_runs(self, i_block: bytes, nblocks: int) -> Iterator[tuple[int, int, int]]:
        per = self._bs // 4
        if nblocks > 12 + per + per**2 + per**3:
            raise UnpackError(f"{nblocks} blocks do not fit a block map")
        ptrs = struct.unpack("<15I", i_block)
        run_l = run_p = run_n = 0
        logical = 0
        for item in self._pointer_lists(ptrs, nblocks):
            if isinstance(item, int):
                logical += item
                continue
            for p in item:
                if p:
                    if run_n and p == run_p + run_n and logical == run_l + run_n:
                        run_n += 1
                    else:
                        if run_n:
                            self._check_range(run_p, run_n, "data blocks")
                            yield run_l, run_p, run_n
                        run_l, run_p, run_n = logical, p, 1
                logical += 1
        if run_n:
            self._check_range(run_p, run_n, "data blocks")
            yield run_l, run_p, run_n

    def _pointer_lists(
        self, ptrs: tuple[int, ...], nblocks: int
    ) -> Iterator[tuple[int, ...] | int]:
        """Block pointers in logical order, as tuples, or an int counting a hole's blocks."""
        yield ptrs[: min(12, nblocks)]
        remaining = nblocks - 12
        per = self._bs // 4
        for level in (1, 2, 3):
            if remaining <= 0:
                return
            take = min(remaining, per**level)
            yield from self._indirect(ptrs[11 + level], level, take)
            remaining -= take

    def _indirect(self, block: int, level: int, count: int) -> Iterator[tuple[int, ...] | int]:
        if block == 0:
            yield count
            return
        self._check_range(block, 1, "indirect block")
        per = self._bs // 4
        ptrs = struct.unpack(f"<{per}I", self._pread(block * self._bs, self._bs))
        if level == 1:
            yield ptrs[:count]
            return
        span = per ** (level - 1)
        for p in ptrs[: -(-count // span)]:
            take = min(span, count)
            yield from self._indirect(p, level - 1, take)
            count -= take

    def _segments(self, inode: _Inode) -> Iterator[tuple[int, int]]:
        """``(byte offset in the image or -1 for zeros, length)`` covering the file, merged."""
        bs = self._bs
        size = inode.size
        pos = 0
        cur_off, cur_len = -1, 0
        for lblk, pblk, count in self._runs(inode):
            start = lblk * bs
            if start < pos:
                raise UnpackError(f"extents overlap or are out of order at logical block {lblk}")
            if start >= size:
                break
            length = min(count * bs, size - start)
            if start > pos:
                if cur_off < 0:
                    cur_len += start - pos
                else:
                    yield cur_off, cur_len
                    cur_off, cur_len = -1, start - pos
            off = pblk * bs if pblk else -1
            if (off < 0 and cur_off < 0) or (
                off >= 0 and cur_off >= 0 and off == cur_off + cur_len
            ):
                cur_len += length
            else:
                if cur_len:
                    yield cur_off, cur_len
                cur_off, cur_len = off, length
            pos = start + length
        if pos < size:
            if cur_off < 0:
                cur_len += size - pos
            else:
                yield cur_off, cur_len
                cur_off, cur_len = -1, size - pos
        if cur_len:
            yield cur_off, cur_len

    def _chunks(self, segments: Iterable[tuple[int, int]], chunk_size: int) -> Iterator[bytes]:
        parts: list[bytes] = []
        have = 0
        zeros = b""
        for seg_off, seg_len in segments:
            off, length = seg_off, seg_len
            while length:
                take = min(length, chunk_size - have)
                if off < 0:
                    if len(zeros) != take:
                        zeros = bytes(take)
                    data = zeros
                else:
                    data = self._pread(off, take)
                    off += take
                length -= take
                if take == chunk_size:
                    yield data
                    continue
                parts.append(data)
                have += take
                if have == chunk_size:
                    yield b"".join(parts)
                    parts.clear()
                    have = 0
        if have:
            yield b"".join(parts)

    # -- directories ---------------------------------------------------------------------------

    def _list_dir(self, inode: _Inode, path: str) -> list[tuple[bytes, int, int]]:
        """``(name, inode, dirent file type)`` of a directory (without ``.`` and ``..``), sorted
        by name bytes."""
        if inode.flags & _FL_ENCRYPT:
            raise UnpackError("encrypted directory (fscrypt): its names cannot be read")
        entries: list[tuple[bytes, int, int]] = []
        if inode.flags & _FL_INLINE_DATA:
            attr = self._inline_attr(inode)
            self._parse_dirents(inode.block[4:], entries, path)
            if attr:
                self._parse_dirents(attr, entries, path)
        else:
            if inode.size % self._bs:
                raise UnpackError(
                    f"directory size {inode.size} is not a multiple of the block size"
                )
            if inode.size > self._limits.max_file_size:
                raise LimitError(f"directory of {inode.size} bytes exceeds the file size limit")
            for off, length in self._segments(inode):
                if off < 0:
                    raise UnpackError("directory has a hole")
                for pos in range(0, length, _DIR_READ):
                    chunk = self._pread(off + pos, min(_DIR_READ, length - pos))
                    for blk in range(0, len(chunk), self._bs):
                        self._parse_dirents(chunk[blk : blk + self._bs], entries, path)
        entries.sort()
        unique: list[tuple[bytes, int, int]] = []
        for name, ino, ftype in entries:
            if unique and unique[-1][0] == name:
                self._record(
                    join_name(path, name), UnpackError("duplicate name, second entry skipped")
                )
                continue
            unique.append((name, ino, ftype))
        return unique

    def _parse_dirents(self, block: bytes, out: list[tuple[bytes, int, int]], path: str) -> None:
        size = len(block)
        filetype = bool(self._incompat & _INCOMPAT_FILETYPE)
        big = self._bs >= 65536
        off = 0
        while off < size:
            if off + 8 > size:
                raise UnpackError(f"directory entry header cut at offset {off}")
            ino, rec_len, name_len, high = _DIRENT.unpack_from(block, off)
            if big and rec_len in (0, 65535):
                rec_len = 65536
            elif big:
                rec_len = (rec_len & 65532) | ((rec_len & 3) << 16)
            if not filetype:
                name_len |= high << 8
            if rec_len < 8 or rec_len % 4 or off + rec_len > size or 8 + name_len > rec_len:
                raise UnpackError(
                    f"bad directory entry at offset {off}: record length {rec_len},"
                    f" name length {name_len}, block of {size} bytes"
                )
            if ino:
                name = block[off + 8 : off + 8 + name_len]
                if name not in (b".", b".."):
                    if not name or b"/" in name or b"\0" in name:
                        self._record(
                            join_name(path, name), UnpackError("invalid file name, skipped")
                        )
                    else:
                        out.append((name, ino, high if filetype else 0))
                        if len(out) > self._limits.max_dir_entries:
                            raise LimitError(
                                f"more than {self._limits.max_dir_entries} directory entries"
                            )
            off += rec_len

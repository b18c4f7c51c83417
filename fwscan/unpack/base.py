"""Small typed interfaces shared by every unpacker.

A firmware is read as a tree: containers (OTA zip, payload.bin, ...) expand into partition
images; filesystems (ext4, ...) list files. Each format is one module implementing one of the
protocols below and registered once in :mod:`fwscan.unpack.registry`.
"""

from __future__ import annotations

import enum
import io
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

from fwscan.errors import FwscanError, LimitError, UnpackError
from fwscan.limits import DEFAULT_LIMITS, Limits
from fwscan.model import CoverageRecord, Status


@dataclass(frozen=True)
class Window:
    """A byte range of a file on disk: a whole file, or a stored zip member read in place."""

    path: Path
    """The file that holds the bytes."""
    offset: int = 0
    """Where the range starts in ``path``."""
    length: int | None = None
    """How many bytes; ``None`` means up to the end of the file."""

    def size(self) -> int:
        """The number of bytes in the window."""
        if self.length is not None:
            return self.length
        return max(0, self.path.stat().st_size - self.offset)

    def open(self) -> BinaryIO:
        """A read-only, seekable stream over exactly this range."""
        return io.BufferedReader(_WindowReader(self.path, self.offset, self.size()), 1 << 16)

    def read_head(self, n: int) -> bytes:
        """The first ``n`` bytes (fewer if the window is shorter)."""
        with self.open() as f:
            return f.read(n)


class _WindowReader(io.RawIOBase):
    """A seekable raw stream bounded to ``[offset, offset + length)`` of a file."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._f = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._start = offset
        self._len = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            new = pos
        elif whence == io.SEEK_CUR:
            new = self._pos + pos
        else:
            new = self._len + pos
        self._pos = max(0, new)
        return self._pos

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        remaining = self._len - self._pos
        if remaining <= 0:
            return 0
        view = memoryview(b)[: min(len(b), remaining)]
        self._f.seek(self._start + self._pos)
        n = self._f.readinto(view)
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


class EntryType(enum.Enum):
    """What a filesystem entry is."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    OTHER = "other"  # device nodes, fifos, sockets


@dataclass(frozen=True)
class FsEntry:
    """One entry of a filesystem image, as the image records it."""

    path: str
    """Path from the filesystem root, ``/``-separated, no leading slash. Names are decoded as
    UTF-8 with ``surrogateescape``; they are *not* yet safe to join to a host path."""
    type: EntryType
    mode: int
    """``st_mode``: file type and permission bits."""
    size: int
    uid: int
    gid: int
    inode: int
    link_target: str | None = None
    """For symlinks: the target, recorded and never followed."""


def inode_entry(
    path: str,
    mode: int,
    size: int,
    uid: int,
    gid: int,
    inode: int,
    read_target: Callable[[], bytes],
) -> FsEntry:
    """The entry of an inode-based filesystem (ext4, EROFS): its type from the ``st_mode`` bits,
    and for a symlink the target that ``read_target`` returns, recorded and never followed."""
    kind = stat.S_IFMT(mode)
    target = None
    if kind == stat.S_IFREG:
        etype = EntryType.FILE
    elif kind == stat.S_IFDIR:
        etype = EntryType.DIR
    elif kind == stat.S_IFLNK:
        etype = EntryType.SYMLINK
        target = read_target().decode("utf-8", "surrogateescape")
    else:
        etype = EntryType.OTHER
    return FsEntry(path, etype, mode, size, uid, gid, inode, target)


DIRENT_MODES = {
    1: stat.S_IFREG,
    2: stat.S_IFDIR,
    3: stat.S_IFCHR,
    4: stat.S_IFBLK,
    5: stat.S_IFIFO,
    6: stat.S_IFSOCK,
    7: stat.S_IFLNK,
}
"""The file type a directory entry states (ext4's and EROFS's ``file_type``) as ``st_mode``."""

Listing = list[tuple[bytes, int, int]]
"""A directory's entries: ``(name, inode id, directory-entry file type)``, sorted by name."""
_Inode = TypeVar("_Inode")


def join_name(directory: str, name: bytes) -> str:
    """The path of ``name`` (raw bytes, kept losslessly) inside ``directory``."""
    text = name.decode("utf-8", "surrogateescape")
    return f"{directory}/{text}" if directory else text


def walk_inodes(
    root: _Inode,
    root_id: int,
    *,
    load: Callable[[int], _Inode],
    entry: Callable[[str, _Inode], FsEntry],
    list_dir: Callable[[_Inode, str], Listing],
    record: Callable[[str, UnpackError], None],
    max_depth: int,
    id_name: str,
) -> Iterator[FsEntry]:
    """The walk of an inode-based filesystem (ext4, EROFS): every entry but the root, parents
    before children, siblings in ``list_dir`` order; hard links at each of their paths.

    An entry or directory that cannot be read is passed to ``record`` and skipped; so are a
    directory listed a second time (a cycle, named by its ``id_name`` and id) and directories
    nested ``max_depth`` deep. A directory entry whose stated type disagrees with its inode is
    recorded and the inode believed."""
    seen: dict[int, str] = {root_id: "/"}
    stack: list[tuple[str, int, Iterator[tuple[bytes, int, int]]]] = [
        ("", 0, iter(list_dir(root, "")))
    ]
    while stack:
        prefix, depth, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            continue
        name, ino, ftype = child
        path = join_name(prefix, name)
        try:
            inode = load(ino)
            found = entry(path, inode)
        except UnpackError as exc:
            record(path, exc)
            continue
        if ftype in DIRENT_MODES and DIRENT_MODES[ftype] != stat.S_IFMT(found.mode):
            record(
                path,
                UnpackError(
                    f"directory entry type {ftype} disagrees with inode mode {found.mode:o}"
                    " (the inode is believed)"
                ),
            )
        yield found
        if found.type is not EntryType.DIR:
            continue
        if ino in seen:
            record(
                path,
                UnpackError(f"directory cycle: {id_name} {ino} is already listed at {seen[ino]}"),
            )
            continue
        seen[ino] = path
        if depth + 1 >= max_depth:
            record(path, LimitError(f"nesting deeper than {max_depth} directories"))
            continue
        try:
            kids = list_dir(inode, path)
        except UnpackError as exc:
            record(path, exc)
            continue
        stack.append((path, depth + 1, iter(kids)))


class FileSystem(Protocol):
    """A read-only filesystem image."""

    errors: list[UnpackError]
    """Damage met by :meth:`walk` (a broken directory is skipped, the walk goes on)."""

    def walk(self) -> Iterator[FsEntry]:
        """Every entry except the root, parents before children, siblings sorted by name."""
        ...

    def iter_content(self, entry: FsEntry, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The bytes of a regular file, in order, in chunks of at most ``chunk_size``."""
        ...

    def close(self) -> None:
        """Release the image file."""
        ...


@dataclass
class UnpackContext:
    """State shared by the handlers during one walk."""

    workdir: Path
    """Where containers may write the images they expand (never outside it)."""
    limits: Limits = DEFAULT_LIMITS
    coverage: list[CoverageRecord] = field(default_factory=list)
    failures: list[FwscanError] = field(default_factory=list)
    """The errors behind each failed record, for the exit status."""
    extracted_bytes: int = 0
    """Bytes written to ``workdir`` so far, checked against ``limits.max_total_extracted``."""
    containers: tuple[Container, ...] | None = None
    """The containers to try, when not the registered ones (e.g. with a source build for
    incremental updates)."""
    _counter: int = 0

    def record(
        self,
        source: str,
        kind: str,
        fmt: str,
        status: Status,
        reason: str = "",
        error: FwscanError | None = None,
    ) -> None:
        """Add a coverage record (and remember the error of a failure)."""
        self.coverage.append(CoverageRecord(source, kind, fmt, status, reason or str(error or "")))
        if error is not None:
            self.failures.append(error)

    def new_image_path(self, name: str) -> Path:
        """A fresh file name in the work directory (names from firmware never reach the disk)."""
        self._counter += 1
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:40]
        return self.workdir / f"{self._counter:04d}-{safe}.img"

    def account(self, nbytes: int) -> None:
        """Add ``nbytes`` to the extracted total; raise when the limit is passed."""
        self.extracted_bytes += nbytes
        if self.extracted_bytes > self.limits.max_total_extracted:
            raise LimitError(
                f"extracted data exceeds the limit of {self.limits.max_total_extracted} bytes"
            )


@dataclass(frozen=True)
class Child:
    """One node a container holds: a partition image or a nested container."""

    name: str
    """Label in the source chain (``payload.bin``, ``system``)."""
    window: Window | None
    """Its bytes, or ``None`` when it could not be produced (then ``error`` says why)."""
    partition: str | None = None
    """The partition name, when the child is a partition image."""
    error: FwscanError | None = None
    skipped: str | None = None
    """Set when the child was deliberately not produced (the reason)."""
    format: str = "unknown"
    """The format, when the container knows it without looking (for failure records)."""


class Container(Protocol):
    """A format that holds other nodes."""

    name: str

    def probe(self, window: Window, head: bytes) -> bool:
        """Whether the bytes are this format (by content, never by file name)."""
        ...

    def expand(self, window: Window, ctx: UnpackContext) -> Iterator[Child]:
        """The children, produced one at a time (so a failure affects only one)."""
        ...


@dataclass(frozen=True)
class Filesystem:
    """A filesystem format: how to recognise it and how to open it."""

    name: str
    probe: Callable[[bytes], bool]
    open: Callable[[Window, Limits], FileSystem]

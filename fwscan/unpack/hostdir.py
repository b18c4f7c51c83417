"""A directory on the host (a dumped firmware tree, a folder of APKs) or a single file, seen
through the :class:`~fwscan.unpack.base.FileSystem` interface.

Symlinks are recorded with their target and never followed; nothing outside the given
directory is ever opened.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from fwscan.errors import LimitError, UnpackError
from fwscan.limits import DEFAULT_LIMITS, Limits
from fwscan.unpack.base import EntryType, FsEntry


def _entry(path: Path, rel: str) -> FsEntry:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        kind, target = EntryType.SYMLINK, str(path.readlink())
    elif stat.S_ISREG(st.st_mode):
        kind, target = EntryType.FILE, None
    elif stat.S_ISDIR(st.st_mode):
        kind, target = EntryType.DIR, None
    else:
        kind, target = EntryType.OTHER, None
    return FsEntry(rel, kind, st.st_mode, st.st_size, st.st_uid, st.st_gid, st.st_ino, target)


class HostFileSystem:
    """The files under ``root`` (a directory), or the one file ``root`` (a file)."""

    def __init__(self, root: Path, limits: Limits = DEFAULT_LIMITS) -> None:
        self.root = root
        self.limits = limits
        self.errors: list[UnpackError] = []

    def walk(self) -> Iterator[FsEntry]:
        """Every entry, parents before children, siblings sorted by name."""
        if not self.root.is_dir():
            yield _entry(self.root, self.root.name)
            return
        yield from self._walk(self.root, "", 0)

    def _walk(self, directory: Path, prefix: str, depth: int) -> Iterator[FsEntry]:
        if depth > self.limits.max_depth:
            self.errors.append(LimitError(f"{prefix or '.'}: deeper than {self.limits.max_depth}"))
            return
        try:
            names = sorted(p.name for p in directory.iterdir())
        except OSError as exc:
            self.errors.append(UnpackError(f"{prefix or '.'}: cannot list: {exc.strerror}"))
            return
        for name in names:
            rel = f"{prefix}{name}"
            entry = _entry(directory / name, rel)
            yield entry
            if entry.type is EntryType.DIR:
                yield from self._walk(directory / name, rel + "/", depth + 1)

    def _host_path(self, entry: FsEntry) -> Path:
        return self.root if not self.root.is_dir() else self.root / entry.path

    def iter_content(self, entry: FsEntry, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The bytes of a regular file (opened without following a symlink)."""
        try:
            fd = os.open(self._host_path(entry), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise UnpackError(f"{entry.path}: cannot open: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def close(self) -> None:
        """Nothing to release."""

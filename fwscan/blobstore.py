"""A content-addressed store for the files the analyzers read.

While the inventory streams each file of a partition to hash it, files of the kinds an
analyzer needs (APKs, JARs, DEX, ELF, configuration) are copied, in the same pass, into
``root/<sha256>``. Identical files are stored once, partition images can be deleted as soon as
they have been listed, and analysis works from plain files (in worker processes, with a cache
keyed by the same SHA-256).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_HEX = frozenset("0123456789abcdef")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file on disk, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class BlobStore:
    """Files named by their SHA-256 under ``root``."""

    def __init__(
        self,
        root: Path,
        kinds: frozenset[str],
        known: Callable[[str, str], bool] | None = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.kinds = kinds
        """The inventory kinds worth storing."""
        self.known = known
        """Whether the analysis of (sha256, kind) is already at hand (cached): then the file is
        not stored at all."""
        self.stored_bytes = 0

    def needs(self, sha256: str, kind: str) -> bool:
        """Whether a file of this hash and kind should be stored now."""
        if kind not in self.kinds or self.has(sha256):
            return False
        return self.known is None or not self.known(sha256, kind)

    def wants(self, kind: str) -> bool:
        """Whether files of ``kind`` should be stored."""
        return kind in self.kinds

    def new_file(self) -> tuple[BinaryIO, Path]:
        """A temporary file in the store, to be passed to :meth:`commit` or :meth:`discard`."""
        fd, name = tempfile.mkstemp(dir=self.root, suffix=".part")
        return os.fdopen(fd, "wb"), Path(name)

    def commit(self, tmp: Path, sha256: str) -> Path:
        """Name a finished temporary file by its hash (a duplicate is dropped)."""
        final = self.path(sha256)
        if final.exists():
            tmp.unlink()
        else:
            self.stored_bytes += tmp.stat().st_size
            tmp.replace(final)
        return final

    @staticmethod
    def discard(tmp: Path) -> None:
        """Drop a temporary file that will not be committed."""
        tmp.unlink(missing_ok=True)

    def path(self, sha256: str) -> Path:
        """Where the file with this hash is (or would be)."""
        if len(sha256) != 64 or not set(sha256) <= _HEX:
            raise ValueError(f"not a SHA-256: {sha256!r}")
        return self.root / sha256

    def has(self, sha256: str) -> bool:
        """Whether the file is stored."""
        return self.path(sha256).is_file()

"""Turning names from firmware into paths that stay inside a chosen directory."""

from __future__ import annotations

import os
from pathlib import Path

from fwscan.errors import UnpackError

_MAX_COMPONENT = 255


def clean_relpath(name: str) -> str:
    """Normalise a name from an image or archive to a safe relative ``/``-path.

    Leading slashes are dropped, empty and ``.`` components removed, NUL and control characters
    replaced. A ``..`` component is refused: a firmware that names one is hostile or broken.
    """
    parts: list[str] = []
    for comp in name.replace("\\", "/").split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            raise UnpackError(f"refused path with '..': {name!r}")
        cleaned = "".join(ch if ch.isprintable() and ch != "\x00" else "_" for ch in comp)
        parts.append(cleaned[:_MAX_COMPONENT])
    if not parts:
        raise UnpackError(f"refused empty path: {name!r}")
    return "/".join(parts)


class SafeWriter:
    """Creates files and directories under ``root`` and nowhere else.

    Every target is built from :func:`clean_relpath`, opened with ``O_NOFOLLOW`` and ``O_EXCL``,
    and each parent is checked not to be a symlink, so neither ``..``, absolute names nor
    symlinks planted by earlier entries can redirect a write.
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()

    def target(self, relpath: str) -> Path:
        """The host path for ``relpath``, guaranteed inside ``root``; parents are created."""
        rel = clean_relpath(relpath)
        path = self.root
        for comp in rel.split("/")[:-1]:
            path = path / comp
            if path.is_symlink():
                raise UnpackError(f"refused write through a symlink: {relpath!r}")
            path.mkdir(exist_ok=True)
        final = path / rel.split("/")[-1]
        if os.path.commonpath([self.root, final]) != str(self.root):
            raise UnpackError(f"refused write outside the output directory: {relpath!r}")
        return final

    def open_new(self, relpath: str) -> int:
        """A new file's descriptor, opened for writing; refuses existing files and symlinks."""
        final = self.target(relpath)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            return os.open(final, flags, 0o644)
        except FileExistsError as exc:
            raise UnpackError(f"refused to overwrite {relpath!r}") from exc

    def mkdir(self, relpath: str) -> Path:
        """Create a directory (and parents) inside ``root``."""
        final = self.target(relpath)
        if final.is_symlink():
            raise UnpackError(f"refused directory through a symlink: {relpath!r}")
        final.mkdir(exist_ok=True)
        return final

"""A directory of JSON analysis results, keyed by what determines them.

A key is :func:`cache_key` of the artifact's SHA-256, the analyzer version and the hash of the
signature set, so a re-scan, or the scan of another build, reuses every unchanged artifact.
Entries live at ``<directory>/<first 2 hex digits>/<key>.json``.

The cache is an optimisation and never a reason for a scan to fail: a write that fails (full
disk, read-only directory) is logged and skipped, an entry that cannot be parsed is a miss and is
removed. Writes go to a temporary file in the entry's directory that is then renamed over the
entry, so a reader sees the old entry, the new one, or none, never part of one. Files are not
fsynced: after a power loss an entry may be empty, which reads as corrupt, hence as a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_KEY = re.compile(r"[0-9a-f]{64}")
"""A valid key: what :func:`cache_key` returns. Nothing else can name a path outside the cache."""
_SEPARATOR = "\x00"


def cache_key(*parts: str) -> str:
    """The SHA-256 (hex) of ``parts``, each ended by a NUL, which parts may not contain.

    Raises:
        ValueError: a part contains a NUL character.
    """
    if any(_SEPARATOR in part for part in parts):
        raise ValueError("a cache key part contains a NUL character")
    text = "".join(part + _SEPARATOR for part in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def default_cache_dir() -> Path:
    """``$FWSCAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/fwscan``, else ``~/.cache/fwscan``.

    Empty variables count as unset, and so does a relative ``$XDG_CACHE_HOME`` (the XDG base
    directory specification says to ignore it).
    """
    if explicit := os.environ.get("FWSCAN_CACHE_DIR"):
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "fwscan"
    return Path.home() / ".cache" / "fwscan"


class ResultCache:
    """JSON objects stored under hex keys in ``directory``; ``None`` disables the cache.

    The directory is created on the first :meth:`put`. Several processes may share it.
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        """Where entries are stored; ``None`` when the cache is disabled."""
        self._warned = False

    def get(self, key: str) -> dict[str, Any] | None:
        """The object stored under ``key``, or ``None`` (disabled, missing, unreadable, corrupt).

        Raises:
            ValueError: ``key`` is not 64 lowercase hex digits.
        """
        path = self._path(key)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:  # missing (the usual miss), or unreadable: a miss either way
            return None
        try:
            value = json.loads(data)
        except ValueError:  # includes UnicodeDecodeError
            value = None
        if not isinstance(value, dict):
            log.debug("removing corrupt cache entry %s", path)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return value

    def has(self, key: str) -> bool:
        """Whether an entry exists (without reading it)."""
        path = self._path(key)
        return path is not None and path.is_file()

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store ``value`` under ``key``, replacing any entry atomically.

        Never fails for lack of space or permission: the first such failure is logged as a
        warning (later ones at debug level) and the entry is not stored.

        Raises:
            ValueError: ``key`` is not 64 lowercase hex digits.
            TypeError: ``value`` cannot be written as JSON (a programming error).
        """
        path = self._path(key)
        if path is None:
            return
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        tmp: Path | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=path.parent)
            tmp = Path(name)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            tmp.replace(path)
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            log.log(
                logging.DEBUG if self._warned else logging.WARNING,
                "cannot write to the result cache %s: %s",
                self.directory,
                exc,
            )
            self._warned = True

    def _path(self, key: str) -> Path | None:
        """Where ``key`` is stored; ``None`` when the cache is disabled."""
        if not _KEY.fullmatch(key):
            raise ValueError(f"invalid cache key {key!r}: expected 64 lowercase hex digits")
        if self.directory is None:
            return None
        return self.directory / key[:2] / f"{key}.json"

"""Make Android sparse images with the real tool, ``img2simg`` (``android-sdk-libsparse-utils``).

fwscan has no sparse writer of its own: tests read the bytes the platform tool writes. The
format is documented in :mod:`fwscan.unpack.sparse`. ``img2simg`` writes ``RAW`` and ``FILL``
chunks (zero blocks become zero ``FILL`` chunks), no ``CRC32`` chunk, and is deterministic.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from fwscan.errors import ToolError


def write_sparse(raw: Path, out: Path, *, block_size: int | None = None) -> None:
    """Convert the raw image ``raw`` into the sparse image ``out`` with ``img2simg``.

    ``block_size`` is the sparse block size (``img2simg``'s third argument; 4096 when
    ``None``). Raises :class:`ToolError` when ``img2simg`` is missing or fails (a half-made
    ``out`` is removed), :class:`ValueError` for a block size that is not a positive multiple
    of 4.
    """
    if block_size is not None and (block_size <= 0 or block_size % 4):
        raise ValueError(f"block size {block_size} is not a positive multiple of 4")
    tool = shutil.which("img2simg") or shutil.which("img2simg", path="/usr/bin:/usr/sbin")
    if tool is None:
        raise ToolError("img2simg not found: install android-sdk-libsparse-utils")
    argv = [tool, str(raw), str(out)]
    if block_size is not None:
        argv.append(str(block_size))
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        out.unlink(missing_ok=True)
        detail = " ".join(proc.stderr.split())[:400] or f"exit status {proc.returncode}"
        raise ToolError(f"img2simg failed: {detail}")

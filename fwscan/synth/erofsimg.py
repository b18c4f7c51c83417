"""EROFS partition images made with ``mkfs.erofs`` (erofs-utils), LZ4HC-compressed as real
Android system images are, and byte-identical across runs (fixed timestamp, UUID, owners)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from fwscan.errors import ToolError
from fwscan.synth.ext4img import DEFAULT_TIMESTAMP, DEFAULT_UUID


def make_erofs(src_dir: Path, out: Path, *, compressor: str = "lz4hc") -> None:
    """Write an EROFS image of ``src_dir`` to ``out`` (``compressor``: ``lz4hc``, ``lz4`` or
    ``none``). Raises :class:`ToolError` when mkfs.erofs is missing or fails."""
    tool = shutil.which("mkfs.erofs") or shutil.which("mkfs.erofs", path="/usr/sbin:/sbin")
    if tool is None:
        raise ToolError("mkfs.erofs not found: install erofs-utils (make setup)")
    argv = [tool, "--quiet", f"-T{DEFAULT_TIMESTAMP}", f"-U{DEFAULT_UUID}", "--all-root"]
    if compressor != "none":
        argv.append(f"-z{compressor}")
    out.unlink(missing_ok=True)
    proc = subprocess.run(
        [*argv, str(out), str(src_dir)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        out.unlink(missing_ok=True)
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ToolError(f"mkfs.erofs failed: {detail[-1] if detail else proc.returncode}")

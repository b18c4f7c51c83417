"""Make ext4 images from a directory tree, byte for byte the same on every run.

:func:`make_ext4` runs ``mke2fs -t ext4 -d SRC`` (no mount, no root needed) on a fresh file and
then fixes, with ``debugfs -w``, what mke2fs takes from the clock or from the source tree's
metadata. What varies between two runs of plain ``mke2fs -d``, and how each is pinned:

- Superblock times (``s_mkfs_time``, ``s_wtime``, ``s_lastcheck``) and the times mke2fs gives
  the inodes it creates itself (root, ``lost+found``, reserved inodes, every ``i_crtime``): the
  environment variable ``E2FSPROGS_FAKE_TIME`` replaces the clock in mke2fs and debugfs.
- ``i_atime``, ``i_ctime``, ``i_mtime``, copied from the source files (``ctime`` cannot be set
  with ``os.utime``; reading a file may move ``atime``): after mke2fs, one ``debugfs -w -f``
  command file sets ``atime``, ``ctime``, ``mtime``, ``crtime`` and their ``_extra``
  (nanoseconds) to ``timestamp`` on every inode in use; debugfs recomputes the inode checksums.
  The inodes in use are found with :class:`fwscan.unpack.ext4.Ext4FileSystem`.
- Volume UUID (``-U``), directory hash seed (``-E hash_seed=``, the same UUID), and with them the
  ``metadata_csum`` checksum seed, which derives from the UUID.
- The order files are added in (it decides inode and block numbers): mke2fs sorts each source
  directory with ``alphasort``, which follows the locale; ``LC_ALL=C`` makes it byte order.
- Host defaults: ``MKE2FS_CONFIG`` points at a config written here, and the features (``-O
  none,...``), inode size (``-I 256``), inode count (``-N``), reserved blocks (``-m 0``) and
  block size are all given on the command line. There is no journal (its superblock would hold
  another UUID), no discard (``-E nodiscard``) and inode tables are written out
  (``lazy_itable_init=0``). The output file is recreated, so no earlier bytes survive.

The same debugfs pass also repairs a mke2fs 1.47.0 bug: with ``inline_data``, a file that ends
in a hole gets ``i_size`` cut to its last data block; sizes are set back from the source tree.
Inode generation numbers are 0 with mke2fs -d, so nothing needs doing there. The features are
those of Android images built by the platform: extent, dir_index, filetype, sparse_super,
large_file, huge_file, extra_isize, dir_nlink, ext_attr (for SELinux labels and inline data), no
journal, optionally inline_data. Not pinned: ``signed_directory_hash`` vs ``unsigned`` in the
superblock flags follows the CPU's ``char`` signedness (x86 vs Arm), so images are identical
between machines of the same kind; and source files' owners, modes and extended attributes are
copied as they are, as they are part of the tree.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import uuid as uuidlib
from collections.abc import Sequence
from pathlib import Path

from fwscan.errors import ToolError, UnpackError
from fwscan.unpack.base import EntryType, Window
from fwscan.unpack.ext4 import Ext4FileSystem

DEFAULT_UUID = "5d7a4f3e-2c1b-4e8a-9f60-0a1b2c3d4e5f"
"""The volume UUID (and hash seed) used unless one is given."""
DEFAULT_TIMESTAMP = 1230768000
"""Every timestamp in the image: 2009-01-01 00:00:00 UTC, the fixed time Android builds use."""

FEATURES = (
    "ext_attr",
    "dir_index",
    "filetype",
    "extent",
    "sparse_super",
    "large_file",
    "huge_file",
    "dir_nlink",
    "extra_isize",
)
"""The ``-O`` features of every image (on top of ``none``)."""

_INODE_SIZE = 256
_MIB = 1 << 20
_TIME_FIELDS = ("atime", "ctime", "mtime", "crtime")
_FEATURE_RE = re.compile(r"\^?[a-z0-9_]+")
_CONFIG = """[defaults]
\tbase_features = {features}
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384
\treserved_ratio = 0
\tenable_periodic_fsck = 0
\tlazy_itable_init = 0

[fs_types]
\text4 = {{
\t\tfeatures = {features}
\t}}
\tdefault = {{
\t\tinode_ratio = 16384
\t}}
"""


def make_ext4(
    src_dir: Path,
    out: Path,
    *,
    size: int | None = None,
    label: str = "",
    block_size: int = 4096,
    inline_data: bool = False,
    uuid: str = DEFAULT_UUID,
    features: Sequence[str] = (),
    timestamp: int = DEFAULT_TIMESTAMP,
) -> None:
    """Write an ext4 image of the tree ``src_dir`` to ``out``, the same bytes on every run.

    ``size`` is the image size in bytes (rounded up to a block); ``None`` sizes it from the tree
    (data rounded to blocks, directories, inode tables, plus 20% and 4 MiB). ``features`` adds
    ``-O`` items such as ``64bit``, ``metadata_csum`` or ``^dir_index``; ``timestamp`` is every
    time stamp in the image. The result passes ``e2fsck -fn``. Raises
    :class:`~fwscan.errors.ToolError` when mke2fs or debugfs is missing or fails (a half-made
    ``out`` is removed), :class:`ValueError` for bad arguments.
    """
    if not src_dir.is_dir():
        raise ValueError(f"{src_dir}: not a directory")
    if block_size not in (1024, 2048, 4096, 8192, 16384, 32768, 65536):
        raise ValueError(f"block size {block_size}: must be a power of two from 1024 to 65536")
    if len(label.encode()) > 16:
        raise ValueError(f"label {label!r} is longer than 16 bytes")
    fixed_uuid = str(uuidlib.UUID(uuid))
    for item in features:
        if not _FEATURE_RE.fullmatch(item):
            raise ValueError(f"bad feature {item!r}")
    mke2fs = _tool("mke2fs")
    debugfs = _tool("debugfs")
    est_bytes, inodes = estimate(src_dir, block_size, inline_data=inline_data)
    nbytes = est_bytes if size is None else size
    nbytes = -(-nbytes // block_size) * block_size
    feature_list = ",".join(
        ["none", *FEATURES, *(["inline_data"] if inline_data else []), *features]
    )

    with tempfile.TemporaryDirectory(prefix="fwscan-ext4-") as tmp:
        config = Path(tmp) / "mke2fs.conf"
        config.write_text(_CONFIG.format(features=",".join(FEATURES)))
        env = {
            **os.environ,
            "E2FSPROGS_FAKE_TIME": str(timestamp),
            "LC_ALL": "C",
            "TZ": "UTC",
            "MKE2FS_CONFIG": str(config),
        }
        out.unlink(missing_ok=True)
        with open(out, "wb") as f:
            f.truncate(nbytes)
        try:
            _run(
                [
                    mke2fs,
                    "-q",
                    "-F",
                    "-t",
                    "ext4",
                    "-T",
                    "default",
                    "-b",
                    str(block_size),
                    "-I",
                    str(_INODE_SIZE),
                    "-N",
                    str(inodes),
                    "-m",
                    "0",
                    "-L",
                    label,
                    "-U",
                    fixed_uuid,
                    "-E",
                    f"hash_seed={fixed_uuid},nodiscard,lazy_itable_init=0",
                    "-O",
                    feature_list,
                    "-d",
                    str(src_dir),
                    str(out),
                ],
                env,
            )
            commands = Path(tmp) / "debugfs.cmd"
            commands.write_text(_fix_commands(out, src_dir, timestamp))
            _run([debugfs, "-w", "-f", str(commands), str(out)], env)
        except BaseException:
            out.unlink(missing_ok=True)
            raise


def estimate(src_dir: Path, block_size: int, *, inline_data: bool = False) -> tuple[int, int]:
    """A generous image size in bytes and an inode count for the tree ``src_dir``."""
    blocks = 0
    entries = 0
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(src_dir):
        names = dirs + files
        entries += len(names)
        dirent_bytes = 24 + sum((8 + len(os.fsencode(n)) + 3) & ~3 for n in names)
        blocks += 1 + -(-dirent_bytes * 5 // 4 // block_size)
        for name in names:
            st = (Path(root) / name).lstat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            if stat.S_ISREG(st.st_mode) and not (inline_data and st.st_size <= 60):
                data = -(-st.st_size // block_size)
                blocks += data + data // 256
            elif stat.S_ISLNK(st.st_mode) and st.st_size >= 60:
                blocks += 1
    inodes = entries + 32 + entries // 10
    total = blocks * block_size + inodes * _INODE_SIZE
    return total * 6 // 5 + 4 * _MIB, inodes


def _fix_commands(image: Path, src_dir: Path, timestamp: int) -> str:
    """debugfs commands that set every time field of every inode in use to ``timestamp``, and
    the size of any file mke2fs got wrong."""
    sizes: dict[int, int] = {}
    try:
        with Ext4FileSystem(Window(image)) as fs:
            inodes = {2}
            for entry in fs.walk():
                inodes.add(entry.inode)
                if entry.type is EntryType.FILE:
                    real = (src_dir / entry.path).lstat().st_size
                    if real != entry.size:
                        sizes[entry.inode] = real
            problems = fs.errors
    except UnpackError as exc:
        raise ToolError(f"mke2fs wrote an image fwscan cannot read: {exc}") from exc
    if problems:
        raise ToolError(f"mke2fs wrote an image fwscan cannot read: {problems[0]}")
    lines = [f"set_inode_field <{ino}> size {size}" for ino, size in sorted(sizes.items())]
    for ino in sorted(inodes):
        for field in _TIME_FIELDS:
            lines.append(f"set_inode_field <{ino}> {field} @{timestamp}")
            lines.append(f"set_inode_field <{ino}> {field}_extra 0")
    return "\n".join(lines) + "\n"


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise ToolError(f"{name} not found: install e2fsprogs")
    return path


def _run(argv: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    # debugfs reports a failed command on stderr but still exits 0.
    noise = [
        line
        for line in proc.stderr.splitlines()
        if line.strip() and not line.startswith(("debugfs ", "mke2fs "))
    ]
    if proc.returncode != 0 or (noise and Path(argv[0]).name == "debugfs"):
        detail = " ".join(" ".join(noise).split())[:400] or f"exit status {proc.returncode}"
        raise ToolError(f"{Path(argv[0]).name} failed: {detail}")

"""ReadAhead: a partition's files read in order on a second thread, on real file systems."""

from __future__ import annotations

import hashlib
import random
import threading
from pathlib import Path

import pytest

from fwscan.errors import UnpackError
from fwscan.hashing import BLOCK, ReadAhead
from fwscan.unpack.base import EntryType, FileSystem, FsEntry, Window
from fwscan.unpack.ext4 import Ext4FileSystem
from fwscan.unpack.hostdir import HostFileSystem

SIZES = {
    "empty": 0,
    "one": 1,
    "small": 5000,
    "block": BLOCK,
    "block_plus": BLOCK + 1,
    "big": 3 * BLOCK + 12345,
    "bigger": 9 * BLOCK + 7,
}


def make_tree(root: Path) -> dict[str, str]:
    """Files of every size around the block size; returns path -> SHA-256."""
    rnd = random.Random(7)
    root.mkdir()
    want = {}
    for i, (name, size) in enumerate(SIZES.items()):
        data = rnd.randbytes(size)
        path = root / f"d{i % 3}" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        want[f"d{i % 3}/{name}"] = hashlib.sha256(data).hexdigest()
    return want


def files_of(fs: FileSystem) -> list[FsEntry]:
    return [e for e in fs.walk() if e.type is EntryType.FILE]


def read_all(fs: FileSystem, files: list[FsEntry]) -> dict[str, str]:
    got = {}
    with ReadAhead(fs, files) as ahead:
        for entry in files:
            h = hashlib.sha256()
            for block in ahead.next_file():
                assert len(block) > 0
                h.update(block)
            got[entry.path] = h.hexdigest()
    return got


def test_host_directory_digests(tmp_path: Path) -> None:
    want = make_tree(tmp_path / "tree")
    fs = HostFileSystem(tmp_path / "tree")
    assert read_all(fs, files_of(fs)) == want


def test_ext4_image_digests_and_blocks(tmp_path: Path) -> None:
    from fwscan.synth.ext4img import make_ext4

    want = make_tree(tmp_path / "tree")
    image = tmp_path / "fs.img"
    make_ext4(tmp_path / "tree", image)
    with Ext4FileSystem(Window(image)) as fs:
        files = files_of(fs)
        assert read_all(fs, files) == want
        # blocks are gathered to at least BLOCK bytes, only the last of a file is shorter
        with ReadAhead(fs, files) as ahead:
            for entry in files:
                sizes = [len(b) for b in ahead.next_file()]
                assert sum(sizes) == entry.size
                assert all(s >= BLOCK for s in sizes[:-1])
        # and the file system is usable again afterwards, on this thread
        assert (
            hashlib.sha256(b"".join(fs.iter_content(files[0]))).hexdigest() == (want[files[0].path])
        )


def test_an_unreadable_file_is_its_own_error(tmp_path: Path) -> None:
    want = make_tree(tmp_path / "tree")
    fs = HostFileSystem(tmp_path / "tree")
    files = files_of(fs)
    gone = files[2]
    (tmp_path / "tree" / gone.path).unlink()  # listed, then gone: reading it fails
    with ReadAhead(fs, files) as ahead:
        for entry in files:
            stream = ahead.next_file()
            if entry is gone:
                with pytest.raises(UnpackError, match="cannot open"):
                    b"".join(stream)
            else:
                assert hashlib.sha256(b"".join(stream)).hexdigest() == want[entry.path]


def test_abandoned_stream_and_early_close(tmp_path: Path) -> None:
    want = make_tree(tmp_path / "tree")
    fs = HostFileSystem(tmp_path / "tree")
    files = files_of(fs)
    big = next(i for i, e in enumerate(files) if e.size > 3 * BLOCK)
    with ReadAhead(fs, files) as ahead:
        for i, entry in enumerate(files):
            stream = ahead.next_file()
            if i == big:
                next(stream)  # one block, then abandoned: the rest of this file is skipped
                stream.close()
                continue
            assert hashlib.sha256(b"".join(stream)).hexdigest() == want[entry.path]
        with pytest.raises(IndexError):
            ahead.next_file()
    # closed after the first file of many: returns, and the reading thread is gone
    before = threading.active_count()
    with ReadAhead(fs, files * 50) as ahead:
        b"".join(ahead.next_file())
    assert threading.active_count() <= before


def test_an_unread_stream_is_skipped(tmp_path: Path) -> None:
    want = make_tree(tmp_path / "tree")
    fs = HostFileSystem(tmp_path / "tree")
    files = files_of(fs)
    with ReadAhead(fs, files) as ahead:
        first = ahead.next_file()  # never read
        started = ahead.next_file()
        next(started)  # read in part
        third = ahead.next_file()
        assert hashlib.sha256(b"".join(third)).hexdigest() == want[files[2].path]
        for stale in (first, started):
            with pytest.raises(RuntimeError, match="left for the next file"):
                next(stale)

"""The ext4 reader against real images made by mke2fs -d, e2fsck, debugfs and the corpus."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import stat
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need_tool

from fwscan.errors import LimitError, ToolError, UnpackError
from fwscan.limits import Limits
from fwscan.synth.ext4img import make_ext4
from fwscan.unpack.base import EntryType, FsEntry, Window
from fwscan.unpack.ext4 import Ext4FileSystem, probe

Listing = dict[str, tuple[str, int, int | None, str | None, str | None]]
"""path -> (type, st_mode, size (None for directories), link target, sha256 of a file)."""

UTF8_NAME = "ünïcødé_文件 with space.txt"
BAD_UTF8 = b"bad\xffname"
LONG_TARGET = "../" + "/".join(["long-directory-name"] * 10) + "/target"


def _run(*argv: str, ok: tuple[int, ...] = (0,)) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode in ok, f"{argv}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _debugfs(image: Path, request: str, *, write: bool = False) -> str:
    argv = [need_tool("debugfs"), *(["-w"] if write else []), "-R", request, str(image)]
    return _run(*argv)


def _fsck_clean(image: Path) -> None:
    _run(need_tool("e2fsck"), "-fn", str(image))


def build_tree(root: Path) -> None:
    """A tree with every kind of entry the reader must handle."""
    rnd = random.Random(1234)
    root.mkdir()
    (root / "empty").write_bytes(b"")
    (root / "one").write_bytes(b"x")
    (root / "sixty").write_bytes(bytes(rnd.randrange(1, 256) for _ in range(60)))
    (root / "page").write_bytes(rnd.randbytes(4096))
    (root / "page_plus_one").write_bytes(rnd.randbytes(4097))
    (root / "random_3m").write_bytes(rnd.randbytes(3 << 20))
    with open(root / "sparse", "wb") as f:  # holes between and after data
        f.seek(200_000)
        f.write(rnd.randbytes(5000))
        f.seek(3 << 20)
        f.write(b"tail")
        f.truncate(5 << 20)
    with open(root / "fragmented", "wb") as f:  # 400 data islands: 400 extents, a deep tree
        for i in range(400):
            f.seek(i * 16384)
            f.write(rnd.randbytes(4096))
    (root / "script.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "script.sh").chmod(0o4755)
    (root / UTF8_NAME).write_bytes("texte accentué\n".encode())
    fd = os.open(os.fsencode(root) + b"/" + BAD_UTF8, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"bad name")
    os.close(fd)
    os.link(root / "page", root / "hard_link_to_page")
    os.symlink("one", root / "link_short")
    os.symlink(LONG_TARGET, root / "link_long")
    os.mkfifo(root / "fifo")
    deep = root / "nested" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "deep.txt").write_bytes(b"deep\n")
    (root / "nested" / "a" / "sibling").write_bytes(b"sib")
    (root / "nested" / "private").mkdir(mode=0o700)
    (root / "nested" / "private").chmod(0o700)
    many = root / "many"
    many.mkdir()
    for i in range(3000):
        (many / f"entry_{i:04d}_{'x' * (i % 40)}").write_bytes(b"" if i % 7 == 0 else b"%d" % i)


def source_listing(root: Path) -> Listing:
    out: Listing = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            st = full.lstat()
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mode, None, None, None)
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(full)
                out[rel] = ("symlink", st.st_mode, len(os.fsencode(target)), target, None)
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
                out[rel] = ("file", st.st_mode, st.st_size, None, digest)
            else:
                out[rel] = ("other", st.st_mode, 0, None, None)
    return out


def image_listing(fs: Ext4FileSystem, entries: list[FsEntry]) -> Listing:
    out: Listing = {}
    for e in entries:
        if e.path == "lost+found" or e.path.startswith("lost+found/"):
            continue
        digest = None
        if e.type is EntryType.FILE:
            h = hashlib.sha256()
            total = 0
            for chunk in fs.iter_content(e, chunk_size=300_000):
                assert 0 < len(chunk) <= 300_000
                h.update(chunk)
                total += len(chunk)
            assert total == e.size
            digest = h.hexdigest()
        size = None if e.type is EntryType.DIR else e.size
        out[e.path] = (e.type.value, e.mode, size, e.link_target, digest)
    return out


def _sort_key(path: str) -> list[bytes]:
    return os.fsencode(path).split(b"/")


def check_image(image: Path, expected: Listing, window: Window | None = None) -> list[FsEntry]:
    with Ext4FileSystem(window or Window(image)) as fs:
        entries = list(fs.walk())
        assert fs.errors == []
        paths = [e.path for e in entries]
        assert paths == sorted(paths, key=_sort_key)  # parents first, siblings by name bytes
        assert image_listing(fs, entries) == expected
    by_path = {e.path: e for e in entries}
    assert by_path["hard_link_to_page"].inode == by_path["page"].inode
    assert all(e.uid == os.getuid() and e.gid == os.getgid() for e in entries)
    return entries


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Listing]:
    root = tmp_path_factory.mktemp("tree") / "src"
    build_tree(root)
    return root, source_listing(root)


@pytest.fixture(scope="module")
def base_image(tree: tuple[Path, Listing], tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tool("mke2fs")
    image = tmp_path_factory.mktemp("base") / "base.img"
    make_ext4(tree[0], image, block_size=4096, label="system")
    return image


VARIANTS = [
    pytest.param(4096, False, (), id="4k"),
    pytest.param(1024, False, ("^extent",), id="1k-blockmap"),
    pytest.param(4096, True, ("64bit", "metadata_csum"), id="4k-inline-64bit-csum"),
    pytest.param(1024, True, ("metadata_csum",), id="1k-inline-csum"),
    pytest.param(2048, False, ("64bit",), id="2k-64bit"),
]


@pytest.mark.parametrize(("block_size", "inline", "features"), VARIANTS)
def test_image_matches_source(
    tree: tuple[Path, Listing],
    tmp_path: Path,
    block_size: int,
    inline: bool,
    features: tuple[str, ...],
) -> None:
    src, expected = tree
    image = tmp_path / "fs.img"
    make_ext4(src, image, block_size=block_size, inline_data=inline, features=features)
    _fsck_clean(image)
    check_image(image, expected)
    if "^extent" not in features:
        levels = _debugfs(image, "ex /fragmented").splitlines()[1:]
        assert max(int(line.split("/")[1].split()[0]) for line in levels) >= 1
    if inline:
        assert "Size of inline data: 60" in _debugfs(image, "stat /sixty")

    # e2fsck -D turns the 3000-entry directory into a hash tree; the listing stays the same.
    _run(need_tool("e2fsck"), "-fyD", str(image), ok=(0, 1))
    _fsck_clean(image)
    flags = re.search(r"Flags: 0x([0-9a-f]+)", _debugfs(image, "stat /many"))
    assert flags is not None
    assert int(flags.group(1), 16) & 0x1000  # EXT4_INDEX_FL: a hash-tree directory
    assert "Root node dump" in _debugfs(image, "htree /many")
    check_image(image, expected)


def test_matches_debugfs_listing(base_image: Path) -> None:
    with Ext4FileSystem(Window(base_image)) as fs:
        mine = {e.path: e for e in fs.walk() if e.path.count("/") == 1 and e.path[:7] == "nested/"}
    theirs = {}
    for line in filter(None, _debugfs(base_image, "ls -l -p /nested").splitlines()):
        _, ino, mode, uid, gid, name, size, _ = line.split("/")
        if name not in (".", ".."):
            theirs["nested/" + name] = (int(ino), int(mode, 8), int(uid), int(gid), size)
    assert set(mine) == set(theirs) == {"nested/a", "nested/private"}
    for path, (ino, mode, uid, gid, _) in theirs.items():
        e = mine[path]
        assert (e.inode, e.mode, e.uid, e.gid) == (ino, mode, uid, gid)
    assert mine["nested/private"].mode == 0o40700


@pytest.mark.parametrize("name", ["disk_ext2_1k.img", "disk_ext2_4k.img"])
def test_corpus_ext2_matches_rdump(corpus: Path, tmp_path: Path, name: str) -> None:
    image = corpus / "firmware" / "ext2" / name
    out = tmp_path / "rdump"
    out.mkdir()
    _debugfs(image, f"rdump / {out}")
    expected: dict[str, tuple[str, int, str | None]] = {}
    for dirpath, dirs, files in os.walk(out):
        for entry in dirs + files:
            full = Path(dirpath) / entry
            rel = full.relative_to(out).as_posix()
            st = full.lstat()
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
                expected[rel] = ("file", st.st_size, digest)
            elif stat.S_ISLNK(st.st_mode):
                expected[rel] = ("symlink", len(os.readlink(full)), os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                expected[rel] = ("dir", 0, None)
    got: dict[str, tuple[str, int, str | None]] = {}
    with Ext4FileSystem(Window(image)) as fs:
        for e in fs.walk():
            if e.type is EntryType.FILE:
                digest = hashlib.sha256(b"".join(fs.iter_content(e))).hexdigest()
                got[e.path] = ("file", e.size, digest)
            elif e.type is EntryType.SYMLINK:
                got[e.path] = ("symlink", e.size, e.link_target)
            elif e.type is EntryType.DIR:
                got[e.path] = ("dir", 0, None)
        assert fs.errors == []
    assert got == expected
    assert {"sparse-10000blocks", "link-long_symlink", "dir1/dir2/file"} <= set(got)


def test_image_inside_a_larger_file(base_image: Path, tree: tuple[Path, Listing]) -> None:
    host = base_image.with_name("host.bin")
    data = base_image.read_bytes()
    host.write_bytes(b"\xaa" * 12345 + data + b"\x55" * 4096)
    check_image(host, tree[1], Window(host, 12345, len(data)))
    with pytest.raises(UnpackError, match="magic"):
        Ext4FileSystem(Window(host, 12344, len(data)))


def test_probe(base_image: Path) -> None:
    head = base_image.read_bytes()[:4096]
    assert probe(head)
    assert not probe(head[:1000])
    assert not probe(bytes(4096))


def test_uninitialised_extents_and_shared_blocks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(7)
    (src / "a").write_bytes(rnd.randbytes(8192))
    (src / "b").write_bytes(rnd.randbytes(8192))
    with open(src / "holes", "wb") as f:
        f.write(b"head")
        f.truncate(1 << 20)
    image = tmp_path / "fs.img"
    make_ext4(src, image)
    _debugfs(image, "fallocate /holes 10 40", write=True)
    assert "Uninit" in _debugfs(image, "ex /holes")
    # Android's e2fsdroid dedup: two inodes map the same blocks, flagged by shared_blocks.
    _debugfs(image, "feature shared_blocks", write=True)
    a_start = re.search(r"\(0-1\):(\d+)-", _debugfs(image, "stat /a"))
    assert a_start is not None
    _debugfs(image, f"sif /b block[5] {a_start.group(1)}", write=True)
    with Ext4FileSystem(Window(image)) as fs:
        entries = {e.path: e for e in fs.walk()}
        a = b"".join(fs.iter_content(entries["a"]))
        b = b"".join(fs.iter_content(entries["b"]))
        holes = b"".join(fs.iter_content(entries["holes"], chunk_size=4096))
    assert a == b == (src / "a").read_bytes()
    assert holes == b"head" + bytes((1 << 20) - 4)


def test_inline_directory_continued_in_attribute(tmp_path: Path) -> None:
    """The kernel grows an inline directory into ``system.data``; mke2fs never does, so the
    attribute is written with debugfs (e2fsck accepts the result)."""
    src = tmp_path / "src"
    (src / "small_dir").mkdir(parents=True)
    (src / "small_dir" / "a").write_bytes(b"a")
    (src / "b").write_bytes(b"bb")
    (src / "c").write_bytes(b"ccc")
    image = tmp_path / "fs.img"
    make_ext4(src, image, inline_data=True)
    with Ext4FileSystem(Window(image)) as fs:
        ino = {e.path: e.inode for e in fs.walk()}
    value = struct.pack("<IHBB4s", ino["b"], 12, 1, 1, b"b")
    value += struct.pack("<IHBB20s", ino["c"], 28, 1, 1, b"c")
    (tmp_path / "ea").write_bytes(value)
    _debugfs(image, f"ea_set -f {tmp_path / 'ea'} /small_dir system.data", write=True)
    _debugfs(image, "sif /small_dir size 100", write=True)
    for name in ("b", "c"):
        _debugfs(image, f"sif <{ino[name]}> links_count 2", write=True)
    assert "Size of inline data: 100" in _debugfs(image, "stat /small_dir")
    _fsck_clean(image)
    with Ext4FileSystem(Window(image)) as fs:
        entries = {e.path: e for e in fs.walk()}
        assert fs.errors == []
        assert b"".join(fs.iter_content(entries["small_dir/c"])) == b"ccc"
    assert sorted(p for p in entries if p.startswith("small_dir/")) == [
        "small_dir/a",
        "small_dir/b",
        "small_dir/c",
    ]
    assert entries["small_dir/b"].inode == ino["b"]


def test_make_ext4_is_deterministic(tree: tuple[Path, Listing], tmp_path: Path) -> None:
    src = tree[0]
    first, second = tmp_path / "first.img", tmp_path / "second.img"
    make_ext4(src, first, inline_data=True, features=("metadata_csum",))
    time.sleep(1.1)
    (src / "one").touch()  # new mtime and ctime on the source: must not matter
    shutil.copy(src / "page", tmp_path / "read-me")  # a read may move atime
    make_ext4(src, second, inline_data=True, features=("metadata_csum",))
    assert first.read_bytes() == second.read_bytes()


def test_make_ext4_failure_is_one_line(tree: tuple[Path, Listing], tmp_path: Path) -> None:
    image = tmp_path / "small.img"
    with pytest.raises(ToolError) as info:
        make_ext4(tree[0], image, size=256 * 1024)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("mke2fs failed")
    assert not image.exists()


# -- hostile images ---------------------------------------------------------------------------


@pytest.fixture
def hostile(base_image: Path, tmp_path: Path) -> Path:
    image = tmp_path / "hostile.img"
    shutil.copyfile(base_image, image)
    return image


def _patch(image: Path, offset: int, data: bytes) -> None:
    with open(image, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _read_all(fs: Ext4FileSystem) -> Iterator[tuple[FsEntry, bytes]]:
    for e in fs.walk():
        if e.type is EntryType.FILE:
            yield e, b"".join(fs.iter_content(e))


def test_truncated_image(hostile: Path) -> None:
    os.truncate(hostile, hostile.stat().st_size // 2)
    with pytest.raises(UnpackError, match="truncated image"):
        Ext4FileSystem(Window(hostile))
    os.truncate(hostile, 1500)
    with pytest.raises(UnpackError, match="too short"):
        Ext4FileSystem(Window(hostile))


def test_bad_superblock_values(hostile: Path) -> None:
    _patch(hostile, 1080, b"\x00\x00")
    with pytest.raises(UnpackError, match="bad superblock magic"):
        Ext4FileSystem(Window(hostile))
    _patch(hostile, 1080, b"\x53\xef")
    _patch(hostile, 1024 + 0x18, (9).to_bytes(4, "little"))
    with pytest.raises(UnpackError, match="bad block size"):
        Ext4FileSystem(Window(hostile))


@pytest.mark.parametrize(
    ("bit", "message"),
    [
        (0x0800, r"unknown incompatible feature\(s\) 0x800"),
        (0x80000, r"unknown incompatible feature\(s\) 0x80000"),
        (0x0001, "compression"),
        (0x1000, "dirdata"),
    ],
)
def test_refused_incompat_features(hostile: Path, bit: int, message: str) -> None:
    with open(hostile, "r+b") as f:
        f.seek(1024 + 0x60)
        value = int.from_bytes(f.read(4), "little") | bit
        f.seek(1024 + 0x60)
        f.write(value.to_bytes(4, "little"))
    with pytest.raises(UnpackError, match=message):
        Ext4FileSystem(Window(hostile))


def test_extent_past_the_end(hostile: Path) -> None:
    _debugfs(hostile, "sif /page block[5] 0x7ffffff0", write=True)
    with Ext4FileSystem(Window(hostile)) as fs:
        entries = {e.path: e for e in fs.walk()}
        with pytest.raises(UnpackError, match=r"^page: extent at block 2147483632 .* outside"):
            b"".join(fs.iter_content(entries["page"]))
        assert b"".join(fs.iter_content(entries["page_plus_one"]))  # others still read
        assert b"".join(fs.iter_content(entries["random_3m"]))


def test_extent_tree_loop_and_bad_header(hostile: Path) -> None:
    leaves = re.findall(r"\(ETB0\):(\d+)", _debugfs(hostile, "stat /fragmented"))
    assert len(leaves) == 2
    _debugfs(hostile, f"sif /fragmented block[7] {leaves[0]}", write=True)
    _debugfs(hostile, "sif /sixty block[0] 0x0004f30b", write=True)  # magic 0xf30b
    _debugfs(hostile, "sif /page_plus_one block[1] 0x00060004", write=True)  # depth 6
    _debugfs(hostile, "sif /one block[0] 0x0005f30a", write=True)  # 5 entries, max 4
    with Ext4FileSystem(Window(hostile)) as fs:
        entries = {e.path: e for e in fs.walk()}
        with pytest.raises(UnpackError, match="extent tree loop"):
            list(fs.iter_content(entries["fragmented"]))
        with pytest.raises(UnpackError, match="bad extent header magic 0xf30b"):
            list(fs.iter_content(entries["sixty"]))
        with pytest.raises(UnpackError, match="extent tree depth 6 exceeds 5"):
            list(fs.iter_content(entries["page_plus_one"]))
        with pytest.raises(UnpackError, match=r"bad extent node counts \(5 entries, 4 max\)"):
            list(fs.iter_content(entries["one"]))
        broken = {"fragmented", "sixty", "page_plus_one", "one"}
        assert len(dict(_read_all_but(fs, broken))) > 3000


def _read_all_but(fs: Ext4FileSystem, broken: set[str]) -> Iterator[tuple[str, bytes]]:
    for e in fs.walk():
        if e.type is EntryType.FILE and e.path not in broken:
            yield e.path, b"".join(fs.iter_content(e))


@pytest.mark.parametrize("rec_len", [0, 4096 + 4, 6])
def test_bad_directory_entry(hostile: Path, rec_len: int) -> None:
    block = int(_debugfs(hostile, "blocks /nested/a").split()[0])
    _patch(hostile, block * 4096 + 4, rec_len.to_bytes(2, "little"))  # rec_len of "."
    with Ext4FileSystem(Window(hostile)) as fs:
        paths = {e.path for e in fs.walk()}
        assert [str(e) for e in fs.errors] == [
            f"nested/a: bad directory entry at offset 0: record length {rec_len},"
            " name length 1, block of 4096 bytes"
        ]
        assert "nested/a" in paths
        assert not any(p.startswith("nested/a/") for p in paths)
        assert {"nested/private", "many/entry_2999_" + "x" * 39} <= paths
        assert sum(1 for _ in _read_all(fs)) > 3000


def test_directory_cycle(hostile: Path) -> None:
    _debugfs(hostile, "link /nested /nested/a/b/loop", write=True)
    nested = int(_debugfs(hostile, "stat /nested").split()[1])
    with Ext4FileSystem(Window(hostile)) as fs:
        entries = [e.path for e in fs.walk()]
        assert [str(e) for e in fs.errors] == [
            f"nested/a/b/loop: directory cycle: inode {nested} is already listed at nested"
        ]
    assert "nested/a/b/loop" in entries
    assert "nested/a/b/c/deep.txt" in entries
    assert not any(p.startswith("nested/a/b/loop/") for p in entries)


def test_entry_to_unused_or_out_of_range_inode(hostile: Path) -> None:
    count = re.search(r"Inode count:\s+(\d+)", _run(need_tool("dumpe2fs"), "-h", str(hostile)))
    assert count is not None
    last = int(count.group(1))
    _debugfs(hostile, f"ln <{last}> /nested/ghost", write=True)
    _debugfs(hostile, f"ln <{last}> /nested/far", write=True)
    block = int(_debugfs(hostile, "blocks /nested").split()[0])
    data = hostile.read_bytes()[block * 4096 : (block + 1) * 4096]
    _patch(hostile, block * 4096 + data.index(b"far") - 8, (last + 1).to_bytes(4, "little"))
    with Ext4FileSystem(Window(hostile)) as fs:
        paths = {e.path for e in fs.walk()}
        assert sorted(str(e) for e in fs.errors) == [
            f"nested/far: inode {last + 1} is out of range (1..{last})",
            f"nested/ghost: inode {last} is not in use",
        ]
    assert {"nested/a", "nested/private"} <= paths
    assert not {"nested/far", "nested/ghost"} & paths


def test_dirent_type_disagrees_with_inode(hostile: Path) -> None:
    _debugfs(hostile, "sif /one mode 010644", write=True)  # the inode now says fifo
    with Ext4FileSystem(Window(hostile)) as fs:
        entries = {e.path: e for e in fs.walk()}
        assert [str(e) for e in fs.errors] == [
            "one: directory entry type 1 disagrees with inode mode 10644 (the inode is believed)"
        ]
    assert entries["one"].type is EntryType.OTHER


def test_encrypted_file_flag(hostile: Path) -> None:
    _debugfs(hostile, "sif /page flags 0x80800", write=True)
    with Ext4FileSystem(Window(hostile)) as fs:
        entries = {e.path: e for e in fs.walk()}
        with pytest.raises(UnpackError, match="page: encrypted file"):
            list(fs.iter_content(entries["page"]))


def test_limits(base_image: Path) -> None:
    limits = Limits(max_depth=3, max_dir_entries=100, max_file_size=1 << 20)
    with Ext4FileSystem(Window(base_image), limits) as fs:
        entries = {e.path: e for e in fs.walk()}
        errors = {str(e).split(":")[0]: e for e in fs.errors}
        assert isinstance(errors["many"], LimitError)
        assert isinstance(errors["nested/a/b"], LimitError)
        assert "nested/a/b" in entries
        assert "nested/a/b/c" not in entries
        with pytest.raises(LimitError, match="random_3m: file size"):
            list(fs.iter_content(entries["random_3m"]))
        assert b"".join(fs.iter_content(entries["page"]))

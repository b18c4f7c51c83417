"""The EROFS reader against real images made by mkfs.erofs, fsck.erofs, dump.erofs and the corpus.

Every image is built from a source tree in the test's temporary folder and read back: the
listing (paths, types, sizes, permission bits, link targets, SHA-256 of every file) must be the
source tree's. The setup builds a current erofs-utils into ``.tools/`` (``.ci/erofs-utils.sh``),
used before the system's; modes the mkfs.erofs in use does not have (Debian 12's 1.5 lacks
LZMA, DEFLATE, Zstandard, fragments, dedupe and block sizes other than 4 KiB; 1.8 lacks
compressed directories) are skipped, visibly. ``FWSCAN_MKFS_EROFS`` names another mkfs.erofs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import lzma
import os
import random
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import need_tool

from fwscan.errors import LimitError, UnpackError
from fwscan.limits import Limits
from fwscan.unpack.base import EntryType, Window
from fwscan.unpack.erofs import _K_ALG, ErofsFileSystem, _microlzma, probe

Listing = dict[str, tuple[str, int, int | None, str | None, str | None]]
"""path -> (type, permission bits, size (None for directories), link target, sha256 of a file)."""

UTF8_NAME = "ünïcødé_文件 with space.txt"
BAD_UTF8 = b"bad\xffname"
LONG_TARGET = "../" + "/".join(["long-directory-name"] * 40) + "/target"  # 800+ bytes
MANY = 2000


def _run(*argv: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)
    assert proc.returncode in ok, f"{argv}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _mkfs_path() -> str:
    return os.environ.get("FWSCAN_MKFS_EROFS") or need_tool("mkfs.erofs")


@functools.cache
def _mkfs_help() -> str:
    proc = subprocess.run([_mkfs_path(), "--help"], capture_output=True, text=True, check=False)
    return proc.stdout + proc.stderr


def build_tree(root: Path) -> None:
    """Every kind of entry, and file sizes around block and pcluster boundaries."""
    rnd = random.Random(4242)
    root.mkdir()
    (root / "empty").write_bytes(b"")
    (root / "tiny").write_bytes(b"x")
    for n in (511, 512, 513, 4095, 4096, 4097):
        (root / f"size_{n}").write_bytes(rnd.randbytes(n))
    (root / "random_3m").write_bytes(rnd.randbytes(3 << 20))
    words = [rnd.randbytes(rnd.randrange(2, 9)).hex().encode() for _ in range(400)]
    text = b" ".join(rnd.choice(words) for _ in range(700_000))[: 5 << 20]
    (root / "text_5m").write_bytes(text)  # compressible: hundreds of pclusters
    mixed = b"".join(
        rnd.randbytes(rnd.randrange(100, 9000)) if i % 3 == 0 else text[i * 997 : i * 997 + 7000]
        for i in range(400)
    )
    (root / "mixed").write_bytes(mixed)  # plain and compressed pclusters, odd offsets
    (root / "zeros_2m").write_bytes(bytes(2 << 20))
    (root / "script.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "script.sh").chmod(0o4755)
    (root / "private").write_bytes(b"secret\n")
    (root / "private").chmod(0o600)
    (root / UTF8_NAME).write_bytes("texte accentué\n".encode())
    fd = os.open(os.fsencode(root) + b"/" + BAD_UTF8, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"bad name")
    os.close(fd)
    os.link(root / "size_4096", root / "hard_link")
    os.symlink("tiny", root / "link_short")
    os.symlink(LONG_TARGET, root / "link_long")
    os.mkfifo(root / "fifo")
    with contextlib.suppress(OSError):  # without CAP_MKNOD the fifo still covers special files
        os.mknod(root / "null_device", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    deep = root / "d1" / "d2" / "d3"
    deep.mkdir(parents=True)
    (deep / "deep_file").write_bytes(text[:70_000])
    (root / "d1" / "locked").mkdir(mode=0o700)
    (root / "d1" / "locked").chmod(0o700)
    (root / "empty_dir").mkdir()
    many = root / "many"
    many.mkdir()
    for i in range(MANY):
        (many / f"entry_{i:05d}").write_bytes(str(i).encode())


def source_listing(root: Path) -> Listing:
    out: Listing = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            rel = str(p.relative_to(root))
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                out[rel] = ("file", mode, st.st_size, None, digest)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode, None, None, None)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", mode, st.st_size, os.readlink(p), None)
            else:
                out[rel] = ("other", mode, 0, None, None)
    return out


def image_listing(fs: ErofsFileSystem, chunk_size: int = 1 << 20) -> Listing:
    out: Listing = {}
    for e in fs.walk():
        digest = None
        if e.type is EntryType.FILE:
            h = hashlib.sha256()
            for chunk in fs.iter_content(e, chunk_size):
                assert 0 < len(chunk) <= chunk_size
                h.update(chunk)
            digest = h.hexdigest()
        size = None if e.type is EntryType.DIR else e.size
        out[e.path] = (e.type.value, stat.S_IMODE(e.mode), size, e.link_target, digest)
    assert not fs.errors, fs.errors
    return out


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Listing]:
    root = tmp_path_factory.mktemp("erofs") / "src"
    build_tree(root)
    return root, source_listing(root)


def make_image(src: Path, image: Path, *options: str) -> Path:
    _run(_mkfs_path(), "-T0", "--all-root", *options, str(image), str(src))
    return image


@pytest.fixture(scope="module")
def images(tree: tuple[Path, Listing], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The images the hostile and cross-check tests start from (built once)."""
    out = tmp_path_factory.mktemp("erofs-images")
    src = tree[0]
    return {
        "plain": make_image(src, out / "plain.img"),
        "lz4hc": make_image(src, out / "lz4hc.img", "-zlz4hc"),
    }


MODES: dict[str, tuple[list[str], str | None]] = {
    # name: (mkfs options, what the help text must mention for the mode to be available)
    "plain": ([], None),
    "noinline": (["-Enoinline_data"], None),
    "extended_inodes": (["-Eforce-inode-extended"], None),
    "compact_inodes": (["-Eforce-inode-compact"], None),
    "chunked": (["--chunksize=4096"], None),
    "chunked_64k": (["--chunksize=65536"], None),
    "lz4": (["-zlz4"], None),
    "lz4hc": (["-zlz4hc"], None),
    "lz4hc_12": (["-zlz4hc,12"], None),
    "lz4hc_big_pcluster": (["-zlz4hc", "-C65536"], None),
    "lz4hc_legacy": (["-zlz4hc", "-Elegacy-compress"], None),
    "lz4hc_legacy_big": (["-zlz4hc", "-Elegacy-compress", "-C16384"], None),
    "ztailpacking": (["-zlz4hc", "-Eztailpacking"], None),
    "ztailpacking_big": (["-zlz4", "-Eztailpacking", "-C32768"], None),
    "lzma": (["-zlzma"], "lzma"),
    "lzma_big": (["-zlzma", "-C131072", "-Eztailpacking"], "lzma"),
    "deflate": (["-zdeflate"], "deflate"),
    "zstd": (["-zzstd"], "zstd"),
    "fragments": (["-zlz4hc", "-Efragments"], "-b#"),
    "all_fragments": (["-zlzma", "-Eall-fragments"], "lzma"),
    "dedupe": (["-zlz4hc", "-Ededupe", "-Efragments"], "-b#"),
    "block_512": (["-b512"], "-b#"),
    "block_1024_lz4hc": (["-b1024", "-zlz4hc", "-Eztailpacking"], "-b#"),
    "block_2048_chunked": (["-b2048", "--chunksize=8192"], "-b#"),
    "compressed_dirs": (["-zlz4", "--zD=1"], "--zD"),
}


@pytest.mark.parametrize("mode", MODES)
def test_image_matches_source(tree: tuple[Path, Listing], tmp_path: Path, mode: str) -> None:
    options, needs = MODES[mode]
    if needs is not None and needs not in _mkfs_help():
        pytest.skip(f"{_mkfs_path()} does not support {' '.join(options)}")
    src, want = tree
    image = make_image(src, tmp_path / "image.img", *options)
    with ErofsFileSystem(Window(image)) as fs:
        got = image_listing(fs)
    assert got == want
    if mode == "lz4hc_legacy":  # odd chunk sizes cut decoded pclusters anywhere
        with ErofsFileSystem(Window(image)) as fs:
            assert image_listing(fs, chunk_size=4093) == want


def test_walk_order_and_hard_links(images: dict[str, Path]) -> None:
    with ErofsFileSystem(Window(images["lz4hc"])) as fs:
        entries = list(fs.walk())
        again = list(fs.walk())
    assert entries == again  # deterministic
    paths = [e.path for e in entries]
    for i, p in enumerate(paths):
        parent = p.rpartition("/")[0]
        if parent:
            assert paths.index(parent) < i, p
    siblings: dict[str, list[bytes]] = {}
    for p in paths:
        parent, _, name = p.rpartition("/")
        siblings.setdefault(parent, []).append(os.fsencode(name))
    for names in siblings.values():
        assert names == sorted(names)
    by_path = {e.path: e for e in entries}
    assert by_path["hard_link"].inode == by_path["size_4096"].inode
    assert by_path["fifo"].type is EntryType.OTHER
    assert stat.S_ISFIFO(by_path["fifo"].mode)
    assert by_path[os.fsdecode(BAD_UTF8)].type is EntryType.FILE


def test_matches_fsck_extract_and_dump(images: dict[str, Path], tmp_path: Path) -> None:
    image = images["lz4hc"]
    out = tmp_path / "extract"
    _run(need_tool("fsck.erofs"), f"--extract={out}", str(image))
    with ErofsFileSystem(Window(image)) as fs:
        got = image_listing(fs)
        entries = {e.path: e for e in fs.walk()}
        text = entries["text_5m"]
        ours = list(fs._extents(fs._inode(text.inode)))
    extracted = source_listing(out)

    # fsck.erofs drops set-id bits and makes special files with its own permissions.
    def normal(listing: Listing) -> Listing:
        return {
            p: (v[0], 0 if v[0] == "other" else v[1] & 0o777, *v[2:]) for p, v in listing.items()
        }

    assert normal(got) == normal(extracted)

    dump = _run(need_tool("dump.erofs"), "--path=/text_5m", "-e", str(image)).stdout
    assert re.search(rf"NID: {text.inode}\b", dump)
    assert re.search(rf"Size: {text.size}\b", dump)
    rows = re.findall(
        r"^\s*\d+:\s+(\d+)\.\.\s*(\d+) \|\s*(\d+) :\s+(\d+)\.\.\s*(\d+) \|\s*(\d+)", dump, re.M
    )
    theirs = [(int(la), int(llen), int(pa), int(plen)) for la, _, llen, pa, _, plen in rows]
    assert len(theirs) > 100
    # Uncompressed extents are kept with their logical length (dump shows the pcluster's).
    mine = [
        (la, llen, pa, plen if kind >= _K_ALG else 4096) for la, llen, kind, pa, plen, _ in ours
    ]
    assert mine == theirs


SAME_AS_4096 = ("sample_512.img", "sample_1024.img", "sample_2048.img", "sample_512_1024.img")


@pytest.mark.parametrize(
    "name",
    [
        "sample_512.img",
        "sample_1024.img",
        "sample_2048.img",
        "sample_4096.img",
        "sample_512_1024.img",
        "sample_noxattrs.img",
    ],
)
def test_corpus_matches_fsck_extract(corpus: Path, tmp_path: Path, name: str) -> None:
    image = corpus / "firmware" / "erofs" / name
    with ErofsFileSystem(Window(image)) as fs:
        got = image_listing(fs)
        assert fs.block_size == int((re.findall(r"\d+", name) or ["4096"])[0])
    out = tmp_path / "extract"
    proc = subprocess.run(
        [need_tool("fsck.erofs"), f"--extract={out}", str(image)],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    refused = ("isn't supported", "invalid sb_extslots")
    if proc.returncode and name in SAME_AS_4096 and any(r in proc.stderr for r in refused):
        # fsck.erofs 1.5 reads 4 KiB blocks only, and 1.8 refuses a superblock that ends past
        # a 1 KiB block; these images hold the same tree as sample_4096.img (checked with
        # fsck.erofs 1.9 when this test was written).
        shutil.rmtree(out, ignore_errors=True)
        _run(need_tool("fsck.erofs"), f"--extract={out}", str(image.with_name("sample_4096.img")))
    else:
        assert proc.returncode == 0, proc.stderr
    assert got == source_listing(out)


def test_image_inside_a_larger_file(
    images: dict[str, Path], tree: tuple[Path, Listing], tmp_path: Path
) -> None:
    data = images["lz4hc"].read_bytes()
    outer = tmp_path / "outer.bin"
    outer.write_bytes(b"\xaa" * 12345 + data + b"\xbb" * 777)
    with ErofsFileSystem(Window(outer, 12345, len(data))) as fs:
        assert image_listing(fs) == tree[1]


def test_probe(images: dict[str, Path]) -> None:
    head = images["plain"].read_bytes()[:4096]
    assert probe(head)
    assert not probe(head[:1027])
    assert not probe(b"\0" * 4096)


def test_content_api(images: dict[str, Path], tree: tuple[Path, Listing]) -> None:
    with ErofsFileSystem(Window(images["lz4hc"])) as fs:
        entries = {e.path: e for e in fs.walk()}
        with pytest.raises(ValueError, match="chunk_size"):
            next(fs.iter_content(entries["tiny"], 0))
        with pytest.raises(UnpackError, match="d1: not a regular file"):
            list(fs.iter_content(entries["d1"]))
        assert list(fs.iter_content(entries["empty"])) == []
        chunks = list(fs.iter_content(entries["mixed"], 1000))
        assert all(0 < len(c) <= 1000 for c in chunks)
        assert hashlib.sha256(b"".join(chunks)).hexdigest() == tree[1]["mixed"][4]


def test_microlzma_framing() -> None:
    """MicroLZMA is raw LZMA1 whose first byte (always 0 in LZMA1) is the negated properties."""
    data = b"".join(b"line %d of a text that compresses\n" % (i % 97) for i in range(3000))
    for lc, lp, pb in ((3, 0, 2), (0, 2, 0), (4, 0, 4)):
        filt = {"id": lzma.FILTER_LZMA1, "dict_size": 1 << 16, "lc": lc, "lp": lp, "pb": pb}
        raw = lzma.compress(data, lzma.FORMAT_RAW, filters=[filt])
        assert raw[0] == 0
        props = (pb * 5 + lp) * 9 + lc
        micro = bytes([~props & 0xFF]) + raw[1:]
        assert _microlzma(micro, len(data)) == data
        assert _microlzma(micro, 1000) == data[:1000]  # a partial reference
    with pytest.raises(UnpackError, match="properties"):
        _microlzma(b"\x00" + raw[1:], 10)


# -- hostile images ----------------------------------------------------------------------------


def _copy(image: Path, tmp_path: Path) -> Path:
    out = tmp_path / "hostile.img"
    shutil.copyfile(image, out)
    return out


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _nid_of(image: Path, path: str) -> tuple[int, int]:
    """``(nid, inode offset)`` of ``path``."""
    with ErofsFileSystem(Window(image)) as fs:
        nid = next(e.inode for e in fs.walk() if e.path == path)
        return nid, fs._meta_base + nid * 32


def test_truncated_and_bad_superblock(images: dict[str, Path], tmp_path: Path) -> None:
    data = images["lz4hc"].read_bytes()
    cut = tmp_path / "cut.img"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnpackError, match="truncated"):
        ErofsFileSystem(Window(cut))
    cut.write_bytes(data[:1100])
    with pytest.raises(UnpackError, match="too short"):
        ErofsFileSystem(Window(cut))
    bad = _copy(images["lz4hc"], tmp_path)
    _patch(bad, 1024, b"\0\0\0\0")
    with pytest.raises(UnpackError, match="magic"):
        ErofsFileSystem(Window(bad))
    bad = _copy(images["lz4hc"], tmp_path)
    _patch(bad, 1024 + 12, bytes([20]))
    with pytest.raises(UnpackError, match="block size"):
        ErofsFileSystem(Window(bad))
    with ErofsFileSystem(Window(images["lz4hc"])) as fs:
        file_nid = min(e.inode for e in fs.walk() if e.type is EntryType.FILE)
    bad = _copy(images["lz4hc"], tmp_path)
    _patch(bad, 1024 + 14, file_nid.to_bytes(2, "little"))  # root nid
    with pytest.raises(UnpackError, match="root inode is not a directory"):
        ErofsFileSystem(Window(bad))
    bad = _copy(images["lz4hc"], tmp_path)
    _patch(bad, 1024 + 40, (0x10000000).to_bytes(4, "little"))  # meta_blkaddr
    with pytest.raises(UnpackError, match="metadata start block 268435456 is past the image"):
        ErofsFileSystem(Window(bad))


@pytest.mark.parametrize(
    ("bit", "message"),
    [
        (0x400, r"unknown \(0x400\)"),
        (0x80000000, "0x80000000"),
        (0x80, "48bit"),
        (0x100, "metabox"),
    ],
)
def test_incompat_features(images: dict[str, Path], tmp_path: Path, bit: int, message: str) -> None:
    bad = _copy(images["lz4hc"], tmp_path)
    with open(bad, "r+b") as f:
        f.seek(1024 + 80)
        value = int.from_bytes(f.read(4), "little")
        f.seek(1024 + 80)
        f.write((value | bit).to_bytes(4, "little"))
    with pytest.raises(UnpackError, match=message):
        ErofsFileSystem(Window(bad))


def test_block_address_past_the_end(
    images: dict[str, Path], tree: tuple[Path, Listing], tmp_path: Path
) -> None:
    bad = _copy(images["plain"], tmp_path)
    _, iloc = _nid_of(bad, "random_3m")
    _patch(bad, iloc + 16, (0x7FFFFFF0).to_bytes(4, "little"))  # i_u: the start block
    with ErofsFileSystem(Window(bad)) as fs:
        entries = {e.path: e for e in fs.walk()}
        with pytest.raises(UnpackError, match="random_3m: data at block 2147483632"):
            list(fs.iter_content(entries["random_3m"]))
        data = b"".join(fs.iter_content(entries["size_4097"]))
        assert hashlib.sha256(data).hexdigest() == tree[1]["size_4097"][4]


def test_corrupted_pcluster(
    images: dict[str, Path], tree: tuple[Path, Listing], tmp_path: Path
) -> None:
    bad = _copy(images["lz4hc"], tmp_path)
    with ErofsFileSystem(Window(bad)) as fs:
        text = next(e for e in fs.walk() if e.path == "text_5m")
        extents = [x for x in fs._extents(fs._inode(text.inode)) if x[2] >= _K_ALG]
    _, _, _, pa, plen, _ = extents[len(extents) // 2]
    _patch(bad, pa, b"\xff" * plen)
    with ErofsFileSystem(Window(bad)) as fs:
        got: Listing = {}
        for e in fs.walk():
            if e.path == "text_5m":
                with pytest.raises(UnpackError, match="text_5m: corrupt LZ4 pcluster"):
                    list(fs.iter_content(e))
                continue
            if e.type is EntryType.FILE:
                digest = hashlib.sha256(b"".join(fs.iter_content(e))).hexdigest()
                got[e.path] = ("file", stat.S_IMODE(e.mode), e.size, None, digest)
    want = {p: v for p, v in tree[1].items() if v[0] == "file" and p != "text_5m"}
    assert got == want


def test_corrupted_lcluster_index(images: dict[str, Path], tmp_path: Path) -> None:
    bad = _copy(images["lz4hc"], tmp_path)
    with ErofsFileSystem(Window(bad)) as fs:
        nid = next(e.inode for e in fs.walk() if e.path == "text_5m")
        index = ((fs._inode(nid).data_start + 7) & ~7) + 8  # after the 8-byte map header
    # Every lcluster becomes a HEAD2 at offset 4095: the file does not start at byte 0.
    _patch(bad, index, b"\xff" * 64)
    with ErofsFileSystem(Window(bad)) as fs:
        entry = next(e for e in fs.walk() if e.path == "text_5m")
        with pytest.raises(UnpackError, match="text_5m: "):
            list(fs.iter_content(entry))


def test_damaged_directory_is_skipped(images: dict[str, Path], tmp_path: Path) -> None:
    bad = _copy(images["plain"], tmp_path)
    with ErofsFileSystem(Window(bad)) as fs:
        many = next(e for e in fs.walk() if e.path == "many")
        start = next(iter(fs._extents(fs._inode(many.inode))))[3]
    _patch(bad, start + 8, (0xFFF0).to_bytes(2, "little"))  # first name offset
    with ErofsFileSystem(Window(bad)) as fs:
        paths = [e.path for e in fs.walk()]
        assert "many" in paths
        assert not any(p.startswith("many/") for p in paths)
        assert "d1/d2/d3/deep_file" in paths
        assert len(fs.errors) == 1
        assert str(fs.errors[0]).startswith("many: bad first name offset")


def test_directory_cycle_and_type_mismatch(images: dict[str, Path], tmp_path: Path) -> None:
    bad = _copy(images["plain"], tmp_path)
    d1_nid, _ = _nid_of(bad, "d1")
    with ErofsFileSystem(Window(bad)) as fs:
        d3 = next(e for e in fs.walk() if e.path == "d1/d2/d3")
        pa = next(iter(fs._extents(fs._inode(d3.inode))))[3]
    # d3 holds ".", "..", "deep_file": point deep_file (the third record) at d1.
    _patch(bad, pa + 24, d1_nid.to_bytes(8, "little"))
    with ErofsFileSystem(Window(bad)) as fs:
        entries = {e.path: e for e in fs.walk()}
        assert entries["d1/d2/d3/deep_file"].type is EntryType.DIR
        messages = [str(e) for e in fs.errors]
    assert any("d1/d2/d3/deep_file: directory entry type 1 disagrees" in m for m in messages)
    assert any("d1/d2/d3/deep_file: directory cycle" in m for m in messages)


def test_limits(images: dict[str, Path]) -> None:
    image = images["lz4hc"]
    with ErofsFileSystem(Window(image), Limits(max_depth=3)) as fs:
        paths = [e.path for e in fs.walk()]
        assert "d1/d2/d3" in paths
        assert "d1/d2/d3/deep_file" not in paths
        assert [str(e) for e in fs.errors] == ["d1/d2/d3: nesting deeper than 3 directories"]
        assert isinstance(fs.errors[0], LimitError)
    with ErofsFileSystem(Window(image), Limits(max_dir_entries=100)) as fs:
        paths = [e.path for e in fs.walk()]
        assert "many" in paths and "many/entry_00000" not in paths
        assert "many: more than 100 directory entries" in str(fs.errors[0])
    with ErofsFileSystem(Window(image), Limits(max_file_size=1 << 20)) as fs:
        entry = next(e for e in fs.walk() if e.path == "text_5m")
        with pytest.raises(LimitError, match="text_5m: file size"):
            list(fs.iter_content(entry))

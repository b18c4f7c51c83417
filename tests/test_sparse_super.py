"""Android sparse images and super images (LP metadata): real-tool bytes, the corpus, hostile
input. No mocks: sparse images come from ``img2simg`` and are checked against ``simg2img``."""

from __future__ import annotations

import hashlib
import os
import random
import re
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import need_tool

from fwscan.errors import IntegrityError, LimitError, UnpackError
from fwscan.limits import Limits
from fwscan.synth.ext4img import make_ext4
from fwscan.synth.sparseimg import write_sparse
from fwscan.synth.superimg import write_super
from fwscan.unpack.base import UnpackContext, Window
from fwscan.unpack.sparse import (
    CHUNK_CRC32,
    CHUNK_DONT_CARE,
    CHUNK_FILL,
    CHUNK_RAW,
    MAGIC,
    SparseContainer,
    expand_sparse,
    read_header,
)
from fwscan.unpack.sparse import probe as sparse_probe
from fwscan.unpack.superimg import (
    LAYOUT_IMAGE_FILE,
    LAYOUT_SUPER,
    SuperContainer,
    read_super,
)

MIB = 1 << 20
SPARSE_DIR = Path("firmware/sparse")
SUPER_DIR = Path("firmware/super")

# --- helpers ----------------------------------------------------------------------------------


def _tree(root: Path, seed: int) -> Path:
    """A small tree with random data, text, zeros and a repeated pattern (FILL chunks)."""
    rng = random.Random(seed)
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "bin" / "blob.so").write_bytes(rng.randbytes(700_000))
    (root / "bin" / "zeros.dat").write_bytes(bytes(300_000))
    (root / "bin" / "pattern.dat").write_bytes(b"\xde\xad\xbe\xef" * 50_000)
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n" * 500)
    return root


@pytest.fixture(scope="module")
def ext4_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two ext4 images (12 MiB and 8 MiB, so every tested sparse block size divides them)."""
    need_tool("mke2fs")
    need_tool("debugfs")
    tmp = tmp_path_factory.mktemp("ext4")
    first, second = tmp / "system.img", tmp / "vendor.img"
    make_ext4(_tree(tmp / "t1", 1), first, size=12 * MIB, label="system")
    make_ext4(_tree(tmp / "t2", 2), second, size=8 * MIB, label="vendor")
    return first, second


def _ctx(tmp_path: Path, limits: Limits | None = None) -> UnpackContext:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return UnpackContext(work) if limits is None else UnpackContext(work, limits)


def _simg2img(sparse: Path, out: Path) -> Path:
    subprocess.run([need_tool("simg2img"), str(sparse), str(out)], check=True)
    return out


def _data_ranges(path: Path) -> list[tuple[int, int]]:
    """The ranges of a file that are not holes (``SEEK_DATA``/``SEEK_HOLE``)."""
    ranges = []
    size = path.stat().st_size
    with open(path, "rb") as f:
        fd, pos = f.fileno(), 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                break
            pos = os.lseek(fd, start, os.SEEK_HOLE)
            ranges.append((start, pos))
    return ranges


def _same_content(a: Path, b: Path) -> bool:
    """Byte-for-byte equality of two large, mostly-hole files, streamed in 16 MiB reads:
    regions that are holes in both files are zeros in both and are not read."""
    if a.stat().st_size != b.stat().st_size:
        return False
    merged: list[list[int]] = []
    for start, end in sorted(_data_ranges(a) + _data_ranges(b)):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
        for start, end in merged:
            pos = start
            while pos < end:
                n = min(16 * MIB, end - pos)
                if os.pread(fa.fileno(), n, pos) != os.pread(fb.fileno(), n, pos):
                    return False
                pos += n
    return True


def _sparse(blk_sz: int, total_blks: int, chunks: list[tuple[int, int, bytes]]) -> bytes:
    """A sparse image by hand (sparse_format.h): ``chunks`` are (type, blocks, data)."""
    out = struct.pack("<IHHHHIIII", MAGIC, 1, 0, 28, 12, blk_sz, total_blks, len(chunks), 0)
    for ctype, blocks, data in chunks:
        out += struct.pack("<HHII", ctype, 0, blocks, 12 + len(data)) + data
    return out


# --- sparse: real tool bytes ------------------------------------------------------------------


@pytest.mark.parametrize("block_size", [None, 1024, 65536])
def test_sparse_ext4_round_trip(
    ext4_images: tuple[Path, Path], tmp_path: Path, block_size: int | None
) -> None:
    need_tool("img2simg")
    raw = ext4_images[0]
    sparse = tmp_path / "system.simg"
    write_sparse(raw, sparse, block_size=block_size)
    assert sparse_probe(sparse.read_bytes()[:4096])
    header = read_header(Window(sparse))
    assert header.blk_sz == (block_size or 4096)
    assert header.output_size == raw.stat().st_size
    assert sparse.stat().st_size < raw.stat().st_size  # free space became FILL chunks
    ours = tmp_path / "ours.img"
    expand_sparse(Window(sparse), ours)
    assert ours.read_bytes() == raw.read_bytes()
    assert ours.read_bytes() == _simg2img(sparse, tmp_path / "tool.img").read_bytes()


def test_sparse_container_yields_the_raw_image(
    ext4_images: tuple[Path, Path], tmp_path: Path
) -> None:
    raw = ext4_images[1]
    sparse = tmp_path / "vendor.simg"
    write_sparse(raw, sparse)
    ctx = _ctx(tmp_path)
    container = SparseContainer()
    assert container.probe(Window(sparse), sparse.read_bytes()[:4096])
    seen = []
    for child in container.expand(Window(sparse), ctx):
        assert child.window is not None and child.error is None
        assert (child.name, child.partition) == ("raw", None)
        assert child.window.path.parent == ctx.workdir
        seen.append(child.window.path.read_bytes())
    assert seen == [raw.read_bytes()]
    assert ctx.extracted_bytes == raw.stat().st_size
    assert list(ctx.workdir.iterdir()) == []  # removed once read


def test_write_sparse_refuses_bad_block_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        write_sparse(tmp_path / "x", tmp_path / "y", block_size=6)


# --- sparse: corpus ---------------------------------------------------------------------------


@pytest.mark.parametrize("sample", ["akebi96/cache.img", "samsung-j7elte/cache.img"])
def test_sparse_corpus_matches_simg2img(corpus: Path, tmp_path: Path, sample: str) -> None:
    sparse = corpus / SPARSE_DIR / sample
    ours = tmp_path / "ours.img"
    expand_sparse(Window(sparse), ours)
    assert _same_content(ours, _simg2img(sparse, tmp_path / "tool.img"))


def test_sparse_corpus_fill_chunks(corpus: Path) -> None:
    raw = (corpus / SPARSE_DIR / "samsung-j7elte/cache.img").read_bytes()
    header = read_header(Window(corpus / SPARSE_DIR / "samsung-j7elte/cache.img"))
    pos, types = header.file_hdr_sz, set()
    for _ in range(header.total_chunks):
        ctype, _r, _blocks, total = struct.unpack_from("<HHII", raw, pos)
        types.add(ctype)
        pos += total
    assert CHUNK_FILL in types


def test_sparse_corpus_large_userdata_matches_simg2img(corpus: Path, tmp_path: Path) -> None:
    """4.1 GiB expanded, mostly holes: compared streamed, skipping the holes of both files."""
    sparse = corpus / SPARSE_DIR / "akebi96/userdata.img"
    ours = tmp_path / "ours.img"
    expand_sparse(Window(sparse), ours)
    assert ours.stat().st_size == read_header(Window(sparse)).output_size > 4 << 30
    assert ours.stat().st_blocks * 512 < 64 * MIB  # don't-care and zero fill stay holes
    assert _same_content(ours, _simg2img(sparse, tmp_path / "tool.img"))


# --- sparse: hand-made chunks (CRC32, DONT_CARE) and hostile input ----------------------------


def _crc_image(tmp_path: Path, *, corrupt: bool) -> tuple[Path, bytes]:
    blk = 1024
    rng = random.Random(5)
    raw1, raw2 = rng.randbytes(2 * blk), rng.randbytes(blk)
    expected = raw1 + bytes(3 * blk) + b"\x01\x02\x03\x04" * (2 * blk // 4) + bytes(blk)
    crc = zlib.crc32(expected)
    expected_all = expected + raw2
    final = zlib.crc32(expected_all) ^ (1 if corrupt else 0)
    image = _sparse(
        blk,
        9,
        [
            (CHUNK_RAW, 2, raw1),
            (CHUNK_DONT_CARE, 3, b""),
            (CHUNK_FILL, 2, b"\x01\x02\x03\x04"),
            (CHUNK_FILL, 1, bytes(4)),
            (CHUNK_CRC32, 0, struct.pack("<I", crc)),
            (CHUNK_RAW, 1, raw2),
            (CHUNK_CRC32, 0, struct.pack("<I", final)),
        ],
    )
    path = tmp_path / "crc.simg"
    path.write_bytes(image)
    return path, expected_all


def test_sparse_crc32_chunks_verified(tmp_path: Path) -> None:
    path, expected = _crc_image(tmp_path, corrupt=False)
    out = tmp_path / "out.img"
    expand_sparse(Window(path), out)
    assert out.read_bytes() == expected
    assert out.read_bytes() == _simg2img(path, tmp_path / "tool.img").read_bytes()


def test_sparse_bad_crc32_refused(tmp_path: Path) -> None:
    path, _ = _crc_image(tmp_path, corrupt=True)
    out = tmp_path / "out.img"
    with pytest.raises(IntegrityError, match="CRC32"):
        expand_sparse(Window(path), out)
    assert not out.exists()


def test_sparse_large_crc_over_holes(tmp_path: Path) -> None:
    """The CRC of 256 MiB of don't-care blocks is computed without writing zeros."""
    blk, blocks = 4096, (256 * MIB) // 4096
    crc = zlib.crc32(b"x" * blk)
    zeros = bytes(1 << 20)
    for _ in range(256):
        crc = zlib.crc32(zeros, crc)
    path = tmp_path / "holes.simg"
    path.write_bytes(
        _sparse(
            blk,
            blocks + 1,
            [
                (CHUNK_RAW, 1, b"x" * blk),
                (CHUNK_DONT_CARE, blocks, b""),
                (CHUNK_CRC32, 0, struct.pack("<I", crc)),
            ],
        )
    )
    out = tmp_path / "out.img"
    expand_sparse(Window(path), out)
    assert out.stat().st_size == (blocks + 1) * blk
    assert out.stat().st_blocks * 512 < MIB


@pytest.mark.parametrize(
    ("blk_sz", "total_blks"), [(4096, 1 << 28), (1 << 20, 0xFFFFFFFF), (1 << 31, 1 << 20)]
)
def test_sparse_huge_claim_refused_before_writing(
    tmp_path: Path, blk_sz: int, total_blks: int
) -> None:
    path = tmp_path / "huge.simg"
    path.write_bytes(_sparse(blk_sz, total_blks, [(CHUNK_DONT_CARE, total_blks, b"")]))
    out = tmp_path / "out.img"
    with pytest.raises(LimitError, match="partition size limit"):
        expand_sparse(Window(path), out)
    assert not out.exists()
    ctx = _ctx(tmp_path)
    (child,) = SparseContainer().expand(Window(path), ctx)
    assert child.window is None and isinstance(child.error, LimitError)
    assert list(ctx.workdir.iterdir()) == [] and ctx.extracted_bytes == 0


def test_sparse_truncated_chunk(ext4_images: tuple[Path, Path], tmp_path: Path) -> None:
    sparse = tmp_path / "s.simg"
    write_sparse(ext4_images[1], sparse)
    data = sparse.read_bytes()
    cut = tmp_path / "cut.simg"
    cut.write_bytes(data[: len(data) - 3000])
    out = tmp_path / "out.img"
    with pytest.raises(UnpackError, match=r"sparse chunk \d+ at offset \d+: truncated"):
        expand_sparse(Window(cut), out)
    assert not out.exists()
    ctx = _ctx(tmp_path)
    (child,) = SparseContainer().expand(Window(cut), ctx)
    assert child.window is None and "truncated" in str(child.error)
    assert list(ctx.workdir.iterdir()) == []


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (_sparse(4096, 2, [(0xCAFE, 2, b"")]), "unknown chunk type 0xcafe"),
        (_sparse(4096, 2, [(CHUNK_DONT_CARE, 3, b"")]), "pass the image's 2 blocks"),
        (_sparse(4096, 4, [(CHUNK_DONT_CARE, 3, b"")]), "cover 3 blocks"),
        (_sparse(4096, 1, [(CHUNK_RAW, 1, b"x" * 100)]), "holds 100 bytes"),
        (_sparse(4096, 1, [(CHUNK_FILL, 1, b"xx")]), "fill chunk holds 2 bytes"),
        (_sparse(4096, 1, [(CHUNK_DONT_CARE, 1, b"")] * 9)[:60], "9 chunks announced"),
        (_sparse(4098, 1, []), "multiple of 4"),
        (b"\x3a\xff\x26\xed\x02\x00" + bytes(22), "version 2.x"),
        (b"\x3a\xff\x26\xed\x01\x00", "truncated"),
    ],
)
def test_sparse_malformed(tmp_path: Path, image: bytes, message: str) -> None:
    path = tmp_path / "bad.simg"
    path.write_bytes(image)
    with pytest.raises(UnpackError, match=message):
        expand_sparse(Window(path), tmp_path / "out.img")
    assert not (tmp_path / "out.img").exists()


def test_sparse_in_a_window(tmp_path: Path) -> None:
    """A sparse image stored inside another file (a zip member read in place)."""
    path, expected = _crc_image(tmp_path, corrupt=False)
    data = path.read_bytes()
    outer = tmp_path / "outer.bin"
    outer.write_bytes(b"J" * 777 + data + b"trailing")
    out = tmp_path / "out.img"
    expand_sparse(Window(outer, 777, len(data)), out)
    assert out.read_bytes() == expected


# --- super: corpus ----------------------------------------------------------------------------


def test_super_corpus_xigua(corpus: Path, tmp_path: Path) -> None:
    path = corpus / SUPER_DIR / "oneplus-xigua/super_empty.img"
    image = read_super(Window(path))
    assert image.layout == LAYOUT_IMAGE_FILE
    assert image.geometry.metadata_slot_count == 3
    assert image.geometry.logical_block_size == 4096
    meta = image.slots[0]
    assert (meta.major_version, meta.minor_version, meta.flags) == (10, 2, 1)  # Virtual A/B
    assert [g.name for g in meta.groups] == [
        "default",
        "qti_dynamic_partitions_a",
        "qti_dynamic_partitions_b",
    ]
    assert [(d.name, d.size, d.first_logical_sector) for d in meta.block_devices] == [
        ("super", 15 << 30, 2048)
    ]
    names = [p.name for p in image.partitions()]
    bases = ["odm", "product", "system", "system_dlkm", "system_ext", "vendor", "vendor_dlkm"]
    assert names == [f"{b}_{s}" for b in bases for s in "ab"]
    assert all(p.group == f"qti_dynamic_partitions_{p.name[-1]}" for p in image.partitions())
    children = list(SuperContainer().expand(Window(path), _ctx(tmp_path)))
    assert [(c.name, c.partition, c.skipped) for c in children] == [
        (f"{b}_{s}", b, "empty partition") for b in bases for s in "ab"
    ]


def test_super_corpus_retrofit(corpus: Path, tmp_path: Path) -> None:
    path = corpus / SUPER_DIR / "oneplus6t-fajita-retrofit/super_empty.img"
    assert SuperContainer().probe(Window(path), path.read_bytes()[:4096])
    image = read_super(Window(path))
    meta = image.slots[0]
    assert (meta.major_version, meta.minor_version, meta.flags) == (10, 0, 0)
    assert [(d.name, d.flags) for d in meta.block_devices] == [
        ("system", 1),
        ("odm", 1),
        ("vendor", 1),
    ]
    assert [(g.name, g.flags) for g in meta.groups] == [
        ("default", 0),
        ("oneplus_dynamic_partitions", 1),
    ]
    parts = image.partitions()
    assert [p.name for p in parts] == ["odm", "product", "system", "system_ext", "vendor"]
    assert all(p.attributes == 3 and not p.extents for p in parts)  # READONLY | SLOT_SUFFIXED
    children = list(SuperContainer().expand(Window(path), _ctx(tmp_path)))
    assert all(c.skipped == "empty partition" and c.window is None for c in children)
    assert len(children) == 5


# --- super: our writer through the container --------------------------------------------------


@pytest.fixture(scope="module")
def super_img(ext4_images: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("super") / "super.img"
    write_super(out, [("system", ext4_images[0]), ("vendor", ext4_images[1])])
    return out


def test_super_round_trip(super_img: Path, ext4_images: tuple[Path, Path], tmp_path: Path) -> None:
    head = super_img.read_bytes()[:4096]
    container = SuperContainer()
    assert not any(head) and container.probe(Window(super_img), head)
    image = read_super(Window(super_img))
    assert image.layout == LAYOUT_SUPER and len(image.slots) == 2
    assert (image.slots[0].major_version, image.slots[0].minor_version) == (10, 2)
    assert [g.name for g in image.slots[0].groups] == ["default", "main_a", "main_b"]
    assert [p.name for p in image.partitions()] == ["system_a", "system_b", "vendor_a", "vendor_b"]
    for part in image.partitions():
        for ext in part.extents:
            assert ext.target_data * 512 % MIB == 0
    ctx = _ctx(tmp_path)
    got = {}
    for child in container.expand(Window(super_img), ctx):
        if child.window is None:
            assert child.skipped == "empty partition" and child.name.endswith("_b")
            continue
        got[child.name] = (child.partition, child.window.path.read_bytes())
    assert got == {
        "system_a": ("system", ext4_images[0].read_bytes()),
        "vendor_a": ("vendor", ext4_images[1].read_bytes()),
    }
    assert list(ctx.workdir.iterdir()) == []


def test_write_super_is_deterministic(
    super_img: Path, ext4_images: tuple[Path, Path], tmp_path: Path
) -> None:
    again = tmp_path / "again.img"
    write_super(again, [("system", ext4_images[0]), ("vendor", ext4_images[1])])
    assert again.read_bytes() == super_img.read_bytes()


def test_write_super_without_ab(ext4_images: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "super.img"
    write_super(out, [("product", ext4_images[1])], ab=False, metadata_slots=1, group="grp")
    image = read_super(Window(out))
    assert [(p.name, p.group) for p in image.partitions()] == [("product", "grp")]
    (child,) = SuperContainer().expand(Window(out), _ctx(tmp_path))
    assert child.partition == "product" and child.window is not None


def test_write_super_refuses_bad_input(ext4_images: tuple[Path, Path], tmp_path: Path) -> None:
    odd = tmp_path / "odd.img"
    odd.write_bytes(b"x" * 1000)
    with pytest.raises(ValueError, match="not a multiple"):
        write_super(tmp_path / "s.img", [("odd", odd)])
    with pytest.raises(ValueError, match="bad name"):
        write_super(tmp_path / "s.img", [("sys/tem", ext4_images[1])])
    with pytest.raises(ValueError, match="duplicate"):
        write_super(tmp_path / "s.img", [("a", ext4_images[1]), ("a", ext4_images[1])])


def test_super_extent_past_end_fails_that_partition_only(
    super_img: Path, ext4_images: tuple[Path, Path], tmp_path: Path
) -> None:
    vendor = next(p for p in read_super(Window(super_img)).partitions() if p.name == "vendor_a")
    cut = tmp_path / "cut.img"
    cut.write_bytes(super_img.read_bytes()[: vendor.extents[0].target_data * 512 + MIB])
    ctx = _ctx(tmp_path)
    results = {}
    for child in SuperContainer().expand(Window(cut), ctx):
        results[child.name] = (
            child.window.path.read_bytes() if child.window else None,
            str(child.error) if child.error else child.skipped,
        )
    assert results["system_a"] == (ext4_images[0].read_bytes(), None)
    data, error = results["vendor_a"]
    assert data is None and error is not None
    assert "vendor_a" in error and "past the end of the super image" in error
    assert results["vendor_b"] == (None, "empty partition")
    assert ctx.extracted_bytes == ext4_images[0].stat().st_size
    assert list(ctx.workdir.iterdir()) == []


def test_super_partition_size_limit(super_img: Path, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, Limits(max_partition_size=10 * MIB))
    errors = {c.name: c.error for c in SuperContainer().expand(Window(super_img), ctx)}
    assert isinstance(errors["system_a"], LimitError)  # 12 MiB
    assert errors["vendor_a"] is None  # 8 MiB


def _corrupt(src: Path, dst: Path, *offsets: int) -> Path:
    data = bytearray(src.read_bytes())
    for off in offsets:
        data[off] ^= 0xFF
    dst.write_bytes(data)
    return dst


def test_super_backup_geometry_and_metadata(super_img: Path, tmp_path: Path) -> None:
    slot0, slot1 = 12288, 12288 + 65536
    backup0 = 12288 + 2 * 65536
    bad_geo = _corrupt(super_img, tmp_path / "g.img", 4096 + 44)  # slot count, under checksum
    assert read_super(Window(bad_geo)).geometry.copy == "backup"
    bad_meta = _corrupt(super_img, tmp_path / "m.img", slot0 + 300)  # a table byte
    image = read_super(Window(bad_meta))
    assert [m.copy for m in image.slots] == ["backup", "primary"]
    assert image.partitions()[0].name == "system_a"
    both = _corrupt(super_img, tmp_path / "b.img", slot0 + 300, backup0 + 20)
    with pytest.raises(IntegrityError, match="slot 0 primary metadata: tables checksum"):
        read_super(Window(both))
    no_geo = _corrupt(super_img, tmp_path / "n.img", 4096, 8192)
    assert not SuperContainer().probe(Window(no_geo), no_geo.read_bytes()[:4096])
    # slot 1 unreadable: reported, and the partitions of slot 0 still come out
    bad_slot1 = _corrupt(super_img, tmp_path / "s1.img", slot1 + 13, slot1 + 2 * 65536 + 13)
    children = list(SuperContainer().expand(Window(bad_slot1), _ctx(tmp_path)))
    assert children[0].name == "metadata slot 1" and isinstance(children[0].error, IntegrityError)
    assert sum(c.error is None and c.skipped is None for c in children[1:]) == 2


def test_super_hostile_header_fields(super_img: Path, tmp_path: Path) -> None:
    """Counts and sizes past the metadata are refused (checked before the checksums matter)."""
    data = bytearray(super_img.read_bytes())
    geometry_max = struct.unpack_from("<I", data, 4096 + 40)[0]
    # a tables size past metadata_max_size, in both copies of slot 0
    for base in (12288, 12288 + 2 * 65536):
        struct.pack_into("<I", data, base + 44, geometry_max)
    path = tmp_path / "hostile.img"
    path.write_bytes(data)
    with pytest.raises(UnpackError, match="exceed the metadata size"):
        read_super(Window(path))
    # a huge metadata size in the geometry, with a valid checksum
    data = bytearray(super_img.read_bytes())
    for base in (4096, 8192):
        struct.pack_into("<I", data, base + 40, 1 << 30)
        data[base + 8 : base + 40] = bytes(32)
        data[base + 8 : base + 40] = hashlib.sha256(bytes(data[base : base + 52])).digest()
    path.write_bytes(data)
    with pytest.raises(LimitError, match="metadata size"):
        read_super(Window(path))


def test_sparse_super_through_both_containers(
    super_img: Path, ext4_images: tuple[Path, Path], tmp_path: Path
) -> None:
    sparse = tmp_path / "super.simg"
    write_sparse(super_img, sparse)
    assert sparse.stat().st_size < super_img.stat().st_size
    ctx = _ctx(tmp_path)
    sparse_container, super_container = SparseContainer(), SuperContainer()
    head = sparse.read_bytes()[:4096]
    assert sparse_container.probe(Window(sparse), head)
    assert not super_container.probe(Window(sparse), head)
    got = {}
    for raw in sparse_container.expand(Window(sparse), ctx):
        assert raw.window is not None
        assert super_container.probe(raw.window, raw.window.read_head(4096))
        for child in super_container.expand(raw.window, ctx):
            if child.window is not None:
                got[child.name] = child.window.path.read_bytes()
    assert got == {"system_a": ext4_images[0].read_bytes(), "vendor_a": ext4_images[1].read_bytes()}
    assert list(ctx.workdir.iterdir()) == []


def test_super_in_a_window(super_img: Path, ext4_images: tuple[Path, Path], tmp_path: Path) -> None:
    data = super_img.read_bytes()
    outer = tmp_path / "outer.bin"
    with open(outer, "wb") as f:
        f.write(b"Z" * 4096)
        f.write(data)
        f.write(os.urandom(100))
    window = Window(outer, 4096, len(data))
    got = {
        c.name: c.window.path.read_bytes() if c.window else c.skipped
        for c in SuperContainer().expand(window, _ctx(tmp_path))
    }
    assert got == {
        "system_a": ext4_images[0].read_bytes(),
        "system_b": "empty partition",
        "vendor_a": ext4_images[1].read_bytes(),
        "vendor_b": "empty partition",
    }


def _patch_slot(image: Path, out: Path, slot: int, patch: Callable[[bytearray], None]) -> Path:
    """Rewrite the tables of one metadata slot (both copies), checksums recomputed."""
    data = bytearray(image.read_bytes())
    for copy in (slot, 2 + slot):  # two slots of 64 KiB, primaries then backups
        base = 12288 + copy * 65536
        header_size, tables_size = (
            struct.unpack_from("<I", data, base + 8)[0],
            struct.unpack_from("<I", data, base + 44)[0],
        )
        start = base + header_size
        tables = bytearray(data[start : start + tables_size])
        patch(tables)
        data[start : start + tables_size] = tables
        data[base + 48 : base + 80] = hashlib.sha256(tables).digest()
        data[base + 12 : base + 44] = bytes(32)
        data[base + 12 : base + 44] = hashlib.sha256(data[base : base + header_size]).digest()
    out.write_bytes(data)
    return out


# The tables our writer makes: partitions system_a, system_b, vendor_a, vendor_b (52 bytes
# each: name, attributes, first extent, extent count, group), then the extents of system_a and
# vendor_a (24 bytes each: sectors, type, first sector, block device).
_PART, _EXT = 52, 4 * 52


def _outcomes(path: Path, tmp_path: Path) -> list[tuple[str, bytes | None, str | None]]:
    found = []
    for child in SuperContainer().expand(Window(path), _ctx(tmp_path)):
        data = child.window.path.read_bytes() if child.window else None
        found.append((child.name, data, str(child.error) if child.error else child.skipped))
    return found


def test_super_slot_1_is_authoritative_for_b(
    super_img: Path, ext4_images: tuple[Path, Path], tmp_path: Path
) -> None:
    """Slot 1 metadata that maps system_b (as after an update to slot b) adds its data."""

    def map_system_b(tables: bytearray) -> None:
        struct.pack_into("<II", tables, 1 * _PART + 40, 0, 1)  # system_b: extent 0, one extent

    path = _patch_slot(super_img, tmp_path / "s.img", 1, map_system_b)
    system, vendor = ext4_images[0].read_bytes(), ext4_images[1].read_bytes()
    assert _outcomes(path, tmp_path) == [
        ("system_a", system, None),
        ("system_b", system, None),
        ("vendor_a", vendor, None),
        ("vendor_b", None, "empty partition"),
    ]
    image = read_super(Window(path))
    assert [p.slot for p in image.partitions()] == [0, 1, 0, 1]  # _b entries: slot 1


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "message"),
    [
        (2 * _PART, "36s", b"system_a", "duplicate partition name"),
        (2 * _PART + 40, "I", 7, r"extents 7\.\.8 pass the extent table \(2 entries\)"),
        (_EXT + 24 + 8, "I", 9, "unknown target type 9"),
        (_EXT + 24 + 20, "I", 1, "block device 1, a separate partition"),
        (_EXT + 24, "Q", 1 << 40, "exceeds the partition size limit"),
    ],
)
def test_super_bad_entries_fail_that_partition_only(
    super_img: Path,
    ext4_images: tuple[Path, Path],
    tmp_path: Path,
    offset: int,
    fmt: str,
    value: object,
    message: str,
) -> None:
    def patch(tables: bytearray) -> None:
        struct.pack_into("<" + fmt, tables, offset, value)

    path = _patch_slot(super_img, tmp_path / "p.img", 0, patch)
    path = _patch_slot(path, path, 1, patch)
    outcomes = _outcomes(path, tmp_path)
    assert outcomes[0] == ("system_a", ext4_images[0].read_bytes(), None)
    name, data, error = outcomes[2]
    assert data is None and error is not None and re.search(message, error), error
    assert name in error

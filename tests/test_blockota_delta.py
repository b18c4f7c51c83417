"""Block-based OTA zips (full and incremental) and incremental A/B payloads.

No mocks: block OTAs written by :mod:`fwscan.synth.blockota` from real ext4 images, transfer
lists of versions 1, 2 and 4 written by hand (with real bsdiff patches from ``bsdiff4``), and
the AOSP update_engine sample delta payload applied to its source images from the AOSP sample
image tarball.
"""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import io
import subprocess
import tarfile
import zipfile
from pathlib import Path

import brotli
import bsdiff4
import bsdiff4.core
import pytest
from conftest import need_tool

from fwscan.errors import FwscanError, IntegrityError, LimitError, NeedsSourceError, UnpackError
from fwscan.limits import Limits
from fwscan.synth.blockota import write_block_ota
from fwscan.synth.ext4img import make_ext4
from fwscan.synth.imgdiff import make_imgdiff
from fwscan.unpack.base import Child, UnpackContext, Window
from fwscan.unpack.blockota import BlockOtaContainer, parse_transfer_list
from fwscan.unpack.delta import DeltaPayloadContainer, apply_incremental, bspatch
from fwscan.unpack.imgdiff import CHUNK_DEFLATE, parse_imgdiff
from fwscan.unpack.payload import OpType, Payload

BS = 4096


# --- helpers ----------------------------------------------------------------------------------


def block(seed: str) -> bytes:
    """A deterministic 4096-byte block of pseudo-random bytes."""
    out = bytearray()
    digest = hashlib.sha256(seed.encode()).digest()
    while len(out) < BS:
        digest = hashlib.sha256(digest).digest()
        out += digest
    return bytes(out[:BS])


def rs(*pairs: tuple[int, int]) -> str:
    """A transfer list range set."""
    values = [v for pair in pairs for v in pair]
    return ",".join(str(v) for v in [len(values), *values])


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            compress = zipfile.ZIP_STORED if name.endswith(".patch.dat") else zipfile.ZIP_DEFLATED
            zf.writestr(zipfile.ZipInfo(name, (2009, 1, 1, 0, 0, 0)), data, compress)
    return path


def expand(
    zip_path: Path,
    workdir: Path,
    source: dict[str, Path] | None = None,
    limits: Limits | None = None,
) -> dict[str, bytes | FwscanError]:
    """Each child's image bytes (read while the image exists) or its error."""
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = UnpackContext(workdir=workdir) if limits is None else UnpackContext(workdir, limits)
    window = Window(zip_path)
    container = BlockOtaContainer(source=source)
    assert container.probe(window, window.read_head(4096))
    out: dict[str, bytes | FwscanError] = {}
    for child in container.expand(window, ctx):
        out[child.name] = _content(child)
    assert list(workdir.glob("*.img")) == []  # every image is deleted once read
    return out


def _content(child: Child) -> bytes | FwscanError:
    if child.window is None:
        assert child.error is not None
        return child.error
    return child.window.path.read_bytes()


# --- full block OTAs from ext4 images ---------------------------------------------------------


@pytest.fixture(scope="module")
def ext4_images(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path]]:
    need_tool("mke2fs")
    need_tool("debugfs")
    base = tmp_path_factory.mktemp("ext4")
    images = []
    for name, files in (
        ("system", {"app/Hello.apk": b"PK\x03\x04hello" * 3000, "build.prop": b"ro.x=1\n"}),
        ("vendor", {"lib/libfoo.so": b"\x7fELF" + bytes(range(256)) * 700, "etc/a.rc": b"on"}),
    ):
        root = base / f"{name}-tree"
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        image = base / f"{name}.img"
        make_ext4(root, image, label=name)
        images.append((name, image))
    return images


@pytest.mark.parametrize("compression", ["br", "lz4", "none"])
def test_full_block_ota_round_trip(
    ext4_images: list[tuple[str, Path]], tmp_path: Path, compression: str
) -> None:
    ota = tmp_path / "ota.zip"
    write_block_ota(ota, ext4_images, compression=compression)
    again = tmp_path / "again.zip"
    write_block_ota(again, ext4_images, compression=compression)
    assert ota.read_bytes() == again.read_bytes()  # deterministic

    with zipfile.ZipFile(ota) as zf:
        names = set(zf.namelist())
        suffix = {"br": ".new.dat.br", "lz4": ".new.dat.lz4", "none": ".new.dat"}[compression]
        assert {"system.transfer.list", "system" + suffix, "system.patch.dat"} <= names
        assert zf.read("META-INF/com/android/metadata").decode().count("ota-type=BLOCK") == 1
        script = zf.read("META-INF/com/google/android/updater-script").decode()
        assert f'"system{suffix}"' in script
        tl = parse_transfer_list(zf.read("system.transfer.list").decode())
    assert tl.version == 4
    assert {c.kind for c in tl.commands()} == {"erase", "new", "zero"}

    images = expand(ota, tmp_path / "work")
    assert sorted(images) == ["system", "vendor"]
    for name, path in ext4_images:
        assert images[name] == path.read_bytes(), name


def _data_blocks(image: Path) -> bytes:
    data = image.read_bytes()
    return b"".join(
        data[i : i + BS] for i in range(0, len(data), BS) if data[i : i + BS] != bytes(BS)
    )


@pytest.mark.parametrize(("compression", "tool"), [("br", "brotli"), ("lz4", "lz4")])
def test_new_data_matches_reference_cli(
    ext4_images: list[tuple[str, Path]], tmp_path: Path, compression: str, tool: str
) -> None:
    exe = need_tool(tool)
    ota = tmp_path / "ota.zip"
    write_block_ota(ota, ext4_images[:1], compression=compression)
    packed = tmp_path / f"system.new.dat.{compression}"
    with zipfile.ZipFile(ota) as zf:
        packed.write_bytes(zf.read(packed.name))
    plain = tmp_path / "system.new.dat"
    if tool == "brotli":
        argv = [exe, "-d", "-f", "-o", str(plain), str(packed)]
    else:
        argv = [exe, "-d", "-f", str(packed), str(plain)]
    subprocess.run(argv, check=True, timeout=60, capture_output=True)
    assert plain.read_bytes() == _data_blocks(ext4_images[0][1])


def test_probe(ext4_images: list[tuple[str, Path]], tmp_path: Path) -> None:
    container = BlockOtaContainer()
    ota = tmp_path / "ota.zip"
    write_block_ota(ota, ext4_images[:1], compression="none")
    with_payload = tmp_path / "ab.zip"
    with zipfile.ZipFile(ota) as src, zipfile.ZipFile(with_payload, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr("payload.bin", b"CrAU")
    plain_zip = write_zip(tmp_path / "plain.zip", {"a/system.transfer.list": b"4\n0\n0\n0\n"})
    not_zip = tmp_path / "x.img"
    not_zip.write_bytes(b"PK\x03\x04 but not a zip" + bytes(100))
    for path, expected in (
        (ota, True),
        (with_payload, False),
        (plain_zip, False),
        (not_zip, False),
    ):
        window = Window(path)
        assert container.probe(window, window.read_head(4096)) is expected, path.name


# --- hand-written transfer lists --------------------------------------------------------------

# Source: 20 blocks. Target: 20 blocks, of which 18..20 are unchanged (never mentioned).
SRC = [block(f"src{i}") for i in range(20)]
PATCHED = bytearray(b"".join(SRC[8:12]))
PATCHED[100:120] = b"patched by bsdiff....."[:20]
PATCHED[9000:9004] = b"\0\1\2\3"
NEW = [block(f"new{i}") for i in range(4)]
TARGET = [
    *SRC[4:8],  # 0..4: move from 4..8
    *(bytes(PATCHED[i * BS : (i + 1) * BS]) for i in range(4)),  # 4..8: bsdiff of 8..12
    *SRC[12:14],  # 8..10: from stash 12..14
    SRC[15],  # 10: from the source
    SRC[14],  # 11: from stash 14..15
    *NEW[0:2],  # 12..14: new
    bytes(BS),
    bytes(BS),  # 14..16: zero
    *NEW[2:4],  # 16..18: new
    *SRC[18:20],  # 18..20: unchanged
]
PATCH = bsdiff4.diff(b"".join(SRC[8:12]), bytes(PATCHED))
PATCH_DAT = b"JUNK" + PATCH
ID1 = sha1(b"".join(SRC[12:14]))
ID2 = sha1(SRC[14])


def v4_list(src_hash: str = "", total: int = 18) -> str:
    move0 = sha1(b"".join(SRC[4:8]))
    src_hash = src_hash or sha1(b"".join(SRC[8:12]))
    lines = [
        "4",
        str(total),
        "0",
        "3",
        f"stash {ID1} {rs((12, 14))}",
        f"stash {ID2} {rs((14, 15))}",
        f"move {move0} {rs((0, 4))} 4 {rs((4, 8))}",
        f"bsdiff 4 {len(PATCH)} {src_hash} {sha1(bytes(PATCHED))} {rs((4, 8))} 4 {rs((8, 12))}",
        f"move {ID1} {rs((8, 10))} 2 - {ID1}:{rs((0, 2))}",
        f"free {ID1}",
        f"move {sha1(SRC[15] + SRC[14])} {rs((10, 12))} 2 {rs((15, 16))} {rs((0, 1))} "
        f"{ID2}:{rs((1, 2))}",
        f"free {ID2}",
        f"new {rs((12, 14))}",
        f"zero {rs((14, 16))}",
        f"new {rs((16, 18))}",
    ]
    return "\n".join(lines) + "\n"


def v2_list() -> str:
    lines = [
        "2",
        "18",
        "2",
        "3",
        f"stash 0 {rs((12, 14))}",
        f"stash 1 {rs((14, 15))}",
        f"move {rs((0, 4))} 4 {rs((4, 8))}",
        f"bsdiff 4 {len(PATCH)} {rs((4, 8))} 4 {rs((8, 12))}",
        f"move {rs((8, 10))} 2 - 0:{rs((0, 2))}",
        f"move {rs((10, 12))} 2 {rs((15, 16))} {rs((0, 1))} 1:{rs((1, 2))}",
        f"new {rs((12, 14))}",
        f"zero {rs((14, 16))}",
        f"new {rs((16, 18))}",
    ]
    return "\n".join(lines) + "\n"


def v1_list() -> str:
    lines = [
        "1",
        "18",
        f"move {rs((4, 8))} {rs((0, 4))}",
        f"bsdiff 4 {len(PATCH)} {rs((8, 12))} {rs((4, 8))}",
        f"move {rs((12, 14))} {rs((8, 10))}",
        f"move {rs((15, 16), (14, 15))} {rs((10, 12))}",  # two ranges, packed in this order
        f"new {rs((12, 14))}",
        f"zero {rs((14, 16))}",
        f"erase {rs((14, 16))}",
        f"new {rs((16, 18))}",
    ]
    return "\n".join(lines) + "\n"


def incremental_zip(tmp_path: Path, transfer_list: str, name: str = "ota.zip") -> Path:
    return write_zip(
        tmp_path / name,
        {
            "system.transfer.list": transfer_list.encode(),
            "system.new.dat.br": brotli.compress(b"".join(NEW)),
            "system.patch.dat": PATCH_DAT,
            "META-INF/com/android/metadata": b"ota-type=BLOCK\n",
        },
    )


@pytest.fixture
def source_image(tmp_path: Path) -> Path:
    path = tmp_path / "source-system.img"
    path.write_bytes(b"".join(SRC))
    return path


@pytest.mark.parametrize("make_list", [v1_list, v2_list, v4_list])
def test_incremental_transfer_lists(tmp_path: Path, source_image: Path, make_list: object) -> None:
    assert callable(make_list)
    ota = incremental_zip(tmp_path, make_list())
    images = expand(ota, tmp_path / "work", source={"system": source_image})
    assert images["system"] == b"".join(TARGET)
    assert source_image.read_bytes() == b"".join(SRC)  # the source is never written


def test_full_transfer_lists_v1_and_v2(tmp_path: Path) -> None:
    data = [block(f"full{i}") for i in range(5)]
    v1 = f"1\n7\nerase {rs((0, 8))}\nnew {rs((0, 3), (6, 8))}\nzero {rs((3, 5))}\n"
    v2 = f"2\n7\n0\n0\nnew {rs((0, 3))}\nzero {rs((3, 5))}\nnew {rs((6, 8))}\n"
    expected = b"".join([*data[:3], bytes(3 * BS), *data[3:5]])
    for version, text in (("v1", v1), ("v2", v2)):
        ota = write_zip(
            tmp_path / f"{version}.zip",
            {"system.transfer.list": text.encode(), "system.new.dat": b"".join(data)},
        )
        images = expand(ota, tmp_path / f"work-{version}")
        assert images["system"] == expected, version


def test_incremental_without_source_needs_it(tmp_path: Path) -> None:
    ota = incremental_zip(tmp_path, v4_list())
    error = expand(ota, tmp_path / "work")["system"]
    assert isinstance(error, NeedsSourceError)
    assert (
        str(error)
        == "system: incremental block OTA (move, bsdiff, stash): the source build is needed"
    )


def test_wrong_source_is_an_integrity_error(tmp_path: Path) -> None:
    for index, what in ((5, "move"), (12, "stash")):
        wrong = tmp_path / f"wrong-{index}.img"
        blocks = list(SRC)
        blocks[index] = block("something else")
        wrong.write_bytes(b"".join(blocks))
        ota = incremental_zip(tmp_path, v4_list())
        error = expand(ota, tmp_path / f"work-{index}", source={"system": wrong})["system"]
        assert isinstance(error, IntegrityError), what
        assert "different source build" in str(error)
    ota = incremental_zip(tmp_path, v4_list(src_hash="0" * 40), name="badhash.zip")
    src = tmp_path / "good.img"
    src.write_bytes(b"".join(SRC))
    error = expand(ota, tmp_path / "work-hash", source={"system": src})["system"]
    assert isinstance(error, IntegrityError)
    assert "line 8 (bsdiff)" in str(error)


def _apk(version: int) -> bytes:
    """An APK-like zip from ``zipfile``, padded with zeros to whole blocks as on a filesystem."""
    dex = b"dex\n035\0" + b"".join(
        b"Lcom/example/C%d;->method%d()V invoke-virtual {v0, v1} " % (i % 97, (i * 7) % 13)
        for i in range(3000)
    )
    if version:
        dex = dex.replace(b"method3()V", b"method3(I)V", 20) + b"added in version %d" % version
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, compress in (
            ("AndroidManifest.xml", b"<manifest android:versionCode='%d'/>" % version, 8),
            ("classes.dex", dex, 8),
            ("resources.arsc", block(f"arsc{version}")[:1000] + block("arsc")[:3000], 0),
            ("res/layout/main.xml", b"<LinearLayout/>" * (200 + version), 8),
        ):
            zf.writestr(zipfile.ZipInfo(name, (2009, 1, 1, 0, 0, 0)), data, compress)
    data = buf.getvalue()
    return data + bytes(-len(data) % BS)


@pytest.mark.parametrize("version", [1, 4])
def test_imgdiff_patches_an_apk(tmp_path: Path, version: int) -> None:
    """An incremental block OTA whose imgdiff command patches an APK inside the image."""
    old_apk, new_apk = _apk(0), _apk(1)
    n_old, n_new = len(old_apk) // BS, len(new_apk) // BS
    patch = make_imgdiff(old_apk, new_apk)
    kinds = {c.kind for c in parse_imgdiff(patch, len(old_apk))}
    assert CHUNK_DEFLATE in kinds  # classes.dex is patched inflated and deflated again
    # Source: block 0, the old APK at blocks 1.., then 3 more blocks; the APK is rewritten in
    # place (the new one may be a block longer), the rest of the image is unchanged.
    source_blocks = [block("head"), old_apk, *(block(f"tail{i}") for i in range(3))]
    source = tmp_path / "source-system.img"
    source.write_bytes(b"".join(source_blocks))
    expected = bytearray(source.read_bytes())
    expected[BS : BS + len(new_apk)] = new_apk
    tgt, src = rs((1, 1 + n_new)), rs((1, 1 + n_old))
    if version == 1:
        command = f"imgdiff 4 {len(patch)} {src} {tgt}"
        header = ["1", str(n_new)]
    else:
        command = f"imgdiff 4 {len(patch)} {sha1(old_apk)} {sha1(new_apk)} {tgt} {n_old} {src}"
        header = ["4", str(n_new), "0", "0"]
    ota = write_zip(
        tmp_path / "ota.zip",
        {
            "system.transfer.list": "\n".join([*header, command, ""]).encode(),
            "system.patch.dat": b"JUNK" + patch,
        },
    )
    images = expand(ota, tmp_path / "work", source={"system": source})
    assert images["system"] == bytes(expected)
    assert hashlib.sha256(images["system"]).digest() == hashlib.sha256(expected).digest()
    assert source.read_bytes() == b"".join(source_blocks)  # the source is never written

    # Without the source, the imgdiff command is named; with a wrong target hash, the result
    # is refused.
    error = expand(ota, tmp_path / "work-nosource")["system"]
    assert isinstance(error, NeedsSourceError)
    assert "(imgdiff)" in str(error)
    if version == 4:
        bad = write_zip(
            tmp_path / "bad.zip",
            {
                "system.transfer.list": "\n".join(
                    [*header, command.replace(sha1(new_apk), "0" * 40), ""]
                ).encode(),
                "system.patch.dat": b"JUNK" + patch,
            },
        )
        error = expand(bad, tmp_path / "work-bad", source={"system": source})["system"]
        assert isinstance(error, IntegrityError)
        assert "line 5 (imgdiff)" in str(error)


def test_damaged_imgdiff_patch_is_named(tmp_path: Path) -> None:
    old_apk, new_apk = _apk(0), _apk(2)
    patch = bytearray(make_imgdiff(old_apk, new_apk))
    patch[8:12] = (1 << 30).to_bytes(4, "little")  # the chunk count
    n_old, n_new = len(old_apk) // BS, len(new_apk) // BS
    source = tmp_path / "source.img"
    source.write_bytes(old_apk)
    command = (
        f"imgdiff 0 {len(patch)} {sha1(old_apk)} {sha1(new_apk)} {rs((0, n_new))} {n_old} "
        f"{rs((0, n_old))}"
    )
    ota = write_zip(
        tmp_path / "ota.zip",
        {
            "system.transfer.list": f"4\n{n_new}\n0\n0\n{command}\n".encode(),
            "system.patch.dat": bytes(patch),
        },
    )
    error = expand(ota, tmp_path / "work", source={"system": source})["system"]
    assert type(error) is UnpackError
    assert str(error).startswith("system: transfer list line 5 (imgdiff): imgdiff patch: ")
    assert "cannot fit" in str(error)


def test_ranges_past_the_end_are_refused(tmp_path: Path, source_image: Path) -> None:
    move = sha1(bytes(BS))
    past_source = f"4\n1\n0\n0\nmove {move} {rs((0, 1))} 1 {rs((30, 31))}\n"
    too_many = v4_list(total=17)  # the commands write 18 blocks
    bad_count = "4\n1\n0\n0\nnew 3,0,1\n"
    cases = {
        "past-source": (past_source, UnpackError, "past the end of the source image"),
        "over-total": (too_many, UnpackError, "more blocks than the 17 the header declares"),
        "bad-count": (bad_count, UnpackError, "bad range set"),
    }
    for label, (text, kind, message) in cases.items():
        ota = incremental_zip(tmp_path, text, name=f"{label}.zip")
        error = expand(ota, tmp_path / f"work-{label}", source={"system": source_image})["system"]
        assert isinstance(error, kind), label
        assert message in str(error), (label, str(error))
    # A range past the partition size limit, in a full OTA.
    huge = write_zip(
        tmp_path / "huge.zip",
        {"system.transfer.list": f"4\n1\n0\n0\nerase {rs((0, 1 << 40))}\n".encode()},
    )
    error = expand(huge, tmp_path / "work-huge", limits=Limits(max_partition_size=1 << 30))
    assert isinstance(error["system"], LimitError)


def test_broken_partition_does_not_stop_the_others(tmp_path: Path) -> None:
    good = [block("good")]
    ota = write_zip(
        tmp_path / "mixed.zip",
        {
            "odm.transfer.list": b"4\n1\n0\n0\nnew 2,0,1\n",
            "odm.new.dat.lz4": b"not lz4 at all",
            "vendor.transfer.list": f"4\n1\n0\n0\nnew {rs((0, 1))}\n".encode(),
            "vendor.new.dat": good[0],
        },
    )
    images = expand(ota, tmp_path / "work")
    assert isinstance(images["odm"], UnpackError)
    assert images["vendor"] == good[0]


# --- bsdiff patch formats ---------------------------------------------------------------------


def _bsdf2(old: bytes, new: bytes, types: tuple[int, int, int]) -> bytes:
    ctrl, diff, extra = bsdiff4.core.diff(old, new)
    enc = {0: lambda b: b, 1: bz2.compress, 2: brotli.compress}
    streams = [enc[t](s) for t, s in zip(types, (ctrl, diff, extra), strict=True)]
    header = b"BSDF2" + bytes(types)
    for n in (len(streams[0]), len(streams[1]), len(new)):
        header += bsdiff4.core.encode_int64(n)
    return header + b"".join(streams)


def test_bspatch_formats() -> None:
    old = b"".join(SRC[:3])
    new = old[:5000] + b"inserted" + old[5000:9000] + b"tail" * 100
    assert bspatch(old, bsdiff4.diff(old, new)) == new
    for types in ((0, 0, 0), (1, 2, 0), (2, 2, 2)):
        assert bspatch(old, _bsdf2(old, new, types)) == new, types
    with pytest.raises(UnpackError, match="not a bsdiff patch"):
        bspatch(old, b"NOTAPATCH" + bytes(40))
    with pytest.raises(UnpackError):
        bspatch(old, _bsdf2(old, new, (2, 2, 2))[:60])  # truncated streams
    with pytest.raises(LimitError):
        bspatch(old, _bsdf2(old, new, (0, 0, 0)), max_new_size=100)


# --- the AOSP delta payload -------------------------------------------------------------------


@pytest.fixture(scope="module")
def aosp_images(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The update_engine sample images: ``disk_ext2_4k_empty.img`` is the kernel source,
    ``disk_ext2_4k.img`` its target; ``disk_sqfs_empty.img`` / ``disk_sqfs_default.img`` the
    root ones (found by comparing SHA-256s with old/new_partition_info)."""
    out = tmp_path_factory.mktemp("aosp-images")
    tarball = corpus / "firmware" / "ext2" / "sample_images.tar.bz2"
    with tarfile.open(tarball) as tf:
        for member in tf.getmembers():
            name = Path(member.name).name
            if member.isfile() and name.endswith(".img"):
                extracted = tf.extractfile(member)
                assert extracted is not None
                (out / name).write_bytes(extracted.read())
    return {p.name: p for p in out.iterdir()}


def _delta(corpus: Path) -> Payload:
    return Payload.open(Window(corpus / "firmware" / "ab-ota-payload" / "delta_payload.bin"))


def test_aosp_delta_payload_sources_are_found(corpus: Path, aosp_images: dict[str, Path]) -> None:
    pl = _delta(corpus)
    kernel, root = pl.partition("kernel"), pl.partition("root")
    digests = {hashlib.sha256(p.read_bytes()).digest(): n for n, p in aosp_images.items()}
    assert digests[kernel.old_hash or b""] == "disk_ext2_4k_empty.img"
    assert digests[kernel.new_hash or b""] == "disk_ext2_4k.img"
    assert digests[root.old_hash or b""] == "disk_sqfs_empty.img"
    assert digests[root.new_hash or b""] == "disk_sqfs_default.img"
    assert {OpType.SOURCE_COPY, OpType.BROTLI_BSDIFF} <= set(kernel.op_counts)


def test_aosp_delta_payload_applies(
    corpus: Path, aosp_images: dict[str, Path], tmp_path: Path
) -> None:
    pl = _delta(corpus)
    out = tmp_path / "kernel.img"
    apply_incremental(pl, "kernel", aosp_images["disk_ext2_4k_empty.img"], out)
    assert out.read_bytes() == aosp_images["disk_ext2_4k.img"].read_bytes()

    source = {"kernel": aosp_images["disk_ext2_4k_empty.img"]}
    window = Window(corpus / "firmware" / "ab-ota-payload" / "delta_payload.bin")
    ctx = UnpackContext(workdir=tmp_path / "work")
    (tmp_path / "work").mkdir()
    got = {c.name: _content(c) for c in DeltaPayloadContainer(source).expand(window, ctx)}
    assert got["kernel"] == aosp_images["disk_ext2_4k.img"].read_bytes()
    assert got["root"] == aosp_images["disk_sqfs_default.img"].read_bytes()
    without = {c.name: _content(c) for c in DeltaPayloadContainer().expand(window, ctx)}
    assert isinstance(without["kernel"], NeedsSourceError)
    assert without["root"] == got["root"]


def test_aosp_delta_payload_integrity(
    corpus: Path, aosp_images: dict[str, Path], tmp_path: Path
) -> None:
    pl = _delta(corpus)
    out = tmp_path / "kernel.img"
    with pytest.raises(IntegrityError, match="not the build this update applies to"):
        apply_incremental(pl, "kernel", aosp_images["disk_ext2_4k.img"], out)
    assert not out.exists()

    # Without the whole-image hash, the operation's src_sha256_hash catches a changed block.
    kernel = pl.partition("kernel")
    parts = tuple(
        dataclasses.replace(p, old_hash=None) if p.name == "kernel" else p
        for p in pl.info.partitions
    )
    unhashed = Payload(pl.window, dataclasses.replace(pl.info, partitions=parts), pl.data_start)
    damaged = bytearray(aosp_images["disk_ext2_4k_empty.img"].read_bytes())
    first_src = kernel.operations[0].src_extents[0].start_block
    damaged[first_src * BS + 1100] ^= 0xFF
    bad_source = tmp_path / "damaged.img"
    bad_source.write_bytes(bytes(damaged))
    with pytest.raises(IntegrityError, match=r"operation 0 .*src_sha256_hash"):
        apply_incremental(unhashed, "kernel", bad_source, out)

    # Operation types that cannot be applied are named.
    ops = list(kernel.operations)
    ops[0] = dataclasses.replace(ops[0], type=OpType.PUFFDIFF)
    parts = tuple(
        dataclasses.replace(p, operations=tuple(ops)) if p.name == "kernel" else p
        for p in pl.info.partitions
    )
    puff = Payload(pl.window, dataclasses.replace(pl.info, partitions=parts), pl.data_start)
    with pytest.raises(UnpackError, match="PUFFDIFF operations cannot be applied yet"):
        apply_incremental(puff, "kernel", aosp_images["disk_ext2_4k_empty.img"], out)

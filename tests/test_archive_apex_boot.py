"""Generic archives, compressed streams, APEX/CAPEX and boot images, through the real walk.

Inputs are made with the real tools (tar, gzip, xz, bzip2, zstd, lz4, brotli, cpio, md5sum,
mke2fs through ``make_ext4``) or written byte by byte where a hostile shape is needed. The walk
runs with the registrations these modules need (see ``_registrations``).
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import need_tool

from fwscan.errors import InputError, LimitError, UnpackError
from fwscan.formats.protowire import MessageWriter
from fwscan.limits import Limits
from fwscan.model import CoverageRecord, Status
from fwscan.synth.ext4img import make_ext4
from fwscan.unpack import registry
from fwscan.unpack.apex import (
    ApexContainer,
    expand_apex_file,
    parse_manifest_json,
    parse_manifest_pb,
)
from fwscan.unpack.archive import (
    ArchiveContainer,
    CompressedContainer,
    is_tar,
    looks_like_text,
    partition_name,
    stream_format,
)
from fwscan.unpack.base import Child, EntryType, Filesystem, UnpackContext, Window
from fwscan.unpack.bootimg import (
    BootImageContainer,
    CpioFileSystem,
    parse_boot_image,
    probe_cpio,
)

Files = dict[str, bytes]
Parts = list[tuple[str, str, str, Files]]
"""(partition name, source chain, filesystem format, regular files and their bytes)."""

BUILD_PROP = b"ro.build.fingerprint=fw/test/x:14/AB1/1:user/release-keys\n"
INIT_RC = b"on early-init\n    start ueventd\n"
PROP_DEFAULT = b"ro.secure=1\nro.debuggable=0\n"
APK_LIKE = b"PK\x03\x04" + bytes(range(256)) * 8


def _run(*argv: str | Path, cwd: Path | None = None, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, input=stdin, capture_output=True, check=False
    )
    assert proc.returncode == 0, f"{argv}: {proc.returncode}\n{proc.stderr.decode()}"
    return proc.stdout


def _registrations() -> tuple[tuple[object, ...], tuple[Filesystem, ...]]:
    """The proposed order: APEX first among zips, the generic archive and stream last; the OTA
    zip container is left out while it still claims every zip."""
    mine = {"apex", "bootimg", "archive", "compressed", "ab-ota-zip"}
    others = tuple(c for c in registry.CONTAINERS if c.name not in mine)
    containers = (
        ApexContainer(),
        *others,
        BootImageContainer(),
        ArchiveContainer(),
        CompressedContainer(),
    )
    cpio = Filesystem("cpio", probe_cpio, CpioFileSystem)
    filesystems = (*(f for f in registry.FILESYSTEMS if f.name != "cpio"), cpio)
    return containers, filesystems


Walk = Callable[..., tuple[Parts, UnpackContext]]


@pytest.fixture
def walk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Walk:
    containers, filesystems = _registrations()
    monkeypatch.setattr(registry, "CONTAINERS", containers)
    monkeypatch.setattr(registry, "FILESYSTEMS", filesystems)
    runs = iter(range(1000))

    def run(path: Path, limits: Limits | None = None) -> tuple[Parts, UnpackContext]:
        work = tmp_path / f"work{next(runs)}"
        work.mkdir()
        ctx = UnpackContext(work, limits or Limits())
        parts: Parts = []
        for part in registry.open_firmware(path, ctx):
            try:
                files = {
                    e.path: b"".join(part.fs.iter_content(e))
                    for e in part.fs.walk()
                    if e.type is EntryType.FILE
                }
            finally:
                part.fs.close()
            parts.append((part.name, part.source, part.format, files))
        assert list(work.iterdir()) == [], "work files must be deleted once read"
        return parts, ctx

    return run


def _records(ctx: UnpackContext, status: Status) -> list[CoverageRecord]:
    return [r for r in ctx.coverage if r.status is status]


def _by_source(ctx: UnpackContext, suffix: str) -> CoverageRecord:
    matches = [r for r in ctx.coverage if r.source.endswith(suffix)]
    assert matches, f"no record for {suffix}: {ctx.coverage}"
    return matches[-1]


# -- fixtures: images ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def system_img(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("system")
    tree = root / "tree"
    (tree / "app" / "Foo").mkdir(parents=True)
    (tree / "build.prop").write_bytes(BUILD_PROP)
    (tree / "app" / "Foo" / "Foo.apk").write_bytes(APK_LIKE)
    out = root / "system.img"
    make_ext4(tree, out, label="system")
    return out


@pytest.fixture(scope="module")
def apex_payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("apexpayload")
    tree = root / "tree"
    (tree / "app" / "Tether").mkdir(parents=True)
    (tree / "app" / "Tether" / "Tether.apk").write_bytes(APK_LIKE)
    (tree / "etc").mkdir()
    (tree / "etc" / "init.rc").write_bytes(INIT_RC)
    out = root / "apex_payload.img"
    make_ext4(tree, out)
    return out


@pytest.fixture(scope="module")
def ramdisk_cpio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A newc archive made by GNU cpio: init.rc, prop.default, a directory, a symlink and two
    hard links (whose data newc stores once, with the last link)."""
    root = tmp_path_factory.mktemp("ramdisk")
    tree = root / "tree"
    (tree / "system" / "etc").mkdir(parents=True)
    (tree / "init.rc").write_bytes(INIT_RC)
    (tree / "prop.default").write_bytes(PROP_DEFAULT)
    (tree / "system" / "etc" / "hosts").write_bytes(b"127.0.0.1 localhost\n")
    (tree / "init").symlink_to("/system/bin/init")
    (tree / "first_stage").write_bytes(b"\x7fELF linked twice")
    os.link(tree / "first_stage", tree / "first_stage_link")
    names = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    out = root / "ramdisk.cpio"
    data = _run(
        need_tool("cpio"),
        "-o",
        "-H",
        "newc",
        "--reproducible",
        "-R",
        "0:0",
        cwd=tree,
        stdin=("\n".join([".", *names]) + "\n").encode(),
    )
    out.write_bytes(data)
    return out


def _compressed(src: Path, tool: str, *args: str) -> bytes:
    return _run(need_tool(tool), *args, "-c", src)


# -- small pure functions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "partition"),
    [
        ("system.img", "system"),
        ("IMAGES/vendor.img", "vendor"),
        ("product_a.img", "product"),
        ("super.img.lz4", "super"),
        ("system.img.ext4.lz4", "system"),
        ("radio-angler-angler-03.78.img", "radio"),
        ("vendor_boot.img", "vendor_boot"),
        ("boot_b.img.gz", "boot"),
        ("image-angler-nrd90u.zip", None),
        ("android-info.txt", None),
        ("system.new.dat.br", None),
        ("bad name!.img", None),
    ],
)
def test_partition_name(member: str, partition: str | None) -> None:
    assert partition_name(member) == partition


def test_detection_helpers() -> None:
    assert stream_format(b"\x1f\x8b\x08\x00") == "gzip"
    assert stream_format(b"\x02\x21\x4c\x18") == "lz4-legacy"
    assert stream_format(b"BZh91AY&SY") == "bzip2"
    assert stream_format(b"BZh0") is None
    assert looks_like_text(b"#!/bin/sh\nfastboot flash boot boot.img\n")
    assert not looks_like_text(b"ELF\x00\x01")
    assert not is_tar(b"\0" * 512)


# -- tar, tar.md5, compressed tars -------------------------------------------------------------


def _samsung_tar(tmp: Path, system_img: Path) -> Path:
    """AP_*.tar.md5: a ustar archive of lz4-compressed images, then an md5sum line."""
    stage = tmp / "stage"
    stage.mkdir()
    (stage / "system.img.lz4").write_bytes(_compressed(system_img, "lz4", "-f", "-9"))
    (stage / "vbmeta.img").write_bytes(b"AVB0" + bytes(1020))
    (stage / "meta-data").mkdir()
    (stage / "meta-data" / "info.txt").write_text("PDA=X\n")
    out = tmp / "AP_X.tar.md5"
    tar_cmd = [need_tool("tar"), "--format=ustar", "--sort=name", "--owner=0", "--group=0"]
    _run(*tar_cmd, "-cf", out, "-C", stage, "system.img.lz4", "vbmeta.img", "meta-data")
    digest = _run(need_tool("md5sum"), "-t", out)
    with open(out, "ab") as f:
        f.write(digest)
    return out


def test_samsung_tar_md5(walk: Walk, tmp_path: Path, system_img: Path) -> None:
    fw = _samsung_tar(tmp_path, system_img)
    parts, ctx = walk(fw)
    assert [(p[0], p[2]) for p in parts] == [("system", "ext4")]
    _name, source, _fmt, files = parts[0]
    assert source == "AP_X.tar.md5 > system.img.lz4"
    assert files["build.prop"] == BUILD_PROP
    assert files["app/Foo/Foo.apk"] == APK_LIKE
    assert _by_source(ctx, "AP_X.tar.md5").format == "archive"
    assert _by_source(ctx, "meta-data/info.txt").status is Status.SKIPPED
    assert _by_source(ctx, "vbmeta.img").status is Status.SKIPPED  # not a format fwscan reads
    assert not _records(ctx, Status.FAILED)


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("gzip", ("-n",)),
        ("xz", ()),
        ("bzip2", ()),
        ("zstd", ("-q",)),
        ("lz4", ()),
        ("lz4", ("-l",)),
    ],
)
def test_compressed_tar(
    walk: Walk, tmp_path: Path, system_img: Path, tool: str, args: tuple[str, ...]
) -> None:
    tar = tmp_path / "fw.tar"
    _run(need_tool("tar"), "--format=gnu", "-cf", tar, "-C", system_img.parent, "system.img")
    fw = tmp_path / "fw.tar.c"
    fw.write_bytes(_compressed(tar, tool, *args))
    parts, ctx = walk(fw)
    assert [(p[0], p[1]) for p in parts] == [("system", "fw.tar.c > decompressed > system.img")]
    assert parts[0][3]["build.prop"] == BUILD_PROP
    assert _by_source(ctx, "fw.tar.c").format == "compressed"


def test_single_streams(walk: Walk, tmp_path: Path, system_img: Path) -> None:
    # gzip records the original name: the partition comes from it.
    gz = tmp_path / "system.img.gz"
    gz.write_bytes(_run(need_tool("gzip"), "-c", system_img))
    parts, _ctx = walk(gz)
    assert [(p[0], p[1]) for p in parts] == [("system", "system.img.gz > system.img")]
    # xz records none: the ext4 volume label names it.
    xz = tmp_path / "image.xz"
    xz.write_bytes(_compressed(system_img, "xz", "-0"))
    parts, _ctx = walk(xz)
    assert [(p[0], p[1]) for p in parts] == [("system", "image.xz > decompressed")]
    # Brotli has no magic: only a member named *.br is decompressed.
    br = _compressed(system_img, "brotli", "-q", "4")
    fw = tmp_path / "br.zip"
    with zipfile.ZipFile(fw, "w") as zf:
        zf.writestr("system.img.br", br)
    parts, _ctx = walk(fw)
    assert [(p[0], p[3]["build.prop"]) for p in parts] == [("system", BUILD_PROP)]
    alone = tmp_path / "system.img.br"
    alone.write_bytes(br)
    with pytest.raises(InputError):
        walk(alone)


def test_truncated_and_corrupt_streams(walk: Walk, tmp_path: Path, system_img: Path) -> None:
    data = _compressed(system_img, "xz", "-0")
    cut = tmp_path / "cut.xz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnpackError, match="truncated xz"):
        walk(cut)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + bytes(6) + b"\xff" * 64)
    with pytest.raises(UnpackError, match="corrupt gzip"):
        walk(bad)


# -- zip: factory images -------------------------------------------------------------------------


def test_factory_zip(walk: Walk, tmp_path: Path, system_img: Path, ramdisk_cpio: Path) -> None:
    boot = pack_boot(2, kernel=b"K" * 3000, ramdisk=_gzip(ramdisk_cpio), dtb=b"D" * 300)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("android-info.txt", "require board=x\n")
        zf.write(system_img, "system.img")
        zf.write(system_img, "vendor.img", compress_type=zipfile.ZIP_STORED)
        zf.writestr("boot.img", boot)
    fw = tmp_path / "x-y-factory.zip"
    with zipfile.ZipFile(fw, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("x-y/flash-all.sh", "#!/bin/sh\nfastboot update image-x-y.zip\n")
        zf.writestr("x-y/bootloader-x-1.0.img", b"\x00BOOTLDR" + bytes(range(256)) * 4)
        zf.writestr("x-y/image-x-y.zip", inner.getvalue())
    parts, ctx = walk(fw)
    names = [(p[0], p[1], p[2]) for p in parts]
    assert names == [
        ("system", "x-y-factory.zip > x-y/image-x-y.zip > system.img", "ext4"),
        ("vendor", "x-y-factory.zip > x-y/image-x-y.zip > vendor.img", "ext4"),
        ("boot", "x-y-factory.zip > x-y/image-x-y.zip > boot.img > ramdisk", "cpio"),
    ]
    assert parts[0][3]["build.prop"] == BUILD_PROP
    assert parts[2][3]["init.rc"] == INIT_RC
    assert _by_source(ctx, "x-y/flash-all.sh").status is Status.SKIPPED
    assert _by_source(ctx, "android-info.txt").reason.startswith("text file")
    assert _by_source(ctx, "boot.img > kernel").status is Status.SKIPPED
    assert _by_source(ctx, "bootloader-x-1.0.img").kind == "partition"
    assert not _records(ctx, Status.FAILED)


def test_apk_is_not_a_firmware_archive(walk: Walk, tmp_path: Path) -> None:
    apk = tmp_path / "app.zip"
    with zipfile.ZipFile(apk, "w") as zf:
        zf.writestr("AndroidManifest.xml", b"\x03\x00\x08\x00")
        zf.writestr("classes.dex", b"dex\n035\x00")
    with pytest.raises(InputError, match="APK"):
        walk(apk)


def test_nesting_is_bounded(walk: Walk, tmp_path: Path, system_img: Path) -> None:
    data = system_img.read_bytes()
    name = "system.img"
    for level in range(5):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(name, data)
        data, name = buf.getvalue(), f"level{level}.zip"
    fw = tmp_path / "deep.zip"
    fw.write_bytes(data)
    parts, _ctx = walk(fw)
    assert [p[0] for p in parts] == ["system"]
    parts, ctx = walk(fw, Limits(max_nesting=3))
    assert parts == []
    assert any(r.reason == "nesting limit reached" for r in _records(ctx, Status.SKIPPED))


def test_member_counts_are_bounded(walk: Walk, tmp_path: Path) -> None:
    many_zip = tmp_path / "many.zip"
    with zipfile.ZipFile(many_zip, "w") as zf:
        for i in range(30):
            zf.writestr(f"f{i}.bin", b"\x00\x01")
    with pytest.raises(LimitError, match="30 members"):
        walk(many_zip, Limits(max_files=10))
    many_tar = tmp_path / "many.tar"
    with tarfile.open(many_tar, "w", format=tarfile.USTAR_FORMAT) as tf:
        for i in range(30):
            info = tarfile.TarInfo(f"f{i}.bin")
            info.size = 2
            tf.addfile(info, io.BytesIO(b"\x00\x01"))
    _parts, ctx = walk(many_tar, Limits(max_files=10))
    assert len([r for r in ctx.coverage if r.source.startswith("many.tar > ")]) == 10
    assert "more than 10 members" in _by_source(ctx, "many.tar").reason


# -- zip bombs -------------------------------------------------------------------------------------


def _lying_zip(path: Path, member: str, real: bytes, declared: int) -> None:
    """A zip whose member declares ``declared`` bytes where it holds ``real``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("first.bin", bytes(range(256)) * 16, compress_type=zipfile.ZIP_STORED)
        zf.writestr(member, real)
    raw = bytearray(buf.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        info = zf.getinfo(member)
    local = info.header_offset
    struct.pack_into("<I", raw, local + 22, declared)
    central = raw.rfind(b"PK\x01\x02", 0, raw.rfind(member.encode()))  # its central entry
    assert raw[central + 46 : central + 46 + len(member)] == member.encode()
    struct.pack_into("<I", raw, central + 24, declared)
    path.write_bytes(bytes(raw))


def test_zip_member_bigger_than_declared(walk: Walk, tmp_path: Path) -> None:
    fw = tmp_path / "liar.zip"
    _lying_zip(fw, "zeros.img", bytes(10 << 20), 1000)
    parts, ctx = walk(fw)
    assert parts == []
    failed = _by_source(ctx, "liar.zip > zeros.img")
    assert failed.status is Status.FAILED
    assert "CRC" in failed.reason  # the data stops at the declared size, and then fails
    assert ctx.extracted_bytes <= 1000
    assert _by_source(ctx, "liar.zip > first.bin").status is Status.SKIPPED  # still read
    fw2 = tmp_path / "liar2.zip"
    _lying_zip(fw2, "zeros.img", bytes(10 << 20), 4_000_000_000)
    _parts, ctx = walk(fw2)
    failed = _by_source(ctx, "liar2.zip > zeros.img")
    assert failed.status is Status.FAILED
    assert "more than deflate can produce" in failed.reason  # refused before reading
    assert ctx.extracted_bytes == 0


def test_total_extraction_is_bounded(walk: Walk, tmp_path: Path, system_img: Path) -> None:
    fw = tmp_path / "big.zip"
    with zipfile.ZipFile(fw, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(system_img, "system.img", compress_type=zipfile.ZIP_STORED)  # read in place
        zf.writestr("zeros.img", bytes(10 << 20))
        zf.writestr("more.img", bytes(1 << 20))
    parts, ctx = walk(fw, Limits(max_total_extracted=2 << 20))
    assert [p[0] for p in parts] == ["system"]
    for name in ("zeros.img", "more.img"):
        rec = _by_source(ctx, name)
        assert rec.status is Status.FAILED
        assert "exceeds the limit" in rec.reason
    assert ctx.extracted_bytes <= 2 << 20
    assert any(isinstance(e, LimitError) for e in ctx.failures)


def test_nested_zip_bomb(walk: Walk, tmp_path: Path) -> None:
    """A small 42.zip: 4 levels of 6 copies over 6 leaves of 1 MiB zeros (1.3 GB expanded)."""
    data = bytes(1 << 20)
    for level in range(5):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for i in range(6):
                zf.writestr(f"{'lib' if level else 'zero'}{i}.{'zip' if level else 'img'}", data)
        data = buf.getvalue()
    fw = tmp_path / "42.zip"
    fw.write_bytes(data)
    assert len(data) < 200_000
    limit = 24 << 20
    parts, ctx = walk(fw, Limits(max_total_extracted=limit))
    assert parts == []
    assert ctx.extracted_bytes <= limit
    assert any("exceeds the limit" in r.reason for r in _records(ctx, Status.FAILED))


def test_overlapping_members_are_refused(walk: Walk, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.img", bytes(1 << 20))
    raw = buf.getvalue()
    cd = raw.index(b"PK\x01\x02")
    eocd = raw.index(b"PK\x05\x06")
    entry = raw[cd:eocd]
    second = bytearray(entry)
    second[46:51] = b"b.img"  # the same data under another name
    central = entry + bytes(second)
    end = bytearray(raw[eocd:])
    struct.pack_into("<HHII", end, 8, 2, 2, len(central), cd)
    fw = tmp_path / "overlap.zip"
    fw.write_bytes(raw[:cd] + central + bytes(end))
    _parts, ctx = walk(fw)
    assert "overlaps" in _by_source(ctx, "overlap.zip > b.img").reason


# -- hostile tars ------------------------------------------------------------------------------


def test_hostile_tar_writes_nothing_outside(walk: Walk, tmp_path: Path) -> None:
    blob = b"\x00\x01binary" * 64
    fw = tmp_path / "evil" / "evil.tar"
    fw.parent.mkdir()
    with tarfile.open(fw, "w", format=tarfile.GNU_FORMAT) as tf:
        for name in ("../evil", "/etc/fwscan-evil-x", "ok/blob.bin"):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
        link = tarfile.TarInfo("ok/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        hard = tarfile.TarInfo("ok/hard")
        hard.type, hard.linkname = tarfile.LNKTYPE, "ok/blob.bin"
        tf.addfile(hard)
        dev = tarfile.TarInfo("ok/null")
        dev.type = tarfile.CHRTYPE
        tf.addfile(dev)
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    _parts, ctx = walk(fw)
    dotdot = _by_source(ctx, "evil.tar > ../evil")
    assert dotdot.status is Status.FAILED and "'..'" in dotdot.reason
    assert _by_source(ctx, "evil.tar > etc/fwscan-evil-x").status is Status.SKIPPED  # unknown
    assert "never followed" in _by_source(ctx, "ok/link").reason
    assert "never followed" in _by_source(ctx, "ok/hard").reason
    assert _by_source(ctx, "ok/null").status is Status.SKIPPED
    assert not Path("/etc/fwscan-evil-x").exists()
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before
    assert sorted(p.name for p in (tmp_path / "evil").iterdir()) == ["evil.tar"]


def test_truncated_tar(walk: Walk, tmp_path: Path, system_img: Path) -> None:
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "a.bin").write_bytes(b"\x00\x02" * 3000)
    shutil.copy(system_img, stage / "system.img")
    full = tmp_path / "full.tar"
    _run(need_tool("tar"), "--format=ustar", "-cf", full, "-C", stage, "a.bin", "system.img")
    raw = full.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(raw[: 512 * 14 + 512 + 100_000])  # inside system.img's data
    parts, ctx = walk(cut)
    assert parts == []
    assert _by_source(ctx, "cut.tar > a.bin").status is Status.SKIPPED
    rec = _by_source(ctx, "cut.tar > system.img")
    assert rec.status is Status.FAILED and "truncated" in rec.reason
    bad = tmp_path / "badheader.tar"
    bad.write_bytes(raw[: 512 * 13] + b"\xff" * 512)  # a.bin, then garbage as a header
    _parts, ctx = walk(bad)
    assert _by_source(ctx, "badheader.tar > a.bin").status is Status.SKIPPED
    damaged = _by_source(ctx, "badheader.tar")
    assert damaged.status is Status.FAILED and "damaged" in damaged.reason
    huge = tmp_path / "pax.tar"
    info = tarfile.TarInfo("x")
    info.size = 1
    header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    pax = bytearray(tarfile.TarInfo("././@PaxHeader").tobuf(tarfile.USTAR_FORMAT))
    pax[156:157] = b"x"
    pax[124:136] = b"77777777777\0"  # an 8 GiB extended header
    chk = sum(pax[:148]) + 256 + sum(pax[156:])
    pax[148:156] = b"%06o\0 " % chk
    huge.write_bytes(bytes(pax) + header + bytes(4096))
    with pytest.raises(UnpackError):
        walk(huge)


# -- APEX and CAPEX -------------------------------------------------------------------------------


def _apex(path: Path, payload: Path, *, deflate: bool = False, json_manifest: bool = False) -> None:
    manifest = MessageWriter().string(1, "com.example.tether").varint(2, 340_000_000).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("AndroidManifest.xml", b"\x03\x00\x08\x00" + bytes(60))
        if json_manifest:
            zf.writestr("apex_manifest.json", '{"name": "com.example.tether", "version": 3}')
        else:
            zf.writestr("apex_manifest.pb", manifest)
        zf.writestr("apex_pubkey", bytes(range(64)))
        method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
        zf.write(payload, "apex_payload.img", compress_type=method)


def _capex(path: Path, apex: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(apex, "original_apex")
        with zipfile.ZipFile(apex) as inner:
            zf.writestr("apex_manifest.pb", inner.read("apex_manifest.pb"))


def test_apex_and_capex(walk: Walk, tmp_path: Path, apex_payload: Path) -> None:
    apex = tmp_path / "com.example.tether.apex"
    _apex(apex, apex_payload)
    capex = tmp_path / "com.example.tether.capex"
    _capex(capex, apex)
    deflated = tmp_path / "deflated.apex"
    _apex(deflated, apex_payload, deflate=True, json_manifest=True)
    for fw in (apex, capex, deflated):
        parts, ctx = walk(fw)
        assert [(p[0], p[1], p[2]) for p in parts] == [
            ("apex:com.example.tether", f"{fw.name} > apex:com.example.tether", "ext4")
        ]
        assert parts[0][3]["app/Tether/Tether.apk"] == APK_LIKE
        assert parts[0][3]["etc/init.rc"] == INIT_RC
        assert _by_source(ctx, fw.name).format == "apex"


def test_expand_apex_file(tmp_path: Path, apex_payload: Path) -> None:
    apex = tmp_path / "a.apex"
    _apex(apex, apex_payload)
    capex = tmp_path / "a.capex"
    _capex(capex, apex)
    work = tmp_path / "work"
    work.mkdir()
    ctx = UnpackContext(work)
    for path in (apex, capex):
        children = []
        for child in expand_apex_file(path, ctx):
            assert child.window is not None
            head = child.window.read_head(2048)
            children.append((child.name, child.partition, head[1080:1082]))
        assert children == [("apex:com.example.tether",) * 2 + (b"\x53\xef",)]
    assert list(work.iterdir()) == []
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("x.img", b"x")
    with pytest.raises(UnpackError, match="not an APEX"):
        list(expand_apex_file(plain, ctx))


def test_apex_manifests() -> None:
    pb = MessageWriter().string(1, "com.android.art").varint(2, (1 << 64) - 1).encode()
    manifest = parse_manifest_pb(pb)
    assert (manifest.name, manifest.version) == ("com.android.art", -1)
    assert parse_manifest_json(b'{"name": "com.android.tzdata", "version": 1}').version == 1
    for bad in (MessageWriter().string(1, "../x").encode(), b"\x0a\x05ab", b""):
        with pytest.raises(UnpackError):
            parse_manifest_pb(bad)
    with pytest.raises(UnpackError):
        parse_manifest_json(b'{"name": 3}')


# -- boot images --------------------------------------------------------------------------------


def _pad(data: bytes, page: int) -> bytes:
    return data + bytes(-len(data) % page)


def pack_boot(
    version: int,
    *,
    kernel: bytes,
    ramdisk: bytes,
    second: bytes = b"",
    recovery_dtbo: bytes = b"",
    dtb: bytes = b"",
    signature: bytes = b"",
    page: int = 2048,
    os_version: int = (14 << 25) | (24 << 4) | 3,
) -> bytes:
    """An ``ANDROID!`` image laid out as bootimg.h describes for ``version``."""
    cmdline = b"console=ttyMSM0"
    if version >= 3:
        page = 4096
        hdr = struct.pack(
            "<8s4I4II1536s",
            b"ANDROID!",
            len(kernel),
            len(ramdisk),
            os_version,
            1580 + 4 * (version == 4),
            0,
            0,
            0,
            0,
            version,
            cmdline,
        )
        parts = [kernel, ramdisk]
        if version == 4:
            hdr += struct.pack("<I", len(signature))
            parts.append(signature)
    else:
        hdr = struct.pack(
            "<8s10I16s512s32s1024s",
            b"ANDROID!",
            len(kernel),
            0x8000,
            len(ramdisk),
            0x1000000,
            len(second),
            0xF00000,
            0x100,
            page,
            version,
            os_version,
            b"",
            cmdline,
            b"",
            b"",
        )
        parts = [kernel, ramdisk, second]
        if version >= 1:
            dtbo_at = page * (1 + sum(-(-len(p) // page) for p in parts))
            hdr += struct.pack("<IQI", len(recovery_dtbo), dtbo_at, 1660)
            parts.append(recovery_dtbo)
        if version == 2:
            hdr += struct.pack("<IQ", len(dtb), 0x1F00000)
            parts.append(dtb)
    return b"".join(_pad(p, page) for p in [hdr, *parts])


def pack_vendor_boot(
    ramdisks: list[tuple[str, int, bytes]], *, dtb: bytes, bootconfig: bytes, page: int = 4096
) -> bytes:
    """A ``VNDRBOOT`` v4 image with a vendor ramdisk table of (name, type, data)."""
    section = b"".join(data for _n, _t, data in ramdisks)
    table = b""
    offset = 0
    for name, rtype, data in ramdisks:
        table += struct.pack("<3I32s64s", len(data), offset, rtype, name.encode(), bytes(64))
        offset += len(data)
    hdr = struct.pack(
        "<8s5I2048sI16sIIQ",
        b"VNDRBOOT",
        4,
        page,
        0x8000,
        0x1000000,
        len(section),
        b"androidboot.hardware=x",
        0x100,
        b"x",
        2128,
        len(dtb),
        0x1F00000,
    ) + struct.pack("<4I", len(table), len(ramdisks), 108, len(bootconfig))
    return b"".join(_pad(p, page) for p in (hdr, section, dtb, table, bootconfig))


def _gzip(path: Path) -> bytes:
    return _run(need_tool("gzip"), "-n", "-9", "-c", path)


def _lz4_legacy(path: Path) -> bytes:
    return _run(need_tool("lz4"), "-l", "-9", "-c", path)


def _children(path: Path, tmp: Path) -> list[tuple[str, str | None, str | None, Files | None]]:
    """Each child of a boot image: name, partition, skip/error text, cpio files."""
    work = tmp / "children"
    work.mkdir(exist_ok=True)
    ctx = UnpackContext(work)
    out: list[tuple[str, str | None, str | None, Files | None]] = []
    child: Child
    for child in BootImageContainer().expand(Window(path), ctx):
        files = None
        note = child.skipped or (str(child.error) if child.error else None)
        if child.window is not None:
            fs = CpioFileSystem(child.window)
            try:
                files = {
                    e.path: b"".join(fs.iter_content(e))
                    for e in fs.walk()
                    if e.type is EntryType.FILE
                }
                assert fs.errors == []
            finally:
                fs.close()
        out.append((child.name, child.partition, note, files))
    assert list(work.iterdir()) == []
    return out


def test_corpus_boot_and_recovery(walk: Walk, corpus: Path, tmp_path: Path) -> None:
    for name, marker in (("boot.img", "init.angler.rc"), ("recovery.img", "res/keys")):
        path = corpus / "firmware" / "bootimg" / name
        img = parse_boot_image(Window(path))
        assert (img.kind, img.header_version, img.page_size) == ("boot", 0, 4096)
        assert (img.os_release, img.patch_level) == ("7.0.0", "2016-08")
        assert "androidboot.hardware=angler" in img.cmdline
        kids = _children(path, tmp_path)
        assert [(k[0], k[2]) for k in kids] == [
            ("kernel", "40960 bytes, not unpacked"),
            ("ramdisk", None),
        ]
        files = kids[1][3]
        assert files is not None
        assert b"ro.secure=1" in files["default.prop"]
        assert files["init.rc"].startswith(b"#") or b"on early-init" in files["init.rc"]
        assert marker in files
        # Through the walk, wrapped in a tar whose member name gives the partition.
        tar = tmp_path / f"{name}.tar"
        with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as tf:
            tf.add(path, name)
        parts, _ctx = walk(tar)
        assert [(p[0], p[2]) for p in parts] == [(name[:-4], "cpio")]
        assert parts[0][3] == files


def test_cpio_listing(ramdisk_cpio: Path) -> None:
    with CpioFileSystem(Window(ramdisk_cpio)) as fs:
        entries = list(fs.walk())
        assert fs.errors == []
        listing = {e.path: (e.type, e.link_target) for e in entries}
        assert [e.path for e in entries] == [
            "first_stage",
            "first_stage_link",
            "init",
            "init.rc",
            "prop.default",
            "system",
            "system/etc",
            "system/etc/hosts",
        ]
        assert listing["init"] == (EntryType.SYMLINK, "/system/bin/init")
        assert listing["system"][0] is EntryType.DIR
        by_path = {e.path: e for e in entries}
        for linked in ("first_stage", "first_stage_link"):
            assert b"".join(fs.iter_content(by_path[linked])) == b"\x7fELF linked twice"
        assert b"".join(fs.iter_content(by_path["prop.default"])) == PROP_DEFAULT


@pytest.mark.parametrize("version", [2, 3, 4])
def test_built_boot_images(tmp_path: Path, ramdisk_cpio: Path, version: int) -> None:
    ramdisk = _gzip(ramdisk_cpio) if version != 3 else _lz4_legacy(ramdisk_cpio)
    image = pack_boot(
        version,
        kernel=b"\x1f\x8b kernel" * 500,
        ramdisk=ramdisk,
        second=b"S" * 10 if version == 2 else b"",
        recovery_dtbo=b"R" * 700,
        dtb=b"D" * 900,
        signature=b"G" * 1024,
    )
    path = tmp_path / "boot.img"
    path.write_bytes(image)
    img = parse_boot_image(Window(path))
    assert (img.header_version, img.patch_level, img.os_release) == (version, "2024-03", "14.0.0")
    kids = _children(path, tmp_path)
    expected = {
        2: ["kernel", "ramdisk", "second", "recovery_dtbo", "dtb"],
        3: ["kernel", "ramdisk"],
        4: ["kernel", "ramdisk", "signature"],
    }[version]
    assert [k[0] for k in kids] == expected
    files = kids[1][3]
    assert files is not None
    assert files["init.rc"] == INIT_RC
    assert files["prop.default"] == PROP_DEFAULT


def test_vendor_boot_v4(walk: Walk, tmp_path: Path, ramdisk_cpio: Path) -> None:
    image = pack_vendor_boot(
        [("platform", 1, _gzip(ramdisk_cpio)), ("dlkm", 3, _lz4_legacy(ramdisk_cpio))],
        dtb=b"D" * 5000,
        bootconfig=b"androidboot.x=1\n",
    )
    path = tmp_path / "vendor_boot.img"
    path.write_bytes(image)
    img = parse_boot_image(Window(path))
    assert (img.kind, img.header_version) == ("vendor_boot", 4)
    assert [(r.name, r.type) for r in img.ramdisks] == [("platform", "platform"), ("dlkm", "dlkm")]
    kids = _children(path, tmp_path)
    assert [(k[0], k[1]) for k in kids] == [
        ("ramdisk:platform", "vendor_boot:platform"),
        ("ramdisk:dlkm", "vendor_boot:dlkm"),
        ("dtb", None),
        ("bootconfig", None),
    ]
    assert kids[0][3] == kids[1][3]
    parts, _ctx = walk(path)
    assert [p[0] for p in parts] == ["vendor_boot:platform", "vendor_boot:dlkm"]


def test_hostile_boot_images(tmp_path: Path, ramdisk_cpio: Path) -> None:
    good = pack_boot(2, kernel=b"K" * 100, ramdisk=_gzip(ramdisk_cpio), dtb=b"D" * 10)
    path = tmp_path / "boot.img"
    # The ramdisk claims 1 GiB: it fails alone, the kernel is still listed.
    raw = bytearray(good)
    struct.pack_into("<I", raw, 16, 1 << 30)
    path.write_bytes(raw)
    kids = _children(path, tmp_path)
    assert kids[0][:3] == ("kernel", None, "100 bytes, not unpacked")
    assert kids[1][0] == "ramdisk" and "past the end" in str(kids[1][2])
    # A huge page size is refused.
    raw = bytearray(good)
    struct.pack_into("<I", raw, 36, 1 << 30)
    path.write_bytes(raw)
    with pytest.raises(UnpackError, match="page size"):
        parse_boot_image(Window(path))
    # A truncated header.
    path.write_bytes(good[:600])
    with pytest.raises(UnpackError, match="truncated"):
        parse_boot_image(Window(path))
    # A vendor ramdisk table with too many entries, or entries outside the section.
    vendor = bytearray(pack_vendor_boot([("a", 1, b"x" * 10)], dtb=b"", bootconfig=b""))
    struct.pack_into("<I", vendor, 2116, 100_000)
    path.write_bytes(vendor)
    with pytest.raises(UnpackError, match="entries"):
        parse_boot_image(Window(path))
    vendor = bytearray(pack_vendor_boot([("a", 1, b"x" * 10)], dtb=b"", bootconfig=b""))
    struct.pack_into("<I", vendor, 4096 * 2 + 4, 50)  # the entry's offset
    path.write_bytes(vendor)
    with pytest.raises(UnpackError, match="outside"):
        parse_boot_image(Window(path))
    # A corrupt gzip ramdisk is a failed child.
    raw = bytearray(good)
    raw[2048 * 2 + 20 : 2048 * 2 + 60] = b"\xff" * 40
    path.write_bytes(raw)
    kids = _children(path, tmp_path)
    assert "corrupt gzip" in str(kids[1][2])


def _newc(entries: list[tuple[str, int, bytes]], *, trailer: bool = True) -> bytes:
    out = b""
    for ino, (name, mode, data) in enumerate(entries, 1):
        raw_name = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw_name), 0]
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        out += _pad(hdr + raw_name, 4) + _pad(data, 4)
    if trailer:
        out += _newc([("TRAILER!!!", 0, b"")], trailer=False)
    return out


def test_hostile_cpio(tmp_path: Path) -> None:
    archive = _newc(
        [
            ("../evil", 0o100644, b"evil"),
            ("/abs/file", 0o100644, b"abs"),
            ("ok/file", 0o100644, b"ok"),
            ("ok/file/under", 0o100644, b"x"),
            ("lnk", 0o120777, b"/etc/passwd"),
            ("dev/null", 0o020666, b""),
        ]
    )
    path = tmp_path / "hostile.cpio"
    path.write_bytes(archive + bytes(512) + _newc([("second/archive", 0o100644, b"2")]))
    with CpioFileSystem(Window(path)) as fs:
        entries = {e.path: e for e in fs.walk()}
        assert sorted(entries) == [
            "abs",
            "abs/file",
            "dev",
            "dev/null",
            "lnk",
            "ok",
            "ok/file",
            "second",
            "second/archive",
        ]
        assert entries["lnk"].link_target == "/etc/passwd"
        assert entries["dev/null"].type is EntryType.OTHER
        messages = " | ".join(str(e) for e in fs.errors)
        assert "'..'" in messages and "not a directory" in messages
        assert b"".join(fs.iter_content(entries["abs/file"])) == b"abs"
    # Truncated: the entries before the cut are listed, the damage recorded.
    path.write_bytes(archive[:200])
    with CpioFileSystem(Window(path)) as fs:
        assert [e.path for e in fs.walk()] == []
        assert fs.errors  # the first entry was refused, the second cut
    path.write_bytes(_newc([("a", 0o100644, b"a" * 100)], trailer=False))
    with CpioFileSystem(Window(path)) as fs:
        assert [e.path for e in fs.walk()] == ["a"]
        assert "truncated" in str(fs.errors[-1]) or "bad or truncated" in str(fs.errors[-1])
    huge_name = b"070701" + b"".join(b"%08X" % f for f in [1, 0o100644] + [0] * 9 + [1 << 20, 0])
    path.write_bytes(huge_name + bytes(200))
    with CpioFileSystem(Window(path)) as fs:
        assert list(fs.walk()) == []
        assert "name of" in str(fs.errors[0])
    path.write_bytes(b"not a cpio archive at all" * 10)
    with pytest.raises(UnpackError, match="not a cpio"):
        CpioFileSystem(Window(path))
    deep = _newc([("/".join(["d"] * 80) + "/f", 0o100644, b"x")])
    path.write_bytes(deep)
    with CpioFileSystem(Window(path), Limits(max_depth=10)) as fs:
        assert list(fs.walk()) == []
        assert isinstance(fs.errors[0], LimitError)

"""Pieces of the inventory: build.prop parsing, identity priority, kinds, safe paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from fwscan import buildprop
from fwscan.errors import UnpackError
from fwscan.inventory import classify, device_path
from fwscan.safepath import SafeWriter, clean_relpath


def test_buildprop_parse_ignores_comments_and_imports() -> None:
    data = b"# c\nimport /x.prop\nro.a=1\n ro.b = two words \nbad line\nro.a=3\n=x\n"
    assert buildprop.parse(data) == {"ro.a": "3", "ro.b": "two words"}


def test_identity_prefers_system_and_falls_back_per_field() -> None:
    ident = buildprop.identity(
        [
            (
                "/vendor/build.prop",
                {
                    "ro.vendor.build.fingerprint": "V",
                    "ro.product.vendor.model": "VM",
                    "ro.vendor.build.security_patch": "2019-01-05",
                },
            ),
            (
                "/system/build.prop",
                {"ro.build.fingerprint": "S", "ro.build.version.security_patch": "2019-01-01"},
            ),
        ]
    )
    assert ident.fingerprint == "S"
    assert ident.model == "VM"
    assert ident.security_patch == "2019-01-01"
    assert ident.vendor_security_patch == "2019-01-05"
    assert ident.sources == ("/system/build.prop", "/vendor/build.prop")


@pytest.mark.parametrize(
    ("path", "head", "kind"),
    [
        ("priv-app/X/X.apk", b"PK", "apk"),
        ("framework/a.jar", b"PK", "jar"),
        ("framework/oat/arm64/a.odex", b"\x7fELF", "odex"),
        ("framework/oat/arm64/a.vdex", b"vdex", "vdex"),
        ("apex/com.android.tethering.apex", b"PK", "apex"),
        ("build.prop", b"", "build_prop"),
        ("etc/init/x.rc", b"", "init_rc"),
        ("etc/init/hw/init.rc", b"", "init_rc"),
        ("etc/permissions/privapp-permissions-x.xml", b"", "permissions_xml"),
        ("etc/sysconfig/hiddenapi.xml", b"", "permissions_xml"),
        ("etc/other.xml", b"", "other"),
        ("lib64/libc.so", b"\x7fELF\x02", "elf"),
        ("bin/sh", b"\x7fELF\x02", "elf"),
        ("data/classes", b"dex\n035\x00", "dex"),
        ("etc/hosts", b"127.0.0.1", "other"),
    ],
)
def test_classify(path: str, head: bytes, kind: str) -> None:
    assert classify(path, head) == kind


def test_device_paths() -> None:
    assert device_path("vendor", "app/X.apk", False) == "/vendor/app/X.apk"
    assert device_path("system", "system/app/X.apk", True) == "/system/app/X.apk"
    assert device_path("system", "app/X.apk", False) == "/system/app/X.apk"
    # a dumped firmware tree with a system-as-root system/
    assert device_path("", "system/system/app/X.apk", True, "directory") == "/system/app/X.apk"
    assert device_path("", "system/init.rc", True, "directory") == "/init.rc"
    assert device_path("", "vendor/app/Y.apk", True, "directory") == "/vendor/app/Y.apk"
    assert device_path("", "system/app/X.apk", False, "directory") == "/system/app/X.apk"


@pytest.mark.parametrize("name", ["../etc/passwd", "a/../../b", "..", "/", ""])
def test_clean_relpath_refuses_escapes(name: str) -> None:
    with pytest.raises(UnpackError):
        clean_relpath(name)


def test_clean_relpath_normalises() -> None:
    assert clean_relpath("/abs//x/./y") == "abs/x/y"
    assert clean_relpath("a\x1b[31m/b\x00c") == "a_[31m/b_c"


def test_safe_writer_never_writes_through_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    writer = SafeWriter(root)
    (root / "link").symlink_to(outside)
    with pytest.raises(UnpackError, match="symlink"):
        writer.open_new("link/x")
    (root / "file-link").symlink_to(outside / "victim")
    with pytest.raises(UnpackError):
        writer.open_new("file-link")
    assert not (outside / "victim").exists()
    assert list(outside.iterdir()) == []
    fd = writer.open_new("/abs/ok.txt")
    import os

    os.close(fd)
    assert (root / "abs" / "ok.txt").is_file()
    with pytest.raises(UnpackError, match="overwrite"):
        writer.open_new("abs/ok.txt")


def _image(tmp_path: Path, name: str, files: dict[str, bytes], label: str = "") -> Path:
    """A real ext4 image (mke2fs -d) holding ``files``."""
    from fwscan.synth.ext4img import make_ext4

    tree = tmp_path / f"tree-{name}"
    for rel, data in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    out = tmp_path / name
    make_ext4(tree, out, label=label)
    return out


@pytest.mark.parametrize(
    ("name", "files", "partition", "prop_path"),
    [
        # system-as-root content under an odd file name
        (
            "bj-system.img.raw",
            {"system/build.prop": b"ro.system.build.id=X\n", "system/app/a.txt": b"a"},
            "system",
            "/system/build.prop",
        ),
        # a slot suffix
        ("vendor_b.img", {"build.prop": b"ro.vendor.build.id=X\n"}, "vendor", "/vendor/build.prop"),
        # nothing in the name: the build.prop keys say which partition this is
        (
            "dump.bin",
            {"etc/build.prop": b"ro.product.build.fingerprint=f\nro.product.build.id=X\n"},
            "product",
            "/product/etc/build.prop",
        ),
        ("dump2.bin", {"build.prop": b"ro.odm.build.id=X\n"}, "odm", "/odm/build.prop"),
        # a partition word in the name, content silent
        ("x-system_ext.raw", {"etc/x.txt": b"x"}, "system_ext", "/system_ext/etc/x.txt"),
        # nothing known: the file's own name
        ("mystery.img", {"etc/x.txt": b"x"}, "mystery", "/mystery/etc/x.txt"),
    ],
)
def test_bare_image_partition_name(
    tmp_path: Path, name: str, files: dict[str, bytes], partition: str, prop_path: str
) -> None:
    from fwscan.inventory import build_inventory

    inv, _ = build_inventory(_image(tmp_path, name, files), workdir=tmp_path)
    records = {r.device_path: r for r in inv.files}
    assert prop_path in records, sorted(records)
    assert {r.partition for r in inv.files} == {partition}


def test_volume_label_names_a_bare_image(tmp_path: Path) -> None:
    from fwscan.inventory import build_inventory

    image = _image(tmp_path, "odd.img", {"build.prop": b"ro.system.build.id=X\n"}, label="vendor")
    inv, _ = build_inventory(image, workdir=tmp_path)
    # the label names it; the content guess does not override a known partition name
    assert [r.device_path for r in inv.files] == ["/vendor/build.prop"]


def test_dumped_tree_maps_to_device_paths(tmp_path: Path) -> None:
    """A folder as dump tools write it: the system-as-root system image's tree in system/,
    vendor/ beside it; an init service of /system is linked to its binary."""
    from fwscan.inventory import build_inventory

    root = tmp_path / "dump"
    files = {
        "system/system/build.prop": b"ro.build.fingerprint=a/b/c:13/X/1:user/release-keys\n",
        "system/system/etc/init/x.rc": b"service x /system/bin/x\n",
        "system/system/bin/x": b"\x7fELF",
        "system/init.environ.rc": b"on early-init\n",
        "vendor/build.prop": b"ro.vendor.build.fingerprint=v\n",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    inv, _ = build_inventory(root, workdir=tmp_path, as_files=True)
    assert sorted(r.device_path for r in inv.files) == [
        "/init.environ.rc",
        "/system/bin/x",
        "/system/build.prop",
        "/system/etc/init/x.rc",
        "/vendor/build.prop",
    ]
    assert inv.build.fingerprint == "a/b/c:13/X/1:user/release-keys"


def test_identity_from_an_odm_only_update() -> None:
    """A block OTA that updates only odm (real custom ROMs do) still names its build."""
    ident = buildprop.identity(
        [
            (
                "/odm/etc/build.prop",
                {
                    "ro.product.odm.model": "Redmi Note 10 Pro",
                    "ro.product.odm.brand": "Redmi",
                    "ro.odm.build.fingerprint": "google/raven/raven:12/SQ1D/1:user/release-keys",
                    "ro.odm.build.version.sdk": "31",
                },
            )
        ]
    )
    assert ident.fingerprint == "google/raven/raven:12/SQ1D/1:user/release-keys"
    assert (ident.model, ident.brand, ident.sdk) == ("Redmi Note 10 Pro", "Redmi", "31")
    assert ident.sources == ("/odm/etc/build.prop",)


def test_ota_metadata_is_the_last_resort(tmp_path: Path) -> None:
    """An OTA package's own metadata names the build where no build.prop does."""
    import zipfile

    from fwscan.inventory import build_inventory

    meta = buildprop.ota_metadata(
        b"ota-type=BLOCK\npost-build=g/raven/raven:12/SQ1D/7957957:user/release-keys\n"
        b"post-sdk-level=31\npost-security-patch-level=2021-12-05\npre-device=sweet,sweetin\n"
    )
    assert meta == {
        "ro.build.fingerprint": "g/raven/raven:12/SQ1D/7957957:user/release-keys",
        "ro.build.version.sdk": "31",
        "ro.build.version.security_patch": "2021-12-05",
        "ro.product.device": "sweet",
    }
    image = _image(tmp_path, "vendor.img", {"build.prop": b"ro.vendor.build.fingerprint=V\n"})
    ota = tmp_path / "ota.zip"
    with zipfile.ZipFile(ota, "w") as zf:
        zf.write(image, "vendor.img")
        zf.writestr(
            buildprop.OTA_METADATA,
            "post-build=P\npost-security-patch-level=2021-12-05\npre-device=sweet\n",
        )
    inv, _ = build_inventory(ota, workdir=tmp_path)
    assert inv.build.fingerprint == "V"  # a build.prop of the firmware wins
    assert inv.build.security_patch == "2021-12-05"  # the metadata fills what none gives
    assert inv.build.device == "sweet"
    assert inv.build.sources == ("/vendor/build.prop", f"ota.zip:{buildprop.OTA_METADATA}")


def test_a_named_partition_keeps_its_name(tmp_path: Path) -> None:
    """Only a name taken from a bare file's name is guessed: an archive member's is kept,
    whatever its build.prop says (OPPO's my_product holds ro.product.build.* keys)."""
    import tarfile

    from fwscan.inventory import build_inventory

    image = _image(
        tmp_path, "my_product.img", {"etc/build.prop": b"ro.product.build.fingerprint=f\n"}
    )
    archive = tmp_path / "factory.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(image, "my_product.img")
    inv, _ = build_inventory(archive, workdir=tmp_path)
    assert [r.device_path for r in inv.files] == ["/my_product/etc/build.prop"]


def test_damaged_ota_metadata_is_not_fatal(tmp_path: Path) -> None:
    """A metadata member whose deflate stream is corrupt (zlib.error) is passed over."""
    import zipfile

    from fwscan.inventory import build_inventory

    image = _image(tmp_path, "vendor.img", {"build.prop": b"ro.vendor.build.fingerprint=V\n"})
    ota = tmp_path / "ota.zip"
    with zipfile.ZipFile(ota, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(image, "vendor.img", compress_type=zipfile.ZIP_STORED)
        zf.writestr(buildprop.OTA_METADATA, "post-build=" + "P" * 4000)
    raw = bytearray(ota.read_bytes())
    name = raw.rfind(buildprop.OTA_METADATA.encode(), 0, raw.find(b"PK\x01\x02"))
    start = name + len(buildprop.OTA_METADATA)
    raw[start + 2 : start + 30] = bytes(b ^ 0x55 for b in raw[start + 2 : start + 30])
    ota.write_bytes(bytes(raw))
    inv, _ = build_inventory(ota, workdir=tmp_path)
    assert inv.build.fingerprint == "V"
    assert inv.build.sources == ("/vendor/build.prop",)

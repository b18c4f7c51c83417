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

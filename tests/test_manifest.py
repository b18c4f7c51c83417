"""Build manifests: the shipped samples load, inheritance works, and errors name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from fwscan.errors import ManifestError
from fwscan.synth import manifest

SAMPLES = Path(__file__).resolve().parents[1] / "sample_manifests"


def test_prepatch_sample_has_the_registration_app() -> None:
    m = manifest.load(SAMPLES / "nokia7plus-prepatch.yaml")
    app = next(a for a in m.apps if a.package == "com.qualcomm.qti.autoregistration")
    assert app.path == "/system/priv-app/AutoRegistration/AutoRegistration.apk"
    assert app.shared_user_id == "android.uid.phone"
    (action,) = app.behaviours
    assert set(action.reads) == {"imei", "iccid", "imsi", "cell_id"}
    assert (action.sink, action.target) == ("http_post", "http://zzhc.vnet.cn:9998/")
    assert action.class_name == "com.qualcomm.qti.autoregistration.RegistrationService"
    parts = {a.path.split("/")[1] for a in m.apps}
    assert {"system", "vendor", "product"} <= parts
    assert len(m.apps) >= 11


def test_feb_patch_inherits_and_removes() -> None:
    old = manifest.load(SAMPLES / "nokia7plus-prepatch.yaml")
    new = manifest.load(SAMPLES / "nokia7plus-feb-patch.yaml")
    assert new.build.security_patch == "2019-02-01"
    assert "com.qualcomm.qti.autoregistration" not in {a.package for a in new.apps}
    old_apps = {a.package: a for a in old.apps}
    new_apps = {a.package: a for a in new.apps}
    changed = {p for p in new_apps if new_apps[p] != old_apps[p]}
    assert changed == {"com.android.settings", "com.hmdglobal.support"}
    assert set(old_apps) - set(new_apps) == {"com.qualcomm.qti.autoregistration"}
    assert new.partitions == old.partitions
    assert new.device == old.device
    assert len(new.files) == len(old.files) - 1


BASE = """
schema_version: 1
device: {manufacturer: M, brand: B, model: X, device: d, name: n}
build: {fingerprint: f, display_id: D, incremental: I, release: "9", sdk: 28,
        security_patch: "2019-01-01", date_utc: 1}
partitions: [{name: system, filesystem: ext4}]
"""


def _load(tmp_path: Path, text: str) -> manifest.BuildManifest:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return manifest.load(path)


def test_minimal_manifest_loads(tmp_path: Path) -> None:
    m = _load(tmp_path, BASE)
    assert m.name == "m"
    assert m.partitions[0].name == "system"
    assert m.apps == ()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "apps: [{package: a.b, path: /data/x.apk, version_code: 1, version_name: v, key: k}]",
            "apps[0].path: '/data/x.apk' is not inside a declared partition",
        ),
        (
            "apps: [{package: nodots, path: /system/x.apk, version_code: 1, version_name: v, "
            "key: k}]",
            "apps[0].package: 'nodots' is not a Java package name",
        ),
        (
            "apps: [{package: a.b, path: /system/../x.apk, version_code: 1, version_name: v, "
            "key: k}]",
            "apps[0].path",
        ),
        (
            "apps: [{package: a.b, path: /system/x.apk, version_code: 0, version_name: v, key: k}]",
            "apps[0].version_code: 0 out of range",
        ),
        (
            "apps: [{package: a.b, path: /system/x.apk, version_code: 1, version_name: v, key: k,"
            " behaviours: [{class: .A, method: m, reads: [shoe_size]}]}]",
            "apps[0].behaviours[0].reads: 'shoe_size' is not one of",
        ),
        (
            "apps: [{package: a.b, path: /system/x.apk, version_code: 1, version_name: v, key: k,"
            " behaviours: [{class: .A, method: m, sink: http_post}]}]",
            "apps[0].behaviours[0].target: sink 'http_post' needs a target",
        ),
        (
            "apps: [{package: a.b, path: /system/x.apk, version_code: 1, version_name: v, key: k,"
            " colour: red}]",
            "apps[0]: unknown field 'colour'",
        ),
        (
            "files: [{path: /system/a, text: x}, {path: /system/a, text: y}]",
            "files[1].path: '/system/a' is also used by files[0].path",
        ),
    ],
)
def test_invalid_manifests_name_the_field(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ManifestError) as err:
        _load(tmp_path, BASE + extra + "\n")
    assert str(err.value).startswith("m.yaml: ")
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "the top level must be a mapping"),
        ("a: [", "invalid YAML"),
        (
            BASE.replace("schema_version: 1", "schema_version: 7"),
            "schema_version: 7 is not supported",
        ),
        (BASE.replace('security_patch: "2019-01-01"', "security_patch: soon"), "is not a date"),
        (BASE.replace("filesystem: ext4", "filesystem: ntfs"), "'ntfs' is not one of"),
        (BASE + "partitions: [{name: boot, filesystem: raw}]\n", "a raw partition needs a size"),
    ],
)
def test_invalid_top_level(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        _load(tmp_path, text)


def test_extends_errors(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(BASE)
    child = tmp_path / "child.yaml"
    child.write_text("schema_version: 1\nextends: base.yaml\nremove_apps: [x.y]\n")
    with pytest.raises(ManifestError, match=r"remove_apps: 'x\.y' is not in the base manifest"):
        manifest.load(child)
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(ManifestError, match="nests more than"):
        manifest.load(loop)


@pytest.mark.parametrize(
    ("value", "expected"), [("64M", 64 << 20), ("1G", 1 << 30), (4096, 4096), ("512KiB", 512 << 10)]
)
def test_sizes(value: object, expected: int) -> None:
    assert manifest.parse_size(value, "x") == expected


@pytest.mark.parametrize("value", ["big", -1, 0, True, "65G"])
def test_bad_sizes(value: object) -> None:
    with pytest.raises(ManifestError):
        manifest.parse_size(value, "x")

"""End to end: the sample manifests become real firmware that fwscan reads back.

The two Nokia 7 plus samples are synthesized once per session. Every ext4 image in them passes
``e2fsck -fn``, every APK parses with androguard to the package and permissions its manifest
declares, every DEX passes ``dexdump``, and the inventory shows the registration app in the
pre-patch build only.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

from click.testing import CliRunner
from conftest import SAMPLES, need_tool

from fwscan.cli import cli
from fwscan.inventory import build_inventory
from fwscan.synth import manifest as manifest_mod
from fwscan.synth.build import synthesize
from fwscan.unpack.base import Window
from fwscan.unpack.payload import Payload

AUTOREG = "/system/priv-app/AutoRegistration/AutoRegistration.apk"


def _payload_window(ota: Path) -> Window:
    with zipfile.ZipFile(ota) as zf:
        info = zf.getinfo("payload.bin")
        assert info.compress_type == zipfile.ZIP_STORED
        name_len = len(info.filename.encode())
    with open(ota, "rb") as f:
        f.seek(info.header_offset + 26)
        extra_len = int.from_bytes(f.read(4)[2:], "little")
    return Window(ota, info.header_offset + 30 + name_len + extra_len, info.file_size)


def test_ota_zip_layout(samples: dict[str, Path]) -> None:
    with zipfile.ZipFile(samples["nokia7plus-prepatch"]) as zf:
        names = zf.namelist()
        assert names == ["payload.bin", "payload_properties.txt", "META-INF/com/android/metadata"]
        meta = dict(
            line.split("=", 1)
            for line in zf.read("META-INF/com/android/metadata").decode().splitlines()
        )
        props = dict(
            line.split("=", 1) for line in zf.read("payload_properties.txt").decode().splitlines()
        )
    assert meta["ota-type"] == "AB"
    assert meta["post-security-patch-level"] == "2019-01-01"
    assert meta["pre-device"] == "B2N_sprout"
    # The property-files offsets point at the stored payload's bytes.
    entries = {e.split(":")[0]: e.split(":")[1:] for e in meta["ota-property-files"].split(",")}
    off, size = (int(v) for v in entries["payload.bin"])
    data = samples["nokia7plus-prepatch"].read_bytes()
    assert data[off : off + 4] == b"CrAU"
    assert size == int(props["FILE_SIZE"])


def test_synthesis_is_byte_identical(samples: dict[str, Path], tmp_path: Path) -> None:
    spec = manifest_mod.load(SAMPLES / "nokia7plus-prepatch.yaml")
    again = synthesize(spec, tmp_path / "again.zip").path
    assert again.read_bytes() == samples["nokia7plus-prepatch"].read_bytes()


def test_payload_operations_and_images(samples: dict[str, Path], tmp_path: Path) -> None:
    e2fsck = need_tool("e2fsck")
    pl = Payload.open(_payload_window(samples["nokia7plus-prepatch"]))
    names = [p.name for p in pl.info.partitions]
    assert names == ["system", "vendor", "product", "boot"]
    types = {t.name for p in pl.info.partitions for t in p.op_counts}
    assert {"REPLACE_XZ", "REPLACE_BZ", "ZERO"} <= types
    for part in pl.info.partitions:
        assert part.new_hash is not None
        assert all(op.data_sha256 for op in part.operations if op.data_length)
        if part.name == "boot":
            continue
        img = tmp_path / f"{part.name}.img"
        pl.extract(part.name, img)
        run = subprocess.run([e2fsck, "-fn", str(img)], capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stdout + run.stderr


def test_every_apk_matches_its_manifest(samples: dict[str, Path], tmp_path: Path) -> None:
    from androguard.core.apk import APK
    from loguru import logger

    logger.remove()
    dexdump = need_tool("dexdump")
    spec = manifest_mod.load(SAMPLES / "nokia7plus-prepatch.yaml")
    out = tmp_path / "unpacked"
    result = CliRunner().invoke(
        cli, ["unpack", str(samples["nokia7plus-prepatch"]), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    checked = 0
    for app in spec.apps:
        path = out / "files" / app.path.lstrip("/")
        assert path.is_file(), app.path
        listing = ""
        with zipfile.ZipFile(path) as zf:
            dexes = sorted(n for n in zf.namelist() if n.endswith(".dex"))
            assert len(dexes) == app.dex_count
            for name in dexes:
                dex = tmp_path / "x.dex"
                dex.write_bytes(zf.read(name))
                run = subprocess.run(
                    [dexdump, "-d", str(dex)], capture_output=True, text=True, check=False
                )
                assert run.returncode == 0, run.stderr
                listing += run.stdout
        for action in app.behaviours:
            cls = "L" + action.class_name.replace(".", "/") + ";"
            assert f"Class descriptor  : '{cls}'" in listing
            assert f"name          : '{action.method}'" in listing
            if action.target and action.sink and action.sink.startswith("http"):
                assert f'"{action.target}"' in listing
        if not app.path.endswith(".apk"):
            continue
        apk = APK(str(path))
        assert apk.get_package() == app.package
        assert apk.get_androidversion_code() == str(app.version_code)
        assert set(apk.get_permissions()) == set(app.permissions)
        assert apk.is_signed_v1()
        checked += 1
    assert checked == len([a for a in spec.apps if a.path.endswith(".apk")])


def test_inventories_show_the_removed_app(samples: dict[str, Path]) -> None:
    pre, _ = build_inventory(samples["nokia7plus-prepatch"])
    feb, _ = build_inventory(samples["nokia7plus-feb-patch"])
    pre_paths = {f.device_path: f for f in pre.files}
    feb_paths = {f.device_path: f for f in feb.files}
    assert pre_paths[AUTOREG].kind == "apk"
    assert AUTOREG not in feb_paths
    assert set(pre_paths) - set(feb_paths) == {
        AUTOREG,
        "/system/etc/permissions/privapp-permissions-autoregistration.xml",
    }
    assert pre.build.fingerprint.endswith("00WW_3_22C:user/release-keys")
    assert feb.build.fingerprint.endswith("00WW_3_39B:user/release-keys")
    assert (pre.build.security_patch, feb.build.security_patch) == ("2019-01-01", "2019-02-01")
    assert pre.build.model == feb.build.model == "Nokia 7 plus"
    kinds = {f.kind for f in pre.files}
    assert {"apk", "jar", "elf", "build_prop", "init_rc", "permissions_xml"} <= kinds
    statuses = {c.source.rsplit(" > ", 1)[-1]: c.status.value for c in pre.coverage}
    assert statuses["system"] == statuses["vendor"] == statuses["product"] == "read"
    assert statuses["boot"] == "skipped"


def test_inventory_json_is_deterministic(samples: dict[str, Path]) -> None:
    runner = CliRunner()
    outputs = [
        runner.invoke(cli, ["inventory", "--json", str(samples["nokia7plus-prepatch"])])
        for _ in range(2)
    ]
    assert outputs[0].exit_code == 0, outputs[0].output
    assert outputs[0].stdout == outputs[1].stdout
    doc = json.loads(outputs[0].stdout)
    assert doc["schema"] == "fwscan.inventory/1"
    assert doc["input"]["format"] == "ab-ota-zip"
    row = next(f for f in doc["files"] if f["device_path"] == AUTOREG)
    assert row["partition"] == "system"
    assert row["path"] == "priv-app/AutoRegistration/AutoRegistration.apk"
    assert len(row["sha256"]) == 64
    assert row["mode"] == "100644"


def test_unpacked_files_match_inventory_hashes(samples: dict[str, Path], tmp_path: Path) -> None:
    import hashlib

    out = tmp_path / "u"
    result = CliRunner().invoke(
        cli, ["unpack", str(samples["nokia7plus-feb-patch"]), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "inventory.json").read_text())
    files = [f for f in doc["files"] if f["type"] == "file"]
    assert files
    for f in files:
        data = (out / "files" / f["partition"] / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
    # Nothing but the files tree and the inventory in the output directory.
    assert sorted(p.name for p in out.iterdir()) == ["files", "inventory.json"]

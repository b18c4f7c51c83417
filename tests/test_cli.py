"""The command line on good and hostile input: one-line errors and documented exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from conftest import REPO

from fwscan.cli import cli
from fwscan.errors import EXIT_CODES
from fwscan.synth import manifest as manifest_mod
from fwscan.synth.build import synthesize
from fwscan.unpack.base import Window
from fwscan.unpack.payload import Payload

TINY = """
schema_version: 1
device: {manufacturer: M, brand: B, model: Tiny, device: tiny, name: tiny}
build: {fingerprint: B/tiny/tiny:9/X/1:user/release-keys, display_id: T1, incremental: "1",
        release: "9", sdk: 28, security_patch: "2019-01-01", date_utc: 1}
partitions:
  - {name: system, filesystem: ext4}
  - {name: vendor, filesystem: ext4, compression: zstd}
  - {name: product, filesystem: ext4, compression: none}
apps:
  - {package: com.example.a, path: /system/app/A/A.apk, version_code: 1, version_name: "1",
     key: releasekey, components: [{kind: activity, name: .Main}],
     behaviours: [{class: .Main, method: go, reads: [imei], sink: http_post,
                   target: "http://example.net/"}]}
  - {package: com.example.v, path: /vendor/app/V/V.apk, version_code: 1, version_name: "1",
     key: vendor}
files:
  - {path: /product/etc/hello.txt, text: "hello\\n"}
"""


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def assert_one_line_error(result: Result, code: int, text: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    errors = [line for line in result.stderr.splitlines() if line.startswith("fwscan: error:")]
    assert errors, result.stderr
    assert text in result.stderr
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    (d / "tiny.yaml").write_text(TINY)
    return synthesize(manifest_mod.load(d / "tiny.yaml"), d / "tiny.zip").path


def _payload(ota: Path, out: Path) -> Path:
    with zipfile.ZipFile(ota) as zf:
        out.write_bytes(zf.read("payload.bin"))
    return out


def test_version_and_module_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fwscan", "--version"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.startswith("fwscan, version ")


def test_help_lists_exit_codes() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for code in EXIT_CODES:
        assert f"  {code}  " in result.output


def test_every_exit_code_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} | {meaning} |" in readme
    for command in cli.commands:
        assert f"### `fwscan {command}" in readme, command


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, command in group.commands.items():
        out.append((prefix + name, command))
        if isinstance(command, click.Group):
            out += _commands(command, prefix + name + " ")
    return out


def test_every_command_and_option_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for name, command in _commands(cli):
        assert f"fwscan {name}" in readme, name
        for param in command.params:
            if isinstance(param, click.Option) and param.name not in ("help",):
                longest = max(param.opts, key=len)
                assert longest in readme, f"option {longest} of fwscan {name} is not in the README"


def test_directory_is_listed_as_it_is_but_not_unpacked(tmp_path: Path) -> None:
    tree = tmp_path / "dump"
    (tree / "system" / "system").mkdir(parents=True)
    (tree / "system" / "system" / "build.prop").write_bytes(b"ro.build.fingerprint=F\n")
    (tree / "vendor").mkdir()
    (tree / "vendor" / "build.prop").write_bytes(b"ro.vendor.build.fingerprint=V\n")
    result = run("inventory", "--json", str(tree))
    assert result.exit_code == 0, result.output
    inv = json.loads(result.stdout)
    assert sorted(f["device_path"] for f in inv["files"]) == [
        "/system/build.prop",
        "/vendor/build.prop",
    ]
    assert inv["build"]["fingerprint"] == "F"
    out = tmp_path / "out"
    assert_one_line_error(run("unpack", str(tree), "-o", str(out)), 2, "not a regular file")


def test_random_bytes(corpus: Path) -> None:
    result = run("inventory", str(corpus / "firmware/ota-zip/random.zip"))
    assert_one_line_error(result, 2, "not a firmware format fwscan reads")


def test_zip_without_payload(corpus: Path) -> None:
    result = run("inventory", str(corpus / "firmware/ota-zip/ziptest_valid.zip"))
    # Read as a generic archive: every member is listed as skipped, and reading no
    # filesystem at all is an error, so that an unreadable firmware never looks clean.
    assert_one_line_error(result, 2, "no filesystem fwscan reads was found")
    assert "skipped ziptest_valid.zip > a.txt: text file" in result.stderr


def test_zip_with_fake_end_record(corpus: Path) -> None:
    result = run("inventory", str(corpus / "firmware/ota-zip/fake-eocd.zip"))
    assert_one_line_error(result, 4, "not a readable zip")


def test_invalid_manifest(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.replace("sdk: 28", "sdk: many"))
    result = run("synth", str(bad), "-o", str(tmp_path / "x.zip"))
    assert_one_line_error(result, 3, "bad.yaml: build.sdk: must be an integer")


def test_tiny_build_lists_all_partitions(tiny: Path) -> None:
    result = run("inventory", "--json", str(tiny))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    paths = {f["device_path"] for f in doc["files"]}
    assert {"/system/app/A/A.apk", "/vendor/app/V/V.apk", "/product/etc/hello.txt"} <= paths
    assert doc["build"]["model"] == "Tiny"


def test_bare_payload(tiny: Path, tmp_path: Path) -> None:
    payload = _payload(tiny, tmp_path / "payload.bin")
    result = run("inventory", "--json", str(payload))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["input"]["format"] == "payload"
    assert "/system/app/A/A.apk" in {f["device_path"] for f in doc["files"]}


def test_bare_ext4_image_named_by_label(tiny: Path, tmp_path: Path) -> None:
    payload = _payload(tiny, tmp_path / "payload.bin")
    Payload.open(Window(payload)).extract("vendor", tmp_path / "v.img")
    result = run("inventory", "--json", str(tmp_path / "v.img"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["input"]["format"] == "ext4"
    assert "/vendor/app/V/V.apk" in {f["device_path"] for f in doc["files"]}


def test_truncated_payload(tiny: Path, tmp_path: Path) -> None:
    payload = _payload(tiny, tmp_path / "payload.bin")
    data = payload.read_bytes()
    payload.write_bytes(data[:100])
    assert_one_line_error(run("inventory", str(payload)), 4, "truncated payload")
    payload.write_bytes(data[:20])
    assert_one_line_error(run("inventory", str(payload)), 4, "truncated payload")


def test_manifest_size_past_end(tiny: Path, tmp_path: Path) -> None:
    payload = _payload(tiny, tmp_path / "payload.bin")
    data = bytearray(payload.read_bytes())
    data[12:20] = (len(data) * 2).to_bytes(8, "big")
    payload.write_bytes(bytes(data))
    assert_one_line_error(run("inventory", str(payload)), 4, "past the end")


def test_bad_magic(tiny: Path, tmp_path: Path) -> None:
    payload = _payload(tiny, tmp_path / "payload.bin")
    data = bytearray(payload.read_bytes())
    data[0:4] = b"CrAV"
    payload.write_bytes(bytes(data))
    assert_one_line_error(run("inventory", str(payload)), 2, "not a firmware format")


def test_hash_mismatch_fails_one_partition_only(tiny: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.zip"
    shutil.copy(tiny, broken)
    with zipfile.ZipFile(broken) as zf:
        info = zf.getinfo("payload.bin")
    # The stored payload starts after the local header; find a vendor blob and flip a byte.
    with open(broken, "rb") as f:
        f.seek(info.header_offset + 26)
        start = info.header_offset + 30 + sum(int.from_bytes(f.read(2), "little") for _ in range(2))
    pl = Payload.open(Window(broken, start, info.file_size))
    vendor = pl.partition("vendor")
    op = next(op for op in vendor.operations if op.data_length)
    pos = start + pl.data_start + op.data_offset + op.data_length // 2
    data = bytearray(broken.read_bytes())
    data[pos] ^= 0xFF
    broken.write_bytes(bytes(data))
    result = run("inventory", "--json", str(broken))
    assert result.exit_code == 5, result.output
    doc = json.loads(result.stdout)
    status = {c["source"].rsplit(" > ", 1)[-1]: c for c in doc["coverage"]}
    assert status["vendor"]["status"] == "failed"
    assert "SHA-256 does not match" in status["vendor"]["reason"]
    assert status["system"]["status"] == status["product"]["status"] == "read"
    parts = {f["partition"] for f in doc["files"]}
    assert parts == {"system", "product"}
    assert "vendor" in result.stderr


def test_corpus_full_payload(corpus: Path) -> None:
    result = run("inventory", "--json", str(corpus / "firmware/ab-ota-payload/full_payload.bin"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    status = {c["source"].rsplit(" > ", 1)[-1]: c["status"] for c in doc["coverage"]}
    # kernel holds an ext2 test image; root is squashfs, which fwscan does not read: skipped.
    assert status == {"full_payload.bin": "read", "kernel": "read", "root": "skipped"}
    assert "not a filesystem" in result.stderr
    names = {f["path"] for f in doc["files"]}
    assert "regular-16k" in names


def test_corpus_delta_payload_needs_source(corpus: Path) -> None:
    result = run("inventory", str(corpus / "firmware/ab-ota-payload/delta_payload.bin"))
    assert_one_line_error(result, 6, "the source build is needed")
    assert "SOURCE_COPY" in result.stderr


def test_corpus_ext2_image(corpus: Path) -> None:
    result = run("inventory", "--json", str(corpus / "firmware/ext2/disk_ext2_1k.img"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    links = [f for f in doc["files"] if f["type"] == "symlink"]
    assert links
    assert all("link_target" in f and not f["sha256"] for f in links)


def test_unpack_refuses_non_empty_output(tiny: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    result = run("unpack", str(tiny), "-o", str(tmp_path / "out"))
    assert_one_line_error(result, 2, "not empty")


def test_corpus_delta_payload_with_source(corpus: Path, tmp_path: Path) -> None:
    import tarfile

    with tarfile.open(corpus / "firmware/ext2/sample_images.tar.bz2") as tf:
        member = tf.getmember("disk_ext2_4k_empty.img")
        (tmp_path / "old.img").write_bytes(tf.extractfile(member).read())  # type: ignore[union-attr]
    delta = str(corpus / "firmware/ab-ota-payload/delta_payload.bin")
    result = run("inventory", "--json", delta, "--source", f"kernel={tmp_path / 'old.img'}")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    status = {c["source"].rsplit(" > ", 1)[-1]: c["status"] for c in doc["coverage"]}
    assert status["kernel"] == "read"
    assert "regular-16k" in {f["path"] for f in doc["files"]}
    bad = run("inventory", delta, "--source", str(tmp_path / "missing.img"))
    assert_one_line_error(bad, 2, "no such file")

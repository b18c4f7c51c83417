"""The scan end to end: the Nokia 7 plus case, determinism, the schema, targets, isolation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from conftest import REPO

from fwscan.cli import cli
from fwscan.findings import Finding, Kind, Severity
from fwscan.pipeline import ScanOptions, scan
from fwscan.scanresult import ScanResult

SCHEMA = json.loads((REPO / "fwscan/data/schemas/scan.schema.json").read_text())
AUTOREG = "com.qualcomm.qti.autoregistration"


def by(result: ScanResult, component: str, kind: Kind) -> list[Finding]:
    return [f for f in result.findings if f.component == component and f.kind is kind]


@pytest.fixture(scope="module")
def scans(
    samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ScanResult]:
    cache = tmp_path_factory.mktemp("cache")
    return {
        name: scan(path, ScanOptions(jobs=2, cache_dir=cache))[0] for name, path in samples.items()
    }


def test_registration_app_flow_is_reported_first(scans: dict[str, ScanResult]) -> None:
    pre = scans["nokia7plus-prepatch"]
    first = pre.findings[0]
    assert (first.kind, first.component, first.severity) == (Kind.FLOW, AUTOREG, Severity.HIGH)
    assert first.target == "http://zzhc.vnet.cn:9998/"
    assert first.category == "imei+iccid+imsi+cell_location"
    attrs = dict(first.attributes)
    assert attrs["sink"] == "network"
    assert attrs["host"] == "zzhc.vnet.cn"
    assert attrs["owner"] == "China Telecom, CN"
    assert attrs["cleartext"] == "true"
    ev = first.evidence
    apk = "/system/priv-app/AutoRegistration/AutoRegistration.apk!classes.dex"
    assert all(e.artifact == apk for e in ev)
    cls = "Lcom/qualcomm/qti/autoregistration/RegistrationService;"
    assert {e.class_name for e in ev} == {cls}
    assert {e.method for e in ev} == {"registerDevice"}
    assert all(e.descriptor == "(Landroid/content/Context;)V" for e in ev)
    assert all(isinstance(e.offset, int) for e in ev)
    details = {e.detail for e in ev}
    assert "read TelephonyManager.getImei" in details
    assert any(d.startswith("sink ") for d in details)


def test_registration_app_reads_endpoint_and_privilege(scans: dict[str, ScanResult]) -> None:
    pre = scans["nokia7plus-prepatch"]
    reads = {f.category for f in by(pre, AUTOREG, Kind.READ)}
    assert reads == {"imei", "iccid", "imsi", "cell_location"}
    (endpoint,) = by(pre, AUTOREG, Kind.ENDPOINT)
    assert endpoint.rule.startswith("endpoint.")
    assert endpoint.rule != "endpoint.unlisted"
    assert endpoint.target == "zzhc.vnet.cn"
    assert endpoint.severity >= Severity.HIGH
    (priv,) = by(pre, AUTOREG, Kind.PRIVILEGE)
    assert "priv-app" in priv.title
    assert "sharedUserId android.uid.phone" in priv.title
    app = next(a for a in pre.apps if a.package == AUTOREG)
    assert (app.placement, app.privileged, app.shared_user_id) == (
        "priv-app",
        True,
        "android.uid.phone",
    )
    assert app.analysis == "complete"
    assert "platform_key" in app.certificates[0]["flags"]
    grants = [f for f in pre.findings if f.kind is Kind.PERMISSION and f.component == AUTOREG]
    assert {g.target for g in grants} == {"android.permission.READ_PRIVILEGED_PHONE_STATE"}


def test_february_build_has_none_of_it(scans: dict[str, ScanResult]) -> None:
    feb = scans["nokia7plus-feb-patch"]
    assert not [f for f in feb.findings if f.component == AUTOREG]
    assert not [f for f in feb.findings if "zzhc.vnet.cn" in f.target]
    assert AUTOREG not in {a.package for a in feb.apps}


def test_display_only_imei_is_a_read_not_a_flow(scans: dict[str, ScanResult]) -> None:
    pre = scans["nokia7plus-prepatch"]
    settings = "com.android.settings"
    assert {f.category for f in by(pre, settings, Kind.READ)} == {"imei"}
    assert by(pre, settings, Kind.FLOW) == []
    (read,) = by(pre, settings, Kind.READ)
    assert read.severity < Severity.HIGH


def test_other_flows_and_natives(scans: dict[str, ScanResult]) -> None:
    pre = scans["nokia7plus-prepatch"]
    (weather,) = by(pre, "com.hmdglobal.weather", Kind.FLOW)
    assert (weather.category, dict(weather.attributes)["sink"]) == ("location", "network")
    (camera,) = by(pre, "com.android.camera2", Kind.FLOW)
    assert dict(camera.attributes)["sink"] == "file"
    assert camera.severity == Severity.LOW
    daemon = [f for f in pre.findings if f.component == "/vendor/bin/xtra-daemon"]
    assert {f.target for f in daemon if f.kind is Kind.ENDPOINT} == {
        "xtrapath1.izatcloud.net",
        "xtrapath2.izatcloud.net",
    }
    native_ep = next(f for f in daemon if f.kind is Kind.ENDPOINT)
    assert native_ep.evidence[0].section == ".rodata"
    assert native_ep.evidence[0].offset is not None
    assert any(f.kind is Kind.NATIVE and f.target == "ro.serialno" for f in daemon)
    (service,) = [f for f in pre.findings if f.kind is Kind.SERVICE]
    assert service.target == "/vendor/bin/xtra-daemon"
    lib = by(pre, "com.qualcomm.location", Kind.ENDPOINT)
    assert lib
    assert lib[0].evidence[0].artifact.endswith("!lib/arm64-v8a/liblocationservice_jni.so")


def test_json_is_deterministic_and_valid(samples: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    out1, out2 = tmp_path / "a.json", tmp_path / "b.json"
    pre = str(samples["nokia7plus-prepatch"])
    r1 = runner.invoke(cli, ["scan", pre, "--json", str(out1), "--cache-dir", str(tmp_path / "c")])
    assert r1.exit_code == 0, r1.output
    r2 = runner.invoke(cli, ["scan", pre, "--json", str(out2), "--no-cache", "-q"])
    assert r2.exit_code == 0, r2.output
    assert out1.read_bytes() == out2.read_bytes()
    doc = json.loads(out1.read_text())
    jsonschema.validate(doc, SCHEMA)
    assert (
        doc["input"]["sha256"] == __import__("hashlib").sha256(Path(pre).read_bytes()).hexdigest()
    )
    assert len(doc["signatures"]["sha256"]) == 64
    fps = [f["fingerprint"] for f in doc["findings"]]
    assert len(fps) == len(set(fps))
    assert "zzhc.vnet.cn" in r1.output


def test_fingerprints_stable_across_builds(scans: dict[str, ScanResult]) -> None:
    pre = {f.fingerprint: f for f in scans["nokia7plus-prepatch"].findings}
    feb = {f.fingerprint: f for f in scans["nokia7plus-feb-patch"].findings}
    removed = {pre[k].component for k in set(pre) - set(feb)}
    assert AUTOREG in removed
    assert not set(feb) - set(pre)


def test_second_scan_comes_from_cache(samples: dict[str, Path], tmp_path: Path) -> None:
    options = ScanOptions(jobs=1, cache_dir=tmp_path)
    _, cold = scan(samples["nokia7plus-prepatch"], options)
    assert cold.analysed == cold.artifacts > 0
    _, warm = scan(samples["nokia7plus-prepatch"], options)
    assert (warm.cached, warm.analysed) == (warm.artifacts, 0)
    _, feb = scan(samples["nokia7plus-feb-patch"], options)
    # Only the two updated apps are new in the February build.
    assert feb.analysed == 2


def test_bare_apk_and_directory_targets(samples: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "u"
    assert (
        CliRunner()
        .invoke(cli, ["unpack", str(samples["nokia7plus-prepatch"]), "-o", str(out)])
        .exit_code
        == 0
    )
    apk = out / "files/system/priv-app/AutoRegistration/AutoRegistration.apk"
    single, _ = scan(apk, ScanOptions(jobs=1))
    assert single.input.format == "file"
    assert any(f.kind is Kind.FLOW and f.component == AUTOREG for f in single.findings)
    tree, _ = scan(out / "files", ScanOptions(jobs=1))
    assert tree.input.format == "directory"
    assert any(f.kind is Kind.FLOW and f.component == AUTOREG for f in tree.findings)
    elf, _ = scan(out / "files/vendor/bin/xtra-daemon", ScanOptions(jobs=1))
    assert any(f.kind is Kind.ENDPOINT for f in elf.findings)


def test_broken_artifacts_are_recorded_not_fatal(corpus: Path, tmp_path: Path) -> None:
    folder = tmp_path / "apps"
    folder.mkdir()
    for name in ("Invalid.apk", "CertChain.apk", "hello-world.apk"):
        src = corpus / "androguard" / name
        if src.exists():
            shutil.copy(src, folder / name)
    (folder / "truncated.apk").write_bytes(
        (corpus / "droidbench/GeneralJava/Loop1.apk").read_bytes()[:3000]
    )
    (folder / "garbage.dex").write_bytes(b"dex\n035\0" + b"\xff" * 200)
    result, stats = scan(folder, ScanOptions(jobs=2))
    paths = {e.path for e in result.errors}
    assert "/garbage.dex" in paths
    assert any(a.analysis == "failed" for a in result.apps)
    assert stats.artifacts >= 4


def test_timeout_becomes_an_error_record(corpus: Path) -> None:
    big = corpus / "large" / "Yosemite.apk"
    if not big.exists():
        pytest.skip("large corpus APK absent")
    result, stats = scan(big, ScanOptions(jobs=1, timeout=0.01))
    (err,) = result.errors
    assert err.reason == "timeout"
    assert stats.failed == 1

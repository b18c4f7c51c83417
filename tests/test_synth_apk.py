"""Cross-checks of the synthesized AXML manifests, signed APKs/JARs and ELF files.

Every check reads our output with an independent, real tool: androguard (AXML, APK, v1
signature), ``openssl cms`` (PKCS#7), ``apksigner`` and ``jarsigner`` (JAR signing), LIEF,
``readelf`` and ``file`` (ELF). Nothing is mocked.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lief
import pytest
from androguard.core.apk import APK
from asn1crypto import cms  # type: ignore[import-untyped]
from conftest import need_tool
from loguru import logger

from fwscan.errors import ManifestError
from fwscan.synth.apk import KEY_NAMES, SigningKey, build_apk, build_jar, load_key
from fwscan.synth.axml import (
    Component,
    ManifestSpec,
    build_axml,
    protection_level_value,
)
from fwscan.synth.elf import build_elf, elf_hash

logger.remove()  # androguard logs through loguru; the tests collect what they need below
lief.logging.disable()

NS = "{http://schemas.android.com/apk/res/android}"
LABEL = "<script>alert(\"x\")</script> & 'quotes' \u00fc\u4e2d <b>"
DEX1 = b"dex\n035\x00" + bytes(range(256)) * 4
DEX2 = b"dex\n035\x00second"

SPEC = ManifestSpec(
    package="com.example.fwscan.app",
    version_code=2_100_000_042,
    version_name='4.2 "beta" <1>',
    shared_user_id="android.uid.system",
    min_sdk=24,
    target_sdk=29,
    uses_permissions=(
        "android.permission.INTERNET",
        "android.permission.READ_SMS",
        "com.example.fwscan.permission.PRIVATE",
    ),
    permissions=(
        ("com.example.fwscan.permission.PRIVATE", "signature|privileged"),
        ("com.example.fwscan.permission.OPEN", "dangerous"),
    ),
    label=LABEL,
    application_class="com.example.fwscan.App",
    components=(
        Component(
            "activity",
            "com.example.fwscan.Main",
            exported=True,
            actions=("android.intent.action.MAIN",),
        ),
        Component(
            "service",
            "com.example.fwscan.Backdoor",
            exported=True,
            actions=("com.example.fwscan.action.RUN", "com.example.fwscan.action.STOP"),
        ),
        Component(
            "service",
            "com.example.fwscan.Guarded",
            exported=False,
            permission="com.example.fwscan.permission.PRIVATE",
        ),
        Component("receiver", "com.example.fwscan.Boot", actions=("a.b.BOOT",)),
        Component(
            "provider",
            "com.example.fwscan.Data",
            exported=True,
            authorities="com.example.fwscan.data;com.example.fwscan.more",
        ),
    ),
)


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """Warnings and errors androguard logs while the test runs."""
    seen: list[str] = []
    sink = logger.add(lambda message: seen.append(str(message)), level="WARNING")
    yield seen
    logger.remove(sink)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return load_key("platform")


@pytest.fixture(scope="module")
def lib_so() -> bytes:
    return build_elf(
        machine="aarch64",
        kind="shared",
        soname="libfwscan.so",
        needed=("liblog.so", "libc.so"),
        imports=("__android_log_print",),
        exports=("JNI_OnLoad",),
        rodata_strings=("hello",),
    )


@pytest.fixture(scope="module")
def apk_path(tmp_path_factory: pytest.TempPathFactory, key: SigningKey, lib_so: bytes) -> Path:
    path = tmp_path_factory.mktemp("apk") / "app.apk"
    build_apk(
        path,
        manifest=build_axml(SPEC),
        dex_files=[DEX1, DEX2],
        native_libs={"arm64-v8a/libfwscan.so": lib_so, "armeabi-v7a/libother.so": b"x" * 10},
        assets={"config/settings.json": b'{"debug": true}', "empty.bin": b""},
        key=key,
    )
    return path


# --- AXML through androguard ---------------------------------------------------------------


def test_androguard_reads_the_manifest(apk_path: Path, warnings: list[str]) -> None:
    apk = APK(str(apk_path))
    assert apk.is_valid_APK()
    assert apk.get_package() == SPEC.package
    assert apk.get_androidversion_code() == str(SPEC.version_code)
    assert apk.get_androidversion_name() == SPEC.version_name
    assert apk.get_attribute_value("manifest", "sharedUserId") == SPEC.shared_user_id
    assert apk.get_min_sdk_version() == "24"
    assert apk.get_target_sdk_version() == "29"
    # androguard's accessors go through sets: compare sets, and the order through the tree.
    assert set(apk.get_permissions()) == set(SPEC.uses_permissions)
    xml = apk.get_android_manifest_xml()
    assert [e.get(NS + "name") for e in xml.findall("uses-permission")] == list(
        SPEC.uses_permissions
    )
    declared = apk.get_declared_permissions_details()
    assert set(declared) == {name for name, _ in SPEC.permissions}
    for name, level in SPEC.permissions:
        assert int(declared[name]["protectionLevel"], 16) == protection_level_value(level)
    assert protection_level_value("signature|privileged") == 0x12
    assert apk.get_app_name() == LABEL
    assert apk.get_attribute_value("application", "name") == "com.example.fwscan.App"

    assert apk.get_activities() == ["com.example.fwscan.Main"]
    assert sorted(apk.get_services()) == [
        "com.example.fwscan.Backdoor",
        "com.example.fwscan.Guarded",
    ]
    assert apk.get_receivers() == ["com.example.fwscan.Boot"]
    assert apk.get_providers() == ["com.example.fwscan.Data"]
    assert apk.get_intent_filters("service", "com.example.fwscan.Backdoor") == {
        "action": ["com.example.fwscan.action.RUN", "com.example.fwscan.action.STOP"]
    }

    app = xml.find("application")
    seen = [
        (el.get(NS + "name"), (el.tag, el.get(NS + "exported"), el.get(NS + "permission")))
        for el in app
    ]
    assert dict(seen) == {
        "com.example.fwscan.Main": ("activity", "true", None),
        "com.example.fwscan.Backdoor": ("service", "true", None),
        "com.example.fwscan.Guarded": (
            "service",
            "false",
            "com.example.fwscan.permission.PRIVATE",
        ),
        "com.example.fwscan.Boot": ("receiver", None, None),
        "com.example.fwscan.Data": ("provider", "true", None),
    }
    assert [name for name, _ in seen] == [c.name for c in SPEC.components]
    provider = app.find("provider")
    assert provider.get(NS + "authorities") == "com.example.fwscan.data;com.example.fwscan.more"
    assert not apk.get_android_manifest_axml().is_packed()
    assert warnings == []


def test_axml_has_typed_values_and_real_resource_ids() -> None:
    from androguard.core.axml import AXMLParser

    parser = AXMLParser(build_axml(SPEC))
    assert parser.is_valid()
    # Resource ids of the android: attribute names, checked against public.xml.
    expected = {
        "label": 0x01010001,
        "name": 0x01010003,
        "permission": 0x01010006,
        "protectionLevel": 0x01010009,
        "sharedUserId": 0x0101000B,
        "exported": 0x01010010,
        "authorities": 0x01010018,
        "minSdkVersion": 0x0101020C,
        "versionCode": 0x0101021B,
        "versionName": 0x0101021C,
        "targetSdkVersion": 0x01010270,
    }
    types: dict[str, int] = {}
    while (event := next(parser)) != 1:  # END_DOCUMENT
        if event == 2:  # START_TAG
            for i in range(parser.getAttributeCount()):
                name = parser.getAttributeName(i)
                types[name] = parser.getAttributeValueType(i)
    ids = parser.m_resourceIDs
    assert {parser.sb[i]: ids[i] for i in range(len(ids))} == expected
    assert types["versionCode"] == 0x10  # TYPE_INT_DEC
    assert types["minSdkVersion"] == 0x10
    assert types["exported"] == 0x12  # TYPE_INT_BOOLEAN
    assert types["protectionLevel"] == 0x11  # TYPE_INT_HEX, as aapt writes flags
    assert types["label"] == types["package"] == types["name"] == 0x03  # TYPE_STRING


def test_axml_round_trips_any_text() -> None:
    from androguard.core.axml import AXMLPrinter

    label = "emoji \U0001f600 quote\" apos' amp& lt< tab\t nl\n"
    long_name = "com.example." + "x" * 40_000  # length needs the two-unit UTF-16 form
    spec = ManifestSpec(
        package="com.example.t",
        version_code=0,
        version_name="",
        label=label,
        components=(Component("activity", long_name),),
    )
    xml = AXMLPrinter(build_axml(spec)).get_xml_obj()
    assert xml.find("application").get(NS + "label") == label
    assert xml.find("application/activity").get(NS + "name") == long_name
    assert xml.get(NS + "versionName") == ""


def test_framework_package_name_is_allowed() -> None:
    spec = ManifestSpec(package="android", version_code=28, version_name="9")
    assert build_axml(spec) == build_axml(spec)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"package": "example"}, "package"),
        ({"package": "com..example"}, "package"),
        ({"package": "com.1example"}, "package"),
        ({"package": "com.exa mple"}, "package"),
        ({"version_code": -1}, "version_code"),
        ({"version_code": 2**31}, "version_code"),
        ({"version_code": True}, "version_code"),
        ({"version_code": "12"}, "version_code"),
        ({"min_sdk": 0}, "min_sdk"),
        ({"shared_user_id": "system"}, "shared_user_id"),
        ({"label": "bad \ud800 surrogate"}, "label"),
        ({"uses_permissions": ("",)}, "uses_permissions[0]"),
        ({"permissions": (("a.b", "signature|bogus"),)}, "permissions[0].protectionLevel"),
        ({"components": (Component("fragment", "a.B"),)}, "components[0].kind"),
        ({"components": (Component("provider", "a.B"),)}, "components[0].authorities"),
        (
            {"components": (Component("activity", "a.B", authorities="x"),)},
            "components[0].authorities",
        ),
    ],
)
def test_invalid_manifests_are_rejected(changes: dict[str, Any], field: str) -> None:
    spec = dataclasses.replace(ManifestSpec("com.example.ok", 1, "1"), **changes)
    with pytest.raises(ManifestError, match=re.escape(field)):
        build_axml(spec)


# --- the zip and its v1 signature ----------------------------------------------------------


def _manifest_sections(raw: bytes) -> list[tuple[bytes, dict[str, str]]]:
    """The sections of a JAR manifest: (raw bytes with the blank line, unwrapped headers)."""
    sections = []
    for chunk in re.findall(rb"(?s).*?\r\n\r\n", raw):
        headers: dict[str, str] = {}
        text = chunk.decode().replace("\r\n ", "")
        for line in text.split("\r\n"):
            if line:
                name, _, value = line.partition(": ")
                headers[name] = value
        sections.append((chunk, headers))
    assert b"".join(chunk for chunk, _ in sections) == raw
    return sections


def _b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_zip_layout(apk_path: Path) -> None:
    with zipfile.ZipFile(apk_path) as zf:
        assert zf.testzip() is None
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == [
            "META-INF/MANIFEST.MF",
            "META-INF/CERT.SF",
            "META-INF/CERT.RSA",
            "AndroidManifest.xml",
            "assets/config/settings.json",
            "assets/empty.bin",
            "classes.dex",
            "classes2.dex",
            "lib/arm64-v8a/libfwscan.so",
            "lib/armeabi-v7a/libother.so",
        ]
        assert zf.read("classes.dex") == DEX1
        assert zf.read("classes2.dex") == DEX2
        raw = apk_path.read_bytes()
        for info in infos:
            assert info.date_time == (2009, 1, 1, 0, 0, 0)
            assert info.create_system == 0  # MS-DOS, as Java's ZipOutputStream writes
            assert info.external_attr & 0xFFFF == 0  # no DOS attributes
            if info.filename.endswith(".so"):
                assert info.compress_type == zipfile.ZIP_STORED
                # The data of an uncompressed library starts on a 4 KiB boundary.
                local = raw[info.header_offset : info.header_offset + 30]
                name_len, extra_len = (
                    int.from_bytes(local[26:28], "little"),
                    int.from_bytes(local[28:30], "little"),
                )
                assert (info.header_offset + 30 + name_len + extra_len) % 4096 == 0
            else:
                assert info.compress_type == zipfile.ZIP_DEFLATED


def test_v1_digests_recompute(apk_path: Path) -> None:
    with zipfile.ZipFile(apk_path) as zf:
        mf = zf.read("META-INF/MANIFEST.MF")
        sf = zf.read("META-INF/CERT.SF")
        contents = {n: zf.read(n) for n in zf.namelist() if not n.startswith("META-INF/")}
    mf_sections = _manifest_sections(mf)
    main_raw, main = mf_sections[0]
    assert main == {"Manifest-Version": "1.0", "Created-By": "1.0 (fwscan)"}
    listed = {h["Name"]: h["SHA-256-Digest"] for _, h in mf_sections[1:]}
    assert listed == {name: _b64sha256(data) for name, data in contents.items()}

    sf_sections = _manifest_sections(sf)
    sf_main = sf_sections[0][1]
    assert sf_main["Signature-Version"] == "1.0"
    assert sf_main["SHA-256-Digest-Manifest"] == _b64sha256(mf)
    assert sf_main["SHA-256-Digest-Manifest-Main-Attributes"] == _b64sha256(main_raw)
    assert "X-Android-APK-Signed" not in sf_main  # there is no v2 signature
    sf_digests = {h["Name"]: h["SHA-256-Digest"] for _, h in sf_sections[1:]}
    assert sf_digests == {h["Name"]: _b64sha256(raw) for raw, h in mf_sections[1:]}
    for line in mf.split(b"\r\n") + sf.split(b"\r\n"):
        assert len(line) <= 72


def test_long_entry_names_wrap_in_the_manifest(tmp_path: Path, key: SigningKey) -> None:
    name = "very/" * 20 + "d\u00e9j\u00e0-vu.txt"
    path = tmp_path / "long.apk"
    build_apk(path, manifest=build_axml(SPEC), dex_files=[], assets={name: b"1"}, key=key)
    with zipfile.ZipFile(path) as zf:
        mf = zf.read("META-INF/MANIFEST.MF")
    names = [h["Name"] for _, h in _manifest_sections(mf)[1:]]
    assert f"assets/{name}" in names
    assert all(len(line) <= 72 for line in mf.split(b"\r\n"))
    _openssl_verify(path, tmp_path)


def _openssl_verify(path: Path, tmp_path: Path) -> None:
    openssl = need_tool("openssl")
    with zipfile.ZipFile(path) as zf:
        (tmp_path / "CERT.SF").write_bytes(zf.read("META-INF/CERT.SF"))
        (tmp_path / "CERT.RSA").write_bytes(zf.read("META-INF/CERT.RSA"))
    proc = subprocess.run(
        [
            openssl,
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-binary",
            "-noverify",
            "-content",
            str(tmp_path / "CERT.SF"),
            "-in",
            str(tmp_path / "CERT.RSA"),
            "-out",
            str(tmp_path / "verified.sf"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Verification successful" in proc.stderr
    assert (tmp_path / "verified.sf").read_bytes() == (tmp_path / "CERT.SF").read_bytes()


def test_pkcs7_signature_verifies_with_openssl(
    apk_path: Path, tmp_path: Path, key: SigningKey
) -> None:
    _openssl_verify(apk_path, tmp_path)
    signed = cms.ContentInfo.load((tmp_path / "CERT.RSA").read_bytes())
    assert signed["content_type"].native == "signed_data"
    content = signed["content"]
    assert content["encap_content_info"]["content"].native is None  # detached
    assert [c.chosen.dump() for c in content["certificates"]] == [key.certificate_der]
    (signer,) = content["signer_infos"]
    assert signer["digest_algorithm"]["algorithm"].native == "sha256"
    assert not signer["signed_attrs"].native


def test_androguard_verifies_the_v1_signature(
    apk_path: Path, key: SigningKey, warnings: list[str]
) -> None:
    apk = APK(str(apk_path))
    assert apk.is_signed_v1()
    assert not apk.is_signed_v2()
    assert apk.get_signature_names() == ["META-INF/CERT.RSA"]
    certs = apk.get_certificates_v1()  # only certificates whose signature verifies
    assert [c.sha256.hex() for c in certs] == [key.cert_sha256]
    assert certs[0].subject.native["common_name"] == "platform"
    assert warnings == []


def test_apksigner_verifies(apk_path: Path, key: SigningKey) -> None:
    apksigner = need_tool("apksigner")
    proc = subprocess.run(
        [apksigner, "verify", "--min-sdk-version", "21", "-v", "--print-certs", str(apk_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Verified using v1 scheme (JAR signing): true" in out
    assert f"Signer #1 certificate SHA-256 digest: {key.cert_sha256}" in out
    assert "WARNING" not in out
    assert "ERROR" not in out


def test_jars_verify_with_jarsigner(tmp_path: Path, key: SigningKey) -> None:
    jarsigner = need_tool("jarsigner")
    signed, unsigned = tmp_path / "signed.jar", tmp_path / "unsigned.jar"
    build_jar(signed, dex_files=[DEX1, DEX2], key=key)
    build_jar(unsigned, dex_files=[DEX1], key=None)
    with zipfile.ZipFile(unsigned) as zf:
        assert zf.namelist() == ["META-INF/MANIFEST.MF", "classes.dex"]
        assert zf.read("META-INF/MANIFEST.MF").startswith(b"Manifest-Version: 1.0\r\n")
    with zipfile.ZipFile(signed) as zf:
        assert zf.namelist()[3:] == ["classes.dex", "classes2.dex"]
    proc = subprocess.run(
        [jarsigner, "-verify", "-verbose", str(signed)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "jar verified." in proc.stdout
    assert re.search(r"^sm\s+\d+ .* classes2\.dex$", proc.stdout, re.MULTILINE)
    proc = subprocess.run(
        [jarsigner, "-verify", str(unsigned)], capture_output=True, text=True, check=False
    )
    assert "jar is unsigned" in proc.stdout
    _openssl_verify(signed, tmp_path)


def test_building_twice_gives_identical_bytes(
    tmp_path: Path, apk_path: Path, key: SigningKey, lib_so: bytes
) -> None:
    again = tmp_path / "again.apk"
    build_apk(
        again,
        manifest=build_axml(SPEC),
        dex_files=[DEX1, DEX2],
        native_libs={"armeabi-v7a/libother.so": b"x" * 10, "arm64-v8a/libfwscan.so": lib_so},
        assets={"empty.bin": b"", "config/settings.json": b'{"debug": true}'},
        key=key,
    )
    assert again.read_bytes() == apk_path.read_bytes()
    other_key = tmp_path / "other.apk"
    build_apk(other_key, manifest=build_axml(SPEC), dex_files=[DEX1], key=load_key("media"))
    build_apk(
        tmp_path / "same.apk", manifest=build_axml(SPEC), dex_files=[DEX1], key=load_key("media")
    )
    assert other_key.read_bytes() == (tmp_path / "same.apk").read_bytes()
    jar1, jar2 = tmp_path / "1.jar", tmp_path / "2.jar"
    build_jar(jar1, dex_files=[DEX1], key=key)
    build_jar(jar2, dex_files=[DEX1], key=key)
    assert jar1.read_bytes() == jar2.read_bytes()


@pytest.mark.parametrize(
    ("native_libs", "assets"),
    [
        ({"mips/libx.so": b""}, {}),
        ({"arm64-v8a/libx.txt": b""}, {}),
        ({"arm64-v8a/sub/libx.so": b""}, {}),
        ({}, {"../escape": b""}),
        ({}, {"/abs": b""}),
        ({}, {"a//b": b""}),
        ({}, {"new\nline": b""}),
    ],
)
def test_bad_entry_paths_are_rejected(
    tmp_path: Path, key: SigningKey, native_libs: dict[str, bytes], assets: dict[str, bytes]
) -> None:
    with pytest.raises(ManifestError):
        build_apk(
            tmp_path / "bad.apk",
            manifest=b"",
            dex_files=[],
            native_libs=native_libs,
            assets=assets,
            key=key,
        )
    assert not (tmp_path / "bad.apk").exists()


def test_test_keys_load() -> None:
    for name in KEY_NAMES:
        key = load_key(name)
        cert = key.certificate
        assert key.name == name
        assert key.cert_sha256 == hashlib.sha256(key.certificate_der).hexdigest()
        assert cert.subject.rfc4514_string() == f"CN={name},O=fwscan test keys,C=US"
        assert cert.issuer == cert.subject
        assert cert.not_valid_before_utc.year == 2008
        assert cert.not_valid_after_utc.year == 2048
        assert key.private_key.key_size == 2048
    assert len({load_key(n).cert_sha256 for n in KEY_NAMES}) == len(KEY_NAMES)
    for bad in ("nosuchkey", "../platform", "Platform", ""):
        with pytest.raises(ManifestError):
            load_key(bad)


# --- ELF -----------------------------------------------------------------------------------

ELF_CASES = [
    ("aarch64", "shared", "libfoo.so"),
    ("aarch64", "exec", None),
    ("arm", "shared", "libbar.so"),
    ("arm", "exec", None),
]
NEEDED = ("liblog.so", "libc.so", "libm.so")
IMPORTS = ("__android_log_print", "malloc", "free", "system")
EXPORTS = ("JNI_OnLoad", "Java_com_example_Foo_bar", "Java_com_example_Foo_baz")
RODATA = ("/system/bin/sh", "su -c %s", "token=\u00fc\u00df", "")


def _elf(machine: str, kind: str, soname: str | None) -> bytes:
    return build_elf(
        machine=machine,
        kind=kind,
        soname=soname,
        needed=NEEDED,
        imports=IMPORTS,
        exports=EXPORTS,
        rodata_strings=RODATA,
    )


@pytest.mark.parametrize(("machine", "kind", "soname"), ELF_CASES)
def test_lief_reads_the_elf(machine: str, kind: str, soname: str | None) -> None:
    data = _elf(machine, kind, soname)
    binary = lief.ELF.parse(list(data))
    assert binary is not None
    assert binary.header.machine_type == (
        lief.ELF.ARCH.AARCH64 if machine == "aarch64" else lief.ELF.ARCH.ARM
    )
    assert binary.header.identity_class == (
        lief.ELF.Header.CLASS.ELF64 if machine == "aarch64" else lief.ELF.Header.CLASS.ELF32
    )
    assert binary.header.file_type == lief.ELF.Header.FILE_TYPE.DYN
    assert binary.is_pie == (kind == "exec")
    if kind == "exec":
        assert binary.interpreter == (
            "/system/bin/linker64" if machine == "aarch64" else "/system/bin/linker"
        )
        assert binary.entrypoint != 0
    entry = binary.get(lief.ELF.DynamicEntry.TAG.SONAME)
    if soname is None:
        assert entry is None
    else:
        assert isinstance(entry, lief.ELF.DynamicSharedObject)
        assert entry.name == soname
    assert list(binary.libraries) == list(NEEDED)
    assert [f.name for f in binary.imported_functions] == list(IMPORTS)
    assert [f.name for f in binary.exported_functions] == list(EXPORTS)
    text = binary.get_section(".text")
    assert text is not None
    for sym in binary.exported_symbols:
        assert sym.type == lief.ELF.Symbol.TYPE.FUNC
        assert sym.binding == lief.ELF.Symbol.BINDING.GLOBAL
        assert text.virtual_address <= sym.value < text.virtual_address + text.size
    rodata_section = binary.get_section(".rodata")
    assert rodata_section is not None
    rodata = bytes(rodata_section.content)
    assert rodata.split(b"\x00")[:-1] == [s.encode() for s in RODATA]
    # Every dynamic symbol is found through the SysV hash table.
    table = binary.sysv_hash
    assert table is not None
    buckets, chains = list(table.buckets), list(table.chains)
    symbols = list(binary.dynamic_symbols)
    assert len(chains) == len(symbols)
    for index, sym in enumerate(symbols[1:], start=1):
        at = buckets[elf_hash(str(sym.name).encode()) % len(buckets)]
        while at not in (0, index):
            at = chains[at]
        assert at == index, sym.name


def test_elf_hash_matches_the_abi() -> None:
    assert elf_hash(b"") == 0
    assert elf_hash(b"printf") == 0x077905A6
    assert elf_hash(b"a" * 64) < 2**32


@pytest.mark.parametrize(("machine", "kind", "soname"), ELF_CASES)
def test_readelf_and_file_accept_the_elf(
    tmp_path: Path, machine: str, kind: str, soname: str | None
) -> None:
    readelf, file_tool = need_tool("readelf"), need_tool("file")
    path = tmp_path / "out.elf"
    path.write_bytes(_elf(machine, kind, soname))
    proc = subprocess.run(
        [readelf, "-a", "-W", "--lint", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert "Warning" not in proc.stdout
    assert "Error" not in proc.stdout
    for lib in NEEDED:
        assert f"Shared library: [{lib}]" in proc.stdout
    if soname:
        assert f"Library soname: [{soname}]" in proc.stdout
    assert "There are no relocations in this file." in proc.stdout
    proc = subprocess.run([file_tool, "-b", str(path)], capture_output=True, text=True, check=True)
    bits, arch = ("64", "ARM aarch64") if machine == "aarch64" else ("32", "ARM, EABI5")
    what = "pie executable" if kind == "exec" else "shared object"
    assert proc.stdout.startswith(f"ELF {bits}-bit LSB {what}, {arch}"), proc.stdout
    assert "dynamically linked" in proc.stdout


def test_minimal_elf_and_determinism() -> None:
    empty = build_elf(machine="arm", kind="shared", soname=None)
    binary = lief.ELF.parse(list(empty))
    assert binary is not None
    assert binary.get_section(".rodata") is None
    assert list(binary.libraries) == []
    assert _elf("aarch64", "shared", "libx.so") == _elf("aarch64", "shared", "libx.so")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"machine": "x86", "kind": "shared"},
        {"machine": "arm", "kind": "object"},
        {"machine": "arm", "kind": "shared", "exports": ("f", "f")},
        {"machine": "arm", "kind": "shared", "imports": ("f",), "exports": ("f",)},
        {"machine": "arm", "kind": "shared", "needed": ("lib\x00c.so",)},
        {"machine": "arm", "kind": "shared", "needed": ("",)},
        {"machine": "arm", "kind": "shared", "imports": "malloc"},
        {"machine": "arm", "kind": "shared", "rodata_strings": ("a\x00b",)},
    ],
)
def test_invalid_elf_requests_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ManifestError):
        build_elf(soname=None, **kwargs)  # type: ignore[arg-type]

"""fwscan.analyze.native: ELF facts and strings, DEX inside OAT and VDEX files."""

from __future__ import annotations

import random
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import need_tool

from fwscan.analyze.native import (
    MAX_STRING_CHARS,
    ElfString,
    NativeReport,
    analyze_elf,
    find_embedded_dex,
    looks_like_property,
    vdex_dex_files,
)
from fwscan.errors import UnpackError
from fwscan.findings import Severity
from fwscan.rules import NativeRule
from fwscan.synth.behaviours import Action, Component, build_app_dex
from fwscan.synth.elf import build_elf

IMPORTS = ["socket", "connect", "getaddrinfo", "__system_property_get", "curl_easy_perform"]
EXPORTS = ["Java_com_example_Native_send", "JNI_OnLoad", "helper_init"]
KEPT = [
    "http://zzhc.vnet.cn:9998/",
    "xtrapath1.izatcloud.net",
    "ro.serialno",
    "persist.radio.imei",
    "1.2.840.113554.1.2.2.1",
    "libfoo.so",
]
RODATA = [*KEPT, "no dots here", "abc", "gsm.sim.state"]
"""``abc`` is shorter than 4 characters; ``no dots here`` fails the filter below;
``gsm.sim.state`` passes it but matches no rule."""


def simple_filter(value: str) -> bool:
    return "://" in value or value.count(".") >= 1


def rule(rule_id: str, kind: str, pattern: str) -> NativeRule:
    return NativeRule(
        id=rule_id,
        kind=kind,
        pattern=pattern,
        category="serial" if "serial" in pattern else "imei",
        severity=Severity.HIGH,
        description="test rule",
        references=(),
    )


RULES = [
    rule("property.serial", "property", "ro.serialno"),
    rule("property.imei", "property", "persist.radio.imei*"),
    rule("function.socket", "function", "socket"),
]


def make_elf(
    machine: str = "aarch64", kind: str = "shared", rodata_strings: list[str] | None = None
) -> bytes:
    return build_elf(
        machine=machine,
        kind=kind,
        soname="libzzhc.so" if kind == "shared" else None,
        needed=["libc.so", "liblog.so", "libcurl.so"],
        imports=IMPORTS,
        exports=EXPORTS,
        rodata_strings=RODATA if rodata_strings is None else rodata_strings,
    )


def assert_offsets(data: bytes, report: NativeReport) -> None:
    for found in report.strings + report.properties:
        encoded = found.value.encode("utf-8")
        assert data[found.offset : found.offset + len(encoded)] == encoded, found


# --- synthesized ELF files -------------------------------------------------------------------


@pytest.mark.parametrize("machine", ["aarch64", "arm"])
@pytest.mark.parametrize("kind", ["shared", "exec"])
def test_synthesized_elf_facts(machine: str, kind: str) -> None:
    data = make_elf(machine, kind)
    report = analyze_elf(data, string_filter=simple_filter, property_rules=RULES)
    assert report.machine == machine
    assert report.elf_type == "dyn"  # Android executables are PIE
    assert report.soname == ("libzzhc.so" if kind == "shared" else None)
    assert report.needed == ("libc.so", "liblog.so", "libcurl.so")
    assert report.imports == tuple(sorted(IMPORTS))
    assert report.exports == tuple(sorted(EXPORTS))
    assert report.jni_exports == ("JNI_OnLoad", "Java_com_example_Native_send")
    assert report.errors == ()
    assert [s.value for s in report.strings] == [*KEPT, "gsm.sim.state"]
    assert {s.section for s in report.strings} == {".rodata"}
    assert_offsets(data, report)
    offsets = [s.offset for s in report.strings]
    assert offsets == sorted(offsets)
    assert [s.value for s in report.properties] == ["ro.serialno", "persist.radio.imei"]
    # Each property is also one of the strings (same object values).
    assert set(report.properties) <= set(report.strings)


def test_dynstr_names_are_not_strings() -> None:
    data = make_elf()
    report = analyze_elf(data, string_filter=lambda s: True, property_rules=[])
    values = {s.value for s in report.strings}
    assert "libc.so" not in values  # only in .dynstr
    assert "curl_easy_perform" not in values
    assert "libfoo.so" in values


def test_property_rules_keep_strings_the_filter_rejects() -> None:
    data = make_elf()
    report = analyze_elf(data, string_filter=lambda s: "://" in s, property_rules=RULES)
    assert [s.value for s in report.strings] == [
        "http://zzhc.vnet.cn:9998/",
        "ro.serialno",
        "persist.radio.imei",
    ]
    assert [s.value for s in report.properties] == ["ro.serialno", "persist.radio.imei"]


def test_only_property_rules_match_properties() -> None:
    data = make_elf()
    function_rule = rule("function.serial", "function", "ro.serialno")
    report = analyze_elf(data, string_filter=lambda s: False, property_rules=[function_rule])
    assert report.strings == ()
    assert report.properties == ()


def test_looks_like_property() -> None:
    assert looks_like_property("ro.serialno")
    assert looks_like_property("persist.vendor.radio.imei1")
    assert looks_like_property("ro.boot.hardware.sku")
    for value in ("serialno", "http://a.b/", "ro serialno", ".ro.x", "ro..x", "ro.x.", "a" * 300):
        assert not looks_like_property(value), value


def test_utf8_and_long_strings() -> None:
    long = "x" * (MAX_STRING_CHARS + 10)
    data = make_elf(rodata_strings=["服务器.example.cn", long, "caf\u00e9.fr"])
    report = analyze_elf(data, string_filter=lambda s: True, property_rules=[])
    values = [s.value for s in report.strings]
    assert values == ["服务器.example.cn", "x" * MAX_STRING_CHARS, "x" * 10, "café.fr"]
    assert_offsets(data, report)
    assert report.strings[2].offset == report.strings[1].offset + MAX_STRING_CHARS


def test_string_limit_is_reported() -> None:
    data = make_elf()
    report = analyze_elf(data, string_filter=simple_filter, property_rules=RULES, max_strings=2)
    assert [s.value for s in report.strings] == KEPT[:2]
    assert any("string limit" in e for e in report.errors)


def test_deterministic() -> None:
    data = make_elf("arm", "exec")
    first = analyze_elf(data, string_filter=simple_filter, property_rules=RULES)
    second = analyze_elf(data, string_filter=simple_filter, property_rules=RULES)
    assert first == second


# --- real ELF files --------------------------------------------------------------------------

REAL_ELF = [
    "elf/aosp-updater/update-binary",
    "elf/debian-cross/aarch64-linux-gnu/libresolv.so.2",
    "elf/debian-cross/aarch64-linux-gnu/ld-linux-aarch64.so.1",
    "elf/debian-cross/arm-linux-gnueabihf/libresolv.so.2",
    "elf/debian-cross/arm-linux-gnueabihf/libanl.so.1",
]


def readelf_functions(path: Path) -> tuple[set[str], set[str], list[str]]:
    """Imported and exported global/weak functions, and DT_NEEDED, as readelf prints them."""
    readelf = need_tool("readelf")
    syms = subprocess.run(
        [readelf, "--dyn-syms", "-W", str(path)], capture_output=True, text=True, check=True
    ).stdout
    imports: set[str] = set()
    exports: set[str] = set()
    for line in syms.splitlines():
        fields = line.split()
        if len(fields) < 8 or not fields[0].rstrip(":").isdigit():
            continue
        sym_type, bind, ndx, name = fields[3], fields[4], fields[6], fields[7].split("@")[0]
        if sym_type in ("FUNC", "IFUNC") and bind in ("GLOBAL", "WEAK"):
            (imports if ndx == "UND" else exports).add(name)
    dynamic = subprocess.run(
        [readelf, "-d", "-W", str(path)], capture_output=True, text=True, check=True
    ).stdout
    needed = [
        line.split("[", 1)[1].rstrip("]")
        for line in dynamic.splitlines()
        if "(NEEDED)" in line and "[" in line
    ]
    return imports, exports, needed


@pytest.mark.parametrize("name", REAL_ELF)
def test_real_elf_matches_readelf(corpus: Path, name: str) -> None:
    path = corpus / name
    data = path.read_bytes()
    report = analyze_elf(data, string_filter=lambda s: True, property_rules=RULES)
    imports, exports, needed = readelf_functions(path)
    assert set(report.imports) == imports
    assert set(report.exports) == exports
    assert list(report.needed) == needed
    assert report.errors == ()
    if not name.endswith("libanl.so.1"):  # libanl's small .rodata holds no text
        assert report.strings
    assert {s.section for s in report.strings} <= {".rodata", ".data.rel.ro"}
    assert_offsets(data, report)


def test_real_elf_details(corpus: Path) -> None:
    updater = (corpus / "elf/aosp-updater/update-binary").read_bytes()
    report = analyze_elf(updater, string_filter=simple_filter, property_rules=[])
    assert (report.machine, report.elf_type) == ("arm", "exec")
    assert report.imports == report.exports == report.needed == ()
    assert "sys.powerctl" in {s.value for s in report.strings}

    resolv = corpus / "elf/debian-cross/aarch64-linux-gnu/libresolv.so.2"
    report = analyze_elf(resolv.read_bytes(), string_filter=simple_filter, property_rules=[])
    assert (report.machine, report.elf_type, report.soname) == ("aarch64", "dyn", "libresolv.so.2")
    assert {"ns_initparse", "ns_msg_getflag", "__res_close"} <= set(report.exports)
    assert {"memcpy", "dn_skipname"} <= set(report.imports)

    armhf = corpus / "elf/debian-cross/arm-linux-gnueabihf/libresolv.so.2"
    report = analyze_elf(armhf.read_bytes(), string_filter=simple_filter, property_rules=[])
    assert (report.machine, report.soname) == ("arm", "libresolv.so.2")


def test_real_android_jni_library(corpus: Path) -> None:
    """Bionic libraries shipped in a real APK of the corpus (the only Android ELF there)."""
    apk = corpus / "large" / "Yosemite.apk"
    if not apk.is_file():
        pytest.skip("large/Yosemite.apk is not in the corpus")
    with zipfile.ZipFile(apk) as archive:
        jni = archive.read("lib/arm64-v8a/librime_jni.so")
        big = archive.read("lib/armeabi-v7a/librime.so")
    report = analyze_elf(jni, string_filter=simple_filter, property_rules=RULES)
    assert report.machine == "aarch64"
    assert report.jni_exports == ("JNI_OnLoad",)
    assert {"liblog.so", "libc.so", "librime.so"} <= set(report.needed)
    assert_offsets(jni, report)
    report = analyze_elf(big, string_filter=simple_filter, property_rules=RULES)
    assert (report.machine, report.soname) == ("arm", "librime.so")
    assert len(report.exports) > 1000
    assert report.strings
    assert_offsets(big, report)


# --- malformed input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", random.Random(7).randbytes(4096), b"MZ" + bytes(200), b"\x7fELF", b"\x7fELF\x09\x01"],
    ids=["empty", "random", "pe", "magic-only", "bad-class"],
)
def test_not_an_elf(data: bytes) -> None:
    with pytest.raises(UnpackError):
        analyze_elf(data, string_filter=simple_filter, property_rules=RULES)


@pytest.mark.parametrize("cut", [70, 300, 700])
def test_truncated_elf_gives_partial_report(cut: int) -> None:
    data = make_elf()[:cut]
    report = analyze_elf(data, string_filter=simple_filter, property_rules=RULES)
    assert report.machine == "aarch64"
    assert any("past the end" in e or "does not fit" in e for e in report.errors)
    assert_offsets(data, report)


def _set_shoff(data: bytes, shoff: int, shnum: int | None = None) -> bytes:
    out = bytearray(data)
    struct.pack_into("<Q", out, 0x28, shoff)
    if shnum is not None:
        struct.pack_into("<H", out, 0x3C, shnum)
    return bytes(out)


def test_section_headers_past_the_file_fall_back_to_segments() -> None:
    data = make_elf()
    broken = _set_shoff(data, len(data) + 4096)
    report = analyze_elf(broken, string_filter=simple_filter, property_rules=RULES)
    assert any("section header table" in e for e in report.errors)
    values = [s.value for s in report.strings]
    assert values[: len(KEPT)] == KEPT
    assert "libc.so" not in values  # .dynstr is still left out
    assert all(s.section.startswith("PT_LOAD#") for s in report.strings)
    assert_offsets(broken, report)
    assert report.imports == tuple(sorted(IMPORTS))  # from the dynamic segment


def test_no_section_headers() -> None:
    data = _set_shoff(make_elf("aarch64", "exec"), 0, shnum=0)
    report = analyze_elf(data, string_filter=simple_filter, property_rules=RULES)
    assert report.errors == ()
    assert [s.value for s in report.strings][: len(KEPT)] == KEPT
    assert "/system/bin/linker64" not in {s.value for s in report.strings}  # no dot: filtered
    assert [s.value for s in report.properties] == ["ro.serialno", "persist.radio.imei"]
    assert_offsets(data, report)


def test_section_past_the_file_is_skipped() -> None:
    data = bytearray(make_elf())
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    names_at = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 24)[0]
    for index in range(shnum):
        at = shoff + index * shentsize
        name_off = struct.unpack_from("<I", data, at)[0]
        if data[names_at + name_off :].startswith(b".rodata\x00"):
            struct.pack_into("<Q", data, at + 24, len(data) + 100)  # sh_offset
    report = analyze_elf(bytes(data), string_filter=simple_filter, property_rules=RULES)
    assert any(e.startswith("section .rodata") for e in report.errors)
    assert report.strings == ()


def test_mutated_elf_never_crashes() -> None:
    """Seeded random corruption: a report with valid offsets or UnpackError, nothing else."""
    bases = [make_elf(m, k) for m in ("aarch64", "arm") for k in ("shared", "exec")]
    rng = random.Random(1234)
    for _ in range(400):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 20)):
            limit = len(data) if rng.random() < 0.5 else min(len(data), 0x200)
            data[rng.randrange(limit)] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        try:
            report = analyze_elf(bytes(data), string_filter=lambda s: True, property_rules=RULES)
        except UnpackError:
            continue
        assert_offsets(bytes(data), report)


# --- DEX inside OAT files --------------------------------------------------------------------


def app_dex(package: str, url: str) -> bytes:
    return build_app_dex(
        [Component(f"{package}.Main", "android.app.Activity")],
        [Action(f"{package}.Main", "send", reads=("imei",), sink="http_post", target=url)],
    )


DEX_A = app_dex("com.example.a", "http://zzhc.vnet.cn:9998/")
DEX_B = app_dex("com.example.b", "https://b.example.com/x")


def test_find_embedded_dex_in_oat_like_file() -> None:
    # The .rodata string "dex\n035" plus its NUL terminator is a DEX magic with no header.
    elf = make_elf(rodata_strings=["dex\n035", *RODATA])
    blob = elf + bytes(4096 - len(elf) % 4096) + DEX_A + b"\xff" * 100
    assert blob.count(b"dex\n035\x00") == 2
    found = find_embedded_dex(blob)
    assert found == [(blob.index(DEX_A), DEX_A)]


def test_find_two_embedded_dex_files() -> None:
    elf = make_elf()
    blob = elf + DEX_A + bytes(3) + DEX_B
    found = find_embedded_dex(blob)
    assert [dex for _, dex in found] == [DEX_A, DEX_B]
    assert [offset for offset, _ in found] == [len(elf), len(elf) + len(DEX_A) + 3]


def test_truncated_embedded_dex_is_skipped_with_a_note() -> None:
    blob = make_elf() + DEX_A[:-10]
    errors: list[str] = []
    assert find_embedded_dex(blob, errors=errors) == []
    assert errors and "past the end" in errors[0]
    assert find_embedded_dex(b"") == []
    assert find_embedded_dex(b"dex\n035\x00") == []


# --- VDEX ------------------------------------------------------------------------------------


def pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def odd_dex(dex: bytes) -> bytes:
    """``dex`` made one byte longer (``file_size`` patched), so the next one needs padding."""
    longer = bytearray(dex + b"\x00")
    struct.pack_into("<I", longer, 32, len(longer))
    return bytes(longer)


def vdex_v6_v10(version: bytes, dexes: list[bytes]) -> bytes:
    """Android 8.0 (006) / 8.1 (010) layout: AOSP art/runtime/vdex_file.h (oreo)."""
    body = b"".join(pad4(d) if version == b"010" else d for d in dexes)
    header = b"vdex" + version + b"\x00" + struct.pack("<IIII", len(dexes), len(body), 16, 0)
    checksums = b"".join(struct.pack("<I", 0x1000 + i) for i in range(len(dexes)))
    return header + checksums + body + b"\xaa" * 16


def vdex_v19_v21(version: bytes, dexes: list[bytes], *, with_dex: bool = True) -> bytes:
    """Android 9 (019) / 10-11 (021): VerifierDepsHeader, checksums, DexSectionHeader, then
    a quickening-table offset before each DEX, 4-byte aligned (vdex_file.h of pie, q, r)."""
    header = b"vdex" + version + b"\x00" + (b"002\x00" if with_dex else b"000\x00")
    header += struct.pack("<II", len(dexes), 16)
    if version == b"021":
        header += struct.pack("<II", 0, 0)  # bootclasspath checksums, class loader context
    checksums = b"".join(struct.pack("<I", 0x2000 + i) for i in range(len(dexes)))
    if not with_dex:
        return header + checksums + b"\xbb" * 16
    body = b"".join(struct.pack("<I", 0) + pad4(d) for d in dexes)
    return header + checksums + struct.pack("<III", len(body), 0, 0) + body + b"\xbb" * 16


def vdex_v27(dexes: list[bytes]) -> bytes:
    """Android 12+ (027): VdexFileHeader, 4 section headers, then the sections."""
    checksums = b"".join(struct.pack("<I", 0x3000 + i) for i in range(len(dexes)))
    body = b"".join(pad4(d) for d in dexes)
    deps = b"\xcc" * 8
    start = 12 + 4 * 12
    sections = [
        (0, start, len(checksums)),
        (1, start + len(checksums), len(body)),
        (2, start + len(checksums) + len(body), len(deps)),
        (3, start + len(checksums) + len(body) + len(deps), 0),
    ]
    header = b"vdex027\x00" + struct.pack("<I", 4)
    header += b"".join(struct.pack("<III", *s) for s in sections)
    return header + checksums + body + deps


DEXES = [DEX_A, odd_dex(DEX_B), DEX_B]


@pytest.mark.parametrize(
    "vdex",
    [
        vdex_v6_v10(b"006", [DEX_A, DEX_B]),
        vdex_v6_v10(b"010", DEXES),
        vdex_v19_v21(b"019", DEXES),
        vdex_v19_v21(b"021", DEXES),
        vdex_v27(DEXES),
    ],
    ids=["006", "010", "019", "021", "027"],
)
def test_vdex_dex_files(vdex: bytes) -> None:
    errors: list[str] = []
    expected = [DEX_A, DEX_B] if vdex[4:7] == b"006" else DEXES
    assert vdex_dex_files(vdex, errors=errors) == expected
    assert errors == []


def test_vdex_layout_agrees_with_lief(tmp_path: Path) -> None:
    """LIEF 1.0 reads VDEX 006 and 010 (from a path only): it finds the same DEX files."""
    import lief

    for version in (b"006", b"010"):
        vdex = vdex_v6_v10(version, [DEX_A, DEX_B])
        path = tmp_path / f"v{version.decode()}.vdex"
        path.write_bytes(vdex)
        parsed = lief.VDEX.parse(str(path))
        assert parsed is not None
        assert [bytes(d.raw(False)) for d in parsed.dex_files] == vdex_dex_files(vdex)


def test_vdex_without_dex_section() -> None:
    assert vdex_dex_files(vdex_v19_v21(b"021", [DEX_A], with_dex=False)) == []
    assert vdex_dex_files(vdex_v27([])) == []
    assert vdex_dex_files(vdex_v6_v10(b"010", [])) == []


def test_vdex_errors() -> None:
    with pytest.raises(UnpackError):
        vdex_dex_files(b"")
    with pytest.raises(UnpackError):
        vdex_dex_files(b"dex\n035\x00" + bytes(200))
    with pytest.raises(UnpackError):
        vdex_dex_files(b"vdex099\x00" + bytes(64))
    truncated = vdex_v27([DEX_A, DEX_B])[:-200]
    errors: list[str] = []
    assert vdex_dex_files(truncated, errors=errors) == [DEX_A]
    assert errors
    cdex = bytearray(vdex_v19_v21(b"019", [DEX_A]))
    at = cdex.index(b"dex\n035\x00")
    cdex[at : at + 8] = b"cdex001\x00"
    errors = []
    assert vdex_dex_files(bytes(cdex), errors=errors) == []
    assert "compact DEX" in errors[0]


def test_elf_string_is_a_value_object() -> None:
    assert ElfString("a.b", ".rodata", 1) == ElfString("a.b", ".rodata", 1)

"""CompactDex: our writer (fwscan.synth.cdex) and our reader (fwscan.analyze.cdex, vdex_dex_files).

Debian's ``dexdump`` (ART 11's own DEX reader) is the independent judge: it reads the
stand-alone CompactDex files our writer makes, and verifies (checksum included) the standard
DEX files our converter makes; the listings must equal those of the original DEX files, with
file addresses and debug info (positions, locals) left out, as CompactDex conversion moves the
former and drops the latter. fwscan's own DEX reader and androguard must see the same code too.
Nothing is mocked.
"""

from __future__ import annotations

import functools
import random
import re
import struct
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tool

from fwscan.analyze.cdex import (
    CDEX_HEADER_SIZE,
    CompactDexError,
    compact_file_to_standard,
    compact_to_standard,
    read_compact_header,
    read_contents,
    uleb128,
    write_standard,
)
from fwscan.analyze.dex import instruction_starts, load_dex
from fwscan.analyze.native import vdex_dex_files
from fwscan.errors import UnpackError
from fwscan.findings import Kind
from fwscan.synth import apk, axml
from fwscan.synth.behaviours import Action, Component, build_app_dex
from fwscan.synth.cdex import build_vdex, compact_file, write_compact
from fwscan.synth.dex import ACC_PUBLIC, ACC_STATIC, DexBuilder, MethodRef

# --- inputs ------------------------------------------------------------------------------------


def preheader_dex() -> bytes:
    """A DEX whose code needs every preheader but the tries one: 18 ins, 18 outs, 20 locals,
    more than 2047 code units; and methods that need none or one."""
    dex = DexBuilder()
    cls = dex.add_class("Lcom/example/Big;", source_file="Big.java")
    params = ("I",) * 18
    wide = cls.add_method("wide", params, "V", ACC_PUBLIC | ACC_STATIC)
    local = [wide.local() for _ in range(20)]
    for reg in local[:18]:
        wide.const(reg, 7)
    wide.invoke("static", wide.ref, *local[:18])
    for _ in range(2100):
        wide.nop()
    wide.return_void()
    outs = cls.add_method("outs", (), "V", ACC_PUBLIC | ACC_STATIC)
    args = [outs.local() for _ in range(18)]
    for reg in args:
        outs.const(reg, 1)
    outs.invoke("static", MethodRef("Lcom/example/Big;", "wide", params, "V"), *args)
    outs.return_void()
    small = cls.add_method("small", ("I",), "I", ACC_PUBLIC | ACC_STATIC)
    small.return_value(small.param(0))
    return dex.to_bytes()


def corpus_dex(corpus: Path, path: str, name: str = "classes.dex") -> bytes:
    file = corpus / path
    if not file.is_file():
        pytest.skip(f"{path} is not in the corpus")
    if file.suffix == ".dex":
        return file.read_bytes()
    with zipfile.ZipFile(file) as archive:
        return archive.read(name)


def subset_dex(dex: bytes, keep: set[str]) -> bytes:
    """``dex`` with only the classes named in ``keep`` (every id kept): a small file that still
    holds those real classes' code."""
    contents = read_contents(dex, dex, compact=False)
    parsed = load_dex("x", dex)[0]
    contents.class_defs = [c for c in contents.class_defs if parsed.type_descriptor(c[0]) in keep]
    contents.hiddenapi = b""
    first = write_standard(contents)
    return write_standard(read_contents(first, first, compact=False))  # unused items dropped


def yosemite_extremes(corpus: Path) -> bytes:
    """The classes of a large real DEX whose code needs preheaders: 16 tries or more, more than
    2047 code units, 16 ins or outs or more; plus one class with switch payloads."""
    dex = corpus_dex(corpus, "large/Yosemite.apk", "classes2.dex")
    parsed = load_dex("x", dex)[0]
    keep: dict[str, set[str]] = {"tries": set(), "insns": set(), "ins": set(), "outs": set()}
    payload = ""
    for off, position, _ in parsed.code_owners():
        code = parsed.code_item(off)
        name = parsed.type_descriptor(parsed.class_defs()[position].class_idx)
        for what, value in (("tries", code.tries), ("insns", code.insns_size >> 11),
                            ("ins", code.ins), ("outs", code.outs)):  # fmt: skip
            if value >= (1 if what == "insns" else 16) and len(keep[what]) < 3:
                keep[what].add(name)
        units = parsed.code_units(code)
        if not payload and any(units[pc] == 0x100 for pc in instruction_starts(units)):
            payload = name  # a packed-switch payload
    assert all(keep.values()) and payload, keep
    return subset_dex(dex, set().union(*keep.values(), {payload}))


SOURCES: dict[str, Callable[[Path], list[bytes]]] = {
    "synth-preheaders": lambda _: [preheader_dex()],
    "Test.dex": lambda c: [corpus_dex(c, "androguard/Test.dex")],
    "a2dp": lambda c: [corpus_dex(c, "androguard/a2dp.Vol_137.apk")],
    "OPCommonTelephony-039-hiddenapi": lambda c: [
        corpus_dex(c, "androguard/OPCommonTelephony.jar")
    ],
    "yosemite-extremes": lambda c: [yosemite_extremes(c)],
    "multidex": lambda c: [
        corpus_dex(c, "androguard/multidex.apk", "classes.dex"),
        corpus_dex(c, "androguard/multidex.apk", "classes2.dex"),
    ],
}
_BUILT: dict[str, tuple[bytes, ...]] = {}


def source(request: pytest.FixtureRequest, name: str) -> tuple[bytes, ...]:
    """The DEX files of input ``name`` (built once); corpus inputs ask for the ``corpus``
    fixture, which skips visibly when the corpus is absent."""
    corpus = Path() if name == "synth-preheaders" else request.getfixturevalue("corpus")
    if name not in _BUILT:
        _BUILT[name] = tuple(SOURCES[name](corpus))
    return _BUILT[name]


# --- dexdump -------------------------------------------------------------------------------------

_ADDRESS = re.compile(r"^[0-9a-f]{6}: ")
_CODE_AT = re.compile(r"\|\[[0-9a-f]+\] ")


def dexdump_raw(path: Path) -> str:
    """``dexdump -d`` of a file; fails the test when dexdump rejects it or warns."""
    proc = subprocess.run(
        [need_tool("dexdump"), "-d", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not re.search(r"Failure|checksum|Error|Bad", proc.stderr), proc.stderr[-2000:]
    return proc.stdout


def normalize(listing: str) -> list[str]:
    """A listing without what conversion legitimately changes: the file and DEX version line,
    file addresses, and the debug info entries (``positions``, ``locals``)."""
    out: list[str] = []
    skipping = False
    for line in listing.splitlines():
        if line.startswith(("Processing '", "Opened '")):
            continue
        if line.startswith(("      positions     :", "      locals        :")):
            skipping = True
            out.append(line.rstrip())
            continue
        if skipping and line.startswith("        "):
            continue
        skipping = False
        out.append(_CODE_AT.sub("|[] ", _ADDRESS.sub("", line)))
    return out


def dexdump(tmp_path: Path, data: bytes, name: str) -> list[str]:
    path = tmp_path / name
    path.write_bytes(data)
    return normalize(dexdump_raw(path))


_LISTINGS: dict[tuple[str, int], tuple[str, ...]] = {}


def original_listing(
    request: pytest.FixtureRequest, name: str, index: int, tmp: Path
) -> tuple[str, ...]:
    """The normalized listing of an input DEX (made once)."""
    if (name, index) not in _LISTINGS:
        dex = source(request, name)[index]
        _LISTINGS[name, index] = tuple(dexdump(tmp, dex, f"original-{index}.dex"))
    return _LISTINGS[name, index]


def assert_same_listing(expected: tuple[str, ...] | list[str], actual: list[str]) -> None:
    assert len(actual) == len(expected), (len(actual), len(expected))
    for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert got == want, f"line {i}: {got!r} != {want!r}"
    assert sum(line.startswith("    #") for line in actual) > 0  # methods were listed


# --- fwscan's DEX reader ------------------------------------------------------------------------


def dex_facts(data: bytes) -> list[Any]:
    """Every class and method as fwscan's reader sees them, code included."""
    facts: list[Any] = []
    for dex in load_dex("classes.dex", data):
        for cls in dex.class_defs():
            methods = []
            for m in dex.class_methods(cls):
                code = None
                if m.code_off:
                    item = dex.code_item(m.code_off)
                    code = (
                        item.registers,
                        item.ins,
                        item.outs,
                        tuple(dex.code_units(item)),
                        dex.try_blocks(item),
                    )
                methods.append((dex.method(m.method_idx), m.access, code))
            fields = [dex.field(f) for f in dex.class_fields(cls)]
            facts.append((dex.type_descriptor(cls.class_idx), cls.access, fields, methods))
    return facts


_FACTS: dict[bytes, list[Any]] = {}


def original_facts(dex: bytes) -> list[Any]:
    """:func:`dex_facts` of an input DEX (read once)."""
    if dex not in _FACTS:
        _FACTS[dex] = dex_facts(dex)
    return _FACTS[dex]


# --- (a) dexdump reads what our writer makes -----------------------------------------------------


def preheader_flags(cdex: bytes, listing: str) -> int:
    """The preheader flags of every code item dexdump lists (its ``[offset]`` of a code item is
    counted from the data section), OR-ed: read from the bytes, not through our reader."""
    header = read_compact_header(cdex)
    flags = 0
    for match in re.finditer(r"^([0-9a-f]{6}): +\|\[\1\] ", listing, re.MULTILINE):
        at = header.data_off + int(match.group(1), 16)
        flags |= struct.unpack_from("<H", cdex, at + 2)[0] & 0x1F
    return flags


@pytest.mark.parametrize("name", [n for n in SOURCES if n != "multidex"])
def test_dexdump_reads_our_compact_dex(
    request: pytest.FixtureRequest, tmp_path: Path, name: str
) -> None:
    dex = source(request, name)[0]
    cdex = compact_file(dex)
    assert cdex[:8] == b"cdex001\x00"
    path = tmp_path / "classes.cdex"
    path.write_bytes(cdex)
    raw = dexdump_raw(path)
    assert "DEX version '001'" in raw
    assert_same_listing(original_listing(request, name, 0, tmp_path), normalize(raw))
    flags = preheader_flags(cdex, raw)
    if name == "synth-preheaders":
        assert flags == 0x17  # registers, ins, outs, insns: dexdump decoded them all
    elif name == "yosemite-extremes":
        assert flags == 0x1F  # ... and tries
    elif name == "Test.dex":
        assert flags == 0


def test_compact_layout_facts() -> None:
    """The header fields our writer sets, read back by hand."""
    dex = preheader_dex()
    cdex = compact_file(dex)
    header = read_compact_header(cdex)
    assert struct.unpack_from("<I", cdex, 36)[0] == CDEX_HEADER_SIZE
    assert header.file_size % 8 == 0
    assert header.data_off == header.file_size  # stand-alone: data right after the main section
    assert header.file_size + header.data_size == len(cdex)
    assert (header.owned_data_begin, header.owned_data_end) == (8, header.data_size)
    assert header.feature_flags == 0  # version 035: no default methods
    assert cdex[12:32] == dex[12:32]  # the original SHA-1 signature, as dexlayout keeps it


# --- (b) round trips through VDEX files ---------------------------------------------------------


ROUND_TRIPS = [
    (name, version)
    for name in SOURCES
    for version in ("021", "027")
    if (name, version) != ("a2dp", "021")  # the largest input: once is enough
]


@pytest.mark.parametrize(("name", "version"), ROUND_TRIPS)
def test_vdex_round_trip(
    request: pytest.FixtureRequest, tmp_path: Path, name: str, version: Any
) -> None:
    originals = source(request, name)
    vdex = build_vdex(list(originals), version)
    assert vdex.count(b"cdex001\x00") == len(originals)
    errors: list[str] = []
    converted = vdex_dex_files(vdex, errors=errors)
    assert errors == []
    assert len(converted) == len(originals)
    for index, (original, dex) in enumerate(zip(originals, converted, strict=True)):
        assert dex[:4] == b"dex\n"
        listing = dexdump(tmp_path, dex, f"converted-{index}.dex")
        assert_same_listing(original_listing(request, name, index, tmp_path), listing)
        assert dex_facts(dex) == original_facts(original)


def test_vdex_019_round_trip(request: pytest.FixtureRequest) -> None:
    originals = list(source(request, "multidex"))
    converted = vdex_dex_files(build_vdex(originals, "019"))
    assert [dex_facts(d) for d in converted] == [dex_facts(d) for d in originals]


def test_shared_strings_are_read_across_dex_files(request: pytest.FixtureRequest) -> None:
    """dex2oat shares string data between the DEX files of one VDEX; so does our writer, and
    the second DEX then points into data the first one owns."""
    first, second = source(request, "multidex")
    written = write_compact([first, second])
    header = read_compact_header(written.mains[1])
    (count, offset) = header.string_ids
    offsets = struct.unpack_from(f"<{count}I", written.mains[1], offset)
    assert min(offsets) < header.owned_data_begin  # shared with the first DEX
    alone = write_compact([second])
    assert len(written.data) < len(write_compact([first]).data) + len(alone.data)
    data = written.data[: header.data_size]
    assert dex_facts(compact_to_standard(written.mains[1], data)) == dex_facts(second)


def test_androguard_reads_converted_dex(request: pytest.FixtureRequest) -> None:
    from androguard.core.dex import DEX
    from loguru import logger

    logger.remove()
    for name in ("synth-preheaders", "OPCommonTelephony-039-hiddenapi"):
        original = source(request, name)[0]
        (converted,) = vdex_dex_files(build_vdex([original], "027"))
        a, b = DEX(converted), DEX(original)
        assert sorted(c.get_name() for c in a.get_classes()) == sorted(
            c.get_name() for c in b.get_classes()
        )

        def methods(d: Any) -> list[Any]:
            found = []
            for m in d.get_encoded_methods():
                names = [i.get_name() for i in m.get_instructions()]
                found.append((m.get_class_name(), m.get_name(), m.get_descriptor(), names))
            return sorted(found)

        assert methods(a) == methods(b)


def test_converted_dex_version_follows_feature_flags() -> None:
    dex = bytearray(preheader_dex())
    standard = compact_file_to_standard(compact_file(bytes(dex)))
    assert standard[:8] == b"dex\n035\x00"
    dex[4:7] = b"037"  # a 037 input: default methods allowed, kept as a feature flag
    cdex = compact_file(bytes(dex))
    assert read_compact_header(cdex).feature_flags == 1
    assert compact_file_to_standard(cdex)[:8] == b"dex\n037\x00"


# --- (c) hostile input ----------------------------------------------------------------------------


def app_dex() -> bytes:
    return build_app_dex(
        [Component("com.example.reg.Main", "android.app.Activity")],
        [
            Action(
                "com.example.reg.Main",
                "send",
                reads=("imei",),
                sink="http_post",
                target="http://zzhc.vnet.cn:9998/",
            )
        ],
    )


@functools.cache
def small_cdex() -> tuple[bytes, bytes]:
    """A CompactDex main section and its data section, from a small synthesized app."""
    written = write_compact([app_dex()])
    return written.mains[0], written.data


def patched(buf: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(buf)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def hostile_cases() -> list[tuple[str, bytes, bytes]]:
    main, data = small_cdex()
    header = read_compact_header(main)
    strings_at = header.string_ids[1]
    code = min(read_contents(main, data, compact=True).code_items)
    assert code >= 8
    return [
        ("main truncated in the header", main[:100], data),
        ("main truncated in the ids", main[: strings_at + 8], data),
        ("data section truncated", main, data[: len(data) // 2]),
        ("no data section", main, b""),
        ("unknown version", b"cdex002\x00" + main[8:], data),
        ("bad header size", patched(main, 36, "<I", 0x70), data),
        ("bad endian tag", patched(main, 40, "<I", 0x78563412), data),
        ("string offset past the data", patched(main, strings_at, "<I", len(data) + 5), data),
        ("string offset zero", patched(main, strings_at, "<I", 0), data),
        ("huge string count", patched(main, 0x38, "<I", 0x0FFFFFFF), data),
        ("huge class count", patched(main, 0x60, "<I", 0x7FFFFFFF), data),
        ("map past the data", patched(main, 0x34, "<I", len(data) - 2), data),
        ("huge map count", main, patched(data, header.map_off, "<I", 0x10000000)),
        # preheader words (stored before the item) giving a huge code unit count, and a
        # registers size over 16 bits
        ("preheader insns", main, patched(data, code - 4, "<4H", 0xFFFF, 0x7FFF, 0, 0x10)),
        ("preheader registers", main, patched(data, code - 2, "<3H", 0xFFFF, 0xF000, 0x21)),
    ]


@pytest.mark.parametrize("case", hostile_cases(), ids=lambda c: c[0])
def test_hostile_compact_dex_gives_a_clean_error(case: tuple[str, bytes, bytes]) -> None:
    _, main, data = case
    with pytest.raises(CompactDexError):
        compact_to_standard(main, data)


def test_preheader_before_the_data_section() -> None:
    """A code item at data offset 8 whose flags ask for 12 bytes of preheader."""
    main, data = small_cdex()
    contents = read_contents(main, data, compact=True)
    moved = bytearray(data)
    fields, flags = struct.unpack_from("<HH", data, min(contents.code_items))
    struct.pack_into("<HH", moved, 8, fields, flags | 0x1F)
    # point the first method with code at offset 8, re-encoding its class_data in place
    key, item = next((k, c) for k, c in sorted(contents.class_data.items()) if any(c.methods[2::3]))
    methods = list(item.methods)
    methods[next(i for i in range(2, len(methods), 3) if methods[i])] = 8
    old = b"".join(uleb128(v) for v in (*item.sizes, *item.fields, *item.methods))
    new = b"".join(uleb128(v) for v in (*item.sizes, *item.fields, *methods))
    assert len(new) <= len(old)
    moved[key : key + len(new)] = new
    with pytest.raises(CompactDexError, match="preheader starts before the data section"):
        compact_to_standard(main, bytes(moved))


def test_bad_handler_offset(request: pytest.FixtureRequest) -> None:
    written = write_compact(source(request, "yosemite-extremes"))
    main, data = written.mains[0], written.data
    contents = read_contents(main, data, compact=True)
    key, code = next((k, c) for k, c in sorted(contents.code_items.items()) if c.tries_size)
    tries_at = data.index(code.tries, key)
    broken = patched(data, tries_at + 6, "<H", 0xFFFF)  # the first try item's handler_off
    with pytest.raises(CompactDexError, match="handler"):
        compact_to_standard(main, broken)


def test_deeply_nested_values_are_refused() -> None:
    """Static values nested 100 arrays deep (past the limit of 64), read by the shared reader."""
    dex = preheader_dex()
    contents = read_contents(dex, dex, compact=False)
    contents.encoded_arrays[1 << 30] = b"\x01" + b"\x1c\x01" * 100 + b"\x1e"
    contents.class_defs[0] = (*contents.class_defs[0][:7], 1 << 30)
    rebuilt = write_standard(contents)
    with pytest.raises(CompactDexError, match="nested"):
        read_contents(rebuilt, rebuilt, compact=False)


def test_overlapping_items_are_refused() -> None:
    """Many string ids pointing into one long string: refused before the work grows."""
    main, data = small_cdex()
    count, at = read_compact_header(main).string_ids
    base = len(data)
    data2 = data + b"\x7f" + b"a" * 200_000 + b"\x00"
    main2 = bytearray(patched(main, 0x68, "<I", len(data2)))  # data_size
    for i in range(count):
        struct.pack_into("<I", main2, at + 4 * i, base + i % 100)
    with pytest.raises(CompactDexError, match="overlap"):
        compact_to_standard(bytes(main2), data2)


def test_mutated_compact_dex_never_crashes() -> None:
    """Seeded random corruption: a DEX file, or CompactDexError, nothing else."""
    main, data = small_cdex()
    rng = random.Random(4321)
    converted = 0
    for _ in range(300):
        m, d = bytearray(main), bytearray(data)
        for _ in range(rng.randint(1, 8)):
            target = m if rng.random() < 0.4 else d
            target[rng.randrange(len(target))] = rng.randrange(256)
        if rng.random() < 0.1:
            d = d[: rng.randrange(len(d))]
        try:
            out = compact_to_standard(bytes(m), bytes(d))
        except CompactDexError:
            continue
        assert out[:4] == b"dex\n"
        converted += 1
    assert 0 < converted < 300


def test_vdex_notes_and_skips_a_bad_compact_dex(request: pytest.FixtureRequest) -> None:
    """A CompactDex whose data lies outside the shared section is skipped with a note and the
    next one is still read; a CompactDex in a VDEX 010 (no shared section) is noted."""
    first, second = source(request, "multidex")
    vdex = bytearray(build_vdex([first, second], "027"))
    struct.pack_into("<I", vdex, vdex.index(b"cdex001\x00") + 0x6C, 0x7FFFFFF0)  # data_off
    errors: list[str] = []
    (only,) = vdex_dex_files(bytes(vdex), errors=errors)
    assert dex_facts(only) == dex_facts(second)
    assert len(errors) == 1 and "compact DEX" in errors[0] and "outside" in errors[0]

    cdex = compact_file(first)
    old = b"vdex010\x00" + struct.pack("<IIII", 1, len(cdex), 0, 0) + struct.pack("<I", 1)
    errors = []
    assert vdex_dex_files(old + cdex, errors=errors) == []
    assert "no shared data section" in errors[0]


def test_mutated_vdex_never_crashes() -> None:
    vdex = build_vdex([app_dex()], "021")
    rng = random.Random(99)
    for _ in range(200):
        data = bytearray(vdex)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            for dex in vdex_dex_files(bytes(data), errors=[]):
                assert dex[:4] == b"dex\n"
        except UnpackError:
            continue


# --- (d) end to end: an APK without DEX and its VDEX ---------------------------------------------


def test_scan_reads_app_code_from_compact_vdex(tmp_path: Path) -> None:
    from fwscan.pipeline import ScanOptions, scan

    package = "com.example.reg"
    folder = tmp_path / "fw" / "system" / "app" / "Reg"
    (folder / "oat" / "arm64").mkdir(parents=True)
    manifest = axml.build_axml(
        axml.ManifestSpec(
            package=package,
            version_code=1,
            version_name="1",
            components=(axml.Component("activity", f"{package}.Main"),),
        )
    )
    apk.build_apk(folder / "Reg.apk", manifest=manifest, dex_files=[], key=apk.load_key("vendor"))
    vdex = build_vdex([app_dex()], "027")
    assert b"cdex001\x00" in vdex and b"dex\n035" not in vdex
    (folder / "oat" / "arm64" / "Reg.vdex").write_bytes(vdex)

    result, _ = scan(tmp_path / "fw", ScanOptions(jobs=1))
    assert result.errors == ()
    (app,) = result.apps
    assert (app.package, app.dex_files) == (package, 0)  # the APK itself holds no code
    artifact = "/system/app/Reg/oat/arm64/Reg.vdex!classes.dex"
    flows = [f for f in result.findings if f.kind is Kind.FLOW]
    assert [(f.component, f.target) for f in flows] == [(package, "http://zzhc.vnet.cn:9998/")]
    assert {e.artifact for f in result.findings for e in f.evidence} == {artifact}
    reads = {f.category for f in result.findings if f.kind is Kind.READ}
    assert reads == {"imei"}

"""Tests of the DEX reader (:mod:`fwscan.analyze.dex`) and the flow analysis (:mod:`.dexflow`).

Nothing is mocked. Apps are built with the synthesizer's DEX writer and the evidence reported is
checked against ``dexdump -d`` (whose per-instruction addresses are code-unit offsets) and, on a
real APK, against androguard's cross-references. Real APKs of the shared corpus (androguard test
data, DroidBench with its ground truth) are read as they are; malformed and mutated files must
be refused with :class:`DexFormatError` or reported in ``errors``, quickly and within bounded
memory.
"""

from __future__ import annotations

import json
import random
import re
import struct
import subprocess
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from conftest import need_tool

from fwscan.analyze.dex import (
    DexFile,
    DexFormatError,
    decode,
    decode_mutf8,
    instruction_starts,
    load_dex,
    read_sleb128,
    read_uleb128,
    read_uleb128_list,
)
from fwscan.analyze.dexflow import ApiUse, DexReport, Flow, StringUse, analyze_dex_files
from fwscan.findings import Severity
from fwscan.rules import ApiRule, SignatureSet
from fwscan.synth.behaviours import IDENTIFIERS, SINKS, Action, Component, build_app_dex
from fwscan.synth.dex import (
    ACC_PUBLIC,
    ACC_STATIC,
    ClassBuilder,
    Code,
    DexBuilder,
    FieldRef,
    MethodRef,
    Reg,
)

# rules: a representative set, as signatures/ will hold them

STRING = "Ljava/lang/String;"
TM = "Landroid/telephony/TelephonyManager;"
GSM = "Landroid/telephony/gsm/GsmCellLocation;"
SECURE = "Landroid/provider/Settings$Secure;"


def _rule(
    rule_id: str,
    category: str,
    class_name: str,
    member: str,
    descriptor: str | None = None,
    *,
    field: bool = False,
    string_arg: str | None = None,
) -> ApiRule:
    return ApiRule(
        id=rule_id,
        role=rule_id.split(".", maxsplit=1)[0],
        category=category,
        class_name=class_name,
        member=member,
        descriptor=descriptor,
        is_field=field,
        string_arg=string_arg,
        permission=None,
        min_api=None,
        max_api=None,
        severity=Severity.MEDIUM,
        description="",
        references=(),
    )


SOURCES = (
    _rule("source.imei.getDeviceId", "imei", TM, "getDeviceId"),
    _rule("source.imei.getImei", "imei", TM, "getImei"),
    _rule("source.meid.getMeid", "meid", TM, "getMeid"),
    _rule("source.imsi.getSubscriberId", "imsi", TM, "getSubscriberId"),
    _rule("source.iccid.getSimSerialNumber", "iccid", TM, "getSimSerialNumber"),
    _rule("source.phone_number.getLine1Number", "phone_number", TM, "getLine1Number"),
    _rule("source.cell_location.getCellLocation", "cell_location", TM, "getCellLocation"),
    _rule("source.cell_location.getCid", "cell_location", GSM, "getCid", "()I"),
    _rule("source.cell_location.getLac", "cell_location", GSM, "getLac", "()I"),
    _rule(
        "source.location.getLastKnownLocation",
        "location",
        "Landroid/location/LocationManager;",
        "getLastKnownLocation",
    ),
    _rule("source.mac.getMacAddress", "mac", "Landroid/net/wifi/WifiInfo;", "getMacAddress"),
    _rule(
        "source.android_id.getString",
        "android_id",
        SECURE,
        "getString",
        f"(Landroid/content/ContentResolver;{STRING}){STRING}",
        string_arg="android_id",
    ),
    _rule("source.serial.SERIAL", "serial", "Landroid/os/Build;", "SERIAL", STRING, field=True),
    _rule("source.serial.getSerial", "serial", "Landroid/os/Build;", "getSerial"),
    _rule(
        "source.installed_apps.getInstalledPackages",
        "installed_apps",
        "Landroid/content/pm/PackageManager;",
        "getInstalledPackages",
    ),
    _rule(
        "source.accounts.getAccounts",
        "accounts",
        "Landroid/accounts/AccountManager;",
        "getAccounts",
    ),
)
SINK_RULES = (
    _rule("sink.network.openConnection", "network", "Ljava/net/URL;", "openConnection"),
    _rule(
        "sink.network.getOutputStream", "network", "Ljava/net/HttpURLConnection;", "getOutputStream"
    ),
    _rule("sink.network.newCall", "network", "Lokhttp3/OkHttpClient;", "newCall"),
    _rule("sink.network.Socket", "network", "Ljava/net/Socket;", "<init>"),
    _rule("sink.sms.sendTextMessage", "sms", "Landroid/telephony/SmsManager;", "sendTextMessage"),
    *(_rule(f"sink.log.{level}", "log", "Landroid/util/Log;", level) for level in "deivw"),
    _rule("sink.file.FileOutputStream", "file", "Ljava/io/FileOutputStream;", "<init>"),
    _rule("sink.ipc.sendBroadcast", "ipc", "Landroid/content/Context;", "sendBroadcast"),
    _rule("sink.network.loadUrl", "network", "Landroid/webkit/WebView;", "loadUrl"),
)
RULES = SignatureSet(
    version="test",
    sha256="0" * 64,
    sources=SOURCES,
    sinks=SINK_RULES,
    endpoints=(),
    native=(),
    library_prefixes=("androidx.", "com.google."),
)
_URLISH = re.compile(r"^(?:https?|wss?)://|^[a-z0-9-]+(?:\.[a-z0-9-]+)+\.(?:com|net|org|cn)(?:/|$)")


def urlish(text: str) -> bool:
    """The string filter of these tests: URLs and host names."""
    return bool(_URLISH.search(text))


def analyze(dex_files: list[tuple[str, bytes]], **kwargs: int) -> DexReport:
    return analyze_dex_files(dex_files, RULES, string_filter=urlish, **kwargs)


ALL_CATEGORIES = (
    "accounts",
    "android_id",
    "cell_location",
    "iccid",
    "imei",
    "imsi",
    "installed_apps",
    "location",
    "mac",
    "meid",
    "phone_number",
    "serial",
)
TARGETS: dict[str | None, str | None] = {
    "http_post": "https://collect.example.net/upload",
    "http_get": "http://collect.example.net/q?d=",
    "sms": "+15550100",
    "display": None,
    "log": "RegTag",
    "socket": "203.0.113.7:8443",
    "file": "/sdcard/.cache/id.txt",
    "broadcast": "com.example.app.action.REPORT",
    None: None,
}
EXPECTED_TARGET = {**TARGETS, "socket": "203.0.113.7"}
KIND = {
    "http_post": "network",
    "http_get": "network",
    "sms": "sms",
    "log": "log",
    "socket": "network",
    "file": "file",
    "broadcast": "ipc",
}
REGISTER_URL = "http://zzhc.vnet.cn:9998/"
TRACKER_URL = "https://ads.example.com/track"


def _class_of(sink: str | None) -> str:
    name = "Keep" if sink is None else "".join(part.title() for part in sink.split("_"))
    return f"com.example.app.{name}"


def _descriptor(java_name: str) -> str:
    return "L" + java_name.replace(".", "/") + ";"


# dexdump as the reference


def dexdump(data: bytes, tmp: Path) -> dict[tuple[str, str, str, int], str]:
    """Every instruction of a DEX file as ``dexdump -d`` shows it, by location."""
    path = tmp / "dump.dex"
    path.write_bytes(data)
    out = subprocess.run(
        [need_tool("dexdump"), "-d", str(path)], capture_output=True, check=True
    ).stdout.decode("utf-8", "replace")
    found: dict[tuple[str, str, str, int], str] = {}
    method: tuple[str, str, str] | None = None
    for line in out.splitlines():
        header = re.search(r"\|\[[0-9a-f]+\] (.+)\.([^.:]+):(\(.*)$", line)
        if header:
            method = ("L" + header[1].replace(".", "/") + ";", header[2], header[3])
            continue
        insn = re.search(r"\|([0-9a-f]{4,}): (.*)$", line)
        if insn and method is not None:
            found[(*method, int(insn[1], 16))] = insn[2]
    return found


def expected_uses(
    dump: dict[tuple[str, str, str, int], str],
) -> set[tuple[str, str, str, int, str]]:
    """``(class, method, descriptor, offset, rule id)`` of every source or sink instruction."""
    uses = set()
    for key, text in dump.items():
        for rule in (*SOURCES, *SINK_RULES):
            member = f"{rule.class_name}.{rule.member}:{rule.descriptor or ''}"
            wanted = text.startswith("sget") if rule.is_field else text.startswith("invoke-")
            if wanted and member in text:
                uses.add((*key, rule.id))
    return uses


def reported_uses(report: DexReport) -> set[tuple[str, str, str, int, str]]:
    return {
        (
            u.location.class_name,
            u.location.method,
            u.location.descriptor,
            u.location.offset,
            u.rule.id,
        )
        for u in (*report.reads, *report.sinks)
    }


# the synthesized app: every identifier to every sink, inline and through helpers


@pytest.fixture(scope="module")
def synth() -> tuple[bytes, DexReport]:
    actions = [
        Action(
            _class_of(sink),
            "helper" if via else "direct",
            reads=IDENTIFIERS,
            sink=sink,
            target=TARGETS[sink],
            via_helper=via,
        )
        for sink in (*SINKS, None)
        for via in (False, True)
    ]
    actions += [
        Action(
            "com.example.app.Register",
            "report",
            reads=("imei", "iccid", "imsi", "cell_id"),
            sink="http_post",
            target=REGISTER_URL,
        ),
        Action("com.example.app.Register", "text", reads=("imei",), sink="sms", target="10690000"),
        Action(
            "com.google.ads.Tracker",
            "ping",
            reads=("android_id",),
            sink="log",
            target="ads",
            strings=(TRACKER_URL,),
        ),
    ]
    data = build_app_dex([Component("com.example.app.Main", "android.app.Activity")], actions)
    return data, analyze([("classes.dex", data)])


def _flows_in(report: DexReport, java_class: str) -> list[Flow]:
    return [f for f in report.flows if f.sink.location.class_name == _descriptor(java_class)]


def test_reads_and_sinks_are_dexdump_instructions(
    synth: tuple[bytes, DexReport], tmp_path: Path
) -> None:
    data, report = synth
    dump = dexdump(data, tmp_path)
    assert reported_uses(report) == expected_uses(dump)
    for use in report.reads:
        loc = use.location
        text = dump[(loc.class_name, loc.method, loc.descriptor, loc.offset)]
        assert f"{use.rule.class_name}.{use.rule.member}:" in text
        assert loc.dex == "classes.dex"
    assert report.errors == ()
    assert report.classes == len({_class_of(s) for s in (*SINKS, None)}) + 3


@pytest.mark.parametrize("sink", [*SINKS, None])
def test_every_identifier_is_read_with_its_category(
    synth: tuple[bytes, DexReport], sink: str | None
) -> None:
    _, report = synth
    for method in ("direct", "helper$collect"):
        reads = [
            r
            for r in report.reads
            if r.location.class_name == _descriptor(_class_of(sink)) and r.location.method == method
        ]
        assert tuple(sorted({r.rule.category for r in reads})) == ALL_CATEGORIES
        # cell_id and lac are each read through getCellLocation then getCid/getLac
        assert len(reads) == len(IDENTIFIERS) + 2
        assert not any(r.library for r in reads)


@pytest.mark.parametrize("via_helper", [False, True])
@pytest.mark.parametrize("sink", [s for s in SINKS if s != "display"])
def test_every_sink_gets_one_flow(
    synth: tuple[bytes, DexReport], sink: str, via_helper: bool
) -> None:
    _, report = synth
    method = "helper$deliver" if via_helper else "direct"
    flows = [f for f in _flows_in(report, _class_of(sink)) if f.sink.location.method == method]
    assert len(flows) == 1, flows
    (flow,) = flows
    assert flow.categories == ALL_CATEGORIES
    assert flow.sink.rule.category == KIND[sink]
    assert flow.target == EXPECTED_TARGET[sink]
    assert not flow.library
    assert {s.location.method for s in flow.sources} == {
        "helper$collect" if via_helper else "direct"
    }
    if via_helper:
        assert len(flow.chain) == 2
        assert flow.chain[0].method == "helper$collect"
        assert flow.chain[-1].method == "helper$deliver"
        assert flow.chain[0] in {s.location for s in flow.sources}
    else:
        assert len(flow.chain) == 1
        assert flow.chain[0] in {s.location for s in flow.sources}


@pytest.mark.parametrize("sink", ["display", None])
def test_screen_and_field_are_not_flows(synth: tuple[bytes, DexReport], sink: str | None) -> None:
    _, report = synth
    assert _flows_in(report, _class_of(sink)) == []
    assert any(r.location.class_name == _descriptor(_class_of(sink)) for r in report.reads)


def test_registration_report_is_one_network_flow_to_its_url(
    synth: tuple[bytes, DexReport],
) -> None:
    _, report = synth
    flows = _flows_in(report, "com.example.app.Register")
    by_method = {f.sink.location.method: f for f in flows}
    assert len(flows) == 2
    post = by_method["report"]
    assert post.categories == ("cell_location", "iccid", "imei", "imsi")
    assert post.sink.rule.id == "sink.network.getOutputStream"
    assert post.sink.rule.category == "network"
    assert post.target == REGISTER_URL
    assert {s.rule.id for s in post.sources} == {
        "source.imei.getImei",
        "source.iccid.getSimSerialNumber",
        "source.imsi.getSubscriberId",
        "source.cell_location.getCellLocation",
        "source.cell_location.getCid",
    }
    sms = by_method["text"]
    assert (sms.categories, sms.sink.rule.category, sms.target) == (("imei",), "sms", "10690000")


def test_library_code_is_marked(synth: tuple[bytes, DexReport]) -> None:
    _, report = synth
    tracker = _descriptor("com.google.ads.Tracker")
    uses: list[ApiUse | StringUse] = [*report.reads, *report.sinks, *report.strings]
    for use in uses:
        assert use.library == (use.location.class_name == tracker)
    (flow,) = [f for f in report.flows if f.library]
    assert (flow.categories, flow.target, flow.sink.location.class_name) == (
        ("android_id",),
        "ads",
        tracker,
    )


def test_interesting_strings_are_reported_where_loaded(synth: tuple[bytes, DexReport]) -> None:
    _, report = synth
    values = {s.value for s in report.strings}
    assert {REGISTER_URL, TRACKER_URL, TARGETS["http_post"], TARGETS["http_get"]} <= values
    assert all(urlish(s.value) for s in report.strings)
    (tracker,) = [s for s in report.strings if s.value == TRACKER_URL]
    assert tracker.library
    assert (tracker.location.method, tracker.location.offset) == ("ping", 0)


def test_analysis_is_deterministic(synth: tuple[bytes, DexReport]) -> None:
    data, report = synth
    assert analyze([("classes.dex", data)]) == report


# hand-written code: string_arg, fields, multidex, inheritance, chain bound


def _static(cls: ClassBuilder, name: str, params: tuple[str, ...]) -> Code:
    return cls.add_method(name, params, "V", ACC_PUBLIC | ACC_STATIC)


def _log(code: Code, tag: str, value: Reg, level: str = "d") -> None:
    tag_reg = code.local()
    code.const_string(tag_reg, tag)
    spec = f"Landroid/util/Log;->{level}({STRING}{STRING})I"
    code.invoke("static", MethodRef.parse(spec), tag_reg, value)


def _send_sms(code: Code, number: str, payload: Reg) -> None:
    block = [code.local() for _ in range(6)]
    manager = "Landroid/telephony/SmsManager;"
    code.invoke("static", MethodRef.parse(f"{manager}->getDefault(){manager}"))
    code.move_result_object(block[0])
    code.const_string(block[1], number)
    code.const(block[2], 0)
    code.move_object(block[3], payload)
    code.const(block[4], 0)
    code.const(block[5], 0)
    intent = "Landroid/app/PendingIntent;"
    spec = f"{manager}->sendTextMessage({STRING}{STRING}{STRING}{intent}{intent})V"
    code.invoke("virtual", MethodRef.parse(spec), *block)


def _read_imei(code: Code) -> Reg:
    value = code.local()
    code.invoke("virtual", MethodRef.parse(f"{TM}->getDeviceId(){STRING}"), code.param(0))
    code.move_result_object(value)
    return value


def test_string_arg_must_be_the_constant() -> None:
    dex = DexBuilder()
    ids = dex.add_class("Lcom/s/Ids;")
    resolver = "Landroid/content/ContentResolver;"
    get_string = MethodRef.parse(f"{SECURE}->getString({resolver}{STRING}){STRING}")
    for name, loads in (
        ("good", ("android_id",)),
        ("bluetooth", ("bluetooth_name",)),
        ("overwritten", ("android_id", "bluetooth_name")),
    ):
        code = _static(ids, name, (resolver,))
        text = code.local()
        for value in loads:
            code.const_string(text, value)
        code.invoke("static", get_string, code.param(0), text)
        code.return_void()
    other = _static(ids, "otherRegister", (resolver,))
    held, text = other.local(), other.local()
    other.const_string(held, "android_id")
    other.const_string(text, "bluetooth_name")
    other.invoke("static", get_string, other.param(0), text)
    other.return_void()
    report = analyze([("classes.dex", dex.to_bytes())])
    assert [(r.rule.category, r.location.method) for r in report.reads] == [("android_id", "good")]


def test_static_field_source_and_flow_through_a_field() -> None:
    dex = DexBuilder()
    store = dex.add_class("Lcom/f/Store;")
    field = store.add_field("id", STRING, ACC_STATIC)
    save = _static(store, "save", (TM,))
    save.sput(_read_imei(save), field)
    save.return_void()
    leak = _static(store, "leak", ())
    value = leak.local()
    leak.sget(value, field)
    _log(leak, "leak", value, "i")
    leak.return_void()
    serial = _static(store, "serial", ())
    number = serial.local()
    serial.sget(number, FieldRef.parse(f"Landroid/os/Build;->SERIAL:{STRING}"))
    _log(serial, "SerialTag", number, "w")
    serial.return_void()
    report = analyze([("classes.dex", dex.to_bytes())])
    assert {(r.rule.id, r.location.method, r.location.offset) for r in report.reads} == {
        ("source.imei.getDeviceId", "save", 0),
        ("source.serial.SERIAL", "serial", 0),
    }
    flows = {f.categories: f for f in report.flows}
    assert set(flows) == {("imei",), ("serial",)}
    via_field = flows[("imei",)]
    assert (via_field.sink.rule.id, via_field.target) == ("sink.log.i", "leak")
    assert [(c.method, c.offset) for c in via_field.chain] == [
        ("save", 0),
        ("leak", via_field.sink.location.offset),
    ]
    assert flows[("serial",)].target == "SerialTag"


def test_multidex_call_resolves_through_an_inherited_method() -> None:
    first = DexBuilder()
    reader = _static(first.add_class("Lcom/md/Reader;"), "run", (TM,))
    imei = _read_imei(reader)
    sender = reader.local()
    reader.new_instance(sender, "Lcom/md/SubSender;")
    reader.invoke("direct", MethodRef.parse("Lcom/md/SubSender;-><init>()V"), sender)
    send = MethodRef.parse(f"Lcom/md/SubSender;->send({STRING})V")
    reader.invoke("virtual", send, sender, imei)
    reader.return_void()
    sub = first.add_class("Lcom/md/SubSender;", superclass="Lcom/md/BaseSender;")
    init = sub.add_method("<init>", (), "V")
    init.invoke("direct", MethodRef.parse("Lcom/md/BaseSender;-><init>()V"), init.this)
    init.return_void()
    second = DexBuilder()
    base = second.add_class("Lcom/md/BaseSender;")
    init = base.add_method("<init>", (), "V")
    init.invoke("direct", MethodRef.parse("Ljava/lang/Object;-><init>()V"), init.this)
    init.return_void()
    code = base.add_method("send", (STRING,), "V")
    _send_sms(code, "+100", code.param(0))
    code.return_void()
    report = analyze([("classes.dex", first.to_bytes()), ("classes2.dex", second.to_bytes())])
    (flow,) = report.flows
    assert (flow.categories, flow.sink.rule.category, flow.target) == (("imei",), "sms", "+100")
    assert [(c.dex, c.class_name, c.method) for c in flow.chain] == [
        ("classes.dex", "Lcom/md/Reader;", "run"),
        ("classes2.dex", "Lcom/md/BaseSender;", "send"),
    ]
    assert flow.chain[-1] == flow.sink.location
    assert report.sinks[0].location.dex == "classes2.dex"


def _relay_app(depth: int) -> bytes:
    """A reads the IMEI and passes it down ``depth - 1`` static calls; the last one logs it."""
    dex = DexBuilder()
    names = [f"Lcom/c/M{i};" for i in range(depth)]
    first = _static(dex.add_class(names[0]), "run", (TM,))
    first.invoke("static", MethodRef.parse(f"{names[1]}->run({STRING})V"), _read_imei(first))
    first.return_void()
    for i in range(1, depth):
        code = _static(dex.add_class(names[i]), "run", (STRING,))
        if i + 1 < depth:
            code.invoke("static", MethodRef.parse(f"{names[i + 1]}->run({STRING})V"), code.param(0))
        else:
            _log(code, "relay", code.param(0))
        code.return_void()
    return dex.to_bytes()


def test_chains_are_bounded_by_max_chain() -> None:
    data = [("classes.dex", _relay_app(4))]
    assert analyze(data, max_chain=3).flows == ()
    (flow,) = analyze(data, max_chain=4).flows
    assert [c.class_name for c in flow.chain] == [f"Lcom/c/M{i};" for i in range(4)]
    assert flow.chain[-1] == flow.sink.location
    (flow,) = analyze([("classes.dex", _relay_app(3))]).flows
    assert len(flow.chain) == 3
    # the default bound: a chain of 5 methods is followed, one of 6 is not
    (flow,) = analyze([("classes.dex", _relay_app(5))]).flows
    assert len(flow.chain) == 5
    assert analyze([("classes.dex", _relay_app(6))]).flows == ()


def test_files_without_sources_sinks_or_urls_are_triaged_out() -> None:
    dex = DexBuilder()
    code = _static(dex.add_class("Lcom/q/Quiet;"), "run", ())
    code.const_string(code.local(), "hello")
    code.return_void()
    report = analyze([("classes.dex", dex.to_bytes())])
    assert report == DexReport(
        (), (), (), (), classes=1, methods_decoded=0, unresolved_calls=0, errors=()
    )


# the reader itself


def test_strings_and_ids_read_back() -> None:
    exotic = ("h\u00e9llo", "nul\0inside", "mark \U0001d11e", "lone \ud800 half", "\u20ac")
    dex = DexBuilder()
    code = _static(dex.add_class("Lcom/r/Strings;"), "run", ())
    reg = code.local()
    for text in exotic:
        code.const_string(reg, text)
    code.return_void()
    (reader,) = load_dex("classes.dex", dex.to_bytes())
    assert reader.version == 35
    for text in exotic:
        index = reader.find_string(text)
        assert index is not None
        assert reader.string(index) == text
    assert reader.find_string("absent") is None
    (class_def,) = reader.class_defs()
    (method,) = reader.class_methods(class_def)
    assert reader.method(method.method_idx) == ("Lcom/r/Strings;", "run", "()V")
    units = reader.code_units(reader.code_item(method.code_off))
    insns = list(decode(units))
    assert [op for _, op, _ in insns] == [0x1A] * len(exotic) + [0x0E]
    assert [reader.string(operands[1]) for _, op, operands in insns if op == 0x1A] == list(exotic)
    assert [pc for pc, _, _ in insns] == instruction_starts(units)


def test_leb128_and_mutf8() -> None:
    assert read_uleb128(b"\xe5\x8e\x26", 0) == (624485, 3)
    assert read_sleb128(b"\x7f", 0) == (-1, 1)
    assert read_sleb128(b"\x80\x7f", 0) == (-128, 2)
    assert read_uleb128_list(b"\x01\x80\x01\xff\xff\xff\xff\x0f", 0, 3) == ([1, 128, 0xFFFFFFFF], 8)
    with pytest.raises(DexFormatError):
        read_uleb128(b"\x80\x80\x80\x80\x80\x01", 0)
    with pytest.raises(DexFormatError):
        read_uleb128_list(b"\x80", 0, 1)
    assert decode_mutf8(b"a\xc0\x80b") == "a\0b"
    assert decode_mutf8(b"\xed\xa0\xb4\xed\xb4\x9e") == "\U0001d11e"
    assert decode_mutf8(b"\xed\xa0\x80") == "\ud800"


def test_quickened_instructions_are_decoded_and_counted(small_dex: bytes) -> None:
    (reader,) = load_dex("classes.dex", small_dex)
    class_def = reader.class_defs()[0]
    method = next(
        m for m in reader.class_methods(class_def) if reader.method(m.method_idx)[1] == "go$collect"
    )
    code = reader.code_item(method.code_off)
    units = reader.code_units(code)
    append = next(
        pc
        for pc, op, operands in decode(units)
        if op == 0x6E and reader.method(operands[0])[1] == "append"
    )
    position = code.insns_off + 2 * append
    quick = small_dex[:position] + b"\xe9" + small_dex[position + 1 :]
    (reader,) = load_dex("classes.dex", quick)
    ops = {pc: (op, operands) for pc, op, operands in decode(reader.code_units(code))}
    assert ops[append][0] == 0xE9
    assert len(ops[append][1][1]) == 2  # invoke-virtual-quick keeps the 35c register list
    assert analyze([("classes.dex", small_dex)]).unresolved_calls == 0
    assert analyze([("classes.dex", quick)]).unresolved_calls == 1


def _container_entry(offset: int, container_size: int) -> bytes:
    """A version 041 DEX entry with empty tables, its header at ``offset`` in the container."""
    fields = [0x78, 0x78, 0x12345678] + [0] * 17
    return b"dex\n041\0" + bytes(24) + struct.pack("<20I2I", *fields, container_size, offset)


def test_version_041_containers_hold_several_entries() -> None:
    container = _container_entry(0, 0xF0) + _container_entry(0x78, 0xF0)
    entries = load_dex("classes.dex", container)
    assert [(e.name, e.version, e.header_offset, e.class_count) for e in entries] == [
        ("classes.dex", 41, 0, 0),
        ("classes.dex/1", 41, 0x78, 0),
    ]
    assert analyze([("classes.dex", container)]).errors == ()
    with pytest.raises(DexFormatError, match="header_offset"):
        load_dex("classes.dex", _container_entry(0, 0xF0) + _container_entry(0, 0xF0))
    with pytest.raises(DexFormatError, match="container_size"):
        load_dex("classes.dex", _container_entry(0, 0x1000))


def _corpus_dexes(path: Path) -> list[tuple[str, bytes]]:
    if path.suffix == ".dex":
        return [(path.name, path.read_bytes())]
    with zipfile.ZipFile(path) as archive:
        names = sorted(n for n in archive.namelist() if re.fullmatch(r"classes\d*\.dex", n))
        return [(name, archive.read(name)) for name in names]


def test_decoder_matches_dexdump_on_a_real_app(corpus: Path, tmp_path: Path) -> None:
    ((name, data),) = _corpus_dexes(corpus / "androguard" / "a2dp.Vol_137.apk")
    dump = dexdump(data, tmp_path)
    expected: dict[tuple[str, str, str], list[int]] = {}
    for class_name, method_name, descriptor, offset in dump:
        expected.setdefault((class_name, method_name, descriptor), []).append(offset)
    (reader,) = load_dex(name, data)
    decoded: dict[tuple[str, str, str], list[int]] = {}
    payloads = 0
    for class_def in reader.class_defs():
        for method in reader.class_methods(class_def):
            if method.code_off:
                units = reader.code_units(reader.code_item(method.code_off))
                insns = list(decode(units))
                payloads += sum(1 for _, op, _ in insns if op >= 0x100)
                key = (
                    reader.type_descriptor(class_def.class_idx),
                    *reader.method(method.method_idx)[1:],
                )
                decoded[key] = [pc for pc, _, _ in insns]
    assert payloads > 0
    assert decoded == {k: sorted(v) for k, v in expected.items()}


def test_call_sites_match_androguard(corpus: Path) -> None:
    from androguard.core.analysis.analysis import Analysis
    from androguard.core.dex import DEX
    from loguru import logger

    logger.remove()
    dexes = _corpus_dexes(corpus / "androguard" / "a2dp.Vol_137.apk")
    report = analyze(dexes)
    analysis = Analysis()
    analysis.add(DEX(dexes[0][1]))
    analysis.create_xref()
    from fwscan.analyze.dex import load_dex
    from fwscan.analyze.dexflow import CONTEXT, _context_classes

    contexts = _context_classes([d for name, data in dexes for d in load_dex(name, data)])
    # A Service subclass of the app: androguard agrees that it descends from a Context.
    assert analysis.get_class_analysis("La2dp/Vol/service;").extends == "Landroid/app/Service;"
    assert "La2dp/Vol/service;" in contexts
    expected = set()
    for rule in (*SOURCES, *SINK_RULES):
        if rule.is_field or rule.string_arg:
            continue
        classes = contexts | {CONTEXT} if rule.class_name == CONTEXT else {rule.class_name}
        for method in (
            m
            for cls in sorted(classes)
            for m in analysis.find_methods(
                classname=re.escape(cls) + "$", methodname=re.escape(rule.member) + "$"
            )
        ):
            for _, caller, offset in method.get_xref_from():
                descriptor = caller.descriptor.replace(" ", "")
                expected.add((caller.class_name, caller.name, descriptor, offset // 2, rule.id))
    got = {use for use in reported_uses(report) if not use[-1].startswith("source.android_id")}
    assert len(expected) > 300
    assert got == expected


def test_corpus_apps_are_read_without_errors(corpus: Path) -> None:
    paths = sorted(
        p
        for folder in ("androguard", "droidbench")
        for p in (corpus / folder).rglob("*")
        if p.suffix in (".apk", ".dex", ".jar")
    )
    assert len(paths) > 130
    read = 0
    for path in paths:
        try:
            dexes = _corpus_dexes(path)
        except zipfile.BadZipFile:
            continue
        report = analyze(dexes)
        assert report.errors == (), path
        read += bool(dexes)
    assert read > 125


DROIDBENCH_LEAKS = {
    "AndroidSpecific/DirectLeak1.apk": ("imei", "sms"),
    "GeneralJava/Loop1.apk": ("imei", "sms"),
    "GeneralJava/Loop2.apk": ("imei", "sms"),
    "GeneralJava/SourceCodeSpecific1.apk": ("imei", "sms"),
    "FieldAndObjectSensitivity/FieldSensitivity3.apk": ("iccid", "sms"),
    "Lifecycle/ActivityLifecycle1.apk": ("imei", "network"),
    "Lifecycle/ActivityLifecycle2.apk": ("imei", "sms"),
    "Lifecycle/ActivityLifecycle3.apk": ("imsi", "sms"),
    "Lifecycle/ServiceLifecycle1.apk": ("iccid", "sms"),
    "Lifecycle/ServiceLifecycle2.apk": ("imei", "log"),
    "Callbacks/Button1.apk": ("imei", "sms"),
    "GeneralJava/StaticInitialization2.apk": ("imei", "sms"),
}
"""DroidBench apps with one explicit leak our rules cover: (category, sink kind)."""
DROIDBENCH_CLEAN = (
    "AndroidSpecific/LogNoLeak.apk",
    "FieldAndObjectSensitivity/FieldSensitivity1.apk",
    "FieldAndObjectSensitivity/ObjectSensitivity1.apk",
    "GeneralJava/VirtualDispatch3.apk",
    "ArraysAndLists/ListAccess1.apk",
)


def test_droidbench_ground_truth(corpus: Path) -> None:
    truth = json.loads((corpus / "droidbench" / "truth.json").read_text())["apps"]
    for app, (category, kind) in DROIDBENCH_LEAKS.items():
        assert truth[app]["expected_leaks"] >= 1
        report = analyze(_corpus_dexes(corpus / "droidbench" / app))
        found = {(c, f.sink.rule.category) for f in report.flows for c in f.categories}
        assert found == {(category, kind)}, app
    for app in DROIDBENCH_CLEAN:
        assert truth[app]["expected_leaks"] == 0
        assert analyze(_corpus_dexes(corpus / "droidbench" / app)).flows == (), app
    (flow,) = analyze(
        _corpus_dexes(corpus / "droidbench" / "AndroidSpecific/DirectLeak1.apk")
    ).flows
    assert flow.target == "+49 1234"
    assert flow.sources[0].rule.id == "source.imei.getDeviceId"


# malformed input


def _header_patch(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<I", value) + data[offset + 4 :]


@pytest.fixture(scope="module")
def small_dex() -> bytes:
    return build_app_dex(
        [Component("com.t.Main", "android.app.Activity")],
        [
            Action(
                "com.t.Main",
                "go",
                reads=("imei", "location"),
                sink="sms",
                target="+1",
                via_helper=True,
            )
        ],
    )


def _broken_variants(data: bytes) -> dict[str, bytes]:
    return {
        "empty": b"",
        "short": data[:0x40],
        "magic": b"dey\n036\0" + data[8:],
        "version": b"dex\n034\0" + data[8:],
        "endian": _header_patch(data, 0x28, 0x78563412),
        "file_size": _header_patch(data, 0x20, len(data) + 1),
        "header_size": _header_patch(data, 0x24, 0x20),
        "string_count": _header_patch(data, 0x38, 0x3FFFFFFF),
        "method_ids_off": _header_patch(data, 0x5C, len(data) - 4),
        "class_defs_count": _header_patch(data, 0x60, 0x08000000),
        "map_off": _header_patch(data, 0x34, 0xFFFFFFF0),
        "truncated": _header_patch(data[: len(data) // 2], 0x20, len(data) // 2),
    }


def test_malformed_headers_are_refused_quickly(small_dex: bytes) -> None:
    for label, data in _broken_variants(small_dex).items():
        start = time.perf_counter()
        with pytest.raises(DexFormatError):
            DexFile(data, label).strings()
        report = analyze([("classes.dex", data)])
        assert report.errors and report.reads == (), label
        assert time.perf_counter() - start < 1, label


def _patch_class_data(data: bytes, value: bytes) -> bytes:
    """Put ``value`` where the first class_def's class_data_off points."""
    class_defs_off = struct.unpack_from("<I", data, 0x64)[0]
    offset = struct.unpack_from("<I", data, class_defs_off + 24)[0]
    return data[:offset] + value + data[offset + len(value) :]


def test_malformed_class_data_and_code_are_reported(small_dex: bytes) -> None:
    huge_counts = _patch_class_data(small_dex, b"\xff\xff\xff\xff\x0f" * 4)
    (reader,) = load_dex("classes.dex", huge_counts)
    with pytest.raises(DexFormatError, match="impossible counts"):
        reader.class_methods(reader.class_defs()[0])
    (reader,) = load_dex("classes.dex", small_dex)
    class_def = reader.class_defs()[0]
    code_off = next(
        m.code_off
        for m in reader.class_methods(class_def)
        if reader.method(m.method_idx)[1] == "go$collect"
    )
    huge_code = _header_patch(small_dex, code_off + 12, 0x7FFFFFFF)
    with pytest.raises(DexFormatError, match="outside the file"):
        load_dex("classes.dex", huge_code)[0].code_item(code_off)
    class_defs_off = struct.unpack_from("<I", small_dex, 0x64)[0]
    past_end = _header_patch(small_dex, class_defs_off + 24, len(small_dex) + 8)
    for data in (huge_counts, huge_code, past_end):
        report = analyze([("classes.dex", data)])
        assert report.errors


def test_mutated_files_never_crash_or_blow_up(small_dex: bytes) -> None:
    rng = random.Random(20240601)
    tracemalloc.start()
    try:
        for _ in range(250):
            data = bytearray(small_dex)
            for _ in range(rng.randint(1, 8)):
                position = rng.randrange(0x20 if rng.random() < 0.3 else 0x70, len(data))
                data[position] = rng.randrange(256)
            start = time.perf_counter()
            report = analyze([("classes.dex", bytes(data))])
            assert isinstance(report, DexReport)
            assert time.perf_counter() - start < 2
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20


def test_one_bad_file_does_not_hide_the_others(synth: tuple[bytes, DexReport]) -> None:
    data, report = synth
    mixed = analyze([("classes.dex", data), ("classes2.dex", b"dex\n035\0junk")])
    assert mixed.reads == report.reads
    assert mixed.flows == report.flows
    assert len(mixed.errors) == 1
    assert "classes2.dex" in mixed.errors[0]

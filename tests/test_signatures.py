"""The signature files and their loader: every rule loads, the key APIs are exactly right, every
rule has a positive and a negative case, and broken files give precise errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from fwscan.endpoints import EndpointMatcher, extract
from fwscan.errors import FwscanError, SignatureError
from fwscan.findings import Severity
from fwscan.rules import SINK_KINDS, SOURCE_CATEGORIES, ApiRule, SignatureSet
from fwscan.signatures import (
    DEFAULT_DIRECTORY,
    check,
    default_directory,
    describe,
    is_class_descriptor,
    is_method_descriptor,
    is_type_descriptor,
    load_signatures,
)

T = "Landroid/telephony/TelephonyManager;"
S = "Ljava/lang/String;"
PI = "Landroid/app/PendingIntent;"


@pytest.fixture(scope="module")
def sigset() -> SignatureSet:
    return load_signatures()


def _rule(sigset: SignatureSet, rule_id: str) -> ApiRule:
    for rule in (*sigset.sources, *sigset.sinks):
        if rule.id == rule_id:
            return rule
    raise AssertionError(f"no rule {rule_id}")


def _matching(
    sigset: SignatureSet, cls: str, member: str, desc: str, arg: str | None = None
) -> list[str]:
    """The ids of the API rules that match one call, by the rules' documented semantics."""
    return [
        r.id
        for r in (*sigset.sources, *sigset.sinks)
        if r.class_name == cls
        and r.member == member
        and (r.descriptor is None or r.descriptor == desc)
        and (r.string_arg is None or r.string_arg == arg)
    ]


# -- the shipped set --------------------------------------------------------------------------


def test_shipped_signatures_are_valid(sigset: SignatureSet) -> None:
    assert check() == []
    assert default_directory() == DEFAULT_DIRECTORY
    assert len(sigset.sources) >= 60
    assert len(sigset.sinks) >= 55
    assert len(sigset.endpoints) >= 25
    assert len(sigset.native) >= 25
    assert len(sigset.library_prefixes) >= 30
    assert {r.category for r in sigset.sources} == set(SOURCE_CATEGORIES)
    assert {r.category for r in sigset.sinks} == set(SINK_KINDS)
    assert all(r.role == "source" for r in sigset.sources)
    assert all(r.role == "sink" for r in sigset.sinks)
    # a bare read is low or medium; a bare call at most medium
    assert {r.severity for r in sigset.sources} <= {Severity.LOW, Severity.MEDIUM}
    assert max(r.severity for r in sigset.sinks) <= Severity.MEDIUM


def test_loading_is_deterministic(sigset: SignatureSet) -> None:
    again = load_signatures(DEFAULT_DIRECTORY)
    assert again == sigset
    assert len(sigset.sha256) == 64
    assert sigset.version == "2026.11.1"


def test_ids_are_unique_and_shaped(sigset: SignatureSet) -> None:
    ids = [r.id for r in (*sigset.sources, *sigset.sinks, *sigset.endpoints, *sigset.native)]
    assert len(ids) == len(set(ids))
    for rule in sigset.sources:
        assert rule.id.startswith(f"source.{rule.category}.")
    for rule in sigset.sinks:
        assert rule.id.startswith(f"sink.{rule.category}.")
    for rule in sigset.native:
        assert rule.id.startswith("native.")


# The key APIs, written out by hand from the Android reference: id -> (class, member, descriptor).
KEY_APIS: dict[str, tuple[str, str, str | None]] = {
    "source.imei.getDeviceId": (T, "getDeviceId", f"(){S}"),
    "source.imei.getDeviceId.slot": (T, "getDeviceId", f"(I){S}"),
    "source.imei.getImei": (T, "getImei", f"(){S}"),
    "source.imei.getImei.slot": (T, "getImei", f"(I){S}"),
    "source.meid.getMeid": (T, "getMeid", f"(){S}"),
    "source.meid.getMeid.slot": (T, "getMeid", f"(I){S}"),
    "source.iccid.getSimSerialNumber": (T, "getSimSerialNumber", f"(){S}"),
    "source.iccid.getSimSerialNumber.subscription": (T, "getSimSerialNumber", f"(I){S}"),
    "source.iccid.SubscriptionInfo.getIccId": (
        "Landroid/telephony/SubscriptionInfo;",
        "getIccId",
        f"(){S}",
    ),
    "source.imsi.getSubscriberId": (T, "getSubscriberId", f"(){S}"),
    "source.imsi.getSubscriberId.subscription": (T, "getSubscriberId", f"(I){S}"),
    "source.phone_number.getLine1Number": (T, "getLine1Number", f"(){S}"),
    "source.phone_number.SubscriptionInfo.getNumber": (
        "Landroid/telephony/SubscriptionInfo;",
        "getNumber",
        f"(){S}",
    ),
    "source.phone_number.SubscriptionManager.getPhoneNumber": (
        "Landroid/telephony/SubscriptionManager;",
        "getPhoneNumber",
        f"(I){S}",
    ),
    "source.phone_number.SubscriptionManager.getPhoneNumber.source": (
        "Landroid/telephony/SubscriptionManager;",
        "getPhoneNumber",
        f"(II){S}",
    ),
    "source.serial.getSerial": ("Landroid/os/Build;", "getSerial", f"(){S}"),
    "source.serial.SERIAL": ("Landroid/os/Build;", "SERIAL", S),
    "source.android_id.Secure.getString": (
        "Landroid/provider/Settings$Secure;",
        "getString",
        f"(Landroid/content/ContentResolver;{S}){S}",
    ),
    "source.mac.WifiInfo.getMacAddress": ("Landroid/net/wifi/WifiInfo;", "getMacAddress", f"(){S}"),
    "source.mac.NetworkInterface.getHardwareAddress": (
        "Ljava/net/NetworkInterface;",
        "getHardwareAddress",
        "()[B",
    ),
    "source.mac.BluetoothAdapter.getAddress": (
        "Landroid/bluetooth/BluetoothAdapter;",
        "getAddress",
        f"(){S}",
    ),
    "source.location.getLastKnownLocation": (
        "Landroid/location/LocationManager;",
        "getLastKnownLocation",
        f"({S})Landroid/location/Location;",
    ),
    "source.location.requestLocationUpdates": (
        "Landroid/location/LocationManager;",
        "requestLocationUpdates",
        None,
    ),
    "source.location.getCurrentLocation": (
        "Landroid/location/LocationManager;",
        "getCurrentLocation",
        None,
    ),
    "source.location.Location.getLatitude": ("Landroid/location/Location;", "getLatitude", "()D"),
    "source.location.Location.getLongitude": ("Landroid/location/Location;", "getLongitude", "()D"),
    "source.location.Fused.getLastLocation": (
        "Lcom/google/android/gms/location/FusedLocationProviderClient;",
        "getLastLocation",
        "()Lcom/google/android/gms/tasks/Task;",
    ),
    "source.location.Fused.requestLocationUpdates": (
        "Lcom/google/android/gms/location/FusedLocationProviderClient;",
        "requestLocationUpdates",
        None,
    ),
    "source.cell_location.getCellLocation": (
        T,
        "getCellLocation",
        "()Landroid/telephony/CellLocation;",
    ),
    "source.cell_location.getAllCellInfo": (T, "getAllCellInfo", "()Ljava/util/List;"),
    "source.cell_location.getNeighboringCellInfo": (
        T,
        "getNeighboringCellInfo",
        "()Ljava/util/List;",
    ),
    "source.cell_location.GsmCellLocation.getCid": (
        "Landroid/telephony/gsm/GsmCellLocation;",
        "getCid",
        "()I",
    ),
    "source.cell_location.GsmCellLocation.getLac": (
        "Landroid/telephony/gsm/GsmCellLocation;",
        "getLac",
        "()I",
    ),
    "source.cell_location.CdmaCellLocation.getBaseStationId": (
        "Landroid/telephony/cdma/CdmaCellLocation;",
        "getBaseStationId",
        "()I",
    ),
    "source.cell_location.CellIdentityGsm.getCid": (
        "Landroid/telephony/CellIdentityGsm;",
        "getCid",
        "()I",
    ),
    "source.cell_location.CellIdentityWcdma.getCid": (
        "Landroid/telephony/CellIdentityWcdma;",
        "getCid",
        "()I",
    ),
    "source.cell_location.CellIdentityLte.getCi": (
        "Landroid/telephony/CellIdentityLte;",
        "getCi",
        "()I",
    ),
    "source.cell_location.CellIdentityLte.getTac": (
        "Landroid/telephony/CellIdentityLte;",
        "getTac",
        "()I",
    ),
    "source.cell_location.CellIdentityNr.getNci": (
        "Landroid/telephony/CellIdentityNr;",
        "getNci",
        "()J",
    ),
    "source.installed_apps.getInstalledPackages": (
        "Landroid/content/pm/PackageManager;",
        "getInstalledPackages",
        "(I)Ljava/util/List;",
    ),
    "source.installed_apps.getInstalledApplications": (
        "Landroid/content/pm/PackageManager;",
        "getInstalledApplications",
        "(I)Ljava/util/List;",
    ),
    "source.accounts.getAccounts": (
        "Landroid/accounts/AccountManager;",
        "getAccounts",
        "()[Landroid/accounts/Account;",
    ),
    "source.accounts.getAccountsByType": (
        "Landroid/accounts/AccountManager;",
        "getAccountsByType",
        f"({S})[Landroid/accounts/Account;",
    ),
    "sink.network.URL.openConnection": (
        "Ljava/net/URL;",
        "openConnection",
        "()Ljava/net/URLConnection;",
    ),
    "sink.network.URL.openStream": ("Ljava/net/URL;", "openStream", "()Ljava/io/InputStream;"),
    "sink.network.URLConnection.getOutputStream": (
        "Ljava/net/URLConnection;",
        "getOutputStream",
        "()Ljava/io/OutputStream;",
    ),
    "sink.network.HttpURLConnection.getOutputStream": (
        "Ljava/net/HttpURLConnection;",
        "getOutputStream",
        "()Ljava/io/OutputStream;",
    ),
    "sink.network.HttpsURLConnection.getOutputStream": (
        "Ljavax/net/ssl/HttpsURLConnection;",
        "getOutputStream",
        "()Ljava/io/OutputStream;",
    ),
    "sink.network.OkHttpClient.newCall": (
        "Lokhttp3/OkHttpClient;",
        "newCall",
        "(Lokhttp3/Request;)Lokhttp3/Call;",
    ),
    "sink.network.okhttp3.Call.execute": ("Lokhttp3/Call;", "execute", "()Lokhttp3/Response;"),
    "sink.network.okhttp3.Call.enqueue": ("Lokhttp3/Call;", "enqueue", "(Lokhttp3/Callback;)V"),
    "sink.network.HttpClient.execute": ("Lorg/apache/http/client/HttpClient;", "execute", None),
    "sink.network.DefaultHttpClient.execute": (
        "Lorg/apache/http/impl/client/DefaultHttpClient;",
        "execute",
        None,
    ),
    "sink.network.Volley.RequestQueue.add": (
        "Lcom/android/volley/RequestQueue;",
        "add",
        "(Lcom/android/volley/Request;)Lcom/android/volley/Request;",
    ),
    "sink.network.Socket.init.host": ("Ljava/net/Socket;", "<init>", f"({S}I)V"),
    "sink.network.Socket.init.address": (
        "Ljava/net/Socket;",
        "<init>",
        "(Ljava/net/InetAddress;I)V",
    ),
    "sink.network.Socket.getOutputStream": (
        "Ljava/net/Socket;",
        "getOutputStream",
        "()Ljava/io/OutputStream;",
    ),
    "sink.network.DatagramSocket.send": (
        "Ljava/net/DatagramSocket;",
        "send",
        "(Ljava/net/DatagramPacket;)V",
    ),
    "sink.network.WebView.loadUrl": ("Landroid/webkit/WebView;", "loadUrl", f"({S})V"),
    "sink.network.WebView.postUrl": ("Landroid/webkit/WebView;", "postUrl", f"({S}[B)V"),
    "sink.sms.sendTextMessage": (
        "Landroid/telephony/SmsManager;",
        "sendTextMessage",
        f"({S}{S}{S}{PI}{PI})V",
    ),
    "sink.sms.sendDataMessage": (
        "Landroid/telephony/SmsManager;",
        "sendDataMessage",
        f"({S}{S}S[B{PI}{PI})V",
    ),
    "sink.sms.sendMultipartTextMessage": (
        "Landroid/telephony/SmsManager;",
        "sendMultipartTextMessage",
        None,
    ),
    "sink.sms.gsm.sendTextMessage": (
        "Landroid/telephony/gsm/SmsManager;",
        "sendTextMessage",
        f"({S}{S}{S}{PI}{PI})V",
    ),
    "sink.log.Log.d": ("Landroid/util/Log;", "d", None),
    "sink.log.Log.wtf": ("Landroid/util/Log;", "wtf", None),
    "sink.file.FileOutputStream.init.path": ("Ljava/io/FileOutputStream;", "<init>", f"({S})V"),
    "sink.file.FileWriter.init": ("Ljava/io/FileWriter;", "<init>", None),
    "sink.file.Context.openFileOutput": (
        "Landroid/content/Context;",
        "openFileOutput",
        f"({S}I)Ljava/io/FileOutputStream;",
    ),
    "sink.ipc.Context.sendBroadcast": ("Landroid/content/Context;", "sendBroadcast", None),
    "sink.ipc.Context.startActivity": ("Landroid/content/Context;", "startActivity", None),
    "sink.ipc.Context.startService": (
        "Landroid/content/Context;",
        "startService",
        "(Landroid/content/Intent;)Landroid/content/ComponentName;",
    ),
    "sink.ipc.ContentResolver.insert": ("Landroid/content/ContentResolver;", "insert", None),
}


@pytest.mark.parametrize("rule_id", sorted(KEY_APIS))
def test_key_api_exactly(sigset: SignatureSet, rule_id: str) -> None:
    rule = _rule(sigset, rule_id)
    assert (rule.class_name, rule.member, rule.descriptor) == KEY_APIS[rule_id]


def test_key_api_details(sigset: SignatureSet) -> None:
    serial = _rule(sigset, "source.serial.SERIAL")
    assert serial.is_field and serial.descriptor == S
    android_id = _rule(sigset, "source.android_id.Secure.getString")
    assert android_id.string_arg == "android_id" and not android_id.is_field
    assert _rule(sigset, "source.imei.getImei").min_api == 26
    assert _rule(sigset, "source.imei.getDeviceId.slot").min_api == 23
    assert _rule(sigset, "source.cell_location.getNeighboringCellInfo").max_api == 28
    assert _rule(sigset, "source.cell_location.CellIdentityNr.getNci").min_api == 29
    assert _rule(sigset, "source.phone_number.SubscriptionManager.getPhoneNumber").min_api == 33
    assert _rule(sigset, "source.imei.getImei").permission == "android.permission.READ_PHONE_STATE"
    assert _rule(sigset, "sink.sms.sendTextMessage").permission == "android.permission.SEND_SMS"


def test_every_descriptor_is_valid_smali(sigset: SignatureSet) -> None:
    for rule in (*sigset.sources, *sigset.sinks):
        assert is_class_descriptor(rule.class_name), rule.id
        if rule.is_field:
            assert rule.descriptor is not None and is_type_descriptor(rule.descriptor), rule.id
        elif rule.descriptor is not None:
            assert is_method_descriptor(rule.descriptor), rule.id
        assert all(ref.startswith(("https://", "http://")) for ref in rule.references), rule.id


@pytest.mark.parametrize(
    ("text", "method", "cls", "typ"),
    [
        ("()V", True, False, False),
        ("(I)Ljava/lang/String;", True, False, False),
        ("([BLandroid/app/PendingIntent;J)[[I", True, False, False),
        ("(Landroid/telephony/TelephonyManager$CellInfoCallback;)V", True, False, False),
        ("Landroid/os/Build;", False, True, True),
        ("[B", False, False, True),
        ("I", False, False, True),
        ("(I", False, False, False),
        ("(V)V", False, False, False),
        ("()", False, False, False),
        ("(Ljava/lang/String)V", False, False, False),
        ("Ljava.lang.String;", False, False, False),
        ("android/os/Build", False, False, False),
        ("V", False, False, False),
        ("L;", False, False, False),
        ("Ljava//String;", False, False, False),
    ],
)
def test_descriptor_syntax(text: str, method: bool, cls: bool, typ: bool) -> None:
    assert is_method_descriptor(text) is method
    assert is_class_descriptor(text) is cls
    assert is_type_descriptor(text) is typ


def test_each_api_rule_has_positive_and_negative_cases(sigset: SignatureSet) -> None:
    for rule in (*sigset.sources, *sigset.sinks):
        desc = rule.descriptor or "(Ljava/lang/Object;)V"
        # positive: the call the rule describes matches it, and only it
        assert _matching(sigset, rule.class_name, rule.member, desc, rule.string_arg) == [rule.id]
        # negative: the same member on another class, another member, another overload
        assert rule.id not in _matching(sigset, "Lcom/example/Fake;", rule.member, desc)
        assert rule.id not in _matching(sigset, rule.class_name, rule.member + "X", desc)
        if rule.descriptor is not None and not rule.is_field:
            other = "(Lcom/example/Fake;)V"
            assert rule.id not in _matching(sigset, rule.class_name, rule.member, other)
        if rule.string_arg is not None:
            assert not _matching(sigset, rule.class_name, rule.member, desc, "bluetooth_name")


def test_synth_planted_calls_are_matched(sigset: SignatureSet) -> None:
    """Every identifier read and sink the sample-firmware synthesizer plants has its rule."""
    planted = {
        (T, "getImei", f"(){S}"): "source.imei.getImei",
        (T, "getDeviceId", f"(){S}"): "source.imei.getDeviceId",
        (T, "getMeid", f"(){S}"): "source.meid.getMeid",
        (T, "getSimSerialNumber", f"(){S}"): "source.iccid.getSimSerialNumber",
        (T, "getSubscriberId", f"(){S}"): "source.imsi.getSubscriberId",
        (T, "getLine1Number", f"(){S}"): "source.phone_number.getLine1Number",
        (T, "getCellLocation", "()Landroid/telephony/CellLocation;"): (
            "source.cell_location.getCellLocation"
        ),
        ("Landroid/telephony/gsm/GsmCellLocation;", "getCid", "()I"): (
            "source.cell_location.GsmCellLocation.getCid"
        ),
        ("Landroid/os/Build;", "getSerial", f"(){S}"): "source.serial.getSerial",
        ("Landroid/net/wifi/WifiInfo;", "getMacAddress", f"(){S}"): (
            "source.mac.WifiInfo.getMacAddress"
        ),
        ("Landroid/content/pm/PackageManager;", "getInstalledPackages", "(I)Ljava/util/List;"): (
            "source.installed_apps.getInstalledPackages"
        ),
        ("Landroid/accounts/AccountManager;", "getAccounts", "()[Landroid/accounts/Account;"): (
            "source.accounts.getAccounts"
        ),
        ("Ljava/net/URL;", "openConnection", "()Ljava/net/URLConnection;"): (
            "sink.network.URL.openConnection"
        ),
        ("Ljava/net/HttpURLConnection;", "getOutputStream", "()Ljava/io/OutputStream;"): (
            "sink.network.HttpURLConnection.getOutputStream"
        ),
        ("Ljava/net/HttpURLConnection;", "getInputStream", "()Ljava/io/InputStream;"): (
            "sink.network.HttpURLConnection.getInputStream"
        ),
        ("Ljava/net/Socket;", "<init>", f"({S}I)V"): "sink.network.Socket.init.host",
        ("Landroid/util/Log;", "d", f"({S}{S})I"): "sink.log.Log.d",
        ("Ljava/io/FileOutputStream;", "<init>", f"({S})V"): "sink.file.FileOutputStream.init.path",
    }
    for (cls, member, desc), rule_id in planted.items():
        assert _matching(sigset, cls, member, desc) == [rule_id]
    getter = f"(Landroid/content/ContentResolver;{S}){S}"
    secure = "Landroid/provider/Settings$Secure;"
    assert _matching(sigset, secure, "getString", getter, "android_id") == [
        "source.android_id.Secure.getString"
    ]
    assert _matching(sigset, secure, "getString", getter, "bluetooth_name") == []
    # displaying a value is not a sink
    assert (
        _matching(sigset, "Landroid/widget/TextView;", "setText", "(Ljava/lang/CharSequence;)V")
        == []
    )


# -- endpoints, native, libraries -------------------------------------------------------------


def test_each_endpoint_rule_matches_its_hosts_and_not_lookalikes(sigset: SignatureSet) -> None:
    matcher = EndpointMatcher(sigset.endpoints)
    for rule in sigset.endpoints:
        for domain in rule.domains:
            assert matcher.match(domain) is rule
            assert matcher.match("x1." + domain) is rule
            assert matcher.match(domain.upper() + ".") is rule
            assert matcher.match("evil" + domain) is not rule
            assert matcher.match(domain + ".evil.com") is None
            # extraction and matching agree: the domain is an external host as a string and a URL
            found = extract(f"host={domain};url=https://{domain}/x")
            assert [(e.kind, e.host, e.external) for e in found] == [
                ("host", domain, True),
                ("url", domain, True),
            ]


def test_nokia_and_adups_endpoints(sigset: SignatureSet) -> None:
    matcher = EndpointMatcher(sigset.endpoints)
    zzhc = matcher.match("zzhc.vnet.cn")
    assert zzhc is not None and zzhc.id == "endpoint.chinatelecom.zzhc"
    assert (zzhc.country, zzhc.purpose, zzhc.severity) == ("CN", "registration", Severity.HIGH)
    for lookalike in ("evilvnet.cn", "vnet.cn.evil.com", "xzzhc.vnet.cn", "zzhc.vnet.cn.evil.com"):
        assert matcher.match(lookalike) is None, lookalike
    ep = extract("http://zzhc.vnet.cn:9998/")[0]
    assert matcher.match(ep.host) is zzhc
    expected = {
        "bigdata.adups.com": "endpoint.adups.bigdata",
        "bigdata.adsunflower.com": "endpoint.adups.bigdata",
        "rebootv5.adsunflower.com": "endpoint.adups.command",
        "fota.adups.com": "endpoint.adups.fota",
        "www.adsunflower.com": "endpoint.adups.fota",
        "tracking.intl.miui.com": "endpoint.xiaomi.tracking",
        "xtrapath1.izatcloud.net": "endpoint.qualcomm.xtra",
        "ssl.google-analytics.com": "endpoint.google.analytics",
        "alog.umeng.com": "endpoint.umeng",
    }
    for host, rule_id in expected.items():
        rule = matcher.match(host)
        assert rule is not None and rule.id == rule_id, host
    assert matcher.match("adups.com.cn") is None
    assert matcher.match("www.google.com") is None


def test_each_native_rule_has_positive_and_negative_cases(sigset: SignatureSet) -> None:
    for rule in sigset.native:
        if rule.pattern.endswith("*"):
            stem = rule.pattern[:-1]
            assert rule.matches(stem + "x1")
            assert not rule.matches(stem[:-1])
        else:
            assert rule.matches(rule.pattern)
            assert not rule.matches(rule.pattern + "x")
        assert not rule.matches("x" + rule.pattern.rstrip("*"))
        assert "*" not in rule.pattern[:-1], rule.id
    by_id = {r.id: r for r in sigset.native}
    assert by_id["native.serial.ro-serialno"].matches("ro.serialno")
    assert not by_id["native.serial.ro-serialno"].matches("ro.serialno2")
    assert by_id["native.radio.ril"].matches("ril.serialnumber")
    assert not by_id["native.radio.ril"].matches("rild.libpath")
    assert by_id["native.network.curl"].matches("curl_easy_perform")
    assert by_id["native.property.__system_property_read"].matches("__system_property_read")
    assert not by_id["native.property.__system_property_read"].matches(
        "__system_property_read_callback"
    )
    kinds = {(r.kind, r.category) for r in sigset.native}
    assert ("function", "network") in kinds and ("function", "property") in kinds


def test_library_prefixes(sigset: SignatureSet) -> None:
    prefixes = sigset.library_prefixes
    assert list(prefixes) == sorted(set(prefixes))
    for needed in (
        "androidx.",
        "android.support.",
        "com.google.",
        "kotlin.",
        "kotlinx.",
        "okhttp3.",
        "com.squareup.",
        "io.reactivex.",
        "com.facebook.",
    ):
        assert needed in prefixes
    for prefix in prefixes:
        assert prefix.endswith(".")
        assert (prefix + "Foo").startswith(prefixes)
    assert not "com.example.app.Main".startswith(prefixes)
    assert not "androidxx.Foo".startswith(prefixes)


def test_describe_rows(sigset: SignatureSet) -> None:
    rows = describe(sigset)
    total = (
        len(sigset.sources)
        + len(sigset.sinks)
        + len(sigset.endpoints)
        + len(sigset.native)
        + len(sigset.library_prefixes)
    )
    assert len(rows) == total
    assert all(set(row) == {"id", "kind", "severity", "summary"} for row in rows)
    by_id = {row["id"]: row for row in rows}
    assert len(by_id) == total
    assert by_id["source.imei.getImei.slot"] == {
        "id": "source.imei.getImei.slot",
        "kind": "source",
        "severity": "medium",
        "summary": "imei: TelephonyManager.getImei(I)Ljava/lang/String;",
    }
    assert (
        by_id["source.serial.SERIAL"]["summary"]
        == "serial: Build.SERIAL (field Ljava/lang/String;)"
    )
    assert "every overload" in by_id["sink.log.Log.d"]["summary"]
    assert '"android_id"' in by_id["source.android_id.Secure.getString"]["summary"]
    assert by_id["endpoint.chinatelecom.zzhc"]["summary"] == (
        "registration: zzhc.vnet.cn (China Telecom, CN)"
    )
    assert by_id["library.androidx"]["kind"] == "library"
    assert [row["kind"] for row in rows] == sorted(
        (row["kind"] for row in rows),
        key=["source", "sink", "endpoint", "native", "library"].index,
    )


def test_environment_overrides_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FWSCAN_SIGNATURES", str(tmp_path))
    assert default_directory() == tmp_path
    assert f"{tmp_path}: no sources.yaml file" in check()


# -- broken files -----------------------------------------------------------------------------

API_RULE: dict[str, Any] = {
    "id": "source.imei.getImei",
    "category": "imei",
    "class": T,
    "method": "getImei",
    "descriptor": f"(){S}",
    "permission": "android.permission.READ_PHONE_STATE",
    "min_api": 26,
    "severity": "medium",
    "description": "TelephonyManager.getImei().",
    "references": ["https://developer.android.com/reference/android/telephony/TelephonyManager"],
}
MINIMAL: dict[str, dict[str, Any]] = {
    "sources": API_RULE,
    "sinks": {
        "id": "sink.network.URL.openConnection",
        "category": "network",
        "class": "Ljava/net/URL;",
        "method": "openConnection",
        "descriptor": "()Ljava/net/URLConnection;",
        "severity": "low",
        "description": "URL.openConnection().",
        "references": ["https://developer.android.com/reference/java/net/URL"],
    },
    "endpoints": {
        "id": "endpoint.chinatelecom.zzhc",
        "domains": ["zzhc.vnet.cn"],
        "owner": "China Telecom",
        "country": "CN",
        "purpose": "registration",
        "severity": "high",
        "description": "Self-registration.",
        "references": ["https://www.androidpolice.com/2019/03/21/x/"],
    },
    "native": {
        "id": "native.serial.ro-serialno",
        "kind": "property",
        "pattern": "ro.serialno",
        "category": "serial",
        "severity": "medium",
        "description": "Serial number.",
        "references": ["https://source.android.com/docs/core"],
    },
    "libraries": {
        "id": "library.androidx",
        "prefix": "androidx.",
        "owner": "Google",
        "severity": "info",
        "description": "AndroidX.",
        "references": ["https://developer.android.com/jetpack/androidx"],
    },
}


def _write(directory: Path, family: str, rules: list[dict[str, Any]], **top: Any) -> Path:
    data: dict[str, Any] = {"schema_version": 1, "version": "2026.11.1", **top, "rules": rules}
    path = directory / f"{family}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def minimal(tmp_path: Path) -> Path:
    """A valid set of five files with one rule each."""
    for family, rule in MINIMAL.items():
        _write(tmp_path, family, [dict(rule)])
    assert check(tmp_path) == []
    return tmp_path


def _with(minimal: Path, family: str, **changes: Any) -> list[str]:
    """The problems after changing fields of the family's one rule (``None`` deletes a key)."""
    rule = dict(MINIMAL[family])
    for key, value in changes.items():
        if value is None:
            rule.pop(key, None)
        else:
            rule[key] = value
    _write(minimal, family, [rule])
    return check(minimal)


def test_minimal_set_loads(minimal: Path) -> None:
    sigset = load_signatures(minimal)
    assert [r.id for r in sigset.sources] == ["source.imei.getImei"]
    assert sigset.library_prefixes == ("androidx.",)
    assert sigset.sources[0].severity is Severity.MEDIUM


@pytest.mark.parametrize(
    ("family", "changes", "message"),
    [
        (
            "sources",
            {"colour": "red"},
            "sources.yaml: rules[0] (source.imei.getImei): colour: unknown key",
        ),
        (
            "sources",
            {"severity": "severe"},
            "sources.yaml: rules[0] (source.imei.getImei): severity: unknown severity 'severe'",
        ),
        (
            "sources",
            {"category": "imei2"},
            "sources.yaml: rules[0] (source.imei.getImei): category: 'imei2' is not one of imei,",
        ),
        (
            "sources",
            {"descriptor": "(I"},
            "sources.yaml: rules[0] (source.imei.getImei): descriptor: '(I' is not a smali method",
        ),
        (
            "sources",
            {"class": "android/telephony/TelephonyManager"},
            "sources.yaml: rules[0] (source.imei.getImei): class: 'android/telephony/Telephony",
        ),
        (
            "sources",
            {"field": "IMEI"},
            "sources.yaml: rules[0] (source.imei.getImei): method: give exactly one of method",
        ),
        ("sources", {"method": None}, "method: give exactly one of method and field"),
        ("sources", {"method": "get-Imei"}, "method: 'get-Imei' is not a method name"),
        ("sources", {"min_api": 0}, "min_api: must be an API level between 1 and 99, not 0"),
        ("sources", {"max_api": 20}, "max_api: 20 is below min_api 26"),
        ("sources", {"min_api": "26"}, "min_api: must be an API level between 1 and 99, not '26'"),
        ("sources", {"permission": "READ_PHONE_STATE"}, "permission: 'READ_PHONE_STATE' is not"),
        ("sources", {"references": []}, "references: must be a non-empty list of strings"),
        ("sources", {"references": ["developer.android.com"]}, "is not an http(s) URL"),
        ("sources", {"description": ""}, "description: must not be empty"),
        ("sources", {"id": None}, "sources.yaml: rules[0]: id: missing"),
        ("sources", {"id": "sink.imei.getImei"}, "id: ids in sources files start with 'source.'"),
        ("sources", {"id": "source imei"}, "id: 'source imei' is not <family>.<category>.<name>"),
        ("sinks", {"category": "imei"}, "sinks.yaml: rules[0] (sink.network.URL.openConnection): "),
        ("endpoints", {"domains": ["com.cn"]}, "domains: 'com.cn': not under a registrable domain"),
        ("endpoints", {"domains": ["Zzhc.vnet.cn"]}, "domains: 'Zzhc.vnet.cn': write domains in"),
        ("endpoints", {"domains": ["evil_host.cn"]}, "domains: 'evil_host.cn': not a host name"),
        ("endpoints", {"domains": ["localhost"]}, "domains: 'localhost': not a host name"),
        ("endpoints", {"domains": ["x.unknowntld"]}, "not under a registrable domain"),
        ("endpoints", {"country": "CHN"}, "country: 'CHN' is not an ISO 3166-1 alpha-2 code"),
        ("endpoints", {"country": False}, "country: must be a string, not bool False (quote it)"),
        ("endpoints", {"purpose": "spying"}, "purpose: 'spying' is not one of registration,"),
        ("native", {"pattern": "persist.sys.*imei*"}, "pattern: 'persist.sys.*imei*' is not a"),
        ("native", {"pattern": "ril*"}, "pattern: a property prefix ends at a dot"),
        ("native", {"pattern": "*"}, "pattern: '*' is not a property name"),
        ("native", {"category": "network"}, "category: 'network' is not one of imei,"),
        ("native", {"kind": "symbol"}, "kind: 'symbol' is not one of property, function"),
        ("libraries", {"prefix": "androidx"}, "prefix: 'androidx' is not a Java package prefix"),
        ("libraries", {"id": "library.jetpack"}, "id: the id of prefix 'androidx.' is"),
        ("libraries", {"severity": "low"}, "severity: library rules are info"),
    ],
)
def test_broken_rule_gives_a_precise_error(
    minimal: Path, family: str, changes: dict[str, Any], message: str
) -> None:
    problems = _with(minimal, family, **changes)
    assert any(message in p for p in problems), problems
    with pytest.raises(SignatureError) as info:
        load_signatures(minimal)
    assert info.value.exit_code == 8
    assert isinstance(info.value, FwscanError)
    assert str(info.value).startswith("invalid signatures: ")


def test_all_problems_of_a_rule_are_reported(minimal: Path) -> None:
    problems = _with(minimal, "sources", severity="severe", descriptor="(I", category="x")
    assert len(problems) == 3
    with pytest.raises(SignatureError, match=r"\(and 2 more problems\)"):
        load_signatures(minimal)


def test_duplicate_ids_across_files(minimal: Path) -> None:
    other = dict(API_RULE, method="getMeid", category="meid")
    _write(minimal, "sources-extra", [other])
    problems = check(minimal)
    assert problems == [
        "sources-extra.yaml: rules[0] (source.imei.getImei): id: 'source.imei.getImei' is "
        "already used in sources.yaml: rules[0] (source.imei.getImei)"
    ]


def test_split_family_files_load(minimal: Path) -> None:
    other = dict(API_RULE, id="source.meid.getMeid", method="getMeid", category="meid")
    _write(minimal, "sources-extra", [other])
    sigset = load_signatures(minimal)
    assert [r.id for r in sigset.sources] == ["source.imei.getImei", "source.meid.getMeid"]


def test_retired_ids_are_never_reused(minimal: Path) -> None:
    _write(minimal, "native", [MINIMAL["native"]], retired=["source.imei.getImei"])
    problems = check(minimal)
    assert len(problems) == 1
    assert "id 'source.imei.getImei' is retired in native.yaml" in problems[0]


def test_overlapping_api_rules(minimal: Path) -> None:
    every = dict(API_RULE, id="source.imei.getImei.all", descriptor=None)
    same = dict(API_RULE, id="source.imei.getImei.again")
    _write(minimal, "sources", [API_RULE, every, same])
    problems = check(minimal)
    assert "source.imei.getImei.again: matches the same API as source.imei.getImei" in problems
    assert any("source.imei.getImei.all: covers every overload" in p for p in problems)


def test_duplicate_domains_and_patterns(minimal: Path) -> None:
    twin = dict(MINIMAL["endpoints"], id="endpoint.chinatelecom.zzhc2")
    _write(minimal, "endpoints", [MINIMAL["endpoints"], twin])
    nat = dict(MINIMAL["native"], id="native.serial.ro-serialno2")
    _write(minimal, "native", [MINIMAL["native"], nat])
    problems = check(minimal)
    assert (
        "endpoint.chinatelecom.zzhc2: domain 'zzhc.vnet.cn' is in endpoint.chinatelecom.zzhc"
        in (problems)
    )
    assert "native.serial.ro-serialno2: property 'ro.serialno' is in native.serial.ro-serialno" in (
        problems
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "schema_version: 1\nversion: '2026.11.1'\nrules:\n  - id: a\n    id: b\n",
            "sources.yaml: not valid YAML: line 5, column 5: key 'id' is written twice",
        ),
        ("schema_version: 1\nrules: [\n", "sources.yaml: not valid YAML: line 3"),
        ("- a\n- b\n", "sources.yaml: the file must be a mapping"),
        ("schema_version: 2\nversion: '2026.11.1'\nrules: []\n", "schema_version: must be 1"),
        ("schema_version: 1\nversion: 2026.11\nrules: []\n", 'version: must be a quoted "YYYY'),
        ("schema_version: 1\nversion: '2026.13.1'\nrules: []\n", "version: must be a quoted"),
        ("schema_version: 1\nversion: '2026.11.1'\nrules: {}\n", "rules: must be a list"),
        ("schema_version: 1\nversion: '2026.11.1'\nrule: []\n", "unknown top-level key 'rule'"),
        ("schema_version: 1\nversion: '2026.11.1'\nrules: [3]\n", "rules[0]: a rule must be"),
    ],
)
def test_broken_file_gives_a_precise_error(minimal: Path, text: str, message: str) -> None:
    (minimal / "sources.yaml").write_text(text, encoding="utf-8")
    problems = check(minimal)
    assert any(message in p for p in problems), problems


def test_unknown_and_missing_files(minimal: Path) -> None:
    (minimal / "trackers.yaml").write_text("rules: []\n", encoding="utf-8")
    (minimal / "sinks.yml").write_text("rules: []\n", encoding="utf-8")
    (minimal / "native.yaml").unlink()
    (minimal / "notes.txt").write_text("not a signature file\n", encoding="utf-8")
    problems = check(minimal)
    assert any(p.startswith("trackers.yaml: unknown signature file") for p in problems)
    assert "sinks.yml: signature files end in .yaml, not .yml" in problems
    assert f"{minimal}: no native.yaml file" in problems
    assert len(problems) == 3
    assert check(minimal / "missing") == [f"{minimal / 'missing'}: not a directory"]


def test_sha256_follows_the_bytes(minimal: Path) -> None:
    first = load_signatures(minimal)
    assert load_signatures(minimal).sha256 == first.sha256
    path = minimal / "native.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "# a comment\n", encoding="utf-8")
    second = load_signatures(minimal)
    assert second.sha256 != first.sha256
    assert second.native == first.native
    # a README (or any non-YAML file) is not part of the set
    (minimal / "README.md").write_text("docs\n", encoding="utf-8")
    assert load_signatures(minimal).sha256 == second.sha256
    # the same bytes under another file name are another set
    _write(minimal, "sources-extra", [dict(API_RULE, id="source.meid.getMeid", method="getMeid")])
    assert load_signatures(minimal).sha256 != second.sha256


def test_set_version_is_the_highest_file_version(minimal: Path) -> None:
    _write(minimal, "native", [MINIMAL["native"]])
    data = yaml.safe_load((minimal / "native.yaml").read_text(encoding="utf-8"))
    data["version"] = "2027.01.3"
    (minimal / "native.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_signatures(minimal).version == "2027.01.3"


def test_shipped_files_survive_a_copy(tmp_path: Path) -> None:
    target = tmp_path / "signatures"
    shutil.copytree(DEFAULT_DIRECTORY, target)
    copy = load_signatures(target)
    assert copy == load_signatures()

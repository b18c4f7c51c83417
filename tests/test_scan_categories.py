"""Every identifier category and every sink kind, positive and negative, on synthesized APKs.

One APK per case, all scanned together as a directory (one pool, one pass)."""

from __future__ import annotations

import pytest

from fwscan.findings import Kind
from fwscan.pipeline import ScanOptions, scan
from fwscan.scanresult import ScanResult
from fwscan.synth.axml import Component
from fwscan.synth.behaviours import Action
from fwscan.synth.build import build_app
from fwscan.synth.manifest import AppSpec

CATEGORY_OF = {
    "imei": "imei",
    "device_id": "imei",
    "meid": "meid",
    "iccid": "iccid",
    "imsi": "imsi",
    "phone_number": "phone_number",
    "cell_id": "cell_location",
    "lac": "cell_location",
    "serial": "serial",
    "android_id": "android_id",
    "mac": "mac",
    "location": "location",
    "installed_apps": "installed_apps",
    "accounts": "accounts",
}
SINK_OF = {
    "http_post": ("network", "http://collect.example.net/upload"),
    "http_get": ("network", "https://collect.example.net/q?id="),
    "socket": ("network", "collect.example.net:5555"),
    "sms": ("sms", "10659401"),
    "log": ("log", "TAG"),
    "file": ("file", "/sdcard/id.txt"),
    "broadcast": ("ipc", "com.example.ID_READY"),
}


def _app(package: str, action: Action) -> AppSpec:
    return AppSpec(
        package=package,
        path=f"/system/app/{package}/{package}.apk",
        version_code=1,
        version_name="1",
        key="releasekey",
        components=(Component(kind="activity", name=f"{package}.Main"),),
        behaviours=(action,),
    )


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> ScanResult:
    folder = tmp_path_factory.mktemp("apps")
    apps = []
    for ident, category in CATEGORY_OF.items():
        pkg = f"com.read.{ident}"
        apps.append(
            _app(
                pkg,
                Action(
                    f"{pkg}.Main",
                    "go",
                    reads=(ident,),
                    sink="http_post",
                    target="http://collect.example.net/upload",
                ),
            )
        )
        other = "iccid" if category == "imei" else "imei"
        pkg = f"com.noread.{ident}"
        apps.append(_app(pkg, Action(f"{pkg}.Main", "go", reads=(other,), sink="display")))
    for sink, (_kind, target) in SINK_OF.items():
        pkg = f"com.sink.{sink}"
        apps.append(
            _app(pkg, Action(f"{pkg}.Main", "go", reads=("imei",), sink=sink, target=target))
        )
        pkg = f"com.nosource.{sink}"
        apps.append(_app(pkg, Action(f"{pkg}.Main", "go", reads=(), sink=sink, target=target)))
        pkg = f"com.helper.{sink}"
        apps.append(
            _app(
                pkg,
                Action(
                    f"{pkg}.Main", "go", reads=("imsi",), sink=sink, target=target, via_helper=True
                ),
            )
        )
    for app in apps:
        build_app(app, folder / f"{app.package}.apk")
    return scan(folder, ScanOptions(jobs=2))[0]


def _findings(result: ScanResult, package: str, kind: Kind) -> list:  # type: ignore[type-arg]
    return [f for f in result.findings if f.component == package and f.kind is kind]


@pytest.mark.parametrize("ident", sorted(CATEGORY_OF))
def test_each_identifier_is_read_and_flows(result: ScanResult, ident: str) -> None:
    category = CATEGORY_OF[ident]
    pkg = f"com.read.{ident}"
    assert {f.category for f in _findings(result, pkg, Kind.READ)} == {category}
    (flow,) = _findings(result, pkg, Kind.FLOW)
    assert flow.category == category
    assert flow.target == "http://collect.example.net/upload"
    # Negative: the same shape of app reading another identifier and only showing it.
    neg = f"com.noread.{ident}"
    assert category not in {f.category for f in _findings(result, neg, Kind.READ)}
    assert _findings(result, neg, Kind.FLOW) == []


@pytest.mark.parametrize("sink", sorted(SINK_OF))
def test_each_sink_kind(result: ScanResult, sink: str) -> None:
    kind, target = SINK_OF[sink]
    (flow,) = _findings(result, f"com.sink.{sink}", Kind.FLOW)
    assert dict(flow.attributes)["sink"] == kind
    assert flow.category == "imei"
    if sink == "socket":  # the host constant reaches the Socket; the port is an int
        assert flow.target == target.split(":")[0]
    elif sink == "log":  # one log finding per app; the tags are an attribute
        assert flow.target == ""
        assert dict(flow.attributes)["tags"] == target
    elif sink != "http_get":  # the GET URL is built from the target and the identifier
        assert flow.target == target
    # Through a helper chain the flow is still found, and its chain is longer.
    (helper,) = _findings(result, f"com.helper.{sink}", Kind.FLOW)
    assert dict(helper.attributes)["sink"] == kind
    assert int(dict(helper.attributes)["chain_length"]) >= 2
    # Negative: the sink used with no identifier is not a flow.
    assert _findings(result, f"com.nosource.{sink}", Kind.FLOW) == []
    assert _findings(result, f"com.nosource.{sink}", Kind.READ) == []

"""Endpoint extraction by a strict grammar, and the domain-suffix matcher."""

from __future__ import annotations

import time

import pytest

from fwscan.endpoints import (
    Endpoint,
    EndpointMatcher,
    extract,
    host_is_external,
    is_candidate,
    is_namespace,
    psl_version,
    registrable_domain,
)
from fwscan.findings import Severity
from fwscan.rules import EndpointRule

# text -> [(kind, value, host, port, cleartext, external)]
POSITIVE: list[tuple[str, list[tuple[str, str, str, int | None, bool, bool]]]] = [
    # the Nokia 7 plus case
    (
        "http://zzhc.vnet.cn:9998/",
        [("url", "http://zzhc.vnet.cn:9998/", "zzhc.vnet.cn", 9998, True, True)],
    ),
    (
        "POST to http://zzhc.vnet.cn:9998/ failed.",
        [("url", "http://zzhc.vnet.cn:9998/", "zzhc.vnet.cn", 9998, True, True)],
    ),
    ("zzhc.vnet.cn:9998", [("host", "zzhc.vnet.cn:9998", "zzhc.vnet.cn", 9998, False, True)]),
    ("zzhc.vnet.cn", [("host", "zzhc.vnet.cn", "zzhc.vnet.cn", None, False, True)]),
    # schemes
    (
        "https://api.branch.io/v1/open",
        [("url", "https://api.branch.io/v1/open", "api.branch.io", None, False, True)],
    ),
    (
        "wss://push.example.net",
        [("url", "wss://push.example.net", "push.example.net", None, False, False)],
    ),
    ("ws://ws.foo.cn/s", [("url", "ws://ws.foo.cn/s", "ws.foo.cn", None, True, True)]),
    ("ftp://1.2.3.4/pub", [("url", "ftp://1.2.3.4/pub", "1.2.3.4", None, True, True)]),
    (
        "rtsp://cam.vendor.com:554/live",
        [("url", "rtsp://cam.vendor.com:554/live", "cam.vendor.com", 554, True, True)],
    ),
    (
        "mqtt://broker.hivemq.com:1883",
        [("url", "mqtt://broker.hivemq.com:1883", "broker.hivemq.com", 1883, True, True)],
    ),
    (
        "mqtts://broker.hivemq.com:8883",
        [("url", "mqtts://broker.hivemq.com:8883", "broker.hivemq.com", 8883, False, True)],
    ),
    (
        "HTTP://WWW.Example.COM/Path",
        [("url", "HTTP://WWW.Example.COM/Path", "www.example.com", None, True, False)],
    ),
    # userinfo, query, fragment
    (
        "http://user:pw@ftp.vendor.com:21/f",
        [("url", "http://user:pw@ftp.vendor.com:21/f", "ftp.vendor.com", 21, True, True)],
    ),
    (
        "https://a.b.cn/p?imei=%s&iccid=%s#top",
        [("url", "https://a.b.cn/p?imei=%s&iccid=%s#top", "a.b.cn", None, False, True)],
    ),
    # IPv6
    (
        "http://[2001:4860::8888]:8080/x",
        [("url", "http://[2001:4860::8888]:8080/x", "2001:4860::8888", 8080, True, True)],
    ),
    (
        "http://[::1]/status",
        [("url", "http://[::1]/status", "::1", None, True, False)],
    ),
    (
        "2001:4860:4860::8888",
        [("ip", "2001:4860:4860::8888", "2001:4860:4860::8888", None, False, True)],
    ),
    ("[2001:db8::1]:443", [("ip", "[2001:db8::1]:443", "2001:db8::1", 443, False, False)]),
    ("fe80::1", [("ip", "fe80::1", "fe80::1", None, False, False)]),
    ("dns ::1.", [("ip", "::1", "::1", None, False, False)]),
    ("::ffff:8.8.4.4", [("ip", "::ffff:8.8.4.4", "::ffff:8.8.4.4", None, False, True)]),
    (
        "2001:0DB8:0000:0000:0000:0000:0000:0001",
        [
            (
                "ip",
                "2001:0DB8:0000:0000:0000:0000:0000:0001",
                "2001:db8::1",
                None,
                False,
                False,
            )
        ],
    ),
    # IPv4 and its classification
    ("8.8.8.8:53", [("ip", "8.8.8.8:53", "8.8.8.8", 53, False, True)]),
    ("221.228.214.101", [("ip", "221.228.214.101", "221.228.214.101", None, False, True)]),
    ("0.0.0.0", [("ip", "0.0.0.0", "0.0.0.0", None, False, False)]),
    ("127.0.0.1", [("ip", "127.0.0.1", "127.0.0.1", None, False, False)]),
    ("10.0.0.1/8", [("ip", "10.0.0.1", "10.0.0.1", None, False, False)]),
    ("172.16.5.4", [("ip", "172.16.5.4", "172.16.5.4", None, False, False)]),
    ("192.168.1.1", [("ip", "192.168.1.1", "192.168.1.1", None, False, False)]),
    ("169.254.1.1", [("ip", "169.254.1.1", "169.254.1.1", None, False, False)]),
    ("224.0.0.251", [("ip", "224.0.0.251", "224.0.0.251", None, False, False)]),
    ("255.255.255.255", [("ip", "255.255.255.255", "255.255.255.255", None, False, False)]),
    ("100.64.0.1", [("ip", "100.64.0.1", "100.64.0.1", None, False, False)]),
    # IDN and punycode
    (
        "http://münchen.de/path",
        [("url", "http://münchen.de/path", "xn--mnchen-3ya.de", None, True, True)],
    ),
    (
        "https://xn--mnchen-3ya.de/",
        [("url", "https://xn--mnchen-3ya.de/", "xn--mnchen-3ya.de", None, False, True)],
    ),
    (
        "xn--80ak6aa92e.com",
        [("host", "xn--80ak6aa92e.com", "xn--80ak6aa92e.com", None, False, True)],
    ),
    # local names in URLs
    (
        "http://localhost:8080/",
        [("url", "http://localhost:8080/", "localhost", 8080, True, False)],
    ),
    (
        "http://printer.local/",
        [("url", "http://printer.local/", "printer.local", None, True, False)],
    ),
    # trailing punctuation and URLs inside longer text
    ("see http://example.com.", [("url", "http://example.com", "example.com", None, True, False)]),
    (
        '"https://www.google.com/webhp",',
        [("url", "https://www.google.com/webhp", "www.google.com", None, False, True)],
    ),
    (
        "(see https://en.wikipedia.org/wiki/Foo_(bar))",
        [
            (
                "url",
                "https://en.wikipedia.org/wiki/Foo_(bar)",
                "en.wikipedia.org",
                None,
                False,
                True,
            )
        ],
    ),
    (
        "<a href='https://support.google.com/android/'>help</a>",
        [
            (
                "url",
                "https://support.google.com/android/",
                "support.google.com",
                None,
                False,
                True,
            )
        ],
    ),
    (
        "primary=http://a.adups.com/x backup=https://b.adups.com:8443 ip=61.160.47.15",
        [
            ("url", "http://a.adups.com/x", "a.adups.com", None, True, True),
            ("url", "https://b.adups.com:8443", "b.adups.com", 8443, False, True),
            ("ip", "61.160.47.15", "61.160.47.15", None, False, True),
        ],
    ),
    # a URL inside a URL: both servers are reported
    (
        "https://t.co/r?next=http://zzhc.vnet.cn/reg",
        [
            ("url", "https://t.co/r?next=http://zzhc.vnet.cn/reg", "t.co", None, False, True),
            ("url", "http://zzhc.vnet.cn/reg", "zzhc.vnet.cn", None, True, True),
        ],
    ),
    # bare hosts
    (
        "android.clients.google.com",
        [("host", "android.clients.google.com", "android.clients.google.com", None, False, True)],
    ),
    (
        "Host: bigdata.adups.com",
        [("host", "bigdata.adups.com", "bigdata.adups.com", None, False, True)],
    ),
    ("WWW.GOOGLE.COM", [("host", "WWW.GOOGLE.COM", "www.google.com", None, False, True)]),
    (
        "//cdn.example.org/lib.js",
        [("host", "cdn.example.org", "cdn.example.org", None, False, False)],
    ),
    ("fota.adups.com/ota", [("host", "fota.adups.com", "fota.adups.com", None, False, True)]),
    ("line.me", [("host", "line.me", "line.me", None, False, True)]),
    ("x.web.app", [("host", "x.web.app", "x.web.app", None, False, True)]),
    ("jio.in", [("host", "jio.in", "jio.in", None, False, True)]),
    (
        "xtrapath1.izatcloud.net.",
        [("host", "xtrapath1.izatcloud.net", "xtrapath1.izatcloud.net", None, False, True)],
    ),
]

NEGATIVE = [
    # Dotted names met in real firmware native strings and DEX (a 2021 MediaTek Android 10
    # build): LLVM intrinsics, ELF section names, properties, keys, versions, OIDs.
    "llvm.x86.avx2.gather.d.ps",
    "llvm.mips.absq.s.ph",
    "data.rel.ro",
    "gnu.linkonce.sb",
    "vendor.debug.gpud.process.name",
    "vendor.mtk.vdec.h265.ec",
    "google.c.a.tc",
    "2.9.0.dev",
    "1.0.0.0",
    "1.3.36.3",
    "info.news",
    "log.print.video",
    "d.name",
    "vnd.android",
    # XML namespaces and parser features are not endpoints
    "http://schemas.android.com/apk/res/android",
    "http://schemas.android.com/apk/res-auto",
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/XML/1998/namespace",
    "http://xmlpull.org/v1/doc/features.html#process-namespaces",
    "http://ns.adobe.com/xap/1.0/",
    "http://xml.org/sax/features/namespaces",
    "http://apache.org/xml/features/validation/schema",
    "http://javax.xml.XMLConstants/property/accessExternalDTD",
    "schemas.android.com",
    # ASN.1 OIDs, versions and dotted numbers
    "1.2.840.113554.1.2.2.1",
    "2.5.29.17",
    "1.3.6.1.4.1.11129.2.4.2",
    "v1.2.3.4",
    "1.2.3.4.5",
    "1.2.3",
    "01.02.03.04",
    "999.1.1.1",
    "version 4.4.2",
    # Java class names, packages and members
    "com.google.android.gms.Foo",
    "com.google.android.gms",
    "android.intent.action.MAIN",
    "android.app",
    "android.support.v4.app",
    "android.media",
    "kotlin.io",
    "java.net",
    "com.android.phone",
    "com.google.android.youtube",
    "org.chromium.net",
    "a.b.c.Foo$Bar",
    "Lcom/example/Foo;",
    "R.id",
    "this.name",
    "list.add(item)",
    # Android and Java property names
    "ro.build.id",
    "ro.build.host",
    "ro.serialno",
    "persist.sys.language",
    "os.name",
    "user.name",
    "sys.boot_completed",
    # file names
    "libfoo.so",
    "config.xml",
    "image.png",
    "classes.dex",
    "boot.img",
    "run.sh",
    "setup.py",
    "update.zip",
    "README.md",
    "logging.cc",
    "/system/etc/hosts.allow",
    "/data/local/tmp/api.example.com",
    # mail addresses, times, MAC addresses, C++ scopes
    "support@example.com",
    "12:30:45",
    "00:11:22:33:44:55",
    "std::string",
    "android::base::GetProperty",
    "::",
    # words, abbreviations and invalid hosts
    "e.g. i.e.",
    "Hello world.",
    "http://%s:%d/api",
    "http://",
    "http://?",
    "http://a..b/",
    "http://-bad-.com/",
    "http://host.com:99999/",
    "printer.local",
    "file:///sdcard/report.com",
    "content://com.android.contacts/data",
]


def _shape(found: list[Endpoint]) -> list[tuple[str, str, str, int | None, bool, bool]]:
    return [(e.kind, e.value, e.host, e.port, e.cleartext, e.external) for e in found]


@pytest.mark.parametrize(("text", "expected"), POSITIVE)
def test_extract_positive(
    text: str, expected: list[tuple[str, str, str, int | None, bool, bool]]
) -> None:
    assert _shape(extract(text)) == expected
    assert is_candidate(text)


@pytest.mark.parametrize("text", NEGATIVE)
def test_extract_negative(text: str) -> None:
    assert extract(text) == []


def test_enough_cases() -> None:
    assert len(POSITIVE) + len(NEGATIVE) >= 40
    assert len(POSITIVE) >= 40


@pytest.mark.parametrize(
    "text",
    ["getDeviceId", "Landroid/telephony/TelephonyManager;", "android_id", "hello", "", "1.0"],
)
def test_prefilter_rejects_plain_strings(text: str) -> None:
    assert not is_candidate(text)
    assert extract(text) == []


def test_prefilter_never_hides_an_endpoint() -> None:
    for text, _ in POSITIVE:
        assert is_candidate(text)
    for text in NEGATIVE:
        if extract(text, include_namespaces=True):
            assert is_candidate(text)


def test_namespaces_on_request() -> None:
    found = extract("http://schemas.android.com/apk/res/android", include_namespaces=True)
    assert _shape(found) == [
        (
            "namespace",
            "http://schemas.android.com/apk/res/android",
            "schemas.android.com",
            None,
            True,
            False,
        )
    ]
    assert is_namespace("www.w3.org", "/2001/XMLSchema")
    assert is_namespace("apache.org", "/xml/features/x")
    assert not is_namespace("apache.org", "/dist/")
    assert _shape(extract("https://apache.org/dist/")) == [
        ("url", "https://apache.org/dist/", "apache.org", None, False, True)
    ]


def test_url_parts_are_not_reported_twice() -> None:
    found = extract("GET http://8.8.8.8/dns-query?name=zzhc.vnet.cn then zzhc.vnet.cn")
    assert [(e.kind, e.value) for e in found] == [
        ("url", "http://8.8.8.8/dns-query?name=zzhc.vnet.cn"),
        ("host", "zzhc.vnet.cn"),
    ]
    # the same value twice in one string is reported once
    assert len(extract("a.adups.com a.adups.com")) == 1


def test_endpoint_to_dict() -> None:
    ep = extract("http://zzhc.vnet.cn:9998/")[0]
    assert ep.to_dict() == {
        "value": "http://zzhc.vnet.cn:9998/",
        "kind": "url",
        "host": "zzhc.vnet.cn",
        "scheme": "http",
        "port": 9998,
        "cleartext": True,
        "external": True,
    }
    assert extract("8.8.8.8")[0].scheme is None


@pytest.mark.parametrize(
    ("host", "external"),
    [
        ("zzhc.vnet.cn", True),
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("localhost", False),
        ("a.localhost", False),
        ("printer.local", False),
        ("router.lan", False),
        ("example.com", False),
        ("www.example.org", False),
        ("box.home.arpa", False),
        ("foo.unknowntld", False),
        ("intranet", False),
        ("10.1.2.3", False),
        ("::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("schemas.android.com", False),
    ],
)
def test_host_is_external(host: str, external: bool) -> None:
    assert host_is_external(host) is external


def test_registrable_domain() -> None:
    assert psl_version().startswith("1.")
    assert registrable_domain("zzhc.vnet.cn") == "vnet.cn"
    assert registrable_domain("ZZHC.VNET.CN.") == "vnet.cn"
    assert registrable_domain("a.b.co.uk") == "b.co.uk"
    assert registrable_domain("com.cn") is None
    assert registrable_domain("cn") is None
    assert registrable_domain("foo.unknowntld") is None
    assert registrable_domain("bad_label.com") is None


def test_extract_is_deterministic_and_bounded() -> None:
    text = " ".join(t for t, _ in POSITIVE) + " " + " ".join(NEGATIVE)
    assert extract(text) == extract(text)
    # pathological inputs end quickly (no regular-expression backtracking blow-up)
    hostile = [
        "1:" * 50_000 + "g",
        "a." * 100_000,
        "http://" + "a" * 200_000,
        "http://a.com/" + "(" * 50_000 + ")" * 50_000,
        "0" * 100_000 + "." + "1" * 100_000,
        ":" * 100_000,
    ]
    start = time.monotonic()
    for item in hostile:
        extract(item)
    assert time.monotonic() - start < 5


def _rule(rule_id: str, *domains: str) -> EndpointRule:
    return EndpointRule(
        id=rule_id,
        domains=domains,
        owner="Owner",
        country="CN",
        purpose="telemetry",
        severity=Severity.HIGH,
        description="test",
        references=("https://example.org/",),
    )


def test_matcher_longest_suffix_label_aligned() -> None:
    broad = _rule("endpoint.t.broad", "vnet.cn")
    narrow = _rule("endpoint.t.narrow", "zzhc.vnet.cn")
    matcher = EndpointMatcher([broad, narrow])
    assert matcher.match("zzhc.vnet.cn") is narrow
    assert matcher.match("a.b.zzhc.vnet.cn") is narrow
    assert matcher.match("ZZHC.VNET.CN.") is narrow
    assert matcher.match("www.vnet.cn") is broad
    assert matcher.match("vnet.cn") is broad
    for lookalike in ("evilvnet.cn", "vnet.cn.evil.com", "zzhc.vnet.cn.com", "cn", "", "."):
        assert matcher.match(lookalike) is None, lookalike
    assert matcher.match("xzzhc.vnet.cn") is broad
    assert matcher.match("8.8.8.8") is None
    assert EndpointMatcher([]).match("zzhc.vnet.cn") is None


def test_matcher_refuses_a_domain_claimed_twice() -> None:
    with pytest.raises(ValueError, match=r"'vnet.cn' is claimed by endpoint.t.a and endpoint.t.b"):
        EndpointMatcher([_rule("endpoint.t.a", "vnet.cn"), _rule("endpoint.t.b", "VNET.CN")])
    # one rule listing its domain in two spellings is fine
    same = _rule("endpoint.t.a", "vnet.cn", "vnet.cn.")
    assert EndpointMatcher([same]).match("x.vnet.cn") is same

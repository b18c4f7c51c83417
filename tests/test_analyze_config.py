"""fwscan.analyze.config: privapp and default permissions XML, init scripts, hostile XML."""

from __future__ import annotations

import time

import pytest

from fwscan.analyze.config import (
    MAX_INIT_RC_BYTES,
    MAX_INIT_RC_LINES,
    MAX_XML_BYTES,
    MAX_XML_DEPTH,
    DefaultGrant,
    InitService,
    PrivappGrant,
    parse_default_permissions,
    parse_init_rc,
    parse_privapp_permissions,
)

PRIVAPP = b"""<?xml version="1.0" encoding="utf-8"?>
<!--
  ~ Copyright (C) 2017 The Android Open Source Project
  -->

<!--
This XML file declares which signature|privileged permissions should be granted to privileged
applications that come with the platform
-->
<permissions>
    <privapp-permissions package="com.android.phone">
        <permission name="android.permission.ACCESS_IMS_CALL_SERVICE"/>
        <permission name="android.permission.READ_PRIVILEGED_PHONE_STATE"/>
        <deny-permission name="android.permission.CONTROL_INCALL_EXPERIENCE"/>
    </privapp-permissions>

    <feature name="android.software.webview" />

    <privapp-permissions package="com.chinatelecom.zzhc">
        <permission name="android.permission.READ_PRIVILEGED_PHONE_STATE"/>
        <permission name="android.permission.SEND_SMS_NO_CONFIRMATION" />
    </privapp-permissions>
</permissions>
"""

DEFAULT_PERMISSIONS = b"""<?xml version='1.0' encoding='utf-8' standalone='yes' ?>
<exceptions>
    <!-- Registration agent -->
    <exception
            package="com.chinatelecom.zzhc"
            sha256-cert-digest="AA:BB">
        <permission name="android.permission.READ_PHONE_STATE" fixed="true"/>
        <permission name="android.permission.ACCESS_FINE_LOCATION" fixed="false"/>
        <permission name="android.permission.SEND_SMS"/>
    </exception>
    <exception package="com.example.launcher">
        <permission name="android.permission.READ_CONTACTS" fixed="TRUE" whitelisted="true"/>
    </exception>
</exceptions>
"""

INIT_RC = b"""# Copyright (C) 2012 The Android Open Source Project
#
# IMPORTANT: Do not create world writable files or directories.

import /init.environ.rc
import /vendor/etc/init/hw/init.${ro.hardware}.rc

on early-init
    # Set init and its forked children's oom_adj.
    write /proc/1/oom_score_adj -1000
    start ueventd

on boot
    setprop net.tcp.default_init_rwnd 60
    class_start core

service ueventd /system/bin/ueventd
    class core
    critical
    seclabel u:r:ueventd:s0
    shutdown critical

service zzhc /system/bin/zzhc_daemon --server http://zzhc.vnet.cn:9998/ \\
        --interval 3600 \\
        --imei
    class main late_start
    user radio
    group radio inet net_raw # network access
    socket zzhc stream 660 radio system
    disabled
    oneshot

on property:sys.boot_completed=1
    start zzhc

service logd /system/bin/logd "--log level" tab\\tend
    class core
    user logd
    group logd system package_info readproc
"""


# --- privapp-permissions -----------------------------------------------------------------------


def test_privapp_permissions() -> None:
    grants, errors = parse_privapp_permissions(PRIVAPP, "/system/etc/permissions/p.xml")
    assert errors == []
    file = "/system/etc/permissions/p.xml"
    assert grants == [
        PrivappGrant(
            "com.android.phone", "android.permission.ACCESS_IMS_CALL_SERVICE", False, file, 12
        ),
        PrivappGrant(
            "com.android.phone", "android.permission.READ_PRIVILEGED_PHONE_STATE", False, file, 13
        ),
        PrivappGrant(
            "com.android.phone", "android.permission.CONTROL_INCALL_EXPERIENCE", True, file, 14
        ),
        PrivappGrant(
            "com.chinatelecom.zzhc",
            "android.permission.READ_PRIVILEGED_PHONE_STATE",
            False,
            file,
            20,
        ),
        PrivappGrant(
            "com.chinatelecom.zzhc", "android.permission.SEND_SMS_NO_CONFIRMATION", False, file, 21
        ),
    ]
    lines = PRIVAPP.decode().splitlines()
    for grant in grants:
        assert grant.line is not None
        assert grant.permission in lines[grant.line - 1]


def test_privapp_config_root_and_missing_attributes() -> None:
    data = b"""<config>
  <privapp-permissions package="a.b">
    <permission name="android.permission.X"/>
    <permission/>
  </privapp-permissions>
  <privapp-permissions>
    <permission name="android.permission.Y"/>
  </privapp-permissions>
</config>"""
    grants, errors = parse_privapp_permissions(data, "c.xml")
    assert [(g.package, g.permission, g.line) for g in grants] == [
        ("a.b", "android.permission.X", 3)
    ]
    assert errors == [
        "c.xml:4: <permission> without name",
        "c.xml:6: <privapp-permissions> without package",
    ]


def test_privapp_wrong_root() -> None:
    grants, errors = parse_privapp_permissions(b"<exceptions/>", "w.xml")
    assert grants == []
    assert errors == ["w.xml:1: root <exceptions>, expected <permissions> or <config>"]


def test_privapp_utf16() -> None:
    text = (
        '<?xml version="1.0" encoding="utf-16"?><permissions><privapp-permissions package="a">'
        '<permission name="b"/></privapp-permissions></permissions>'
    )
    grants, errors = parse_privapp_permissions(text.encode("utf-16"), "u.xml")
    assert errors == []
    assert [(g.package, g.permission) for g in grants] == [("a", "b")]


# --- default-permissions -----------------------------------------------------------------------


def test_default_permissions() -> None:
    file = "/vendor/etc/default-permissions/zzhc.xml"
    grants, errors = parse_default_permissions(DEFAULT_PERMISSIONS, file)
    assert errors == []
    assert grants == [
        DefaultGrant("com.chinatelecom.zzhc", "android.permission.READ_PHONE_STATE", True, file),
        DefaultGrant(
            "com.chinatelecom.zzhc", "android.permission.ACCESS_FINE_LOCATION", False, file
        ),
        DefaultGrant("com.chinatelecom.zzhc", "android.permission.SEND_SMS", False, file),
        DefaultGrant("com.example.launcher", "android.permission.READ_CONTACTS", True, file),
    ]


def test_default_permissions_bad_entries() -> None:
    data = b"""<exceptions>
  <exception>
    <permission name="android.permission.CAMERA"/>
  </exception>
  <exception package="p">
    <permission fixed="true"/>
    <permission name="android.permission.CAMERA" fixed="yes"/>
  </exception>
</exceptions>"""
    grants, errors = parse_default_permissions(data, "d.xml")
    assert grants == [DefaultGrant("p", "android.permission.CAMERA", False, "d.xml")]
    assert errors == [
        "d.xml:2: <exception> without package",
        "d.xml:6: <permission> without name",
        "d.xml:7: fixed='yes' is not a boolean: taken as false",
    ]
    grants, errors = parse_default_permissions(PRIVAPP, "p.xml")
    assert grants == []
    assert errors == ["p.xml:10: root <permissions>, expected <exceptions>"]


# --- hostile and malformed XML -----------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<permissions>
  <privapp-permissions package="&lol9;"><permission name="&lol9;"/></privapp-permissions>
</permissions>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE permissions [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<permissions>
  <privapp-permissions package="&xxe;"><permission name="x"/></privapp-permissions>
</permissions>
"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE exceptions [<!ENTITY % remote SYSTEM "file:///etc/passwd"> %remote;]>
<exceptions><exception package="a"><permission name="b"/></exception></exceptions>
"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["bomb", "xxe"])
def test_hostile_privapp_xml_is_refused(data: bytes) -> None:
    start = time.perf_counter()
    grants, errors = parse_privapp_permissions(data, "h.xml")
    assert time.perf_counter() - start < 1.0
    assert grants == []
    assert len(errors) == 1
    assert "document type declaration" in errors[0] and "refused" in errors[0]
    assert "root:" not in errors[0] and "lollol" not in errors[0]


def test_hostile_default_permissions_xml_is_refused() -> None:
    for data in (BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY):
        grants, errors = parse_default_permissions(data, "h.xml")
        assert grants == []
        assert len(errors) == 1 and "refused" in errors[0]


def test_undeclared_entity_is_an_error() -> None:
    grants, errors = parse_privapp_permissions(
        b'<permissions><privapp-permissions package="&x;"/></permissions>', "e.xml"
    )
    assert grants == []
    assert errors == ["e.xml:1: malformed XML: undefined entity"]


def test_malformed_xml_keeps_what_came_before() -> None:
    data = b"""<permissions>
  <privapp-permissions package="a">
    <permission name="one"/>
    <permission name="two">
  </privapp-permissions>
  <privapp-permissions package="b">"""
    grants, errors = parse_privapp_permissions(data, "m.xml")
    assert [(g.package, g.permission) for g in grants] == [("a", "one"), ("a", "two")]
    assert len(errors) == 1 and errors[0].startswith("m.xml:5: malformed XML: mismatched tag")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "malformed XML: no element found"),
        (b"not xml at all", "malformed XML: syntax error"),
        (b'<?xml version="1.0" encoding="x-unknown"?><permissions/>', "unreadable XML"),
        (b"\xff\xfe\x00garbage", "malformed XML"),
    ],
)
def test_garbage_xml(data: bytes, message: str) -> None:
    grants, errors = parse_privapp_permissions(data, "g.xml")
    assert grants == []
    assert len(errors) == 1 and message in errors[0]


def test_xml_limits() -> None:
    deep = b"<permissions>" + b"<a>" * (MAX_XML_DEPTH + 5) + b"</a>" * (MAX_XML_DEPTH + 5)
    grants, errors = parse_privapp_permissions(deep + b"</permissions>", "deep.xml")
    assert grants == [] and "nested deeper" in errors[0]
    big = b"<permissions>" + b" " * MAX_XML_BYTES + b"</permissions>"
    grants, errors = parse_privapp_permissions(big, "big.xml")
    assert grants == [] and "larger than" in errors[0]


# --- init scripts --------------------------------------------------------------------------------


def test_init_rc_services() -> None:
    services, errors = parse_init_rc(INIT_RC, "/system/etc/init/hw/init.rc")
    assert errors == []
    file = "/system/etc/init/hw/init.rc"
    assert services == [
        InitService(
            name="ueventd",
            path="/system/bin/ueventd",
            args=(),
            user=None,
            group=(),
            classes=("core",),
            disabled=False,
            oneshot=False,
            file=file,
            line=17,
        ),
        InitService(
            name="zzhc",
            path="/system/bin/zzhc_daemon",
            args=("--server", "http://zzhc.vnet.cn:9998/", "--interval", "3600", "--imei"),
            user="radio",
            group=("radio", "inet", "net_raw"),
            classes=("main", "late_start"),
            disabled=True,
            oneshot=True,
            file=file,
            line=23,
        ),
        InitService(
            name="logd",
            path="/system/bin/logd",
            args=("--log level", "tab\tend"),
            user="logd",
            group=("logd", "system", "package_info", "readproc"),
            classes=("core",),
            disabled=False,
            oneshot=False,
            file=file,
            line=36,
        ),
    ]
    lines = INIT_RC.decode().splitlines()
    for service in services:
        assert lines[service.line - 1].startswith(f"service {service.name} ")


def test_init_rc_crlf_and_continuation_inside_a_token() -> None:
    data = (
        b"service a /bin/a --x\\\r\n      yz\r\n    class main\r\n    user sys\\\n  tem\r\n"
        b"#service commented /bin/out\r\nservice b /bin/b # comment\r\n  group inet\r\n"
    )
    services, errors = parse_init_rc(data, "crlf.rc")
    assert errors == []
    assert [(s.name, s.args, s.user, s.classes, s.line) for s in services] == [
        ("a", ("--xyz",), "system", ("main",), 1),
        ("b", (), None, ("default",), 7),
    ]
    assert services[1].group == ("inet",)


def test_init_rc_duplicates_and_bad_sections() -> None:
    data = b"""service dup /bin/first
    user system
service dup /bin/second
service dup /bin/third
    override
    user root
service missing_path
service "bad name" /bin/x
on boot
    user ignored_outside_services
service late /bin/late "unterminated
    class main
service never /bin/never
"""
    services, errors = parse_init_rc(data, "d.rc")
    assert [(s.name, s.path, s.user, s.line) for s in services] == [
        ("dup", "/bin/third", "root", 4)
    ]
    assert errors == [
        "d.rc:11: unterminated quote: the rest of the file ignored",
        "d.rc:3: service 'dup' defined again (first at line 1): ignored",
        "d.rc:7: service needs a name and a path",
        "d.rc:8: invalid service name 'bad name'",
    ]


def test_init_rc_limits_and_garbage() -> None:
    services, errors = parse_init_rc(b"", "e.rc")
    assert (services, errors) == ([], [])
    services, errors = parse_init_rc(b"\xff\xfe\x00\x01 random \x80\n\\", "g.rc")
    assert services == []
    many = b"service s /bin/s\n" + b"    oneshot\n" * MAX_INIT_RC_LINES + b"service t /bin/t\n"
    services, errors = parse_init_rc(many, "many.rc")
    assert [s.name for s in services] == ["s"]
    assert errors == [f"many.rc: more than {MAX_INIT_RC_LINES} lines: the rest not read"]
    huge = b"# padding\n" * (MAX_INIT_RC_BYTES // 10) + b"service late /bin/late\n"
    start = time.perf_counter()
    services, errors = parse_init_rc(huge, "huge.rc")
    assert time.perf_counter() - start < 5.0
    assert services == []
    assert errors[0].startswith(f"huge.rc: {len(huge)} bytes")

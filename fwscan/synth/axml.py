"""Writer of Android binary XML (AXML) for ``AndroidManifest.xml``.

The layout follows AOSP ``ResourceTypes.h``: one ``RES_XML_TYPE`` chunk holding a
``ResStringPool`` (UTF-16), a ``RES_XML_RESOURCE_MAP_TYPE`` chunk that gives the framework
resource id of every ``android:`` attribute name (those names come first in the pool), then the
tree as start/end namespace and start/end element nodes whose attributes carry typed values
(``Res_value``): strings, ``TYPE_INT_DEC`` integers, ``TYPE_INT_HEX`` flags and
``TYPE_INT_BOOLEAN`` booleans, as ``aapt`` writes them.

Only the package name, the shared user id, version code and SDK levels are checked against
Android's rules; labels, class names, permission and action names are free text and are encoded
faithfully (any Unicode text, including markup and quotes).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from fwscan.errors import ManifestError

__all__ = [
    "ANDROID_NS",
    "ATTRIBUTE_IDS",
    "COMPONENT_KINDS",
    "PROTECTION_LEVEL_FLAGS",
    "Component",
    "ManifestSpec",
    "build_axml",
    "protection_level_value",
]

ANDROID_NS = "http://schemas.android.com/apk/res/android"
"""The namespace URI of the ``android:`` attributes."""

ATTRIBUTE_IDS: dict[str, int] = {
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
"""Framework resource ids (``android.R.attr``, frameworks/base core/res public.xml) of the
``android:`` attributes this writer emits."""

COMPONENT_KINDS = ("activity", "service", "receiver", "provider")
"""The element names of the application components a manifest may declare."""

PROTECTION_LEVEL_FLAGS: dict[str, int] = {
    "normal": 0x0,
    "dangerous": 0x1,
    "signature": 0x2,
    "signatureOrSystem": 0x3,
    "internal": 0x4,
    "privileged": 0x10,
    "system": 0x10,
    "development": 0x20,
    "appop": 0x40,
    "pre23": 0x80,
    "installer": 0x100,
    "verifier": 0x200,
    "preinstalled": 0x400,
    "setup": 0x800,
    "instant": 0x1000,
    "runtime": 0x2000,
    "oem": 0x4000,
    "vendorPrivileged": 0x8000,
    "textClassifier": 0x10000,
    "wellbeing": 0x20000,
    "documenter": 0x40000,
    "configurator": 0x80000,
    "incidentReportApprover": 0x100000,
    "appPredictor": 0x200000,
    "module": 0x400000,
    "companion": 0x800000,
    "retailDemo": 0x1000000,
    "recents": 0x2000000,
    "role": 0x4000000,
    "knownSigner": 0x8000000,
}
"""Names of ``android:protectionLevel`` flags (attrs_manifest.xml) and their values."""

# ResourceTypes.h chunk types.
_RES_STRING_POOL_TYPE = 0x0001
_RES_XML_TYPE = 0x0003
_RES_XML_START_NAMESPACE_TYPE = 0x0100
_RES_XML_END_NAMESPACE_TYPE = 0x0101
_RES_XML_START_ELEMENT_TYPE = 0x0102
_RES_XML_END_ELEMENT_TYPE = 0x0103
_RES_XML_RESOURCE_MAP_TYPE = 0x0180

# Res_value data types.
_TYPE_STRING = 0x03
_TYPE_INT_DEC = 0x10
_TYPE_INT_HEX = 0x11
_TYPE_INT_BOOLEAN = 0x12

_NO_INDEX = 0xFFFFFFFF
_MAX_STRING_UNITS = 0x7FFFFFFF
_INT32_MAX = 0x7FFFFFFF
_MAX_SDK = 10_000

_JAVA_PACKAGE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)+")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Component:
    """One application component (``<activity>``, ``<service>``, ...) of a manifest."""

    kind: str
    """The element name: ``"activity"``, ``"service"``, ``"receiver"`` or ``"provider"``."""
    name: str
    """The class name, normally fully qualified (``com.example.Foo``); written verbatim."""
    exported: bool | None = None
    """``android:exported``; ``None`` leaves the attribute out (Android's default applies)."""
    permission: str | None = None
    """``android:permission`` a caller must hold, or ``None``."""
    actions: tuple[str, ...] = ()
    """Actions of one ``<intent-filter>``; empty means no intent filter."""
    authorities: str | None = None
    """``android:authorities`` (``;``-separated); required for providers, else ``None``."""


@dataclass(frozen=True)
class ManifestSpec:
    """What a synthesized ``AndroidManifest.xml`` declares."""

    package: str
    """The package name: a Java package with at least two segments, or ``"android"``."""
    version_code: int
    """``android:versionCode``, 0 to 2**31-1."""
    version_name: str
    """``android:versionName``, free text."""
    shared_user_id: str | None = None
    """``android:sharedUserId`` (for example ``android.uid.system``), or ``None``."""
    min_sdk: int = 26
    """``<uses-sdk android:minSdkVersion>``."""
    target_sdk: int = 28
    """``<uses-sdk android:targetSdkVersion>``."""
    uses_permissions: tuple[str, ...] = ()
    """Requested permissions, one ``<uses-permission>`` each, in this order."""
    permissions: tuple[tuple[str, str], ...] = ()
    """Declared permissions as ``(name, protectionLevel)``; the level is written as in XML,
    flag names joined by ``|`` (``"signature|privileged"``)."""
    label: str | None = None
    """``<application android:label>`` as literal text, or ``None``."""
    application_class: str | None = None
    """``<application android:name>``, or ``None``."""
    components: tuple[Component, ...] = ()
    """Components of the ``<application>``, in this order."""


# --- the in-memory tree --------------------------------------------------------------------


@dataclass(frozen=True)
class _Hex:
    """An integer written as ``TYPE_INT_HEX`` (how aapt stores flag attributes)."""

    value: int


_Value = str | int | bool | _Hex


@dataclass(frozen=True)
class _Attr:
    name: str
    value: _Value
    android: bool = True


@dataclass
class _Element:
    tag: str
    attrs: list[_Attr] = field(default_factory=list)
    children: list[_Element] = field(default_factory=list)


# --- validation ----------------------------------------------------------------------------


def _check_text(where: str, value: object, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ManifestError(f"{where}: expected text, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ManifestError(f"{where}: must not be empty")
    if _LONE_SURROGATE.search(value):
        raise ManifestError(f"{where}: contains a lone UTF-16 surrogate, which is not text")
    if len(value.encode("utf-16-le")) // 2 > _MAX_STRING_UNITS:
        raise ManifestError(f"{where}: too long for a string pool entry")
    return value


def _check_int(where: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ManifestError(f"{where}: expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise ManifestError(f"{where}: {value} is out of range {low}..{high}")
    return value


def _check_package(where: str, value: object, *, allow_android: bool) -> str:
    text = _check_text(where, value)
    if allow_android and text == "android":
        return text
    if not _JAVA_PACKAGE.fullmatch(text):
        raise ManifestError(
            f"{where}: {text!r} is not a valid Java package name "
            "(two or more dot-separated segments of [A-Za-z][A-Za-z0-9_]*)"
        )
    return text


def protection_level_value(level: str) -> int:
    """The integer Android stores for a ``protectionLevel`` such as ``"signature|privileged"``.

    Raises :class:`~fwscan.errors.ManifestError` for an empty level or an unknown flag name.
    """
    if not isinstance(level, str) or not level.strip():
        raise ManifestError(f"protectionLevel: expected flag names, got {level!r}")
    value = 0
    for part in level.split("|"):
        flag = part.strip()
        if flag not in PROTECTION_LEVEL_FLAGS:
            raise ManifestError(f"protectionLevel: unknown flag {flag!r} in {level!r}")
        value |= PROTECTION_LEVEL_FLAGS[flag]
    return value


def _check_tuple(where: str, value: object) -> tuple[object, ...]:
    if not isinstance(value, tuple):
        raise ManifestError(f"{where}: expected a tuple, got {type(value).__name__}")
    return value


# --- building the tree ---------------------------------------------------------------------


def _component_element(where: str, comp: object) -> _Element:
    if not isinstance(comp, Component):
        raise ManifestError(f"{where}: expected a Component, got {type(comp).__name__}")
    if comp.kind not in COMPONENT_KINDS:
        raise ManifestError(f"{where}.kind: {comp.kind!r} is not one of {COMPONENT_KINDS}")
    attrs = [_Attr("name", _check_text(f"{where}.name", comp.name))]
    if comp.exported is not None:
        if not isinstance(comp.exported, bool):
            raise ManifestError(f"{where}.exported: expected true, false or null")
        attrs.append(_Attr("exported", comp.exported))
    if comp.permission is not None:
        attrs.append(_Attr("permission", _check_text(f"{where}.permission", comp.permission)))
    if comp.kind == "provider":
        if comp.authorities is None:
            raise ManifestError(f"{where}.authorities: a provider needs authorities")
        attrs.append(_Attr("authorities", _check_text(f"{where}.authorities", comp.authorities)))
    elif comp.authorities is not None:
        raise ManifestError(f"{where}.authorities: only providers have authorities")
    element = _Element(comp.kind, attrs)
    actions = _check_tuple(f"{where}.actions", comp.actions)
    if actions:
        intent_filter = _Element("intent-filter")
        for i, action in enumerate(actions):
            name = _check_text(f"{where}.actions[{i}]", action)
            intent_filter.children.append(_Element("action", [_Attr("name", name)]))
        element.children.append(intent_filter)
    return element


def _manifest_tree(spec: ManifestSpec) -> _Element:
    if not isinstance(spec, ManifestSpec):
        raise ManifestError(f"manifest: expected a ManifestSpec, got {type(spec).__name__}")
    package = _check_package("package", spec.package, allow_android=True)
    root = _Element(
        "manifest",
        [
            _Attr("versionCode", _check_int("version_code", spec.version_code, 0, _INT32_MAX)),
            _Attr("versionName", _check_text("version_name", spec.version_name, allow_empty=True)),
            _Attr("package", package, android=False),
        ],
    )
    if spec.shared_user_id is not None:
        shared = _check_package("shared_user_id", spec.shared_user_id, allow_android=False)
        root.attrs.append(_Attr("sharedUserId", shared))

    min_sdk = _check_int("min_sdk", spec.min_sdk, 1, _MAX_SDK)
    target_sdk = _check_int("target_sdk", spec.target_sdk, 1, _MAX_SDK)
    root.children.append(
        _Element(
            "uses-sdk", [_Attr("minSdkVersion", min_sdk), _Attr("targetSdkVersion", target_sdk)]
        )
    )
    for i, perm in enumerate(_check_tuple("uses_permissions", spec.uses_permissions)):
        name = _check_text(f"uses_permissions[{i}]", perm)
        root.children.append(_Element("uses-permission", [_Attr("name", name)]))
    for i, decl in enumerate(_check_tuple("permissions", spec.permissions)):
        if not isinstance(decl, tuple) or len(decl) != 2:
            raise ManifestError(f"permissions[{i}]: expected (name, protectionLevel)")
        name = _check_text(f"permissions[{i}].name", decl[0])
        level_text = _check_text(f"permissions[{i}].protectionLevel", decl[1])
        try:
            level = protection_level_value(level_text)
        except ManifestError as exc:
            raise ManifestError(f"permissions[{i}].{exc}") from None
        root.children.append(
            _Element("permission", [_Attr("name", name), _Attr("protectionLevel", _Hex(level))])
        )

    app = _Element("application")
    if spec.label is not None:
        app.attrs.append(_Attr("label", _check_text("label", spec.label, allow_empty=True)))
    if spec.application_class is not None:
        app.attrs.append(_Attr("name", _check_text("application_class", spec.application_class)))
    for i, comp in enumerate(_check_tuple("components", spec.components)):
        app.children.append(_component_element(f"components[{i}]", comp))
    root.children.append(app)
    return root


# --- serialization -------------------------------------------------------------------------


class _StringPool:
    """Strings of the document: resource-mapped attribute names first, then the rest."""

    def __init__(self, mapped_names: list[str]) -> None:
        self.strings: list[str] = list(mapped_names)
        self.resource_ids = [ATTRIBUTE_IDS[name] for name in mapped_names]
        self._mapped = {name: i for i, name in enumerate(mapped_names)}
        self._other: dict[str, int] = {}

    def attr_name(self, attr: _Attr) -> int:
        if attr.android:
            return self._mapped[attr.name]
        return self.index(attr.name)

    def index(self, text: str) -> int:
        found = self._other.get(text)
        if found is None:
            found = len(self.strings)
            self.strings.append(text)
            self._other[text] = found
        return found

    def chunk(self) -> bytes:
        offsets: list[int] = []
        data = bytearray()
        for text in self.strings:
            offsets.append(len(data))
            units = text.encode("utf-16-le")
            count = len(units) // 2
            if count > 0x7FFF:
                data += struct.pack("<HH", 0x8000 | (count >> 16), count & 0xFFFF)
            else:
                data += struct.pack("<H", count)
            data += units + b"\x00\x00"
        data += b"\x00" * (-len(data) % 4)
        header_size = 28
        strings_start = header_size + 4 * len(offsets)
        header = struct.pack(
            "<HHIIIIII",
            _RES_STRING_POOL_TYPE,
            header_size,
            strings_start + len(data),
            len(self.strings),
            0,  # styleCount
            0,  # flags: UTF-16, not sorted
            strings_start,
            0,  # stylesStart
        )
        return header + struct.pack(f"<{len(offsets)}I", *offsets) + bytes(data)

    def resource_map_chunk(self) -> bytes:
        ids = self.resource_ids
        return struct.pack(
            f"<HHI{len(ids)}I", _RES_XML_RESOURCE_MAP_TYPE, 8, 8 + 4 * len(ids), *ids
        )


def _walk(element: _Element) -> list[_Element]:
    out = [element]
    for child in element.children:
        out.extend(_walk(child))
    return out


def _sort_key(attr: _Attr) -> tuple[int, int, str]:
    # aapt2 orders attributes: those with a resource id first, by id; then the rest by name.
    if attr.android:
        return (0, ATTRIBUTE_IDS[attr.name], "")
    return (1, 0, attr.name)


def _typed(pool: _StringPool, value: _Value) -> tuple[int, int, int]:
    """(rawValue, dataType, data) of one attribute value."""
    if isinstance(value, bool):
        return (_NO_INDEX, _TYPE_INT_BOOLEAN, 0xFFFFFFFF if value else 0)
    if isinstance(value, int):
        return (_NO_INDEX, _TYPE_INT_DEC, value & 0xFFFFFFFF)
    if isinstance(value, _Hex):
        return (_NO_INDEX, _TYPE_INT_HEX, value.value & 0xFFFFFFFF)
    index = pool.index(value)
    return (index, _TYPE_STRING, index)


class _Writer:
    def __init__(self, pool: _StringPool, ns_prefix: int, ns_uri: int) -> None:
        self.pool = pool
        self.ns_uri = ns_uri
        self.ns_prefix = ns_prefix
        self.out = bytearray()
        self.line = 1

    def node(self, chunk_type: int, body: bytes, line: int) -> None:
        size = 16 + len(body)
        self.out += struct.pack("<HHIII", chunk_type, 16, size, line, _NO_INDEX) + body

    def namespace(self, chunk_type: int, line: int) -> None:
        self.node(chunk_type, struct.pack("<II", self.ns_prefix, self.ns_uri), line)

    def element(self, element: _Element) -> None:
        attrs = sorted(element.attrs, key=_sort_key)
        body = bytearray(
            struct.pack(
                "<IIHHHHHH",
                _NO_INDEX,  # element namespace: none
                self.pool.index(element.tag),
                20,  # attributeStart
                20,  # attributeSize
                len(attrs),
                0,  # idIndex
                0,  # classIndex
                0,  # styleIndex
            )
        )
        for attr in attrs:
            raw, data_type, data = _typed(self.pool, attr.value)
            body += struct.pack(
                "<IIIHBBI",
                self.ns_uri if attr.android else _NO_INDEX,
                self.pool.attr_name(attr),
                raw,
                8,  # Res_value.size
                0,  # res0
                data_type,
                data,
            )
        self.line += 1
        self.node(_RES_XML_START_ELEMENT_TYPE, bytes(body), self.line)
        for child in element.children:
            self.element(child)
        if element.children:
            self.line += 1
        end = struct.pack("<II", _NO_INDEX, self.pool.index(element.tag))
        self.node(_RES_XML_END_ELEMENT_TYPE, end, self.line)


def build_axml(spec: ManifestSpec) -> bytes:
    """The binary ``AndroidManifest.xml`` that declares ``spec``.

    Raises :class:`~fwscan.errors.ManifestError` when the spec is invalid (package name that is
    not a Java package, version code or SDK level out of range, unknown component kind or
    protection level, a provider without authorities, ...). The output is deterministic.
    """
    root = _manifest_tree(spec)
    elements = _walk(root)
    mapped = sorted(
        {a.name for e in elements for a in e.attrs if a.android}, key=ATTRIBUTE_IDS.__getitem__
    )
    pool = _StringPool(mapped)
    ns_prefix = pool.index("android")
    ns_uri = pool.index(ANDROID_NS)
    # Intern every remaining string in document order, so the pool is final before writing.
    for element in elements:
        pool.index(element.tag)
        for attr in sorted(element.attrs, key=_sort_key):
            pool.attr_name(attr)
            _typed(pool, attr.value)

    writer = _Writer(pool, ns_prefix, ns_uri)
    writer.namespace(_RES_XML_START_NAMESPACE_TYPE, 1)
    writer.element(root)
    writer.namespace(_RES_XML_END_NAMESPACE_TYPE, writer.line)

    body = pool.chunk() + pool.resource_map_chunk() + bytes(writer.out)
    return struct.pack("<HHI", _RES_XML_TYPE, 8, 8 + len(body)) + body

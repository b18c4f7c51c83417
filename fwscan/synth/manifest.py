"""Build manifests: the YAML description of one synthesized firmware build.

A manifest names the device and build, its partitions, and what they hold: apps (with the
behaviours planted in their code), native files, and text files such as init ``.rc`` files.
``build.prop`` files are generated from the ``device`` and ``build`` sections. A manifest may
``extends:`` another one (a path relative to itself) and change only what differs: mappings are
merged key by key, ``apps`` by package, ``partitions`` by name, ``files`` and ``natives`` by path,
and ``remove_apps`` / ``remove_files`` drop entries of the base.

Every field is checked when the file is loaded; an error names the file and the field, e.g.
``x.yaml: apps[2].path: '/data/x.apk' is not inside a declared partition``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fwscan.errors import ManifestError
from fwscan.synth.axml import Component
from fwscan.synth.behaviours import IDENTIFIERS, SINKS, Action

SCHEMA_VERSION = 1
FILESYSTEMS = ("ext4", "erofs", "raw")
COMPRESSIONS = ("xz", "bz2", "zstd", "none")
COMPONENT_KINDS = ("activity", "service", "receiver", "provider")
_PACKAGE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$")
_PART_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SIZE_RE = re.compile(r"^(\d+)\s*([KMG]?)i?B?$", re.IGNORECASE)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_EXTENDS = 8


@dataclass(frozen=True)
class DeviceSpec:
    """The device the build is for."""

    manufacturer: str
    brand: str
    model: str
    device: str
    """The device code name (``ro.product.device``)."""
    name: str
    """The product name (``ro.product.name``)."""


@dataclass(frozen=True)
class BuildSpec:
    """The build's identity, written to the generated ``build.prop`` files."""

    fingerprint: str
    display_id: str
    incremental: str
    release: str
    sdk: int
    security_patch: str
    date_utc: int
    type: str = "user"
    tags: str = "release-keys"
    vendor_security_patch: str | None = None


@dataclass(frozen=True)
class PartitionSpec:
    """One partition of the build."""

    name: str
    filesystem: str
    """``ext4`` (made with mke2fs), ``erofs`` (made with mkfs.erofs, LZ4HC) or ``raw`` (opaque
    bytes, e.g. boot)."""
    size: int | None
    """Image size in bytes; computed from the content when absent (ext4 only)."""
    compression: str = "xz"
    """How payload operations of this partition are compressed."""
    props: tuple[tuple[str, str], ...] = ()
    """Extra properties appended to this partition's generated build.prop."""


@dataclass(frozen=True)
class NativeSpec:
    """An ELF file: inside an APK (``lib/<abi>/x.so``) or at a device path."""

    path: str
    machine: str = "aarch64"
    kind: str = "shared"
    needed: tuple[str, ...] = ("libc.so",)
    imports: tuple[str, ...] = ()
    exports: tuple[str, ...] = ()
    strings: tuple[str, ...] = ()
    mode: int = 0o644


@dataclass(frozen=True)
class AppSpec:
    """An APK (or a JAR with ``classes.dex``) and the behaviours planted in its code."""

    package: str
    path: str
    """Device path, e.g. ``/system/priv-app/X/X.apk``."""
    version_code: int
    version_name: str
    key: str
    """Signing key name from ``fwscan/data/keys``."""
    shared_user_id: str | None = None
    label: str | None = None
    min_sdk: int = 26
    target_sdk: int = 28
    permissions: tuple[str, ...] = ()
    declared_permissions: tuple[tuple[str, str], ...] = ()
    components: tuple[Component, ...] = ()
    behaviours: tuple[Action, ...] = ()
    native_libs: tuple[NativeSpec, ...] = ()
    dex_count: int = 1
    """How many DEX files the behaviours are spread over (multidex when more than one)."""


@dataclass(frozen=True)
class FileSpec:
    """A text file placed at a device path (init .rc, permission XML, ...)."""

    path: str
    text: str
    mode: int = 0o644


@dataclass(frozen=True)
class BuildManifest:
    """A whole firmware build."""

    name: str
    """The manifest's file stem, used for output names."""
    device: DeviceSpec
    build: BuildSpec
    partitions: tuple[PartitionSpec, ...]
    apps: tuple[AppSpec, ...]
    natives: tuple[NativeSpec, ...]
    files: tuple[FileSpec, ...]

    def partition_of(self, device_path: str) -> tuple[PartitionSpec, str]:
        """The partition holding ``device_path`` and the path inside its image."""
        first, _, rest = device_path.lstrip("/").partition("/")
        for part in self.partitions:
            if part.name == first and rest:
                return part, rest
        raise ManifestError(f"{device_path!r} is not inside a declared partition")


# ---------------------------------------------------------------------------------------------
# Loading: YAML -> merged raw mapping -> checked dataclasses


def load(path: Path) -> BuildManifest:
    """Load, merge (``extends``) and check a manifest."""
    raw = _load_raw(path, 0)
    return _Checker(path.name).manifest(raw, path.stem)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ManifestError(f"{path.name}: invalid YAML{where}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path.name}: the top level must be a mapping")
    return data


def _load_raw(path: Path, depth: int) -> dict[str, Any]:
    if depth > MAX_EXTENDS:
        raise ManifestError(f"{path.name}: 'extends' nests more than {MAX_EXTENDS} levels")
    data = _read_yaml(path)
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str):
        raise ManifestError(f"{path.name}: extends: must be a file name")
    base = _load_raw(path.parent / base_name, depth + 1)
    return _merge(base, data, path.name)


_KEYED_LISTS = {"apps": "package", "partitions": "name", "files": "path", "natives": "path"}
_REMOVALS = {"remove_apps": ("apps", "package"), "remove_files": ("files", "path")}


def _merge(base: dict[str, Any], child: dict[str, Any], where: str) -> dict[str, Any]:
    out = dict(base)
    for key, value in child.items():
        if key in _REMOVALS:
            continue
        if key in _KEYED_LISTS and isinstance(value, list) and isinstance(base.get(key), list):
            out[key] = _merge_list(base[key], value, _KEYED_LISTS[key])
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merged = dict(base[key])
            merged.update(value)
            out[key] = merged
        else:
            out[key] = value
    for key, (list_key, id_key) in _REMOVALS.items():
        gone = child.get(key) or []
        if not isinstance(gone, list):
            raise ManifestError(f"{where}: {key}: must be a list")
        present = {e.get(id_key) for e in out.get(list_key, []) if isinstance(e, dict)}
        for name in gone:
            if name not in present:
                raise ManifestError(f"{where}: {key}: {name!r} is not in the base manifest")
        out[list_key] = [
            e for e in out.get(list_key, []) if not (isinstance(e, dict) and e.get(id_key) in gone)
        ]
    return out


def _merge_list(base: list[Any], child: list[Any], id_key: str) -> list[Any]:
    out = list(base)
    index = {e.get(id_key): i for i, e in enumerate(out) if isinstance(e, dict)}
    for entry in child:
        ident = entry.get(id_key) if isinstance(entry, dict) else None
        if ident is not None and ident in index:
            merged = dict(out[index[ident]])
            merged.update(entry)
            out[index[ident]] = merged
        else:
            out.append(entry)
    return out


def parse_size(value: object, where: str) -> int:
    """Bytes from an int or a string such as ``64M``, ``1G``, ``512K``."""
    if isinstance(value, bool):
        raise ManifestError(f"{where}: must be a size such as 64M, not {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and (m := _SIZE_RE.match(value.strip())):
        n = int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2).upper()]
    else:
        raise ManifestError(f"{where}: must be a size such as 64M, not {value!r}")
    if n <= 0 or n > 64 << 30:
        raise ManifestError(f"{where}: size {n} out of range (1 byte to 64G)")
    return n


class _Checker:
    """Checks raw YAML values field by field; every message starts with the file name."""

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def fail(self, where: str, message: str) -> ManifestError:
        return ManifestError(f"{self.filename}: {where}: {message}")

    def mapping(
        self, value: object, where: str, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "must be a mapping")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise self.fail(where, f"unknown field {unknown[0]!r} (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in value:
                raise self.fail(where, f"missing required field {key!r}")
        return value

    def string(self, value: object, where: str) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(where, "must be a string")
        text = str(value)
        if not text:
            raise self.fail(where, "must not be empty")
        return text

    def integer(self, value: object, where: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, "must be an integer")
        if not lo <= value <= hi:
            raise self.fail(where, f"{value} out of range ({lo} to {hi})")
        return value

    def strings(self, value: object, where: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(where, "must be a list")
        return tuple(self.string(v, f"{where}[{i}]") for i, v in enumerate(value))

    def choice(self, value: object, where: str, choices: Sequence[str]) -> str:
        text = self.string(value, where)
        if text not in choices:
            raise self.fail(where, f"{text!r} is not one of {', '.join(choices)}")
        return text

    def date(self, value: object, where: str) -> str:
        text = str(value) if value is not None else ""
        if not _DATE_RE.match(text):
            raise self.fail(where, f"{text!r} is not a date YYYY-MM-DD")
        return text

    def package(self, value: object, where: str) -> str:
        text = self.string(value, where)
        if not _PACKAGE_RE.match(text):
            raise self.fail(where, f"{text!r} is not a Java package name")
        return text

    def device_path(self, value: object, where: str) -> str:
        text = self.string(value, where)
        parts = text.split("/")
        if not text.startswith("/") or any(p in ("", ".", "..") for p in parts[1:]):
            raise self.fail(where, f"{text!r} must be an absolute path without '.', '..' or '//'")
        return text

    # -- sections ---------------------------------------------------------------------------

    def manifest(self, raw: Mapping[str, Any], name: str) -> BuildManifest:
        top = self.mapping(
            raw,
            "top level",
            ("schema_version", "device", "build", "partitions", "apps", "natives", "files"),
            ("schema_version", "device", "build", "partitions"),
        )
        version = top["schema_version"]
        if version != SCHEMA_VERSION:
            raise self.fail("schema_version", f"{version!r} is not supported (expected 1)")
        partitions = self.partitions(top["partitions"])
        manifest = BuildManifest(
            name=name,
            device=self.device(top["device"]),
            build=self.build(top["build"]),
            partitions=partitions,
            apps=tuple(self.app(a, f"apps[{i}]") for i, a in enumerate(top.get("apps") or [])),
            natives=tuple(
                self.native(n, f"natives[{i}]", in_apk=False)
                for i, n in enumerate(top.get("natives") or [])
            ),
            files=tuple(self.file(f, f"files[{i}]") for i, f in enumerate(top.get("files") or [])),
        )
        self.placements(manifest)
        return manifest

    def device(self, raw: object) -> DeviceSpec:
        fields = ("manufacturer", "brand", "model", "device", "name")
        m = self.mapping(raw, "device", fields, fields)
        return DeviceSpec(**{k: self.string(m[k], f"device.{k}") for k in fields})

    def build(self, raw: object) -> BuildSpec:
        req = (
            "fingerprint",
            "display_id",
            "incremental",
            "release",
            "sdk",
            "security_patch",
            "date_utc",
        )
        m = self.mapping(raw, "build", (*req, "type", "tags", "vendor_security_patch"), req)
        vsp = m.get("vendor_security_patch")
        return BuildSpec(
            fingerprint=self.string(m["fingerprint"], "build.fingerprint"),
            display_id=self.string(m["display_id"], "build.display_id"),
            incremental=self.string(m["incremental"], "build.incremental"),
            release=self.string(m["release"], "build.release"),
            sdk=self.integer(m["sdk"], "build.sdk", 1, 99),
            security_patch=self.date(m["security_patch"], "build.security_patch"),
            date_utc=self.integer(m["date_utc"], "build.date_utc", 0, 2**40),
            type=self.choice(m.get("type", "user"), "build.type", ("user", "userdebug", "eng")),
            tags=self.string(m.get("tags", "release-keys"), "build.tags"),
            vendor_security_patch=None
            if vsp is None
            else self.date(vsp, "build.vendor_security_patch"),
        )

    def partitions(self, raw: object) -> tuple[PartitionSpec, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.fail("partitions", "must be a non-empty list")
        out: list[PartitionSpec] = []
        for i, item in enumerate(raw):
            where = f"partitions[{i}]"
            m = self.mapping(
                item,
                where,
                ("name", "filesystem", "size", "compression", "props"),
                ("name", "filesystem"),
            )
            name = self.string(m["name"], f"{where}.name")
            if not _PART_RE.match(name):
                raise self.fail(f"{where}.name", f"{name!r} is not a partition name")
            if any(p.name == name for p in out):
                raise self.fail(f"{where}.name", f"partition {name!r} declared twice")
            fs = self.choice(m["filesystem"], f"{where}.filesystem", FILESYSTEMS)
            size = parse_size(m["size"], f"{where}.size") if "size" in m else None
            if fs == "raw" and size is None:
                raise self.fail(f"{where}.size", "a raw partition needs a size")
            props_raw = m.get("props") or {}
            if not isinstance(props_raw, dict):
                raise self.fail(f"{where}.props", "must be a mapping of property to value")
            props = tuple(
                (self.string(k, f"{where}.props"), str(v)) for k, v in sorted(props_raw.items())
            )
            out.append(
                PartitionSpec(
                    name,
                    fs,
                    size,
                    self.choice(m.get("compression", "xz"), f"{where}.compression", COMPRESSIONS),
                    props,
                )
            )
        return tuple(out)

    def app(self, raw: object, where: str) -> AppSpec:
        m = self.mapping(
            raw,
            where,
            (
                "package",
                "path",
                "version_code",
                "version_name",
                "key",
                "shared_user_id",
                "label",
                "min_sdk",
                "target_sdk",
                "permissions",
                "declared_permissions",
                "components",
                "behaviours",
                "native_libs",
                "dex_count",
            ),
            ("package", "path", "version_code", "version_name", "key"),
        )
        package = self.package(m["package"], f"{where}.package")
        path = self.device_path(m["path"], f"{where}.path")
        if not path.endswith((".apk", ".jar")):
            raise self.fail(f"{where}.path", f"{path!r} must end in .apk or .jar")
        declared = m.get("declared_permissions") or []
        if not isinstance(declared, list):
            raise self.fail(f"{where}.declared_permissions", "must be a list")
        return AppSpec(
            package=package,
            path=path,
            version_code=self.integer(m["version_code"], f"{where}.version_code", 1, 2**31 - 1),
            version_name=self.string(m["version_name"], f"{where}.version_name"),
            key=self.string(m["key"], f"{where}.key"),
            shared_user_id=(
                None
                if m.get("shared_user_id") is None
                else self.string(m["shared_user_id"], f"{where}.shared_user_id")
            ),
            label=None if m.get("label") is None else self.string(m["label"], f"{where}.label"),
            min_sdk=self.integer(m.get("min_sdk", 26), f"{where}.min_sdk", 1, 99),
            target_sdk=self.integer(m.get("target_sdk", 28), f"{where}.target_sdk", 1, 99),
            permissions=self.strings(m.get("permissions"), f"{where}.permissions"),
            declared_permissions=tuple(
                self.declared(d, f"{where}.declared_permissions[{i}]")
                for i, d in enumerate(declared)
            ),
            components=tuple(
                self.component(c, package, f"{where}.components[{i}]")
                for i, c in enumerate(self.seq(m.get("components"), f"{where}.components"))
            ),
            behaviours=tuple(
                self.behaviour(b, package, f"{where}.behaviours[{i}]")
                for i, b in enumerate(self.seq(m.get("behaviours"), f"{where}.behaviours"))
            ),
            native_libs=tuple(
                self.native(n, f"{where}.native_libs[{i}]", in_apk=True)
                for i, n in enumerate(self.seq(m.get("native_libs"), f"{where}.native_libs"))
            ),
            dex_count=self.integer(m.get("dex_count", 1), f"{where}.dex_count", 1, 16),
        )

    def seq(self, value: object, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, "must be a list")
        return value

    def declared(self, raw: object, where: str) -> tuple[str, str]:
        m = self.mapping(raw, where, ("name", "protection_level"), ("name",))
        return (
            self.string(m["name"], f"{where}.name"),
            self.string(m.get("protection_level", "normal"), f"{where}.protection_level"),
        )

    @staticmethod
    def qualify(name: str, package: str) -> str:
        return package + name if name.startswith(".") else name

    def component(self, raw: object, package: str, where: str) -> Component:
        m = self.mapping(
            raw,
            where,
            ("kind", "name", "exported", "permission", "actions", "authorities"),
            ("kind", "name"),
        )
        exported = m.get("exported")
        if exported is not None and not isinstance(exported, bool):
            raise self.fail(f"{where}.exported", "must be true or false")
        return Component(
            kind=self.choice(m["kind"], f"{where}.kind", COMPONENT_KINDS),
            name=self.qualify(self.string(m["name"], f"{where}.name"), package),
            exported=exported,
            permission=None
            if m.get("permission") is None
            else self.string(m["permission"], f"{where}.permission"),
            actions=self.strings(m.get("actions"), f"{where}.actions"),
            authorities=None
            if m.get("authorities") is None
            else self.string(m["authorities"], f"{where}.authorities"),
        )

    def behaviour(self, raw: object, package: str, where: str) -> Action:
        m = self.mapping(
            raw,
            where,
            ("class", "method", "reads", "sink", "target", "strings", "load_library", "via_helper"),
            ("class", "method"),
        )
        reads = self.strings(m.get("reads"), f"{where}.reads")
        for r in reads:
            if r not in IDENTIFIERS:
                raise self.fail(f"{where}.reads", f"{r!r} is not one of {', '.join(IDENTIFIERS)}")
        sink = None if m.get("sink") is None else self.choice(m["sink"], f"{where}.sink", SINKS)
        target = None if m.get("target") is None else self.string(m["target"], f"{where}.target")
        if sink in ("http_post", "http_get", "sms", "socket", "file", "broadcast") and not target:
            raise self.fail(f"{where}.target", f"sink {sink!r} needs a target")
        via = m.get("via_helper", False)
        if not isinstance(via, bool):
            raise self.fail(f"{where}.via_helper", "must be true or false")
        method = self.string(m["method"], f"{where}.method")
        if not method.isidentifier():
            raise self.fail(f"{where}.method", f"{method!r} is not a method name")
        return Action(
            class_name=self.qualify(self.string(m["class"], f"{where}.class"), package),
            method=method,
            reads=reads,
            sink=sink,
            target=target,
            strings=self.strings(m.get("strings"), f"{where}.strings"),
            load_library=None
            if m.get("load_library") is None
            else self.string(m["load_library"], f"{where}.load_library"),
            via_helper=via,
        )

    def native(self, raw: object, where: str, *, in_apk: bool) -> NativeSpec:
        m = self.mapping(
            raw,
            where,
            ("path", "machine", "kind", "needed", "imports", "exports", "strings", "mode"),
            ("path",),
        )
        path = self.string(m["path"], f"{where}.path")
        if in_apk:
            parts = path.split("/")
            if len(parts) != 3 or parts[0] != "lib" or not parts[2].endswith(".so"):
                raise self.fail(f"{where}.path", f"{path!r} must look like lib/<abi>/<name>.so")
        else:
            path = self.device_path(path, f"{where}.path")
        needed = m.get("needed")
        return NativeSpec(
            path=path,
            machine=self.choice(
                m.get("machine", "aarch64"), f"{where}.machine", ("aarch64", "arm")
            ),
            kind=self.choice(m.get("kind", "shared"), f"{where}.kind", ("shared", "exec")),
            needed=("libc.so",) if needed is None else self.strings(needed, f"{where}.needed"),
            imports=self.strings(m.get("imports"), f"{where}.imports"),
            exports=self.strings(m.get("exports"), f"{where}.exports"),
            strings=self.strings(m.get("strings"), f"{where}.strings"),
            mode=self.integer(
                m.get("mode", 0o755 if m.get("kind") == "exec" else 0o644),
                f"{where}.mode",
                0,
                0o7777,
            ),
        )

    def file(self, raw: object, where: str) -> FileSpec:
        m = self.mapping(raw, where, ("path", "text", "mode"), ("path", "text"))
        text = m["text"]
        if not isinstance(text, str):
            raise self.fail(f"{where}.text", "must be a string")
        return FileSpec(
            path=self.device_path(m["path"], f"{where}.path"),
            text=text,
            mode=self.integer(m.get("mode", 0o644), f"{where}.mode", 0, 0o7777),
        )

    def placements(self, manifest: BuildManifest) -> None:
        """Every path lies in an ext4 partition and no two things share a path."""
        seen: dict[str, str] = {}
        items = [(f"apps[{i}].path", a.path) for i, a in enumerate(manifest.apps)]
        items += [(f"natives[{i}].path", n.path) for i, n in enumerate(manifest.natives)]
        items += [(f"files[{i}].path", f.path) for i, f in enumerate(manifest.files)]
        for where, path in items:
            try:
                part, _ = manifest.partition_of(path)
            except ManifestError:
                names = ", ".join(p.name for p in manifest.partitions)
                raise self.fail(
                    where, f"{path!r} is not inside a declared partition ({names})"
                ) from None
            if part.filesystem == "raw":
                raise self.fail(where, f"{path!r} is inside raw partition {part.name!r}")
            if path in seen:
                raise self.fail(where, f"{path!r} is also used by {seen[path]}")
            seen[path] = where
        packages: dict[str, int] = {}
        for i, app in enumerate(manifest.apps):
            if app.package in packages and app.path.endswith(".apk"):
                raise self.fail(
                    f"apps[{i}].package", f"{app.package!r} also at apps[{packages[app.package]}]"
                )
            packages[app.package] = i

"""APK and JAR facts from androguard: manifest, components, signing certificates.

This is the only module of fwscan that imports androguard. It reads what androguard is good
at (the binary manifest, the v1/v2/v3 signatures); the bytecode is read by fwscan's own DEX
scanner (:mod:`fwscan.analyze.dexflow`), which is much faster at firmware scale.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fwscan.errors import AnalysisError

_NS = "{http://schemas.android.com/apk/res/android}"
MAX_DEX_SIZE = 512 << 20
"""A DEX file larger than this (uncompressed) is not read: no real app comes near it."""
MAX_DEX_FILES = 64
MAX_LIB_SIZE = 256 << 20
MAX_LIBS = 256
# The subject AOSP's make_key and the public AOSP test keys (testkey, platform, shared, media)
# carry. A build signed with such a key can be impersonated by anyone who has the AOSP tree.
AOSP_TEST_SUBJECT = (
    "Country: US, State/Province: California, Locality: Mountain View, Organization: Android, "
    "Organizational Unit: Android, Common Name: Android, Email Address: android@android.com"
)

_silenced = False


def _quiet() -> None:
    """Silence androguard's loguru output once per process."""
    global _silenced  # noqa: PLW0603 - a once-per-process switch
    if not _silenced:
        from loguru import logger

        logger.remove()
        _silenced = True


@dataclass(frozen=True)
class PackageFacts:
    """What the manifest and the signatures of one APK say (JSON-able via ``to_dict``)."""

    package: str
    version_code: str
    version_name: str
    shared_user_id: str
    label: str
    min_sdk: str
    target_sdk: str
    permissions: tuple[str, ...]
    declared_permissions: tuple[tuple[str, str], ...]
    """(name, protection level) pairs."""
    components: tuple[dict[str, Any], ...]
    """``{"kind", "name", "exported", "permission", "actions"}`` each, sorted by kind and name."""
    certificates: tuple[dict[str, str], ...]
    """``{"sha256", "subject", "scheme"}`` each, sorted."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "package": self.package,
            "version_code": self.version_code,
            "version_name": self.version_name,
            "shared_user_id": self.shared_user_id,
            "label": self.label,
            "min_sdk": self.min_sdk,
            "target_sdk": self.target_sdk,
            "permissions": list(self.permissions),
            "declared_permissions": [list(p) for p in self.declared_permissions],
            "components": list(self.components),
            "certificates": list(self.certificates),
        }


def _exported(el: Any) -> bool | None:
    value = el.get(_NS + "exported")
    if value is None:
        return None
    return str(value).lower() == "true"


def _components(xml: Any) -> tuple[dict[str, Any], ...]:
    out = []
    app = xml.find("application")
    if app is None:
        return ()
    for el in app:
        kind = el.tag if isinstance(el.tag, str) else ""
        if kind not in ("activity", "activity-alias", "service", "receiver", "provider"):
            continue
        actions = sorted(
            str(a.get(_NS + "name"))
            for f in el.findall("intent-filter")
            for a in f.findall("action")
            if a.get(_NS + "name")
        )
        out.append(
            {
                "kind": kind,
                "name": str(el.get(_NS + "name") or ""),
                "exported": _exported(el),
                "permission": str(el.get(_NS + "permission") or ""),
                "actions": actions,
            }
        )
    return tuple(sorted(out, key=lambda c: (c["kind"], c["name"])))


def _certificates(apk: Any) -> tuple[dict[str, str], ...]:
    certs: dict[str, dict[str, str]] = {}
    for scheme, getter in (
        ("v1", apk.get_certificates_v1),
        ("v2", apk.get_certificates_v2),
        ("v3", apk.get_certificates_v3),
    ):
        try:
            found = getter()
        except Exception:  # noqa: BLE001, S112 - a broken signature block is not fatal here
            continue
        for cert in found or ():
            sha = cert.sha256.hex()
            entry = certs.setdefault(
                sha, {"sha256": sha, "subject": cert.subject.human_friendly, "scheme": scheme}
            )
            if scheme not in entry["scheme"].split(","):
                entry["scheme"] += f",{scheme}"
    return tuple(sorted(certs.values(), key=lambda c: c["sha256"]))


def package_facts(path: Path) -> PackageFacts:
    """Manifest and signing facts of the APK at ``path``.

    Raises :class:`UnpackError` when androguard cannot read it as an APK.
    """
    _quiet()
    from androguard.core.apk import APK

    try:
        apk = APK(str(path))
        xml = apk.get_android_manifest_xml()
    except Exception as exc:
        raise AnalysisError(f"androguard cannot read the APK: {type(exc).__name__}: {exc}") from exc
    if xml is None or not apk.is_valid_APK():
        raise AnalysisError("no readable AndroidManifest.xml")

    def attr(name: str) -> str:
        value = xml.get(_NS + name)
        return "" if value is None else str(value)

    sdk = xml.find("uses-sdk")
    app = xml.find("application")
    declared = []
    for perm in xml.findall("permission"):
        declared.append(
            (str(perm.get(_NS + "name") or ""), str(perm.get(_NS + "protectionLevel") or ""))
        )
    return PackageFacts(
        package=str(apk.get_package() or ""),
        version_code=attr("versionCode"),
        version_name=attr("versionName"),
        shared_user_id=attr("sharedUserId"),
        label=str(app.get(_NS + "label") or "") if app is not None else "",
        min_sdk=str(sdk.get(_NS + "minSdkVersion") or "") if sdk is not None else "",
        target_sdk=str(sdk.get(_NS + "targetSdkVersion") or "") if sdk is not None else "",
        permissions=tuple(sorted(set(apk.get_permissions()))),
        declared_permissions=tuple(sorted(declared)),
        components=_components(xml),
        certificates=_certificates(apk),
    )


def code_files(path: Path) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]], list[str]]:
    """The DEX files (``classes.dex``, ``classes2.dex``...) and native libraries (``lib/...so``)
    of an APK or JAR, with sizes bounded, plus the problems met.
    """
    dex: list[tuple[str, bytes]] = []
    libs: list[tuple[str, bytes]] = []
    errors: list[str] = []
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = info.filename
                is_dex = "/" not in name and name.startswith("classes") and name.endswith(".dex")
                is_lib = name.startswith("lib/") and name.endswith(".so")
                if not (is_dex or is_lib):
                    continue
                limit = MAX_DEX_SIZE if is_dex else MAX_LIB_SIZE
                if info.file_size > limit:
                    errors.append(f"{name}: {info.file_size} bytes, over the {limit} limit")
                    continue
                if (is_dex and len(dex) >= MAX_DEX_FILES) or (is_lib and len(libs) >= MAX_LIBS):
                    errors.append(f"{name}: too many code files, the rest is not read")
                    continue
                try:
                    with zf.open(info) as f:
                        data = f.read(limit + 1)
                except (
                    zipfile.BadZipFile,
                    OSError,
                    EOFError,
                    ValueError,
                    NotImplementedError,
                ) as exc:
                    errors.append(f"{name}: cannot be read: {exc}")
                    continue
                if len(data) > limit:
                    errors.append(f"{name}: inflates past the {limit} limit")
                    continue
                (dex if is_dex else libs).append((name, data))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise AnalysisError(f"not a readable zip: {exc}") from exc
    dex.sort(key=lambda d: _dex_order(d[0]))
    libs.sort()
    return dex, libs, errors


def _dex_order(name: str) -> int:
    middle = name[len("classes") : -len(".dex")]
    return int(middle) if middle.isdigit() else 1

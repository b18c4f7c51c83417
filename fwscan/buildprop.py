"""Reading ``build.prop`` files and deriving the build identity from them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fwscan.model import BuildIdentity

MAX_PROP_FILE = 1 << 20
"""build.prop files larger than this are read only up to this size."""

# For each identity field, the properties that carry it, best first. Android 10+ splits
# product properties per partition (ro.product.system.model, ro.product.vendor.model, ...) and
# build properties too (ro.system.build.fingerprint, ro.odm.build.fingerprint, ...): after the
# generic key come the per-partition keys, system first, so that a firmware whose system
# partition could not be read (or an OTA that updates only some partitions) still names itself.
_PARTITIONS = ("system", "vendor", "product", "system_ext", "odm")


def _build(suffix: str) -> tuple[str, ...]:
    return (f"ro.build.{suffix}", *(f"ro.{p}.build.{suffix}" for p in _PARTITIONS))


def _product(name: str) -> tuple[str, ...]:
    return (f"ro.product.{name}", *(f"ro.product.{p}.{name}" for p in _PARTITIONS))


_FIELDS: dict[str, tuple[str, ...]] = {
    "fingerprint": _build("fingerprint"),
    "model": _product("model"),
    "brand": _product("brand"),
    "manufacturer": _product("manufacturer"),
    "device": _product("device"),
    "display_id": ("ro.build.display.id", "ro.system.build.display.id"),
    "incremental": _build("version.incremental"),
    "release": _build("version.release"),
    "sdk": _build("version.sdk"),
    "security_patch": ("ro.build.version.security_patch",),
    "vendor_security_patch": ("ro.vendor.build.security_patch",),
}


def parse(data: bytes) -> dict[str, str]:
    """Properties of one ``build.prop``: ``key=value`` lines; comments, ``import`` lines and
    malformed lines are ignored; a later definition of a key wins, as in Android's init."""
    props: dict[str, str] = {}
    text = data[:MAX_PROP_FILE].decode("utf-8", "replace")
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if key and " " not in key:
            props[key] = value.strip()
    return props


OTA_METADATA = "META-INF/com/android/metadata"
"""The OTA package's own description of the build it installs (``ota_from_target_files``)."""
MAX_OTA_METADATA = 64 * 1024
_OTA_KEYS = {
    "post-build": "ro.build.fingerprint",
    "post-build-incremental": "ro.build.version.incremental",
    "post-sdk-level": "ro.build.version.sdk",
    "post-security-patch-level": "ro.build.version.security_patch",
    "pre-device": "ro.product.device",
}


def ota_metadata(data: bytes) -> dict[str, str]:
    """The properties an OTA package's ``META-INF/com/android/metadata`` gives (``key=value``
    lines: ``post-build`` is the fingerprint of the build it installs, ``pre-device`` the
    devices it applies to, the first of a comma-separated list), named as in ``build.prop``."""
    raw = parse(data[:MAX_OTA_METADATA])
    props = {prop: raw[key] for key, prop in _OTA_KEYS.items() if raw.get(key)}
    if "ro.product.device" in props:
        props["ro.product.device"] = props["ro.product.device"].split(",")[0]
    return props


def identity(files: Sequence[tuple[str, Mapping[str, str]]]) -> BuildIdentity:
    """The build identity from ``(device_path, properties)`` pairs.

    ``/system`` files come first, then the other device paths, then anything else (an OTA
    package's metadata, named by its place in the package, is the last resort); for each
    field the first file that defines one of its properties wins.
    """

    def rank(path: str) -> tuple[int, str]:
        return (0 if path.startswith("/system/") else 1 if path.startswith("/") else 2, path)

    ordered = sorted(files, key=lambda f: rank(f[0]))
    values: dict[str, str] = {}
    used: list[str] = []
    for name, props_ in _FIELDS.items():
        for path, props in ordered:
            hit = next((props[p] for p in props_ if props.get(p)), None)
            if hit is not None:
                values[name] = hit
                if path not in used:
                    used.append(path)
                break
    return BuildIdentity(**values, sources=tuple(sorted(used)))

"""One artifact, one analysis: the function the worker pool runs, and its JSON form.

:func:`analyze` reads one stored file (an APK, JAR, DEX, ODEX/OAT, VDEX, ELF, init ``.rc`` or
permission XML), runs the analyzers that fit its kind, and returns plain JSON-able facts with no
device path in them: the same bytes give the same result wherever they sit, so results are cached
by content (see :mod:`fwscan.cache`) and turned into findings later by :mod:`fwscan.assess`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fwscan import endpoints
from fwscan.errors import FwscanError
from fwscan.rules import SignatureSet
from fwscan.signatures import load_signatures

ANALYZER_VERSION = "3"
"""Bumped whenever an analyzer's output changes, so that cached results are not reused.
(2: VDEX files holding CompactDex are read; 3: flow chains of up to 5 methods.)"""
ANALYZED_KINDS = frozenset(
    {"apk", "jar", "dex", "odex", "oat", "vdex", "elf", "init_rc", "permissions_xml"}
)
MAX_CONFIG_SIZE = 4 << 20


@dataclass(frozen=True)
class ArtifactTask:
    """What a worker needs to analyse one stored artifact."""

    sha256: str
    kind: str
    path: str
    """The stored copy (never a path inside the firmware)."""
    signatures_dir: str | None


@lru_cache(maxsize=4)
def _signatures(directory: str | None) -> SignatureSet:
    return load_signatures(Path(directory) if directory else None)


def analyze(task: ArtifactTask) -> dict[str, Any]:
    """The facts of one artifact (raises on a failure that leaves nothing to report)."""
    sig = _signatures(task.signatures_dir)
    path = Path(task.path)
    if task.kind in ("apk", "jar"):
        return _package(path, task.kind, sig)
    if task.kind == "dex":
        return _code_only(path.read_bytes(), "dex", sig, lambda d: [d])
    if task.kind in ("odex", "oat"):
        from fwscan.analyze.native import find_embedded_dex

        return _code_only(
            path.read_bytes(), "odex", sig, lambda d: [x for _, x in find_embedded_dex(d)]
        )
    if task.kind == "vdex":
        from fwscan.analyze.native import vdex_dex_files

        return _code_only(path.read_bytes(), "vdex", sig, vdex_dex_files)
    if task.kind == "elf":
        return {"type": "elf", "native": native_facts(path.read_bytes(), sig)}
    if task.kind == "init_rc":
        from fwscan.analyze.config import parse_init_rc

        # Messages name "rc"/"xml", not the stored file: the finding carries the device path.
        services, errors = parse_init_rc(_small(path), "rc")
        return {
            "type": "init_rc",
            "services": [
                {
                    "name": s.name,
                    "path": s.path,
                    "user": s.user,
                    "line": s.line,
                    "disabled": s.disabled,
                    "classes": list(s.classes),
                }
                for s in services
            ],
            "errors": errors,
        }
    if task.kind == "permissions_xml":
        from fwscan.analyze.config import (
            DefaultGrant,
            PrivappGrant,
            parse_default_permissions,
            parse_privapp_permissions,
        )

        data = _small(path)
        privapp: list[PrivappGrant] = []
        default: list[DefaultGrant] = []
        if b"<exceptions" in data:
            default, errors = parse_default_permissions(data, "xml")
        else:
            privapp, errors = parse_privapp_permissions(data, "xml")
        return {
            "type": "permissions_xml",
            "privapp": [
                {
                    "package": g.package,
                    "permission": g.permission,
                    "denied": g.denied,
                    "line": g.line,
                }
                for g in privapp
            ],
            "default": [
                {"package": g.package, "permission": g.permission, "fixed": g.fixed}
                for g in default
            ],
            "errors": errors,
        }
    return {"type": "other"}


def _small(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(MAX_CONFIG_SIZE)


def _code_only(data: bytes, source: str, sig: SignatureSet, split: Any) -> dict[str, Any]:
    errors: list[str] = []
    try:
        dexes = list(split(data))
    except FwscanError as exc:
        dexes, errors = [], [str(exc)]
    names = [("classes.dex" if i == 0 else f"classes{i + 1}.dex", d) for i, d in enumerate(dexes)]
    code = code_facts(names, sig) if names else None
    if code is not None:
        errors += code["errors"]
    return {
        "type": source,
        "code": code,
        "code_source": source if names else "none",
        "dex_files": len(names),
        "errors": errors,
    }


def _package(path: Path, kind: str, sig: SignatureSet) -> dict[str, Any]:
    from fwscan.analyze.apk import code_files, package_facts

    errors: list[str] = []
    facts = None
    if kind == "apk":
        try:
            facts = package_facts(path).to_dict()
        except FwscanError as exc:
            errors.append(str(exc))
    try:
        dexes, libs, errs = code_files(path)
    except FwscanError as exc:
        dexes, libs, errs = [], [], [str(exc)]
    errors += errs
    code = code_facts(dexes, sig) if dexes else None
    if code is not None:
        errors += code["errors"]
    natives: dict[str, Any] = {}
    for name, data in libs:
        try:
            natives[name] = native_facts(data, sig)
        except FwscanError as exc:
            errors.append(f"{name}: {exc}")
    return {
        "type": kind,
        "facts": facts,
        "code": code,
        "code_source": "dex" if dexes else "none",
        "dex_files": len(dexes),
        "natives": natives,
        "errors": errors,
    }


def _loc(loc: Any) -> list[Any]:
    return [loc.dex, loc.class_name, loc.method, loc.descriptor, loc.offset]


def _use(use: Any) -> dict[str, Any]:
    return {"rule": use.rule.id, "loc": _loc(use.location), "library": use.library}


def code_facts(dex_files: list[tuple[str, bytes]], sig: SignatureSet) -> dict[str, Any]:
    """Reads, sinks, flows and endpoints of the DEX files of one app, as JSON."""
    from fwscan.analyze.dexflow import analyze_dex_files

    report = analyze_dex_files(dex_files, sig, string_filter=endpoints.is_candidate)
    found: dict[str, dict[str, Any]] = {}
    for s in report.strings:
        for ep in endpoints.extract(s.value):
            entry = found.setdefault(ep.value, _endpoint_entry(ep))
            entry["locations"].append({"loc": _loc(s.location), "library": s.library})
    return {
        "reads": [_use(u) for u in report.reads],
        "sinks": [_use(u) for u in report.sinks],
        "flows": [
            {
                "categories": list(f.categories),
                "sources": [_use(u) for u in f.sources],
                "sink": _use(f.sink),
                "target": f.target,
                "chain": [_loc(c) for c in f.chain],
                "library": f.library,
            }
            for f in report.flows
        ],
        "endpoints": [found[k] for k in sorted(found)],
        "classes": report.classes,
        "methods_decoded": report.methods_decoded,
        "unresolved_calls": report.unresolved_calls,
        "errors": list(report.errors),
    }


def _endpoint_entry(ep: endpoints.Endpoint) -> dict[str, Any]:
    return {
        "value": ep.value,
        "kind": ep.kind,
        "host": ep.host,
        "scheme": ep.scheme,
        "port": ep.port,
        "cleartext": ep.cleartext,
        "external": ep.external,
        "locations": [],
    }


def native_facts(data: bytes, sig: SignatureSet) -> dict[str, Any]:
    """Imports, exports, identifier properties and endpoints of one ELF file, as JSON."""
    from fwscan.analyze.native import analyze_elf

    prop_rules = [r for r in sig.native if r.kind == "property"]
    report = analyze_elf(data, string_filter=endpoints.is_candidate, property_rules=prop_rules)
    found: dict[str, dict[str, Any]] = {}
    for s in report.strings:
        for ep in endpoints.extract(s.value):
            entry = found.setdefault(ep.value, _endpoint_entry(ep))
            entry["locations"].append({"section": s.section, "offset": s.offset})
    props = []
    for p in report.properties:
        rule = next((r for r in prop_rules if r.matches(p.value)), None)
        if rule is not None:
            props.append(
                {"value": p.value, "section": p.section, "offset": p.offset, "rule": rule.id}
            )
    return {
        "machine": report.machine,
        "elf_type": report.elf_type,
        "soname": report.soname,
        "needed": list(report.needed),
        "imports": list(report.imports),
        "exports_count": len(report.exports),
        "jni_exports": list(report.jni_exports),
        "properties": props,
        "endpoints": [found[k] for k in sorted(found)],
        "errors": list(report.errors),
    }

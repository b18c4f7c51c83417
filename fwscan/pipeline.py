"""The scan: firmware -> inventory and stored artifacts -> analyses (pool, cache) -> findings.

:func:`scan` is the library entry point behind ``fwscan scan``. Progress bars (tqdm) are shown
per stage when asked for and when stderr is a terminal.
"""

from __future__ import annotations

import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fwscan import __version__
from fwscan.analyze.apk import AOSP_TEST_SUBJECT
from fwscan.analyze.artifact import ANALYZED_KINDS, ANALYZER_VERSION, ArtifactTask, analyze
from fwscan.assess import Assessor, placement
from fwscan.blobstore import BlobStore
from fwscan.cache import ResultCache, cache_key
from fwscan.endpoints import psl_version
from fwscan.errors import InputError
from fwscan.findings import Evidence, Finding
from fwscan.inventory import build_inventory
from fwscan.limits import DEFAULT_LIMITS, Limits
from fwscan.model import FileRecord, Inventory
from fwscan.rules import SignatureSet
from fwscan.scanresult import AppRecord, ArtifactError, ScanResult
from fwscan.signatures import load_signatures
from fwscan.workers import TaskFailure, run_tasks

GiB = 1 << 30


@dataclass(frozen=True)
class ScanOptions:
    """How to scan."""

    jobs: int = 2
    """Worker processes for artifact analysis."""
    cache_dir: Path | None = None
    """Result cache folder; ``None`` disables the cache."""
    workdir: Path | None = None
    """Where partition images and stored artifacts live during the scan (default: temp)."""
    timeout: float = 600.0
    """Seconds one artifact's analysis may take."""
    memory_limit: int | None = 3 * GiB
    """Address-space limit of a worker process."""
    progress: bool = False
    signatures_dir: Path | None = None
    limits: Limits = DEFAULT_LIMITS
    source: str | None = None
    """The build an incremental update applies to (firmware file or ``NAME=IMAGE``)."""


@dataclass
class ScanStats:
    """How the scan went (printed, never written into the result: it would break determinism)."""

    artifacts: int = 0
    cached: int = 0
    analysed: int = 0
    failed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


@contextmanager
def _stage(stats: ScanStats, name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    stats.seconds[name] = round(time.perf_counter() - start, 3)


def is_bare_artifact(path: Path) -> bool:
    """A single APK, JAR, DEX or ELF file rather than a firmware container."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith((b"dex\n", b"\x7fELF")):
        return True
    if not head.startswith(b"PK"):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    if "payload.bin" in names:
        return False
    return "AndroidManifest.xml" in names or any(
        n.startswith("classes") and n.endswith(".dex") for n in names
    )


def _bar(total: int | None, desc: str, enabled: bool, unit: str = "artifact") -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False)


def scan(target: Path, options: ScanOptions = ScanOptions()) -> tuple[ScanResult, ScanStats]:
    """Scan a firmware file, a bare APK/JAR/DEX/ELF, or a directory of them."""
    if not target.exists():
        raise InputError(f"{target}: no such file or directory")
    sig = load_signatures(options.signatures_dir)
    stats = ScanStats()
    show = options.progress and sys.stderr.isatty()
    cache = ResultCache(options.cache_dir)
    with tempfile.TemporaryDirectory(prefix="fwscan-scan-", dir=options.workdir) as tmp:
        version = psl_version()

        def known(sha: str, kind: str) -> bool:
            return cache.has(cache_key(sha, kind, ANALYZER_VERSION, sig.sha256, version))

        store = BlobStore(Path(tmp) / "blobs", ANALYZED_KINDS, known)
        as_files = target.is_dir() or is_bare_artifact(target)
        with _stage(stats, "unpack"), _bar(None, "reading files", show, "file") as bar:
            inv, _ctx = build_inventory(
                target,
                workdir=Path(tmp),
                limits=options.limits,
                store=store,
                as_files=as_files,
                on_file=lambda part, entry, record: bar.update(1),
                source=options.source,
            )
        with _stage(stats, "analyse"):
            analyses = _analyse(inv, store, sig, options, cache, stats, show)
    with _stage(stats, "assess"):
        result = assess(inv, analyses, sig)
    return result, stats


def _analyse(
    inv: Inventory,
    store: BlobStore,
    sig: SignatureSet,
    options: ScanOptions,
    cache: ResultCache,
    stats: ScanStats,
    show: bool,
) -> dict[tuple[str, str], dict[str, Any] | TaskFailure]:
    every = {(f.sha256, f.kind) for f in inv.files if f.kind in ANALYZED_KINDS and f.sha256}
    version = psl_version()
    keys = {w: cache_key(w[0], w[1], ANALYZER_VERSION, sig.sha256, version) for w in every}
    # Stored for analysis, or analysed before (then only the cache has it).
    wanted = sorted(w for w in every if store.has(w[0]) or cache.has(keys[w]))
    stats.artifacts = len(wanted)
    sig_dir = str(options.signatures_dir) if options.signatures_dir else None
    out: dict[tuple[str, str], dict[str, Any] | TaskFailure] = {}
    todo = []
    for w in wanted:
        hit = cache.get(keys[w])
        if hit is not None:
            out[w] = hit
            stats.cached += 1
        else:
            todo.append(ArtifactTask(w[0], w[1], str(store.path(w[0])), sig_dir))
    # Biggest first keeps both workers busy until the end.
    todo.sort(key=lambda t: -Path(t.path).stat().st_size)
    with _bar(len(todo), "analysing", show) as bar:
        results = run_tasks(
            analyze,
            todo,
            jobs=options.jobs,
            timeout=options.timeout,
            memory_limit=options.memory_limit,
            on_done=lambda n: bar.update(1),
        )
    for task, res in zip(todo, results, strict=True):
        key = (task.sha256, task.kind)
        out[key] = res
        if isinstance(res, TaskFailure):
            stats.failed += 1
        else:
            stats.analysed += 1
            cache.put(keys[key], res)
    return out


def _platform_certs(inv: Inventory, analyses: dict[tuple[str, str], Any]) -> frozenset[str]:
    """The build's platform key: the signer of framework-res.apk, else the usual signer of the
    apps that run as android.uid.system."""
    votes: Counter[str] = Counter()
    for f in inv.files:
        res = analyses.get((f.sha256, f.kind))
        if f.kind != "apk" or not isinstance(res, dict) or not res.get("facts"):
            continue
        certs = [c["sha256"] for c in res["facts"]["certificates"]]
        if f.device_path.endswith("/framework/framework-res.apk"):
            return frozenset(certs)
        if res["facts"]["shared_user_id"] == "android.uid.system":
            votes.update(certs)
    if not votes:
        return frozenset()
    top = max(votes.values())
    return frozenset(c for c, n in votes.items() if n == top)


def assess(
    inv: Inventory, analyses: dict[tuple[str, str], dict[str, Any] | TaskFailure], sig: SignatureSet
) -> ScanResult:
    """Findings, apps and errors from the inventory and the per-artifact analyses."""
    assessor = Assessor(sig)
    platform = _platform_certs(inv, analyses)
    findings: list[Finding] = []
    apps: list[AppRecord] = []
    errors: list[ArtifactError] = []
    binaries: dict[str, list[Finding]] = {}
    owners = _apk_owners(inv, analyses)
    shared = _shared_packages(inv, analyses)
    rc_files: list[tuple[FileRecord, dict[str, Any]]] = []
    for f in inv.files:
        res = analyses.get((f.sha256, f.kind))
        if res is None:
            continue
        if isinstance(res, TaskFailure):
            errors.append(ArtifactError(f.device_path, f.sha256, f.kind, res.kind, res.message))
            if f.kind in ("apk", "jar"):
                apps.append(_failed_app(f, res.message))
            continue
        for message in res.get("errors", []):
            errors.append(ArtifactError(f.device_path, f.sha256, f.kind, "error", message))
        kind = res.get("type")
        if kind in ("apk", "jar"):
            app, found = _package_findings(assessor, f, res, platform, shared)
            apps.append(app)
            findings += found
        elif kind in ("dex", "odex", "vdex") and res.get("code"):
            owner = owners.get(_apk_for_code(f.device_path), f.device_path)
            findings += assessor.code_findings(res["code"], f.device_path, owner)
        elif kind == "elf":
            found = assessor.native_findings(res["native"], f.device_path, f.device_path)
            binaries[f.device_path] = found
            findings += found
        elif kind == "permissions_xml":
            findings += assessor.grant_findings(res, f.device_path)
        elif kind == "init_rc":
            rc_files.append((f, res))
    for f, res in rc_files:
        findings += assessor.service_findings(res["services"], f.device_path, binaries)
    unique = {(x.fingerprint, x.evidence): x for x in findings}
    return ScanResult(
        tool_version=__version__,
        analyzer_version=ANALYZER_VERSION,
        signatures_version=sig.version,
        signatures_sha256=sig.sha256,
        input=inv.input,
        build=inv.build,
        coverage=inv.coverage,
        apps=tuple(sorted(apps, key=lambda a: a.path)),
        findings=tuple(sorted(_merge(unique.values()), key=Finding.sort_key)),
        errors=tuple(sorted(errors, key=lambda e: (e.path, e.message))),
        files=len(inv.files),
        artifacts=len({(f.sha256, f.kind) for f in inv.files if f.kind in ANALYZED_KINDS}),
    )


def _merge(findings: Any) -> list[Finding]:
    """One finding per fingerprint: the same fact at two paths (a copied APK) keeps the
    evidence of both, capped."""
    from fwscan.assess import MAX_EVIDENCE

    by_fp: dict[str, Finding] = {}
    for f in sorted(findings, key=lambda x: (x.fingerprint, [e.sort_key() for e in x.evidence])):
        prev = by_fp.get(f.fingerprint)
        if prev is None:
            by_fp[f.fingerprint] = f
        else:
            merged = sorted(set(prev.evidence + f.evidence), key=Evidence.sort_key)
            evidence = tuple(merged[:MAX_EVIDENCE])
            by_fp[f.fingerprint] = Finding(
                prev.kind,
                prev.rule,
                max(prev.severity, f.severity),
                prev.title,
                prev.component,
                prev.category,
                prev.target,
                prev.library and f.library,
                evidence,
                prev.attributes,
            )
    return list(by_fp.values())


def _apk_for_code(path: str) -> str:
    """The APK a pre-optimised code file belongs to: ``<dir>/oat/<arch>/X.odex`` (or
    ``<dir>/<arch>/X.odex``, or ``<dir>/X.odex``) -> ``<dir>/X.apk``."""
    parts = path.split("/")
    stem = parts[-1].rsplit(".", 1)[0]
    folder = parts[:-1]
    if len(folder) >= 2 and folder[-2] == "oat":
        folder = folder[:-2]
    elif folder and folder[-1] in ("arm", "arm64", "x86", "x86_64", "mips", "mips64"):
        folder = folder[:-1]
    return "/".join([*folder, f"{stem}.apk"])


def _shared_packages(inv: Inventory, analyses: dict[tuple[str, str], Any]) -> frozenset[str]:
    """Packages claimed by APKs of different content (a folder of test apps, a mis-built
    firmware): their findings must not be merged by package."""
    seen: dict[str, set[str]] = {}
    for f in inv.files:
        res = analyses.get((f.sha256, f.kind))
        if f.kind == "apk" and isinstance(res, dict) and res.get("facts"):
            seen.setdefault(res["facts"]["package"], set()).add(f.sha256)
    return frozenset(p for p, shas in seen.items() if p and len(shas) > 1)


def _apk_owners(inv: Inventory, analyses: dict[tuple[str, str], Any]) -> dict[str, str]:
    """Device path of each APK -> its package (for attributing ODEX/VDEX code to the app)."""
    owners = {}
    for f in inv.files:
        res = analyses.get((f.sha256, f.kind))
        if f.kind == "apk" and isinstance(res, dict) and res.get("facts"):
            owners[f.device_path] = res["facts"]["package"] or f.device_path
    return owners


def _failed_app(f: FileRecord, message: str) -> AppRecord:
    return AppRecord(
        path=f.device_path,
        sha256=f.sha256,
        package="",
        version_code="",
        version_name="",
        shared_user_id="",
        label="",
        placement=placement(f.device_path),
        privileged=False,
        permissions=(),
        declared_permissions=(),
        components=(),
        certificates=(),
        code="none",
        dex_files=0,
        analysis="failed",
        errors=(message,),
    )


def _package_findings(
    assessor: Assessor,
    f: FileRecord,
    res: dict[str, Any],
    platform: frozenset[str],
    shared: frozenset[str] = frozenset(),
) -> tuple[AppRecord, list[Finding]]:
    facts = res.get("facts") or {}
    package = facts.get("package", "")
    component = package or f.device_path
    if package in shared:  # two different APKs claim one package: keep them apart
        component = f"{package} ({f.device_path})"
    findings: list[Finding] = []
    if res.get("code"):
        findings += assessor.code_findings(res["code"], f.device_path, component)
    for lib, native in sorted(res.get("natives", {}).items()):
        findings += assessor.native_findings(native, f"{f.device_path}!{lib}", component)
    privileged = False
    if facts:
        found, privileged = assessor.privilege_findings(facts, f.device_path, component, platform)
        findings += found
    certs = []
    for c in facts.get("certificates", []):
        flags = []
        if c["sha256"] in platform:
            flags.append("platform_key")
        if c["subject"] == AOSP_TEST_SUBJECT:
            flags.append("aosp_test_key")
        certs.append({**c, "flags": flags})
    code = res.get("code") or {}
    partial = bool(code.get("unresolved_calls")) or bool(res.get("errors"))
    if f.kind == "apk" and not facts:
        status = "failed"
    elif res.get("code_source") == "none" and f.kind == "apk" and res.get("dex_files", 0) == 0:
        status = "partial" if _has_code_elsewhere(facts) else "complete"
    else:
        status = "partial" if partial else "complete"
    app = AppRecord(
        path=f.device_path,
        sha256=f.sha256,
        package=package,
        version_code=facts.get("version_code", ""),
        version_name=facts.get("version_name", ""),
        shared_user_id=facts.get("shared_user_id", ""),
        label=facts.get("label", ""),
        placement=placement(f.device_path),
        privileged=privileged,
        permissions=tuple(facts.get("permissions", ())),
        declared_permissions=tuple((p[0], p[1]) for p in facts.get("declared_permissions", ())),
        components=tuple(facts.get("components", ())),
        certificates=tuple(certs),
        code=res.get("code_source", "none"),
        dex_files=res.get("dex_files", 0),
        analysis=status,
        errors=tuple(res.get("errors", ())),
    )
    return app, findings


def _has_code_elsewhere(facts: dict[str, Any]) -> bool:
    """An APK without DEX whose manifest declares components had its code pre-optimised
    into an ODEX/VDEX beside it (analysed as its own artifact)."""
    return bool(facts.get("components"))


def load_result(path: Path, options: ScanOptions = ScanOptions()) -> ScanResult:
    """A saved scan result (``fwscan scan --json``), or a fresh scan of a firmware file."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(64).lstrip()
        if head.startswith(b"{"):
            import json

            try:
                return ScanResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{path}: not a readable fwscan scan result: {exc}") from None
    return scan(path, options)[0]

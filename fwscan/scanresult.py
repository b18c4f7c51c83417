"""The scan result: one JSON document per scanned firmware (schema ``fwscan.scan/1``).

It records what was scanned (input SHA-256, build identity, coverage), with what (tool and
signature versions, signature-set hash), the apps met, every finding with its evidence, and the
artifacts that could not be analysed. Everything is sorted, and nothing depends on the time, the
machine or the cache, so two scans of one build give byte-identical JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fwscan.findings import Finding
from fwscan.model import BuildIdentity, CoverageRecord, InputInfo, Status

SCAN_SCHEMA = "fwscan.scan/1"


@dataclass(frozen=True)
class AppRecord:
    """One APK or JAR of the firmware, with its manifest facts and its privileges."""

    path: str
    """Device path."""
    sha256: str
    package: str
    """Empty for a JAR or when the manifest could not be read."""
    version_code: str
    version_name: str
    shared_user_id: str
    label: str
    placement: str
    """``priv-app``, ``app``, ``framework``, ``vendor``, ``product``, ``system_ext``, ``odm``,
    ``apex`` or ``other``."""
    privileged: bool
    """Runs with privileges: in a priv-app folder, a system shared user, or the platform key."""
    permissions: tuple[str, ...]
    declared_permissions: tuple[tuple[str, str], ...]
    components: tuple[dict[str, Any], ...]
    certificates: tuple[dict[str, Any], ...]
    """``{"sha256", "subject", "scheme", "flags"}``; flags: ``platform_key``, ``aosp_test_key``."""
    code: str
    """Where the code came from: ``dex`` (classes*.dex), ``odex``, ``vdex``, ``none``."""
    dex_files: int
    analysis: str
    """``complete``, ``partial`` (some code unreadable or unresolved), ``failed``."""
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "package": self.package,
            "version_code": self.version_code,
            "version_name": self.version_name,
            "shared_user_id": self.shared_user_id,
            "label": self.label,
            "placement": self.placement,
            "privileged": self.privileged,
            "permissions": list(self.permissions),
            "declared_permissions": [list(p) for p in self.declared_permissions],
            "components": list(self.components),
            "certificates": list(self.certificates),
            "code": self.code,
            "dex_files": self.dex_files,
            "analysis": self.analysis,
            "errors": list(self.errors),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AppRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            path=d["path"],
            sha256=d["sha256"],
            package=d["package"],
            version_code=d["version_code"],
            version_name=d["version_name"],
            shared_user_id=d["shared_user_id"],
            label=d["label"],
            placement=d["placement"],
            privileged=d["privileged"],
            permissions=tuple(d["permissions"]),
            declared_permissions=tuple((p[0], p[1]) for p in d["declared_permissions"]),
            components=tuple(d["components"]),
            certificates=tuple(d["certificates"]),
            code=d["code"],
            dex_files=d["dex_files"],
            analysis=d["analysis"],
            errors=tuple(d.get("errors", ())),
        )


@dataclass(frozen=True)
class ArtifactError:
    """An artifact whose analysis failed or was cut short."""

    path: str
    sha256: str
    kind: str
    reason: str
    """``error``, ``timeout``, ``memory`` or ``crash``."""
    message: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArtifactError:
        """Inverse of :meth:`to_dict`."""
        return cls(d["path"], d["sha256"], d["kind"], d["reason"], d["message"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "kind": self.kind,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass(frozen=True)
class ScanResult:
    """Everything one scan found."""

    tool_version: str
    analyzer_version: str
    signatures_version: str
    signatures_sha256: str
    input: InputInfo
    build: BuildIdentity
    coverage: tuple[CoverageRecord, ...]
    apps: tuple[AppRecord, ...]
    findings: tuple[Finding, ...]
    errors: tuple[ArtifactError, ...]
    files: int
    """Files listed in the firmware."""
    artifacts: int
    """Distinct artifacts analysed (by content)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (lists already in their deterministic order)."""
        return {
            "schema": SCAN_SCHEMA,
            "tool": {
                "name": "fwscan",
                "version": self.tool_version,
                "analyzer_version": self.analyzer_version,
            },
            "signatures": {"version": self.signatures_version, "sha256": self.signatures_sha256},
            "input": self.input.to_dict(),
            "build": self.build.to_dict(),
            "coverage": [c.to_dict() for c in self.coverage],
            "summary": self.summary(),
            "apps": [a.to_dict() for a in self.apps],
            "findings": [f.to_dict() for f in self.findings],
            "errors": [e.to_dict() for e in self.errors],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScanResult:
        """A saved scan result (``fwscan scan --json``) read back; the schema is checked."""
        if d.get("schema") != SCAN_SCHEMA:
            raise ValueError(f"not a fwscan scan result (schema {d.get('schema')!r})")
        return cls(
            tool_version=d["tool"]["version"],
            analyzer_version=d["tool"]["analyzer_version"],
            signatures_version=d["signatures"]["version"],
            signatures_sha256=d["signatures"]["sha256"],
            input=InputInfo.from_dict(d["input"]),
            build=BuildIdentity.from_dict(d["build"]),
            coverage=tuple(CoverageRecord.from_dict(c) for c in d["coverage"]),
            apps=tuple(AppRecord.from_dict(a) for a in d["apps"]),
            findings=tuple(Finding.from_dict(f) for f in d["findings"]),
            errors=tuple(ArtifactError.from_dict(e) for e in d["errors"]),
            files=d["summary"]["files"],
            artifacts=d["summary"]["artifacts"],
        )

    def summary(self) -> dict[str, Any]:
        """Counts a reader wants first."""
        by_severity: dict[str, int] = {}
        by_kind: dict[str, int] = {}
        for f in self.findings:
            by_severity[f.severity.label] = by_severity.get(f.severity.label, 0) + 1
            by_kind[f.kind.value] = by_kind.get(f.kind.value, 0) + 1
        return {
            "files": self.files,
            "artifacts": self.artifacts,
            "apps": len(self.apps),
            "findings_by_severity": dict(sorted(by_severity.items())),
            "findings_by_kind": dict(sorted(by_kind.items())),
            "partitions_failed": sum(
                1 for c in self.coverage if c.status is Status.FAILED and c.kind == "partition"
            ),
            "artifact_errors": len(self.errors),
            "findings_in_library_code": sum(1 for f in self.findings if f.library),
        }

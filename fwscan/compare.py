"""Comparing builds: the diff of two scans and the matrix of a batch.

Findings are matched by fingerprint (kind, component, rule, category, target: never offsets or
hashes), apps by package (or path, for JARs and unreadable APKs). A diff says what the new build
added, removed, kept or changed, and starts with one sentence that answers the reader's
question; a matrix lays apps, endpoints and flows against builds, rows present in only some
builds first (the mis-packaged batch pattern).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fwscan.assess import category_name
from fwscan.findings import Finding, Kind, Severity
from fwscan.model import BuildIdentity, InputInfo
from fwscan.scanresult import AppRecord, ScanResult

DIFF_SCHEMA = "fwscan.diff/1"
MATRIX_SCHEMA = "fwscan.matrix/1"
HEADLINE_SINKS = ("network", "sms")
"""Flows the headline talks about: identifiers leaving the device."""


def app_key(app: AppRecord) -> str:
    """How an app is matched across builds."""
    return app.package or app.path


@dataclass(frozen=True)
class AppChange:
    """One app's fate between two builds."""

    key: str
    status: str
    """``added``, ``removed``, ``changed`` or ``kept``."""
    old: AppRecord | None
    new: AppRecord | None
    changes: tuple[str, ...]
    """What changed, e.g. ``version 28 (9) -> 29 (9.0.1)``, ``signing certificate``."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "key": self.key,
            "status": self.status,
            "changes": list(self.changes),
            "old": self.old.to_dict() if self.old else None,
            "new": self.new.to_dict() if self.new else None,
        }


@dataclass(frozen=True)
class FindingChange:
    """One finding's fate between two builds."""

    fingerprint: str
    status: str
    """``added``, ``removed``, ``changed`` (same fingerprint, other severity) or ``kept``."""
    old: Finding | None
    new: Finding | None

    @property
    def finding(self) -> Finding:
        """The newest version of the finding."""
        found = self.new or self.old
        assert found is not None
        return found

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "fingerprint": self.fingerprint,
            "status": self.status,
            "old": self.old.to_dict() if self.old else None,
            "new": self.new.to_dict() if self.new else None,
        }


@dataclass(frozen=True)
class BuildSide:
    """One side of a diff: what was scanned."""

    input: InputInfo
    build: BuildIdentity
    summary: dict[str, Any]
    signatures_sha256: str

    @classmethod
    def of(cls, result: ScanResult) -> BuildSide:
        """From a scan result."""
        return cls(result.input, result.build, result.summary(), result.signatures_sha256)

    @property
    def label(self) -> str:
        """A short name for the build."""
        return self.build.display_id or self.build.incremental or self.input.name

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "input": self.input.to_dict(),
            "build": self.build.to_dict(),
            "summary": self.summary,
            "signatures_sha256": self.signatures_sha256,
        }


@dataclass(frozen=True)
class BuildDiff:
    """What changed from ``old`` to ``new``."""

    old: BuildSide
    new: BuildSide
    apps: tuple[AppChange, ...]
    findings: tuple[FindingChange, ...]
    headline: str

    def apps_with(self, status: str) -> list[AppChange]:
        """The app changes of one status."""
        return [a for a in self.apps if a.status == status]

    def findings_with(self, status: str, kind: Kind | None = None) -> list[FindingChange]:
        """The finding changes of one status (and kind)."""
        return [
            f
            for f in self.findings
            if f.status == status and (kind is None or f.finding.kind is kind)
        ]

    def counts(self) -> dict[str, dict[str, int]]:
        """Added/removed/kept/changed counts per finding kind, plus apps."""
        out: dict[str, dict[str, int]] = {"apps": {}}
        for a in self.apps:
            out["apps"][a.status] = out["apps"].get(a.status, 0) + 1
        for f in self.findings:
            row = out.setdefault(f.finding.kind.value, {})
            row[f.status] = row.get(f.status, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (schema ``fwscan.diff/1``)."""
        return {
            "schema": DIFF_SCHEMA,
            "headline": self.headline,
            "old": self.old.to_dict(),
            "new": self.new.to_dict(),
            "counts": self.counts(),
            "apps": [a.to_dict() for a in self.apps],
            "findings": [f.to_dict() for f in self.findings],
        }


def _app_changes(old: AppRecord, new: AppRecord) -> tuple[str, ...]:
    out = []
    if (old.version_code, old.version_name) != (new.version_code, new.version_name):
        out.append(
            f"version {old.version_code} ({old.version_name}) -> "
            f"{new.version_code} ({new.version_name})"
        )
    if {c["sha256"] for c in old.certificates} != {c["sha256"] for c in new.certificates}:
        out.append("signing certificate")
    if old.path != new.path:
        out.append(f"path {old.path} -> {new.path}")
    if old.placement != new.placement:
        out.append(f"placement {old.placement} -> {new.placement}")
    if old.privileged != new.privileged:
        out.append("privileged" if new.privileged else "no longer privileged")
    if old.shared_user_id != new.shared_user_id:
        out.append(f"sharedUserId {old.shared_user_id or '-'} -> {new.shared_user_id or '-'}")
    added = sorted(set(new.permissions) - set(old.permissions))
    gone = sorted(set(old.permissions) - set(new.permissions))
    if added:
        out.append("permissions added: " + ", ".join(added))
    if gone:
        out.append("permissions removed: " + ", ".join(gone))
    if old.sha256 != new.sha256 and not out:
        out.append("content (SHA-256)")
    return tuple(out)


def diff(old: ScanResult, new: ScanResult) -> BuildDiff:
    """The diff of two scans."""
    old_apps = {app_key(a): a for a in old.apps}
    new_apps = {app_key(a): a for a in new.apps}
    apps = []
    for key in sorted(old_apps.keys() | new_apps.keys()):
        a, b = old_apps.get(key), new_apps.get(key)
        if a is None:
            apps.append(AppChange(key, "added", None, b, ()))
        elif b is None:
            apps.append(AppChange(key, "removed", a, None, ()))
        else:
            what = _app_changes(a, b)
            apps.append(AppChange(key, "changed" if what else "kept", a, b, what))
    old_f = {f.fingerprint: f for f in old.findings}
    new_f = {f.fingerprint: f for f in new.findings}
    changes = []
    for fp in old_f.keys() | new_f.keys():
        a2, b2 = old_f.get(fp), new_f.get(fp)
        if a2 is None:
            status = "added"
        elif b2 is None:
            status = "removed"
        else:
            status = "changed" if a2.severity != b2.severity else "kept"
        changes.append(FindingChange(fp, status, a2, b2))
    order = {"removed": 0, "added": 1, "changed": 2, "kept": 3}
    changes.sort(key=lambda c: (order[c.status], c.finding.sort_key()))
    result = BuildDiff(BuildSide.of(old), BuildSide.of(new), tuple(apps), tuple(changes), "")
    return BuildDiff(result.old, result.new, result.apps, result.findings, headline(result))


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _flow_phrase(f: Finding, with_component: bool) -> str:
    cats = _join([category_name(c) for c in f.category.split("+") if c])
    attrs = dict(f.attributes)
    where = attrs.get("host") or f.target or "an unnamed destination"
    if attrs.get("sink") == "sms":
        where = f"SMS {f.target}" if f.target else "SMS"
    owner = f" ({attrs['owner']})" if "owner" in attrs else ""
    whose = f" in {f.component}" if with_component else ""
    return f"the {cats} to {where}{owner}{whose}"


def _side(verb: str, apps: list[AppChange], flows: list[FindingChange]) -> str:
    """``removes 1 app (x) and its flow of ...`` for one direction."""
    if not apps and not flows:
        return ""
    parts = []
    app_keys = {a.key for a in apps}
    if apps:
        names = _join([a.key for a in apps[:3]]) + (" and others" if len(apps) > 3 else "")
        parts.append(f"{_plural(len(apps), 'app')} ({names})")
    own = [f for f in flows if f.finding.component in app_keys]
    other = [f for f in flows if f.finding.component not in app_keys]
    if own:
        phrases = _join([_flow_phrase(f.finding, len(apps) > 1) for f in own[:3]])
        parts.append(
            f"{'its' if len(apps) == 1 else 'their'} "
            f"{'flow' if len(own) == 1 else 'flows'} of {phrases}"
        )
    if other:
        phrases = _join([_flow_phrase(f.finding, True) for f in other[:3]])
        more = f" and {len(other) - 3} more" if len(other) > 3 else ""
        parts.append(f"{_plural(len(other), 'flow')} of device identifiers: {phrases}{more}")
    return f"{verb} " + " and ".join(parts)


def headline(d: BuildDiff) -> str:
    """The one sentence a reader came for."""

    def flows(status: str) -> list[FindingChange]:
        return [
            f
            for f in d.findings_with(status, Kind.FLOW)
            if dict(f.finding.attributes).get("sink") in HEADLINE_SINKS
        ]

    removed = _side("removes", d.apps_with("removed"), flows("removed"))
    added = _side("adds", d.apps_with("added"), flows("added"))
    label = f"The new build ({d.new.label})"
    if removed and added:
        return f"{label} {removed}; it {added}."
    if removed:
        return f"{label} {removed}; it adds none."
    if added:
        return f"{label} {added}; it removes none."
    gained = len(d.findings_with("added"))
    lost = len(d.findings_with("removed"))
    return (
        f"{label} neither adds nor removes apps or flows of device identifiers to the network "
        f"or SMS; {_plural(gained, 'other finding')} added, {lost} removed."
    )


# -- the batch matrix ---------------------------------------------------------------------


@dataclass(frozen=True)
class MatrixRow:
    """One app, endpoint or flow across the builds."""

    kind: str
    """``app``, ``flow`` or ``endpoint``."""
    key: str
    label: str
    cells: tuple[str, ...]
    """Per build: ``present``, ``absent`` or ``changed`` (present, differing from the first
    build that has it)."""
    notes: tuple[str, ...]
    """Per build: a short text (the app version, the flow's severity)."""
    severity: Severity
    """The most severe finding attached to the row in any build."""

    @property
    def partial(self) -> bool:
        """Present in only some builds."""
        return "absent" in self.cells

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "kind": self.kind,
            "key": self.key,
            "label": self.label,
            "cells": list(self.cells),
            "notes": list(self.notes),
            "severity": self.severity.label,
            "partial": self.partial,
        }


@dataclass(frozen=True)
class Matrix:
    """A batch of builds side by side."""

    builds: tuple[BuildSide, ...]
    rows: tuple[MatrixRow, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (schema ``fwscan.matrix/1``)."""
        return {
            "schema": MATRIX_SCHEMA,
            "builds": [b.to_dict() for b in self.builds],
            "rows": [r.to_dict() for r in self.rows],
        }


_ROW_ORDER = {"app": 0, "flow": 1, "endpoint": 2}


def matrix(results: Sequence[ScanResult]) -> Matrix:
    """Apps, endpoints and identifier flows against builds; partial rows first, the most
    severe of them first."""
    worst: dict[str, Severity] = {}
    for r in results:
        for f in r.findings:
            worst[f.component] = max(worst.get(f.component, Severity.INFO), f.severity)
    rows: list[MatrixRow] = []
    # Apps
    app_maps = [{app_key(a): a for a in r.apps} for r in results]
    for key in sorted(set().union(*app_maps)):
        present = [m.get(key) for m in app_maps]
        first = next(a for a in present if a is not None)
        cells, notes = [], []
        for a in present:
            if a is None:
                cells.append("absent")
                notes.append("")
            else:
                cells.append("changed" if _app_changes(first, a) else "present")
                notes.append(a.version_name or a.version_code)
        rows.append(
            MatrixRow("app", key, key, tuple(cells), tuple(notes), worst.get(key, Severity.INFO))
        )
    # Flows and endpoints, by fingerprint
    for kind in (Kind.FLOW, Kind.ENDPOINT):
        maps = [{f.fingerprint: f for f in r.findings if f.kind is kind} for r in results]
        for fp in set().union(*maps):
            present_f = [m.get(fp) for m in maps]
            first_f = next(f for f in present_f if f is not None)
            cells = [
                "absent"
                if f is None
                else ("changed" if f.severity != first_f.severity else "present")
                for f in present_f
            ]
            notes = ["" if f is None else f.severity.label for f in present_f]
            if kind is Kind.FLOW:
                label = f"{first_f.component}: {_flow_phrase(first_f, False)}"
            else:
                label = f"{first_f.target} ({first_f.component})"
            severity = max(f.severity for f in present_f if f is not None)
            rows.append(MatrixRow(kind.value, fp, label, tuple(cells), tuple(notes), severity))
    rows.sort(key=lambda r: (not r.partial, -r.severity, _ROW_ORDER[r.kind], r.label))
    return Matrix(tuple(BuildSide.of(r) for r in results), tuple(rows))

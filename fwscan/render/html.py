"""Self-contained HTML reports of a scan, a build diff and a batch matrix.

Each renderer returns one HTML document with its CSS and JavaScript inline: it makes no network
request (a Content-Security-Policy forbids any, and allows only the page's own script and style
by their SHA-256), opens from ``file://``, prints with every collapsed section expanded, and
works with a keyboard and a screen reader (tables with captions and scoped headers, headings in
order, landmarks, severity written as text).

Every string that comes from the firmware (labels, paths, URLs, build properties, file names) is
escaped by Jinja2's autoescaping and never marked safe; the templates never put such a string
into a script, a style, an ``href``, an ``id`` or an event handler. The only markup marked safe
is the report's own script and style, written in ``base.html.j2``.

The output depends only on the objects given and on ``generated`` (the date the CLI passes): the
same inputs give the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from fwscan import __version__
from fwscan.assess import PRIVILEGED_UIDS, category_name
from fwscan.compare import (
    HEADLINE_SINKS,
    AppChange,
    BuildDiff,
    FindingChange,
    Matrix,
    app_key,
)
from fwscan.findings import KIND_ORDER, Evidence, Finding, Kind, Severity
from fwscan.scanresult import AppRecord, ScanResult

SEVERITIES = tuple(sorted(Severity, reverse=True))
"""Most severe first, as the reports list them."""

KIND_TITLES = {
    Kind.FLOW: "Flows of identifiers",
    Kind.READ: "Identifier reads",
    Kind.SINK: "Sinks",
    Kind.ENDPOINT: "Endpoints",
    Kind.NATIVE: "Native code",
    Kind.SERVICE: "Init services",
    Kind.PERMISSION: "Permission grants",
    Kind.PRIVILEGE: "Privileged context",
}
"""Section titles of the finding kinds, in :data:`~fwscan.findings.KIND_ORDER`."""

CELL_SYMBOLS = {"present": "\u2714", "absent": "\u2718", "changed": "\u0394"}
"""The symbol shown (next to the word) in a matrix cell."""

MAX_SUMMARY_DOMAINS = 24
"""Unlisted domains named in the summary; the endpoint table has them all."""


def csp_hash(text: str) -> str:
    """The CSP source expression allowing exactly this inline script or style."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def category_names(category: str) -> str:
    """``imei+iccid`` as a reader says it: ``IMEI, ICCID (SIM serial)``."""
    return ", ".join(category_name(c) for c in category.split("+") if c)


def human_size(size: int) -> str:
    """``104806`` as ``104,806 bytes (102.3 KiB)``."""
    text = f"{size:,} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return text if size < 1024 else f"{text} ({value:.1f} {unit})"
    return text  # pragma: no cover


def offset_text(evidence: Evidence) -> str:
    """An evidence offset with its unit: DEX code units (as dexdump prints them) or bytes."""
    if evidence.offset is None:
        return ""
    if evidence.class_name is not None:
        return f"{evidence.offset:#06x} ({evidence.offset} code units)"
    return f"{evidence.offset:#x} ({evidence.offset} bytes)"


def by_keys(items: Iterable[Mapping[str, Any]], *keys: str) -> list[Mapping[str, Any]]:
    """Records read from JSON (components, certificates) in a stable order, missing keys
    sorting as empty."""
    return sorted(items, key=lambda d: tuple(str(d.get(k, "")) for k in keys))


def attribute(finding: Finding, key: str) -> str:
    """One attribute of a finding, empty when absent."""
    return dict(finding.attributes).get(key, "")


def privilege_reasons(app: AppRecord) -> tuple[str, ...]:
    """Why an app runs with privileges (or is signed with a key a reader should know)."""
    out = []
    if app.placement.endswith("priv-app"):
        out.append("in a priv-app folder")
    if app.shared_user_id in PRIVILEGED_UIDS:
        out.append(f"system shared user {app.shared_user_id}")
    flags = {flag for cert in app.certificates for flag in cert.get("flags", ())}
    if "platform_key" in flags:
        out.append("signed with the platform key")
    if "aosp_test_key" in flags:
        out.append("signed with a public AOSP test key")
    if app.privileged and not out:
        out.append("privileged")
    return tuple(out)


# -- view models ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Party:
    """Who runs an endpoint, from the endpoint rule that matched it."""

    owner: str
    country: str
    purpose: str

    @property
    def listed(self) -> bool:
        """Whether an endpoint rule names the owner."""
        return bool(self.owner)


@dataclass(frozen=True)
class FlowView:
    """A flow finding with the reader's context."""

    finding: Finding
    anchor: str
    """The ``id`` of the component's section."""
    app_label: str
    party: Party


@dataclass(frozen=True)
class EndpointGroup:
    """The listed endpoints of one owner and country."""

    owner: str
    country: str
    severity: Severity
    purposes: tuple[str, ...]
    hosts: tuple[str, ...]
    components: tuple[str, ...]
    cleartext: bool


@dataclass(frozen=True)
class ComponentView:
    """An app, or another component (native file, configuration file), with its findings."""

    name: str
    anchor: str
    findings: tuple[Finding, ...]
    app: AppRecord | None
    reasons: tuple[str, ...]

    @property
    def worst(self) -> Severity | None:
        """The most severe finding's severity."""
        return max((f.severity for f in self.findings), default=None)


@dataclass(frozen=True)
class ScanView:
    """What the scan template shows, computed once and in a fixed order."""

    result: ScanResult
    severity_counts: tuple[tuple[Severity, int], ...]
    kind_counts: tuple[tuple[Kind, int], ...]
    findings: tuple[Finding, ...]
    outward_flows: tuple[FlowView, ...]
    flows: tuple[FlowView, ...]
    endpoint_groups: tuple[EndpointGroup, ...]
    unlisted_domains: tuple[str, ...]
    endpoints: tuple[tuple[Finding, Party], ...]
    privileged: tuple[ComponentView, ...]
    apps: tuple[ComponentView, ...]
    others: tuple[ComponentView, ...]
    anchors: dict[str, str]
    """Component name to the ``id`` of its section."""


def _party_index(findings: Iterable[Finding]) -> dict[str, Party]:
    """Listed endpoint hosts and who runs them."""
    out: dict[str, Party] = {}
    for f in sorted(findings, key=Finding.sort_key):
        attrs = dict(f.attributes)
        if f.kind is Kind.ENDPOINT and attrs.get("owner"):
            party = Party(attrs["owner"], attrs.get("country", ""), attrs.get("purpose", ""))
            out.setdefault(f.target, party)
    return out


def _flow_party(f: Finding, index: dict[str, Party]) -> Party:
    attrs = dict(f.attributes)
    host = attrs.get("host", "")
    if host in index:
        return index[host]
    return Party(attrs.get("owner", ""), "", "")


def _scan_view(result: ScanResult) -> ScanView:
    findings = tuple(sorted(result.findings, key=Finding.sort_key))
    by_component: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_component[f.component].append(f)

    # A component ranks where its weightiest finding ranks among all findings (most severe,
    # flows first, known endpoints first); components without findings come last.
    rank: dict[str, int] = {}
    for i, f in enumerate(findings):
        rank.setdefault(f.component, i)

    def worst_first(view: ComponentView) -> tuple[int, str, str]:
        return (
            rank.get(view.name, len(findings)),
            view.name,
            view.app.path if view.app else "",
        )

    apps = sorted(
        (
            ComponentView(
                app_key(a), "", tuple(by_component.get(app_key(a), ())), a, privilege_reasons(a)
            )
            for a in result.apps
        ),
        key=worst_first,
    )
    apps = [
        ComponentView(v.name, f"app-{i}", v.findings, v.app, v.reasons)
        for i, v in enumerate(apps, 1)
    ]
    anchors: dict[str, str] = {}
    for v in apps:
        anchors.setdefault(v.name, v.anchor)
    others = sorted(
        (
            ComponentView(name, "", tuple(items), None, ())
            for name, items in by_component.items()
            if name not in anchors
        ),
        key=worst_first,
    )
    others = [
        ComponentView(v.name, f"component-{i}", v.findings, None, ())
        for i, v in enumerate(others, 1)
    ]
    for v in others:
        anchors[v.name] = v.anchor
    labels = {app_key(a): a.label for a in sorted(result.apps, key=lambda a: a.path)}

    index = _party_index(findings)
    flows = tuple(
        FlowView(f, anchors[f.component], labels.get(f.component, ""), _flow_party(f, index))
        for f in findings
        if f.kind is Kind.FLOW
    )
    outward = tuple(v for v in flows if attribute(v.finding, "sink") in HEADLINE_SINKS)

    groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    unlisted: set[str] = set()
    endpoints = []
    for f in findings:
        if f.kind is not Kind.ENDPOINT:
            continue
        attrs = dict(f.attributes)
        party = Party(attrs.get("owner", ""), attrs.get("country", ""), attrs.get("purpose", ""))
        endpoints.append((f, party))
        if party.listed:
            groups[(party.owner, party.country)].append(f)
        else:
            unlisted.add(f.target)
    endpoint_groups = sorted(
        (
            EndpointGroup(
                owner=owner,
                country=country,
                severity=max(f.severity for f in items),
                purposes=tuple(sorted({attribute(f, "purpose") for f in items} - {""})),
                hosts=tuple(sorted({f.target for f in items})),
                components=tuple(sorted({f.component for f in items})),
                cleartext=any(attribute(f, "cleartext") == "true" for f in items),
            )
            for (owner, country), items in groups.items()
        ),
        key=lambda g: (-g.severity, g.owner, g.country),
    )
    counts = result.summary()
    return ScanView(
        result=result,
        severity_counts=tuple(
            (s, counts["findings_by_severity"].get(s.label, 0)) for s in SEVERITIES
        ),
        kind_counts=tuple((k, counts["findings_by_kind"].get(k.value, 0)) for k in KIND_ORDER),
        findings=findings,
        outward_flows=outward,
        flows=flows,
        endpoint_groups=tuple(endpoint_groups),
        unlisted_domains=tuple(sorted(unlisted)),
        endpoints=tuple(endpoints),
        privileged=tuple(v for v in apps if v.reasons),
        apps=tuple(apps),
        others=tuple(others),
        anchors=anchors,
    )


@dataclass(frozen=True)
class KindSection:
    """The finding changes of one kind in a diff."""

    kind: Kind
    title: str
    changes: tuple[FindingChange, ...]
    """Added, removed and changed."""
    kept: tuple[FindingChange, ...]


def _kind_sections(d: BuildDiff) -> tuple[KindSection, ...]:
    order = {"removed": 0, "added": 1, "changed": 2, "kept": 3}

    def key(c: FindingChange) -> tuple[object, ...]:
        return (order[c.status], *c.finding.sort_key(), c.fingerprint)

    out = []
    for kind in KIND_ORDER:
        items = sorted((c for c in d.findings if c.finding.kind is kind), key=key)
        out.append(
            KindSection(
                kind,
                KIND_TITLES[kind],
                tuple(c for c in items if c.status != "kept"),
                tuple(c for c in items if c.status == "kept"),
            )
        )
    return tuple(out)


def _apps(d: BuildDiff, status: str) -> tuple[AppChange, ...]:
    return tuple(sorted(d.apps_with(status), key=lambda a: a.key))


# -- rendering -----------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("fwscan", "render/templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["csp_hash"] = csp_hash
    env.filters["categories"] = category_names
    env.filters["human_size"] = human_size
    env.filters["offset"] = offset_text
    env.filters["attr_of"] = attribute
    env.filters["by_keys"] = by_keys
    env.globals["SEVERITIES"] = SEVERITIES
    env.globals["CELL_SYMBOLS"] = CELL_SYMBOLS
    env.globals["tool_version"] = __version__
    return env


_ENV = _environment()


def render_scan(result: ScanResult, *, generated: str) -> str:
    """The HTML report of one scan."""
    return _ENV.get_template("scan.html.j2").render(v=_scan_view(result), generated=generated)


def render_diff(diff: BuildDiff, *, generated: str) -> str:
    """The HTML report of a build diff, its headline first."""
    return _ENV.get_template("diff.html.j2").render(
        d=diff,
        counts=diff.counts(),
        kinds=_kind_sections(diff),
        added=_apps(diff, "added"),
        removed=_apps(diff, "removed"),
        changed=_apps(diff, "changed"),
        kept=_apps(diff, "kept"),
        count_rows=("apps", *(k.value for k in KIND_ORDER)),
        generated=generated,
    )


def render_matrix(m: Matrix, *, generated: str) -> str:
    """The HTML report of a batch matrix: builds as columns, rows present in only some first."""
    return _ENV.get_template("matrix.html.j2").render(
        mx=m,
        partial=sum(1 for r in m.rows if r.partial),
        generated=generated,
    )

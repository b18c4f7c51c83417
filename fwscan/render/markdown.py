"""Short Markdown summaries of a scan and of a build diff, to paste into a ticket.

A scan summary gives the build identity, the counts by severity, the identifier flows to the
network or by SMS first (a table), the other flows, then the endpoints by owner. A diff summary
starts with the diff's headline, then the two builds side by side, the apps added, removed and
changed, and the findings added and removed per kind. Long lists are cut at :data:`MAX_ROWS`
rows with a line saying how many were left out (the JSON and HTML outputs have them all).

Everything that came from the firmware (app labels and packages, paths, URLs, host names,
titles, build properties) goes through :func:`md`, which backslash-escapes the characters
Markdown and GitHub give a meaning to (``\\ ` * _ [ ] < > | & ~ $``) and turns line breaks and
other control characters into spaces (or U+FFFD), so it cannot end a table cell or row, open a
link, an image or an HTML tag, or start a heading. A bare ``http://`` URL stays plain text,
which GitHub's autolink extension may still show as a link to that same URL.

Output is deterministic: the order of the scan and the diff, no dates.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from fwscan.assess import category_name
from fwscan.compare import AppChange, BuildDiff, BuildSide, FindingChange
from fwscan.findings import KIND_ORDER, Finding, Kind, Severity
from fwscan.model import BuildIdentity, Status
from fwscan.scanresult import AppRecord, ScanResult

__all__ = ["MAX_ROWS", "md", "render_diff_md", "render_scan_md"]

MAX_ROWS = 25
"""Rows of one table (or items of one list) before the rest is summarised in one line."""
_SPECIAL = frozenset("\\`*_[]<>|&~$")
_LINE_BREAKS = frozenset("\r\n\t\v\f\x85\u2028\u2029")
_SEVERITIES = tuple(reversed(Severity))
"""Most severe first."""
_HEADLINE_SINKS = ("network", "sms")


def md(text: str) -> str:
    """Text from the firmware made inert in Markdown (inline and inside a table cell)."""
    out = []
    for ch in text:
        if ch in _SPECIAL:
            out.append("\\" + ch)
        elif ch in _LINE_BREAKS:
            out.append(" ")
        elif ch.isprintable():
            out.append(ch)
        elif unicodedata.category(ch) == "Zs":
            out.append(" ")
        else:
            out.append("\ufffd")
    return "".join(out)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], what: str) -> list[str]:
    """A GFM table; cells must already be escaped. Cut at :data:`MAX_ROWS` rows."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows[:MAX_ROWS]:
        lines.append("| " + " | ".join(cell or " " for cell in row) + " |")
    lines.append("")
    if len(rows) > MAX_ROWS:
        lines += [f"... and {len(rows) - MAX_ROWS} more {what}.", ""]
    return lines


def _counts_line(by_severity: dict[str, int]) -> str:
    parts = [f"{by_severity[s.label]} {s.label}" for s in _SEVERITIES if s.label in by_severity]
    return ", ".join(parts) if parts else "none"


def _identifiers(f: Finding) -> str:
    return md(", ".join(category_name(c) for c in f.category.split("+") if c))


def _attr(f: Finding, key: str) -> str:
    return dict(f.attributes).get(key, "")


def _build_name(build: BuildIdentity, fallback: str) -> str:
    model = build.model or build.device
    name = " ".join(p for p in (model, build.display_id or build.incremental) if p)
    return name or fallback


# -- scan ----------------------------------------------------------------------------------


def _identity_rows(result: ScanResult) -> list[list[str]]:
    b, i = result.build, result.input
    maker = ", ".join(p for p in (b.brand, b.manufacturer) if p)
    return [
        ["Model", md(f"{b.model or '-'}" + (f" ({maker})" if maker else ""))],
        ["Device", md(b.device or "-")],
        [
            "Build",
            md(b.display_id or "-")
            + (f" (incremental {md(b.incremental)})" if b.incremental else ""),
        ],
        ["Fingerprint", md(b.fingerprint or "-")],
        [
            "Android",
            md(
                f"{b.release or '-'} (SDK {b.sdk or '-'}), security patch {b.security_patch or '-'}"
            ),
        ],
        ["Input", md(f"{i.name} ({i.format}, {i.size} bytes)")],
        ["Input SHA-256", md(i.sha256 or "-")],
        [
            "Scanned with",
            md(
                f"fwscan {result.tool_version}, signatures {result.signatures_version} "
                f"({result.signatures_sha256[:12]})"
            ),
        ],
    ]


def _flow_rows(flows: Iterable[Finding]) -> list[list[str]]:
    """Rows of network and SMS flows: where the identifiers go and whose server it is."""
    rows = []
    for f in flows:
        owner = md(_attr(f, "owner") or "-")
        if _attr(f, "cleartext"):
            owner += " (clear text)"
        rows.append(
            [
                f.severity.label,
                md(f.component),
                _identifiers(f),
                "SMS" if _attr(f, "sink") == "sms" else "network",
                md(f.target or _attr(f, "host") or "-"),
                owner,
            ]
        )
    return rows


def _other_flow_rows(flows: Iterable[Finding]) -> list[list[str]]:
    """Rows of log, file and IPC flows."""
    return [
        [
            f.severity.label,
            md(f.component),
            _identifiers(f),
            md(_attr(f, "sink") or "-"),
            md(f.target or _attr(f, "tags") or "-"),
        ]
        for f in flows
    ]


def render_scan_md(result: ScanResult) -> str:
    """A short Markdown summary of a scan (see the module docstring)."""
    name = _build_name(result.build, result.input.name)
    lines = [f"# fwscan scan: {md(name)}", ""]
    lines += _table(["", "Build"], _identity_rows(result), "rows")
    summary = result.summary()
    lines += [
        f"**Findings:** {_counts_line(summary['findings_by_severity'])} "
        f"({len(result.findings)} in all; {len(result.apps)} apps, {result.files} files).",
        "",
    ]
    sev_header = [s.label for s in _SEVERITIES]
    sev_row = [str(summary["findings_by_severity"].get(s, 0)) for s in sev_header]
    lines += _table(sev_header, [sev_row], "rows")

    flows = [f for f in result.findings if f.kind is Kind.FLOW]
    out_flows = [f for f in flows if _attr(f, "sink") in _HEADLINE_SINKS]
    other_flows = [f for f in flows if _attr(f, "sink") not in _HEADLINE_SINKS]
    lines += ["## Identifiers sent over the network or by SMS", ""]
    if out_flows:
        lines += _table(
            ["Severity", "App", "Identifiers", "Sink", "Destination", "Owner"],
            _flow_rows(out_flows),
            "flows",
        )
    else:
        lines += ["None found.", ""]
    if other_flows:
        lines += ["## Other identifier flows", ""]
        lines += _table(
            ["Severity", "App", "Identifiers", "Sink", "Target"],
            _other_flow_rows(other_flows),
            "flows",
        )

    lines += _endpoint_section(result.findings)

    failed = [c for c in result.coverage if c.status is Status.FAILED]
    if failed or result.errors:
        lines += ["## Not analysed", ""]
        for c in failed[:MAX_ROWS]:
            lines.append(f"- could not read {md(c.source)} ({md(c.format)}): {md(c.reason)}")
        for e in result.errors[:MAX_ROWS]:
            lines.append(f"- {md(e.path)}: {md(e.reason)}, {md(e.message)}")
        hidden = max(0, len(failed) - MAX_ROWS) + max(0, len(result.errors) - MAX_ROWS)
        if hidden:
            lines.append(f"- ... and {hidden} more.")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _endpoint_section(findings: Iterable[Finding]) -> list[str]:
    endpoints = [f for f in findings if f.kind is Kind.ENDPOINT]
    known = [f for f in endpoints if _attr(f, "owner")]
    unlisted = [f for f in endpoints if not _attr(f, "owner")]
    lines = ["## Endpoints by owner", ""]
    if not endpoints:
        return [*lines, "None found.", ""]
    known.sort(key=lambda f: (_attr(f, "owner"), -f.severity, f.target, f.component))
    rows = [
        [
            md(_attr(f, "owner")),
            md(_attr(f, "country")),
            md(_attr(f, "purpose") or f.category),
            md(f.target) + (" (clear text)" if _attr(f, "cleartext") else ""),
            md(f.component),
            f.severity.label,
        ]
        for f in known
    ]
    if rows:
        lines += _table(
            ["Owner", "Country", "Purpose", "Host", "Found in", "Severity"], rows, "endpoints"
        )
    if unlisted:
        hosts: dict[str, list[str]] = {}
        for f in unlisted:
            hosts.setdefault(f.target, []).append(f.component)
        items = [
            f"{md(host)} ({md(', '.join(sorted(set(apps))))})"
            for host, apps in sorted(hosts.items())
        ]
        more = f"; and {len(items) - MAX_ROWS} more" if len(items) > MAX_ROWS else ""
        lines += [
            f"Hosts no endpoint rule lists ({len(items)}): " + "; ".join(items[:MAX_ROWS]) + more,
            "",
        ]
    return lines


# -- diff ----------------------------------------------------------------------------------


def _side_rows(old: BuildSide, new: BuildSide) -> list[list[str]]:
    def both(label: str, a: str, b: str) -> list[str]:
        return [label, md(a or "-"), md(b or "-")]

    ob, nb = old.build, new.build
    return [
        both("Build", ob.display_id or ob.incremental, nb.display_id or nb.incremental),
        both("Model", ob.model, nb.model),
        both("Fingerprint", ob.fingerprint, nb.fingerprint),
        both("Security patch", ob.security_patch, nb.security_patch),
        both("Input", old.input.name, new.input.name),
        both("Input SHA-256", old.input.sha256, new.input.sha256),
        both(
            "Findings",
            _counts_line(old.summary.get("findings_by_severity", {})),
            _counts_line(new.summary.get("findings_by_severity", {})),
        ),
        both("Apps", str(old.summary.get("apps", "")), str(new.summary.get("apps", ""))),
    ]


def _app_row(app: AppRecord | None, key: str) -> list[str]:
    if app is None:
        return [md(key), "-", "-", "-", "-"]
    version = app.version_name or app.version_code
    return [
        md(key),
        md(app.label or "-"),
        md(app.path),
        md(version or "-"),
        "yes" if app.privileged else "no",
    ]


def _apps_section(d: BuildDiff) -> list[str]:
    added, removed = d.apps_with("added"), d.apps_with("removed")
    changed = d.apps_with("changed")
    lines = [
        "## Apps",
        "",
        f"{len(added)} added, {len(removed)} removed, {len(changed)} changed, "
        f"{len(d.apps_with('kept'))} unchanged.",
        "",
    ]
    header = ["App", "Label", "Path", "Version", "Privileged"]
    for title, items, which in (("Added", added, "new"), ("Removed", removed, "old")):
        if items:
            lines += [f"### {title} apps", ""]
            lines += _table(header, [_app_row(_pick(a, which), a.key) for a in items], "apps")
    if changed:
        lines += ["### Changed apps", ""]
        rows = [[md(a.key), md("; ".join(a.changes))] for a in changed]
        lines += _table(["App", "Changes"], rows, "apps")
    return lines


def _pick(change: AppChange, which: str) -> AppRecord | None:
    return change.new if which == "new" else change.old


def _finding_rows(changes: Sequence[FindingChange]) -> list[list[str]]:
    return [
        [c.finding.severity.label, md(c.finding.component), md(c.finding.title)] for c in changes
    ]


def _findings_section(d: BuildDiff) -> list[str]:
    counts = d.counts()
    kinds = [k for k in KIND_ORDER if k.value in counts]
    lines = ["## Findings", ""]
    if not kinds:
        return [*lines, "No findings in either build.", ""]
    statuses = ("added", "removed", "changed", "kept")
    rows = [[k.value, *(str(counts[k.value].get(s, 0)) for s in statuses)] for k in kinds]
    lines += _table(["Kind", "Added", "Removed", "Severity changed", "Kept"], rows, "kinds")
    for status, title in (("added", "Added"), ("removed", "Removed")):
        for kind in kinds:
            items = d.findings_with(status, kind)
            if items:
                lines += [f"### {title}: {kind.value} ({len(items)})", ""]
                lines += _table(
                    ["Severity", "Component", "Finding"], _finding_rows(items), "findings"
                )
    changed = d.findings_with("changed")
    if changed:
        lines += ["### Severity changed", ""]
        rows = [
            [
                md(c.finding.component),
                md(c.finding.title),
                c.old.severity.label if c.old else "-",
                c.new.severity.label if c.new else "-",
            ]
            for c in changed
        ]
        lines += _table(["Component", "Finding", "Old", "New"], rows, "findings")
    return lines


def render_diff_md(diff: BuildDiff) -> str:
    """A short Markdown summary of a build diff: the headline first (see the module
    docstring)."""
    lines = [
        f"# fwscan diff: {md(diff.old.label)} -> {md(diff.new.label)}",
        "",
        md(diff.headline),
        "",
    ]
    lines += _table(["", "Old", "New"], _side_rows(diff.old, diff.new), "rows")
    lines += _apps_section(diff)
    lines += _findings_section(diff)
    return "\n".join(lines).rstrip("\n") + "\n"

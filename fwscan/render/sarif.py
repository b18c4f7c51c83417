"""SARIF 2.1.0 output of a scan, for CI systems and code-scanning dashboards.

One run; the driver ``fwscan`` lists one rule (``reportingDescriptor``) per signature rule of
the set (every source, sink, endpoint and native rule, in the set's order), then the rules
fwscan's policy names findings after that are not signature ids (``read.<category>``,
``flow.<sink kind>``, ``sink.sms``, ``endpoint.unlisted``, ``privilege.app``,
``permission.privapp-grant``, ``permission.default-grant``, ``native.network-functions``,
``service.network-binary``, see :data:`SYNTHETIC_RULES`), sorted by id. Only the synthetic rules
some finding uses are listed; a finding whose rule is in neither (a scan made with another
signature set) gets a generic rule, so every ``ruleIndex`` points at its rule.

Levels: critical and high are ``error``, medium ``warning``, low and info ``note``. Each rule
carries ``properties.security-severity`` for GitHub code scanning (critical 9.5, high 8.0,
medium 5.5, low 2.0; none for info rules, which are not security findings) written as a
*string* holding the number: GitHub refuses a JSON number there ("expected string").

Locations. A finding's evidence names a device path, with an inner file after ``!``
(``/system/priv-app/X/X.apk!classes.dex``). :func:`artifact_uri` maps it to a relative URI
reference against the base id ``FIRMWARE`` (the root of the device's file system, described
in ``run.originalUriBaseIds`` without a ``uri``: there is no absolute URI for it): the leading
``/`` is dropped, ``/`` and ``!`` are kept, every other byte outside the URI *unreserved* set
is percent-encoded from UTF-8 (undecodable names from the image keep their raw bytes), and the
dots of a ``.`` or ``..`` segment are encoded too (``%2E``), so a hostile inner name cannot
climb out of the base. The result is ``system/priv-app/X/X.apk!classes.dex``; decoding the
percent escapes and prefixing ``/`` gives the device path back.

The first piece of evidence (for a flow: the first sink call) is the result's location, the
others are ``relatedLocations``; each has its evidence detail as message and, for DEX code, a
``logicalLocation`` of kind ``function`` named ``Lcom/x/Y;->method(desc)``. Regions only where
SARIF defines them: an ELF offset is a file byte offset (``region.byteOffset``); a line of an
init script is ``region.startLine``; a DEX offset counts 16-bit code units from the method's
first instruction, which no SARIF region expresses, so it goes into the location's
``properties.dexCodeUnitOffset``.

``partialFingerprints["fwscan/v1"]`` is the finding's fingerprint (stable across builds).
Result properties keep what SARIF has no field for (severity, kind, category, target,
library, component, attributes); ``run.properties`` holds the build identity, the input file
and the signature set. Artifacts whose analysis failed and containers that could not be read
are ``toolExecutionNotifications`` of the one invocation.

Text from the firmware reaches SARIF messages, where ``[text](target)`` is an embedded link:
square brackets and backslashes in messages are backslash-escaped (SARIF §3.11.6), so no
firmware string becomes a link. Output is deterministic: ``sort_keys``, ASCII-only JSON, lists
in the scan's order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fwscan.assess import category_name
from fwscan.findings import Evidence, Finding, Kind, Severity
from fwscan.model import Status
from fwscan.rules import SINK_KINDS, SOURCE_CATEGORIES, SignatureSet
from fwscan.scanresult import ScanResult
from fwscan.signatures import describe

__all__ = [
    "FINGERPRINT_KEY",
    "SARIF_SCHEMA_URI",
    "SARIF_VERSION",
    "SECURITY_SEVERITY",
    "SYNTHETIC_RULES",
    "URI_BASE_ID",
    "RuleText",
    "artifact_uri",
    "escape_message",
    "level",
    "render_sarif",
    "sarif_log",
]

SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
URI_BASE_ID = "FIRMWARE"
"""The ``uriBaseId`` of every artifact location: the root of the device's file system."""
FINGERPRINT_KEY = "fwscan/v1"
"""The ``partialFingerprints`` key holding :attr:`~fwscan.findings.Finding.fingerprint`."""

_LEVELS = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "2.0",
}
"""GitHub's ``security-severity`` score of a rule's default severity (over 9.0 critical, 7.0 to
8.9 high, 4.0 to 6.9 medium, 0.1 to 3.9 low); info rules have none."""


def level(severity: Severity) -> str:
    """The SARIF ``level`` of a severity."""
    return _LEVELS[severity]


@dataclass(frozen=True)
class RuleText:
    """What a rule that is not a signature rule says, and its default severity."""

    short: str
    full: str
    severity: Severity
    kind: str
    """The finding kind it names (``read``, ``flow``...)."""


_FLOW_TEXT = {
    "network": (
        "Device identifier sent over the network",
        "Data read from an identifier or location API reaches a network call (HTTP, socket, "
        "WebView). High; critical when the endpoint rule says so; medium when only library "
        "code does it.",
        Severity.HIGH,
    ),
    "sms": (
        "Device identifier sent by SMS",
        "Data read from an identifier or location API reaches an SMS-sending call. High; "
        "medium when only library code does it.",
        Severity.HIGH,
    ),
    "log": (
        "Device identifier written to the system log",
        "Data read from an identifier or location API reaches a logging call, where other apps "
        "with log access or bug reports can read it. Medium.",
        Severity.MEDIUM,
    ),
    "file": (
        "Device identifier written to a file",
        "Data read from an identifier or location API reaches a file write. Low.",
        Severity.LOW,
    ),
    "ipc": (
        "Device identifier passed to other apps",
        "Data read from an identifier or location API reaches an inter-process call (intent, "
        "broadcast, content provider). Low.",
        Severity.LOW,
    ),
}
"""``flow.<kind>``: mirrors the flow policy of :mod:`fwscan.assess` (documented in the README)."""

_FIXED_RULES = {
    "sink.sms": RuleText(
        "Sends SMS messages",
        "The code calls an SMS-sending API (with no identifier found reaching it). Medium; "
        "low when only library code does it.",
        Severity.MEDIUM,
        "sink",
    ),
    "endpoint.unlisted": RuleText(
        "Names a host no endpoint rule lists",
        "A URL, host name or IP address in the code or data that no endpoint rule of the "
        "signature set knows; hosts are grouped by registrable domain. Info; low in clear text.",
        Severity.INFO,
        "endpoint",
    ),
    "privilege.app": RuleText(
        "App runs with privileges",
        "The app is in a priv-app folder, runs as a system shared user, or is signed with the "
        "platform key: what it reads and sends, it does with system privileges. Info.",
        Severity.INFO,
        "privilege",
    ),
    "permission.privapp-grant": RuleText(
        "Privileged permission granted by the configuration",
        "A privapp-permissions file grants a privileged permission to an app. Info.",
        Severity.INFO,
        "permission",
    ),
    "permission.default-grant": RuleText(
        "Runtime permission granted by default",
        "A default-permissions file grants a runtime permission to an app without asking the "
        "user. Low.",
        Severity.LOW,
        "permission",
    ),
    "native.network-functions": RuleText(
        "Native code imports network functions",
        "An ELF file imports socket, DNS or TLS functions (the native rules of category "
        "network). Info.",
        Severity.INFO,
        "native",
    ),
    "service.network-binary": RuleText(
        "Init service starts a binary with network code",
        "An init script starts, as a service, a binary that imports network functions or names "
        "external hosts. Low.",
        Severity.LOW,
        "service",
    ),
}


def _synthetic_rules() -> dict[str, RuleText]:
    out: dict[str, RuleText] = {}
    for cat in SOURCE_CATEGORIES:
        name = category_name(cat)
        out[f"read.{cat}"] = RuleText(
            f"Reads the {name}",
            f"The code calls an API that returns the {name} (the source rules of category "
            f"{cat}); one result per app, with every call site as evidence. Reading is not "
            "sending: see the flow.* rules. The read takes its rules' severity; low when only "
            "library code reads.",
            Severity.LOW,
            "read",
        )
    for kind in SINK_KINDS:
        short, full, severity = _FLOW_TEXT[kind]
        out[f"flow.{kind}"] = RuleText(short, full, severity, "flow")
    out.update(_FIXED_RULES)
    return out


SYNTHETIC_RULES: dict[str, RuleText] = _synthetic_rules()
"""The documented rule ids of findings that are not signature ids, with their texts. The
default severity of ``read.<category>`` is refined from the signature set (the most severe
source rule of the category)."""


# -- text and URIs -------------------------------------------------------------------------


def escape_message(text: str) -> str:
    """Plain text made safe for a SARIF message: ``\\``, ``[`` and ``]`` are backslash-escaped,
    so no embedded link (``[text](target)``, SARIF §3.11.6) can come from the firmware."""
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def artifact_uri(device_path: str) -> str:
    """The relative URI reference (against :data:`URI_BASE_ID`) of an evidence artifact.

    ``/system/priv-app/X/X.apk!classes.dex`` -> ``system/priv-app/X/X.apk!classes.dex``;
    ``/vendor/a b/ü:x`` -> ``vendor/a%20b/%C3%BC%3Ax``. See the module docstring.
    """
    segments = []
    for segment in device_path.lstrip("/").split("/"):
        raw = segment.encode("utf-8", "surrogateescape")
        if segment in (".", ".."):
            segments.append("%2E" * len(segment))
        else:
            segments.append(quote(raw, safe="!"))
    return "/".join(segments)


# -- rules ---------------------------------------------------------------------------------


def _descriptor(
    rule_id: str,
    short: str,
    full: str,
    severity: Severity,
    tags: Iterable[str],
    references: tuple[str, ...] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    properties: dict[str, Any] = {"tags": sorted(set(tags)), "severity": severity.label}
    if severity in SECURITY_SEVERITY:
        properties["security-severity"] = SECURITY_SEVERITY[severity]
    if extra:
        properties.update(extra)
    help_text = full
    if references:
        help_text += "\n\nReferences:\n" + "\n".join(f"- {r}" for r in references)
    out: dict[str, Any] = {
        "id": rule_id,
        "shortDescription": {"text": short},
        "fullDescription": {"text": full},
        "help": {"text": help_text},
        "defaultConfiguration": {"level": level(severity)},
        "properties": properties,
    }
    if references:
        out["helpUri"] = references[0]
    return out


def _signature_rules(sigset: SignatureSet) -> list[dict[str, Any]]:
    summaries = {row["id"]: row["summary"] for row in describe(sigset)}
    out = []
    for api in (*sigset.sources, *sigset.sinks):
        extra: dict[str, Any] = {"family": api.role, "category": api.category}
        if api.permission:
            extra["permission"] = api.permission
        out.append(
            _descriptor(
                api.id,
                f"{api.role.capitalize()} API, {summaries[api.id]}",
                api.description,
                api.severity,
                ("security", "privacy", api.role, api.category),
                api.references,
                extra,
            )
        )
    for ep in sigset.endpoints:
        out.append(
            _descriptor(
                ep.id,
                f"Known server, {summaries[ep.id]}",
                ep.description,
                ep.severity,
                ("security", "privacy", "endpoint", ep.purpose),
                ep.references,
                {
                    "family": "endpoint",
                    "domains": list(ep.domains),
                    "owner": ep.owner,
                    "country": ep.country,
                    "purpose": ep.purpose,
                },
            )
        )
    for nat in sigset.native:
        out.append(
            _descriptor(
                nat.id,
                f"Native {summaries[nat.id]}",
                nat.description,
                nat.severity,
                ("security", "privacy", "native", nat.category),
                nat.references,
                {"family": "native", "category": nat.category, "pattern": nat.pattern},
            )
        )
    return out


def _other_rules(
    findings: Iterable[Finding], sigset: SignatureSet, known: set[str]
) -> list[dict[str, Any]]:
    """The rules of findings that are not signature rules, sorted by id."""
    used: dict[str, Severity] = {}
    kinds: dict[str, Kind] = {}
    for f in findings:
        if f.rule not in known:
            used[f.rule] = max(used.get(f.rule, Severity.INFO), f.severity)
            kinds.setdefault(f.rule, f.kind)
    out = []
    for rule_id in sorted(used):
        text = SYNTHETIC_RULES.get(rule_id)
        if text is None:
            out.append(
                _descriptor(
                    rule_id,
                    f"fwscan rule {rule_id}",
                    f"A rule id the signature set {sigset.version} does not define (the scan "
                    "used another signature set or fwscan version); the results say what was "
                    "found.",
                    used[rule_id],
                    ("security", "privacy", kinds[rule_id].value),
                    extra={"family": "fwscan"},
                )
            )
            continue
        severity = text.severity
        if rule_id.startswith("read."):
            cat = rule_id.removeprefix("read.")
            severities = [r.severity for r in sigset.sources if r.category == cat]
            severity = max(severities, default=text.severity)
        out.append(
            _descriptor(
                rule_id,
                text.short,
                text.full,
                severity,
                ("security", "privacy", text.kind),
                extra={"family": "fwscan"},
            )
        )
    return out


# -- results -------------------------------------------------------------------------------


def _location(ev: Evidence, location_id: int | None) -> dict[str, Any]:
    physical: dict[str, Any] = {
        "artifactLocation": {"uri": artifact_uri(ev.artifact), "uriBaseId": URI_BASE_ID}
    }
    properties: dict[str, Any] = {}
    if ev.offset is not None:
        if ev.class_name is not None:
            properties["dexCodeUnitOffset"] = ev.offset
        elif ev.section is not None:
            physical["region"] = {"byteOffset": ev.offset}
        elif ev.artifact.endswith(".rc") and ev.offset >= 1:
            physical["region"] = {"startLine": ev.offset}
        else:
            properties["offset"] = ev.offset
    if ev.section is not None:
        properties["section"] = ev.section
    out: dict[str, Any] = {"physicalLocation": physical}
    if location_id is not None:
        out["id"] = location_id
    if ev.detail:
        out["message"] = {"text": escape_message(ev.detail)}
    if ev.class_name is not None:
        if ev.method is not None:
            logical = {
                "name": ev.method,
                "fullyQualifiedName": f"{ev.class_name}->{ev.method}{ev.descriptor or ''}",
                "kind": "function",
            }
        else:
            logical = {"fullyQualifiedName": ev.class_name, "kind": "type"}
        out["logicalLocations"] = [logical]
    if properties:
        out["properties"] = properties
    return out


def _primary(f: Finding) -> int:
    """The index of the evidence that locates the finding: for a flow, its first sink call."""
    if f.kind is Kind.FLOW:
        for i, ev in enumerate(f.evidence):
            if (ev.detail or "").startswith("sink "):
                return i
    return 0


def _result(f: Finding, rule_index: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": rule_index,
        "level": level(f.severity),
        "message": {"text": escape_message(f"{f.component}: {f.title}")},
        "partialFingerprints": {FINGERPRINT_KEY: f.fingerprint},
        "properties": {
            "severity": f.severity.label,
            "kind": f.kind.value,
            "category": f.category,
            "target": f.target,
            "library": f.library,
            "component": f.component,
            "attributes": dict(f.attributes),
        },
    }
    if f.evidence:
        first = _primary(f)
        out["locations"] = [_location(f.evidence[first], None)]
        related = [ev for i, ev in enumerate(f.evidence) if i != first]
        if related:
            out["relatedLocations"] = [_location(ev, n) for n, ev in enumerate(related, 1)]
    return out


def _notifications(result: ScanResult) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in result.coverage:
        if c.status is Status.FAILED:
            out.append(
                {
                    "level": "warning",
                    "message": {
                        "text": escape_message(
                            f"could not read {c.source} ({c.kind}, {c.format}): {c.reason}"
                        )
                    },
                }
            )
    for e in result.errors:
        out.append(
            {
                "level": "warning",
                "message": {
                    "text": escape_message(
                        f"analysis of {e.path} ({e.kind}) failed ({e.reason}): {e.message}"
                    )
                },
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {
                                "uri": artifact_uri(e.path),
                                "uriBaseId": URI_BASE_ID,
                            }
                        }
                    }
                ],
            }
        )
    return out


def sarif_log(result: ScanResult, sigset: SignatureSet) -> dict[str, Any]:
    """The SARIF log of a scan as a JSON-able dictionary (see the module docstring)."""
    rules = _signature_rules(sigset)
    known = {r["id"] for r in rules}
    rules += _other_rules(result.findings, sigset, known)
    index = {r["id"]: i for i, r in enumerate(rules)}
    invocation: dict[str, Any] = {"executionSuccessful": True}
    notifications = _notifications(result)
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    properties: dict[str, Any] = {
        "build": result.build.to_dict(),
        "input": result.input.to_dict(),
        "signatures": {
            "version": result.signatures_version,
            "sha256": result.signatures_sha256,
        },
        "summary": result.summary(),
    }
    if sigset.sha256 != result.signatures_sha256:
        properties["rule_signatures"] = {"version": sigset.version, "sha256": sigset.sha256}
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "fwscan",
                "version": result.tool_version,
                "rules": rules,
                "properties": {"analyzer_version": result.analyzer_version},
            }
        },
        "invocations": [invocation],
        "originalUriBaseIds": {
            URI_BASE_ID: {
                "description": {
                    "text": escape_message(
                        "The root of the file system of the firmware "
                        f"{result.input.name} (SHA-256 {result.input.sha256 or 'unknown'}) as "
                        "a running device sees it; a file inside an APK or archive follows '!'."
                    )
                }
            }
        },
        "results": [_result(f, index[f.rule]) for f in result.findings],
        "properties": properties,
    }
    return {"$schema": SARIF_SCHEMA_URI, "version": SARIF_VERSION, "runs": [run]}


def render_sarif(result: ScanResult, sigset: SignatureSet) -> str:
    """The SARIF 2.1.0 log of a scan, as deterministic JSON (``indent=2``, sorted keys, ASCII)."""
    return json.dumps(sarif_log(result, sigset), indent=2, sort_keys=True, ensure_ascii=True) + "\n"

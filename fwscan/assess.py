"""From analyses to findings: the severity policy and the grouping a reader sees.

The analyzers (run per artifact, cached by content) produce plain facts as JSON-able dicts:
the API calls, strings and flows of an app's code, the manifest and certificates, the facts of
an ELF file, the grants of a permission file, the services of an init file. This module turns
them, with each file's device path and the build-wide context (which key is the platform key),
into :class:`~fwscan.findings.Finding` objects:

- one ``read`` finding per app and identifier category (evidence: every call site, capped);
- one ``flow`` finding per app, sink kind and target (the categories that reach it);
- one ``endpoint`` finding per app (or ELF) and external host, named after the endpoint rule
  that matches it, if any;
- ``sink`` findings for SMS sending; ``privilege`` findings for privileged apps;
- ``permission`` findings for privileged and default permission grants;
- ``native`` findings for identifier properties and network functions in ELF files;
- ``service`` findings for init services that start a binary with network code.

Severity policy (documented for users in the README): an identifier reaching a network or SMS
sink is HIGH (CRITICAL when the endpoint rule says so); the same only in library code is MEDIUM;
a log flow is MEDIUM, file and IPC flows LOW; a bare read takes its rule's severity (LOW or
MEDIUM); an endpoint takes its rule's severity, or INFO (LOW when in clear text) when unlisted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fwscan.endpoints import EndpointMatcher, registrable_domain
from fwscan.findings import Evidence, Finding, Kind, Severity
from fwscan.rules import SignatureSet

MAX_EVIDENCE = 12
"""Evidence items kept per finding (the first ones in a stable order)."""
PRIVILEGED_UIDS = frozenset(
    {
        "android.uid.system",
        "android.uid.phone",
        "android.uid.bluetooth",
        "android.uid.nfc",
        "android.uid.shell",
        "android.uid.se",
        "android.uid.networkstack",
    }
)
CATEGORY_NAMES = {
    "imei": "IMEI",
    "meid": "MEID",
    "iccid": "ICCID (SIM serial)",
    "imsi": "IMSI",
    "phone_number": "phone number",
    "serial": "serial number",
    "android_id": "Android ID",
    "mac": "MAC address",
    "location": "location",
    "cell_location": "cell location",
    "installed_apps": "installed apps",
    "accounts": "accounts",
}
_FLOW_SEVERITY = {
    "network": Severity.HIGH,
    "sms": Severity.HIGH,
    "log": Severity.MEDIUM,
    "file": Severity.LOW,
    "ipc": Severity.LOW,
}


def _flow_title(kind: str, names: str, target: str, owner: str) -> str:
    """What a flow does, in the words of its sink kind."""
    whose = f" ({owner})" if owner else ""
    if kind == "network":
        return f"sends the {names} over the network" + (f" to {target}" if target else "") + whose
    if kind == "sms":
        return f"sends the {names} by SMS" + (f" to {target}" if target else "")
    if kind == "log":
        return f"writes the {names} to the system log" + (f" (tag {target})" if target else "")
    if kind == "file":
        return f"writes the {names} to a file" + (f" ({target})" if target else "")
    if kind == "ipc":
        return f"passes the {names} to other apps" + (f" ({target})" if target else "")
    return f"sends the {names} to a {kind} sink" + (f" ({target})" if target else "")


def _category_order(category: str) -> tuple[int, str]:
    order = list(CATEGORY_NAMES)
    return (order.index(category) if category in order else len(order), category)


def category_name(category: str) -> str:
    """The reader's name of an identifier category."""
    return CATEGORY_NAMES.get(category, category.replace("_", " "))


def placement(path: str) -> str:
    """Where an app sits, from its device path."""
    parts = path.strip("/").split("/")
    if path.startswith("apex:") or "apex" in parts[:2]:
        return "apex"
    for marker in ("priv-app", "app", "framework"):
        if marker in parts[:3]:
            where = parts[0]
            if where in ("vendor", "product", "system_ext", "odm") and marker != "framework":
                return where if marker == "app" else f"{where}-priv-app"
            return marker
    return parts[0] if parts and parts[0] in ("vendor", "product", "system_ext", "odm") else "other"


def _loc_evidence(artifact: str, loc: Sequence[Any], detail: str) -> Evidence:
    dex, cls, method, desc, offset = loc
    return Evidence(
        artifact=f"{artifact}!{dex}",
        class_name=cls,
        method=method,
        descriptor=desc,
        offset=offset,
        detail=detail,
    )


def _cap(evidence: Iterable[Evidence]) -> tuple[Evidence, ...]:
    return tuple(sorted(set(evidence), key=Evidence.sort_key)[:MAX_EVIDENCE])


@dataclass
class AppContext:
    """What the findings of one app need besides its analysis."""

    path: str
    component: str
    platform_certs: frozenset[str]


class Assessor:
    """Builds findings with one signature set and endpoint matcher."""

    def __init__(self, sigset: SignatureSet) -> None:
        self.sigset = sigset
        self.rules = {r.id: r for r in (*sigset.sources, *sigset.sinks)}
        self.matcher = EndpointMatcher(sigset.endpoints)
        self.native_rules = {r.id: r for r in sigset.native}

    # -- apps ------------------------------------------------------------------------------

    def code_findings(
        self, code: Mapping[str, Any], artifact: str, component: str
    ) -> list[Finding]:
        """Reads, flows, SMS sinks and endpoints of one app's (or JAR's, or DEX's) code."""
        out: list[Finding] = []
        out += self._reads(code.get("reads", []), artifact, component)
        out += self._flows(code.get("flows", []), artifact, component)
        out += self._sms_sinks(code.get("sinks", []), code.get("flows", []), artifact, component)
        endpoints: list[tuple[dict[str, Any], Evidence, bool]] = []
        for item in code.get("endpoints", []):
            for loc in item["locations"]:
                ev = _loc_evidence(artifact, loc["loc"], item["value"])
                endpoints.append((item, ev, loc["library"]))
        out += self._endpoints(endpoints, component)
        return out

    def _reads(
        self, reads: Sequence[Mapping[str, Any]], artifact: str, component: str
    ) -> list[Finding]:
        by_cat: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for use in reads:
            rule = self.rules.get(use["rule"])
            if rule is not None:
                by_cat[rule.category].append(use)
        out = []
        for cat, uses in sorted(by_cat.items()):
            rules = sorted({u["rule"] for u in uses})
            severity = max(self.rules[r].severity for r in rules)
            library = all(u["library"] for u in uses)
            apis = sorted({self._api_name(r) for r in rules})
            out.append(
                Finding(
                    kind=Kind.READ,
                    rule=f"read.{cat}",
                    severity=Severity.LOW if library else severity,
                    title=f"reads the {category_name(cat)} ({', '.join(apis)})"
                    + (" in library code only" if library else ""),
                    component=component,
                    category=cat,
                    library=library,
                    evidence=_cap(
                        _loc_evidence(artifact, u["loc"], self._api_name(u["rule"])) for u in uses
                    ),
                    attributes=(("apis", ", ".join(apis)), ("rules", ", ".join(rules))),
                )
            )
        return out

    def _api_name(self, rule_id: str) -> str:
        rule = self.rules[rule_id]
        cls = rule.class_name[1:-1].rsplit("/", 1)[-1]
        return f"{cls}.{rule.member}"

    def _target(self, target: str | None) -> tuple[str, str, Severity | None, str]:
        """The target shown for a flow, its host, the endpoint rule's severity and its owner."""
        if not target:
            return "", "", None, ""
        from fwscan.endpoints import extract

        found = extract(target)
        if not found:
            return target, "", None, ""
        ep = found[0]
        rule = self.matcher.match(ep.host)
        if rule is None:
            return target, ep.host, None, ""
        return target, ep.host, rule.severity, f"{rule.owner}, {rule.country}"

    def _flows(
        self, flows: Sequence[Mapping[str, Any]], artifact: str, component: str
    ) -> list[Finding]:
        groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
        for flow in flows:
            sink_rule = self.rules.get(flow["sink"]["rule"])
            if sink_rule is None:
                continue
            target = (flow.get("target") or "").strip()
            # Log flows are one finding per app: the "target" of a log call is a tag or a
            # message prefix, which says nothing about where the data goes.
            groups[(sink_rule.category, "" if sink_rule.category == "log" else target)].append(flow)
        out = []
        for (kind, target), items in sorted(groups.items()):
            cats = sorted({c for f in items for c in f["categories"]}, key=_category_order)
            library = all(f["library"] for f in items)
            shown, host, rule_sev, owner = self._target(target)
            severity = _FLOW_SEVERITY.get(kind, Severity.MEDIUM)
            if rule_sev is not None and rule_sev > severity and kind in ("network", "sms"):
                severity = rule_sev
            if library:
                severity = min(severity, Severity.MEDIUM)
            title = _flow_title(kind, ", ".join(category_name(c) for c in cats), shown, owner)
            evidence: list[Evidence] = []
            for f in items:
                for src in f["sources"]:
                    evidence.append(
                        _loc_evidence(artifact, src["loc"], "read " + self._api_name(src["rule"]))
                    )
                evidence.append(
                    _loc_evidence(
                        artifact, f["sink"]["loc"], "sink " + self._api_name(f["sink"]["rule"])
                    )
                )
            chain = max((len(f["chain"]) for f in items), default=1)
            attrs = [("sink", kind), ("chain_length", str(chain))]
            if host:
                attrs.append(("host", host))
            if kind == "log":
                tags = sorted({(f.get("target") or "").strip() for f in items} - {""})
                if tags:
                    attrs.append(("tags", " | ".join(tags[:8])))
            if owner:
                attrs.append(("owner", owner))
            if target.startswith(("http://", "ws://", "ftp://")):
                attrs.append(("cleartext", "true"))
            out.append(
                Finding(
                    kind=Kind.FLOW,
                    rule=f"flow.{kind}",
                    severity=severity,
                    title=title + (" in library code only" if library else ""),
                    component=component,
                    category="+".join(cats),
                    target=shown,
                    library=library,
                    evidence=_cap(evidence),
                    attributes=tuple(sorted(attrs)),
                )
            )
        return out

    def _sms_sinks(
        self,
        sinks: Sequence[Mapping[str, Any]],
        flows: Sequence[Mapping[str, Any]],
        artifact: str,
        component: str,
    ) -> list[Finding]:
        uses = [
            s for s in sinks if (r := self.rules.get(s["rule"])) is not None and r.category == "sms"
        ]
        if not uses:
            return []
        library = all(u["library"] for u in uses)
        return [
            Finding(
                kind=Kind.SINK,
                rule="sink.sms",
                severity=Severity.LOW if library else Severity.MEDIUM,
                title="sends SMS messages" + (" in library code only" if library else ""),
                component=component,
                category="sms",
                library=library,
                evidence=_cap(
                    _loc_evidence(artifact, u["loc"], self._api_name(u["rule"])) for u in uses
                ),
            )
        ]

    def _endpoints(
        self, items: Sequence[tuple[Mapping[str, Any], Evidence, bool]], component: str
    ) -> list[Finding]:
        # A listed endpoint is reported per host; unlisted hosts are grouped by registrable
        # domain (0.pool.ntp.org, 1.pool.ntp.org... -> pool.ntp.org), IPs one by one.
        by_host: dict[str, list[tuple[Mapping[str, Any], Evidence, bool]]] = defaultdict(list)
        for item, ev, lib in items:
            if item["external"]:
                host = item["host"]
                if self.matcher.match(host) is None and item["kind"] != "ip":
                    host = registrable_domain(host) or host
                by_host[host].append((item, ev, lib))
        out = []
        for host, group in sorted(by_host.items()):
            rule = self.matcher.match(host)
            values = sorted({g[0]["value"] for g in group})
            hosts = sorted({g[0]["host"] for g in group})
            cleartext = any(g[0]["cleartext"] for g in group)
            library = all(g[2] for g in group)
            if rule is not None:
                severity = rule.severity
                title = f"contacts {host} ({rule.owner}, {rule.country}: {rule.purpose})"
                attrs = [
                    ("owner", rule.owner),
                    ("country", rule.country),
                    ("purpose", rule.purpose),
                ]
            else:
                severity = Severity.LOW if cleartext else Severity.INFO
                if hosts == [host]:
                    title = f"names the host {host}"
                else:
                    title = f"names {len(hosts)} hosts under {host}"
                attrs = [("hosts", " ".join(hosts[:16]))]
            if library and rule is None:
                severity = Severity.INFO
            attrs.append(("values", " ".join(values[:8])))
            if cleartext:
                attrs.append(("cleartext", "true"))
            out.append(
                Finding(
                    kind=Kind.ENDPOINT,
                    rule=rule.id if rule is not None else "endpoint.unlisted",
                    severity=severity,
                    title=title + (" (in clear text)" if cleartext else ""),
                    component=component,
                    category=rule.purpose if rule is not None else "",
                    target=host,
                    library=library,
                    evidence=_cap(g[1] for g in group),
                    attributes=tuple(sorted(attrs)),
                )
            )
        return out

    def privilege_findings(
        self, app: Mapping[str, Any], path: str, component: str, platform_certs: frozenset[str]
    ) -> tuple[list[Finding], bool]:
        """The privileged context of an app, and whether it has any."""
        reasons = []
        where = placement(path)
        if where.endswith("priv-app"):
            reasons.append("priv-app")
        uid = app.get("shared_user_id", "")
        if uid in PRIVILEGED_UIDS:
            reasons.append(f"sharedUserId {uid}")
        if any(c["sha256"] in platform_certs for c in app.get("certificates", [])):
            reasons.append("platform key")
        if not reasons:
            return [], False
        finding = Finding(
            kind=Kind.PRIVILEGE,
            rule="privilege.app",
            severity=Severity.INFO,
            title="runs with privileges: " + ", ".join(reasons),
            component=component,
            category=",".join(r.split(" ")[0] for r in reasons),
            evidence=(Evidence(artifact=path, detail="; ".join(reasons)),),
            attributes=(("reasons", "; ".join(reasons)),),
        )
        return [finding], True

    # -- native and configuration ------------------------------------------------------------

    def native_findings(
        self, native: Mapping[str, Any], artifact: str, component: str
    ) -> list[Finding]:
        """Identifier properties, network functions and endpoints of one ELF file."""
        out: list[Finding] = []
        network = sorted(
            n for n in native.get("imports", []) if self._function_category(n) == "network"
        )
        propfn = sorted(
            n for n in native.get("imports", []) if self._function_category(n) == "property"
        )
        if network:
            out.append(
                Finding(
                    kind=Kind.NATIVE,
                    rule="native.network-functions",
                    severity=Severity.INFO,
                    title="native code imports network functions (" + ", ".join(network[:6]) + ")",
                    component=component,
                    category="network",
                    evidence=(
                        Evidence(artifact=artifact, section=".dynsym", detail=", ".join(network)),
                    ),
                    attributes=(
                        ("functions", ", ".join(network)),
                        ("jni_exports", str(len(native.get("jni_exports", [])))),
                    ),
                )
            )
        by_rule: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for prop in native.get("properties", []):
            by_rule[prop["rule"]].append(prop)
        for rule_id, props in sorted(by_rule.items()):
            rule = self.native_rules.get(rule_id)
            if rule is None:
                continue
            names = sorted({p["value"] for p in props})
            out.append(
                Finding(
                    kind=Kind.NATIVE,
                    rule=rule.id,
                    severity=rule.severity,
                    title=f"native code names the property {', '.join(names)} ({rule.category})"
                    + (" and reads properties" if propfn else ""),
                    component=component,
                    category=rule.category,
                    target=names[0],
                    evidence=_cap(
                        Evidence(
                            artifact=artifact,
                            section=p["section"],
                            offset=p["offset"],
                            detail=p["value"],
                        )
                        for p in props
                    ),
                )
            )
        eps = []
        for item in native.get("endpoints", []):
            for loc in item["locations"]:
                eps.append(
                    (
                        item,
                        Evidence(
                            artifact=artifact,
                            section=loc["section"],
                            offset=loc["offset"],
                            detail=item["value"],
                        ),
                        False,
                    )
                )
        out += self._endpoints(eps, component)
        return out

    def _function_category(self, name: str) -> str:
        for rule in self.sigset.native:
            if rule.kind == "function" and rule.matches(name):
                return rule.category
        return ""

    @staticmethod
    def grant_findings(config: Mapping[str, Any], path: str) -> list[Finding]:
        """Privileged and default permission grants of one permission file."""
        out = []
        for g in config.get("privapp", []):
            if g["denied"]:
                continue
            out.append(
                Finding(
                    kind=Kind.PERMISSION,
                    rule="permission.privapp-grant",
                    severity=Severity.INFO,
                    title=f"grants {g['permission']} to the privileged app {g['package']}",
                    component=g["package"],
                    category="privapp",
                    target=g["permission"],
                    evidence=(
                        Evidence(artifact=path, detail=f"privapp-permissions line {g.get('line')}"),
                    ),
                )
            )
        for g in config.get("default", []):
            out.append(
                Finding(
                    kind=Kind.PERMISSION,
                    rule="permission.default-grant",
                    severity=Severity.LOW,
                    title=f"grants {g['permission']} to {g['package']} by default"
                    + (" (fixed)" if g["fixed"] else ""),
                    component=g["package"],
                    category="default",
                    target=g["permission"],
                    evidence=(Evidence(artifact=path, detail="default-permissions exception"),),
                )
            )
        return out

    @staticmethod
    def service_findings(
        services: Sequence[Mapping[str, Any]], path: str, binaries: Mapping[str, Sequence[Finding]]
    ) -> list[Finding]:
        """Init services that start a binary with network code or endpoints."""
        out = []
        for svc in services:
            facts = binaries.get(svc["path"], ())
            hosts = sorted({f.target for f in facts if f.kind is Kind.ENDPOINT})
            network = any(f.rule == "native.network-functions" for f in facts)
            if not hosts and not network:
                continue
            what = ", ".join(hosts[:4]) if hosts else "network functions"
            out.append(
                Finding(
                    kind=Kind.SERVICE,
                    rule="service.network-binary",
                    severity=Severity.LOW,
                    title=f"init service {svc['name']} starts {svc['path']} ({what})",
                    component=svc["path"],
                    category=svc["name"],
                    target=svc["path"],
                    evidence=(
                        Evidence(
                            artifact=path, offset=svc.get("line"), detail=f"service {svc['name']}"
                        ),
                    ),
                    attributes=(("hosts", " ".join(hosts)), ("user", svc.get("user") or "")),
                )
            )
        return out

"""Findings: what the analyzers report, with evidence a reviewer can check.

A finding's *fingerprint* is built only from what stays the same across builds (its kind, the
component it belongs to, the rule, the category and the target), never from offsets, image
hashes or file hashes, so two scans of one build are byte-identical and a diff of two builds
shows only real changes.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """How much a finding matters to a privacy audit, lowest first."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        """Lower-case name, as written in JSON and signatures."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """From a lower-case name; ``ValueError`` for anything else."""
        try:
            return cls[text.upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (one of {names})") from None


class Kind(enum.Enum):
    """What a finding is about."""

    READ = "read"
    """Code reads a device identifier or the location (a source API)."""
    FLOW = "flow"
    """An identifier read reaches a network, SMS, log, file or IPC sink."""
    SINK = "sink"
    """Code calls a network or SMS API (without an identifier reaching it)."""
    ENDPOINT = "endpoint"
    """A URL, host name or IP address written in the code or data."""
    PERMISSION = "permission"
    """A sensitive permission requested, or a privileged grant in the configuration."""
    PRIVILEGE = "privilege"
    """The component runs with privileges: priv-app, system shared user, platform key."""
    NATIVE = "native"
    """A native (ELF) fact: imported network or property functions, identifier properties,
    JNI exports."""
    SERVICE = "service"
    """An init service that starts a binary."""


KIND_ORDER = (
    Kind.FLOW,
    Kind.READ,
    Kind.SINK,
    Kind.ENDPOINT,
    Kind.NATIVE,
    Kind.SERVICE,
    Kind.PERMISSION,
    Kind.PRIVILEGE,
)
"""The order a reader wants findings of one severity in."""


@dataclass(frozen=True)
class Evidence:
    """Where a finding was seen, precise enough to check by hand."""

    artifact: str
    """Device path of the file, e.g. ``/system/priv-app/X/X.apk``; an inner file follows
    ``!``, e.g. ``/system/priv-app/X/X.apk!classes2.dex`` or ``...!lib/arm64-v8a/libx.so``."""
    class_name: str | None = None
    """DEX class descriptor, e.g. ``Lcom/x/Y;``."""
    method: str | None = None
    descriptor: str | None = None
    """Method descriptor, e.g. ``(Landroid/content/Context;)V``."""
    offset: int | None = None
    """Bytecode offset in 16-bit code units from the method's first instruction (as dexdump
    prints it), or the byte offset in an ELF file."""
    section: str | None = None
    """ELF section, for native evidence."""
    detail: str | None = None
    """What is there: the API called, the string loaded, the XML element."""

    def sort_key(self) -> tuple[str, str, str, str, int, str, str]:
        """A total order (the optional fields compare as empty or -1)."""
        return (
            self.artifact,
            self.class_name or "",
            self.method or "",
            self.descriptor or "",
            -1 if self.offset is None else self.offset,
            self.section or "",
            self.detail or "",
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, without empty fields."""
        out: dict[str, Any] = {"artifact": self.artifact}
        for key in ("class_name", "method", "descriptor", "offset", "section", "detail"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass(frozen=True)
class Finding:
    """One thing an analyzer reports."""

    kind: Kind
    rule: str
    """The id of the signature rule that matched (stable across releases)."""
    severity: Severity
    title: str
    """One line a reader understands, e.g. ``reads IMEI (TelephonyManager.getImei)``."""
    component: str
    """The app package, or the device path of a native file or configuration file."""
    category: str = ""
    """Identifier category (``imei``, ``location``...), sink kind, or endpoint owner."""
    target: str = ""
    """The endpoint (URL or host), phone number, or permission name concerned."""
    library: bool = False
    """True when every piece of evidence lies in library code (androidx, SDKs), not the app's."""
    evidence: tuple[Evidence, ...] = ()
    attributes: tuple[tuple[str, str], ...] = field(default=())
    """Extra facts as sorted key/value pairs (e.g. ``("sink", "network")``)."""

    @property
    def fingerprint(self) -> str:
        """Stable identity across builds: kind, component, rule, category, target."""
        key = "\x1f".join((self.kind.value, self.component, self.rule, self.category, self.target))
        return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:24]

    def sort_key(self) -> tuple[Any, ...]:
        """Most severe first; within a severity, flows before reads before the rest, and
        among those the weightier first (a known endpoint, clear text, more identifiers);
        then stable by identity."""
        return (
            -self.severity,
            KIND_ORDER.index(self.kind),
            -self.weight,
            self.component,
            self.rule,
            self.category,
            self.target,
        )

    @property
    def weight(self) -> int:
        """A tie-breaker between findings of one severity and kind."""
        attrs = dict(self.attributes)
        known = 100 if "owner" in attrs else 0
        clear = 10 if attrs.get("cleartext") == "true" else 0
        return known + clear + len([c for c in self.category.split("+") if c])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "fingerprint": self.fingerprint,
            "kind": self.kind.value,
            "rule": self.rule,
            "severity": self.severity.label,
            "title": self.title,
            "component": self.component,
            "category": self.category,
            "target": self.target,
            "library": self.library,
            "evidence": [e.to_dict() for e in self.evidence],
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        """Inverse of :meth:`to_dict` (the fingerprint is recomputed)."""
        return cls(
            kind=Kind(data["kind"]),
            rule=data["rule"],
            severity=Severity.parse(data["severity"]),
            title=data["title"],
            component=data["component"],
            category=data.get("category", ""),
            target=data.get("target", ""),
            library=bool(data.get("library", False)),
            evidence=tuple(Evidence.from_dict(e) for e in data.get("evidence", [])),
            attributes=tuple(sorted(data.get("attributes", {}).items())),
        )

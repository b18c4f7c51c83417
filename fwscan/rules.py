"""The typed form of signature rules, shared by the loader and the analyzers.

The YAML files in ``signatures/`` are read and checked by :mod:`fwscan.signatures`, which
returns a :class:`SignatureSet`; analyzers only ever see these frozen types.
"""

from __future__ import annotations

from dataclasses import dataclass

from fwscan.findings import Severity

SOURCE_CATEGORIES = (
    "imei",
    "meid",
    "iccid",
    "imsi",
    "phone_number",
    "serial",
    "android_id",
    "mac",
    "location",
    "cell_location",
    "installed_apps",
    "accounts",
)
SINK_KINDS = ("network", "sms", "log", "file", "ipc")


@dataclass(frozen=True)
class ApiRule:
    """A sensitive Android API: a source (reads an identifier) or a sink (sends data out)."""

    id: str
    """Stable rule id, e.g. ``source.imei.getImei``; never reused for another meaning."""
    role: str
    """``source`` or ``sink``."""
    category: str
    """For a source, one of :data:`SOURCE_CATEGORIES`; for a sink, one of :data:`SINK_KINDS`."""
    class_name: str
    """Smali descriptor of the declaring class, e.g. ``Landroid/telephony/TelephonyManager;``."""
    member: str
    """Method or field name, e.g. ``getImei`` or ``SERIAL``."""
    descriptor: str | None
    """Method descriptor ``(I)Ljava/lang/String;`` (``None``: every overload), or for a field
    its type ``Ljava/lang/String;``."""
    is_field: bool
    """A static field read (``sget-object``), e.g. ``Build.SERIAL``."""
    string_arg: str | None
    """A constant string argument the call must carry to match, e.g. ``android_id`` for
    ``Settings$Secure.getString``; ``None`` when any call matches."""
    permission: str | None
    """The permission that guards the API, if any."""
    min_api: int | None
    max_api: int | None
    """API levels where the API exists or returns real data (``None``: unbounded)."""
    severity: Severity
    """Severity of a bare read or call; flows are rated by the flow rules."""
    description: str
    references: tuple[str, ...]


@dataclass(frozen=True)
class EndpointRule:
    """A known server: telemetry, registration, FOTA or analytics."""

    id: str
    domains: tuple[str, ...]
    """Domain suffixes: ``vnet.cn`` matches ``vnet.cn`` and ``zzhc.vnet.cn``, not ``xvnet.cn``."""
    owner: str
    country: str
    """ISO 3166-1 alpha-2 code of the owner's country."""
    purpose: str
    """``registration``, ``telemetry``, ``fota``, ``analytics``, ``advertising``..."""
    severity: Severity
    description: str
    references: tuple[str, ...]


@dataclass(frozen=True)
class NativeRule:
    """A native-code name: an identifier property or a sensitive imported function."""

    id: str
    kind: str
    """``property`` (a system property name; ``pattern`` may end in ``*``) or ``function``
    (an imported symbol; ``category`` says ``network`` or ``property``...)."""
    pattern: str
    category: str
    severity: Severity
    description: str
    references: tuple[str, ...]

    def matches(self, name: str) -> bool:
        """Whether ``name`` is this property or function (``*`` at the end: a prefix)."""
        if self.pattern.endswith("*"):
            return name.startswith(self.pattern[:-1])
        return name == self.pattern


@dataclass(frozen=True)
class SignatureSet:
    """Every rule fwscan matches, as loaded and checked from ``signatures/``."""

    version: str
    """The set's version, from the YAML files."""
    sha256: str
    """SHA-256 over the files' names and bytes: part of every cache key and scan result."""
    sources: tuple[ApiRule, ...]
    sinks: tuple[ApiRule, ...]
    endpoints: tuple[EndpointRule, ...]
    native: tuple[NativeRule, ...]
    library_prefixes: tuple[str, ...]
    """Java package prefixes of library code (``androidx.``, ``com.google.``, SDKs): findings
    only there are kept apart from the app's own."""

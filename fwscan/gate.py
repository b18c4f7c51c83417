"""The CI gate: fail a build that gains findings a release pipeline forbids.

``--fail-on`` takes comma-separated conditions, each matched against the findings that are new
relative to the baseline (all findings when there is none):

- ``new-flow``, ``new-read``, ``new-endpoint``, ``new-sink``, ``new-permission``,
  ``new-native``, ``new-service``, ``new-privilege``: a new finding of that kind;
- ``new-app``: an app present in the build and not in the baseline;
- ``severity>=LEVEL`` (info, low, medium, high, critical): a new finding at least that severe.

A suppressions file (YAML) silences reviewed findings by fingerprint, each with a justification
and an expiry date; an expired suppression silences nothing and is reported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from fwscan.compare import app_key
from fwscan.errors import InputError
from fwscan.findings import Finding, Kind, Severity
from fwscan.scanresult import AppRecord, ScanResult

KIND_CONDITIONS = {f"new-{k.value}": k for k in Kind}
CONDITIONS = (*sorted(KIND_CONDITIONS), "new-app", "severity>=LEVEL")


@dataclass(frozen=True)
class Condition:
    """One ``--fail-on`` item."""

    text: str
    kind: Kind | None = None
    min_severity: Severity | None = None
    new_app: bool = False

    def matches(self, finding: Finding) -> bool:
        """Whether a new finding violates this condition."""
        if self.kind is not None:
            return finding.kind is self.kind
        if self.min_severity is not None:
            return finding.severity >= self.min_severity
        return False


def parse_fail_on(text: str) -> tuple[Condition, ...]:
    """Conditions from ``new-flow,severity>=high``; :class:`InputError` names a bad item."""
    out = []
    for raw in text.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if item in KIND_CONDITIONS:
            out.append(Condition(item, kind=KIND_CONDITIONS[item]))
        elif item == "new-app":
            out.append(Condition(item, new_app=True))
        elif item.startswith("severity>="):
            try:
                level = Severity.parse(item.split(">=", 1)[1])
            except ValueError as exc:
                raise InputError(f"--fail-on: {exc}") from None
            out.append(Condition(item, min_severity=level))
        else:
            raise InputError(
                f"--fail-on: unknown condition {raw.strip()!r} (one of {', '.join(CONDITIONS)})"
            )
    if not out:
        raise InputError("--fail-on: no condition given")
    return tuple(out)


@dataclass(frozen=True)
class Suppression:
    """A reviewed finding that the gate should not fail on, until ``expires``."""

    fingerprint: str
    justification: str
    expires: dt.date

    def expired(self, today: dt.date) -> bool:
        """Whether the suppression no longer applies."""
        return today > self.expires


def load_suppressions(path: Path) -> tuple[Suppression, ...]:
    """Read a suppressions file::

    suppressions:
      - fingerprint: 3f2a...        # from the scan result
        justification: reviewed with the vendor, ticket SEC-123
        expires: 2027-06-30
    """
    try:
        # BaseLoader keeps every scalar a string: a fingerprint of digits stays itself.
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the suppressions file: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("suppressions"), list):
        raise InputError(f"{path}: expected a mapping with a 'suppressions' list")
    out = []
    for i, item in enumerate(data["suppressions"]):
        where = f"{path.name}: suppressions[{i}]"
        if not isinstance(item, dict) or set(item) != {"fingerprint", "justification", "expires"}:
            raise InputError(f"{where}: needs exactly fingerprint, justification and expires")
        fp, why, until = item["fingerprint"], item["justification"], item["expires"]
        if not isinstance(fp, str) or len(fp) != 24 or any(c not in "0123456789abcdef" for c in fp):
            raise InputError(f"{where}.fingerprint: not a finding fingerprint (24 hex digits)")
        if not isinstance(why, str) or not why.strip():
            raise InputError(f"{where}.justification: must not be empty")
        if isinstance(until, str):
            try:
                until = dt.date.fromisoformat(until)
            except ValueError:
                raise InputError(f"{where}.expires: not a date YYYY-MM-DD") from None
        if not isinstance(until, dt.date):
            raise InputError(f"{where}.expires: not a date YYYY-MM-DD")
        out.append(Suppression(fp, why.strip(), until))
    return tuple(out)


@dataclass(frozen=True)
class GateResult:
    """What the gate decided."""

    violations: tuple[tuple[Finding, str], ...]
    """New findings that fail the build, with the condition that caught each."""
    new_apps: tuple[AppRecord, ...]
    """Apps that are new (reported as violations when ``new-app`` is asked)."""
    suppressed: tuple[tuple[Finding, Suppression], ...]
    expired: tuple[Suppression, ...]
    """Suppressions past their expiry date (they silence nothing)."""
    unused: tuple[Suppression, ...]
    """Active suppressions that matched no finding."""

    @property
    def failed(self) -> bool:
        """Whether the build fails the gate."""
        return bool(self.violations or self.new_apps)


def evaluate(
    result: ScanResult,
    baseline: ScanResult | None,
    conditions: Sequence[Condition],
    suppressions: Sequence[Suppression] = (),
    today: dt.date | None = None,
) -> GateResult:
    """Apply the conditions to what ``result`` has and ``baseline`` has not."""
    today = today or dt.date.today()
    known = {f.fingerprint for f in baseline.findings} if baseline is not None else set()
    active = {s.fingerprint: s for s in suppressions if not s.expired(today)}
    expired = tuple(s for s in suppressions if s.expired(today))
    violations, suppressed, used = [], [], set()
    for finding in result.findings:
        if finding.fingerprint in known:
            continue
        hit = next((c for c in conditions if c.matches(finding)), None)
        if hit is None:
            continue
        sup = active.get(finding.fingerprint)
        if sup is not None:
            suppressed.append((finding, sup))
            used.add(sup.fingerprint)
        else:
            violations.append((finding, hit.text))
    new_apps: tuple[AppRecord, ...] = ()
    if any(c.new_app for c in conditions):
        old = {app_key(a) for a in baseline.apps} if baseline is not None else set()
        new_apps = tuple(a for a in result.apps if app_key(a) not in old)
    unused = tuple(s for fp, s in sorted(active.items()) if fp not in used)
    return GateResult(tuple(violations), new_apps, tuple(suppressed), expired, unused)

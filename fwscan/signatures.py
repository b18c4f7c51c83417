"""Loads and checks the signature files (``signatures/*.yaml``) into a :class:`SignatureSet`.

The YAML files are the only detection data fwscan has; nothing is downloaded at run time. Each
file belongs to one *family*, named by the file: ``sources.yaml``, ``sinks.yaml``,
``endpoints.yaml``, ``native.yaml``, ``libraries.yaml`` (a family may be split into more files
named ``<family>-<anything>.yaml``). ``signatures/README.md`` documents the format; this module
enforces it and refuses, with a message naming the file, the rule index and the field:

- unknown keys, missing keys, values of the wrong type, duplicate YAML keys;
- bad severities, categories (:data:`~fwscan.rules.SOURCE_CATEGORIES`,
  :data:`~fwscan.rules.SINK_KINDS`), purposes, country codes, API levels;
- class names, method names and descriptors that are not valid smali syntax;
- domains that are not host names under a registrable domain (``com.cn`` is refused);
- an id used twice anywhere, or listed as retired; two rules matching the same API, domain,
  native name or library prefix.

Where the files are: the top-level ``signatures/`` folder of the source tree is the source of
truth, found relative to this package (``Path(__file__).parents[1] / "signatures"``), which
works for the editable install the Makefile makes. Set ``FWSCAN_SIGNATURES`` or pass a
directory to use others.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fwscan.endpoints import registrable_domain
from fwscan.errors import SignatureError
from fwscan.findings import Severity
from fwscan.rules import (
    SINK_KINDS,
    SOURCE_CATEGORIES,
    ApiRule,
    EndpointRule,
    NativeRule,
    SignatureSet,
)

__all__ = [
    "DEFAULT_DIRECTORY",
    "FAMILIES",
    "NATIVE_FUNCTION_CATEGORIES",
    "NATIVE_PROPERTY_CATEGORIES",
    "PURPOSES",
    "SCHEMA_VERSION",
    "SignatureError",
    "check",
    "default_directory",
    "describe",
    "is_class_descriptor",
    "is_method_descriptor",
    "is_type_descriptor",
    "load_signatures",
]

SCHEMA_VERSION = 1
"""The one ``schema_version`` this loader reads."""
DEFAULT_DIRECTORY = Path(__file__).resolve().parents[1] / "signatures"
"""The source tree's ``signatures/`` folder (fwscan is installed editable)."""
FAMILIES: dict[str, str] = {
    "sources": "source",
    "sinks": "sink",
    "endpoints": "endpoint",
    "native": "native",
    "libraries": "library",
}
"""File family -> the first segment of every rule id in it."""
PURPOSES = (
    "registration",
    "telemetry",
    "fota",
    "remote_control",
    "analytics",
    "advertising",
    "attribution",
    "crash_reporting",
    "push",
    "assistance",
    "first_party",
)
"""What a known server is for."""
NATIVE_PROPERTY_CATEGORIES = (*SOURCE_CATEGORIES, "operator", "radio")
"""Categories of ``property`` rules: an identifier, the SIM operator, or radio settings."""
NATIVE_FUNCTION_CATEGORIES = ("network", "property")
"""Categories of ``function`` rules."""
_COUNTRY_CODES = (
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO "
    "BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ "
    "DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP "
    "GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG "
    "KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML "
    "MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE "
    "PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL "
    "SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM "
    "US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW"
)
COUNTRIES = frozenset(_COUNTRY_CODES.split())
"""ISO 3166-1 alpha-2 codes."""

_COMMON_KEYS = ("id", "severity", "description", "references")
_API_KEYS = (
    "category",
    "class",
    "method",
    "field",
    "descriptor",
    "string_arg",
    "permission",
    "min_api",
    "max_api",
)
_KEYS: dict[str, frozenset[str]] = {
    "sources": frozenset((*_COMMON_KEYS, *_API_KEYS)),
    "sinks": frozenset((*_COMMON_KEYS, *_API_KEYS)),
    "endpoints": frozenset((*_COMMON_KEYS, "domains", "owner", "country", "purpose")),
    "native": frozenset((*_COMMON_KEYS, "kind", "pattern", "category")),
    "libraries": frozenset((*_COMMON_KEYS, "prefix", "owner")),
}
_TOP_KEYS = frozenset({"schema_version", "version", "rules", "retired"})
_MAX_API = 99

_IDENT = r"[A-Za-z_$][A-Za-z0-9_$]*"
_CLASS = rf"L(?:{_IDENT}/)*{_IDENT};"
_TYPE = rf"\[*(?:[ZBSCIJFD]|{_CLASS})"
_CLASS_RE = re.compile(_CLASS)
_TYPE_RE = re.compile(_TYPE)
_METHOD_DESC_RE = re.compile(rf"\((?:{_TYPE})*\)(?:V|{_TYPE})")
_METHOD_NAME_RE = re.compile(rf"<init>|<clinit>|{_IDENT}")
_FIELD_NAME_RE = re.compile(_IDENT)
_ID_RE = re.compile(r"[a-z]+(?:\.[A-Za-z0-9_-]+)+")
_VERSION_RE = re.compile(r"(\d{4})\.(0[1-9]|1[0-2])\.([1-9]\d*)")
_PERMISSION_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*\.permission\.[A-Z][A-Z0-9_]*")
_URL_RE = re.compile(r"https?://[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?::\d+)?(?:[/?#]\S*)?")
_PROPERTY_RE = re.compile(r"[A-Za-z0-9_.-]+\*?")
_FUNCTION_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\*?")
_PREFIX_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[A-Za-z0-9_]+)*\.")
_DOMAIN_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def is_class_descriptor(text: str) -> bool:
    """Whether ``text`` is a smali class descriptor such as ``Landroid/os/Build;``."""
    return _CLASS_RE.fullmatch(text) is not None


def is_type_descriptor(text: str) -> bool:
    """Whether ``text`` is a smali field type such as ``I``, ``[B`` or ``Ljava/lang/String;``."""
    return _TYPE_RE.fullmatch(text) is not None and text.count("[") <= 255


def is_method_descriptor(text: str) -> bool:
    """Whether ``text`` is a smali method descriptor such as ``(ILjava/lang/String;)V``."""
    return _METHOD_DESC_RE.fullmatch(text) is not None


def default_directory() -> Path:
    """``$FWSCAN_SIGNATURES`` when set, else :data:`DEFAULT_DIRECTORY`."""
    env = os.environ.get("FWSCAN_SIGNATURES")
    return Path(env) if env else DEFAULT_DIRECTORY


class _NoDuplicatesLoader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """PyYAML's safe loader (the libyaml one when there is one: five times faster), refusing
    a key written twice in one mapping (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in keys:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is written twice", key_node.start_mark
            )
        keys.add(key)
    return loader.construct_mapping(node)


_NoDuplicatesLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


@dataclass
class _Collected:
    """What the reader built, rule by rule, in file order."""

    versions: list[tuple[int, int, int]] = field(default_factory=list)
    sources: list[ApiRule] = field(default_factory=list)
    sinks: list[ApiRule] = field(default_factory=list)
    endpoints: list[EndpointRule] = field(default_factory=list)
    native: list[NativeRule] = field(default_factory=list)
    libraries: list[tuple[str, str]] = field(default_factory=list)
    """(id, prefix)."""
    ids: dict[str, str] = field(default_factory=dict)
    """Rule id -> where it is defined."""
    retired: dict[str, str] = field(default_factory=dict)
    """Retired id -> the file that retires it."""


class _Reader:
    """Reads every file of one directory, collecting problems instead of stopping at the first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.problems: list[str] = []
        self.out = _Collected()
        self.files: list[Path] = []

    # -- files ---------------------------------------------------------------------------

    def run(self) -> None:
        if not self.directory.is_dir():
            self.problems.append(f"{self.directory}: not a directory")
            return
        entries = sorted(self.directory.iterdir(), key=lambda p: p.name)
        for path in entries:
            if path.suffix == ".yml":
                self.problems.append(f"{path.name}: signature files end in .yaml, not .yml")
        self.files = [p for p in entries if p.suffix == ".yaml" and p.is_file()]
        known: list[tuple[str, Path]] = []
        for path in self.files:
            family = self._family(path)
            if family is not None:
                known.append((family, path))
        # canonical order: by family, the family's own file before its extra files
        order = list(FAMILIES)
        known.sort(key=lambda fp: (order.index(fp[0]), fp[1].stem != fp[0], fp[1].name))
        seen_families = {family for family, _ in known}
        for family, path in known:
            self._file(path, family)
        for family in FAMILIES:
            if family not in seen_families:
                self.problems.append(f"{self.directory}: no {family}.yaml file")
        for rid, where in sorted(self.out.ids.items()):
            if rid in self.out.retired:
                self.problems.append(
                    f"{where}: id {rid!r} is retired in {self.out.retired[rid]}; "
                    "ids are never reused: choose a new one"
                )
        self._check_overlaps()

    def _family(self, path: Path) -> str | None:
        stem = path.stem
        family = stem.split("-", 1)[0]
        if family not in FAMILIES or (stem != family and not re.fullmatch(r"[a-z0-9-]+", stem)):
            names = ", ".join(f"{f}.yaml" for f in FAMILIES)
            self.problems.append(
                f"{path.name}: unknown signature file (one of {names}, or <family>-<name>.yaml)"
            )
            return None
        return family

    def _file(self, path: Path, family: str) -> None:
        name = path.name
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoDuplicatesLoader)  # noqa: S506
        except UnicodeDecodeError as exc:
            self.problems.append(f"{name}: not UTF-8 text ({exc.reason})")
            return
        except yaml.YAMLError as exc:
            self.problems.append(f"{name}: not valid YAML: {_yaml_message(exc)}")
            return
        if not isinstance(data, dict):
            self.problems.append(f"{name}: the file must be a mapping with schema_version, rules")
            return
        for key in sorted(set(data) - _TOP_KEYS, key=str):
            self.problems.append(f"{name}: unknown top-level key {key!r}")
        if data.get("schema_version") != SCHEMA_VERSION:
            self.problems.append(
                f"{name}: schema_version: must be {SCHEMA_VERSION}, "
                f"not {data.get('schema_version')!r}"
            )
            return
        version = data.get("version")
        vm = _VERSION_RE.fullmatch(version) if isinstance(version, str) else None
        if vm is None:
            self.problems.append(
                f'{name}: version: must be a quoted "YYYY.MM.N" string, not {version!r}'
            )
        else:
            self.out.versions.append((int(vm[1]), int(vm[2]), int(vm[3])))
        retired = data.get("retired", [])
        if not isinstance(retired, list) or not all(isinstance(r, str) for r in retired):
            self.problems.append(f"{name}: retired: must be a list of rule ids")
        else:
            for rid in retired:
                self.out.retired.setdefault(rid, name)
        rules = data.get("rules")
        if not isinstance(rules, list):
            self.problems.append(f"{name}: rules: must be a list of rules")
            return
        for index, raw in enumerate(rules):
            self._rule(name, family, index, raw)

    # -- rules ---------------------------------------------------------------------------

    def _rule(self, name: str, family: str, index: int, raw: object) -> None:
        where = f"{name}: rules[{index}]"
        if not isinstance(raw, dict):
            self.problems.append(f"{where}: a rule must be a mapping")
            return
        rid = raw.get("id")
        if isinstance(rid, str):
            where = f"{where} ({rid})"
        rule = _RuleFields(raw, where, self.problems)
        for key in sorted(set(raw) - _KEYS[family], key=str):
            rule.fail(str(key), f"unknown key (allowed: {', '.join(sorted(_KEYS[family]))})")
        rule_id = rule.text("id")
        if rule_id is not None:
            prefix = FAMILIES[family]
            if not _ID_RE.fullmatch(rule_id):
                rule.fail("id", f"{rule_id!r} is not <family>.<category>.<name> of [A-Za-z0-9_-]")
            elif rule_id.split(".", 1)[0] != prefix:
                rule.fail("id", f"ids in {family} files start with '{prefix}.'")
            elif rule_id in self.out.ids:
                rule.fail("id", f"{rule_id!r} is already used in {self.out.ids[rule_id]}")
            else:
                self.out.ids[rule_id] = where
        severity = rule.severity()
        description = rule.text("description")
        references = rule.references()
        builder: Callable[[_RuleFields, str, Severity, str, tuple[str, ...]], None] = {
            "sources": self._api_source,
            "sinks": self._api_sink,
            "endpoints": self._endpoint,
            "native": self._native,
            "libraries": self._library,
        }[family]
        # the family's own fields are checked even when a common one failed, so that every
        # problem is reported at once; nothing is built from a rule with a problem
        builder(
            rule, rule_id or "?", severity or Severity.INFO, description or "?", references or ()
        )

    def _api(self, rule: _RuleFields, role: str, categories: Sequence[str]) -> ApiRule | None:
        category = rule.choice("category", categories)
        class_name = rule.text("class")
        if class_name is not None and not is_class_descriptor(class_name):
            rule.fail("class", f"{class_name!r} is not a smali class descriptor (Lpkg/Name;)")
        method = rule.text("method", required=False)
        field_name = rule.text("field", required=False)
        if (method is None) == (field_name is None):
            rule.fail("method", "give exactly one of method and field")
        is_field = field_name is not None
        member = field_name if is_field else method
        if method is not None and not _METHOD_NAME_RE.fullmatch(method):
            rule.fail("method", f"{method!r} is not a method name")
        if field_name is not None and not _FIELD_NAME_RE.fullmatch(field_name):
            rule.fail("field", f"{field_name!r} is not a field name")
        descriptor = rule.text("descriptor", required=is_field)
        if descriptor is not None:
            if is_field and not is_type_descriptor(descriptor):
                rule.fail("descriptor", f"{descriptor!r} is not a smali field type")
            if not is_field and not is_method_descriptor(descriptor):
                rule.fail("descriptor", f"{descriptor!r} is not a smali method descriptor")
        string_arg = rule.text("string_arg", required=False)
        if string_arg is not None and is_field:
            rule.fail("string_arg", "a field read has no argument")
        permission = rule.text("permission", required=False)
        if permission is not None and not _PERMISSION_RE.fullmatch(permission):
            rule.fail("permission", f"{permission!r} is not a permission name (x.permission.NAME)")
        min_api = rule.api_level("min_api")
        max_api = rule.api_level("max_api")
        if min_api is not None and max_api is not None and min_api > max_api:
            rule.fail("max_api", f"{max_api} is below min_api {min_api}")
        if not rule.ok or category is None or class_name is None or member is None:
            return None
        return ApiRule(
            id=rule.rule_id,
            role=role,
            category=category,
            class_name=class_name,
            member=member,
            descriptor=descriptor,
            is_field=is_field,
            string_arg=string_arg,
            permission=permission,
            min_api=min_api,
            max_api=max_api,
            severity=rule.sev,
            description=rule.desc,
            references=rule.refs,
        )

    def _api_source(
        self, rule: _RuleFields, rid: str, sev: Severity, desc: str, refs: tuple[str, ...]
    ) -> None:
        rule.set_common(rid, sev, desc, refs)
        built = self._api(rule, "source", SOURCE_CATEGORIES)
        if built is not None:
            self.out.sources.append(built)

    def _api_sink(
        self, rule: _RuleFields, rid: str, sev: Severity, desc: str, refs: tuple[str, ...]
    ) -> None:
        rule.set_common(rid, sev, desc, refs)
        built = self._api(rule, "sink", SINK_KINDS)
        if built is not None:
            self.out.sinks.append(built)

    def _endpoint(
        self, rule: _RuleFields, rid: str, sev: Severity, desc: str, refs: tuple[str, ...]
    ) -> None:
        rule.set_common(rid, sev, desc, refs)
        domains = rule.text_list("domains")
        for domain in domains or ():
            problem = _domain_problem(domain)
            if problem:
                rule.fail("domains", f"{domain!r}: {problem}")
        if domains is not None and len(set(domains)) != len(domains):
            rule.fail("domains", "a domain is listed twice")
        owner = rule.text("owner")
        country = rule.text("country")
        if country is not None and country not in COUNTRIES:
            rule.fail("country", f"{country!r} is not an ISO 3166-1 alpha-2 code (upper case)")
        purpose = rule.choice("purpose", PURPOSES)
        if rule.ok and domains and owner and country and purpose:
            self.out.endpoints.append(
                EndpointRule(
                    id=rid,
                    domains=tuple(domains),
                    owner=owner,
                    country=country,
                    purpose=purpose,
                    severity=sev,
                    description=desc,
                    references=refs,
                )
            )

    def _native(
        self, rule: _RuleFields, rid: str, sev: Severity, desc: str, refs: tuple[str, ...]
    ) -> None:
        rule.set_common(rid, sev, desc, refs)
        kind = rule.choice("kind", ("property", "function"))
        pattern = rule.text("pattern")
        category = rule.text("category")
        if kind is not None and pattern is not None:
            regex = _PROPERTY_RE if kind == "property" else _FUNCTION_RE
            if not regex.fullmatch(pattern) or pattern == "*":
                rule.fail(
                    "pattern",
                    f"{pattern!r} is not a {kind} name (a '*' may only end it, as a prefix)",
                )
            elif kind == "property" and pattern.endswith("*") and not pattern.endswith(".*"):
                rule.fail("pattern", "a property prefix ends at a dot: 'ril.*', not 'ril*'")
        if kind is not None and category is not None:
            allowed = (
                NATIVE_PROPERTY_CATEGORIES if kind == "property" else NATIVE_FUNCTION_CATEGORIES
            )
            if category not in allowed:
                rule.fail("category", f"{category!r} is not one of {', '.join(allowed)}")
        if rule.ok and kind and pattern and category:
            self.out.native.append(
                NativeRule(
                    id=rid,
                    kind=kind,
                    pattern=pattern,
                    category=category,
                    severity=sev,
                    description=desc,
                    references=refs,
                )
            )

    def _library(
        self, rule: _RuleFields, rid: str, sev: Severity, desc: str, refs: tuple[str, ...]
    ) -> None:
        rule.set_common(rid, sev, desc, refs)
        prefix = rule.text("prefix")
        rule.text("owner")
        if prefix is not None:
            if not _PREFIX_RE.fullmatch(prefix):
                rule.fail("prefix", f"{prefix!r} is not a Java package prefix ending in '.'")
            elif rid != "?" and rid != "library." + prefix[:-1]:
                rule.fail("id", f"the id of prefix {prefix!r} is 'library.{prefix[:-1]}'")
        if rid != "?" and sev is not Severity.INFO and rule.ok:
            rule.fail("severity", "library rules are info")
        if rule.ok and prefix:
            self.out.libraries.append((rid, prefix))

    # -- cross-rule checks -----------------------------------------------------------------

    def _check_overlaps(self) -> None:
        apis: dict[tuple[str, str, str, str | None], list[ApiRule]] = {}
        for api in (*self.out.sources, *self.out.sinks):
            key = (api.role, api.class_name, api.member, api.string_arg)
            apis.setdefault(key, []).append(api)
        for group in apis.values():
            descs: dict[str | None, str] = {}
            for api in group:
                if api.descriptor in descs:
                    self.problems.append(
                        f"{api.id}: matches the same API as {descs[api.descriptor]}"
                    )
                descs.setdefault(api.descriptor, api.id)
            if None in descs and len(descs) > 1:
                others = sorted(v for k, v in descs.items() if k is not None)
                self.problems.append(
                    f"{descs[None]}: covers every overload, so it overlaps {', '.join(others)}"
                )
        domains: dict[str, str] = {}
        for ep in self.out.endpoints:
            for domain in ep.domains:
                if domain in domains:
                    self.problems.append(f"{ep.id}: domain {domain!r} is in {domains[domain]}")
                domains.setdefault(domain, ep.id)
        natives: dict[tuple[str, str], str] = {}
        for nat in self.out.native:
            name = (nat.kind, nat.pattern)
            if name in natives:
                self.problems.append(f"{nat.id}: {nat.kind} {nat.pattern!r} is in {natives[name]}")
            natives.setdefault(name, nat.id)
        prefixes: dict[str, str] = {}
        for rid, prefix in self.out.libraries:
            if prefix in prefixes:
                self.problems.append(f"{rid}: prefix {prefix!r} is in {prefixes[prefix]}")
            prefixes.setdefault(prefix, rid)


class _RuleFields:
    """Typed access to one rule's fields; each problem names the rule and the field."""

    def __init__(self, raw: Mapping[Any, Any], where: str, problems: list[str]) -> None:
        self.raw = raw
        self.where = where
        self.problems = problems
        self.ok = True
        self.rule_id = ""
        self.sev = Severity.INFO
        self.desc = ""
        self.refs: tuple[str, ...] = ()

    def set_common(self, rid: str, sev: Severity, desc: str, refs: tuple[str, ...]) -> None:
        self.rule_id, self.sev, self.desc, self.refs = rid, sev, desc, refs

    def fail(self, key: str, message: str) -> None:
        self.ok = False
        self.problems.append(f"{self.where}: {key}: {message}")

    def text(self, key: str, *, required: bool = True) -> str | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                self.fail(key, "missing")
            return None
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {type(value).__name__} {value!r} (quote it)")
            return None
        value = value.strip()
        if not value:
            self.fail(key, "must not be empty")
            return None
        return value

    def text_list(self, key: str) -> list[str] | None:
        value = self.raw.get(key)
        if not isinstance(value, list) or not value:
            self.fail(key, "must be a non-empty list of strings")
            return None
        if not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(key, "must be a non-empty list of strings")
            return None
        return [v.strip() for v in value]

    def choice(self, key: str, allowed: Sequence[str]) -> str | None:
        value = self.text(key)
        if value is not None and value not in allowed:
            self.fail(key, f"{value!r} is not one of {', '.join(allowed)}")
            return None
        return value

    def severity(self) -> Severity | None:
        value = self.text("severity")
        if value is None:
            return None
        try:
            return Severity.parse(value)
        except ValueError as exc:
            self.fail("severity", str(exc))
            return None

    def references(self) -> tuple[str, ...] | None:
        refs = self.text_list("references")
        if refs is None:
            return None
        for ref in refs:
            if not _URL_RE.fullmatch(ref):
                self.fail("references", f"{ref!r} is not an http(s) URL")
        if len(set(refs)) != len(refs):
            self.fail("references", "a reference is listed twice")
        return tuple(refs)

    def api_level(self, key: str) -> int | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_API:
            self.fail(key, f"must be an API level between 1 and {_MAX_API}, not {value!r}")
            return None
        return value


def _domain_problem(domain: str) -> str | None:
    """Why ``domain`` cannot be an endpoint suffix, or ``None`` when it can."""
    if domain != domain.lower():
        return "write domains in lower case"
    labels = domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL_RE.fullmatch(label) for label in labels):
        return "not a host name (labels of a-z, 0-9 and '-', at least two)"
    if registrable_domain(domain) is None:
        return "not under a registrable domain of the Public Suffix List (a public suffix?)"
    return None


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(problem)


def _sha256(files: Sequence[Path]) -> str:
    """SHA-256 over each file's name and bytes, in name order (length-prefixed, so no two
    different sets of files give the same stream)."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        name = path.name.encode("utf-8")
        data = path.read_bytes()
        digest.update(len(name).to_bytes(4, "big") + name)
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def _read(directory: Path | None) -> _Reader:
    reader = _Reader(default_directory() if directory is None else Path(directory))
    reader.run()
    return reader


def check(directory: Path | None = None) -> list[str]:
    """Every problem of the signature files in ``directory`` (default: :func:`default_directory`),
    one line each; an empty list when they are all valid."""
    return list(_read(directory).problems)


def load_signatures(directory: Path | None = None) -> SignatureSet:
    """The checked :class:`SignatureSet` of ``directory`` (default: :func:`default_directory`).

    Raises :class:`~fwscan.errors.SignatureError` naming the first problem (and how many more
    there are; :func:`check` lists them all).
    """
    reader = _read(directory)
    if reader.problems:
        first, more = reader.problems[0], len(reader.problems) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise SignatureError(f"invalid signatures: {first}{suffix}")
    out = reader.out
    year, month, n = max(out.versions)
    return SignatureSet(
        version=f"{year:04d}.{month:02d}.{n}",
        sha256=_sha256(reader.files),
        sources=tuple(out.sources),
        sinks=tuple(out.sinks),
        endpoints=tuple(out.endpoints),
        native=tuple(out.native),
        library_prefixes=tuple(sorted(prefix for _, prefix in out.libraries)),
    )


def _short_class(descriptor: str) -> str:
    return descriptor[1:-1].rsplit("/", 1)[-1].replace("$", ".")


def _api_summary(rule: ApiRule) -> str:
    name = f"{_short_class(rule.class_name)}.{rule.member}"
    if rule.is_field:
        shown = f"{name} (field {rule.descriptor})"
    elif rule.descriptor is None:
        shown = f"{name} (every overload)"
    else:
        shown = f"{name}{rule.descriptor}"
    if rule.string_arg is not None:
        shown += f' with "{rule.string_arg}"'
    return f"{rule.category}: {shown}"


def describe(sigset: SignatureSet) -> list[dict[str, str]]:
    """One row per rule for ``fwscan signatures list``: ``id``, ``kind``, ``severity``,
    ``summary``; sources, sinks, endpoints, native rules, then library prefixes."""
    rows: list[dict[str, str]] = []
    for api in (*sigset.sources, *sigset.sinks):
        rows.append(
            {
                "id": api.id,
                "kind": api.role,
                "severity": api.severity.label,
                "summary": _api_summary(api),
            }
        )
    for ep in sigset.endpoints:
        rows.append(
            {
                "id": ep.id,
                "kind": "endpoint",
                "severity": ep.severity.label,
                "summary": f"{ep.purpose}: {', '.join(ep.domains)} ({ep.owner}, {ep.country})",
            }
        )
    for nat in sigset.native:
        rows.append(
            {
                "id": nat.id,
                "kind": "native",
                "severity": nat.severity.label,
                "summary": f"{nat.kind} {nat.pattern} ({nat.category})",
            }
        )
    for prefix in sigset.library_prefixes:
        rows.append(
            {
                "id": "library." + prefix[:-1],
                "kind": "library",
                "severity": Severity.INFO.label,
                "summary": f"library code: {prefix}*",
            }
        )
    return rows

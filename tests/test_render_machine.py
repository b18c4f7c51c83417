"""Machine and ticket outputs: SARIF 2.1.0, the diff and matrix JSON schemas, Markdown.

Real scans of the two synthesized Nokia 7 plus builds: the SARIF log validates against the
official OASIS schema (``tests/data/sarif-schema-2.1.0.json``, see ``tests/data/README.md``),
the diff and matrix JSON against fwscan's schemas, and the Markdown keeps its tables intact
when the firmware names things with Markdown and HTML in them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema
import pytest
from conftest import REPO

from fwscan.compare import diff, matrix
from fwscan.findings import Finding, Kind, Severity
from fwscan.pipeline import ScanOptions, scan
from fwscan.render.markdown import md, render_diff_md, render_scan_md
from fwscan.render.sarif import (
    FINGERPRINT_KEY,
    SYNTHETIC_RULES,
    URI_BASE_ID,
    artifact_uri,
    escape_message,
    render_sarif,
)
from fwscan.rules import SignatureSet
from fwscan.scanresult import ScanResult
from fwscan.signatures import load_signatures

PRE, FEB = "nokia7plus-prepatch", "nokia7plus-feb-patch"
AUTOREG = "com.qualcomm.qti.autoregistration"
SCHEMAS = REPO / "fwscan/data/schemas"
SARIF_SCHEMA = json.loads((REPO / "tests/data/sarif-schema-2.1.0.json").read_text())
HOSTILE = "| [x](javascript:alert(1)) <img src=x>"

# RFC 3986 relative reference without a scheme or authority (path-noscheme): the first
# segment has no ":"; every character is unreserved, a sub-delim, ":" or "@", or a %XX escape.
_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-F]{2})"
_PCHAR_NC = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=@]|%[0-9A-F]{2})"
RELATIVE_REF = re.compile(rf"^{_PCHAR_NC}+(?:/{_PCHAR}*)*$")


@pytest.fixture(scope="module")
def scans(samples: dict[str, Path]) -> dict[str, ScanResult]:
    return {name: scan(path, ScanOptions(jobs=1))[0] for name, path in samples.items()}


@pytest.fixture(scope="module")
def sigset() -> SignatureSet:
    return load_signatures()


@pytest.fixture(scope="module")
def sarif(scans: dict[str, ScanResult], sigset: SignatureSet) -> dict[str, dict[str, Any]]:
    return {name: json.loads(render_sarif(result, sigset)) for name, result in scans.items()}


def _run(log: dict[str, Any]) -> dict[str, Any]:
    assert len(log["runs"]) == 1
    run: dict[str, Any] = log["runs"][0]
    return run


def _locations(run: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in run["results"]:
        out += r.get("locations", []) + r.get("relatedLocations", [])
    for inv in run["invocations"]:
        for n in inv.get("toolExecutionNotifications", []):
            out += n.get("locations", [])
    return out


# -- SARIF ---------------------------------------------------------------------------------


def test_sarif_schema_file_is_the_official_one() -> None:
    assert SARIF_SCHEMA["id"] == (
        "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
    )
    assert jsonschema.validators.validator_for(SARIF_SCHEMA) is jsonschema.Draft4Validator
    jsonschema.Draft4Validator.check_schema(SARIF_SCHEMA)


@pytest.mark.parametrize("name", [PRE, FEB])
def test_sarif_validates(sarif: dict[str, dict[str, Any]], name: str) -> None:
    log = sarif[name]
    validator = jsonschema.validators.validator_for(SARIF_SCHEMA)(SARIF_SCHEMA)
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    assert log["version"] == "2.1.0"
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    run = _run(log)
    assert run["tool"]["driver"]["name"] == "fwscan"
    assert "informationUri" not in run["tool"]["driver"]
    assert run["invocations"] == [{"executionSuccessful": True}]
    assert run["originalUriBaseIds"][URI_BASE_ID]["description"]["text"]
    assert "uri" not in run["originalUriBaseIds"][URI_BASE_ID]


@pytest.mark.parametrize("name", [PRE, FEB])
def test_sarif_has_one_rule_per_signature_rule(
    scans: dict[str, ScanResult],
    sarif: dict[str, dict[str, Any]],
    sigset: SignatureSet,
    name: str,
) -> None:
    rules = _run(sarif[name])["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert len(ids) == len(set(ids))
    signature_ids = [
        r.id for r in (*sigset.sources, *sigset.sinks, *sigset.endpoints, *sigset.native)
    ]
    used = {f.rule for f in scans[name].findings}
    synthetic = used - set(signature_ids)
    assert synthetic <= set(SYNTHETIC_RULES), synthetic - set(SYNTHETIC_RULES)
    assert {"flow.network", "privilege.app", "endpoint.unlisted"} <= synthetic
    assert len(rules) == (
        len(sigset.sources) + len(sigset.sinks) + len(sigset.endpoints) + len(sigset.native)
    ) + len(synthetic)
    assert ids == signature_ids + sorted(synthetic)
    for rule in rules:
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
        severity = Severity.parse(rule["properties"]["severity"])
        expected = {4: "error", 3: "error", 2: "warning"}.get(severity.value, "note")
        assert rule["defaultConfiguration"]["level"] == expected
        score = rule["properties"].get("security-severity")
        if severity is Severity.INFO:
            assert score is None
        else:
            # GitHub wants a string holding a number between 0.1 and 10.0.
            assert isinstance(score, str)
            assert 0.1 <= float(score) <= 10.0
        assert "security" in rule["properties"]["tags"]
    zzhc = rules[ids.index("endpoint.chinatelecom.zzhc")]
    assert zzhc["helpUri"].startswith("https://")
    assert zzhc["properties"]["security-severity"] == "8.0"


@pytest.mark.parametrize("name", [PRE, FEB])
def test_every_result_points_at_its_rule(
    scans: dict[str, ScanResult], sarif: dict[str, dict[str, Any]], name: str
) -> None:
    run = _run(sarif[name])
    rules = run["tool"]["driver"]["rules"]
    findings = scans[name].findings
    assert len(run["results"]) == len(findings)
    levels = {"critical": "error", "high": "error", "medium": "warning"}
    for result, finding in zip(run["results"], findings, strict=True):
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == finding.rule
        assert result["level"] == levels.get(finding.severity.label, "note")
        assert result["partialFingerprints"] == {FINGERPRINT_KEY: finding.fingerprint}
        assert result["properties"]["severity"] == finding.severity.label
        assert result["properties"]["kind"] == finding.kind.value
        assert result["properties"]["attributes"] == dict(finding.attributes)
        assert finding.component in result["message"]["text"]
        assert len(result["locations"]) == 1
        assert len(result.get("relatedLocations", [])) == len(finding.evidence) - 1


def test_registration_flow_is_an_error_result(sarif: dict[str, dict[str, Any]]) -> None:
    def zzhc_flows(name: str) -> list[dict[str, Any]]:
        return [
            r
            for r in _run(sarif[name])["results"]
            if r["ruleId"] == "flow.network" and "zzhc.vnet.cn" in r["properties"]["target"]
        ]

    (flow,) = zzhc_flows(PRE)
    assert flow["level"] == "error"
    assert flow["properties"]["component"] == AUTOREG
    assert flow["properties"]["attributes"]["owner"] == "China Telecom, CN"
    assert re.fullmatch(r"[0-9a-f]{24}", flow["partialFingerprints"][FINGERPRINT_KEY])
    location = flow["locations"][0]
    artifact = location["physicalLocation"]["artifactLocation"]
    assert artifact["uri"] == "system/priv-app/AutoRegistration/AutoRegistration.apk!classes.dex"
    assert artifact["uriBaseId"] == URI_BASE_ID
    assert location["message"]["text"].startswith("sink ")
    (logical,) = location["logicalLocations"]
    assert logical["kind"] == "function"
    assert logical["fullyQualifiedName"].startswith(
        "Lcom/qualcomm/qti/autoregistration/RegistrationService;->registerDevice("
    )
    # A DEX offset counts code units: not a SARIF region, a property.
    assert "region" not in location["physicalLocation"]
    assert isinstance(location["properties"]["dexCodeUnitOffset"], int)
    reads = [r["message"]["text"] for r in flow["relatedLocations"]]
    assert "read TelephonyManager.getImei" in reads
    assert not zzhc_flows(FEB)


def test_regions_only_where_sarif_defines_them(sarif: dict[str, dict[str, Any]]) -> None:
    results = _run(sarif[PRE])["results"]
    (serial,) = [r for r in results if r["ruleId"] == "native.serial.ro-serialno"]
    physical = serial["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "vendor/bin/xtra-daemon"
    assert physical["region"]["byteOffset"] >= 0
    assert serial["locations"][0]["properties"]["section"] == ".rodata"
    (service,) = [r for r in results if r["ruleId"] == "service.network-binary"]
    physical = service["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"].endswith(".rc")
    assert physical["region"] == {"startLine": 1}


@pytest.mark.parametrize("name", [PRE, FEB])
def test_artifact_uris_are_relative_references(sarif: dict[str, dict[str, Any]], name: str) -> None:
    locations = _locations(_run(sarif[name]))
    assert locations
    for location in locations:
        uri = location["physicalLocation"]["artifactLocation"]["uri"]
        assert RELATIVE_REF.match(uri), uri


@pytest.mark.parametrize(
    "path",
    [
        "/system/priv-app/X/X.apk!classes2.dex",
        "/vendor/app/a b/ü:x#?%[1].apk!lib/arm64-v8a/libx.so",
        "/system/app/Z.apk!../../../etc/passwd",
        "/system/app/./weird\udcff\x01name",
        "/product/app/C:/x.apk",
    ],
)
def test_artifact_uri_mapping(path: str) -> None:
    uri = artifact_uri(path)
    assert RELATIVE_REF.match(uri), uri
    assert not {".", ".."} & set(uri.split("/"))
    assert "/" + unquote(uri, errors="surrogateescape") == path


def test_sarif_is_deterministic_and_survives_a_json_round_trip(
    scans: dict[str, ScanResult], sigset: SignatureSet
) -> None:
    result = scans[PRE]
    text = render_sarif(result, sigset)
    assert text == render_sarif(result, sigset)
    assert text == render_sarif(ScanResult.from_dict(result.to_dict()), sigset)
    assert text.isascii()


def test_sarif_messages_carry_no_links_from_the_firmware(
    scans: dict[str, ScanResult], sigset: SignatureSet
) -> None:
    hostile = _hostile_scan(scans[PRE])
    run = _run(json.loads(render_sarif(hostile, sigset)))
    (flow,) = [r for r in run["results"] if r["properties"]["target"] == HOSTILE]
    text = flow["message"]["text"]
    assert escape_message(HOSTILE) in text
    assert not _unescaped(text, "[") and not _unescaped(text, "]")
    validator = jsonschema.validators.validator_for(SARIF_SCHEMA)(SARIF_SCHEMA)
    assert not list(validator.iter_errors({"$schema": "x", "version": "2.1.0", "runs": [run]}))


def test_unknown_rule_ids_get_a_generic_rule(
    scans: dict[str, ScanResult], sigset: SignatureSet
) -> None:
    first = scans[PRE].findings[0]
    odd = dataclasses.replace(first, rule="flow.telepathy")
    result = dataclasses.replace(scans[PRE], findings=(odd, *scans[PRE].findings[1:]))
    run = _run(json.loads(render_sarif(result, sigset)))
    rules = run["tool"]["driver"]["rules"]
    assert rules[run["results"][0]["ruleIndex"]]["id"] == "flow.telepathy"


# -- diff and matrix JSON schemas ---------------------------------------------------------


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def test_diff_json_validates(scans: dict[str, ScanResult]) -> None:
    validator = jsonschema.Draft202012Validator(_schema("diff"))
    forward = diff(scans[PRE], scans[FEB]).to_dict()
    backward = diff(scans[FEB], scans[PRE]).to_dict()
    for doc in (forward, backward):
        errors = list(validator.iter_errors(doc))
        assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    statuses = {a["status"] for a in forward["apps"]} | {a["status"] for a in backward["apps"]}
    assert {"added", "removed", "changed", "kept"} <= statuses
    # The schema is exact: a removed app with no old record, or an unknown count, is refused.
    broken = json.loads(json.dumps(forward))
    removed = next(a for a in broken["apps"] if a["status"] == "removed")
    removed["old"] = None
    assert not validator.is_valid(broken)
    broken = json.loads(json.dumps(forward))
    broken["counts"]["widgets"] = {"added": 1}
    assert not validator.is_valid(broken)


def test_matrix_json_validates(scans: dict[str, ScanResult]) -> None:
    validator = jsonschema.Draft202012Validator(_schema("matrix"))
    doc = matrix([scans[PRE], scans[FEB]]).to_dict()
    errors = list(validator.iter_errors(doc))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    assert any(row["partial"] for row in doc["rows"])
    broken = json.loads(json.dumps(doc))
    broken["rows"][0]["cells"][0] = "maybe"
    assert not validator.is_valid(broken)


def test_schema_copies_match_the_scan_schema() -> None:
    scan_schema = _schema("scan")
    copies = {
        "sha256": scan_schema["$defs"]["sha256"],
        "severity": scan_schema["$defs"]["severity"],
        "kind": scan_schema["$defs"]["kind"],
        "input": scan_schema["properties"]["input"],
        "build": scan_schema["properties"]["build"],
        "summary": scan_schema["properties"]["summary"],
    }
    diff_defs = _schema("diff")["$defs"]
    matrix_defs = _schema("matrix")["$defs"]
    for key, value in copies.items():
        assert diff_defs[key] == value, key
        assert matrix_defs[key] == value, key
    assert diff_defs["app"] == scan_schema["$defs"]["app"]
    assert diff_defs["finding"] == scan_schema["$defs"]["finding"]


# -- Markdown ------------------------------------------------------------------------------


def _unescaped(text: str, char: str) -> list[int]:
    """Positions of ``char`` not escaped by an odd run of backslashes."""
    out = []
    for i, ch in enumerate(text):
        if ch == char:
            run = len(text[:i]) - len(text[:i].rstrip("\\"))
            if run % 2 == 0:
                out.append(i)
    return out


def _tables(text: str) -> list[list[str]]:
    """The GFM tables of a document, as lists of lines (header, delimiter, rows)."""
    tables: list[list[str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            tables.append(block)
        else:
            assert not lines[i].startswith("|"), f"stray table line: {lines[i]!r}"
            i += 1
    return tables


def _assert_inert(text: str) -> None:
    """Tables keep their columns; no link, image or HTML tag comes from the firmware."""
    tables = _tables(text)
    assert tables
    for table in tables:
        columns = len(_unescaped(table[1], "|"))
        for line in table:
            assert len(_unescaped(line, "|")) == columns, line
            assert line.endswith("|")
    for i in _unescaped(text, "<"):
        raise AssertionError(f"raw '<' at {i}: {text[max(0, i - 40) : i + 40]!r}")
    assert not _unescaped(text, "["), "raw '[' in the Markdown"
    assert not [i for i in _unescaped(text, "]") if text[i + 1 : i + 2] == "("]
    for line in text.split("\n"):
        assert not line.startswith("# ") or line.startswith("# fwscan "), line


def _hostile_scan(result: ScanResult) -> ScanResult:
    """The scan with the registration flow's title and target, and the app's label, replaced
    by Markdown and HTML."""
    findings: list[Finding] = []
    for f in result.findings:
        if f.kind is Kind.FLOW and f.component == AUTOREG:
            findings.append(dataclasses.replace(f, title=HOSTILE, target=HOSTILE))
        else:
            findings.append(f)
    apps = tuple(
        dataclasses.replace(a, label=HOSTILE + "\n# owned\n|a|b|") if a.package == AUTOREG else a
        for a in result.apps
    )
    return dataclasses.replace(result, findings=tuple(findings), apps=apps)


def test_markdown_scan_summary(scans: dict[str, ScanResult]) -> None:
    text = render_scan_md(scans[PRE])
    assert text.startswith("# fwscan scan: Nokia 7 plus 00WW\\_3\\_22C\n")
    assert md(scans[PRE].build.fingerprint) in text
    assert scans[PRE].input.sha256 in text
    network = text.index("## Identifiers sent over the network or by SMS")
    endpoints = text.index("## Endpoints by owner")
    assert network < endpoints
    first_row = text[network:].split("\n")[4]
    assert "zzhc.vnet.cn" in first_row
    assert "China Telecom" in first_row
    assert "| high |" in first_row
    _assert_inert(text)
    assert text == render_scan_md(scans[PRE])
    feb = render_scan_md(scans[FEB])
    assert "zzhc" not in feb


def test_markdown_diff_summary(scans: dict[str, ScanResult]) -> None:
    d = diff(scans[PRE], scans[FEB])
    text = render_diff_md(d)
    lines = text.split("\n")
    assert lines[0].startswith("# fwscan diff: ")
    assert lines[2] == md(d.headline)
    assert "removes 1 app (com.qualcomm.qti.autoregistration)" in d.headline
    assert "### Removed apps" in text
    assert "### Removed: flow (1)" in text
    assert "### Changed apps" in text
    _assert_inert(text)


def test_markdown_escapes_hostile_firmware_text(scans: dict[str, ScanResult]) -> None:
    hostile = _hostile_scan(scans[PRE])
    scan_md = render_scan_md(hostile)
    assert md(HOSTILE) in scan_md
    _assert_inert(scan_md)
    diff_md = render_diff_md(diff(hostile, scans[FEB]))
    assert md(HOSTILE) in diff_md
    assert "# owned" not in diff_md.split("\n")
    _assert_inert(diff_md)


def test_md_escaping() -> None:
    assert md("a|b") == "a\\|b"
    assert md("[x](javascript:alert(1))") == "\\[x\\](javascript:alert(1))"
    assert md("<img src=x>") == "\\<img src=x\\>"
    assert md("a\nb\r\nc\td") == "a b  c d"
    assert md("*_`~$&\\") == "\\*\\_\\`\\~\\$\\&\\\\"
    assert md("bidi\u202eevil\x00") == "bidi\ufffdevil\ufffd"
    assert md("x\udcff") == "x\ufffd"

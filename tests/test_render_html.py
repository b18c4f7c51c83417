"""HTML reports: content, structure, self-containment, determinism, and escaping.

Real scans of the synthesized Nokia 7 plus builds, and of a HOSTILE build (made with
``fwscan.synth``) whose app label, version, URLs, file names, build fingerprint, display id and
input file name are HTML and script. Each report is parsed with ``html.parser``: the only
elements are the ones the templates write, the only script is the report's own (allowed by its
hash in the Content-Security-Policy), no element has an event-handler attribute, and the hostile
text is there as visible text.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import re
import shutil
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SAMPLES

from fwscan.compare import diff, matrix
from fwscan.model import CoverageRecord, Status
from fwscan.pipeline import ScanOptions, scan
from fwscan.render.html import render_diff, render_matrix, render_scan
from fwscan.scanresult import ArtifactError, ScanResult
from fwscan.synth import manifest as manifest_mod
from fwscan.synth.build import synthesize

PRE, FEB = "nokia7plus-prepatch", "nokia7plus-feb-patch"
AUTOREG = "com.qualcomm.qti.autoregistration"
GENERATED = "2026-02-03 04:05 UTC"

# -- the hostile build ------------------------------------------------------------------------

HOSTILE_LABEL = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
HOSTILE_FLOW_URL = 'http://evil.example/"><script>window.__xss=3</script>'
HOSTILE_STRINGS = (
    HOSTILE_FLOW_URL,
    "https://x.example/</title><svg onload=window.__xss=4>",
    'http://tracker-evil.com/"><script>window.__xss=11</script>',
    "https://x.cn/</title><svg onload=window.__xss=12>",
)
HOSTILE_FILE = "/system/etc/permissions/<img src=x onerror=window.__xss=5>.xml"
HOSTILE_PERMISSION = "<svg onload=window.__xss=9>"
HOSTILE_NATIVE = "/vendor/bin/evil<svg onload=window.__xss=13>"
HOSTILE_FINGERPRINT = (
    'Nokia/<b>Onyx</b>/B2N:9/"quoted"/<script>window.__xss=6</script>:user/release-keys'
)
HOSTILE_DISPLAY_ID = '00WW_<b>bold</b>_"quoted"'
HOSTILE_VERSION = '1.0"><script>window.__xss=8</script>'
HOSTILE_ZIP = "hostile-<img src=x onerror=window.__xss=10>.zip"
HOSTILE_PACKAGE = "com.evil.registration"
HOSTILE_TEXTS = (
    HOSTILE_LABEL,
    HOSTILE_FLOW_URL,
    HOSTILE_FILE,
    HOSTILE_PERMISSION,
    HOSTILE_NATIVE,
    HOSTILE_FINGERPRINT,
    HOSTILE_DISPLAY_ID,
    HOSTILE_VERSION,
    HOSTILE_ZIP,
)
"""Firmware texts the scan report must show, as text."""


def hostile_manifest() -> dict[str, Any]:
    """A build extending the pre-patch Nokia with HTML and script in every field it can."""
    return {
        "schema_version": 1,
        "extends": "nokia7plus-prepatch.yaml",
        "build": {"fingerprint": HOSTILE_FINGERPRINT, "display_id": HOSTILE_DISPLAY_ID},
        "apps": [
            {
                "package": HOSTILE_PACKAGE,
                "path": "/system/priv-app/Evil/Evil.apk",
                "version_code": 7,
                "version_name": HOSTILE_VERSION,
                "key": "platform",
                "shared_user_id": "android.uid.phone",
                "label": HOSTILE_LABEL,
                "permissions": [
                    "android.permission.READ_PHONE_STATE",
                    "android.permission.INTERNET",
                ],
                "components": [{"kind": "service", "name": ".EvilService", "exported": True}],
                "behaviours": [
                    {
                        "class": ".EvilService",
                        "method": "send",
                        "reads": ["imei", "imsi"],
                        "sink": "http_post",
                        "target": HOSTILE_FLOW_URL,
                    },
                    {"class": ".EvilService", "method": "strs", "strings": list(HOSTILE_STRINGS)},
                ],
            }
        ],
        "natives": [
            {
                "path": HOSTILE_NATIVE,
                "kind": "exec",
                "imports": ["getaddrinfo", "socket", "connect", "__system_property_get"],
                "strings": ["ro.serialno", "tracker-evil.com"],
            }
        ],
        "files": [
            {
                "path": HOSTILE_FILE,
                "text": (
                    '<?xml version="1.0" encoding="utf-8"?>\n<permissions>\n'
                    f'  <privapp-permissions package="{HOSTILE_PACKAGE}">\n'
                    '    <permission name="&lt;svg onload=window.__xss=9&gt;"/>\n'
                    "  </privapp-permissions>\n</permissions>\n"
                ),
            }
        ],
    }


def build_hostile(folder: Path) -> Path:
    """Synthesize the hostile build into ``folder``; its path (the file name is hostile too)."""
    shutil.copy(SAMPLES / f"{PRE}.yaml", folder / f"{PRE}.yaml")
    spec_path = folder / "hostile.yaml"
    spec_path.write_text(yaml.safe_dump(hostile_manifest(), sort_keys=False), encoding="utf-8")
    spec = manifest_mod.load(spec_path)
    return synthesize(spec, folder / HOSTILE_ZIP).path


def scan_all(samples: dict[str, Path], folder: Path) -> dict[str, ScanResult]:
    """The two sample builds and the hostile one, scanned."""
    out = {name: scan(path, ScanOptions(jobs=1))[0] for name, path in samples.items()}
    out["hostile"] = scan(build_hostile(folder), ScanOptions(jobs=1))[0]
    return out


def render_all(results: dict[str, ScanResult]) -> dict[str, str]:
    """Every report kind, for the normal builds and with the hostile build in it."""
    pre, feb, bad = results[PRE], results[FEB], results["hostile"]
    return {
        "scan": render_scan(pre, generated=GENERATED),
        "diff": render_diff(diff(pre, feb), generated=GENERATED),
        "matrix": render_matrix(matrix([pre, feb]), generated=GENERATED),
        "hostile-scan": render_scan(bad, generated=GENERATED),
        "hostile-diff": render_diff(diff(pre, bad), generated=GENERATED),
        "hostile-matrix": render_matrix(matrix([pre, bad, feb]), generated=GENERATED),
    }


# -- a small DOM ------------------------------------------------------------------------------

VOID = frozenset({"meta", "link", "input", "br", "img", "hr", "wbr", "source", "col", "area"})
TEMPLATE_TAGS = frozenset(
    {
        *("html", "head", "meta", "link", "title", "style", "body", "script"),
        *("header", "nav", "main", "section", "footer", "h1", "h2", "h3", "h4", "p", "div"),
        *("a", "ul", "li", "dl", "dt", "dd", "code", "span", "em", "strong", "br"),
        *("table", "caption", "thead", "tbody", "tr", "th", "td", "details", "summary"),
        *("button", "label", "input", "select", "option"),
    }
)
"""Every element the templates write: anything else came from the firmware."""


@dataclass
class Node:
    """An element, its attributes, and its content (text and child elements, in order)."""

    tag: str
    attrs: dict[str, str]
    content: list[str | Node] = field(default_factory=list)

    @property
    def children(self) -> list[Node]:
        """The child elements."""
        return [c for c in self.content if isinstance(c, Node)]

    def iter(self) -> list[Node]:
        """This node and every descendant, in document order."""
        out = [self]
        for c in self.children:
            out.extend(c.iter())
        return out

    def find_all(self, tag: str) -> list[Node]:
        """Descendants with this tag name."""
        return [n for n in self.iter()[1:] if n.tag == tag]

    def by_id(self, ident: str) -> Node:
        """The descendant with this id."""
        found = [n for n in self.iter() if n.attrs.get("id") == ident]
        assert len(found) == 1, ident
        return found[0]

    def all_text(self) -> str:
        """The text of this node and its descendants, in document order."""
        return "".join(c if isinstance(c, str) else c.all_text() for c in self.content)


class DomBuilder(HTMLParser):
    """Builds a :class:`Node` tree; also records every start tag, including stray ones."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if len(values) != len(attrs):
            self.problems.append(f"duplicate attribute in <{tag}>")
        self.tags.append((tag, values))
        node = Node(tag, values)
        self.stack[-1].content.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if self.stack[-1].tag != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1].tag}>")
            if tag not in [n.tag for n in self.stack]:
                return
            while self.stack[-1].tag != tag:
                self.stack.pop()
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].content.append(data)


def parse(document: str) -> DomBuilder:
    """The document parsed; nesting errors are in ``problems``."""
    builder = DomBuilder()
    builder.feed(document)
    builder.close()
    builder.problems.extend(f"<{n.tag}> not closed" for n in builder.stack[1:])
    return builder


def visible_text(node: Node) -> str:
    """Text outside ``<script>``, ``<style>`` and ``<head>``, whitespace collapsed."""
    if node.tag in ("script", "style", "head"):
        return ""
    parts = [c if isinstance(c, str) else visible_text(c) for c in node.content]
    return re.sub(r"\s+", " ", "".join(parts))


def table_rows(table: Node) -> list[str]:
    """The text of each body row."""
    (body,) = table.find_all("tbody")
    return [re.sub(r"\s+", " ", row.all_text()).strip() for row in body.children if row.tag == "tr"]


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results(
    samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ScanResult]:
    return scan_all(samples, tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def reports(results: dict[str, ScanResult]) -> dict[str, str]:
    return render_all(results)


@pytest.fixture(scope="module")
def doms(reports: dict[str, str]) -> dict[str, DomBuilder]:
    return {name: parse(text) for name, text in reports.items()}


# -- content ----------------------------------------------------------------------------------


def test_scan_report_puts_the_registration_flow_first(doms: dict[str, DomBuilder]) -> None:
    root = doms["scan"].root
    text = visible_text(root)
    # Summary: identity, counts, then the flows off the device (most severe first).
    for fact in (
        "Nokia/Onyx_00WW/B2N_sprout:9/PPR1.180610.011/00WW_3_22C:user/release-keys",
        "Nokia 7 plus",
        "B2N_sprout",
        "00WW_3_22C",
        "2019-01-01",
        "nokia7plus-prepatch.zip",
    ):
        assert fact in text
    summary = root.by_id("summary")
    headings = [h.all_text() for h in summary.find_all("h3")]
    assert headings[:3] == ["Build", "Findings", "Identifiers sent off the device"]
    outward = next(t for t in summary.find_all("table") if "network or SMS" in t.all_text())
    rows = table_rows(outward)
    assert AUTOREG in rows[0]
    assert "zzhc.vnet.cn" in rows[0]
    assert "China Telecom, CN" in rows[0]
    assert "IMEI, ICCID (SIM serial), IMSI, cell location" in rows[0]
    assert rows[0].split()[0] == "high"
    assert not any("camera2" in r for r in rows), "a file flow is not sent off the device"
    # Endpoints grouped by owner and country; privileged apps with their reasons.
    owners = [t for t in summary.find_all("table") if "attributes to an owner" in t.all_text()]
    owner_rows = table_rows(owners[0])
    assert owner_rows[0].startswith("China Telecom CN registration zzhc.vnet.cn")
    assert any(r.startswith("Qualcomm US assistance") for r in owner_rows)
    privileged = [t for t in summary.find_all("table") if "priv-app folder" in t.all_text()]
    autoreg_row = next(r for r in table_rows(privileged[0]) if AUTOREG in r)
    assert "in a priv-app folder" in autoreg_row
    assert "system shared user android.uid.phone" in autoreg_row
    assert "signed with the platform key" in autoreg_row


def test_scan_report_has_every_finding_with_evidence(
    doms: dict[str, DomBuilder], results: dict[str, ScanResult]
) -> None:
    root = doms["scan"].root
    result = results[PRE]
    assert len(table_rows(root.by_id("findings-table"))) == len(result.findings)
    assert len(table_rows(root.by_id("flows-table"))) == 3
    endpoints = table_rows(root.by_id("endpoints-table"))
    assert len(endpoints) == sum(1 for f in result.findings if f.kind.value == "endpoint")
    assert "zzhc.vnet.cn" in endpoints[0]
    # The app with the most severe finding comes first, with manifest facts and evidence.
    app = root.by_id("app-1")
    app_text = visible_text(app)
    assert AUTOREG in visible_text(app.find_all("h3")[0])
    for fact in (
        "/system/priv-app/AutoRegistration/AutoRegistration.apk",
        "android.uid.phone",
        "android.permission.READ_PRIVILEGED_PHONE_STATE",
        "com.qualcomm.qti.autoregistration.BootCompletedReceiver",
        "exported",
        "platform_key",
        "Lcom/qualcomm/qti/autoregistration/RegistrationService;",
        "registerDevice(Landroid/content/Context;)V",
        "0x000d (13 code units)",
        "read TelephonyManager.getImei",
        "sink HttpURLConnection.getOutputStream",
    ):
        assert fact in app_text, fact
    assert [c.tag for c in app.children if c.tag == "details"] == ["details", "details"]
    # Native evidence sits under the other components, with a file path.
    others = visible_text(root.by_id("components"))
    assert "/vendor/bin/xtra-daemon" in others
    # Coverage: every record, with the skipped boot image and its reason; methodology.
    coverage = table_rows(root.by_id("coverage").find_all("table")[0])
    assert len(coverage) == len(result.coverage)
    assert any("boot" in r and "skipped" in r and "not a filesystem" in r for r in coverage)
    method = visible_text(root.by_id("methodology"))
    for fact in (
        result.signatures_sha256,
        result.signatures_version,
        result.input.sha256,
        f"analyzer version {result.analyzer_version}",
        GENERATED,
        "register-level taint",
    ):
        assert fact in method


def test_diff_report_starts_with_the_headline(
    doms: dict[str, DomBuilder], results: dict[str, ScanResult]
) -> None:
    root = doms["diff"].root
    d = diff(results[PRE], results[FEB])
    (header,) = root.find_all("header")
    boxes = [n for n in header.iter() if n.attrs.get("class") == "headline"]
    assert len(boxes) == 1
    assert visible_text(boxes[0]).strip() == d.headline
    assert "removes 1 app (com.qualcomm.qti.autoregistration)" in d.headline
    builds = visible_text(root.by_id("builds"))
    for side in (results[PRE], results[FEB]):
        for fact in (side.build.fingerprint, side.build.display_id, side.input.sha256):
            assert fact in builds
        assert side.build.security_patch in builds
    assert AUTOREG in visible_text(root.by_id("apps-removed"))
    changed = visible_text(root.by_id("apps-changed"))
    assert "version 28 (9) -> 29 (9.0.1)" in changed
    assert "version 12 (1.2) -> 13 (1.3)" in changed
    flows = table_rows(root.by_id("changes-flow"))
    assert len(flows) == 1
    assert flows[0].startswith("removed high")
    assert "zzhc.vnet.cn" in flows[0]
    # Kept findings are there, but collapsed.
    kept = root.by_id("kept-flow")
    details = [n for n in root.by_id("kind-flow").iter() if n.tag == "details"]
    assert details
    assert kept in details[0].iter()
    assert "open" not in details[0].attrs
    assert len(table_rows(kept)) == 2


def test_matrix_report_lists_partial_rows_first(
    doms: dict[str, DomBuilder], results: dict[str, ScanResult]
) -> None:
    root = doms["matrix"].root
    table = root.by_id("matrix-table")
    header = visible_text(table.find_all("thead")[0])
    for r in (results[PRE], results[FEB]):
        assert r.build.display_id in header
        assert r.build.fingerprint in header
        assert r.build.security_patch in header
    rows = table_rows(table)
    assert rows[0].startswith(f"app {AUTOREG} high some")
    assert "present" in rows[0]
    assert "absent" in rows[0]
    m = matrix([results[PRE], results[FEB]])
    assert len(rows) == len(m.rows)
    for text, row in zip(rows, m.rows, strict=True):
        assert row.label in text


# -- properties of every report ---------------------------------------------------------------

KINDS = ("scan", "diff", "matrix", "hostile-scan", "hostile-diff", "hostile-matrix")


def _csp(root: Node) -> dict[str, list[str]]:
    metas = [m for m in root.find_all("meta") if m.attrs.get("http-equiv")]
    assert len(metas) == 1
    assert metas[0].attrs["http-equiv"] == "Content-Security-Policy"
    out = {}
    for part in metas[0].attrs["content"].split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@pytest.mark.parametrize("kind", KINDS)
def test_self_contained_with_a_strict_policy(doms: dict[str, DomBuilder], kind: str) -> None:
    root = doms[kind].root
    csp = _csp(root)
    assert csp["default-src"] == ["'none'"]
    assert csp["img-src"] == ["data:"]
    (script,) = root.find_all("script")
    (style,) = root.find_all("style")
    assert csp["script-src"] == [_sha(script.all_text())]
    assert csp["style-src"] == [_sha(style.all_text())]
    for tag, attrs in doms[kind].tags:
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("#", "data:")), f"<{tag} {name}={value!r}>"
    assert "@import" not in style.all_text()
    assert "url(" not in style.all_text()


@pytest.mark.parametrize("kind", KINDS)
def test_well_formed(doms: dict[str, DomBuilder], kind: str) -> None:
    assert doms[kind].problems == []
    assert doms[kind].root.children[0].tag == "html"


@pytest.mark.parametrize("kind", KINDS)
def test_accessible_structure(doms: dict[str, DomBuilder], kind: str) -> None:
    root = doms[kind].root
    (html,) = root.find_all("html")
    assert html.attrs["lang"] == "en"
    assert len(root.find_all("main")) == 1
    assert len(root.find_all("h1")) == 1
    assert all(n.attrs.get("aria-label") for n in root.find_all("nav"))
    levels = [int(n.tag[1]) for n in root.iter() if re.fullmatch(r"h[1-6]", n.tag)]
    assert levels[0] == 1
    for before, after in itertools.pairwise(levels):
        assert after <= before + 1, f"heading jumps from h{before} to h{after}"
    for table in root.find_all("table"):
        assert len([c for c in table.children if c.tag == "caption"]) == 1
        for head in table.find_all("thead"):
            assert all(th.attrs.get("scope") == "col" for th in head.find_all("th"))
        for body in table.find_all("tbody"):
            assert all(th.attrs.get("scope") == "row" for th in body.find_all("th"))
        if "sortable" in table.attrs.get("class", "").split():
            for th in table.find_all("thead")[0].find_all("th"):
                assert th.find_all("button"), "sortable headers are buttons"
    ids = [n.attrs["id"] for n in root.iter() if "id" in n.attrs]
    assert len(ids) == len(set(ids))
    labels = {n.attrs["for"] for n in root.find_all("label")}
    for control in root.find_all("input") + root.find_all("select"):
        assert control.attrs["id"] in labels
    for bar in (n for n in root.iter() if n.attrs.get("class") == "filter"):
        assert bar.attrs["data-table"] in ids
    # Severity is written as a word, not only a colour.
    for badge in (n for n in root.iter() if "sev" in n.attrs.get("class", "").split()):
        assert badge.all_text() in ("critical", "high", "medium", "low", "info")


def test_deterministic(results: dict[str, ScanResult], reports: dict[str, str]) -> None:
    again = render_all(results)
    assert again == reports
    # A saved result read back renders to the same bytes.
    pre = results[PRE]
    restored = ScanResult.from_dict(pre.to_dict())
    assert render_scan(restored, generated=GENERATED) == reports["scan"]
    assert render_scan(pre, generated="another day") != reports["scan"]


# -- escaping ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hostile-scan", "hostile-diff", "hostile-matrix"])
def test_firmware_text_is_escaped(
    reports: dict[str, str], doms: dict[str, DomBuilder], kind: str
) -> None:
    document = reports[kind]
    dom = doms[kind]
    # Only the templates' own elements, one script (ours), no event handler anywhere.
    stray = {tag for tag, _ in dom.tags} - TEMPLATE_TAGS
    assert not stray, f"elements the templates do not write: {sorted(stray)}"
    scripts = [attrs for tag, attrs in dom.tags if tag == "script"]
    assert scripts == [{}]
    for tag, attrs in dom.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), f"<{tag} {name}>"
            assert "javascript:" not in value.lower()
            assert "__xss" not in value, f"firmware text in <{tag} {name}={value!r}>"
    (script,) = dom.root.find_all("script")
    assert "__xss" not in script.all_text()
    # Nothing hostile survives unescaped in the source.
    for raw in ("<script>window.__xss", "<img src", "<svg onload", "<b>", "</title><svg"):
        assert raw not in document
    assert re.search(r"<[a-z]+[^>]*\sonerror=", document) is None
    assert re.search(r"<[a-z]+[^>]*\sonload=", document) is None
    # ... and it is shown to the reader as text.
    text = visible_text(dom.root)
    assert HOSTILE_DISPLAY_ID in text
    if kind == "hostile-scan":
        for hostile in HOSTILE_TEXTS:
            assert hostile in text, hostile
        (title,) = dom.root.find_all("title")
        assert HOSTILE_DISPLAY_ID in title.all_text()
    if kind == "hostile-diff":
        assert HOSTILE_PACKAGE in visible_text(dom.root.by_id("apps-added"))
        assert HOSTILE_FLOW_URL in text
        assert HOSTILE_ZIP in text
    if kind == "hostile-matrix":
        assert HOSTILE_FINGERPRINT in text
        assert HOSTILE_VERSION in text


def test_coverage_failures_and_artifact_errors_are_shown_escaped(
    results: dict[str, ScanResult],
) -> None:
    # The hostile scan, with a failed partition and an analysis error added to its record.
    bad = results["hostile"]
    failed = CoverageRecord(
        f"{HOSTILE_ZIP} > payload.bin > <b>odm</b>", "partition", "ext4", Status.FAILED, "<i>x"
    )
    error = ArtifactError(HOSTILE_FILE, "0" * 64, "apk", "timeout", HOSTILE_LABEL)
    result = dataclasses.replace(bad, coverage=(*bad.coverage, failed), errors=(error,))
    document = render_scan(result, generated=GENERATED)
    dom = parse(document)
    assert dom.problems == []
    stray = {tag for tag, _ in dom.tags} - TEMPLATE_TAGS
    assert not stray
    coverage = dom.root.by_id("coverage")
    rows = table_rows(coverage.find_all("table")[0])
    assert rows[-1] == f"{HOSTILE_ZIP} > payload.bin > <b>odm</b> partition ext4 failed <i>x"
    errors = table_rows(coverage.find_all("table")[1])
    assert errors == [f"{HOSTILE_FILE} apk timeout {HOSTILE_LABEL} {'0' * 64}"]
    assert "Part of this firmware was not analysed" in visible_text(dom.root.by_id("summary"))

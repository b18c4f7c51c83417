"""Benchmark: fwscan's identifier reads and leak flows scored against DroidBench 2.0.

Run on demand (``python benchmarks/droidbench.py``), never as a test. Reads
``../shared/corpus/droidbench/`` (119 APKs in DroidBench's category folders, and ``truth.json``,
see ``../shared/corpus/SOURCES.md``) and prints tables; nothing is asserted.

How each APK is analysed: exactly as ``fwscan scan`` does it, one artifact at a time
(:func:`fwscan.analyze.artifact.analyze`, then :meth:`fwscan.assess.Assessor.code_findings`
for the device path ``/<folder>/<name>.apk`` and the app's package). Per-APK analysis is needed
because a scan of the whole directory merges the findings of apps that share a package name
(73 DroidBench apps are all ``de.ecspride``) and keeps at most ``MAX_EVIDENCE`` evidence items
per merged finding, so an app can no longer be told from another; the full run also does that
one ``scan()`` of the directory (jobs=2, no cache), times it, and reports how many apps lose
findings to the merge.

Mapping of truth.json names to fwscan's (the truth names come from ``source_kinds`` and
``sink_kinds`` of truth.json):

======================  =========================  ==========================================
truth source            fwscan read category       truth API
======================  =========================  ==========================================
``imei``                ``imei``                   TelephonyManager.getDeviceId()
``sim_serial``          ``iccid``                  TelephonyManager.getSimSerialNumber()
``imsi``                ``imsi``                   TelephonyManager.getSubscriberId()
``location``            ``location``               LocationManager.getLastKnownLocation /
                                                   requestLocationUpdates, Location.getLat...
``password_field``      (not modelled)             EditText.getText() on a password input
``intent_data``         (not modelled)             data received in an Intent
======================  =========================  ==========================================

======================  =========================
truth sink              fwscan flow ``sink``
======================  =========================
``network``             ``network``
``sms``                 ``sms``
``log``                 ``log``
``file``                ``file``
``intent``              ``ipc``
``process``             (not modelled)
======================  =========================

Scoring:

* **Reads** (recall only: truth lists what app code calls, not every library call): for each
  app, the categories of ``sources_present`` and ``leak_sources`` against fwscan's ``read``
  findings of the mapped category; "any code" counts library code too, "app code" needs one call
  site outside library code (the finding's ``library`` flag is false). Every app counts.
* **Leaks**, per app and sink kind: an app whose truth has ``expected_leaks > 0`` and the sink
  kind in ``leak_sinks`` and for which fwscan reports a ``flow`` of that sink kind (from one of
  the truth's leak sources) is a TP; no such flow is a FN; a fwscan flow of a sink kind the
  truth does not list for that app (including apps with no expected leak) is a FP. A flow of the
  right sink kind but from another identifier counts as FP and FN. The main rows count only
  truth leaks fwscan can model (a modelled source and sink); one row adds the leaks from
  unmodelled sources (password field, intent data) as misses.
* **Not scored**: apps with ``expected_leaks`` null (the two inter-app helpers),
  ``uncertain`` (the APK or the count is ambiguous) or ``implicit_flow`` (information flows
  through conditions, which fwscan, like FlowDroid, does not track). They are listed apart with
  what fwscan reports; their reads are still scored.
* **Baseline** (measured in the same run): co-occurrence, i.e. an app whose own code reads a
  modelled identifier and calls a sink API of kind K "leaks to K". fwscan's figures are printed
  with their ratio to the baseline's.

FlowDroid's published figures are printed for orientation only: they were measured by its
authors on DroidBench 1.0 (39 apps), counting individual leaks, not per app and sink kind.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"

SOURCE_MAP: dict[str, str | None] = {
    "imei": "imei",
    "sim_serial": "iccid",
    "imsi": "imsi",
    "location": "location",
    "password_field": None,
    "intent_data": None,
}
"""truth.json source name -> fwscan read category (None: fwscan has no such source)."""
SINK_MAP: dict[str, str | None] = {
    "network": "network",
    "sms": "sms",
    "log": "log",
    "file": "file",
    "intent": "ipc",
    "process": None,
}
"""truth.json sink name -> fwscan flow sink kind (None: fwscan has no such sink)."""
MODELLED_SINKS = ("network", "sms", "log", "file", "ipc")
TARGET_READS = ("imei", "location", "sim_serial", "imsi")
"""The read-recall target: every one of these found."""
FLOWDROID_PUBLISHED = (
    "FlowDroid, PUBLISHED figure (Arzt et al., PLDI 2014, DroidBench 1.0, 39 apps, counted per "
    "leak): precision 86%, recall 93%. NOT measured here; different app set and counting."
)


@dataclass
class AppResult:
    """What fwscan (and the co-occurrence baseline) says about one APK."""

    name: str
    folder: str
    truth: dict[str, Any]
    reads_any: set[str] = field(default_factory=set)
    reads_app: set[str] = field(default_factory=set)
    flows: dict[str, set[str]] = field(default_factory=dict)
    """sink kind -> identifier categories of fwscan's flow findings to it."""
    library_flows: set[str] = field(default_factory=set)
    """Sink kinds whose flow findings lie only in library code."""
    app_sinks: set[str] = field(default_factory=set)
    """Sink kinds whose APIs the app's own code calls (for the baseline)."""
    api_names: set[str] = field(default_factory=set)
    """``Class.member`` of every app-code read and sink call site."""
    facts: set[tuple[str, ...]] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def excluded(self) -> str:
        t = self.truth
        why = []
        if t["expected_leaks"] is None:
            why.append("no leak count")
        if t["uncertain"]:
            why.append("uncertain")
        if t["implicit_flow"]:
            why.append("implicit flow")
        return ", ".join(why)


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    apps: set[str] = field(default_factory=set)

    def add(self, other: Score) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.apps |= other.apps

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p and r else None


def pct(x: float | None) -> str:
    return "   -  " if x is None else f"{100 * x:5.1f}%"


def ratio(a: float | None, b: float | None) -> str:
    return "  -  " if a is None or not b else f"{a / b:5.2f}"


def truth_sources(t: dict[str, Any]) -> set[str]:
    return set(t["sources_present"]) | set(t["leak_sources"])


# -- analysis ----------------------------------------------------------------------------------


def analyse_app(root: Path, name: str, truth: dict[str, Any], assessor: Any, sig: Any) -> AppResult:
    from fwscan.analyze.artifact import ArtifactTask, analyze

    res = AppResult(name, name.split("/", 1)[0], truth)
    start = time.perf_counter()
    out = analyze(ArtifactTask(truth.get("sha256", ""), "apk", str(root / name), None))
    device_path = "/" + name
    facts = out.get("facts") or {}
    component = facts.get("package") or device_path
    code = out.get("code")
    findings = assessor.code_findings(code, device_path, component) if code else []
    res.seconds = time.perf_counter() - start
    res.errors = list(out.get("errors", []))
    res.facts = finding_facts(findings)
    rules = {r.id: r for r in (*sig.sources, *sig.sinks)}
    for f in findings:
        if f.kind.value == "read":
            res.reads_any.add(f.category)
            if not f.library:
                res.reads_app.add(f.category)
        elif f.kind.value == "flow":
            sink = dict(f.attributes).get("sink", "")
            res.flows.setdefault(sink, set()).update(f.category.split("+"))
            if f.library:
                res.library_flows.add(sink)
    for use in (code or {}).get("sinks", []) + (code or {}).get("reads", []):
        rule = rules.get(use["rule"])
        if rule is None or use["library"]:
            continue
        res.api_names.add(api_name(rule))
        if rule.role == "sink":
            res.app_sinks.add(rule.category)
    return res


def api_name(rule: Any) -> str:
    # Not ``strip("L;")``: that also eats a trailing "L" of the class name (java/net/URL).
    cls = rule.class_name[1:-1].rsplit("/", 1)[-1]
    return f"{cls}.{rule.member}"


def finding_facts(findings: Any) -> set[tuple[str, ...]]:
    """The per-app facts compared between per-APK analysis and the directory scan."""
    out: set[tuple[str, ...]] = set()
    for f in findings:
        if f.kind.value == "read":
            out.add(("read", f.category))
        elif f.kind.value == "flow":
            out.add(("flow", f.category, dict(f.attributes).get("sink", "")))
    return out


def directory_scan(
    root: Path, names: list[str]
) -> tuple[float, Any, dict[str, set[tuple[str, ...]]]]:
    """One ``scan()`` of the whole folder; facts attributed to each APK by their evidence."""
    from fwscan.pipeline import ScanOptions, scan

    start = time.perf_counter()
    result, stats = scan(root, ScanOptions(jobs=2, cache_dir=None))
    wall = time.perf_counter() - start
    per_app: dict[str, set[tuple[str, ...]]] = {n: set() for n in names}
    for f in result.findings:
        facts = finding_facts([f])
        if not facts:
            continue
        for ev in f.evidence:
            app = ev.artifact.split("!", 1)[0].lstrip("/")
            if app in per_app:
                per_app[app] |= facts
    return wall, (result, stats), per_app


# -- scoring -----------------------------------------------------------------------------------


def leak_score(
    app: AppResult, kinds: tuple[str, ...], *, include_unmodelled: bool, baseline: bool
) -> tuple[Score, list[tuple[str, str]], list[tuple[str, str]]]:
    """TP/FP/FN of one app over sink ``kinds``; also (kind, reason) of each FN and FP."""
    t = app.truth
    score = Score(apps={app.name})
    misses: list[tuple[str, str]] = []
    alarms: list[tuple[str, str]] = []
    leaking = (t["expected_leaks"] or 0) > 0
    truth_sinks = {SINK_MAP[s] for s in t["leak_sinks"]} if leaking else set()
    sources = {SOURCE_MAP[s] for s in t["leak_sources"]} - {None}
    unmodelled_sources = [s for s in t["leak_sources"] if SOURCE_MAP[s] is None]
    for kind in kinds:
        if baseline:
            found_cats = set(app.reads_app) if kind in app.app_sinks else set()
        else:
            found_cats = app.flows.get(kind, set())
        positive = kind in truth_sinks
        modelled = positive and bool(sources)
        if positive and not modelled and not include_unmodelled:
            # A leak fwscan cannot model: not counted; a flow found there is still an alarm.
            if found_cats:
                score.fp += 1
                alarms.append(
                    (
                        kind,
                        f"flow of {'+'.join(sorted(found_cats))}; truth leak is "
                        f"from unmodelled {'/'.join(unmodelled_sources)}",
                    )
                )
            continue
        if positive:
            matched = bool(found_cats & sources) if sources else False
            if matched:
                score.tp += 1
            else:
                score.fn += 1
                misses.append((kind, miss_reason(app, kind, sources, unmodelled_sources)))
                if found_cats:
                    score.fp += 1
                    alarms.append(
                        (
                            kind,
                            f"flow from {'+'.join(sorted(found_cats))}, "
                            f"truth leak is from {'+'.join(sorted(sources))}",
                        )
                    )
        elif found_cats:
            score.fp += 1
            alarms.append((kind, f"flow of {'+'.join(sorted(found_cats))}"))
    return score, misses, alarms


def miss_reason(app: AppResult, kind: str, sources: set[str], unmodelled: list[str]) -> str:
    if not sources:
        return f"source not modelled ({'/'.join(unmodelled)})"
    if not sources & app.reads_any:
        return f"no read of {'/'.join(sorted(sources))} found"
    others = sorted(k for k in app.flows if k != kind)
    hint = f"; fwscan flows to {', '.join(others)}" if others else ""
    if kind not in app.app_sinks:
        hint += f"; no {kind} sink call in app code matched"
    return f"read found, no flow to {kind}{hint}"


# -- printing ----------------------------------------------------------------------------------


def print_reads(apps: list[AppResult]) -> bool:
    print(
        "\n== 1. Source reads: recall per category (all apps; truth = sources_present "
        "+ leak_sources)"
    )
    print(
        f"{'truth source -> fwscan category':34} {'apps':>5} {'any code':>9} {'recall':>7} "
        f"{'app code':>9} {'recall':>7}"
    )
    met = True
    missing: list[str] = []
    for src in sorted(
        {s for a in apps for s in truth_sources(a.truth)}, key=list(SOURCE_MAP).index
    ):
        cat = SOURCE_MAP.get(src)
        with_src = [a for a in apps if src in truth_sources(a.truth)]
        label = f"{src} -> {cat or '(not modelled)'}"
        if cat is None:
            print(f"{label:34} {len(with_src):5} {'-':>9} {'-':>7} {'-':>9} {'-':>7}")
            continue
        found_any = [a for a in with_src if cat in a.reads_any]
        found_app = [a for a in with_src if cat in a.reads_app]
        print(
            f"{label:34} {len(with_src):5} {len(found_any):9} "
            f"{pct(len(found_any) / len(with_src)):>7} {len(found_app):9} "
            f"{pct(len(found_app) / len(with_src)):>7}"
        )
        for a in with_src:
            if cat not in a.reads_any:
                missing.append(f"{a.name}: {src} ({cat}) not found")
                if src in TARGET_READS:
                    met = False
    print(
        f"target: every IMEI, location, SIM serial and IMSI read found: "
        f"{'MET' if met else 'MISSED'}"
    )
    for m in missing:
        print(f"  miss: {m}")
    modelled_truth = {SOURCE_MAP[s] for a in apps for s in truth_sources(a.truth)} - {None}
    extra = [
        (a.name, sorted(a.reads_any - {SOURCE_MAP.get(s) for s in truth_sources(a.truth)}))
        for a in apps
    ]
    extra = [(n, cats) for n, cats in extra if cats]
    print(
        f"reads fwscan reports that truth does not list for the app: {len(extra)} apps "
        f"(truth lists app-code calls only; categories truth names: "
        f"{', '.join(sorted(modelled_truth))})"
    )
    for n, cats in extra:
        print(f"  extra: {n}: {', '.join(cats)}")
    return met


def print_api_check(apps: list[AppResult], sig: Any) -> None:
    print(
        "\n== 2. API call sites in app code: truth api_calls_in_app_code (androguard, "
        "support library excluded) vs fwscan reads+sinks in app code"
    )
    by_name: dict[str, set[str]] = defaultdict(set)
    by_member: dict[str, set[str]] = defaultdict(set)
    for r in (*sig.sources, *sig.sinks):
        if r.is_field:
            continue
        by_name[api_name(r)].add(api_name(r))
        by_member[r.member].add(api_name(r))
    print(f"{'truth API':40} {'apps':>5} {'fwscan':>7}  fwscan rule / note")
    rows: dict[str, list[AppResult]] = defaultdict(list)
    for a in apps:
        for api in a.truth.get("api_calls_in_app_code", []):
            rows[api].append(a)
    for api in sorted(rows, key=lambda k: (-len(rows[k]), k)):
        names = by_name.get(api) or (by_member.get(api) if "." not in api else None)
        if not names:
            print(f"{api:40} {len(rows[api]):5} {'-':>7}  no fwscan rule")
            continue
        hit = [a for a in rows[api] if a.api_names & names]
        note = ", ".join(sorted(names))
        if len(hit) < len(rows[api]) and "." not in api:
            note += " (DroidBench calls it on its own Activity class; rules match the named class)"
        print(f"{api:40} {len(rows[api]):5} {len(hit):7}  {note}")


def print_leaks(apps: list[AppResult]) -> None:
    scored = [a for a in apps if not a.excluded]
    excluded = [a for a in apps if a.excluded]
    netsms_apps = [
        a
        for a in scored
        if (a.truth["expected_leaks"] or 0) > 0
        and {SINK_MAP[s] for s in a.truth["leak_sinks"]} & {"network", "sms"}
    ]
    print(
        f"\n== 3. Leaks: per app and sink kind. Scored apps: {len(scored)}; not scored: "
        f"{len(excluded)} (expected_leaks null, uncertain or implicit_flow; listed in 7.)"
    )
    rows = [
        (
            "network+SMS, apps whose truth leaks go to network/SMS",
            netsms_apps,
            ("network", "sms"),
            False,
        ),
        ("network+SMS, all scored apps", scored, ("network", "sms"), False),
        ("all modelled sinks, all scored apps", scored, MODELLED_SINKS, False),
        ("  ... counting unmodelled-source leaks as misses", scored, MODELLED_SINKS, True),
        *((f"  sink {k}", scored, (k,), False) for k in MODELLED_SINKS),
    ]
    print(
        f"{'':58} {'apps':>4} {'TP':>4} {'FP':>4} {'FN':>4} {'prec':>7} {'recall':>7} "
        f"{'F1':>7} | {'baseline P':>10} {'R':>7} | {'P/base':>6} {'R/base':>6}"
    )
    for label, subset, kinds, unmod in rows:
        ours, base = Score(), Score()
        for a in subset:
            ours.add(leak_score(a, kinds, include_unmodelled=unmod, baseline=False)[0])
            base.add(leak_score(a, kinds, include_unmodelled=unmod, baseline=True)[0])
        print(
            f"{label:58} {len(subset):4} {ours.tp:4} {ours.fp:4} {ours.fn:4} "
            f"{pct(ours.precision):>7} {pct(ours.recall):>7} {pct(ours.f1):>7} | "
            f"{pct(base.precision):>10} {pct(base.recall):>7} | "
            f"{ratio(ours.precision, base.precision):>6} {ratio(ours.recall, base.recall):>6}"
        )
    print(
        "baseline = co-occurrence (app code reads a modelled identifier and calls a sink API "
        "of that kind), measured in this run"
    )
    print(FLOWDROID_PUBLISHED)


def print_folders(apps: list[AppResult]) -> None:
    print(
        "\n== 4. Per DroidBench category folder (all modelled sinks; reads: app code, "
        "modelled categories)"
    )
    print(
        f"{'folder':28} {'apps':>4} {'scored':>6} {'reads':>9} {'TP':>4} {'FP':>4} {'FN':>4} "
        f"{'prec':>7} {'recall':>7}"
    )
    folders: dict[str, list[AppResult]] = defaultdict(list)
    for a in apps:
        folders[a.folder].append(a)
    for folder in sorted(folders):
        group = folders[folder]
        scored = [a for a in group if not a.excluded]
        s = Score()
        for a in scored:
            s.add(leak_score(a, MODELLED_SINKS, include_unmodelled=False, baseline=False)[0])
        want = found = 0
        for a in group:
            cats = {SOURCE_MAP[x] for x in truth_sources(a.truth)} - {None}
            want += len(cats)
            found += len(cats & a.reads_app)
        print(
            f"{folder:28} {len(group):4} {len(scored):6} {found:4}/{want:<4} {s.tp:4} {s.fp:4} "
            f"{s.fn:4} {pct(s.precision):>7} {pct(s.recall):>7}"
        )


def print_lists(apps: list[AppResult]) -> None:
    scored = [a for a in apps if not a.excluded]
    print("\n== 5. Misses (FN; all modelled sinks, scored apps, leaks from modelled sources)")
    n = 0
    for a in scored:
        _, misses, _ = leak_score(a, MODELLED_SINKS, include_unmodelled=False, baseline=False)
        for kind, why in misses:
            n += 1
            print(f"  FN {a.name:52} {kind:7} {why}")
            print(f"       truth: {a.truth['note'][:150]}")
    if not n:
        print("  none")
    print("\n== 6. False alarms (FP; all modelled sinks, scored apps)")
    n = 0
    for a in scored:
        _, _, alarms = leak_score(a, MODELLED_SINKS, include_unmodelled=False, baseline=False)
        for kind, why in alarms:
            n += 1
            lib = " (library code only)" if kind in a.library_flows else ""
            print(f"  FP {a.name:52} {kind:7} {why}{lib}")
            print(f"       truth ({a.truth['expected_leaks']} leaks): {a.truth['note'][:150]}")
    if not n:
        print("  none")
    print("\n== 7. Not scored (expected_leaks null / uncertain / implicit flow), for reference")
    for a in apps:
        if not a.excluded:
            continue
        t = a.truth
        flows = ", ".join(f"{k}<-{'+'.join(sorted(v))}" for k, v in sorted(a.flows.items()))
        print(
            f"  {a.name:52} [{a.excluded}] truth {t['expected_leaks']} leaks "
            f"{'/'.join(t['leak_sources']) or '-'} -> {'/'.join(t['leak_sinks']) or '-'}; "
            f"fwscan flows: {flows or 'none'}"
        )
    print("\n== 8. Truth leaks fwscan does not model (not in the main rows)")
    for a in scored:
        t = a.truth
        if not (t["expected_leaks"] or 0):
            continue
        unmod_src = [s for s in t["leak_sources"] if SOURCE_MAP[s] is None]
        unmod_snk = [s for s in t["leak_sinks"] if SINK_MAP[s] is None]
        if unmod_src or unmod_snk:
            print(
                f"  {a.name:52} sources {'/'.join(t['leak_sources'])} -> sinks "
                f"{'/'.join(t['leak_sinks'])}  (unmodelled: "
                f"{', '.join(unmod_src + unmod_snk)})"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the shared corpus folder")
    parser.add_argument(
        "--quick", action="store_true", help="every third APK only, no directory scan"
    )
    args = parser.parse_args()
    root = args.corpus / "droidbench"
    truth_file = root / "truth.json"
    if not truth_file.is_file():
        print(f"skipped: {truth_file} not found (the shared corpus is absent)")
        return 0

    from fwscan import __version__
    from fwscan.analyze.artifact import ANALYZER_VERSION
    from fwscan.assess import MAX_EVIDENCE, Assessor
    from fwscan.signatures import load_signatures

    truth = json.loads(truth_file.read_text(encoding="utf-8"))["apps"]
    names = sorted(n for n in truth if (root / n).is_file())
    if len(names) < len(truth):
        print(f"note: {len(truth) - len(names)} APKs of truth.json are missing")
    if args.quick:
        names = names[::3]
    sig = load_signatures()
    assessor = Assessor(sig)
    print(
        f"DroidBench 2.0: {len(names)} APKs{' (quick: every third)' if args.quick else ''}; "
        f"fwscan {__version__}, analyzer {ANALYZER_VERSION}, signatures {sig.version}"
    )

    start = time.perf_counter()
    apps = [analyse_app(root, n, truth[n], assessor, sig) for n in names]
    per_apk = time.perf_counter() - start
    errors = [(a.name, e) for a in apps for e in a.errors]
    print(
        f"per-APK analysis (analyze + assess, one process): {per_apk:.2f} s total, "
        f"slowest {max(a.seconds for a in apps):.3f} s; {len(errors)} errors"
    )
    for name, e in errors:
        print(f"  error: {name}: {e}")

    if not args.quick:
        wall, (result, stats), dir_facts = directory_scan(root, names)
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in stats.seconds.items())
        print(
            f"directory scan (scan(), jobs=2, no cache): {wall:.2f} s wall ({stages}); "
            f"{len(result.apps)} apps, {stats.failed} failed, {len(result.errors)} errors"
        )
        packages = defaultdict(int)
        for app in result.apps:
            packages[app.package] += 1
        shared = {p: n for p, n in packages.items() if n > 1}
        lost = [a for a in apps if a.facts - dir_facts[a.name]]
        extra = [a for a in apps if dir_facts[a.name] - a.facts]
        print(
            f"  packages shared by several APKs: "
            f"{', '.join(f'{p} x{n}' for p, n in sorted(shared.items()))}"
        )
        print(
            f"  apps whose per-APK read/flow facts cannot be attributed from the directory "
            f"scan (merged by fingerprint, evidence capped at {MAX_EVIDENCE}): {len(lost)}; "
            f"facts seen only in the directory scan: {len(extra)}"
        )

    print_reads(apps)
    print_api_check(apps, sig)
    print_leaks(apps)
    print_folders(apps)
    print_lists(apps)
    return 0


if __name__ == "__main__":
    sys.exit(main())

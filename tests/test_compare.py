"""Build diff, batch matrix, the CI gate and suppressions, on the synthesized sample builds."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fwscan.cli import cli
from fwscan.compare import diff, matrix
from fwscan.errors import InputError
from fwscan.findings import Kind
from fwscan.gate import evaluate, load_suppressions, parse_fail_on
from fwscan.pipeline import ScanOptions, load_result, scan
from fwscan.scanresult import ScanResult

AUTOREG = "com.qualcomm.qti.autoregistration"
GATE = "new-flow,new-endpoint,new-read,severity>=high"


@pytest.fixture(scope="module")
def results(
    samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ScanResult]:
    cache = tmp_path_factory.mktemp("cache")
    return {
        name: scan(path, ScanOptions(jobs=2, cache_dir=cache))[0] for name, path in samples.items()
    }


def test_diff_headline_and_changes(results: dict[str, ScanResult]) -> None:
    d = diff(results["nokia7plus-prepatch"], results["nokia7plus-feb-patch"])
    assert d.headline == (
        "The new build (00WW_3_39B) removes 1 app (com.qualcomm.qti.autoregistration) and its "
        "flow of the IMEI, ICCID (SIM serial), IMSI and cell location to zzhc.vnet.cn "
        "(China Telecom, CN); it adds none."
    )
    assert [a.key for a in d.apps_with("removed")] == [AUTOREG]
    assert d.apps_with("added") == []
    changed = {a.key: a.changes for a in d.apps_with("changed")}
    assert changed["com.android.settings"] == ("version 28 (9) -> 29 (9.0.1)",)
    assert changed["com.hmdglobal.support"] == ("version 12 (1.2) -> 13 (1.3)",)
    removed_flows = d.findings_with("removed", Kind.FLOW)
    assert [f.finding.component for f in removed_flows] == [AUTOREG]
    assert d.findings_with("added") == []
    counts = d.counts()
    assert counts["read"]["removed"] == 4
    assert d.old.build.security_patch == "2019-01-01"
    assert d.new.build.security_patch == "2019-02-01"


def test_reverse_diff_adds(results: dict[str, ScanResult]) -> None:
    d = diff(results["nokia7plus-feb-patch"], results["nokia7plus-prepatch"])
    assert "adds 1 app (com.qualcomm.qti.autoregistration)" in d.headline
    assert d.headline.endswith("it removes none.")


def test_same_build_diff(results: dict[str, ScanResult]) -> None:
    d = diff(results["nokia7plus-prepatch"], results["nokia7plus-prepatch"])
    assert "neither adds nor removes" in d.headline
    assert {f.status for f in d.findings} == {"kept"}


def test_matrix_puts_registration_app_first(results: dict[str, ScanResult]) -> None:
    order = ["nokia7plus-other-batch", "nokia7plus-prepatch", "nokia7plus-feb-patch"]
    m = matrix([results[n] for n in order])
    first = m.rows[0]
    assert (first.kind, first.key) == ("app", AUTOREG)
    assert first.cells == ("absent", "present", "absent")
    partial = [r for r in m.rows if r.partial]
    assert {r.kind for r in partial} == {"app", "flow", "endpoint"}
    assert all(not r.partial for r in m.rows[len(partial) :])
    settings = next(r for r in m.rows if r.key == "com.android.settings")
    assert settings.cells == ("present", "present", "changed")
    assert [b.label for b in m.builds] == ["00WW_3_22B", "00WW_3_22C", "00WW_3_39B"]


def test_gate_fails_prepatch_against_february_and_passes_back(
    results: dict[str, ScanResult],
) -> None:
    conds = parse_fail_on(GATE)
    bad = evaluate(results["nokia7plus-prepatch"], results["nokia7plus-feb-patch"], conds)
    assert bad.failed
    assert {f.component for f, _ in bad.violations} == {AUTOREG}
    assert {c for _, c in bad.violations} == {"new-flow", "new-endpoint", "new-read"}
    good = evaluate(results["nokia7plus-feb-patch"], results["nokia7plus-prepatch"], conds)
    assert not good.failed


def test_gate_new_app_and_no_baseline(results: dict[str, ScanResult]) -> None:
    pre = results["nokia7plus-prepatch"]
    verdict = evaluate(pre, results["nokia7plus-other-batch"], parse_fail_on("new-app"))
    assert [a.package for a in verdict.new_apps] == [AUTOREG]
    alone = evaluate(pre, None, parse_fail_on("severity>=high"))
    assert alone.failed
    assert not evaluate(pre, pre, parse_fail_on("severity>=info")).failed


def test_suppressions(results: dict[str, ScanResult], tmp_path: Path) -> None:
    pre, feb = results["nokia7plus-prepatch"], results["nokia7plus-feb-patch"]
    conds = parse_fail_on(GATE)
    fps = sorted({f.fingerprint for f, _ in evaluate(pre, feb, conds).violations})
    path = tmp_path / "s.yaml"
    lines = ["suppressions:"]
    for fp in fps:
        lines += [
            f"  - fingerprint: {fp}",
            "    justification: reviewed",
            "    expires: 2030-01-01",
        ]
    lines += [
        "  - fingerprint: 000000000000000000000000",
        "    justification: old",
        "    expires: 2020-01-01",
    ]
    path.write_text("\n".join(lines) + "\n")
    sups = load_suppressions(path)
    verdict = evaluate(pre, feb, conds, sups, today=dt.date(2026, 11, 28))
    assert not verdict.failed
    assert len(verdict.suppressed) == len(fps)
    assert [s.fingerprint for s in verdict.expired] == ["000000000000000000000000"]
    late = evaluate(pre, feb, conds, sups, today=dt.date(2031, 1, 1))
    assert late.failed
    assert len(late.expired) == len(sups)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("suppressions: [{fingerprint: xyz, justification: a, expires: 2030-01-01}]", "24 hex"),
        (
            "suppressions: [{fingerprint: 000000000000000000000000, justification: '',"
            " expires: 2030-01-01}]",
            "must not be empty",
        ),
        (
            "suppressions: [{fingerprint: 000000000000000000000000, justification: a,"
            " expires: soon}]",
            "not a date",
        ),
        ("nothing: here", "'suppressions' list"),
    ],
)
def test_bad_suppressions(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_suppressions(path)


def test_bad_fail_on() -> None:
    with pytest.raises(InputError, match="unknown condition"):
        parse_fail_on("new-flow,bananas")
    with pytest.raises(InputError, match="unknown severity"):
        parse_fail_on("severity>=huge")


def test_cli_gate_and_diff_from_saved_scans(samples: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    pre_json, feb_json = tmp_path / "pre.json", tmp_path / "feb.json"
    cache = ["--cache-dir", str(tmp_path / "c"), "-q"]
    assert (
        runner.invoke(
            cli, ["scan", str(samples["nokia7plus-prepatch"]), "--json", str(pre_json), *cache]
        ).exit_code
        == 0
    )
    assert (
        runner.invoke(
            cli, ["scan", str(samples["nokia7plus-feb-patch"]), "--json", str(feb_json), *cache]
        ).exit_code
        == 0
    )
    fail = runner.invoke(
        cli,
        [
            "scan",
            str(samples["nokia7plus-prepatch"]),
            "--baseline",
            str(feb_json),
            "--fail-on",
            GATE,
            *cache,
        ],
    )
    assert fail.exit_code == 9, fail.output
    assert "gate: FAILED" in fail.stderr
    assert AUTOREG in fail.stderr
    ok = runner.invoke(
        cli,
        [
            "scan",
            str(samples["nokia7plus-feb-patch"]),
            "--baseline",
            str(pre_json),
            "--fail-on",
            GATE,
            *cache,
        ],
    )
    assert ok.exit_code == 0, ok.output
    out = tmp_path / "d.json"
    d = runner.invoke(cli, ["diff", str(pre_json), str(feb_json), "--json", str(out), "-q"])
    assert d.exit_code == 0, d.output
    assert "removes 1 app (com.qualcomm.qti.autoregistration)" in d.stdout
    assert json.loads(out.read_text())["schema"] == "fwscan.diff/1"
    assert load_result(pre_json).to_dict() == json.loads(pre_json.read_text())


def test_cli_bad_baseline(tmp_path: Path, samples: dict[str, Path]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "something else"}')
    r = CliRunner().invoke(
        cli,
        [
            "scan",
            str(samples["nokia7plus-feb-patch"]),
            "--baseline",
            str(bad),
            "--fail-on",
            "new-flow",
            "-q",
        ],
    )
    assert r.exit_code == 2
    assert "not a readable fwscan scan result" in r.stderr
    r = CliRunner().invoke(
        cli, ["scan", str(samples["nokia7plus-feb-patch"]), "--baseline", str(bad), "-q"]
    )
    assert r.exit_code == 2
    assert "go with --fail-on" in r.stderr

"""The README's main command: `fwscan demo` ends with the diff headline and the reports."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from fwscan.cli import cli


def test_demo_writes_reports_and_headline(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "-o", str(out), "--cache-dir", str(tmp_path / "cache"), "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(
        "The new build (00WW_3_39B) removes 1 app "
        "(com.qualcomm.qti.autoregistration) and its flow of the IMEI, ICCID"
    )
    assert "IMSI and cell location to zzhc.vnet.cn (China Telecom, CN)" in last
    for name in (
        "diff.html",
        "diff.json",
        "diff.md",
        "matrix.html",
        "nokia7plus-prepatch.html",
        "nokia7plus-feb-patch.html",
        "nokia7plus-other-batch.html",
    ):
        assert (out / name).stat().st_size > 1000, name
    # A second run reuses the synthesized builds (their stamps match) and gives the same diff.
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.zip")}
    first_diff = (out / "diff.json").read_text()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.zip")} == stamps
    assert (out / "diff.json").read_text() == first_diff

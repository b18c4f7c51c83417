"""The pre-patch sample in every firmware shape gives the same findings as its A/B OTA twin."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SAMPLES

from fwscan.pipeline import ScanOptions, scan
from fwscan.synth import manifest as manifest_mod
from fwscan.synth.build import synthesize
from fwscan.unpack.registry import FILESYSTEMS

AUTOREG_FLOW_TARGET = "http://zzhc.vnet.cn:9998/"


@pytest.fixture(scope="module")
def twin(samples: dict[str, Path]) -> set[str]:
    result, _ = scan(samples["nokia7plus-prepatch"], ScanOptions(jobs=2))
    return {f.fingerprint for f in result.findings}


@pytest.mark.parametrize(
    ("fmt", "erofs", "expect_format"),
    [
        ("block", (), "block-ota-zip"),
        ("factory", (), "archive"),
        ("super", (), "super"),
        pytest.param(
            "ab",
            ("vendor",),
            "ab-ota-zip",
            marks=pytest.mark.skipif(
                "erofs" not in {fs.name for fs in FILESYSTEMS},
                reason="the EROFS reader is not registered",
            ),
        ),
    ],
)
def test_same_findings_in_every_shape(
    twin: set[str], tmp_path: Path, fmt: str, erofs: tuple[str, ...], expect_format: str
) -> None:
    spec = manifest_mod.load(SAMPLES / "nokia7plus-prepatch.yaml")
    out = synthesize(spec, tmp_path / f"fw-{fmt}.bin", fmt=fmt, erofs=erofs).path
    again = synthesize(spec, tmp_path / f"again-{fmt}.bin", fmt=fmt, erofs=erofs).path
    assert out.read_bytes() == again.read_bytes()
    result, _ = scan(out, ScanOptions(jobs=2))
    assert result.input.format == expect_format
    assert {f.fingerprint for f in result.findings} == twin
    assert any(f.target == AUTOREG_FLOW_TARGET for f in result.findings)
    formats = {c.source.rsplit(" > ", 1)[-1]: c.format for c in result.coverage}
    if erofs:
        assert formats["vendor"] == "erofs"
    read = [c for c in result.coverage if c.kind == "partition" and c.status.value == "read"]
    assert len(read) >= 3

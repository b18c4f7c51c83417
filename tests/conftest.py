"""Shared fixtures: the third-party corpus and the system tools tests rely on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = (REPO / ".." / "shared" / "corpus").resolve()


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The shared corpus folder; tests that need it skip, visibly, when it is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"corpus folder not found at {CORPUS} (../shared/corpus)")
    return CORPUS


TOOLS = REPO / ".tools" / "erofs-utils" / "bin"
"""Tools built by the setup (``.ci/erofs-utils.sh``): looked for before the system's."""


def need_tool(name: str) -> str:
    """The path of a system tool; a missing tool fails the test (the setup installs them)."""
    path = (
        shutil.which(name, path=str(TOOLS))
        or shutil.which(name)
        or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    )
    if path is None:
        pytest.fail(f"system tool {name!r} is missing: run `make setup` (apt-get install)")
    return path


SAMPLES = REPO / "sample_manifests"


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sample firmware builds, synthesized once per test session."""
    from fwscan.synth import manifest as manifest_mod
    from fwscan.synth.build import synthesize

    out = tmp_path_factory.mktemp("samples")
    built = {}
    for name in ("nokia7plus-prepatch", "nokia7plus-feb-patch", "nokia7plus-other-batch"):
        spec = manifest_mod.load(SAMPLES / f"{name}.yaml")
        built[name] = synthesize(spec, out / f"{name}.zip").path
    return built

"""fwscan.cache: round trips, corrupt entries, atomic writes, key validation, locations."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fwscan.cache import ResultCache, cache_key, default_cache_dir

REPO = Path(__file__).resolve().parents[1]
KEY = cache_key("0" * 64, "analyzer 1", "signatures abc")


def _run_python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True)


def test_round_trip_and_layout(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    assert cache.get(KEY) is None
    value = {"findings": [{"rule": "x", "score": 1.5}], "name": "Ünïcode ✓", "n": None}
    cache.put(KEY, value)
    assert cache.get(KEY) == value
    entry = tmp_path / "cache" / KEY[:2] / f"{KEY}.json"
    assert json.loads(entry.read_text(encoding="utf-8")) == value  # plain JSON
    cache.put(KEY, {"replaced": True})
    assert cache.get(KEY) == {"replaced": True}
    assert ResultCache(tmp_path / "cache").get(KEY) == {"replaced": True}
    assert [p.name for p in (tmp_path / "cache" / KEY[:2]).iterdir()] == [f"{KEY}.json"]


@pytest.mark.parametrize(
    "content", [b"", b'{"truncated": ', b"\xff\xfe not utf-8", b"[1, 2]", b"null", b"\0" * 64]
)
def test_corrupt_entry_is_a_miss_and_removed(tmp_path: Path, content: bytes) -> None:
    cache = ResultCache(tmp_path)
    entry = tmp_path / KEY[:2] / f"{KEY}.json"
    entry.parent.mkdir()
    entry.write_bytes(content)
    assert cache.get(KEY) is None
    assert not entry.exists()
    cache.put(KEY, {"ok": 1})
    assert cache.get(KEY) == {"ok": 1}


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../" + KEY[3:],
        "/" + KEY[1:],
        KEY.upper(),
        KEY[:-1],
        KEY + "0",
        "g" * 64,
        KEY[:32] + "/" + KEY[33:],
        KEY[:-1] + "\n",
    ],
)
def test_non_hex_keys_are_refused(tmp_path: Path, key: str) -> None:
    cache = ResultCache(tmp_path / "cache")
    with pytest.raises(ValueError, match="invalid cache key"):
        cache.put(key, {"x": 1})
    with pytest.raises(ValueError, match="invalid cache key"):
        cache.get(key)
    assert list(tmp_path.iterdir()) == []


def test_disabled_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FWSCAN_CACHE_DIR", str(tmp_path / "default"))
    cache = ResultCache(None)
    cache.put(KEY, {"x": 1})
    assert cache.get(KEY) is None
    assert list(tmp_path.iterdir()) == []


def test_unwritable_location_does_not_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A file where the directory should be: mkdir fails even for root.
    (tmp_path / "cache").write_text("not a directory")
    cache = ResultCache(tmp_path / "cache")
    with caplog.at_level(logging.DEBUG, logger="fwscan.cache"):
        cache.put(KEY, {"x": 1})
        cache.put(KEY, {"x": 2})
    assert cache.get(KEY) is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.DEBUG]
    assert "cannot write to the result cache" in caplog.records[0].getMessage()


def test_failed_write_leaves_old_entry_and_no_temp_file(tmp_path: Path) -> None:
    # A full disk, for real: the writer may not grow any file past 4 KiB (RLIMIT_FSIZE).
    cache = ResultCache(tmp_path)
    cache.put(KEY, {"old": True})
    code = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from fwscan.cache import ResultCache\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n"
        "ResultCache(Path(sys.argv[1])).put(sys.argv[2], {'new': 'x' * 100_000})\n"
    )
    assert _run_python(code, str(tmp_path), KEY).wait(timeout=60) == 0
    assert cache.get(KEY) == {"old": True}
    assert [p.name for p in (tmp_path / KEY[:2]).iterdir()] == [f"{KEY}.json"]


def test_readers_never_see_a_partial_entry(tmp_path: Path) -> None:
    values = [{"v": c * 500_000} for c in "ab"]
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from fwscan.cache import ResultCache\n"
        "cache = ResultCache(Path(sys.argv[1]))\n"
        "end = time.monotonic() + 1.5\n"
        "i = 0\n"
        "while time.monotonic() < end:\n"
        "    cache.put(sys.argv[2], {'v': 'ab'[i % 2] * 500_000})\n"
        "    i += 1\n"
    )
    cache = ResultCache(tmp_path)
    shard = tmp_path / KEY[:2]
    writer = _run_python(code, str(tmp_path), KEY)
    seen: list[dict[str, object] | None] = []
    names: set[str] = set()
    try:
        while writer.poll() is None:
            seen.append(cache.get(KEY))
            if shard.is_dir():
                names.update(p.name for p in shard.iterdir())
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    hits = [v for v in seen if v is not None]
    assert len(hits) > 10
    # Once an entry exists, every read sees one whole value (a partial one would be a miss).
    assert seen[seen.index(hits[0]) :] == hits
    assert all(v in values for v in hits)
    temp_names = names - {f"{KEY}.json"}
    assert all(n.startswith(f".{KEY}.") and n.endswith(".tmp") for n in temp_names)


def test_cache_key() -> None:
    # The format is fixed: changing it would orphan every existing entry.
    expected = hashlib.sha256(b"0" * 64 + b"\0analyzer 1\0signatures abc\0").hexdigest()
    assert cache_key("0" * 64, "analyzer 1", "signatures abc") == expected
    keys = {
        cache_key(),
        cache_key(""),
        cache_key("", ""),
        cache_key("ab", "c"),
        cache_key("a", "bc"),
        cache_key("abc"),
        cache_key("\udcff"),
    }
    assert len(keys) == 7
    with pytest.raises(ValueError, match="NUL"):
        cache_key("a\0b")


def test_default_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FWSCAN_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "fwscan"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "fwscan"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "fwscan"
    monkeypatch.setenv("FWSCAN_CACHE_DIR", "")
    assert default_cache_dir() == tmp_path / "xdg" / "fwscan"
    monkeypatch.setenv("FWSCAN_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"

"""Benchmark: fwscan's EROFS, Android sparse and ext4 readers against their real tools.

Run on demand (``python benchmarks/formats_bench.py``), never as a test; it prints a table and
asserts nothing. In one run it:

1. builds a tree of realistic content (``build_tree`` of ``benchmarks/unpack_bench.py``: APKs,
   compressible pseudo-text, incompressible media, native libraries; plus small configuration
   files of about 10 KB and a few media files of up to 20 MB), ``--size-mib`` in all (1100 MiB
   by default, about 200 MiB with ``--quick``), and the SHA-256 of every file;
2. makes an EROFS image of it with ``mkfs.erofs -zlz4hc``, an ext4 image with
   :func:`fwscan.synth.ext4img.make_ext4`, and an Android sparse image of that with
   ``img2simg``;
3. times, each side in a fresh process (under ``/usr/bin/time``, for the peak RSS), after one
   untimed read of the image (so that the page cache is warm for both sides) and one untimed
   import of the fwscan module (so that its bytecode is cached), best of ``--repeat`` runs:

   - **EROFS**: walk + SHA-256 of every file with :class:`fwscan.unpack.erofs.ErofsFileSystem`
     (read as the inventory reads it: :class:`fwscan.hashing.ReadAhead`, decoding ahead on a
     second thread while the first hashes) against ``fsck.erofs --extract=DIR IMG``;
   - **sparse**: :func:`fwscan.unpack.sparse.expand_sparse` against ``simg2img SPARSE OUT``;
   - **ext4**: walk + SHA-256 of every file with :class:`fwscan.unpack.ext4.Ext4FileSystem`
     (likewise) against ``debugfs -R "rdump / DIR" IMG``;

4. checks, untimed, that both sides produced the right bytes (every file's SHA-256 against the
   source tree; the expanded sparse image against the ext4 image) and prints the times, the
   ratio fwscan / tool (target: at most 1.5 each) and the peak RSS of each side.

Outputs of the tools (and of ``expand_sparse``) are removed between runs, and ``sync`` is called
before every timed run, so that no run pays for the write-back of another. Everything big lives
in one temporary directory (under ``--workdir`` if given), removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
TARGET_RATIO = 1.5
HERE = Path(__file__).resolve().parent
GNU_TIME = "/usr/bin/time"
TOOLS = ("mkfs.erofs", "fsck.erofs", "img2simg", "simg2img", "debugfs", "mke2fs")


# -- the child processes (fwscan's side) --------------------------------------------------------


def _files_digest(lines: list[str]) -> str:
    """One SHA-256 over the sorted ``path<TAB>sha256`` lines of a tree's regular files."""
    return hashlib.sha256("\n".join(sorted(lines)).encode("utf-8", "surrogateescape")).hexdigest()


def _child(kind: str, image: str, out: str | None) -> None:
    """fwscan's side of one measure; prints one JSON line."""
    start = time.perf_counter()
    report: dict[str, object] = {}
    if kind == "sparse":
        from fwscan.limits import DEFAULT_LIMITS
        from fwscan.unpack.base import Window
        from fwscan.unpack.sparse import expand_sparse

        assert out is not None
        expand_sparse(Window(Path(image)), Path(out), DEFAULT_LIMITS)
    else:
        from fwscan.hashing import ReadAhead
        from fwscan.unpack.base import EntryType, Window

        if kind == "erofs":
            from fwscan.unpack.erofs import ErofsFileSystem as FsClass
        else:
            from fwscan.unpack.ext4 import Ext4FileSystem as FsClass  # type: ignore[assignment]

        lines: list[str] = []
        nbytes = 0
        with FsClass(Window(Path(image))) as fs:
            files = [e for e in fs.walk() if e.type is EntryType.FILE]
            # as fwscan's inventory reads a partition: decoded ahead on a second thread,
            # hashed on this one
            with ReadAhead(fs, files) as ahead:
                for entry in files:
                    h = hashlib.sha256()
                    for block in ahead.next_file():
                        h.update(block)
                        nbytes += len(block)
                    lines.append(f"{entry.path}\t{h.hexdigest()}")
            report["errors"] = [str(e) for e in fs.errors]
        report.update(files=len(lines), bytes=nbytes, digest=_files_digest(lines))
    report["seconds"] = time.perf_counter() - start
    print(json.dumps(report))


# -- helpers of the parent ----------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    rss_kib: int
    stdout: str


@dataclass
class Row:
    name: str
    tool: str
    ours: list[float]
    theirs: list[float]
    ours_rss: int = 0
    tool_rss: int = 0
    ours_inner: float = 0.0
    check: str = "-"
    note: str = ""


def _timed(argv: list[str], env: dict[str, str] | None = None) -> Run | str:
    """Wall seconds, peak RSS (KiB) and stdout of a command; on failure, why."""
    os.sync()  # no write-back of an earlier run during this one
    with tempfile.NamedTemporaryFile("r", suffix=".time") as rep:
        start = time.perf_counter()
        proc = subprocess.run(
            [GNU_TIME, "-o", rep.name, "-f", "%M", *argv],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no message)"])[-6:]
            return f"{Path(argv[0]).name} exited with {proc.returncode}: " + " | ".join(tail)
        return Run(wall, int(rep.read().strip().splitlines()[-1]), proc.stdout)


def _warm(path: Path) -> float:
    """Read a file once, untimed by the benchmark, so that it is in the page cache."""
    start = time.perf_counter()
    buf = bytearray(8 * MiB)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    return time.perf_counter() - start


def _file_sha(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _host_tree(root: Path) -> tuple[int, int, str]:
    """(files, bytes, digest) of the regular files under ``root``."""
    lines: list[str] = []
    nbytes = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            nbytes += path.stat().st_size
            lines.append(f"{path.relative_to(root).as_posix()}\t{_file_sha(path)}")
    return len(lines), nbytes, _files_digest(lines)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _pseudo_text(rng: random.Random, size: int) -> bytes:
    words = [b"config", b"android", b"value", b"true", b"false", b"service", b"vendor", b"="]
    words += [rng.randbytes(rng.randint(2, 8)).hex().encode() for _ in range(500)]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(words, k=1024)) + b"\n"
    return bytes(out[:size])


def _build(root: Path, target: int) -> tuple[int, int]:
    """The tree: ``build_tree`` of unpack_bench plus very small and very large files."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from unpack_bench import build_tree

    rng = random.Random(11)
    extra = 0
    etc = root / "etc" / "config"
    etc.mkdir(parents=True)
    for k in range(120):  # small configuration files, about 10 KB to 60 KB
        n = rng.randint(10_000, 60_000)
        (etc / f"conf{k:03d}.xml").write_bytes(_pseudo_text(rng, n))
        extra += n
    media = root / "media"
    media.mkdir()
    for k in range(max(2, target // (200 * MiB))):  # large files, up to 20 MB
        n = rng.randint(8 * MiB, 20_000_000)
        half = n // 2 if k % 2 else n // 8
        (media / f"clip{k:02d}.bin").write_bytes(_pseudo_text(rng, half) + rng.randbytes(n - half))
        extra += n
    # build_tree adds about 42 MiB of libraries after reaching its target.
    total = extra + build_tree(root / "system", max(target - extra - 42 * MiB, 16 * MiB))
    files = sum(len(names) for _d, _s, names in os.walk(root))
    return files, total


def _fmt_s(times: list[float]) -> str:
    return f"{min(times):.2f}" if times else "-"


def _fmt_runs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times) or "-"


# -- one comparison -------------------------------------------------------------------------------


def _compare(
    row: Row,
    image: Path,
    ours_argv: list[str] | None,
    tool_argv: list[str] | None,
    outputs: tuple[Path | None, Path | None],
    env: dict[str, str],
    repeat: int,
    *,
    tool_mkdir: bool = False,
) -> tuple[Run | None, bool]:
    """Time both sides ``repeat`` times; returns fwscan's last run and whether the tool ran.

    ``outputs`` are what fwscan and the tool write, removed (untimed) before each of their runs
    and left in place after the last ones, for the checks; with ``tool_mkdir`` the tool's
    output directory is made (untimed) before each of its runs.
    """
    ours_out, tool_out = outputs
    print(f"  warm-up read of {image.name}: {_warm(image):.2f} s")
    last: Run | None = None
    tool_ok = tool_argv is not None
    for _ in range(repeat):
        if tool_ok and tool_argv is not None:
            if tool_out is not None:
                _remove(tool_out)
                if tool_mkdir:
                    tool_out.mkdir()
            res = _timed(tool_argv)
            if isinstance(res, str):
                print(f"  {row.tool} FAILED: {res}")
                row.note += f"{row.tool} failed; "
                tool_ok = False
            else:
                row.theirs.append(res.seconds)
                row.tool_rss = max(row.tool_rss, res.rss_kib)
        if ours_argv is not None:
            if ours_out is not None:
                _remove(ours_out)
            res = _timed(ours_argv, env)
            if isinstance(res, str):
                print(f"  fwscan FAILED: {res}")
                row.note += "fwscan failed; "
                ours_argv = None
                last = None
            else:
                row.ours.append(res.seconds)
                row.ours_rss = max(row.ours_rss, res.rss_kib)
                last = res
                inner = json.loads(res.stdout.strip().splitlines()[-1])["seconds"]
                row.ours_inner = inner if not row.ours_inner else min(row.ours_inner, inner)
    print(f"  {row.tool:<28} runs: {_fmt_runs(row.theirs)}")
    print(f"  {'fwscan':<28} runs: {_fmt_runs(row.ours)}  (in-process: {row.ours_inner:.2f} s)")
    if row.ours and row.theirs:
        print(
            f"  best: fwscan {min(row.ours):.2f} s, {row.tool} {min(row.theirs):.2f} s, ratio "
            f"{min(row.ours) / min(row.theirs):.2f} (target <= {TARGET_RATIO}), "
            f"fwscan peak RSS {row.ours_rss / 1024:.0f} MiB"
        )
    return last, tool_ok and bool(row.theirs)


def _prepare_ours(module: str, child: list[str], env: dict[str, str]) -> list[str] | None:
    """The child command line, after one untimed import; ``None`` (said) when it cannot run."""
    if importlib.util.find_spec(module) is None:
        print(f"  {module} does not exist (yet): fwscan's side skipped")
        return None
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  import {module} fails: {tail}: fwscan's side skipped")
        return None
    return child


def _tool(name: str, argv: list[str]) -> list[str] | None:
    if shutil.which(name) is None:
        print(f"  {name} is not installed: the tool's side skipped")
        return None
    return argv


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1100, help="content of the tree (MiB)")
    parser.add_argument("--quick", action="store_true", help="about 200 MiB of content")
    parser.add_argument("--workdir", type=Path, default=None, help="where the temporary files go")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each; best is kept")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.child[2] if len(args.child) > 2 else None)
        return
    if not Path(GNU_TIME).exists():
        sys.exit(f"{GNU_TIME} (GNU time) is needed for the peak RSS")
    size = 200 * MiB if args.quick else args.size_mib * MiB
    repeat = max(1, args.repeat)

    with tempfile.TemporaryDirectory(prefix="fwscan-formats-", dir=args.workdir) as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYTHONPYCACHEPREFIX": str(work / "pycache")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        me = [sys.executable, str(Path(__file__).resolve()), "--child"]

        # 1. The content and its digest.
        tree = work / "tree"
        t0 = time.perf_counter()
        nfiles, content = _build(tree, size)
        print(f"tree: {nfiles} files, {content / MiB:.0f} MiB, in {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        src_files, src_bytes, src_digest = _host_tree(tree)
        print(f"source digest of {src_files} files in {time.perf_counter() - t0:.1f} s")

        # 2. The images.
        erofs_img = work / "system.erofs"
        if shutil.which("mkfs.erofs"):
            t0 = time.perf_counter()
            subprocess.run(
                ["mkfs.erofs", "-zlz4hc", "-T0", "--all-root", str(erofs_img), str(tree)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            print(
                f"EROFS image (lz4hc): {erofs_img.stat().st_size / MiB:.0f} MiB, "
                f"in {time.perf_counter() - t0:.0f} s"
            )
        ext4_img = work / "system.ext4"
        t0 = time.perf_counter()
        from fwscan.synth import ext4img

        ext4img.make_ext4(tree, ext4_img, label="system")
        print(
            f"ext4 image: {ext4_img.stat().st_size / MiB:.0f} MiB "
            f"({ext4_img.stat().st_blocks * 512 / MiB:.0f} MiB allocated), "
            f"in {time.perf_counter() - t0:.0f} s"
        )
        ext4_sha = _file_sha(ext4_img)
        sparse_img = work / "system.simg"
        if shutil.which("img2simg"):
            t0 = time.perf_counter()
            subprocess.run(["img2simg", str(ext4_img), str(sparse_img)], check=True)
            print(
                f"sparse image: {sparse_img.stat().st_size / MiB:.0f} MiB, "
                f"in {time.perf_counter() - t0:.0f} s"
            )
        shutil.rmtree(tree)
        rows: list[Row] = []

        # 3a. EROFS.
        print("EROFS: fwscan walk + SHA-256 vs fsck.erofs --extract")
        row = Row("EROFS lz4hc", "fsck.erofs --extract", [], [])
        rows.append(row)
        if erofs_img.exists():
            out_dir = work / "erofs-out"
            ours = _prepare_ours("fwscan.unpack.erofs", [*me, "erofs", str(erofs_img)], env)
            tool = _tool("fsck.erofs", ["fsck.erofs", f"--extract={out_dir}", str(erofs_img)])
            last, tool_ok = _compare(row, erofs_img, ours, tool, (None, out_dir), env, repeat)
            row.check = _check_walk(last, tool_ok, out_dir, src_files, src_bytes, src_digest)
            _remove(out_dir)
            erofs_img.unlink()
        else:
            row.note += "no EROFS image (mkfs.erofs missing); "

        # 3b. Sparse.
        print("sparse: fwscan expand_sparse vs simg2img")
        row = Row("sparse (ext4)", "simg2img", [], [])
        rows.append(row)
        if sparse_img.exists():
            ours_out = work / "expanded-ours.img"
            tool_out = work / "expanded-tool.img"
            ours = _prepare_ours(
                "fwscan.unpack.sparse", [*me, "sparse", str(sparse_img), str(ours_out)], env
            )
            tool = _tool("simg2img", ["simg2img", str(sparse_img), str(tool_out)])
            last, tool_ok = _compare(row, sparse_img, ours, tool, (ours_out, tool_out), env, repeat)
            checks = []
            if last is not None:
                checks.append("ours ok" if _file_sha(ours_out) == ext4_sha else "ours DIFFERS")
            if tool_ok:
                checks.append("tool ok" if _file_sha(tool_out) == ext4_sha else "tool DIFFERS")
            row.check = ", ".join(checks) or "-"
            _remove(ours_out)
            _remove(tool_out)
            sparse_img.unlink()
        else:
            row.note += "no sparse image (img2simg missing); "

        # 3c. ext4.
        print("ext4: fwscan walk + SHA-256 vs debugfs rdump")
        row = Row("ext4", "debugfs rdump", [], [])
        rows.append(row)
        out_dir = work / "ext4-out"
        ours = _prepare_ours("fwscan.unpack.ext4", [*me, "ext4", str(ext4_img)], env)
        tool = _tool("debugfs", ["debugfs", "-R", f"rdump / {out_dir}", str(ext4_img)])
        # rdump wants an existing directory: made, untimed, before each run of debugfs.
        last, tool_ok = _compare(
            row, ext4_img, ours, tool, (None, out_dir), env, repeat, tool_mkdir=True
        )
        row.check = _check_walk(last, tool_ok, out_dir, src_files, src_bytes, src_digest)
        _remove(out_dir)
        ext4_img.unlink()

        _table(rows, size, content)


def _check_walk(
    last: Run | None, tool_ok: bool, out_dir: Path, files: int, nbytes: int, digest: str
) -> str:
    checks = []
    if last is not None:
        rep = json.loads(last.stdout.strip().splitlines()[-1])
        same = (rep["files"], rep["bytes"], rep["digest"]) == (files, nbytes, digest)
        word = "ours ok" if same else f"ours DIFFERS ({rep['files']} files, {rep['bytes']} B)"
        if rep.get("errors"):
            word += f" ({len(rep['errors'])} walk errors: {rep['errors'][:2]})"
        checks.append(word)
    if tool_ok:
        got = _host_tree(out_dir)
        checks.append("tool ok" if got == (files, nbytes, digest) else f"tool DIFFERS {got[:2]}")
    return ", ".join(checks) or "-"


def _table(rows: list[Row], size: int, content: int) -> None:
    print()
    print(f"content: {content / MiB:.0f} MiB (asked {size / MiB:.0f} MiB); best of runs; RSS peak")
    head = (
        f"{'format':<14} {'fwscan s':>9} {'tool':<21} {'tool s':>7} {'ratio':>6} "
        f"{'<=1.5':>5} {'fwscan RSS':>10} {'tool RSS':>9}  check"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = min(r.ours) / min(r.theirs) if r.ours and r.theirs else None
        verdict = "-" if ratio is None else ("yes" if ratio <= TARGET_RATIO else "NO")
        ours_rss = f"{r.ours_rss / 1024:.0f} MiB" if r.ours_rss else "-"
        tool_rss = f"{r.tool_rss / 1024:.0f} MiB" if r.tool_rss else "-"
        print(
            f"{r.name:<14} {_fmt_s(r.ours):>9} {r.tool:<21} {_fmt_s(r.theirs):>7} "
            f"{'-' if ratio is None else f'{ratio:.2f}':>6} {verdict:>5} {ours_rss:>10} "
            f"{tool_rss:>9}  {r.check}{'  ' + r.note if r.note else ''}"
        )


if __name__ == "__main__":
    main()

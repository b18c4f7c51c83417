"""The command line: parse options, call the library, map errors to exit codes.

Exit codes are decided here and only here (see :data:`fwscan.errors.EXIT_CODES`).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from fwscan import __version__
from fwscan.errors import EXIT_CODES, FwscanError, InputError
from fwscan.inventory import build_inventory
from fwscan.model import FileRecord, Inventory, Status
from fwscan.safepath import SafeWriter
from fwscan.unpack.base import FsEntry
from fwscan.unpack.registry import OpenedPartition

F = TypeVar("F", bound=Callable[..., Any])


def printable(text: str) -> str:
    """Text from firmware made safe for a terminal: control characters are escaped."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _fail(exc: BaseException, verbose: bool) -> None:
    if verbose:
        traceback.print_exception(exc)
    code = exc.exit_code if isinstance(exc, FwscanError) else 1
    message = str(exc) if isinstance(exc, FwscanError) else f"internal error: {exc!r}"
    click.echo(f"fwscan: error: {printable(message)}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Turn library errors into a one-line message and the documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = bool(click.get_current_context().find_root().params.get("verbose"))
        try:
            return func(*args, **kwargs)
        except BrokenPipeError:
            # The reader went away (``fwscan ... | head``): stop quietly, as other tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)
        except Exception as exc:  # noqa: BLE001 - last line of defence: no tracebacks for users
            _fail(exc, verbose)
        return None

    return wrapper  # type: ignore[return-value]


def _exit_for(inv: Inventory, failures: list[FwscanError]) -> None:
    """Report failed partitions on stderr and exit with the code of the first failure."""
    failed = inv.failed
    skipped = [c for c in inv.coverage if c.status is Status.SKIPPED]
    for rec in skipped:
        click.echo(
            f"fwscan: note: skipped {printable(rec.source)}: {printable(rec.reason)}", err=True
        )
    if failed:
        for rec in failed:
            click.echo(f"fwscan: error: {printable(rec.source)}: {printable(rec.reason)}", err=True)
        sys.exit(max((e.exit_code for e in failures), default=4))
    _exit_if_nothing_read(inv.coverage, inv.input.name, inv.input.format)


def _exit_if_nothing_read(coverage: Any, name: str, fmt: str) -> None:
    """An audit that read no filesystem must not look clean: exit 2."""
    if fmt in ("file", "directory"):
        return
    if not any(c.kind == "partition" and c.status is Status.READ for c in coverage):
        skipped = sum(1 for c in coverage if c.status is Status.SKIPPED)
        click.echo(
            f"fwscan: error: {printable(name)}: no filesystem fwscan reads was found "
            f"({skipped} parts skipped, see the coverage)",
            err=True,
        )
        sys.exit(2)


EPILOG = "\b\nExit codes:\n" + "\n".join(f"  {k}  {v}" for k, v in EXIT_CODES.items())


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, prog_name="fwscan")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks for errors.")
def cli(verbose: bool) -> None:
    """fwscan: static analysis of Android firmware images."""


def _source_option(func: F) -> F:
    return click.option(
        "--source",
        default=None,
        help="The build an incremental update applies to: a firmware file (its partitions are "
        "read first), or NAME=IMAGE for one partition image.",
    )(func)


def _workdir_option(func: F) -> F:
    return click.option(
        "--workdir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where partition images are expanded while reading (default: the system temp dir).",
    )(func)


@cli.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The OTA zip to write.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ab", "block", "factory", "super"]),
    default="ab",
    show_default=True,
    help="ab: A/B OTA zip; block: block-based OTA zip; factory: factory zip of sparse "
    "images; super: a super.img of the filesystem partitions.",
)
@click.option(
    "--erofs",
    "erofs",
    multiple=True,
    metavar="PARTITION",
    help="Make this partition an EROFS (LZ4HC) image instead of ext4 (repeatable).",
)
@handle_errors
def synth(manifest: Path, output: Path, fmt: str, erofs: tuple[str, ...]) -> None:
    """Build the firmware described by a MANIFEST (YAML): by default an A/B OTA zip."""
    from fwscan.synth import manifest as manifest_mod
    from fwscan.synth.build import synthesize

    if not manifest.is_file():
        raise InputError(f"{manifest}: no such manifest")
    spec = manifest_mod.load(manifest)
    result = synthesize(spec, output, fmt=fmt, erofs=erofs)
    click.echo(
        f"{result.path}  sha256 {result.sha256}  "
        f"({len(result.partitions)} partitions, {result.apps} apps)"
    )


@cli.command()
@click.argument("firmware", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the inventory as JSON.")
@_source_option
@_workdir_option
@handle_errors
def inventory(firmware: Path, as_json: bool, source: str | None, workdir: Path | None) -> None:
    """List every file of every partition of FIRMWARE, with the build identity.

    FIRMWARE may also be a directory (a dumped firmware tree), listed as it is.
    """
    if firmware.is_dir():
        inv, ctx = build_inventory(firmware, workdir=workdir, as_files=True)
    else:
        _check_input(firmware)
        inv, ctx = build_inventory(firmware, workdir=workdir, source=source)
    if as_json:
        click.echo(inventory_json(inv))
    else:
        click.echo(inventory_text(inv))
    _exit_for(inv, ctx.failures)


@cli.command()
@click.argument("firmware", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The directory to write (must be empty or absent).",
)
@handle_errors
def unpack(firmware: Path, output: Path) -> None:
    """Extract every file of every partition of FIRMWARE into OUTPUT/<partition>/<path>.

    Symlinks and special files are listed in OUTPUT/inventory.json, never created.
    """
    _check_input(firmware)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"{output}: output directory exists and is not empty")
    writer = SafeWriter(output / "files")
    work = output / ".work"
    work.mkdir(parents=True, exist_ok=True)

    def write(part: OpenedPartition, entry: FsEntry, record: FileRecord) -> None:
        fd = writer.open_new(f"{part.name}/{entry.path}")
        with os.fdopen(fd, "wb") as out:
            for chunk in part.fs.iter_content(entry):
                out.write(chunk)

    try:
        inv, ctx = build_inventory(firmware, workdir=work, on_file=write)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (output / "inventory.json").write_text(inventory_json(inv) + "\n", encoding="utf-8")
    parts = sum(1 for c in inv.coverage if c.kind == "partition" and c.status is Status.READ)
    click.echo(f"{len(inv.files)} files from {parts} partitions written to {output / 'files'}")
    _exit_for(inv, ctx.failures)


def _scan_options(func: F) -> F:
    """The options shared by every command that may scan firmware."""
    options = [
        click.option(
            "-j",
            "--jobs",
            type=click.IntRange(1, 64),
            default=2,
            show_default=True,
            help="Worker processes for artifact analysis.",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Result cache folder (default: $FWSCAN_CACHE_DIR or ~/.cache/fwscan).",
        ),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the result cache."),
        click.option(
            "--timeout",
            type=click.FloatRange(1),
            default=600,
            show_default=True,
            help="Seconds one artifact's analysis may take before it is recorded as failed.",
        ),
        click.option(
            "--memory-limit",
            type=click.IntRange(256),
            default=3072,
            show_default=True,
            help="Memory (MiB) one analysis worker may use before it is recorded as failed.",
        ),
        click.option(
            "--signatures",
            "signatures_dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Use the signature files in this folder.",
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress bars and no summary."),
        _workdir_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _options(params: dict[str, Any]) -> Any:
    """ScanOptions from the shared options (removed from ``params``)."""
    from fwscan.cache import default_cache_dir
    from fwscan.pipeline import ScanOptions

    no_cache = params.pop("no_cache")
    cache_dir = params.pop("cache_dir")
    return ScanOptions(
        jobs=params.pop("jobs"),
        cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
        workdir=params.pop("workdir"),
        timeout=params.pop("timeout"),
        memory_limit=params.pop("memory_limit") << 20,
        progress=not params["quiet"],
        signatures_dir=params.pop("signatures_dir"),
    )


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror}") from None


@cli.command()
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the scan result (schema fwscan.scan/1) to this file.",
)
@click.option(
    "-o",
    "--output",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the HTML audit report to this file.",
)
@click.option(
    "--sarif",
    "sarif_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write SARIF 2.1.0 to this file.",
)
@click.option(
    "--md",
    "md_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a short Markdown summary to this file.",
)
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    default=None,
    help="An earlier build (scan JSON or firmware): --fail-on applies to what is new.",
)
@click.option(
    "--fail-on",
    "fail_on",
    default=None,
    help="Exit 9 when the build gains these: new-flow, new-read, new-endpoint, "
    "new-sink, new-permission, new-native, new-service, new-privilege, new-app, "
    "severity>=LEVEL (comma-separated).",
)
@click.option(
    "--suppressions",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML file of reviewed findings (fingerprint, justification, expires) the gate ignores.",
)
@_source_option
@_scan_options
@handle_errors
def scan(target: Path, **params: Any) -> None:
    """Scan TARGET (a firmware file, an APK/JAR/DEX/ELF, or a directory of them) for
    identifier reads, endpoints and flows of identifiers to network and SMS sinks."""
    from fwscan.pipeline import load_result
    from fwscan.pipeline import scan as run_scan

    options = _options(params)
    if params["source"] is not None:
        import dataclasses

        options = dataclasses.replace(options, source=params["source"])
    if not target.exists():
        raise InputError(f"{target}: no such file or directory")
    conditions = suppressions = None
    if params["fail_on"] is not None:
        from fwscan import gate

        conditions = gate.parse_fail_on(params["fail_on"])
        if params["suppressions"] is not None:
            suppressions = gate.load_suppressions(params["suppressions"])
    elif params["baseline"] is not None or params["suppressions"] is not None:
        raise InputError("--baseline and --suppressions go with --fail-on")
    baseline = load_result(params["baseline"], options) if params["baseline"] else None
    result, stats = run_scan(target, options)
    _write_scan_outputs(result, params)
    if not params["quiet"]:
        click.echo(scan_summary(result))
        click.echo(
            f"fwscan: {stats.artifacts} artifacts: {stats.analysed} analysed, "
            f"{stats.cached} from cache, {stats.failed} failed; "
            + ", ".join(f"{k} {v:.1f} s" for k, v in stats.seconds.items()),
            err=True,
        )
    failures = [c for c in result.coverage if c.status is Status.FAILED]
    for rec in failures:
        click.echo(f"fwscan: error: {printable(rec.source)}: {printable(rec.reason)}", err=True)
    if conditions is not None:
        from fwscan import gate

        verdict = gate.evaluate(result, baseline, conditions, suppressions or ())
        _report_gate(verdict)
        if verdict.failed:
            sys.exit(9)
    if failures:
        sys.exit(4)
    _exit_if_nothing_read(result.coverage, result.input.name, result.input.format)


def _write_scan_outputs(result: Any, params: dict[str, Any]) -> None:
    if params["json_out"] is not None:
        _write(params["json_out"], result_json(result))
    if params["html_out"] is not None:
        from fwscan.render.html import render_scan

        _write(params["html_out"], render_scan(result, generated=_now()))
    if params["sarif_out"] is not None:
        from fwscan.render.sarif import render_sarif
        from fwscan.signatures import load_signatures

        _write(
            params["sarif_out"], render_sarif(result, load_signatures(params.get("signatures_dir")))
        )
    if params["md_out"] is not None:
        from fwscan.render.markdown import render_scan_md

        _write(params["md_out"], render_scan_md(result))


def _report_gate(verdict: Any) -> None:
    """The gate's decision on stderr: every violation, suppression and expired suppression."""
    for finding, condition in verdict.violations:
        click.echo(
            f"fwscan: gate: {condition}: [{finding.severity.label}] "
            f"{printable(finding.component)}: {printable(finding.title)} "
            f"(fingerprint {finding.fingerprint})",
            err=True,
        )
    for app in verdict.new_apps:
        click.echo(f"fwscan: gate: new-app: {printable(app.package or app.path)}", err=True)
    for finding, sup in verdict.suppressed:
        click.echo(
            f"fwscan: gate: suppressed until {sup.expires}: {printable(finding.title)} "
            f"({printable(sup.justification)})",
            err=True,
        )
    for sup in verdict.expired:
        click.echo(
            f"fwscan: gate: warning: suppression of {sup.fingerprint} expired on {sup.expires}",
            err=True,
        )
    for sup in verdict.unused:
        click.echo(
            f"fwscan: gate: note: suppression of {sup.fingerprint} matched nothing", err=True
        )
    count = len(verdict.violations) + len(verdict.new_apps)
    click.echo(
        f"fwscan: gate: {'FAILED' if verdict.failed else 'passed'} ({count} new "
        f"finding{'s' if count != 1 else ''} forbidden)",
        err=True,
    )


@cli.command()
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the HTML diff report to this file.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the diff as JSON (schema fwscan.diff/1).",
)
@click.option(
    "--md",
    "md_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a Markdown summary of the diff.",
)
@_scan_options
@handle_errors
def diff(old: Path, new: Path, **params: Any) -> None:
    """Compare two builds: OLD and NEW are firmware files or saved scan results (JSON).

    Prints the one-sentence answer first, then what each kind of finding gained and lost."""
    from fwscan.compare import diff as build_diff
    from fwscan.pipeline import load_result

    options = _options(params)
    d = build_diff(load_result(old, options), load_result(new, options))
    if params["html_out"] is not None:
        from fwscan.render.html import render_diff

        _write(params["html_out"], render_diff(d, generated=_now()))
    if params["json_out"] is not None:
        _write(params["json_out"], json.dumps(d.to_dict(), indent=2, sort_keys=True))
    if params["md_out"] is not None:
        from fwscan.render.markdown import render_diff_md

        _write(params["md_out"], render_diff_md(d))
    click.echo(printable(d.headline))
    if not params["quiet"]:
        for kind, row in d.counts().items():
            click.echo(f"  {kind:<10} " + ", ".join(f"{n} {k}" for k, n in sorted(row.items())))


@cli.command()
@click.argument("builds", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the HTML matrix report to this file.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the matrix as JSON (schema fwscan.matrix/1).",
)
@_scan_options
@handle_errors
def compare(builds: tuple[Path, ...], **params: Any) -> None:
    """The batch view: apps, endpoints and flows of BUILDS (firmware files or scan results)
    side by side, rows present in only some builds first."""
    from fwscan.compare import matrix
    from fwscan.pipeline import load_result

    if len(builds) < 2:
        raise InputError("compare needs at least two builds")
    options = _options(params)
    m = matrix([load_result(b, options) for b in builds])
    if params["html_out"] is not None:
        from fwscan.render.html import render_matrix

        _write(params["html_out"], render_matrix(m, generated=_now()))
    if params["json_out"] is not None:
        _write(params["json_out"], json.dumps(m.to_dict(), indent=2, sort_keys=True))
    labels = [b.label for b in m.builds]
    click.echo("builds: " + " | ".join(printable(lab) for lab in labels))
    partial = [r for r in m.rows if r.partial]
    click.echo(f"{len(partial)} of {len(m.rows)} rows are present in only some builds")
    if not params["quiet"]:
        for row in partial[:20]:
            cells = " ".join("x" if c != "absent" else "." for c in row.cells)
            click.echo(f"  {cells}  {row.kind:<8} {printable(row.label)}")


SAMPLE_BUILDS = ("nokia7plus-other-batch", "nokia7plus-prepatch", "nokia7plus-feb-patch")


@cli.command()
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/demo"),
    show_default=True,
    help="Where to write everything.",
)
@click.option(
    "--samples",
    "samples_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The sample manifests folder (default: the bundled one).",
)
@_scan_options
@handle_errors
def demo(out_dir: Path, samples_dir: Path | None, **params: Any) -> None:
    """Build the sample Nokia 7 plus firmware (or reuse them), scan them, and write the audit
    reports, the diff of the pre-patch and February builds, and the batch matrix."""
    from fwscan.blobstore import sha256_file
    from fwscan.compare import diff as build_diff
    from fwscan.compare import matrix
    from fwscan.pipeline import scan as run_scan
    from fwscan.render.html import render_diff, render_matrix, render_scan
    from fwscan.render.markdown import render_diff_md
    from fwscan.synth import manifest as manifest_mod
    from fwscan.synth.build import synthesize

    options = _options(params)
    samples_dir = samples_dir or Path(__file__).resolve().parents[1] / "sample_manifests"
    if not samples_dir.is_dir():
        raise InputError(f"{samples_dir}: sample manifests not found (use --samples)")
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp_text = __version__ + "".join(sha256_file(p) for p in sorted(samples_dir.glob("*.yaml")))
    results = {}
    generated = _now()
    for name in SAMPLE_BUILDS:
        firmware = out_dir / f"{name}.zip"
        stamp = out_dir / f"{name}.stamp"
        if not (firmware.is_file() and stamp.is_file() and stamp.read_text() == stamp_text):
            synthesize(manifest_mod.load(samples_dir / f"{name}.yaml"), firmware)
            stamp.write_text(stamp_text)
        result, _stats = run_scan(firmware, options)
        results[name] = result
        _write(out_dir / f"{name}.json", result_json(result))
        _write(out_dir / f"{name}.html", render_scan(result, generated=generated))
        click.echo(f"audit report   {out_dir / f'{name}.html'}")
    d = build_diff(results["nokia7plus-prepatch"], results["nokia7plus-feb-patch"])
    _write(out_dir / "diff.html", render_diff(d, generated=generated))
    _write(out_dir / "diff.json", json.dumps(d.to_dict(), indent=2, sort_keys=True))
    _write(out_dir / "diff.md", render_diff_md(d))
    m = matrix([results[n] for n in SAMPLE_BUILDS])
    _write(out_dir / "matrix.html", render_matrix(m, generated=generated))
    click.echo(f"diff report    {out_dir / 'diff.html'}")
    click.echo(f"batch matrix   {out_dir / 'matrix.html'}")
    click.echo("")
    click.echo(printable(d.headline))


def result_json(result: Any) -> str:
    """The deterministic JSON form of a scan result."""
    return json.dumps(result.to_dict(), indent=2, sort_keys=True, ensure_ascii=True)


def scan_summary(result: Any, limit: int = 20) -> str:
    """The headline of a scan: identity, counts, then the most severe findings."""
    p = printable
    b = result.build
    s = result.summary()
    lines = [
        f"{p(result.input.name)}: {p(b.fingerprint) or '(no build fingerprint)'}",
        f"  model {p(b.model) or '-'}, security patch {p(b.security_patch) or '-'}; "
        f"{s['files']} files, {s['apps']} apps, {s['artifacts']} artifacts analysed",
        "  findings: "
        + (", ".join(f"{n} {k}" for k, n in s["findings_by_severity"].items()) or "none"),
    ]
    shown = [
        f for f in result.findings if f.kind.value in ("flow", "read", "endpoint", "native", "sink")
    ]
    for f in shown[:limit]:
        lines.append(f"  [{f.severity.label:<8}] {p(f.component)}: {p(f.title)}")
    if len(shown) > limit:
        lines.append(f"  ... {len(shown) - limit} more (see --json)")
    if result.errors:
        lines.append(f"  {len(result.errors)} artifact problems recorded (see errors in --json)")
    return "\n".join(lines)


@cli.group()
def signatures() -> None:
    """Inspect the signature set (sources, sinks, endpoints, native names)."""


@signatures.command("list")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A signature folder other than the bundled one.",
)
@handle_errors
def signatures_list(directory: Path | None) -> None:
    """List every rule: id, kind, severity and summary."""
    from fwscan.signatures import describe, load_signatures

    sigset = load_signatures(directory)
    click.echo(f"signature set {sigset.version} (sha256 {sigset.sha256})")
    for row in describe(sigset):
        summary = printable(str(row["summary"]))
        click.echo(f"{row['id']:<48} {row['kind']:<9} {row['severity']:<8} {summary}")


@signatures.command("check")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A signature folder other than the bundled one.",
)
@handle_errors
def signatures_check(directory: Path | None) -> None:
    """Validate the signature files; exit 8 with one line per problem if any."""
    from fwscan.signatures import check

    problems = check(directory)
    for line in problems:
        click.echo(f"fwscan: error: {printable(line)}", err=True)
    if problems:
        sys.exit(8)
    click.echo("signatures: OK")


def _check_input(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")


def inventory_json(inv: Inventory) -> str:
    """The deterministic JSON form of an inventory."""
    return json.dumps(inv.to_dict(), indent=2, sort_keys=True, ensure_ascii=True)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def inventory_text(inv: Inventory) -> str:
    """A human-readable inventory."""
    b = inv.build
    p = printable
    lines = [
        f"{p(inv.input.name)}  ({inv.input.format}, {_size(inv.input.size)}, "
        f"sha256 {inv.input.sha256})",
        f"  fingerprint     {p(b.fingerprint) or '-'}",
        f"  model           {p(b.model) or '-'}  "
        f"(brand {p(b.brand) or '-'}, device {p(b.device) or '-'})",
        f"  display id      {p(b.display_id) or '-'}   incremental {p(b.incremental) or '-'}",
        f"  android         {p(b.release) or '-'} (sdk {p(b.sdk) or '-'})",
        f"  security patch  {p(b.security_patch) or '-'}   "
        f"vendor {p(b.vendor_security_patch) or '-'}",
        "",
        "coverage:",
    ]
    for c in inv.coverage:
        reason = f": {p(c.reason)}" if c.reason else ""
        lines.append(f"  {c.status.value:<8} {c.kind:<9} {c.format:<11} {p(c.source)}{reason}")
    lines += ["", f"files ({len(inv.files)}):"]
    for f in inv.files:
        digest = (
            f.sha256[:16]
            if f.sha256
            else ("-> " + p(f.link_target or "") if f.link_target else "-")
        )
        extra = f"  [error: {p(f.error)}]" if f.error else ""
        lines.append(
            f"  {f.kind:<15} {f.size:>10}  {f.mode:o}  {digest:<16}  {p(f.device_path)}{extra}"
        )
    return "\n".join(lines)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="fwscan")

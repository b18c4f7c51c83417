"""The one place where unpackers are registered, and the walk over a firmware's tree.

A firmware is a tree: containers (an OTA zip, a payload) hold partition images, and
filesystems (ext4) hold files. :func:`open_firmware` detects each node by its content, expands
containers, opens filesystems, and records every node in the coverage list, so that nothing is
skipped silently. A failure below the top level becomes a record and the walk goes on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from fwscan.errors import FwscanError, InputError, UnpackError
from fwscan.model import Status
from fwscan.unpack import archive, bootimg, erofs, ext4
from fwscan.unpack.apex import ApexContainer
from fwscan.unpack.archive import ArchiveContainer, CompressedContainer
from fwscan.unpack.base import Child, Container, FileSystem, Filesystem, UnpackContext, Window
from fwscan.unpack.blockota import BlockOtaContainer
from fwscan.unpack.bootimg import BootImageContainer
from fwscan.unpack.delta import DeltaPayloadContainer
from fwscan.unpack.sparse import SparseContainer
from fwscan.unpack.superimg import SuperContainer
from fwscan.unpack.zipota import OtaZipContainer

HEAD_SIZE = 4096


@dataclass
class OpenedPartition:
    """A filesystem image ready to be listed."""

    name: str
    source: str
    format: str
    fs: FileSystem
    window: Window | None = None
    """The image's bytes (valid until the walk moves on); ``None`` for a host directory."""
    named_by_file: bool = False
    """The name was taken from a file name (nothing named the partition): it may be guessed
    better from the content (:func:`fwscan.inventory.guess_partition`)."""


# The registrations: a new format is one module and one line here. Order matters where
# probes overlap: the specific zips (A/B OTA, block OTA, APEX) before the generic archive.
def containers(source: Mapping[str, Path] | None = None) -> tuple[Container, ...]:
    """The containers, in probe order; ``source`` maps partition names to the images of the
    source build, for incremental updates."""
    return (
        OtaZipContainer(),
        BlockOtaContainer(source),
        ApexContainer(),
        DeltaPayloadContainer(source),
        SparseContainer(),
        SuperContainer(),
        BootImageContainer(),
        ArchiveContainer(),
        CompressedContainer(),
    )


CONTAINERS: tuple[Container, ...] = containers()
FILESYSTEMS: tuple[Filesystem, ...] = (
    Filesystem("ext4", ext4.probe, ext4.Ext4FileSystem),
    Filesystem("erofs", erofs.probe, erofs.ErofsFileSystem),
    Filesystem("cpio", bootimg.probe_cpio, bootimg.CpioFileSystem),
)


def detect(window: Window) -> str:
    """The format name of the bytes in ``window``, or ``unknown``."""
    head = window.read_head(HEAD_SIZE)
    for fs in FILESYSTEMS:
        if fs.probe(head):
            return fs.name
    for c in CONTAINERS:
        if c.probe(window, head):
            return c.name
    return "unknown"


def open_firmware(path: Path, ctx: UnpackContext) -> Iterator[OpenedPartition]:
    """Every readable filesystem in the firmware at ``path``, recording coverage in ``ctx``.

    Raises :class:`InputError` or :class:`UnpackError` only when the top-level file itself is
    unusable; anything below becomes a coverage record.
    """
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        window = Window(path)
        window.read_head(1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from exc
    yield from _visit(window, path.name, None, 0, ctx)


def _stem(source: str) -> str:
    """A partition name from the source chain: the last named element (an expanded sparse
    image is called ``raw``: its parent's name is the useful one)."""
    parts = [p for p in source.split(" > ") if p != "raw"]
    if not parts:
        return "image"
    return archive.partition_name(parts[-1]) or Path(parts[-1]).stem


def _volume_label(head: bytes) -> str:
    raw = head[1024 + 120 : 1024 + 136].split(b"\0", 1)[0]
    return raw.decode("ascii", "replace") if raw.isascii() else ""


def _visit(
    window: Window, source: str, partition: str | None, depth: int, ctx: UnpackContext
) -> Iterator[OpenedPartition]:
    kind = "partition" if partition else ("file" if depth == 0 else "container")
    if depth > ctx.limits.max_nesting:
        ctx.record(source, kind, "unknown", Status.SKIPPED, "nesting limit reached")
        return
    head = window.read_head(HEAD_SIZE)
    for fs in FILESYSTEMS:
        if fs.probe(head):
            label = _volume_label(head) if fs.name == "ext4" else ""
            name = partition or label or _stem(source)
            try:
                opened = fs.open(window, ctx.limits)
            except Exception as exc:  # hostile bytes must not end the walk
                err = as_unpack_error(exc)
                if depth == 0:
                    raise _named(err, source) from exc
                ctx.record(source, "partition", fs.name, Status.FAILED, error=err)
                return
            ctx.record(source, "partition", fs.name, Status.READ)
            by_file = not partition and not label
            yield OpenedPartition(name, source, fs.name, opened, window, by_file)
            return
    for container in ctx.containers or CONTAINERS:
        if not container.probe(window, head):
            continue
        children = container.expand(window, ctx)
        started = False
        while True:
            try:
                child = next(children)
            except StopIteration:
                break
            except Exception as exc:  # hostile bytes must not end the walk
                err = as_unpack_error(exc)
                if depth == 0 and not started:
                    raise _named(err, source) from exc
                ctx.record(source, kind, container.name, Status.FAILED, error=err)
                return
            if not started:
                started = True
                ctx.record(source, kind, container.name, Status.READ)
            yield from _child(child, source, partition, depth, ctx)
        if not started:
            ctx.record(source, kind, container.name, Status.READ, "holds nothing")
        return
    if depth == 0:
        raise InputError(f"{source}: not a firmware format fwscan reads ({_describe(head)})")
    reason = f"not a filesystem or container fwscan reads ({_describe(head)})"
    ctx.record(source, kind, "unknown", Status.SKIPPED, reason)


def open_nested(child: Child, source: str, ctx: UnpackContext) -> Iterator[OpenedPartition]:
    """The filesystems inside a child found in a file of a partition (an APEX payload)."""
    yield from _child(child, source, None, 1, ctx)


def _child(
    child: Child, source: str, partition: str | None, depth: int, ctx: UnpackContext
) -> Iterator[OpenedPartition]:
    chain = f"{source} > {child.name}"
    kind = "partition" if child.partition else "container"
    if child.skipped is not None:
        ctx.record(chain, kind, "unknown", Status.SKIPPED, child.skipped)
        return
    if child.window is None:
        error = child.error or UnpackError("not produced")
        ctx.record(chain, kind, child.format, Status.FAILED, error=error)
        return
    yield from _visit(child.window, chain, child.partition or partition, depth + 1, ctx)


def as_unpack_error(exc: Exception) -> FwscanError:
    """Our own errors as they are; anything else (a parser bug met by hostile bytes) as an
    :class:`UnpackError` naming the exception, so one bad node never ends the walk."""
    if isinstance(exc, FwscanError):
        return exc
    return UnpackError(f"unexpected {type(exc).__name__}: {exc}")


def _named(exc: FwscanError, source: str) -> FwscanError:
    """The same error, its message prefixed with where it happened."""
    return type(exc)(f"{source}: {exc}")


def _describe(head: bytes) -> str:
    if not head:
        return "empty"
    if not any(head):
        return "all zero bytes"
    return f"starts with {head[:8].hex()}"

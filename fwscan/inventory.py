"""The inventory: every file of every partition of a firmware, with its kind and hash."""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from fwscan import __version__, buildprop
from fwscan.blobstore import BlobStore, sha256_file
from fwscan.errors import LimitError
from fwscan.hashing import ReadAhead
from fwscan.limits import DEFAULT_LIMITS, Limits
from fwscan.model import FileRecord, InputInfo, Inventory, Status
from fwscan.unpack.base import EntryType, FileSystem, FsEntry, UnpackContext, Window
from fwscan.unpack.hostdir import HostFileSystem
from fwscan.unpack.registry import OpenedPartition, as_unpack_error, detect, open_firmware

KINDS = (
    "apk",
    "jar",
    "dex",
    "odex",
    "vdex",
    "oat",
    "elf",
    "apex",
    "build_prop",
    "init_rc",
    "permissions_xml",
    "other",
)
_SUFFIX_KINDS = {
    ".apk": "apk",
    ".jar": "jar",
    ".dex": "dex",
    ".odex": "odex",
    ".vdex": "vdex",
    ".oat": "oat",
    ".apex": "apex",
    ".capex": "apex",
}
_PROP_NAMES = frozenset({"build.prop", "default.prop", "prop.default"})
_PERMISSION_DIRS = ("etc/permissions/", "etc/sysconfig/", "etc/default-permissions/")

FileSink = Callable[[OpenedPartition, FsEntry, FileRecord], None]


def classify(path: str, head: bytes) -> str:
    """The kind of a file from its name and first bytes."""
    name = posixpath.basename(path)
    lower = name.lower()
    suffix = posixpath.splitext(lower)[1]
    if suffix in _SUFFIX_KINDS:
        return _SUFFIX_KINDS[suffix]
    if lower in _PROP_NAMES:
        return "build_prop"
    if suffix == ".rc" and ("/init/" in f"/{path}" or lower.startswith("init")):
        return "init_rc"
    if suffix == ".xml" and any(d in f"/{path}" for d in _PERMISSION_DIRS):
        return "permissions_xml"
    if head.startswith(b"dex\n"):
        return "dex"
    if head.startswith(b"\x7fELF"):
        return "elf"
    return "other"


def device_path(partition: str, path: str, system_as_root: bool, fmt: str = "") -> str:
    """Where a file of ``partition`` appears on a running device: under ``/<partition>/``;
    at the root for a system-as-root system image, a ramdisk (cpio) or a host directory
    (partition ``""``); under ``/apex/<package>/`` for an APEX payload. In a dumped firmware
    tree (a host directory whose ``system/`` is a system-as-root image, with ``vendor/``,
    ``product/``... beside it), ``system/system/X`` is ``/system/X`` and ``system/X`` is
    ``/X``."""
    if not partition and system_as_root and fmt == "directory" and path.startswith("system/"):
        return "/" + path[7:]
    if not partition or fmt == "cpio" or (partition == "system" and system_as_root):
        return "/" + path
    if partition.startswith("apex:"):
        return f"/apex/{partition[5:]}/{path}"
    return f"/{partition}/{path}"


PARTITION_NAMES = frozenset(
    {
        "system",
        "vendor",
        "product",
        "system_ext",
        "odm",
        "oem",
        "vendor_dlkm",
        "odm_dlkm",
        "system_dlkm",
        "system_other",
    }
)
"""The Android partitions whose files appear under ``/<name>/`` on a device."""
_SLOT_SUFFIX = re.compile(r"_[ab]$")
_BUILD_KEY = re.compile(rb"^ro\.([a-z_]{2,20})\.build\.(?:fingerprint|id|date\.utc)=", re.M)
_MAX_GUESS_PROP = 256 * 1024


def guess_partition(part: OpenedPartition, entries: list[FsEntry]) -> str:
    """The name a partition image gets when nothing named it (a bare image given on the
    command line, a file called ``bj-system.erofs`` or ``system_a.img``): the known partition
    name its own name holds once a slot suffix is dropped, else the one its content shows (a
    system-as-root ``system/build.prop``; the ``ro.<partition>.build.*`` keys of its root or
    ``etc/build.prop``), else a known name among the ``-``/``.``-separated words of its name,
    else its name as it is. Partitions that something named (a payload, super.img, an archive
    member such as ``vendor.img``, a volume label) keep their names."""
    name = part.name
    if not part.named_by_file or not name or name in PARTITION_NAMES or part.format == "cpio":
        return name
    plain = _SLOT_SUFFIX.sub("", name.lower())
    if plain in PARTITION_NAMES:
        return plain
    by_path = {e.path: e for e in entries if e.type is EntryType.FILE}
    if "system/build.prop" in by_path and "build.prop" not in by_path:
        return "system"
    for prop in ("build.prop", "etc/build.prop"):
        entry = by_path.get(prop)
        if entry is None or entry.size > _MAX_GUESS_PROP:
            continue
        try:
            text = b"".join(part.fs.iter_content(entry))
        except Exception:  # noqa: BLE001, S112 - a damaged build.prop is reported when listed
            continue
        for match in _BUILD_KEY.finditer(text):
            found = match.group(1).decode()
            if found in PARTITION_NAMES:
                return found
    for word in re.split(r"[-.]+", name.lower()):
        known = _SLOT_SUFFIX.sub("", word)
        if known in PARTITION_NAMES:
            return known
    return name


def _is_system_as_root(entries: list[FsEntry], fmt: str = "") -> bool:
    """A system-as-root image: ``system/build.prop`` and no ``build.prop`` at its root. For a
    host directory: a dumped firmware tree whose ``system/`` is such an image."""
    paths = {e.path for e in entries}
    if fmt == "directory":
        return "system/system/build.prop" in paths and "system/build.prop" not in paths
    return "system/build.prop" in paths and "build.prop" not in paths


def _digest(blocks: Iterator[bytes], keep_content: bool) -> tuple[str, bytes, bytes]:
    """SHA-256, the first bytes, and (when asked, up to the build.prop bound) the content of a
    file given as a stream of blocks."""
    digest = hashlib.sha256()
    head = b""
    keep: bytearray | None = bytearray() if keep_content else None
    for block in blocks:
        if len(head) < 64:
            head += block[: 64 - len(head)]
        digest.update(block)
        if keep is not None and len(keep) < buildprop.MAX_PROP_FILE:
            keep += block
    return digest.hexdigest(), head, bytes(keep or b"")


def _ota_metadata(path: Path) -> dict[str, str]:
    """The build properties an OTA zip's own metadata gives ({} for anything else)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(buildprop.OTA_METADATA)
            if info.file_size > buildprop.MAX_OTA_METADATA:
                return {}
            with zf.open(info) as f:
                return buildprop.ota_metadata(f.read(buildprop.MAX_OTA_METADATA))
    except Exception:  # noqa: BLE001 - optional; a damaged member (zlib.error...) is not fatal
        return {}


def _store_copy(fs: FileSystem, entry: FsEntry, sha: str, store: BlobStore) -> None:
    """Copy a file the analyzers need, and whose analysis is not cached, into ``store`` (a
    second read, from the page cache; a re-scan reads each file once)."""
    out, tmp = store.new_file()
    try:
        with out:
            for chunk in fs.iter_content(entry):
                out.write(chunk)
    except BaseException:
        BlobStore.discard(tmp)
        raise
    store.commit(tmp, sha)


def _sources(spec: str, out: Path, limits: Limits) -> dict[str, Path]:
    name, sep, image = spec.partition("=")
    if sep and name.isidentifier() and Path(image).is_file():
        return {name: Path(image)}
    path = Path(spec)
    if not path.is_file():
        from fwscan.errors import InputError

        raise InputError(f"--source {spec}: no such file (give a firmware or NAME=IMAGE)")
    return source_images(path, out, limits)


def source_images(path: Path, out: Path, limits: Limits = DEFAULT_LIMITS) -> dict[str, Path]:
    """The partition images of a source build (for incremental updates), by partition name."""
    from fwscan.unpack.registry import open_firmware

    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, Path] = {}
    ctx = UnpackContext(out / "work", limits)
    ctx.workdir.mkdir(exist_ok=True)
    for part in open_firmware(path, ctx):
        try:
            if part.window is None or part.name in images:
                continue
            target = out / f"{len(images):03d}.img"
            ctx.account(part.window.size())
            with part.window.open() as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            images[part.name] = target
        finally:
            part.fs.close()
    if not images:
        from fwscan.errors import InputError

        raise InputError(f"{path}: no partition image found in the source build")
    return images


def _list_apex(
    part: OpenedPartition,
    entry: FsEntry,
    ctx: UnpackContext,
    limits: Limits,
    records: list[FileRecord],
    props: list[tuple[str, dict[str, str]]],
    on_file: FileSink | None,
    store: BlobStore | None,
) -> None:
    """List the files of an APEX (or CAPEX) found in a partition as partition ``apex:<pkg>``."""
    from fwscan.unpack.apex import expand_apex_file
    from fwscan.unpack.registry import open_nested

    where = f"{part.source} > {entry.path}"
    tmp = ctx.new_image_path("apex")
    try:
        ctx.account(entry.size)
        with open(tmp, "wb") as out:
            for chunk in part.fs.iter_content(entry):
                out.write(chunk)
        for child in expand_apex_file(tmp, ctx):
            for sub in open_nested(child, where, ctx):
                try:
                    _list_partition(sub, ctx, limits, records, props, on_file, store)
                finally:
                    sub.fs.close()
    except Exception as exc:  # noqa: BLE001 - a broken APEX is recorded, the partition goes on
        ctx.record(where, "container", "apex", Status.FAILED, error=as_unpack_error(exc))
    finally:
        tmp.unlink(missing_ok=True)


def build_inventory(
    path: Path,
    *,
    workdir: Path | None = None,
    limits: Limits = DEFAULT_LIMITS,
    on_file: FileSink | None = None,
    store: BlobStore | None = None,
    as_files: bool = False,
    source: str | None = None,
) -> tuple[Inventory, UnpackContext]:
    """Unpack ``path`` and list every file. ``on_file`` sees each regular file after it is read
    (the unpack command writes it out); ``store`` receives copies of the files the analyzers
    need, in the same read. With ``as_files``, ``path`` (a directory or a single file such as an
    APK) is listed as it is, without looking for firmware containers. ``source`` is the build an
    incremental update applies to (a firmware file whose partition images are extracted first),
    or ``NAME=IMAGE`` for one bare partition image."""
    with tempfile.TemporaryDirectory(prefix="fwscan-", dir=workdir) as tmp:
        ctx = UnpackContext(Path(tmp), limits)
        if source is not None:
            from fwscan.unpack.registry import containers

            ctx.containers = containers(_sources(source, Path(tmp) / "source", limits))
        records: list[FileRecord] = []
        props: list[tuple[str, dict[str, str]]] = []
        if as_files:
            fmt = "directory" if path.is_dir() else "file"
            ctx.record(path.name, "file", fmt, Status.READ)
            parts: Iterator[OpenedPartition] = iter(
                [OpenedPartition("", path.name, fmt, HostFileSystem(path, limits))]
            )
        else:
            fmt = detect(Window(path)) if path.is_file() else "unknown"
            parts = open_firmware(path, ctx)
        for part in parts:
            try:
                _list_partition(part, ctx, limits, records, props, on_file, store)
            finally:
                part.fs.close()
        if not as_files:
            meta = _ota_metadata(path)
            if meta:
                props.append((f"{path.name}:{buildprop.OTA_METADATA}", meta))
        if path.is_dir():
            info = InputInfo(path.name, 0, "", fmt)
        else:
            info = InputInfo(path.name, path.stat().st_size, sha256_file(path), fmt)
    records.sort(key=lambda r: (r.partition, r.path))
    return (
        Inventory(
            input=info,
            build=buildprop.identity(props),
            coverage=tuple(ctx.coverage),
            files=tuple(records),
            tool_version=__version__,
            errors=tuple(str(e) for e in ctx.failures),
        ),
        ctx,
    )


def _list_partition(
    part: OpenedPartition,
    ctx: UnpackContext,
    limits: Limits,
    records: list[FileRecord],
    props: list[tuple[str, dict[str, str]]],
    on_file: FileSink | None,
    store: BlobStore | None,
) -> None:
    try:
        entries = [e for e in part.fs.walk() if e.type is not EntryType.DIR]
    except Exception as exc:  # noqa: BLE001 - a broken partition is recorded, not fatal
        ctx.record(part.source, "partition", part.format, Status.FAILED, error=as_unpack_error(exc))
        return
    for err in part.fs.errors:
        ctx.record(part.source, "file", part.format, Status.FAILED, error=err)
    name = guess_partition(part, entries)
    if name != part.name:
        part = dataclasses.replace(part, name=name)
    sar = _is_system_as_root(entries, part.format)
    # Pass 1: every file is hashed here while a second thread reads ahead (fwscan.hashing);
    # pass 2, with the file system ours again: copies for the analyzers, APEX payloads and
    # the caller's ``on_file``.
    later: list[tuple[FsEntry, FileRecord]] = []
    with ReadAhead(part.fs, [e for e in entries if e.type is EntryType.FILE]) as ahead:
        for entry in entries:
            if len(records) >= limits.max_files:
                raise LimitError(f"more than {limits.max_files} files in the firmware")
            dpath = device_path(part.name, entry.path, sar, part.format)
            if entry.type is not EntryType.FILE:
                records.append(
                    FileRecord(
                        part.name,
                        entry.path,
                        dpath,
                        entry.type.value,
                        entry.mode,
                        entry.size,
                        "",
                        "other",
                        link_target=entry.link_target,
                    )
                )
                continue
            by_name = classify(entry.path, b"")
            try:
                digest, head, content = _digest(ahead.next_file(), by_name == "build_prop")
            except Exception as exc:  # noqa: BLE001 - a broken file is recorded, not fatal
                records.append(
                    FileRecord(
                        part.name,
                        entry.path,
                        dpath,
                        "file",
                        entry.mode,
                        entry.size,
                        "",
                        by_name,
                        error=str(as_unpack_error(exc)),
                    )
                )
                continue
            kind = classify(entry.path, head)
            record = FileRecord(
                part.name, entry.path, dpath, "file", entry.mode, entry.size, digest, kind
            )
            records.append(record)
            if kind == "build_prop":
                props.append((dpath, buildprop.parse(content)))
            later.append((entry, record))
    for entry, record in later:
        kind = record.kind
        where = f"{part.source} > {entry.path}"
        if store is not None and store.needs(record.sha256, kind):
            try:
                _store_copy(part.fs, entry, record.sha256, store)
            except Exception as exc:  # noqa: BLE001 - one file's failure is recorded, not fatal
                ctx.record(where, "file", kind, Status.FAILED, error=as_unpack_error(exc))
        if kind == "apex" and not part.name.startswith("apex:"):
            _list_apex(part, entry, ctx, limits, records, props, on_file, store)
        if on_file is not None:
            try:
                on_file(part, entry, record)
            except Exception as exc:  # noqa: BLE001 - one file's failure is recorded, not fatal
                ctx.record(where, "file", kind, Status.FAILED, error=as_unpack_error(exc))

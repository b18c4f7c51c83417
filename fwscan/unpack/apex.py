"""APEX packages and compressed APEX (CAPEX) packages, read as containers of one image.

Format (AOSP ``system/apex``): an APEX is a signed zip holding

* ``apex_manifest.pb``: an ``ApexManifest`` protocol buffer whose field 1 is the package name
  (string) and field 2 the version (int64); Android 10 packages may have
  ``apex_manifest.json`` (``{"name": ..., "version": ...}``) instead;
* ``apex_payload.img``: the filesystem image (ext4 or EROFS) that ``apexd`` mounts, stored
  uncompressed so it can be mounted in place (we read it in place too; a deflated one is copied
  to the work directory);
* ``apex_pubkey``, ``AndroidManifest.xml`` and the signature files, which hold no files of
  the device and are not yielded.

A CAPEX (Android 12+) is a zip holding ``original_apex`` (the whole APEX, usually deflated),
with a copy of ``apex_manifest.pb`` beside it. It is extracted (bounded by the limits) and
read as an APEX; a CAPEX inside a CAPEX is refused.

:class:`ApexContainer` yields one child, ``apex:<package>``, whose partition is
``apex:<package>`` as well, so the payload's files are listed apart from the partition that
holds the APEX (on a device they appear under ``/apex/<package>/``).

APEX files are found inside partitions (``/system/apex/*.apex``), where the walk never looks:
:func:`expand_apex_file` expands one such file, once the inventory has copied it out of its
filesystem. Flattened APEXes (a directory per package) are ordinary files of the partition and
need nothing from here.

Limitations: signatures (APK signing block, AVB footer of the payload) are not verified; the
manifest's other fields (``provideNativeLibs``, ``jniLibs``, ...) are not read.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fwscan.errors import LimitError, UnpackError
from fwscan.formats.protowire import WireError, WireType, iter_fields
from fwscan.unpack.archive import (
    check_zip_member,
    extract_to_workdir,
    is_zip,
    open_zip,
    stored_window,
)
from fwscan.unpack.base import Child, UnpackContext, Window

MANIFEST_PB = "apex_manifest.pb"
MANIFEST_JSON = "apex_manifest.json"
PAYLOAD = "apex_payload.img"
ORIGINAL_APEX = "original_apex"
MAX_MANIFEST = 1 << 20
"""The largest manifest read into memory."""

_PACKAGE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}")


@dataclass(frozen=True)
class ApexManifest:
    """What fwscan reads of an APEX manifest."""

    name: str
    """The package name (``com.android.tethering``)."""
    version: int | None
    """The package version, when the manifest has one."""


def _package(name: object) -> str:
    if not isinstance(name, str) or not _PACKAGE_RE.fullmatch(name):
        raise UnpackError(f"APEX manifest: bad package name {name!r}")
    return name


def parse_manifest_pb(data: bytes) -> ApexManifest:
    """The name (field 1) and version (field 2, int64) of an ``apex_manifest.pb``."""
    name: str | None = None
    version: int | None = None
    try:
        for field in iter_fields(data):
            if field.number == 1 and field.wire_type is WireType.LEN:
                name = field.as_str()
            elif field.number == 2 and field.wire_type is WireType.VARINT:
                raw = field.as_int()
                version = raw - (1 << 64) if raw >= 1 << 63 else raw
    except WireError as exc:
        raise UnpackError(f"APEX manifest: {exc}") from exc
    if name is None:
        raise UnpackError("APEX manifest without a package name")
    return ApexManifest(_package(name), version)


def parse_manifest_json(data: bytes) -> ApexManifest:
    """The name and version of an Android 10 ``apex_manifest.json``."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UnpackError(f"APEX manifest: not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise UnpackError("APEX manifest: not a JSON object")
    version = doc.get("version")
    return ApexManifest(_package(doc.get("name")), version if isinstance(version, int) else None)


def read_manifest(zf: zipfile.ZipFile) -> ApexManifest:
    """The manifest of an open APEX (the protobuf one when both exist)."""
    names = set(zf.namelist())
    for member, parse in ((MANIFEST_PB, parse_manifest_pb), (MANIFEST_JSON, parse_manifest_json)):
        if member not in names:
            continue
        info = zf.getinfo(member)
        if info.file_size > MAX_MANIFEST:
            raise LimitError(f"{member} of {info.file_size} bytes")
        try:
            data = zf.read(info)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
            raise UnpackError(f"{member}: cannot read: {exc}") from exc
        return parse(data)
    raise UnpackError(f"APEX without {MANIFEST_PB} or {MANIFEST_JSON}")


def _looks_like_apex(names: set[str]) -> bool:
    return bool(names & {MANIFEST_PB, MANIFEST_JSON}) and bool(names & {PAYLOAD, ORIGINAL_APEX})


class ApexContainer:
    """APEX and CAPEX packages (register it before the generic archive container)."""

    name = "apex"

    def probe(self, window: Window, head: bytes) -> bool:
        """A zip whose central directory lists a manifest and a payload (or ``original_apex``)."""
        if not is_zip(head):
            return False
        try:
            with open_zip(window) as zf:
                return _looks_like_apex(set(zf.namelist()))
        except (UnpackError, OSError, EOFError, ValueError, zipfile.BadZipFile):
            return False

    def expand(self, window: Window, ctx: UnpackContext) -> Iterator[Child]:
        """The payload image, as ``apex:<package>``."""
        with open_zip(window) as zf:
            names = set(zf.namelist())
            if ORIGINAL_APEX not in names:
                yield from _payload(window, zf, ctx)
                return
            info = zf.getinfo(ORIGINAL_APEX)
            check_zip_member(info, ctx)
            made: Path | None = None
            if info.compress_type == zipfile.ZIP_STORED:
                inner = stored_window(window, info)
            else:
                try:
                    with zf.open(info) as src:
                        made = extract_to_workdir(
                            src, ctx, "original_apex", ORIGINAL_APEX, declared=info.file_size
                        )
                except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
                    raise UnpackError(f"{ORIGINAL_APEX}: cannot decompress: {exc}") from exc
                inner = Window(made)
        try:
            with open_zip(inner) as inner_zf:
                if ORIGINAL_APEX in set(inner_zf.namelist()):
                    raise UnpackError("a CAPEX inside a CAPEX")
                yield from _payload(inner, inner_zf, ctx)
        finally:
            if made is not None:
                made.unlink(missing_ok=True)


def _payload(window: Window, zf: zipfile.ZipFile, ctx: UnpackContext) -> Iterator[Child]:
    manifest = read_manifest(zf)
    label = f"apex:{manifest.name}"
    try:
        info = zf.getinfo(PAYLOAD)
    except KeyError:
        raise UnpackError(f"{label}: no {PAYLOAD}") from None
    try:
        check_zip_member(info, ctx)
        if info.compress_type == zipfile.ZIP_STORED:
            payload_window = stored_window(window, info)
            made = None
        else:
            with zf.open(info) as src:
                made = extract_to_workdir(
                    src, ctx, manifest.name, f"{label} {PAYLOAD}", declared=info.file_size
                )
            payload_window = Window(made)
    except (UnpackError, zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
        err = exc if isinstance(exc, UnpackError) else UnpackError(f"{PAYLOAD}: {exc}")
        yield Child(label, None, partition=label, error=err, format="apex")
        return
    try:
        yield Child(label, payload_window, partition=label)
    finally:
        if made is not None:
            made.unlink(missing_ok=True)


def expand_apex_file(path_on_disk: Path, ctx: UnpackContext) -> Iterator[Child]:
    """The payload of the APEX or CAPEX file at ``path_on_disk`` (a copy in ``ctx.workdir`` of a
    file listed in a partition), as :meth:`ApexContainer.expand` yields it.

    Raises :class:`UnpackError` when the file is not an APEX or CAPEX, or its manifest is
    unusable. Each child is handed to the walk like any other (its window is detected by
    content: ext4, EROFS, ...); the caller deletes ``path_on_disk`` when it is done.
    """
    window = Window(path_on_disk)
    container = ApexContainer()
    if not container.probe(window, window.read_head(4096)):
        raise UnpackError(
            f"{path_on_disk.name}: not an APEX (a zip with {MANIFEST_PB} and {PAYLOAD}) "
            f"nor a CAPEX (with {ORIGINAL_APEX})"
        )
    yield from container.expand(window, ctx)

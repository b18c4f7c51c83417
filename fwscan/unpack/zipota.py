"""A/B OTA zip: the ``payload.bin`` member, read in place when it is stored.

An A/B OTA package (what ``ota_from_target_files`` makes for A/B devices) is a zip holding
``payload.bin``, ``payload_properties.txt`` and ``META-INF/com/android/metadata``. AOSP stores
``payload.bin`` uncompressed so update_engine can stream it; we read it through a
:class:`~fwscan.unpack.base.Window` at its data offset. A deflated ``payload.bin`` is copied
to the work directory first, bounded by the limits.

Block-based OTA zips and factory image zips are other containers; this one claims only zips
that hold ``payload.bin``.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterator

from fwscan.errors import InputError, LimitError, UnpackError
from fwscan.unpack.archive import open_zip, stored_window
from fwscan.unpack.base import Child, UnpackContext, Window

PAYLOAD = "payload.bin"


class OtaZipContainer:
    """The A/B OTA zip container."""

    name = "ab-ota-zip"

    def probe(self, window: Window, head: bytes) -> bool:
        """A zip holding ``payload.bin`` (other zips are left to the block-OTA and archive
        containers)."""
        if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            return False
        try:
            with open_zip(window) as zf:
                return PAYLOAD in zf.NameToInfo
        except UnpackError:
            return False

    def expand(self, window: Window, ctx: UnpackContext) -> Iterator[Child]:
        """The ``payload.bin`` member, as a window into the zip or a bounded copy."""
        with open_zip(window) as zf:
            try:
                info = zf.getinfo(PAYLOAD)
            except KeyError:
                names = len(zf.namelist())
                raise InputError(
                    f"zip with {names} members and no {PAYLOAD}: not an A/B OTA "
                    "(block-based OTAs and factory image zips are not read yet)"
                ) from None
            if info.compress_type == zipfile.ZIP_STORED:
                yield Child(PAYLOAD, stored_window(window, info), format="payload")
                return
            if info.file_size > ctx.limits.max_partition_size:
                raise LimitError(f"{PAYLOAD}: {info.file_size} bytes exceeds the size limit")
            ctx.account(info.file_size)
            out = ctx.new_image_path("payload")
            try:
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise UnpackError(f"{PAYLOAD}: cannot decompress: {exc}") from exc
            try:
                yield Child(PAYLOAD, Window(out), format="payload")
            finally:
                out.unlink(missing_ok=True)

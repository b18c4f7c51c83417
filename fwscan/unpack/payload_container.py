"""The A/B ``payload.bin`` as a container of partition images.

The format itself is read by :mod:`fwscan.unpack.payload`; this adapter extracts one
partition at a time into the work directory, hands it on, and deletes it once it has been
read, so disk use stays at one partition image.
"""

from __future__ import annotations

from collections.abc import Iterator

from fwscan.errors import FwscanError, LimitError, NeedsSourceError
from fwscan.unpack import payload
from fwscan.unpack.base import Child, UnpackContext, Window


class PayloadContainer:
    """A/B payloads. Partitions of an incremental payload that need the source build are
    recorded as failed with the reason; fully replaced ones are still read."""

    name = "payload"

    def probe(self, window: Window, head: bytes) -> bool:
        """The ``CrAU`` magic."""
        return payload.probe(head)

    def expand(self, window: Window, ctx: UnpackContext) -> Iterator[Child]:
        """Each partition image, extracted and verified, one at a time."""
        pl = payload.Payload.open(window, ctx.limits)
        for part in pl.info.partitions:
            if part.is_incremental:
                types = ", ".join(t.name for t in part.source_op_types)
                needs = NeedsSourceError(
                    f"incremental update ({types}): the source build is needed to rebuild "
                    "this partition"
                )
                yield Child(part.name, None, partition=part.name, error=needs, format="payload")
                continue
            if part.new_size > ctx.limits.max_partition_size:
                big = LimitError(f"{part.new_size} bytes exceeds the partition size limit")
                yield Child(part.name, None, partition=part.name, error=big)
                continue
            out = ctx.new_image_path(part.name)
            try:
                ctx.account(part.new_size)
                pl.extract(part.name, out)
            except FwscanError as exc:
                out.unlink(missing_ok=True)
                yield Child(part.name, None, partition=part.name, error=exc)
                continue
            try:
                yield Child(part.name, Window(out), partition=part.name)
            finally:
                out.unlink(missing_ok=True)

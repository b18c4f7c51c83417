"""The records fwscan produces, as frozen dataclasses with stable dictionary forms.

Everything here is plain data: no I/O. ``to_dict`` gives the JSON form; lists are kept in a
deterministic order by the code that builds them, so two runs over one firmware serialise to
identical bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Status(enum.Enum):
    """What happened to one container, partition or image."""

    READ = "read"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class CoverageRecord:
    """One container, partition or image met while unpacking, and what became of it."""

    source: str
    """Where it sits, as a chain: ``ota.zip > payload.bin > system``."""
    kind: str
    """``container``, ``partition`` or ``file``."""
    format: str
    """The format recognised (``ab-ota-zip``, ``payload``, ``ext4``, ...) or ``unknown``."""
    status: Status
    reason: str = ""
    """Why it was skipped or failed; empty when read."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CoverageRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(d["source"], d["kind"], d["format"], Status(d["status"]), d.get("reason", ""))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "source": self.source,
            "kind": self.kind,
            "format": self.format,
            "status": self.status.value,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class FileRecord:
    """One file of one partition, as listed in the inventory."""

    partition: str
    """Partition name (``system``, ``vendor``, ...) or ``image`` for a bare image without a name."""
    path: str
    """Path inside the partition image, ``/``-separated, no leading slash."""
    device_path: str
    """Where the file appears on a running device, e.g. ``/system/priv-app/X/X.apk``."""
    type: str
    """``file``, ``symlink`` or ``other``."""
    mode: int
    """``st_mode``, file type and permission bits."""
    size: int
    sha256: str
    """Hex SHA-256 of the content; empty for symlinks, special files and unreadable files."""
    kind: str
    """``apk``, ``jar``, ``dex``, ``odex``, ``vdex``, ``oat``, ``elf``, ``apex``, ``build_prop``,
    ``init_rc``, ``permissions_xml`` or ``other``."""
    link_target: str | None = None
    error: str | None = None
    """Why the content could not be read, if it could not."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        out: dict[str, Any] = {
            "partition": self.partition,
            "path": self.path,
            "device_path": self.device_path,
            "type": self.type,
            "mode": f"{self.mode:o}",
            "size": self.size,
            "sha256": self.sha256,
            "kind": self.kind,
        }
        if self.link_target is not None:
            out["link_target"] = self.link_target
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class BuildIdentity:
    """Who made the build and which build it is, read from ``build.prop`` files."""

    fingerprint: str = ""
    model: str = ""
    brand: str = ""
    manufacturer: str = ""
    device: str = ""
    display_id: str = ""
    incremental: str = ""
    release: str = ""
    """Android version, e.g. ``9``."""
    sdk: str = ""
    security_patch: str = ""
    vendor_security_patch: str = ""
    sources: tuple[str, ...] = ()
    """The build.prop files the values came from, in priority order."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildIdentity:
        """Inverse of :meth:`to_dict`."""
        fields = {k: v for k, v in d.items() if k != "sources"}
        return cls(**fields, sources=tuple(d.get("sources", ())))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "fingerprint": self.fingerprint,
            "model": self.model,
            "brand": self.brand,
            "manufacturer": self.manufacturer,
            "device": self.device,
            "display_id": self.display_id,
            "incremental": self.incremental,
            "release": self.release,
            "sdk": self.sdk,
            "security_patch": self.security_patch,
            "vendor_security_patch": self.vendor_security_patch,
            "sources": list(self.sources),
        }


@dataclass(frozen=True)
class InputInfo:
    """The file the user gave."""

    name: str
    """Base name only: no host paths in outputs."""
    size: int
    sha256: str
    format: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputInfo:
        """Inverse of :meth:`to_dict`."""
        return cls(d["name"], d["size"], d["sha256"], d["format"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"name": self.name, "size": self.size, "sha256": self.sha256, "format": self.format}


INVENTORY_SCHEMA = "fwscan.inventory/1"


@dataclass(frozen=True)
class Inventory:
    """Every file of every partition of one firmware, with the build identity and coverage."""

    input: InputInfo
    build: BuildIdentity
    coverage: tuple[CoverageRecord, ...]
    files: tuple[FileRecord, ...]
    tool_version: str
    errors: tuple[str, ...] = field(default=())
    """One-line descriptions of failures (also present in coverage), for the exit status."""

    @property
    def failed(self) -> tuple[CoverageRecord, ...]:
        """The coverage records whose status is failed."""
        return tuple(c for c in self.coverage if c.status is Status.FAILED)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (deterministic: lists are already sorted)."""
        return {
            "schema": INVENTORY_SCHEMA,
            "tool": {"name": "fwscan", "version": self.tool_version},
            "input": self.input.to_dict(),
            "build": self.build.to_dict(),
            "coverage": [c.to_dict() for c in self.coverage],
            "files": [f.to_dict() for f in self.files],
        }

"""Bounds applied to every size and count read from untrusted headers."""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1 << 30
MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Upper bounds for hostile input. Every parser checks header values against these."""

    max_partition_size: int = 64 * GiB
    """Largest partition image fwscan will write to its work directory."""
    max_total_extracted: int = 256 * GiB
    """Sum of all partition images and extracted files of one firmware."""
    max_files: int = 2_000_000
    """Files listed across all partitions of one firmware."""
    max_manifest_size: int = 64 * MiB
    """Largest payload manifest (protobuf) fwscan will read into memory."""
    max_operations: int = 4_000_000
    """Operations in one payload."""
    max_file_size: int = 16 * GiB
    """Largest single file inside a filesystem image."""
    max_dir_entries: int = 1_000_000
    """Entries in one directory."""
    max_depth: int = 64
    """Directory nesting depth inside a filesystem image."""
    max_nesting: int = 6
    """Containers within containers."""


DEFAULT_LIMITS = Limits()

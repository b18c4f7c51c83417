"""Writing deterministic full block-based (non-A/B) OTA zips from partition images.

For each image ``NAME`` the zip holds what AOSP ``ota_from_target_files`` (through
``blockimgdiff.py``) writes for a full block OTA:

- ``NAME.transfer.list``: version 4; the header (version, blocks written, ``0`` stash slots,
  ``0`` stashed blocks); an ``erase`` of the all-zero blocks first (AOSP discards the blocks it
  writes no data to), then, in block order, ``new`` for each run of blocks holding data and
  ``zero`` for each all-zero run (so the result does not depend on what a discard leaves), each
  command at most 1024 blocks as blockimgdiff splits them.
- ``NAME.new.dat.br`` (brotli, quality 6 as AOSP uses), ``NAME.new.dat.lz4`` (one LZ4 frame) or
  plain ``NAME.new.dat`` (deflated in the zip): the data blocks, in command order.
- ``NAME.patch.dat``: empty, stored (a full OTA has no patches).

plus ``META-INF/com/google/android/updater-script`` (an edify script calling
``block_image_update`` per partition: plausible, never executed; no ``update-binary`` is
included) and ``META-INF/com/android/metadata`` (``ota-type=BLOCK``). Members have fixed dates
and attributes, so the same images give the same bytes. An image whose size is not a multiple
of 4096 bytes is padded with zeros to a whole block. The reader is
:class:`fwscan.unpack.blockota.BlockOtaContainer`.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import brotli  # type: ignore[import-untyped]
import lz4.frame  # type: ignore[import-untyped]

from fwscan.limits import GiB, MiB

COMPRESSIONS = ("br", "lz4", "none")
"""The values ``compression`` accepts."""
BLOCK_SIZE = 4096
MAX_BLOCKS_PER_COMMAND = 1024
"""blockimgdiff's split size for ``new`` and ``zero`` commands."""
TRANSFER_LIST_VERSION = 4
ZIP_DATE = (2009, 1, 1, 0, 0, 0)
BROTLI_QUALITY = 6
BROTLI_LGWIN = 22

_NEW_SUFFIX = {"br": ".new.dat.br", "lz4": ".new.dat.lz4", "none": ".new.dat"}
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
_READ_SIZE = 1 * MiB
_ZERO_BLOCK = bytes(BLOCK_SIZE)
_ZIP64_FROM = 1 * GiB
"""Images from this size get zip64 members (their compressed size is not known in advance)."""


def write_block_ota(
    out_zip: Path, images: Sequence[tuple[str, Path]], *, compression: str = "br"
) -> None:
    """Write a full block OTA of ``images`` (partition name, image file) to ``out_zip``.

    Raises :class:`ValueError` for an unknown ``compression``, a bad or repeated partition
    name, or no images; :class:`OSError` when an image cannot be read.
    """
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression {compression!r}: must be one of {', '.join(COMPRESSIONS)}")
    if not images:
        raise ValueError("no partition images")
    names = [name for name, _ in images]
    for name in names:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"bad partition name {name!r}")
    if len(set(names)) != len(names):
        raise ValueError("a partition name is given twice")
    suffix = _NEW_SUFFIX[compression]
    with zipfile.ZipFile(out_zip, "w") as zf:
        for name, path in images:
            big = path.stat().st_size >= _ZIP64_FROM
            stored = compression != "none"
            info = _zip_info(name + suffix, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
            with zf.open(info, "w", force_zip64=big) as dst:
                transfer_list = _write_new_data(path, dst.write, compression)
            zf.writestr(_zip_info(name + ".patch.dat", zipfile.ZIP_STORED), b"")
            tl_info = _zip_info(name + ".transfer.list", zipfile.ZIP_DEFLATED)
            zf.writestr(tl_info, transfer_list)
        script = _updater_script(names, suffix)
        zf.writestr(
            _zip_info("META-INF/com/google/android/updater-script", zipfile.ZIP_DEFLATED), script
        )
        metadata = "ota-required-cache=0\nota-type=BLOCK\n"
        zf.writestr(_zip_info("META-INF/com/android/metadata", zipfile.ZIP_STORED), metadata)


def _zip_info(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, ZIP_DATE)
    info.compress_type = compress
    info.create_system = 3
    info.external_attr = 0o644 << 16
    return info


def _blocks(path: Path) -> Iterator[bytes]:
    """The image's 4096-byte blocks, the last one zero-padded."""
    with open(path, "rb") as f:
        while chunk := f.read(_READ_SIZE):
            for pos in range(0, len(chunk), BLOCK_SIZE):
                block = chunk[pos : pos + BLOCK_SIZE]
                yield block if len(block) == BLOCK_SIZE else block.ljust(BLOCK_SIZE, b"\0")


def _write_new_data(path: Path, write: Callable[[bytes], object], compression: str) -> str:
    """Stream the data blocks of ``path`` through the compressor into ``write``; return the
    transfer list."""
    compress, finish = _compressor(compression, write)
    runs: list[tuple[int, int, bool]] = []  # (start, end, all zero)
    pending = bytearray()
    for index, block in enumerate(_blocks(path)):
        zero = block == _ZERO_BLOCK
        if runs and runs[-1][2] == zero and runs[-1][1] == index:
            start, _, _ = runs[-1]
            runs[-1] = (start, index + 1, zero)
        else:
            runs.append((index, index + 1, zero))
        if not zero:
            pending += block
            if len(pending) >= _READ_SIZE:
                compress(bytes(pending))
                pending.clear()
    if pending:
        compress(bytes(pending))
    finish()
    return _transfer_list(runs)


def _compressor(
    compression: str, write: Callable[[bytes], object]
) -> tuple[Callable[[bytes], None], Callable[[], None]]:
    if compression == "br":
        enc = brotli.Compressor(quality=BROTLI_QUALITY, lgwin=BROTLI_LGWIN)

        def br_compress(data: bytes) -> None:
            write(enc.process(data))

        def br_finish() -> None:
            write(enc.finish())

        return br_compress, br_finish
    if compression == "lz4":
        frame = lz4.frame.LZ4FrameCompressor()
        write(frame.begin())

        def lz4_compress(data: bytes) -> None:
            write(frame.compress(data))

        def lz4_finish() -> None:
            write(frame.flush())

        return lz4_compress, lz4_finish

    def plain(data: bytes) -> None:
        write(data)

    return plain, lambda: None


def _ranges(pairs: Sequence[tuple[int, int]]) -> str:
    """A transfer list range set: ``COUNT,START,END,...``."""
    values = [str(v) for pair in pairs for v in pair]
    return ",".join([str(len(values)), *values])


def _transfer_list(runs: Sequence[tuple[int, int, bool]]) -> str:
    commands: list[str] = []
    total = 0
    zero_runs = [(start, end) for start, end, zero in runs if zero]
    if zero_runs:
        commands.append(f"erase {_ranges(zero_runs)}")
    for start, end, zero in runs:
        style = "zero" if zero else "new"
        for piece in range(start, end, MAX_BLOCKS_PER_COMMAND):
            stop = min(end, piece + MAX_BLOCKS_PER_COMMAND)
            commands.append(f"{style} {_ranges([(piece, stop)])}")
            total += stop - piece
    header = [str(TRANSFER_LIST_VERSION), str(total), "0", "0"]
    return "\n".join(header + commands) + "\n"


def _updater_script(names: Sequence[str], suffix: str) -> str:
    lines = [
        'ui_print("Target: fwscan synthetic build");',
        f"show_progress({0.9:.6f}, 0);",
    ]
    for name in names:
        lines += [
            f'ui_print("Patching {name} image unconditionally...");',
            f'block_image_update("/dev/block/bootdevice/by-name/{name}", '
            f'package_extract_file("{name}.transfer.list"), "{name}{suffix}", '
            f'"{name}.patch.dat") ||',
            f'  abort("E1001: Failed to update {name} image.");',
        ]
    lines.append(f"set_progress({1.0:.6f});")
    return "\n".join(lines) + "\n"

"""A/B OTA payload.bin: the protobuf wire codec, the reader, the writer, hostile input."""

from __future__ import annotations

import base64
import bz2
import hashlib
import lzma
import os
import random
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from conftest import need_tool

from fwscan.errors import IntegrityError, LimitError, NeedsSourceError, UnpackError
from fwscan.formats.protowire import (
    MAX_DEPTH,
    MessageWriter,
    WireError,
    WireType,
    decode_varint,
    encode_varint,
    iter_fields,
)
from fwscan.limits import Limits
from fwscan.synth.payload import PartitionImage, write_payload
from fwscan.unpack.base import Window
from fwscan.unpack.payload import HEADER_SIZE, OpType, Payload, probe

BLOCK = 4096
CHUNK = 256 * 1024

# --- protowire --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63, 2**64 - 1])
def test_varint_round_trip(value: int) -> None:
    raw = encode_varint(value)
    assert decode_varint(raw + b"\x99", 0) == (value, len(raw))


def test_varint_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="range"):
        encode_varint(-1)
    with pytest.raises(ValueError, match="range"):
        encode_varint(2**64)
    with pytest.raises(WireError, match="truncated"):
        decode_varint(b"\x80\x80", 0)
    with pytest.raises(WireError, match="10 bytes"):
        decode_varint(b"\xff" * 11, 0)
    with pytest.raises(WireError, match="64 bits"):
        decode_varint(b"\xff" * 9 + b"\x7f", 0)


def test_message_round_trip_in_field_number_order() -> None:
    inner = MessageWriter().varint(2, 7).string(1, "kernel")
    raw = (
        MessageWriter()
        .blob(13, b"b")
        .varint(3, 4096)
        .fixed64(9, 2**60)
        .fixed32(8, 5)
        .message(4, inner)
        .blob(13, b"c")
        .encode()
    )
    fields = list(iter_fields(raw))
    assert [(f.number, f.wire_type) for f in fields] == [
        (3, WireType.VARINT),
        (4, WireType.LEN),
        (8, WireType.I32),
        (9, WireType.I64),
        (13, WireType.LEN),
        (13, WireType.LEN),
    ]
    assert [f.value for f in fields if f.number != 4] == [4096, 5, 2**60, b"b", b"c"]
    sub = list(fields[1].message())
    assert [(f.number, f.value, f.depth) for f in sub] == [(1, b"kernel", 1), (2, 7, 1)]
    assert sub[0].as_str() == "kernel"
    with pytest.raises(WireError, match="expected a number"):
        sub[0].as_int()
    with pytest.raises(WireError, match="expected a LEN"):
        sub[1].as_bytes()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x0a\x05abc", "past the end"),  # LEN longer than the buffer
        (b"\x0d\x01\x02", "truncated fixed32"),
        (b"\x09\x01", "truncated fixed64"),
        (b"\x0b", "groups"),
        (b"\x0e", "wire type 6"),
        (b"\x00\x01", "field number 0"),
    ],
)
def test_decoder_refuses_malformed(raw: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        list(iter_fields(raw))


def test_decoder_nesting_limit() -> None:
    raw = b""
    for _ in range(MAX_DEPTH + 2):
        raw = MessageWriter().blob(1, raw).encode()
    field = next(iter_fields(raw))
    with pytest.raises(WireError, match="nested deeper"):
        while True:
            field = next(field.message())


# --- the AOSP samples -------------------------------------------------------------------------


def test_aosp_full_payload(corpus: Path, tmp_path: Path) -> None:
    path = corpus / "firmware" / "ab-ota-payload" / "full_payload.bin"
    assert probe(path.read_bytes()[:32])
    payload = Payload.open(Window(path))
    info = payload.info
    assert (info.major_version, info.minor_version, info.block_size) == (2, 0, 4096)
    assert not info.is_incremental
    assert [p.name for p in info.partitions] == ["kernel", "root"]
    kernel, root = info.partitions
    assert kernel.op_counts == {OpType.REPLACE_BZ: 2}
    assert root.op_counts == {OpType.REPLACE_XZ: 1}
    for part in info.partitions:
        out = tmp_path / f"{part.name}.img"
        payload.extract(part.name, out)
        data = out.read_bytes()
        assert len(data) == part.new_size
        assert hashlib.sha256(data).digest() == part.new_hash


def test_aosp_delta_payload_needs_source(corpus: Path, tmp_path: Path) -> None:
    path = corpus / "firmware" / "ab-ota-payload" / "delta_payload.bin"
    payload = Payload.open(Window(path))
    assert payload.info.is_incremental
    kernel = payload.partition("kernel")
    assert kernel.is_incremental
    assert kernel.old_size is not None
    with pytest.raises(NeedsSourceError) as err:
        payload.extract("kernel", tmp_path / "kernel.img")
    text = str(err.value)
    assert "'kernel'" in text
    assert "SOURCE_COPY" in text
    assert "BROTLI_BSDIFF" in text
    assert "source build" in text
    assert not (tmp_path / "kernel.img").exists()


# --- round trip through the writer ------------------------------------------------------------


def _image(path: Path, seed: int, size: int = 3 * 1024 * 1024) -> bytes:
    """Random, text-like and zero regions, some not aligned to chunks."""
    rng = random.Random(seed)
    words = [b"system", b"vendor", b"ro.build", b"=", b"true", b"\n", b"/lib64/", b"0x1f"]
    parts: list[bytes] = []
    total = 0
    while total < size:
        kind = len(parts) if len(parts) < 3 else rng.randrange(3)
        n = rng.randrange(BLOCK, 600 * 1024)
        if kind == 0:
            piece = rng.randbytes(n + CHUNK)  # the first one fills chunk 0
        elif kind == 1:
            piece = b" ".join(rng.choices(words, k=n // 4))[:n]
        else:
            piece = bytes(n + 2 * CHUNK)  # at least one whole, aligned zero chunk
        parts.append(piece)
        total += len(piece)
    data = b"".join(parts)[:size]
    path.write_bytes(data)
    return data


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bytes]]:
    folder = tmp_path_factory.mktemp("images")
    out = {}
    for seed, name in enumerate(["system", "vendor", "boot", "dtbo"]):
        path = folder / f"{name}.in"
        out[name] = (path, _image(path, seed))
    return out


def _write(
    out: Path, images: dict[str, tuple[Path, bytes]], compressions: tuple[str, ...], **kw: int
) -> Payload:
    parts = [
        PartitionImage(name, path, comp)
        for (name, (path, _)), comp in zip(images.items(), compressions, strict=False)
    ]
    write_payload(out, parts, chunk_size=CHUNK, xz_preset=1, **kw)
    return Payload.open(Window(out))


@pytest.mark.parametrize("workers", [1, 3])
def test_round_trip_every_compression(
    tmp_path: Path, images: dict[str, tuple[Path, bytes]], workers: int
) -> None:
    comps = ("xz", "bz2", "zstd", "none")
    payload = _write(tmp_path / "payload.bin", images, comps, workers=workers)
    info = payload.info
    assert (info.major_version, info.minor_version, info.block_size) == (2, 0, BLOCK)
    expected_type = {
        "xz": OpType.REPLACE_XZ,
        "bz2": OpType.REPLACE_BZ,
        "zstd": OpType.REPLACE_ZSTD,
        "none": OpType.REPLACE,
    }
    for part, comp in zip(info.partitions, comps, strict=True):
        counts = part.op_counts
        assert counts[OpType.ZERO] >= 1
        assert counts[expected_type[comp]] >= 1
        assert counts.get(OpType.REPLACE, 0) >= 1  # random chunks do not shrink
        assert set(counts) <= {OpType.ZERO, OpType.REPLACE, expected_type[comp]}
        out = tmp_path / f"{part.name}.img"
        payload.extract(part.name, out, workers=workers)
        assert out.read_bytes() == images[part.name][1]
        zero_bytes = sum(
            ext.num_blocks * BLOCK
            for op in part.operations
            if op.type == OpType.ZERO
            for ext in op.dst_extents
        )
        # ZERO chunks are left as holes
        assert os.stat(out).st_blocks * 512 <= part.new_size - zero_bytes + 64 * 1024


def test_writer_is_deterministic(tmp_path: Path, images: dict[str, tuple[Path, bytes]]) -> None:
    parts = [PartitionImage("system", images["system"][0], "xz")]
    parts.append(PartitionImage("vendor", images["vendor"][0], "zstd"))
    first = write_payload(tmp_path / "a.bin", parts, chunk_size=CHUNK, xz_preset=1, workers=3)
    second = write_payload(tmp_path / "b.bin", parts, chunk_size=CHUNK, xz_preset=1, workers=1)
    raw = (tmp_path / "a.bin").read_bytes()
    assert raw == (tmp_path / "b.bin").read_bytes()
    assert first == second
    assert len(raw) == first.FILE_SIZE
    assert base64.b64encode(hashlib.sha256(raw).digest()).decode() == first.FILE_HASH
    manifest_size = struct.unpack(">Q", raw[12:20])[0]
    assert HEADER_SIZE + manifest_size == first.METADATA_SIZE
    metadata_hash = hashlib.sha256(raw[: first.METADATA_SIZE]).digest()
    assert base64.b64encode(metadata_hash).decode() == first.METADATA_HASH
    assert first.text().splitlines() == [
        f"FILE_HASH={first.FILE_HASH}",
        f"FILE_SIZE={len(raw)}",
        f"METADATA_HASH={first.METADATA_HASH}",
        f"METADATA_SIZE={first.METADATA_SIZE}",
    ]
    assert raw[20:24] == b"\0\0\0\0"  # empty metadata signature
    assert not (tmp_path / "a.bin.blobs").exists()


@pytest.mark.parametrize(("comp", "tool"), [("xz", "xz"), ("zstd", "zstd")])
def test_blobs_decode_with_the_cli(
    tmp_path: Path, images: dict[str, tuple[Path, bytes]], comp: str, tool: str
) -> None:
    exe = need_tool(tool)
    payload = _write(tmp_path / "payload.bin", {"system": images["system"]}, (comp,))
    raw = (tmp_path / "payload.bin").read_bytes()
    image = images["system"][1]
    part = payload.partition("system")
    kind = OpType.REPLACE_XZ if comp == "xz" else OpType.REPLACE_ZSTD
    op = next(op for op in part.operations if op.type == kind)
    start = payload.data_start + op.data_offset
    blob = raw[start : start + op.data_length]
    assert hashlib.sha256(blob).digest() == op.data_sha256
    decoded = subprocess.run([exe, "-dc"], input=blob, capture_output=True, check=True).stdout
    (ext,) = op.dst_extents
    assert decoded == image[ext.start_block * BLOCK : (ext.start_block + ext.num_blocks) * BLOCK]


def test_writer_refuses_bad_arguments(tmp_path: Path) -> None:
    odd = tmp_path / "odd.img"
    odd.write_bytes(b"x" * 5000)
    with pytest.raises(ValueError, match="multiple"):
        write_payload(tmp_path / "p.bin", [PartitionImage("odd", odd)])
    with pytest.raises(ValueError, match="compression"):
        write_payload(tmp_path / "p.bin", [PartitionImage("odd", odd, "gzip")])
    with pytest.raises(ValueError, match="block_size"):
        write_payload(tmp_path / "p.bin", [], block_size=1000)


# --- hostile and broken payloads --------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, images: dict[str, tuple[Path, bytes]]) -> Path:
    """A two-partition xz payload, as bytes on disk (read-only: tests patch copies)."""
    two = {"system": images["system"], "vendor": images["vendor"]}
    path = tmp_path_factory.mktemp("small") / "small.bin"
    _write(path, two, ("xz", "xz"))
    return path


def _patched(path: Path, offset: int, data: bytes, folder: Path) -> Path:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    out = folder / "patched.bin"
    out.write_bytes(raw)
    return out


@pytest.mark.parametrize(
    ("offset", "data", "error", "message"),
    [
        (0, b"PK\x03\x04", UnpackError, "bad magic"),
        (4, struct.pack(">Q", 1), UnpackError, "major version 1 .*not supported"),
        (4, struct.pack(">Q", 3), UnpackError, "unsupported payload major version 3"),
        (12, struct.pack(">Q", 1 << 40), LimitError, "manifest size"),
        (12, struct.pack(">Q", 50 << 20), UnpackError, "manifest .* past the end"),
        (20, struct.pack(">I", 0xFFFFFFFF), LimitError, "metadata signature size"),
    ],
)
def test_bad_headers(
    small: Path, tmp_path: Path, offset: int, data: bytes, error: type[UnpackError], message: str
) -> None:
    with pytest.raises(error, match=message):
        Payload.open(Window(_patched(small, offset, data, tmp_path)))


def test_small_manifest_limit(small: Path) -> None:
    with pytest.raises(LimitError, match="manifest size"):
        Payload.open(Window(small), Limits(max_manifest_size=100))
    with pytest.raises(LimitError, match="operations"):
        Payload.open(Window(small), Limits(max_operations=3))
    with pytest.raises(LimitError, match=r"'system'.*size"):
        Payload.open(Window(small), Limits(max_partition_size=1 << 20))


def test_truncated(small: Path, tmp_path: Path) -> None:
    raw = small.read_bytes()
    manifest_size = struct.unpack(">Q", raw[12:20])[0]
    cut = tmp_path / "cut.bin"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(
        UnpackError, match=r"truncated payload: partition '\w+', operation \d+: data"
    ):
        Payload.open(Window(cut))
    cut.write_bytes(raw[:100])
    with pytest.raises(UnpackError, match="truncated payload"):
        Payload.open(Window(cut))
    cut.write_bytes(raw[: HEADER_SIZE + manifest_size] + bytes(10))
    with pytest.raises(UnpackError, match=r"metadata signature .* past the end"):
        Payload.open(Window(_patched(cut, 20, struct.pack(">I", 11), tmp_path)))
    cut.write_bytes(raw[:10])
    with pytest.raises(UnpackError, match="truncated payload"):
        Payload.open(Window(cut))


def test_operation_hash_mismatch(
    small: Path, tmp_path: Path, images: dict[str, tuple[Path, bytes]]
) -> None:
    payload = Payload.open(Window(small))
    system = payload.partition("system")
    index, op = next(
        (i, op) for i, op in enumerate(system.operations) if op.type == OpType.REPLACE_XZ
    )
    at = payload.data_start + op.data_offset + op.data_length // 2
    bad = _patched(small, at, bytes([small.read_bytes()[at] ^ 0x55]), tmp_path)
    broken = Payload.open(Window(bad))
    out = tmp_path / "system.img"
    with pytest.raises(IntegrityError, match=f"partition 'system', operation {index} "):
        broken.extract("system", out)
    assert not out.exists()
    broken.extract("vendor", tmp_path / "vendor.img")  # the other partition is intact
    assert (tmp_path / "vendor.img").read_bytes() == images["vendor"][1]


def test_partition_hash_mismatch(
    small: Path, tmp_path: Path, images: dict[str, tuple[Path, bytes]]
) -> None:
    raw = small.read_bytes()
    digest = hashlib.sha256(images["vendor"][1]).digest()
    at = raw.index(digest)
    assert at < Payload.open(Window(small)).data_start
    bad = Payload.open(Window(_patched(small, at, bytes([digest[0] ^ 1]), tmp_path)))
    with pytest.raises(IntegrityError, match="partition 'vendor': the image's SHA-256"):
        bad.extract("vendor", tmp_path / "vendor.img")
    bad.extract("system", tmp_path / "system.img")


# Hand-built payloads for what the writer never produces.


def _op(
    kind: OpType, extents: list[tuple[int, int]], offset: int = 0, blob: bytes | None = None
) -> MessageWriter:
    op = MessageWriter().varint(1, kind)
    for start, count in extents:
        op.message(6, MessageWriter().varint(1, start).varint(2, count))
    if blob is not None:
        op.varint(2, offset).varint(3, len(blob)).blob(8, hashlib.sha256(blob).digest())
    return op


def _hand_built(
    path: Path, name: str, size: int, ops: list[MessageWriter], blobs: bytes, block: int = BLOCK
) -> Payload:
    part = MessageWriter().string(1, name).message(7, MessageWriter().varint(1, size))
    for op in ops:
        part.message(8, op)
    manifest = MessageWriter().varint(3, block).varint(12, 0).message(13, part).encode()
    path.write_bytes(struct.pack(">4sQQI", b"CrAU", 2, len(manifest), 0) + manifest + blobs)
    return Payload.open(Window(path))


def test_hand_built_payload_extracts(tmp_path: Path) -> None:
    """Short REPLACE data is zero-padded to its last block; unwritten blocks read as zeros."""
    blob = b"x" * (BLOCK + 10)
    xz = lzma.compress(b"y" * BLOCK, check=lzma.CHECK_CRC32)
    ops = [
        _op(OpType.REPLACE, [(0, 1), (3, 1)], 0, blob),
        _op(OpType.REPLACE_XZ, [(1, 1)], len(blob), xz),
        _op(OpType.DISCARD, [(2, 1)]),
    ]
    payload = _hand_built(tmp_path / "p.bin", "misc", 5 * BLOCK, ops, blob + xz)
    payload.extract("misc", tmp_path / "misc.img")
    expected = b"x" * BLOCK + b"y" * BLOCK + bytes(BLOCK) + b"x" * 10 + bytes(2 * BLOCK - 10)
    assert (tmp_path / "misc.img").read_bytes() == expected


def test_dst_extent_past_partition(tmp_path: Path) -> None:
    blob = b"z" * BLOCK
    ops = [_op(OpType.REPLACE, [(4, 1)], 0, blob)]
    with pytest.raises(UnpackError, match="partition 'misc', operation 0: dst extent"):
        _hand_built(tmp_path / "p.bin", "misc", 4 * BLOCK, ops, blob)
    hole = [_op(OpType.ZERO, [(2**64 - 1, 1)])]
    with pytest.raises(UnpackError, match=r"partition 'misc'.*past the partition size"):
        _hand_built(tmp_path / "p.bin", "misc", 4 * BLOCK, hole, b"")


@pytest.mark.parametrize(
    ("kind", "compress"),
    [
        (OpType.REPLACE_XZ, lambda d: lzma.compress(d, preset=0, check=lzma.CHECK_CRC32)),
        (OpType.REPLACE_BZ, bz2.compress),
        (OpType.REPLACE_ZSTD, lambda d: zstandard.ZstdCompressor().compress(d)),
        (OpType.REPLACE, lambda d: d[: 3 * BLOCK]),
    ],
)
def test_decompression_bomb(
    tmp_path: Path, kind: OpType, compress: Callable[[bytes], bytes]
) -> None:
    """A blob that inflates far past its extents is refused after at most a bounded piece."""
    bomb = compress(bytes(16 << 20))
    payload = _hand_built(
        tmp_path / "p.bin", "misc", 2 * BLOCK, [_op(kind, [(0, 2)], 0, bomb)], bomb
    )
    out = tmp_path / "misc.img"
    with pytest.raises(UnpackError, match=r"partition 'misc', operation 0 .*more than the 8192"):
        payload.extract("misc", out)
    assert not out.exists()


@pytest.mark.parametrize(
    ("ops", "blobs", "message"),
    [
        (  # data shorter than its extents by a whole block
            [_op(OpType.REPLACE, [(0, 2)], 0, b"a" * BLOCK)],
            b"a" * BLOCK,
            "short of the 8192 bytes",
        ),
        (
            [_op(OpType.REPLACE_XZ, [(0, 1)], 0, b"not xz at all")],
            b"not xz at all",
            "corrupt xz data",
        ),
        (
            [_op(OpType.REPLACE_BZ, [(0, 1)], 0, b"BZh9 broken")],
            b"BZh9 broken",
            "corrupt bzip2 data",
        ),
        (
            [_op(OpType.REPLACE_XZ, [(0, 1)], 0, lzma.compress(b"q" * BLOCK)[:-20])],
            lzma.compress(b"q" * BLOCK)[:-20],
            "truncated xz data",
        ),
        (
            [_op(OpType.ZERO, [(0, 2)]), _op(OpType.ZERO, [(1, 1)])],
            b"",
            "operations 0 and 1 write overlapping blocks",
        ),
    ],
)
def test_bad_operations(
    tmp_path: Path, ops: list[MessageWriter], blobs: bytes, message: str
) -> None:
    payload = _hand_built(tmp_path / "p.bin", "misc", 2 * BLOCK, ops, blobs)
    with pytest.raises(UnpackError, match=message) as err:
        payload.extract("misc", tmp_path / "misc.img")
    assert "'misc'" in str(err.value)
    assert not isinstance(err.value, IntegrityError)


@pytest.mark.parametrize(
    ("op", "block", "message"),
    [
        (_op(OpType.REPLACE, [(0, 1)]).varint(1, 99), BLOCK, "unknown operation type 99"),
        (MessageWriter().varint(2, 0), BLOCK, "operation 0: no type"),
        (_op(OpType.ZERO, [(0, 1)]).blob(8, b"short"), BLOCK, "SHA-256 hash of 5 bytes"),
        (_op(OpType.ZERO, [(0, 1)]), 3000, "block size 3000"),
    ],
)
def test_bad_manifests(tmp_path: Path, op: MessageWriter, block: int, message: str) -> None:
    with pytest.raises(UnpackError, match=message):
        _hand_built(tmp_path / "p.bin", "misc", BLOCK, [op], b"", block=block)


def test_refused_partition_name(tmp_path: Path) -> None:
    with pytest.raises(UnpackError, match="refused partition name"):
        _hand_built(tmp_path / "p.bin", "../etc", BLOCK, [], b"")

"""imgdiff patches (IMGDIFF2): the writer, the applier, and hostile patches.

No mocks: zip files written by Python's ``zipfile`` (deflated at several levels, stored, with
data descriptors), patches written by :mod:`fwscan.synth.imgdiff` or assembled by hand from
real bsdiff patches (``bsdiff4``) and real deflate streams (``zlib``).
"""

from __future__ import annotations

import hashlib
import io
import random
import struct
import zipfile
import zlib

import bsdiff4
import pytest

from fwscan.errors import LimitError, UnpackError
from fwscan.synth.imgdiff import make_imgdiff
from fwscan.unpack.imgdiff import (
    CHUNK_DEFLATE,
    CHUNK_NORMAL,
    CHUNK_RAW,
    MAX_CHUNKS,
    ImgdiffChunk,
    apply_imgdiff,
    parse_imgdiff,
)

BS = 4096
DATE = (2009, 1, 1, 0, 0, 0)
STORED = zipfile.ZIP_STORED
DEFLATED = zipfile.ZIP_DEFLATED


# --- helpers ----------------------------------------------------------------------------------


def text(seed: str, words: int) -> bytes:
    """Deterministic, compressible text (so deflate has matches to find)."""
    rnd = random.Random(seed)
    vocab = ["Landroid/app/Activity;", "onCreate", "invoke-virtual", "const-string", "v0", "v1"]
    vocab += [f"Lcom/example/C{i};" for i in range(40)]
    return " ".join(rnd.choice(vocab) for _ in range(words)).encode()


def noise(seed: str, size: int) -> bytes:
    """Deterministic incompressible bytes."""
    out = bytearray()
    digest = seed.encode()
    while len(out) < size:
        digest = hashlib.sha256(digest).digest()
        out += digest
    return bytes(out[:size])


Member = tuple[str, bytes, int, int | None]


def make_zip(members: list[Member], *, descriptor: bool = False) -> bytes:
    """A zip written by ``zipfile``: (name, data, compression, level) per member; with
    ``descriptor`` written to an unseekable stream, so every member has a data descriptor."""
    buf = io.BytesIO()
    target: io.BytesIO | _Unseekable = _Unseekable(buf) if descriptor else buf
    with zipfile.ZipFile(target, "w") as zf:  # type: ignore[arg-type]
        for name, data, compress, level in members:
            zf.writestr(zipfile.ZipInfo(name, DATE), data, compress, level)
    return buf.getvalue()


class _Unseekable:
    """A write-only stream without ``seek``/``tell``."""

    def __init__(self, buf: io.BytesIO) -> None:
        self._buf = buf

    def write(self, data: bytes) -> int:
        return self._buf.write(data)

    def flush(self) -> None:
        pass


def apk(version: int, level: int | None = 6, *, descriptor: bool = False) -> bytes:
    """An APK-like zip; ``version`` changes the dex, the manifest and adds files."""
    dex = bytearray(b"dex\n035\0" + text("dex", 12000))
    if version:
        dex[5000:5040] = b"patched method body for version %02d ...." % version
        dex += text(f"dex-extra-{version}", 800)
    members: list[Member] = [
        ("AndroidManifest.xml", b"<manifest versionCode='%d'/>" % version * 40, DEFLATED, 9),
        ("classes.dex", bytes(dex), DEFLATED, level),
        ("resources.arsc", noise("arsc", 3000) + bytes([version]) * 50, STORED, None),
        ("res/raw/same.txt", text("same", 3000), DEFLATED, 6),
        ("lib/arm64-v8a/libx.so", noise("so", 5000) + text(f"so{version}", 500), DEFLATED, 1),
        ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\r\n", DEFLATED, 6),
    ]
    if version:
        members.append(("res/raw/added.txt", text("added", 2000), DEFLATED, 6))
    return make_zip(members, descriptor=descriptor)


def chunks_of(patch: bytes, old: bytes) -> list[ImgdiffChunk]:
    return parse_imgdiff(patch, len(old))


def round_trip(old: bytes, new: bytes, **kwargs: str) -> bytes:
    patch = make_imgdiff(old, new, **kwargs)
    assert make_imgdiff(old, new, **kwargs) == patch  # deterministic
    assert apply_imgdiff(old, patch, max_new_size=len(new)) == new
    return patch


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BS)


# Hand-built patches.


def normal(start: int, length: int, offset: int) -> bytes:
    return struct.pack("<i", CHUNK_NORMAL) + struct.pack("<qqq", start, length, offset)


def deflate(
    start: int,
    length: int,
    offset: int,
    expanded: int,
    target: int,
    params: tuple[int, int, int, int, int] = (6, 8, -15, 8, 0),
) -> bytes:
    head = struct.pack("<qqqqq", start, length, offset, expanded, target)
    return struct.pack("<i", CHUNK_DEFLATE) + head + struct.pack("<5i", *params)


def raw(data: bytes) -> bytes:
    return struct.pack("<ii", CHUNK_RAW, len(data)) + data


def imgdiff(headers: list[bytes], *patches: bytes, count: int | None = None) -> bytes:
    n = len(headers) if count is None else count
    return b"IMGDIFF2" + struct.pack("<i", n) + b"".join(headers) + b"".join(patches)


def header_size(*headers: bytes) -> int:
    return 12 + sum(len(h) for h in headers)


def raw_deflate(data: bytes, level: int = 6) -> bytes:
    comp = zlib.compressobj(level, zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush()


# --- writer and applier round trips -----------------------------------------------------------


@pytest.mark.parametrize("level", [1, 6, 9])
def test_zip_round_trip_at_compression_levels(level: int) -> None:
    old, new = apk(0, level), apk(1, level)
    patch = round_trip(old, new)
    if level == 1:
        assert len(patch) > len(new) // 2  # the dex cannot be patched inflated (see below)
    else:
        assert len(patch) < len(new) // 2  # the point of imgdiff
    chunks = chunks_of(patch, old)
    deflates = [c for c in chunks if c.kind == CHUNK_DEFLATE]
    with zipfile.ZipFile(io.BytesIO(new)) as zf:
        dex_size = zf.getinfo("classes.dex").file_size
    dex = [c for c in deflates if c.target_len == dex_size]
    if level == 1:
        # zlib level 6 or 9 cannot reproduce a level-1 stream: the dex is patched as bytes.
        assert dex == []
    else:
        assert len(dex) == 1
        assert dex[0].zlib_params == (level, 8, -15, 8, 0)
    # The level-1 library never becomes a deflate chunk, whatever the dex level.
    with zipfile.ZipFile(io.BytesIO(new)) as zf:
        so_size = zf.getinfo("lib/arm64-v8a/libx.so").file_size
    assert all(c.target_len != so_size for c in deflates)


def test_deflate_chunk_of_a_changed_member() -> None:
    old, new = apk(0), apk(2)
    patch = round_trip(old, new)
    with zipfile.ZipFile(io.BytesIO(old)) as zf:
        old_info = zf.getinfo("classes.dex")
        old_dex = zf.read(old_info)
    with zipfile.ZipFile(io.BytesIO(new)) as zf:
        new_dex = zf.read("classes.dex")
    (chunk,) = [c for c in chunks_of(patch, old) if c.kind == CHUNK_DEFLATE]
    assert old_dex != new_dex
    # The chunk's source is the old member's compressed data, right after its local header.
    source = old[chunk.src_start : chunk.src_start + chunk.src_len]
    assert chunk.src_len == old_info.compress_size
    assert zlib.decompress(source, -15) == old_dex
    assert (chunk.expanded_len, chunk.target_len) == (len(old_dex), len(new_dex))
    # Its bsdiff patch turns the inflated old member into the inflated new one.
    assert bsdiff4.patch(old_dex, patch[chunk.patch_offset : chunk.patch_end]) == new_dex


def test_unchanged_and_new_members_are_not_deflate_chunks() -> None:
    old = make_zip(
        [("a.txt", text("a", 4000), DEFLATED, 6), ("b.txt", text("b", 4000), DEFLATED, 6)]
    )
    new = make_zip(
        [("a.txt", text("a", 4000), DEFLATED, 6), ("c.txt", text("c", 4000), DEFLATED, 6)]
    )
    patch = round_trip(old, new)
    assert {c.kind for c in chunks_of(patch, old)} <= {CHUNK_NORMAL, CHUNK_RAW}


def test_stored_members_only() -> None:
    old = make_zip([("x.bin", noise("x", 9000), STORED, None)])
    new = make_zip([("x.bin", noise("x", 9000)[:8000] + b"changed!" * 10, STORED, None)])
    patch = round_trip(old, new)
    kinds = [c.kind for c in chunks_of(patch, old)]
    assert kinds == [CHUNK_NORMAL]  # nothing deflated: the whole zip is one bsdiff


def test_data_descriptors() -> None:
    old, new = apk(0, descriptor=True), apk(3, descriptor=True)
    with zipfile.ZipFile(io.BytesIO(new)) as zf:
        assert all(info.flag_bits & 0x08 for info in zf.infolist())
    patch = round_trip(old, new)
    assert any(c.kind == CHUNK_DEFLATE for c in chunks_of(patch, old))


def test_zip_padded_to_whole_blocks() -> None:
    # As in a block OTA: the file's blocks end with zeros after the end record.
    old, new = pad(apk(0)), pad(apk(4))
    patch = round_trip(old, new)
    assert len(new) % BS == 0
    assert any(c.kind == CHUNK_DEFLATE for c in chunks_of(patch, old))


def test_plain_data() -> None:
    old = noise("plain", 20000)
    new = old[:7000] + b"inserted bytes" + old[7000:15000] + noise("tail", 3000)
    patch = round_trip(old, new)
    assert [c.kind for c in chunks_of(patch, old)] == [CHUNK_NORMAL]
    # The same data as "image" explicitly; a zip forced into image mode is one chunk too.
    assert make_imgdiff(old, new, mode="image") == patch
    zipped = round_trip(apk(0), apk(1), mode="image")
    assert len(chunks_of(zipped, apk(0))) == 1
    # Small or incompressible targets are stored raw, an empty one has no chunk.
    small = round_trip(old, b"tiny")
    assert [(c.kind, c.raw_len) for c in chunks_of(small, old)] == [(CHUNK_RAW, 4)]
    fresh = noise("unrelated", 5000)
    assert [c.kind for c in chunks_of(round_trip(old, fresh), old)] == [CHUNK_RAW]
    assert round_trip(old, b"") == b"IMGDIFF2" + bytes(4)
    assert apply_imgdiff(b"", make_imgdiff(b"", new), max_new_size=len(new)) == new


def test_writer_refuses() -> None:
    with pytest.raises(ValueError, match="mode"):
        make_imgdiff(b"a", b"b", mode="gzip")
    with pytest.raises(ValueError, match="not a zip file"):
        make_imgdiff(apk(0), b"not a zip", mode="zip")


def test_hand_built_chunks_with_other_zlib_parameters() -> None:
    old_member = text("member", 5000)
    new_member = old_member.replace(b"onCreate", b"onResume")
    compressed = raw_deflate(old_member)
    prefix = noise("prefix", 300)
    old = prefix + compressed + noise("suffix", 100)
    params = (1, 8, -12, 9, zlib.Z_FILTERED)
    comp = zlib.compressobj(1, zlib.DEFLATED, -12, 9, zlib.Z_FILTERED)
    new_compressed = comp.compress(new_member) + comp.flush()
    normal_new = prefix[:250] + b"edited" + prefix[256:]
    p_normal = bsdiff4.diff(prefix, normal_new)
    p_deflate = bsdiff4.diff(old_member, new_member)
    h_raw = raw(b"raw bytes first")
    h_norm = normal(0, len(prefix), 0)
    h_defl = deflate(len(prefix), len(compressed), 0, len(old_member), len(new_member), params)
    start = header_size(h_raw, h_norm, h_defl, raw(b""))
    h_norm = normal(0, len(prefix), start)
    h_defl = deflate(
        len(prefix),
        len(compressed),
        start + len(p_normal),
        len(old_member),
        len(new_member),
        params,
    )
    patch = imgdiff([h_raw, h_norm, h_defl, raw(b"")], p_normal, p_deflate)
    expected = b"raw bytes first" + normal_new + new_compressed
    assert apply_imgdiff(old, patch, max_new_size=len(expected)) == expected
    assert [c.kind for c in parse_imgdiff(patch, len(old))] == [3, 0, 2, 3]


def test_raw_chunks_only() -> None:
    patch = imgdiff([raw(b"abc"), raw(b""), raw(b"defg")])
    assert apply_imgdiff(b"", patch, max_new_size=7) == b"abcdefg"
    with pytest.raises(LimitError, match="exceeds 6"):
        apply_imgdiff(b"", patch, max_new_size=6)


# --- hostile patches --------------------------------------------------------------------------

OLD = noise("hostile-old", 4000)
GOOD_BSDIFF = bsdiff4.diff(OLD[:1000], OLD[:900] + b"x" * 100)


def _one_normal(start: int = 0, length: int = 1000, offset: int | None = None) -> bytes:
    head = normal(start, length, header_size(normal(0, 0, 0)) if offset is None else offset)
    return imgdiff([head], GOOD_BSDIFF)


def test_hand_built_normal_chunk_applies() -> None:
    assert apply_imgdiff(OLD, _one_normal(), max_new_size=1000) == OLD[:900] + b"x" * 100


def _deflate_patch(
    source: bytes,
    expanded: int,
    target_old: bytes,
    target_new: bytes,
    params: tuple[int, int, int, int, int] = (6, 8, -15, 8, 0),
    target_len: int | None = None,
) -> bytes:
    bsdiff = bsdiff4.diff(target_old, target_new)
    tlen = len(target_new) if target_len is None else target_len
    head = deflate(0, len(source), 12 + 64, expanded, tlen, params)
    return imgdiff([head], bsdiff)


HOSTILE = {
    "short": (b"IMGDIFF2\0", UnpackError, "shorter than its 12-byte header"),
    "magic": (b"BSDIFF40" + bytes(40), UnpackError, "not an imgdiff patch"),
    "version-1": (b"IMGDIFF1" + bytes(40), UnpackError, "IMGDIFF1"),
    "huge-count": (imgdiff([], count=0x7FFFFFFF), UnpackError, "cannot fit"),
    "negative-count": (imgdiff([], count=-1), UnpackError, "negative chunk count"),
    "count-past-headers": (imgdiff([raw(b"x")], count=2), UnpackError, "cannot fit"),
    "truncated-chunk": (imgdiff([normal(0, 10, 40)[:20]]), UnpackError, "ends inside"),
    "truncated-deflate": (
        imgdiff([deflate(0, 10, 0, 1, 1)[:40]]),
        UnpackError,
        "ends inside its deflate header",
    ),
    "unknown-type": (imgdiff([struct.pack("<ii", 7, 0)]), UnpackError, "unknown chunk type 7"),
    "gzip-chunk": (imgdiff([struct.pack("<ii", 1, 0)]), UnpackError, "CHUNK_GZIP"),
    "source-past-old": (_one_normal(3500, 1000), UnpackError, "outside the 4000-byte source"),
    "negative-source": (_one_normal(-1, 10), UnpackError, "outside the 4000-byte source"),
    "huge-source": (_one_normal(1 << 62, 1 << 62), UnpackError, "outside the 4000-byte source"),
    "patch-offset": (_one_normal(offset=10**6), UnpackError, "offset 1000000 lies outside"),
    "negative-offset": (_one_normal(offset=-5), UnpackError, "offset -5 lies outside"),
    "raw-past-end": (imgdiff([struct.pack("<ii", 3, 100) + b"short"]), UnpackError, "raw data"),
    "raw-negative": (imgdiff([struct.pack("<ii", 3, -1)]), UnpackError, "raw data of -1"),
    "expanded-bomb": (
        imgdiff([deflate(0, 100, 0, 1 << 40, 10)]),
        LimitError,
        "expanded source of 1099511627776 bytes",
    ),
    "target-bomb": (imgdiff([deflate(0, 100, 0, 10, 1 << 40)]), LimitError, "target of"),
    "negative-expanded": (imgdiff([deflate(0, 100, 0, -1, 10)]), UnpackError, "bad lengths"),
    "empty-target": (imgdiff([deflate(0, 100, 0, 10, 0)]), UnpackError, "bad lengths"),
    "bsdiff-not-bsdiff": (
        imgdiff([normal(0, 10, 12 + 28)], b"NOTBSDIFF" + bytes(40)),
        UnpackError,
        "imgdiff chunk 0 (normal): not a bsdiff patch",
    ),
}
for _label, _params in {
    "level": (10, 8, -15, 8, 0),
    "method": (6, 9, -15, 8, 0),
    "window-8": (6, 8, -8, 8, 0),
    "window-16": (6, 8, 16, 8, 0),
    "memlevel": (6, 8, -15, 0, 0),
    "strategy": (6, 8, -15, 8, 5),
}.items():
    HOSTILE[f"zlib-{_label}"] = (
        imgdiff([deflate(0, 100, 0, 10, 10, _params)], GOOD_BSDIFF),
        UnpackError,
        "zlib parameters zlib refuses",
    )


@pytest.mark.parametrize("label", sorted(HOSTILE))
def test_hostile_patches(label: str) -> None:
    patch, kind, message = HOSTILE[label]
    with pytest.raises(kind) as info:
        apply_imgdiff(OLD, patch, max_new_size=1 << 20)
    assert message in str(info.value), str(info.value)


def test_chunk_count_limit() -> None:
    patch = imgdiff([], count=MAX_CHUNKS + 1) + bytes(8 * (MAX_CHUNKS + 1))
    with pytest.raises(LimitError, match="more than"):
        apply_imgdiff(b"", patch, max_new_size=1)


def test_inflation_is_bounded_by_the_expanded_length() -> None:
    bomb = raw_deflate(bytes(50 * 1024 * 1024), level=9)  # 50 MiB of zeros, ~50 KiB
    patch = _deflate_patch(bomb, 1000, bytes(1000), bytes(1000))
    with pytest.raises(UnpackError, match="inflates to more than 1000 bytes"):
        apply_imgdiff(bomb, patch, max_new_size=1 << 20)
    # Claiming more than the stream holds, or a stream cut short.
    member = text("m", 500)
    source = raw_deflate(member)
    longer = _deflate_patch(source, len(member) + 1, member, member)
    with pytest.raises(UnpackError, match=f"inflates to {len(member)} bytes, the header says"):
        apply_imgdiff(source, longer, max_new_size=1 << 20)
    cut = source[: len(source) // 2]
    with pytest.raises(UnpackError, match="incomplete"):
        apply_imgdiff(cut, _deflate_patch(cut, len(member), member, member), max_new_size=1 << 20)
    garbage = b"\xff" * 64
    with pytest.raises(UnpackError, match="not a valid deflate stream"):
        apply_imgdiff(garbage, _deflate_patch(garbage, 10, member, member), max_new_size=1 << 20)
    # The exact length works, with trailing bytes after the stream (as zlib's inflate allows).
    new_member = member + b" appended"
    good = _deflate_patch(source + b"trailer", len(member), member, new_member)
    assert zlib.decompress(apply_imgdiff(source + b"trailer", good, max_new_size=1 << 20), -15) == (
        new_member
    )


def test_deflate_lengths_must_agree() -> None:
    member = text("agree", 400)
    source = raw_deflate(member)
    wrong_target = _deflate_patch(source, len(member), member, member + b"!", target_len=5)
    with pytest.raises(UnpackError, match=f"makes {len(member) + 1} bytes, the header says 5"):
        apply_imgdiff(source, wrong_target, max_new_size=1 << 20)
    # The deflated output must fit the room left.
    patch = _deflate_patch(source, len(member), member, noise("big", 5000))
    with pytest.raises(LimitError, match="grows past 100 bytes"):
        apply_imgdiff(source, patch, max_new_size=100)


def test_expanded_totals_are_limited() -> None:
    member = text("total", 400)
    source = raw_deflate(member)
    patch = _deflate_patch(source, len(member), member, member)
    assert apply_imgdiff(source, patch, max_new_size=1 << 20) == raw_deflate(member)
    with pytest.raises(LimitError, match="expand to more than 500 bytes"):
        apply_imgdiff(source, patch, max_new_size=1 << 20, max_total_expanded=500)
    with pytest.raises(LimitError, match="exceeds 100"):
        apply_imgdiff(source, patch, max_new_size=1 << 20, max_expanded_size=100)


def test_normal_output_past_the_limit() -> None:
    with pytest.raises(LimitError, match="exceeds 999"):
        apply_imgdiff(OLD, _one_normal(), max_new_size=999)


def test_mutated_patches_never_raise_anything_else() -> None:
    """Single-byte and truncation damage to real patches: bytes or an UnpackError."""
    old, new = apk(0), apk(1)
    patch = make_imgdiff(old, new)
    rnd = random.Random(7)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(400):
        damaged = bytearray(patch)
        if rnd.random() < 0.2:
            damaged = damaged[: rnd.randrange(len(damaged))]
        else:
            for _ in range(rnd.randint(1, 3)):
                # Mostly the chunk headers, where the structure is.
                pos = rnd.randrange(min(len(damaged), 400) if rnd.random() < 0.7 else len(damaged))
                damaged[pos] = rnd.randrange(256)
        try:
            out = apply_imgdiff(old, bytes(damaged), max_new_size=len(new))
        except UnpackError:
            outcomes["error"] += 1
        else:
            assert len(out) <= len(new)
            outcomes["ok"] += 1
    assert outcomes["error"] > 100

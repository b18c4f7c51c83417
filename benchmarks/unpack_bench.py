"""Benchmark: unpack + inventory of a firmware with a >= 1 GiB system partition, against xz -d.

Run on demand (``make bench``), never as a test. In one run it:

1. builds a system partition tree of realistic content: APKs and JARs from fwscan's own
   synthesizer, the real DEX and APK files of ``../shared/corpus/large`` (when present) copied
   under many app names, native libraries, pseudo-text resources, incompressible media and free
   space; then an ext4 image with ``mke2fs -d`` and a full A/B OTA zip (xz operations);
2. times plain ``xz -d`` of exactly the compressed operation data of that payload (the blobs of
   every REPLACE_XZ operation, concatenated) as the baseline;
3. times ``fwscan inventory --json`` of the OTA zip (payload extraction with every hash checked,
   ext4 walk, SHA-256 of every file), in a fresh process, and reads its peak RSS;
4. prints both times, the ratio, and the peak memory. Target: ratio <= 1.3, peak RSS < 500 MB.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from fwscan.synth import apk, ext4img
from fwscan.synth.build import write_ota_zip
from fwscan.synth.payload import PartitionImage, write_payload
from fwscan.unpack.base import Window
from fwscan.unpack.payload import OpType, Payload

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
MiB = 1 << 20


def _corpus_blobs() -> list[bytes]:
    """Real DEX (uncompressed) and APK bytes from the corpus, if it is there."""
    blobs: list[bytes] = []
    large = CORPUS / "large"
    if not large.is_dir():
        return blobs
    for path in sorted(large.iterdir()):
        data = path.read_bytes()
        blobs.append(data)
        with zipfile.ZipFile(path) as zf:
            blobs.extend(zf.read(n) for n in zf.namelist() if n.endswith(".dex"))
    return blobs


def _text(rng: random.Random, size: int, words: list[str]) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rng.choices(words, k=2048)) + "\n").encode()
    return bytes(out[:size])


def build_tree(root: Path, target: int, seed: int = 7) -> int:
    """A system tree of about ``target`` bytes; returns the bytes written."""
    rng = random.Random(seed)
    words = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz_", k=rng.randint(2, 12)))
        for _ in range(20000)
    ]
    real = _corpus_blobs()
    key = apk.load_key("platform")
    total = 0
    i = 0
    while total < target:
        app = root / "app" / f"App{i:03d}"
        app.mkdir(parents=True)
        # An APK: real bytes from the corpus when there, else a synthesized signed one.
        if real:
            blob = real[i % len(real)]
            (app / f"App{i:03d}.apk").write_bytes(blob)
            total += len(blob)
        else:
            apk.build_jar(app / f"App{i:03d}.apk", dex_files=[_text(rng, 4 * MiB, words)], key=key)
            total += 4 * MiB
        # Pre-optimised code and resources: compressible.
        oat = app / "oat" / "arm64"
        oat.mkdir(parents=True)
        n = rng.randint(1, 4) * MiB
        (oat / f"App{i:03d}.vdex").write_bytes(_text(rng, n, words))
        total += n
        # Media: incompressible.
        n = rng.randint(256 << 10, 3 * MiB)
        (app / "res.bin").write_bytes(rng.randbytes(n))
        total += n
        i += 1
    lib = root / "lib64"
    lib.mkdir()
    for j in range(40):
        n = rng.randint(64 << 10, 2 * MiB)
        half = _text(rng, n // 2, words)
        (lib / f"lib{j:02d}.so").write_bytes(b"\x7fELF" + half + rng.randbytes(n // 2))
        total += n + 4
    (root / "build.prop").write_text("ro.build.fingerprint=bench/bench/bench:14/B/1:user/rk\n")
    return total


def _timed(argv: list[str], stdout: int | None = subprocess.DEVNULL) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of a command, measured by GNU time."""
    gnu_time = shutil.which("time", path="/usr/bin") or "/usr/bin/time"
    with tempfile.NamedTemporaryFile("r") as rep:
        start = time.perf_counter()
        subprocess.run([gnu_time, "-o", rep.name, "-f", "%M", *argv], stdout=stdout, check=True)
        wall = time.perf_counter() - start
        return wall, int(rep.read().strip().splitlines()[-1])


def _runs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1100, help="system content (MiB)")
    parser.add_argument("--xz-preset", type=int, default=1, help="xz preset for the payload")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each; best is kept")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fwscan-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        content = build_tree(work / "system", args.size_mib * MiB)
        img = work / "system.img"
        ext4img.make_ext4(work / "system", img, label="system")
        shutil.rmtree(work / "system")
        payload = work / "payload.bin"
        props = write_payload(
            payload, [PartitionImage("system", img, "xz")], xz_preset=args.xz_preset
        )
        ota = work / "bench-ota.zip"
        write_ota_zip(ota, payload, props.text(), [("ota-type", "AB")], props.METADATA_SIZE)
        img_size = img.stat().st_size
        img.unlink()
        print(
            f"built: {content / MiB:.0f} MiB of files, system image {img_size / MiB:.0f} MiB, "
            f"OTA {ota.stat().st_size / MiB:.0f} MiB, in {time.perf_counter() - t0:.0f} s"
        )

        # The baseline's input: every REPLACE_XZ blob, concatenated (valid multi-stream .xz).
        pl = Payload.open(Window(payload))
        blobs = work / "ops.xz"
        xz_ops = 0
        with open(payload, "rb") as src, open(blobs, "wb") as dst:
            for part in pl.info.partitions:
                for op in part.operations:
                    if op.type is OpType.REPLACE_XZ:
                        src.seek(pl.data_start + op.data_offset)
                        dst.write(src.read(op.data_length))
                        xz_ops += 1
        payload.unlink()
        print(f"baseline input: {xz_ops} REPLACE_XZ blobs, {blobs.stat().st_size / MiB:.0f} MiB")

        fwscan = [
            sys.executable,
            "-m",
            "fwscan",
            "inventory",
            "--json",
            "--workdir",
            str(work),
            str(ota),
        ]
        xz = ["xz", "-d", "-c", str(blobs)]
        ours, base, rss = [], [], 0
        for _ in range(args.repeat):
            t, _m = _timed(xz)
            base.append(t)
            t, m = _timed(fwscan)
            ours.append(t)
            rss = max(rss, m)
        best_ours, best_base = min(ours), min(base)
        print(f"xz -d (baseline)      {best_base:7.2f} s   runs: {_runs(base)}")
        print(f"fwscan inventory      {best_ours:7.2f} s   runs: {_runs(ours)}")
        print(f"ratio fwscan / xz -d  {best_ours / best_base:7.2f}   (target <= 1.3)")
        print(f"fwscan peak RSS       {rss / 1024:7.0f} MiB (target < 500 MB)")


if __name__ == "__main__":
    main()

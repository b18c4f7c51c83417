"""Deterministic, v1 (JAR) signed APK and JAR files.

An APK written here is a zip whose entries are, in order: ``META-INF/MANIFEST.MF``,
``META-INF/CERT.SF``, ``META-INF/CERT.RSA`` (when signed), then every other entry sorted by
name: ``AndroidManifest.xml``, ``assets/...``, ``classes.dex``, ``classes2.dex``, ...,
``lib/<abi>/<name>.so``. Every entry has the timestamp 2009-01-01 00:00:00 and no DOS file
attributes (made by MS-DOS, as Java's ``ZipOutputStream`` writes them);
``.so`` files are stored uncompressed and page aligned (4096, as ``zipalign -p`` does, with the
0xD935 alignment extra field), everything else is deflated.

The signature follows the JAR signing specification as Android's v1 scheme reads it:
``MANIFEST.MF`` holds a ``SHA-256-Digest`` of every entry, ``CERT.SF`` the digest of the whole
manifest and of each of its sections, and ``CERT.RSA`` a DER PKCS#7 ``SignedData`` with a
detached RSA/SHA-256 signature of ``CERT.SF`` (no signed attributes) and the signer
certificate. RSA PKCS#1 v1.5 signatures are deterministic, so the same inputs give the same
bytes. There is no v2/v3 signing block, hence no ``X-Android-APK-Signed`` header.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import re
import struct
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from fwscan.errors import ManifestError

__all__ = [
    "KEY_NAMES",
    "ZIP_TIMESTAMP",
    "SigningKey",
    "build_apk",
    "build_jar",
    "load_key",
]

ZIP_TIMESTAMP = (2009, 1, 1, 0, 0, 0)
"""The modification time of every zip entry."""

KEY_NAMES = ("platform", "shared", "media", "releasekey", "vendor")
"""The test keys shipped in ``fwscan/data/keys``."""

NATIVE_ABIS = ("arm64-v8a", "armeabi-v7a", "armeabi", "x86", "x86_64", "riscv64")
"""ABI folder names accepted under ``lib/``."""

_CREATED_BY = "1.0 (fwscan)"
_SIGNATURE_BASENAME = "META-INF/CERT"
_PAGE_ALIGN = 4096
_ALIGNMENT_EXTRA_ID = 0xD935  # Android zipalign's alignment extra field.
_MANIFEST_LINE_BYTES = 72
_EMPTY: Mapping[str, bytes] = MappingProxyType({})
_KEY_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_SO_NAME = re.compile(r"[A-Za-z0-9_.+-]+\.so")


@dataclass(frozen=True)
class SigningKey:
    """A private key and its self-signed certificate, used to sign APKs and JARs."""

    name: str
    """The key's name (``platform``, ``releasekey``, ...)."""
    private_key: rsa.RSAPrivateKey
    """The RSA private key."""
    certificate_der: bytes
    """The X.509 certificate, DER encoded."""
    cert_sha256: str
    """SHA-256 of ``certificate_der``, lowercase hex (what ``apksigner`` prints)."""

    @property
    def certificate(self) -> x509.Certificate:
        """The certificate as a :class:`cryptography.x509.Certificate`."""
        return x509.load_der_x509_certificate(self.certificate_der)


@functools.cache
def load_key(name: str) -> SigningKey:
    """The test key ``name`` from ``fwscan/data/keys/<name>.pk8.pem`` and ``<name>.x509.pem``.

    Raises :class:`~fwscan.errors.ManifestError` for an unknown name or a key that does not
    match its certificate.
    """
    if not isinstance(name, str) or not _KEY_NAME.fullmatch(name):
        raise ManifestError(f"key: {name!r} is not a key name")
    folder = resources.files("fwscan").joinpath("data", "keys")
    key_file = folder.joinpath(f"{name}.pk8.pem")
    cert_file = folder.joinpath(f"{name}.x509.pem")
    if not key_file.is_file() or not cert_file.is_file():
        raise ManifestError(f"key: unknown signing key {name!r} (known: {', '.join(KEY_NAMES)})")
    private_key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ManifestError(f"key: {name!r} is not an RSA key")
    if certificate.public_key() != private_key.public_key():
        raise ManifestError(f"key: the certificate of {name!r} does not match its private key")
    der = certificate.public_bytes(serialization.Encoding.DER)
    return SigningKey(name, private_key, der, hashlib.sha256(der).hexdigest())


# --- JAR manifest and signature ------------------------------------------------------------


def _header(name: str, value: str) -> bytes:
    """One manifest header, wrapped to 72-byte lines as the JAR specification requires."""
    raw = f"{name}: {value}".encode()
    if b"\r" in raw or b"\n" in raw or b"\x00" in raw:
        raise ManifestError(f"{name}: {value!r} cannot be written into a JAR manifest")
    lines: list[bytes] = []
    limit = _MANIFEST_LINE_BYTES
    while len(raw) > limit:
        cut = limit
        while raw[cut] & 0xC0 == 0x80:  # do not split a UTF-8 sequence
            cut -= 1
        lines.append(raw[:cut])
        raw = raw[cut:]
        limit = _MANIFEST_LINE_BYTES - 1  # continuation lines start with a space
    lines.append(raw)
    return b"\r\n ".join(lines) + b"\r\n"


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _signature_files(
    entries: Sequence[tuple[str, bytes]], key: SigningKey
) -> list[tuple[str, bytes]]:
    """``MANIFEST.MF``, ``CERT.SF`` and ``CERT.RSA`` for the given entries."""
    main = _header("Manifest-Version", "1.0") + _header("Created-By", _CREATED_BY) + b"\r\n"
    sections = [
        _header("Name", name) + _header("SHA-256-Digest", _b64_sha256(data)) + b"\r\n"
        for name, data in entries
    ]
    manifest = main + b"".join(sections)

    sf = bytearray(
        _header("Signature-Version", "1.0")
        + _header("Created-By", _CREATED_BY)
        + _header("SHA-256-Digest-Manifest", _b64_sha256(manifest))
        + _header("SHA-256-Digest-Manifest-Main-Attributes", _b64_sha256(main))
        + b"\r\n"
    )
    for (name, _), section in zip(entries, sections, strict=True):
        sf += _header("Name", name) + _header("SHA-256-Digest", _b64_sha256(section)) + b"\r\n"

    signature = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(bytes(sf))
        .add_signer(key.certificate, key.private_key, hashes.SHA256())
        .sign(
            serialization.Encoding.DER,
            [
                pkcs7.PKCS7Options.DetachedSignature,
                pkcs7.PKCS7Options.NoAttributes,
                pkcs7.PKCS7Options.Binary,
            ],
        )
    )
    return [
        ("META-INF/MANIFEST.MF", manifest),
        (f"{_SIGNATURE_BASENAME}.SF", bytes(sf)),
        (f"{_SIGNATURE_BASENAME}.RSA", signature),
    ]


# --- zip writing ---------------------------------------------------------------------------


def _alignment_extra(header_offset: int, name: bytes, align: int) -> bytes:
    """An extra field that makes the entry's data start at a multiple of ``align``."""
    data_start = header_offset + 30 + len(name)
    pad = -data_start % align
    if pad == 0:
        return b""
    while pad < 6:  # id, size and the alignment value need six bytes
        pad += align
    return struct.pack("<HHH", _ALIGNMENT_EXTRA_ID, pad - 4, align) + b"\x00" * (pad - 6)


def _zip_bytes(entries: Sequence[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            # Made by MS-DOS with no DOS attributes, as Java's ZipOutputStream (signapk,
            # apksigner) writes; zipfile fills the high bits, which MS-DOS readers ignore.
            info.create_system = 0
            if name.endswith(".so"):
                info.compress_type = zipfile.ZIP_STORED
                info.extra = _alignment_extra(buf.tell(), name.encode(), _PAGE_ALIGN)
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=9)
    return buf.getvalue()


def _write(out: Path, content: list[tuple[str, bytes]], key: SigningKey | None) -> None:
    names = [name for name, _ in content]
    if len(set(names)) != len(names):
        raise ManifestError("apk: two entries have the same name")
    content.sort(key=lambda entry: entry[0].encode())
    if key is None:
        main = _header("Manifest-Version", "1.0") + _header("Created-By", _CREATED_BY) + b"\r\n"
        meta = [("META-INF/MANIFEST.MF", main)]
    else:
        if not isinstance(key, SigningKey):
            raise ManifestError(f"key: expected a SigningKey, got {type(key).__name__}")
        meta = _signature_files(content, key)
    Path(out).write_bytes(_zip_bytes(meta + content))


def _check_bytes(where: str, data: object) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ManifestError(f"{where}: expected bytes, got {type(data).__name__}")
    return bytes(data)


def _dex_entries(dex_files: Sequence[bytes]) -> list[tuple[str, bytes]]:
    if isinstance(dex_files, bytes | bytearray | str):
        raise ManifestError("dex_files: expected a sequence of dex files, not one")
    return [
        ("classes.dex" if i == 0 else f"classes{i + 1}.dex", _check_bytes(f"dex_files[{i}]", dex))
        for i, dex in enumerate(dex_files)
    ]


def _check_relative(where: str, path: object) -> str:
    if not isinstance(path, str) or not path:
        raise ManifestError(f"{where}: expected a relative path")
    parts = path.split("/")
    if (
        any(part in ("", ".", "..") for part in parts)
        or "\\" in path
        or any(ord(ch) < 0x20 or ch == "\x7f" for ch in path)
    ):
        raise ManifestError(f"{where}: {path!r} is not a clean relative path")
    return path


def build_apk(
    out: Path,
    *,
    manifest: bytes,
    dex_files: Sequence[bytes],
    native_libs: Mapping[str, bytes] = _EMPTY,
    assets: Mapping[str, bytes] = _EMPTY,
    key: SigningKey,
) -> None:
    """Write a v1-signed APK to ``out``.

    ``manifest`` is the binary ``AndroidManifest.xml`` (see :func:`fwscan.synth.axml.build_axml`);
    ``dex_files`` become ``classes.dex``, ``classes2.dex``, ...; ``native_libs`` maps
    ``"<abi>/<file>.so"`` (``"arm64-v8a/libfoo.so"``) to the library, stored under ``lib/``;
    ``assets`` maps a relative path to its content, stored under ``assets/``. Raises
    :class:`~fwscan.errors.ManifestError` for a bad path or ABI. The output is deterministic.
    """
    content = [("AndroidManifest.xml", _check_bytes("manifest", manifest))]
    content += _dex_entries(dex_files)
    for lib, data in native_libs.items():
        path = _check_relative(f"native_libs[{lib!r}]", lib)
        abi, _, file = path.partition("/")
        if abi not in NATIVE_ABIS or not _SO_NAME.fullmatch(file):
            raise ManifestError(
                f"native_libs[{lib!r}]: expected '<abi>/<name>.so' with abi in {NATIVE_ABIS}"
            )
        content.append((f"lib/{path}", _check_bytes(f"native_libs[{lib!r}]", data)))
    for asset, data in assets.items():
        path = _check_relative(f"assets[{asset!r}]", asset)
        content.append((f"assets/{path}", _check_bytes(f"assets[{asset!r}]", data)))
    _write(out, content, key)


def build_jar(out: Path, *, dex_files: Sequence[bytes], key: SigningKey | None) -> None:
    """Write a framework-style JAR (``classes.dex``, ``classes2.dex``, ...) to ``out``.

    With a ``key`` the JAR is v1 signed like an APK; without one it holds only a
    ``META-INF/MANIFEST.MF`` with the main attributes. The output is deterministic.
    """
    _write(out, _dex_entries(dex_files), key)

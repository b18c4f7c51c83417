"""Endpoints written in code and data: URLs, host names and IP addresses, by a strict grammar.

Firmware strings are full of things that look like endpoints and are not. :func:`extract`
accepts only:

- **URLs** of a network scheme (:data:`SCHEMES`): ``scheme://[userinfo@]host[:port][/path]``,
  where the host is a DNS name (Unicode names are turned into punycode), a dotted-quad IPv4
  address or a bracketed IPv6 address. Punctuation that ends a sentence is not part of the URL;
  a URL inside another one's path or query is reported too. URLs of XML namespaces and schema
  identifiers (``http://schemas.android.com/apk/res/android``, ``http://www.w3.org/...``,
  ``http://xmlpull.org/...``, ``http://ns.adobe.com/...``: :data:`NAMESPACE_HOSTS`) are
  namespaces, not endpoints: they are left out (or kept as kind ``namespace`` on request).
- **Bare host names** (``api.example.com``, optionally ``:port``): lower-case (or all upper-case)
  labels of ``[a-z0-9-]``, at least two, whose last labels are a real public suffix of the
  Public Suffix List (shipped by the ``publicsuffixlist`` package, never fetched) with a
  registrable domain above it. The shapes of Java code are refused (see :func:`_bare_host`):
  a name with ``$`` or ``_``, mixed case (``android.intent.action.MAIN``, ``R.id``), a last
  label that is a common file extension (``libfoo.so``, ``config.xml``, ``run.sh``), a first
  label that is a reverse-DNS root (``com.android.phone``, ``org.chromium.net``), and a first
  label that is a Java package or Android property namespace (``android.app``, ``kotlin.io``,
  ``ro.build.id``, ``os.name``) unless the name lies under another registrable ``.com``,
  ``.net``, ``.org`` or ``.cn`` domain (``android.clients.google.com`` is kept). A name right
  after ``@`` (a mail address), ``/`` (a path) or before ``(`` (a call) is not a host, nor is a
  namespace host.
- **IP literals**: exactly four dotted decimal numbers, each at most 255 and without leading
  zeros, not inside a longer dotted run (ASN.1 OIDs such as ``1.2.840.113554.1.2.2.1`` are
  not addresses, nor are the four-number OIDs of certificate code such as ``2.5.29.17``), and
  IPv6 addresses (with ``::`` or all eight groups, and a digit).

Each :class:`Endpoint` says whether it is *external*: a global IP address, or a DNS name with a
registrable domain that is not reserved (``localhost``, ``*.local``, ``example.com``...).
Loopback, private (RFC 1918, unique local), link-local, multicast, reserved and unspecified
addresses are local.

:class:`EndpointMatcher` maps a host to the :class:`~fwscan.rules.EndpointRule` of the
longest domain suffix that matches it, label by label (``vnet.cn`` matches ``zzhc.vnet.cn``
and never ``evilvnet.cn``).
"""

from __future__ import annotations

import functools
import importlib.metadata
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from fwscan.rules import EndpointRule

__all__ = [
    "CLEARTEXT_SCHEMES",
    "NAMESPACE_HOSTS",
    "SCHEMES",
    "Endpoint",
    "EndpointMatcher",
    "extract",
    "host_is_external",
    "is_candidate",
    "is_namespace",
    "psl_version",
    "registrable_domain",
]

CLEARTEXT_SCHEMES = frozenset(
    {
        "http",
        "ws",
        "ftp",
        "rtsp",
        "rtmp",
        "mqtt",
        "coap",
        "amqp",
        "telnet",
        "ldap",
        "imap",
        "pop3",
        "smtp",
        "tcp",
        "udp",
        "sip",
        "xmpp",
    }
)
"""Schemes whose traffic is not encrypted by the protocol itself."""
TLS_SCHEMES = frozenset(
    {
        "https",
        "wss",
        "ftps",
        "sftp",
        "ssh",
        "rtsps",
        "rtmps",
        "mqtts",
        "coaps",
        "amqps",
        "ldaps",
        "imaps",
        "pop3s",
        "smtps",
        "sips",
        "tls",
        "ssl",
    }
)
"""Schemes that run over TLS (or SSH)."""
SCHEMES = CLEARTEXT_SCHEMES | TLS_SCHEMES
"""Every URL scheme :func:`extract` accepts; ``file:``, ``content:``, ``data:`` and the like
name no server."""

NAMESPACE_HOSTS = frozenset(
    {
        "schemas.android.com",
        "www.w3.org",
        "w3.org",
        "xmlpull.org",
        "www.xmlpull.org",
        "ns.adobe.com",
        "xml.org",
        "www.xml.org",
        "xml.apache.org",
        "purl.org",
        "schemas.xmlsoap.org",
        "schemas.microsoft.com",
        "schemas.openxmlformats.org",
        "schemas.google.com",
        "xmlns.com",
        "cipa.jp",
        "iptc.org",
        "www.wapforum.org",
        "javax.xml.xmlconstants",
    }
)
"""Hosts whose URLs, in firmware, name XML namespaces, schemas, DTDs or parser features."""
_NAMESPACE_PREFIXES = (
    ("apache.org", "/xml/"),
    ("java.sun.com", "/xml/"),
    ("java.sun.com", "/dtd/"),
    ("www.openmobilealliance.org", "/tech/dtd/"),
)
"""(host, path prefix) pairs that are namespaces; the path is compared in lower case."""

_LOCAL_SUFFIXES = (
    "localhost",
    "local",
    "localdomain",
    "lan",
    "home.arpa",
    "internal",
    "intranet",
    "test",
    "example",
    "invalid",
    "onion",
    "example.com",
    "example.net",
    "example.org",
)
"""Names (and their subdomains) that never reach a public server (RFC 2606, 6761, 6762, 8375)."""

_FILE_EXTENSIONS = (
    "so apk apks jar dex odex vdex oat art aar class java kt smali xml json yaml yml txt "
    "cfg conf ini prop properties rc sh py rb lua js mjs ts css html htm md rst "
    "png jpg jpeg gif bmp webp svg ico ttf otf mp3 mp4 m4a ogg wav flac aac amr mkv mov "
    "avi zip gz tgz bz2 xz zst 7z rar tar img bin dat db sqlite log tmp bak pem crt cer "
    "der key pk8 p12 pfx keystore bks x509 csv pdf doc docx mk cc cpp hpp idl "
    "aidl proto ko dtb sig"
)
FILE_EXTENSIONS = frozenset(_FILE_EXTENSIONS.split())
"""Last labels that make a dotted name a file name (``libfoo.so``, ``boot.img``), even where the
label is also a top-level domain (``.so``, ``.sh``, ``.py``, ``.zip``, ``.mov``, ``.md``,
``.cc``, ``.art``): file names fill firmware strings, hosts under those TLDs are rare. Country
TLDs that are rarer as extensions in Android firmware (``.in``, ``.pl``, ``.am``) stay hosts."""
REVERSE_DNS_ROOTS = frozenset({"com", "org", "net", "edu", "gov", "mil", "int"})
"""First labels that make a dotted name a reverse-DNS identifier (``com.android.phone``)."""
CODE_ROOTS = frozenset(
    {
        "android",
        "androidx",
        "java",
        "javax",
        "dalvik",
        "kotlin",
        "kotlinx",
        "sun",
        "junit",
        "libcore",
        "ro",
        "persist",
        "sys",
        "gsm",
        "ril",
        "debug",
        "init",
        "ctl",
        "os",
        "user",
        "this",
        "vendor",
        "llvm",
        "gnu",
        "data",
        "rodata",
        "text",
        "bss",
        "vnd",
        "dev",
        "config",
        "hw",
    }
)
"""First labels of Java packages (``android.app``, ``kotlin.io``) and of Android system
properties or Java system properties (``ro.build.id``, ``os.name``, ``user.name``)."""
_OID_ARCS = ("2.5.4.", "2.5.29.", "1.3.6.", "1.3.36.", "1.2.840.")
"""Four-number ASN.1 object identifiers common in certificate code (X.500 attribute types,
certificate extensions such as ``2.5.29.17``, the internet arc): not addresses."""
_HOST_TLDS = frozenset({"com", "net", "org", "cn"})
"""A name with a :data:`CODE_ROOTS` first label is kept only under one of these TLDs."""
_BARE_TLDS = frozenset(
    [
        "com",
        "net",
        "org",
        "info",
        "biz",
        "edu",
        "gov",
        "mil",
        "int",
        "arpa",
        "io",
        "app",
        "dev",
        "cloud",
        "xyz",
        "top",
        "online",
        "site",
        "mobi",
        "tv",
        "me",
        "co",
        "ai",
    ]
)
"""Top-level domains accepted for a bare host name (no scheme), besides every two-letter
country code. Strings in firmware are full of dotted keys that end in one of the hundreds of
newer generic TLDs (``info.news``, ``log.print.video``, ``uprops.icu``); a URL with a scheme is
strong enough evidence for any TLD, a bare name is not."""

_SCHEME_ALT = "|".join(sorted(SCHEMES, key=lambda s: (-len(s), s)))
_URL_RE = re.compile(
    r"(?<![A-Za-z0-9+.\-])"
    rf"(?P<scheme>{_SCHEME_ALT})://"
    r"(?P<userinfo>[^\s/?#@\[\]\"'<>\\]*@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s/?#:@\[\]\"'<>\\(){}|^`,;!*]+)"
    r"(?::(?P<port>[0-9]{1,5})(?![0-9]))?"
    r"(?P<rest>[/?#][^\s\"'<>\\^`{|}]*)?",
    re.IGNORECASE,
)
_IPV6_RE = re.compile(
    r"\[(?P<bracketed>[0-9A-Fa-f:.]+)\](?::(?P<port>[0-9]{1,5})(?![0-9]))?"
    r"|(?<![\w:.])(?P<bare>[0-9A-Fa-f.]*+:[0-9A-Fa-f:.]*+)(?![\w])"
)
_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9_$.\-])[A-Za-z0-9_$\-]*\.[A-Za-z0-9_$.\-]*")
_PORT_RE = re.compile(r":([0-9]{1,5})(?![0-9A-Za-z_.])")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_IPV4_RE = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
_CANDIDATE_RE = re.compile(
    r"://|[A-Za-z0-9-]\.[A-Za-z][A-Za-z0-9-]|[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]"
    r"|[0-9A-Fa-f]?:[0-9A-Fa-f]{0,4}:"
)
_DIGIT_RE = re.compile(r"[0-9]")
_TRAILING = ".,;:!?*'\""
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}


@dataclass(frozen=True)
class Endpoint:
    """One URL, host name or IP address found in a string."""

    value: str
    """The text as written (a URL without trailing punctuation, a host with its ``:port``)."""
    kind: str
    """``url``, ``host`` or ``ip`` (``namespace`` only when asked for)."""
    host: str
    """The host in canonical form: lower case, punycode for Unicode names, an IPv6 address
    compressed and without brackets."""
    scheme: str | None
    """The URL scheme in lower case; ``None`` for a bare host or address."""
    port: int | None
    """The port written (``None`` when absent: no default port is assumed)."""
    cleartext: bool
    """A URL whose scheme carries no TLS (``http``, ``ws``, ``ftp``, ``mqtt``...)."""
    external: bool
    """Whether the host can be a public server: False for loopback, private, link-local,
    multicast and reserved addresses, ``localhost``, ``*.local``, reserved example names,
    names without a registrable domain, and namespaces."""

    def to_dict(self) -> dict[str, object]:
        """The JSON form."""
        return {
            "value": self.value,
            "kind": self.kind,
            "host": self.host,
            "scheme": self.scheme,
            "port": self.port,
            "cleartext": self.cleartext,
            "external": self.external,
        }


@functools.cache
def psl_version() -> str:
    """The installed ``publicsuffixlist`` version (its last part dates the list it ships): what
    :func:`extract` accepts as a host depends on it, so caches and scan records should name it."""
    return importlib.metadata.version("publicsuffixlist")


@functools.cache
def _psl() -> PublicSuffixList:
    """The Public Suffix List shipped with ``publicsuffixlist``; unknown TLDs are not public."""
    return PublicSuffixList(accept_unknown=False)


@functools.cache
def _icann_psl() -> PublicSuffixList:
    """The ICANN part of the list only: ``googleapis.com`` is then a domain, not a suffix."""
    return PublicSuffixList(accept_unknown=False, only_icann=True)


def registrable_domain(host: str) -> str | None:
    """The registrable domain of ``host`` per the Public Suffix List (``zzhc.vnet.cn`` ->
    ``vnet.cn``), or ``None`` when ``host`` is a public suffix itself or its TLD is unknown."""
    name = host.lower().rstrip(".")
    if not name or not all(_LABEL_RE.fullmatch(label) for label in name.split(".")):
        return None
    result = _psl().privatesuffix(name)
    return result if isinstance(result, str) else None


def _is_local_name(host: str) -> bool:
    return any(host == s or host.endswith("." + s) for s in _LOCAL_SUFFIXES)


def _ip_is_external(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _ip_is_external(ip.ipv4_mapped)
    return bool(
        ip.is_global
        and not ip.is_multicast
        and not ip.is_reserved
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_unspecified
        and not ip.is_private
    )


@functools.lru_cache(maxsize=65536)
def host_is_external(host: str) -> bool:
    """Whether ``host`` (canonical form, as in :attr:`Endpoint.host`) can be a public server."""
    try:
        return _ip_is_external(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    if name in NAMESPACE_HOSTS or _is_local_name(name):
        return False
    return registrable_domain(name) is not None


def is_namespace(host: str, path: str) -> bool:
    """Whether a URL with this host and path names an XML namespace, schema or DTD."""
    host = host.lower()
    if host in NAMESPACE_HOSTS:
        return True
    lowered = path.lower()
    return any(host == h and lowered.startswith(p) for h, p in _NAMESPACE_PREFIXES)


def is_candidate(text: str) -> bool:
    """Cheap prefilter: False only when :func:`extract` cannot find anything in ``text``."""
    return _CANDIDATE_RE.search(text) is not None


def _valid_port(text: str | None) -> int | bool | None:
    """The port as an int, ``None`` when absent, ``False`` when out of range."""
    if text is None:
        return None
    port = int(text)
    return port if 0 < port <= 65535 else False


def _dns_host(raw: str) -> str | None:
    """A URL host as canonical ASCII (punycode), or ``None`` when it is not a DNS name."""
    name = raw.rstrip(".")
    if not name or len(name) > 253:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    name = name.lower()
    labels = name.split(".")
    if not all(_LABEL_RE.fullmatch(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None  # a malformed dotted number, not a name
    return name


def _ipv6_text(ip: ipaddress.IPv6Address) -> str:
    """Compressed text of an IPv6 address; an IPv4-mapped one ends in dotted form, the same
    on every Python version."""
    if ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return ip.compressed


def _url_host(raw: str) -> str | None:
    """The canonical host of a URL, or ``None`` when the host is not valid."""
    if raw.startswith("["):
        try:
            return _ipv6_text(ipaddress.IPv6Address(raw[1:-1]))
        except ValueError:
            return None
    if _IPV4_RE.fullmatch(raw):
        try:
            return str(ipaddress.IPv4Address(raw))
        except ValueError:
            return None
    return _dns_host(raw)


def _trim_rest(rest: str) -> str:
    """Drops the punctuation that ends a sentence, not the URL (``).``, ``",``...)."""
    while rest:
        last = rest[-1]
        unbalanced = last in _CLOSERS and rest.count(_CLOSERS[last]) < rest.count(last)
        if last in _TRAILING or unbalanced:
            rest = rest[:-1]
        else:
            break
    return rest


def _urls(text: str, include_namespaces: bool) -> list[tuple[int, int, Endpoint | None]]:
    """Every URL match as ``(start, end, endpoint)``; the endpoint is ``None`` for a match that
    is no endpoint (a namespace, an invalid host), whose span is still not scanned again."""
    out: list[tuple[int, int, Endpoint | None]] = []
    if "://" not in text:
        return out
    pos = 0
    while (m := _URL_RE.search(text, pos)) is not None:
        # the next search starts after the host, so that a URL inside this one's path or query
        # (``?next=https://other.host/``) is reported too
        pos = m.end("host")
        scheme = m.group("scheme").lower()
        raw_host = m.group("host")
        rest = _trim_rest(m.group("rest") or "")
        port = _valid_port(m.group("port"))
        if m.group("port") is not None:
            end = m.end("port")
        else:
            raw_host = raw_host.rstrip(".") if not rest else raw_host
            end = m.start("host") + len(raw_host)
        if rest:
            end = m.start("rest") + len(rest)
        host = _url_host(raw_host)
        if host is None or port is False:
            out.append((m.start(), m.end(), None))
            continue
        path = rest.split("?", 1)[0].split("#", 1)[0]
        if is_namespace(host, path):
            if include_namespaces:
                ep = Endpoint(
                    value=text[m.start() : end],
                    kind="namespace",
                    host=host,
                    scheme=scheme,
                    port=port if isinstance(port, int) else None,
                    cleartext=scheme in CLEARTEXT_SCHEMES,
                    external=False,
                )
                out.append((m.start(), end, ep))
            else:
                out.append((m.start(), m.end(), None))
            continue
        ep = Endpoint(
            value=text[m.start() : end],
            kind="url",
            host=host,
            scheme=scheme,
            port=port if isinstance(port, int) else None,
            cleartext=scheme in CLEARTEXT_SCHEMES,
            external=host_is_external(host),
        )
        out.append((m.start(), max(end, m.end()), ep))
    return out


def _ipv6(text: str) -> list[tuple[int, int, Endpoint | None]]:
    out: list[tuple[int, int, Endpoint | None]] = []
    if ":" not in text:
        return out
    for m in _IPV6_RE.finditer(text):
        raw = m.group("bracketed") or m.group("bare")
        if m.group("bare") is not None:
            raw = raw.rstrip(".")
        if raw.count(":") < 2 or _DIGIT_RE.search(raw) is None:
            continue
        if "::" not in raw and raw.count(":") != 7:
            continue
        try:
            ip = ipaddress.IPv6Address(raw)
        except ValueError:
            continue
        port = _valid_port(m.group("port"))
        if port is False:
            continue
        end = m.start() + (len(m.group()) if m.group("bracketed") else len(raw))
        ep = Endpoint(
            value=text[m.start() : end],
            kind="ip",
            host=_ipv6_text(ip),
            scheme=None,
            port=port if isinstance(port, int) else None,
            cleartext=False,
            external=_ip_is_external(ip),
        )
        out.append((m.start(), end, ep))
    return out


@functools.lru_cache(maxsize=65536)
def _bare_host(token: str) -> str | None:
    """The canonical host when the dotted ``token`` is a host name, else ``None``."""
    if "$" in token or "_" in token or len(token) > 253:
        return None
    if token != token.lower() and token != token.upper():
        return None  # mixed case: a class, field or constant name
    name = token.lower()
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        return None
    first, last = labels[0], labels[-1]
    if last in FILE_EXTENSIONS or first in REVERSE_DNS_ROOTS:
        return None
    if len(last) != 2 and last not in _BARE_TLDS:
        return None
    if len(labels) >= 5 and last not in _HOST_TLDS:
        return None  # llvm.x86.sse2.comilt.sd-like identifiers
    if sum(len(label) == 1 for label in labels[:-1]) >= 2 or all(
        label.isdigit() for label in labels[:-1]
    ):
        return None  # google.c.a.tc-like keys, 2.9.0.dev-like versions
    if len(labels) == 2 and len(first) == 1 and len(last) != 2:
        return None  # d.name: a one-letter registrable label outside country TLDs
    domain = registrable_domain(name)
    if domain is None:
        return None
    if first in CODE_ROOTS:
        owner = _icann_psl().privatesuffix(name)
        if last not in _HOST_TLDS or not isinstance(owner, str) or owner.split(".")[0] == first:
            return None
    return name


def _bare(text: str) -> list[tuple[int, int, Endpoint | None]]:
    """Bare host names and IPv4 addresses (with an optional ``:port``)."""
    out: list[tuple[int, int, Endpoint | None]] = []
    for m in _TOKEN_RE.finditer(text):
        token, start = m.group(), m.start()
        lead = len(token) - len(token.lstrip(".-"))
        token, start = token[lead:].rstrip(".-"), start + lead
        if "." not in token:
            continue
        before = text[start - 1] if start else ""
        if before in ("@", "\\") or (before == "/" and text[max(0, start - 2) : start] != "//"):
            continue
        end = start + len(token)
        port: int | None = None
        pm = _PORT_RE.match(text, end)
        if pm is not None:
            value = _valid_port(pm.group(1))
            if value is False:
                continue
            port = value if isinstance(value, int) else None
            end = pm.end()
        if text[end : end + 1] == "(":
            continue  # a call: name.method(
        if token.replace(".", "").isdigit():
            if (
                not _IPV4_RE.fullmatch(token)
                or token.startswith(_OID_ARCS)
                or (token.endswith(".0") and token != "0.0.0.0")  # noqa: S104, S105 - a literal, not a bind
            ):
                continue  # version numbers (1.0.0.0), OIDs, network addresses
            try:
                ip4 = ipaddress.IPv4Address(token)
            except ValueError:
                continue
            ep = Endpoint(text[start:end], "ip", str(ip4), None, port, False, _ip_is_external(ip4))
            out.append((start, end, ep))
            continue
        host = _bare_host(token)
        if host is None or host in NAMESPACE_HOSTS:
            continue
        ep = Endpoint(text[start:end], "host", host, None, port, False, host_is_external(host))
        out.append((start, end, ep))
    return out


def _mask(text: str, spans: Sequence[tuple[int, int, Endpoint | None]]) -> str:
    """``text`` with the given spans blanked, so later passes do not see their parts again."""
    if not spans:
        return text
    chars = list(text)
    for start, end, _ in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def extract(text: str, *, include_namespaces: bool = False) -> list[Endpoint]:
    """Every endpoint in ``text``, in order of appearance, each value once.

    URLs are found first; host names and addresses inside a URL are not reported again. XML
    namespace URLs are left out unless ``include_namespaces`` (then with kind ``namespace``).
    """
    if not is_candidate(text):
        return []
    found = _urls(text, include_namespaces)
    rest = _mask(text, found)
    v6 = _ipv6(rest)
    found += v6
    found += _bare(_mask(rest, v6))
    seen: set[tuple[str, str]] = set()
    out: list[Endpoint] = []
    for _, _, ep in sorted(found, key=lambda item: (item[0], item[1])):
        if ep is None or (ep.kind, ep.value) in seen:
            continue
        seen.add((ep.kind, ep.value))
        out.append(ep)
    return out


class EndpointMatcher:
    """Maps a host to the endpoint rule of its longest matching domain suffix.

    One dict lookup per label of the host: ``a.b.vnet.cn`` tries ``a.b.vnet.cn``,
    ``b.vnet.cn``, ``vnet.cn`` and ``cn``, so ``vnet.cn`` matches ``zzhc.vnet.cn`` and
    ``vnet.cn`` but never ``evilvnet.cn`` or ``vnet.cn.evil.com``.
    """

    def __init__(self, rules: Sequence[EndpointRule]) -> None:
        self._by_suffix: dict[str, EndpointRule] = {}
        for rule in rules:
            for domain in rule.domains:
                key = domain.lower().rstrip(".")
                other = self._by_suffix.get(key)
                if other is not None and other.id != rule.id:
                    raise ValueError(f"domain {key!r} is claimed by {other.id} and {rule.id}")
                self._by_suffix[key] = rule

    def match(self, host: str) -> EndpointRule | None:
        """The rule of the longest listed suffix of ``host`` (whole labels), or ``None``."""
        name = host.lower().rstrip(".")
        while name:
            rule = self._by_suffix.get(name)
            if rule is not None:
                return rule
            dot = name.find(".")
            if dot < 0:
                return None
            name = name[dot + 1 :]
        return None

"""Configuration files of a firmware image that grant privileges or start programs.

* ``etc/permissions/privapp-permissions-*.xml``: the privileged permissions each priv-app is
  granted (``<permission>``) or explicitly denied (``<deny-permission>``);
* ``etc/default-permissions/*.xml``: runtime permissions granted by default, without asking;
* ``init*.rc``: the services ``init`` starts, with their user, groups and classes.

XML from a firmware image is hostile input. The standard library's ElementTree expands
internal entities (the "billion laughs" bomb), so these files are read with the expat parser
of :mod:`xml.parsers.expat` directly, with handlers that refuse any document type declaration
(and so every entity declaration, internal or external) before it is processed; none of the
Android configuration files has one, and Android's own parser does not process DTDs either.
This needs no third-party package (defusedxml is not used) and gives each element's line
number. Input size, element count and nesting depth are bounded.

Every parser returns what it could read and a list of error strings (``file:line: message``);
none raises on bad input.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from xml.parsers import expat

__all__ = [
    "MAX_INIT_RC_BYTES",
    "MAX_INIT_RC_LINES",
    "MAX_XML_BYTES",
    "MAX_XML_DEPTH",
    "MAX_XML_ELEMENTS",
    "DefaultGrant",
    "InitService",
    "PrivappGrant",
    "parse_default_permissions",
    "parse_init_rc",
    "parse_privapp_permissions",
]

MAX_XML_BYTES = 4 * 1024 * 1024
"""Largest XML configuration file read (real ones are a few KiB)."""
MAX_XML_ELEMENTS = 200_000
"""Most elements read from one XML file."""
MAX_XML_DEPTH = 64
"""Deepest element nesting read from one XML file."""
MAX_INIT_RC_BYTES = 1024 * 1024
"""Largest init script read (AOSP's ``init.rc`` is about 50 KiB)."""
MAX_INIT_RC_LINES = 50_000
"""Most lines read from one init script."""


@dataclass(frozen=True)
class PrivappGrant:
    """One ``<permission>`` or ``<deny-permission>`` of a ``<privapp-permissions>`` element."""

    package: str
    permission: str
    denied: bool
    """True for ``<deny-permission>``: the permission is explicitly not granted."""
    file: str
    line: int | None
    """Line of the ``<permission>`` element in ``file``."""


@dataclass(frozen=True)
class DefaultGrant:
    """One ``<permission>`` of an ``<exception package=...>`` in ``default-permissions``."""

    package: str
    permission: str
    fixed: bool
    """``fixed="true"``: the user cannot revoke the grant."""
    file: str


@dataclass(frozen=True)
class InitService:
    """One ``service`` section of an init script."""

    name: str
    path: str
    """The program started."""
    args: tuple[str, ...]
    """Its arguments (after the path)."""
    user: str | None
    """The ``user`` option; ``None`` when absent (init then runs the service as root)."""
    group: tuple[str, ...]
    """The ``group`` option: primary group first, then supplementary groups."""
    classes: tuple[str, ...]
    """The ``class`` option; ``("default",)`` when absent, as init does."""
    disabled: bool
    oneshot: bool
    file: str
    line: int
    """Line of the ``service`` keyword."""


# --- XML -------------------------------------------------------------------------------------


class _RefusedError(Exception):
    """A construct the reader refuses (a DTD, an entity); the message says which."""


@dataclass
class _Element:
    tag: str
    attrs: dict[str, str]
    line: int
    children: list[_Element] = field(default_factory=list)


class _TreeBuilder:
    """Builds a small element tree from expat events, refusing DTDs and entities."""

    def __init__(self) -> None:
        self.root: _Element | None = None
        self.stack: list[_Element] = []
        self.count = 0
        self.parser = expat.ParserCreate()
        self.parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.StartDoctypeDeclHandler = self._doctype
        self.parser.EntityDeclHandler = self._entity
        self.parser.UnparsedEntityDeclHandler = self._unparsed_entity
        self.parser.ExternalEntityRefHandler = self._external_entity

    def _start(self, tag: str, attrs: dict[str, str]) -> None:
        self.count += 1
        if self.count > MAX_XML_ELEMENTS:
            raise _RefusedError(f"more than {MAX_XML_ELEMENTS} elements")
        if len(self.stack) >= MAX_XML_DEPTH:
            raise _RefusedError(f"elements nested deeper than {MAX_XML_DEPTH}")
        element = _Element(tag, dict(attrs), self.parser.CurrentLineNumber)
        if self.stack:
            self.stack[-1].children.append(element)
        elif self.root is None:
            self.root = element
        self.stack.append(element)

    def _end(self, tag: str) -> None:
        if self.stack:
            self.stack.pop()

    def _doctype(self, name: str, *_: object) -> None:
        raise _RefusedError(f"document type declaration <!DOCTYPE {name}> refused")

    def _entity(self, name: str, *_: object) -> None:
        raise _RefusedError(f"entity declaration {name!r} refused")

    def _unparsed_entity(self, name: str, *_: object) -> None:
        raise _RefusedError(f"unparsed entity declaration {name!r} refused")

    def _external_entity(self, *_: object) -> int:
        raise _RefusedError("external entity reference refused")


def _parse_xml(data: bytes, file: str) -> tuple[_Element | None, list[str]]:
    """The element tree of ``data`` and the errors; on an error, the tree read so far."""
    if len(data) > MAX_XML_BYTES:
        return None, [f"{file}: {len(data)} bytes: larger than {MAX_XML_BYTES}, not read"]
    builder = _TreeBuilder()
    try:
        builder.parser.Parse(data, True)
    except _RefusedError as exc:
        return builder.root, [f"{file}:{builder.parser.CurrentLineNumber}: {exc}"]
    except expat.ExpatError as exc:
        message = expat.ErrorString(exc.code) if exc.code is not None else str(exc)
        return builder.root, [f"{file}:{exc.lineno}: malformed XML: {message}"]
    except (ValueError, LookupError) as exc:  # e.g. an unknown encoding declaration
        return builder.root, [f"{file}: unreadable XML: {exc}"]
    return builder.root, []


def parse_privapp_permissions(data: bytes, file: str) -> tuple[list[PrivappGrant], list[str]]:
    """The grants of a privapp-permissions file, in document order, and the errors.

    Reads ``<permissions>`` (or ``<config>``, which Android's SystemConfig accepts too) ›
    ``<privapp-permissions package=...>`` › ``<permission name=...>`` and
    ``<deny-permission name=...>``; other elements (features, libraries...) are skipped. An
    element without its required attribute is reported and skipped, as Android does.
    """
    root, errors = _parse_xml(data, file)
    grants: list[PrivappGrant] = []
    if root is None:
        return grants, errors or [f"{file}: no root element"]
    if root.tag not in ("permissions", "config"):
        errors.append(f"{file}:{root.line}: root <{root.tag}>, expected <permissions> or <config>")
        return grants, errors
    items = _package_items(
        root, "privapp-permissions", ("permission", "deny-permission"), file, errors
    )
    for package, name, item in items:
        denied = item.tag == "deny-permission"
        grants.append(PrivappGrant(package, name, denied=denied, file=file, line=item.line))
    return grants, errors


def _package_items(
    root: _Element, block_tag: str, item_tags: tuple[str, ...], file: str, errors: list[str]
) -> Iterator[tuple[str, str, _Element]]:
    """``(package, name, element)`` of each ``<block_tag package=...>`` › ``<item name=...>``
    (items of ``item_tags``); a block without its package or an item without its name is
    reported in ``errors`` and skipped, as Android does."""
    for block in root.children:
        if block.tag != block_tag:
            continue
        package = block.attrs.get("package")
        if not package:
            errors.append(f"{file}:{block.line}: <{block_tag}> without package")
            continue
        for item in block.children:
            if item.tag not in item_tags:
                continue
            name = item.attrs.get("name")
            if not name:
                errors.append(f"{file}:{item.line}: <{item.tag}> without name")
                continue
            yield package, name, item


def _boolean(value: str | None, default: bool) -> bool | None:
    """An XML boolean attribute as Android reads it; ``None`` when it is not one."""
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    return None


def parse_default_permissions(data: bytes, file: str) -> tuple[list[DefaultGrant], list[str]]:
    """The grants of a default-permissions file, in document order, and the errors.

    Reads ``<exceptions>`` › ``<exception package=...>`` › ``<permission name=...
    fixed=...>`` (``fixed`` defaults to false). Elements without their required attribute,
    and unknown ``fixed`` values (taken as false), are reported.
    """
    root, errors = _parse_xml(data, file)
    grants: list[DefaultGrant] = []
    if root is None:
        return grants, errors or [f"{file}: no root element"]
    if root.tag != "exceptions":
        errors.append(f"{file}:{root.line}: root <{root.tag}>, expected <exceptions>")
        return grants, errors
    for package, name, item in _package_items(root, "exception", ("permission",), file, errors):
        fixed = _boolean(item.attrs.get("fixed"), default=False)
        if fixed is None:
            errors.append(
                f"{file}:{item.line}: fixed={item.attrs['fixed']!r} is not a boolean: "
                "taken as false"
            )
            fixed = False
        grants.append(DefaultGrant(package=package, permission=name, fixed=fixed, file=file))
    return grants, errors


# --- init scripts ----------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}
_SECTION_KEYWORDS = ("service", "on", "import")
_SERVICE_NAME = re.compile(r"[A-Za-z0-9_.@:+-]+")


def _tokenize(text: str) -> tuple[list[tuple[int, list[str]]], int | None]:
    """The logical lines of an init script as ``(first line number, tokens)``, and the line of
    an unterminated quote (where init stops reading the file, dropping that line), if any.

    Follows AOSP ``system/core/init/tokenizer.cpp``: tokens are split on spaces, tabs and
    carriage returns; ``#`` at the start of a token starts a comment to the end of the line;
    ``"..."`` quotes spaces; ``\\n``, ``\\r``, ``\\t`` and ``\\\\`` are escapes, any other
    escaped character stands for itself; a backslash before the end of a line joins the next
    line to the current token, skipping that line's leading blanks.
    """
    lines: list[tuple[int, list[str]]] = []
    tokens: list[str] = []
    line = 1
    start_line = 1
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            if tokens:
                lines.append((start_line, tokens))
            tokens = []
            line += 1
            i += 1
            continue
        if ch in " \t\r":
            i += 1
            continue
        if ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        # A token.
        if not tokens:
            start_line = line
        word: list[str] = []
        while i < n:
            ch = text[i]
            if ch in " \t\r":
                i += 1
                break
            if ch == "\n":
                break
            if ch == '"':
                end = text.find('"', i + 1)
                if end < 0:  # unterminated quote: init stops reading the file
                    return lines, line
                quoted = text[i + 1 : end]
                line += quoted.count("\n")
                word.append(quoted)
                i = end + 1
                continue
            if ch == "\\":
                i += 1
                if i >= n:
                    break
                nxt = text[i]
                if nxt == "\r" and i + 1 < n and text[i + 1] == "\n":
                    i += 1
                    nxt = "\n"
                if nxt == "\n":  # line continuation
                    line += 1
                    i += 1
                    while i < n and text[i] in " \t":
                        i += 1
                    continue
                if nxt == "\r":
                    i += 1
                    continue
                word.append(_ESCAPES.get(nxt, nxt))
                i += 1
                continue
            word.append(ch)
            i += 1
        tokens.append("".join(word))
    if tokens:
        lines.append((start_line, tokens))
    return lines, None


@dataclass
class _ServiceDraft:
    name: str
    path: str
    args: tuple[str, ...]
    line: int
    user: str | None = None
    group: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    disabled: bool = False
    oneshot: bool = False
    override: bool = False

    def build(self, file: str) -> InitService:
        return InitService(
            name=self.name,
            path=self.path,
            args=self.args,
            user=self.user,
            group=self.group,
            classes=self.classes or ("default",),
            disabled=self.disabled,
            oneshot=self.oneshot,
            file=file,
            line=self.line,
        )


def parse_init_rc(data: bytes, file: str) -> tuple[list[InitService], list[str]]:
    """The services of an init script, in file order, and the errors.

    A ``service <name> <path> [<arg>...]`` line opens a service section; the lines after it up
    to the next ``service``, ``on`` or ``import`` are its options: ``user``, ``group``,
    ``class``, ``disabled`` and ``oneshot`` are read, the others (``socket``, ``seclabel``,
    ``capabilities``...) are accepted and ignored. ``on`` sections (actions) and ``import``
    lines are skipped. A second service of the same name is reported and ignored unless it has
    the ``override`` option, which replaces the first (as init does across files). Scripts
    over :data:`MAX_INIT_RC_BYTES` bytes or :data:`MAX_INIT_RC_LINES` lines are cut there, with
    an error. Bytes that are not UTF-8 are read as U+FFFD.
    """
    errors: list[str] = []
    if len(data) > MAX_INIT_RC_BYTES:
        errors.append(f"{file}: {len(data)} bytes: only the first {MAX_INIT_RC_BYTES} read")
        data = data[:MAX_INIT_RC_BYTES]
    text = data.decode("utf-8", "replace")
    if text.count("\n") >= MAX_INIT_RC_LINES:
        errors.append(f"{file}: more than {MAX_INIT_RC_LINES} lines: the rest not read")
        text = "\n".join(text.split("\n", MAX_INIT_RC_LINES)[:MAX_INIT_RC_LINES])

    services: dict[str, _ServiceDraft] = {}
    current: _ServiceDraft | None = None

    def close() -> None:
        if current is None:
            return
        first = services.get(current.name)
        if first is None or current.override:
            services[current.name] = current
        else:
            errors.append(
                f"{file}:{current.line}: service {current.name!r} defined again (first at line "
                f"{first.line}): ignored"
            )

    logical_lines, unterminated = _tokenize(text)
    if unterminated is not None:
        errors.append(f"{file}:{unterminated}: unterminated quote: the rest of the file ignored")
    for line, tokens in logical_lines:
        keyword = tokens[0]
        if keyword in _SECTION_KEYWORDS:
            close()
            current = None
            if keyword != "service":
                continue
            if len(tokens) < 3:
                errors.append(f"{file}:{line}: service needs a name and a path")
                continue
            name, path = tokens[1], tokens[2]
            if not _SERVICE_NAME.fullmatch(name):
                errors.append(f"{file}:{line}: invalid service name {name!r}")
                continue
            current = _ServiceDraft(name=name, path=path, args=tuple(tokens[3:]), line=line)
            continue
        if current is None:
            continue  # a command of an `on` section, or a line outside any section
        args = tokens[1:]
        if keyword == "user":
            if len(args) != 1:
                errors.append(f"{file}:{line}: user takes one argument")
            if args:
                current.user = args[0]
        elif keyword == "group":
            if not args:
                errors.append(f"{file}:{line}: group needs at least one group")
            current.group = tuple(args)
        elif keyword == "class":
            if not args:
                errors.append(f"{file}:{line}: class needs at least one name")
            current.classes = tuple(args)
        elif keyword == "disabled":
            current.disabled = True
        elif keyword == "oneshot":
            current.oneshot = True
        elif keyword == "override":
            current.override = True
    close()
    return sorted((s.build(file) for s in services.values()), key=lambda s: s.line), errors

"""Which app code reads device identifiers, and whether the values reach a network or SMS sink.

:func:`analyze_dex_files` takes every DEX file of one app (multidex files are analysed
together) and the signature rules, and reports with evidence (DEX file, class, method,
descriptor, code-unit offset as ``dexdump`` prints it):

* **reads**: each ``invoke-*`` of a source method (a rule with ``descriptor=None`` matches every
  overload), each ``sget*`` of a source field; a rule with ``string_arg`` matches only when an
  argument register holds that constant, loaded by a ``const-string`` earlier in the same
  method (a linear scan in instruction order, ignoring branches);
* **sinks**: each ``invoke-*`` of a sink method;
* **strings**: each ``const-string`` whose value passes ``string_filter``;
* **flows**: an identifier read reaching a sink, found by the taint analysis below.

Rules match a member by the class named in the instruction (the static type the compiler
wrote), exactly: a call through a subclass of the rule's class is not matched.

Speed comes from never decoding what does not matter. Triage reads only the id tables: the
method ids and field ids that match a rule (binary search in the sorted tables) and the
string ids that pass the filter. A file with none of them is done. Otherwise two compiled
regular expressions over the code area (each starting with one opcode class, so ``re`` skips
ahead quickly) find the byte patterns of ``invoke`` (opcodes 0x6e-0x72, 0x74-0x78) with a
wanted method id or ``sget*`` with a wanted field id, and of ``const-string``/
``const-string/jumbo`` with a wanted string id; each hit is mapped to its code item by binary
search over the code offsets taken from the class data, and kept only if an instruction
starts there (the method's instruction lengths are walked). Only methods in which a flow can
start or continue are decoded fully.

The flow rule, exactly:

* **_Labels.** A register (or field, or array register) carries a set of labels: *identifier*
  labels (a read, with the chain of methods it went through), *literal* labels (a constant
  string) and *provenance* labels (the object came out of a sink call; carries the sink and
  its target).
* **Intra-procedural.** A forward dataflow over the method's basic blocks (branches, switch
  payloads, back edges; a handler receives the union of the state at entry and exit of every
  block its try covers), iterated to a fixpoint:

  - ``move*`` copies labels; ``move-result*`` takes the labels of the preceding call;
    ``const-string`` sets a literal label; other constants, ``new-instance``, ``new-array``,
    ``instance-of``, ``array-length``, ``cmp*``, ``move-exception`` clear the register;
  - arithmetic, conversions and ``*/lit`` operations keep identifier labels of their
    operands; ``aput`` adds the value's labels to the array register, ``aget`` copies the array
    register's labels; ``filled-new-array`` gives its result the identifier and literal
    labels of its registers;
  - ``iput*``/``sput*`` add the value's labels to the field, app-wide and flow-insensitively
    (a read sees every label ever stored); a field is its declaring class (the named class or
    its nearest app superclass declaring it), name and type. ``sget*`` reads the field's
    labels, ``iget*`` the field's labels plus the identifier labels of the object register;
  - quickened ``iget-*-quick`` keep the identifier labels of the object register; the result
    of ``invoke-virtual-quick``, ``invoke-polymorphic`` and ``invoke-custom`` (string
    concatenation, lambdas) carries the identifier and literal labels of their registers
    and the provenance labels of the first;
  - a **source** call (a confirmed read) gives its result a new identifier label, plus the
    identifier labels of its receiver and arguments;
  - a **sink** call whose receiver or arguments carry identifier labels is a flow into that
    sink; its result (for a constructor, the new object) carries only a provenance label for
    that sink;
  - any **other** call whose receiver carries provenance labels and whose arguments carry
    identifier labels is a flow into each of those sinks (``stream.write(imei)`` after
    ``stream = connection.getOutputStream()``). Its result carries the identifier labels
    of the receiver and arguments, the provenance labels of the receiver, and the literal
    labels of the receiver (of the arguments for a static call); a constructor (``<init>``)
    adds all labels of its arguments to the new object; a builder-like call
    (``StringBuilder``/``StringBuffer.append``/``insert``, ``JSONObject``/``JSONArray.put``,
    ``Map.put``, ``List``/``Set``/``Collection.add``, ``Intent.putExtra``/``setAction``/
    ``setData``, ``ContentValues.put``, ``Bundle.put*``) adds the identifier labels of its
    arguments and the literal labels of its last argument (the value; a key is not one) to
    its receiver, and returns them.
* **Target** of a flow: the constant string that reaches the sink call with the data: the
  literal labels of the receiver, else the targets of its provenance labels, else those of the
  first argument carrying any (so the URL of ``new URL(url).openConnection()``, the number of
  ``sendTextMessage``, the tag of ``Log.d``, the path of ``new FileOutputStream(path)``); of
  several, the first that passes ``string_filter``, then the smallest.
* **Inter-procedural** (bounded by ``max_chain`` methods per chain; no class hierarchy
  analysis: a call resolves to the method of the named class, or the nearest app superclass
  that declares it, across all the app's DEX files):

  - a call to an app method with identifier or provenance labels in its arguments analyses
    the callee with those labels on its parameter registers (memoised per context; such
    analyses nest at most ``max_chain`` methods deep) and gives the call, instead of the
    default result above, the labels of the callee's return values;
  - a call to an app method without such labels uses the callee's summary (the labels its
    return values carry when it is analysed on its own), known for methods that read an
    identifier, directly or through the methods below;
  - the analysis starts from every method that reads an identifier; a method whose return
    value carries identifier labels puts its callers on the worklist, a field that receives
    identifier or provenance labels puts the methods reading it on the worklist (callers and
    readers are found with the same byte-pattern search, in batches);
  - the chain of a flow has one location per method: the read, then where the value moved
    into each further method (the call site it was returned to, the field read, or offset 0
    for a parameter), except that in the sink's method it is the call where the data meets
    the sink; a flow inside one method has just the read. A value returning to a method
    already on its chain cuts the chain back to that method. An identifier label whose chain
    would exceed ``max_chain`` methods (default 5) is dropped. Real vendor apps need more than
    3: HMD's ``com.evenwell.autoregistration`` reads the ICCID in one method, stores it in a
    field, builds the message in a second, hands it to a third, which splits it for
    ``SmsManager.sendMultipartTextMessage`` in a fourth; on 52 real HMD/FIH system APKs and the
    large corpus APKs, 5 instead of 3 found 14 more flows for 10-20% more time, and the same
    DroidBench scores.
  - budgets: at most :data:`MAX_METHOD_RUNS` method analyses per app and
    :data:`MAX_BLOCK_VISITS` visits per basic block; running out is reported in ``errors``
    (method runs) or cuts that method's fixpoint short (block visits).

  Not modelled: side effects of a callee on its caller's objects, aliasing (a label sits on
  a register, a field or an array register, not on the object), exceptions carrying values,
  reflection, and implicit flows through conditions.

A flow's ``sink`` is the sink call whose provenance the data met (for ``stream.write(imei)``,
the ``getOutputStream`` that made the stream). Only ``network`` and ``sms`` sinks make the
headline; ``log``, ``file`` and ``ipc`` flows are reported with their kind (the sink rule's
category). A value only shown on screen (``TextView.setText``) is not a flow: ``TextView`` is
not a sink.

``unresolved_calls`` counts instructions, in the methods walked or decoded, whose callee or
member cannot be named statically: quickened ART instructions (``0xe3``-``0xf2``: member
offsets instead of ids), ``invoke-polymorphic`` and ``invoke-custom``.
"""

from __future__ import annotations

import heapq
import re
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from fwscan.analyze.dex import (
    INVOKES,
    NO_INDEX,
    PACKED_SWITCH_PAYLOAD,
    QUICKENED,
    SPARSE_SWITCH_PAYLOAD,
    ClassDef,
    CodeItem,
    DexFile,
    DexFormatError,
    TryBlock,
    decode,
    instruction_starts,
    load_dex,
)
from fwscan.rules import ApiRule, SignatureSet


@dataclass(frozen=True, order=True)
class CodeLocation:
    """A point in app code, as ``dexdump -d`` shows it."""

    dex: str
    """Inner name of the DEX file, e.g. ``classes2.dex``."""
    class_name: str
    """Class descriptor, e.g. ``Lcom/x/Y;``."""
    method: str
    descriptor: str
    """Method descriptor, e.g. ``(Landroid/content/Context;)V``."""
    offset: int
    """Offset of the instruction in 16-bit code units from the method's first instruction."""


@dataclass(frozen=True)
class ApiUse:
    """A call of a source or sink API (or a read of a source field) at one location."""

    rule: ApiRule
    location: CodeLocation
    library: bool
    """The class lies under one of the rules' library prefixes."""


@dataclass(frozen=True)
class StringUse:
    """A ``const-string`` of a string that passed the caller's filter."""

    value: str
    location: CodeLocation
    library: bool


@dataclass(frozen=True)
class Flow:
    """Identifiers read by the app reaching one sink call."""

    categories: tuple[str, ...]
    """Identifier categories that reach the sink, sorted, unique."""
    sources: tuple[ApiUse, ...]
    """The reads whose values reach the sink, sorted."""
    sink: ApiUse
    """The sink call (for a write on a stream, the call that produced the stream)."""
    target: str | None
    """The constant (URL, host, number, tag, path) that reaches the sink call with the data."""
    chain: tuple[CodeLocation, ...]
    """One location per method from the read to the sink call (see the module docstring)."""
    library: bool
    """Every read, the sink and every chain location lie in library code."""


@dataclass(frozen=True)
class DexReport:
    """What :func:`analyze_dex_files` found in one app's DEX files."""

    reads: tuple[ApiUse, ...]
    sinks: tuple[ApiUse, ...]
    strings: tuple[StringUse, ...]
    flows: tuple[Flow, ...]
    classes: int
    """Class definitions in all the files."""
    methods_decoded: int
    """Methods whose instructions were walked or decoded."""
    unresolved_calls: int
    """Instructions whose callee or member cannot be named (see the module docstring)."""
    errors: tuple[str, ...]
    """Problems met (malformed files or methods, analysis budget); the rest was analysed."""


MAX_ERRORS = 50
"""Error messages kept in a report; more are summarised in one line."""
MAX_METHOD_RUNS = 20_000
"""Method analyses (with or without a calling context) the flow analysis may run per app."""
MAX_BLOCK_VISITS = 64
"""Visits per basic block in one method analysis before the fixpoint is given up."""

_IDENT, _LITERAL, _PROVENANCE = 0, 1, 2
_Atom = tuple[int, Any, Any]
"""A label: ``(_IDENT, read, chain)``, ``(_LITERAL, text, None)`` or
``(_PROVENANCE, sink, target)``; ``read`` and ``sink`` index the use lists, a chain is a tuple
of ``(method, pc)``."""
_Labels = frozenset[_Atom]
_EMPTY: _Labels = frozenset()
_FieldKey = tuple[str, str, str]

_SGETS = range(0x60, 0x67)
_FIELD_READS = (*range(0x52, 0x59), *_SGETS)
_CONST_STRINGS = (0x1A, 0x1B)
_MAX_GROUPS = 16
_STATIC_INVOKES = (0x71, 0x77)
_UNRESOLVED = QUICKENED | frozenset(range(0xFA, 0xFE))

_BUILDERS: dict[str, tuple[str, ...]] = {
    "Ljava/lang/StringBuilder;": ("append", "insert"),
    "Ljava/lang/StringBuffer;": ("append", "insert"),
    "Lorg/json/JSONObject;": ("put", "accumulate"),
    "Lorg/json/JSONArray;": ("put",),
    "Landroid/content/Intent;": ("putExtra", "setAction", "setData"),
    "Landroid/content/ContentValues;": ("put",),
    "Landroid/os/Bundle;": ("put",),
    **dict.fromkeys(
        (
            "Ljava/util/Map;",
            "Ljava/util/HashMap;",
            "Ljava/util/LinkedHashMap;",
            "Ljava/util/TreeMap;",
            "Ljava/util/Hashtable;",
            "Ljava/util/concurrent/ConcurrentHashMap;",
        ),
        ("put",),
    ),
    **dict.fromkeys(
        (
            "Ljava/util/List;",
            "Ljava/util/ArrayList;",
            "Ljava/util/LinkedList;",
            "Ljava/util/Vector;",
            "Ljava/util/Collection;",
            "Ljava/util/Set;",
            "Ljava/util/HashSet;",
        ),
        ("add",),
    ),
}
"""Classes whose calls of these name prefixes store their arguments in the receiver."""


# transfer-function kinds of opcodes (see _Flows._step)
_K_NONE, _K_MOVE, _K_RESULT, _K_CLEAR, _K_RETURN, _K_STRING = range(6)
_K_FILLED, _K_AGET, _K_APUT, _K_IGET, _K_PUT, _K_SGET = range(6, 12)
_K_INVOKE, _K_UNOP, _K_BINOP, _K_BINOP2, _K_OPAQUE = range(12, 17)


def _opcode_kinds() -> bytes:
    """The transfer-function kind of every opcode (see ``_Flows._step``)."""
    table = bytearray(256)  # _K_NONE
    for first, last, kind in (
        (0x01, 0x09, _K_MOVE),
        (0x0A, 0x0C, _K_RESULT),
        (0x0D, 0x0D, _K_CLEAR),
        (0x0F, 0x11, _K_RETURN),
        (0x12, 0x19, _K_CLEAR),
        (0x1A, 0x1B, _K_STRING),
        (0x1C, 0x1C, _K_CLEAR),
        (0x20, 0x23, _K_CLEAR),
        (0x24, 0x25, _K_FILLED),
        (0x2D, 0x31, _K_CLEAR),
        (0x44, 0x4A, _K_AGET),
        (0x4B, 0x51, _K_APUT),
        (0x52, 0x58, _K_IGET),
        (0x59, 0x5F, _K_PUT),
        (0x60, 0x66, _K_SGET),
        (0x67, 0x6D, _K_PUT),
        (0x6E, 0x72, _K_INVOKE),
        (0x74, 0x78, _K_INVOKE),
        (0x7B, 0x8F, _K_UNOP),
        (0x90, 0xAF, _K_BINOP),
        (0xB0, 0xCF, _K_BINOP2),
        (0xD0, 0xE2, _K_UNOP),
        (0xE3, 0xE5, _K_UNOP),
        (0xE9, 0xEA, _K_OPAQUE),
        (0xEF, 0xF2, _K_UNOP),
        (0xFA, 0xFD, _K_OPAQUE),
        (0xFE, 0xFF, _K_CLEAR),
    ):
        table[first : last + 1] = bytes((kind,)) * (last - first + 1)
    return bytes(table)


_KINDS = _opcode_kinds()
# instructions writing a register pair: move-wide*, move-result-wide, const-wide*, aget-wide,
# iget-wide, sget-wide, iget-wide-quick, and the long/double arithmetic
_WIDE_DEST = frozenset(
    (
        *(0x04, 0x05, 0x06, 0x0B, 0x16, 0x17, 0x18, 0x19, 0x45, 0x53, 0x61, 0xE4),
        *(0x7D, 0x7E, 0x80, 0x81, 0x83, 0x86, 0x88, 0x89, 0x8B),
        *range(0x9B, 0xA6),
        *range(0xAB, 0xB0),
        *range(0xBB, 0xC6),
        *range(0xCB, 0xD0),
    )
)
_WRITES_A = frozenset(
    (_K_MOVE, _K_RESULT, _K_CLEAR, _K_UNOP, _K_BINOP, _K_BINOP2, _K_AGET, _K_IGET, _K_SGET)
)
_ENDS_BLOCK = frozenset((0x0E, 0x0F, 0x10, 0x11, 0x27, 0x28, 0x29, 0x2A))


class _Method(NamedTuple):
    """A method with code in one of the app's DEX files."""

    dex: int
    method_idx: int
    code_off: int
    class_name: str
    name: str
    descriptor: str
    library: bool


class _Callee(NamedTuple):
    """What the flow analysis needs to know about an invoked method id."""

    init: bool
    builder: bool
    target: int | None
    """The app method it resolves to."""


class _Body(NamedTuple):
    """A decoded method: instructions and basic blocks."""

    registers: int
    ins: int
    insns: list[tuple[int, int, tuple[Any, ...]]]
    blocks: list[tuple[int, int]]
    """Each block as a range of positions in ``insns``."""
    successors: list[tuple[int, ...]]
    handlers: list[tuple[int, ...]]
    """Blocks that catch exceptions thrown in each block."""


def _union(sets: Iterable[_Labels]) -> _Labels:
    out: set[_Atom] = set()
    for labels in sets:
        out.update(labels)
    return frozenset(out)


def _only(labels: _Labels, kind: int) -> _Labels:
    return frozenset(a for a in labels if a[0] == kind)


def _index_alternatives(indexes: Iterable[int], width: int) -> list[bytes]:
    """Regex alternatives for little-endian indexes of ``width`` bytes (a superset of them).

    Indexes are grouped by their high part: each group is a class of low bytes followed by the
    literal high bytes. With many groups, one class per byte position is used instead, which
    matches more than asked; callers check the index of every match.
    """
    groups: dict[int, set[int]] = {}
    for index in indexes:
        if index < 1 << 8 * width:
            groups.setdefault(index >> 8, set()).add(index & 0xFF)
    if not groups:
        return []
    if len(groups) <= _MAX_GROUPS:
        return [
            _byte_class(lows) + b"".join(b"\\x%02x" % b for b in high.to_bytes(width - 1, "little"))
            for high, lows in sorted(groups.items())
        ]
    highs = [high.to_bytes(width - 1, "little") for high in groups]
    lows = set().union(*groups.values())
    return [
        _byte_class(lows) + b"".join(_byte_class({h[k] for h in highs}) for k in range(width - 1))
    ]


def _byte_class(values: Iterable[int]) -> bytes:
    return b"[" + b"".join(b"\\x%02x" % v for v in sorted(values)) + b"]"


def _pattern(
    opcodes: Iterable[int], indexes: Iterable[int], jumbo: Iterable[int] = ()
) -> re.Pattern[bytes] | None:
    """A regex finding an opcode byte, any byte, then a wanted 16-bit index (or, for
    ``jumbo``, a 32-bit index). One opcode class first keeps ``re``'s fast prefix scan."""
    alternatives = _index_alternatives(indexes, 2) + _index_alternatives(jumbo, 4)
    if not alternatives:
        return None
    lookahead = rb"(?=[\x00-\xff](?:" + b"|".join(alternatives) + b"))"
    return re.compile(_byte_class(opcodes) + lookahead, re.DOTALL)


class _App:
    """The app's DEX files, their code items and methods, and the cross-file lookups."""

    def __init__(
        self, dexes: Sequence[DexFile], library_prefixes: Sequence[str], errors: list[str]
    ) -> None:
        self.dexes = list(dexes)
        self.errors = errors
        self._prefixes = tuple(library_prefixes)
        self.methods: list[_Method] = []
        self._method_ids: dict[tuple[int, int], int] = {}
        self._code_offs: dict[int, list[int]] = {}
        self._owners: dict[int, list[tuple[int, int, int]]] = {}
        self._bodies: dict[int, _Body] = {}
        self._units: dict[tuple[int, int], tuple[array[int], frozenset[int]]] = {}
        self._classes: dict[str, tuple[int, ClassDef]] | None = None
        self._callees: dict[tuple[int, int], _Callee] = {}
        self._fields: dict[tuple[int, int], _FieldKey] = {}
        self._library: dict[str, bool] = {}
        self._named: dict[tuple[int, str, bool], list[int]] = {}
        self.unresolved = 0

    @property
    def walked(self) -> int:
        """Code items whose instructions were walked or decoded."""
        return len(self._units)

    def is_library(self, class_name: str) -> bool:
        """Whether a class descriptor lies under a library prefix."""
        known = self._library.get(class_name)
        if known is None:
            dotted = class_name[1:-1].replace("/", ".")
            known = dotted.startswith(self._prefixes) if self._prefixes else False
            self._library[class_name] = known
        return known

    # code items and methods

    def _code_index(self, dex_i: int) -> list[int]:
        """Sorted offsets of the code items of a file (class data parsed once)."""
        offs = self._code_offs.get(dex_i)
        if offs is None:
            owners = self.dexes[dex_i].code_owners()
            offs = [owner[0] for owner in owners]
            self._code_offs[dex_i] = offs
            self._owners[dex_i] = owners
        return offs

    def method_id(self, dex_i: int, class_position: int, method_idx: int, code_off: int) -> int:
        """The id of a method with code (registered on first sight)."""
        key = (dex_i, method_idx)
        mid = self._method_ids.get(key)
        if mid is None:
            dex = self.dexes[dex_i]
            class_name = dex.type_descriptor(dex.class_defs()[class_position].class_idx)
            _, name, descriptor = dex.method(method_idx)
            mid = len(self.methods)
            self.methods.append(
                _Method(
                    dex_i,
                    method_idx,
                    code_off,
                    class_name,
                    name,
                    descriptor,
                    self.is_library(class_name),
                )
            )
            self._method_ids[key] = mid
        return mid

    def location(self, mid: int, pc: int) -> CodeLocation:
        """The evidence location of an instruction."""
        method = self.methods[mid]
        return CodeLocation(
            self.dexes[method.dex].name, method.class_name, method.name, method.descriptor, pc
        )

    def _starts(self, dex_i: int, code_off: int) -> tuple[array[int], frozenset[int]]:
        """Code units and instruction starts of a code item (walked once)."""
        known = self._units.get((dex_i, code_off))
        if known is None:
            dex = self.dexes[dex_i]
            units = dex.code_units(dex.code_item(code_off))
            starts = instruction_starts(units)
            self.unresolved += sum(1 for pc in starts if units[pc] & 0xFF in _UNRESOLVED)
            known = (units, frozenset(starts))
            self._units[(dex_i, code_off)] = known
        return known

    def scan(
        self, dex_i: int, pattern: re.Pattern[bytes], wanted: Callable[[int, int], bool]
    ) -> list[tuple[int, int, int, int]]:
        """``(method, pc, opcode, index)`` of every instruction the pattern and ``wanted`` accept.

        Matches at odd offsets, outside code items or inside an instruction are dropped. A
        malformed code item is reported in ``errors`` and skipped.
        """
        offs = self._code_index(dex_i)
        if not offs:
            return []
        dex = self.dexes[dex_i]
        data = dex.data
        last = dex.code_item(offs[-1])
        hits: dict[int, list[tuple[int, int, int]]] = {}
        items: dict[int, CodeItem | None] = {}
        for match in pattern.finditer(data, offs[0], last.insns_off + 2 * last.insns_size):
            pos = match.start()
            if pos & 1:
                continue
            op = data[pos]
            if op == 0x1B:
                index = int.from_bytes(data[pos + 2 : pos + 6], "little")
            else:
                index = data[pos + 2] | data[pos + 3] << 8
            if not wanted(op, index):
                continue
            code_off = offs[bisect_right(offs, pos) - 1]
            if code_off not in items:
                items[code_off] = self._code_item(dex_i, code_off)
            item = items[code_off]
            if item is None or not item.insns_off <= pos < item.insns_off + 2 * item.insns_size:
                continue
            hits.setdefault(code_off, []).append(((pos - item.insns_off) >> 1, op, index))
        found: list[tuple[int, int, int, int]] = []
        owners = self._owners[dex_i]
        for code_off, candidates in hits.items():
            try:
                _, starts = self._starts(dex_i, code_off)
                mids = [
                    self.method_id(dex_i, class_position, method_idx, code_off)
                    for _, class_position, method_idx in owners[
                        bisect_left(offs, code_off) : bisect_right(offs, code_off)
                    ]
                ]
            except DexFormatError as exc:
                self.errors.append(f"code item at {code_off:#x}: {exc}")
                continue
            for mid in mids:
                found.extend((mid, pc, op, index) for pc, op, index in candidates if pc in starts)
        return found

    def _code_item(self, dex_i: int, code_off: int) -> CodeItem | None:
        try:
            return self.dexes[dex_i].code_item(code_off)
        except DexFormatError as exc:
            self.errors.append(str(exc))
            return None

    def body(self, mid: int) -> _Body:
        """The decoded instructions and basic blocks of a method."""
        body = self._bodies.get(mid)
        if body is None:
            method = self.methods[mid]
            dex = self.dexes[method.dex]
            code = dex.code_item(method.code_off)
            units, _ = self._starts(method.dex, method.code_off)
            body = _build_body(code, list(decode(units)), dex.try_blocks(code))
            self._bodies[mid] = body
        return body

    # resolution across the app's files

    def _class_index(self) -> dict[str, tuple[int, ClassDef]]:
        if self._classes is None:
            classes: dict[str, tuple[int, ClassDef]] = {}
            for dex_i, dex in enumerate(self.dexes):
                try:
                    types = dex.type_descriptors()
                except DexFormatError as exc:
                    self.errors.append(str(exc))
                    continue
                for class_def in dex.class_defs():
                    if class_def.class_idx < len(types):
                        classes.setdefault(types[class_def.class_idx], (dex_i, class_def))
            self._classes = classes
        return self._classes

    def _lineage(self, class_name: str) -> Iterator[tuple[int, ClassDef, str]]:
        """The named class and its superclasses, as long as the app defines them."""
        classes = self._class_index()
        seen: set[str] = set()
        while class_name not in seen and len(seen) < 64:
            seen.add(class_name)
            entry = classes.get(class_name)
            if entry is None:
                return
            dex_i, class_def = entry
            yield dex_i, class_def, class_name
            if class_def.superclass_idx == NO_INDEX:
                return
            class_name = self.dexes[dex_i].type_descriptor(class_def.superclass_idx)

    def resolve(self, class_name: str, name: str, descriptor: str) -> int | None:
        """The app method a call of ``class_name->name descriptor`` runs, if it has code.

        The named class is looked up in every file, then its app superclasses.
        """
        for dex_i, class_def, _ in self._lineage(class_name):
            dex = self.dexes[dex_i]
            for method in dex.class_methods(class_def):
                if dex.method(method.method_idx)[1:] == (name, descriptor):
                    if not method.code_off:
                        return None
                    return self.method_id(
                        dex_i, class_def.position, method.method_idx, method.code_off
                    )
        return None

    def callee(self, dex_i: int, method_idx: int) -> _Callee:
        """Facts about an invoked method id (cached)."""
        key = (dex_i, method_idx)
        known = self._callees.get(key)
        if known is None:
            class_name, name, descriptor = self.dexes[dex_i].method(method_idx)
            prefixes = _BUILDERS.get(class_name, ())
            known = _Callee(
                name == "<init>",
                bool(prefixes) and name.startswith(prefixes),
                self.resolve(class_name, name, descriptor),
            )
            self._callees[key] = known
        return known

    def field_key(self, dex_i: int, field_idx: int) -> _FieldKey:
        """Class, name and type of the field a field id names: the class is the app class that
        declares it (the named class or its nearest app superclass), else the named class."""
        key = (dex_i, field_idx)
        known = self._fields.get(key)
        if known is None:
            class_name, name, type_ = self.dexes[dex_i].field(field_idx)
            known = self._fields[key] = (self._declaring(class_name, name, type_), name, type_)
        return known

    def _declaring(self, class_name: str, name: str, type_: str) -> str:
        for dex_i, class_def, current in self._lineage(class_name):
            dex = self.dexes[dex_i]
            if any(dex.field(f)[1:] == (name, type_) for f in dex.class_fields(class_def)):
                return current
        return class_name

    def _named_ids(self, dex_i: int, name: str, field: bool) -> list[int]:
        key = (dex_i, name, field)
        known = self._named.get(key)
        if known is None:
            known = self._named[key] = self.dexes[dex_i].members_named(name, field=field)
        return known

    def find_users(
        self, methods: set[int], fields: set[_FieldKey]
    ) -> tuple[dict[int, set[int]], dict[_FieldKey, set[int]]]:
        """Methods that call each method, and methods that read each field (one scan per file).

        A file that turns out malformed is reported in ``errors`` and skipped.
        """
        callers: dict[int, set[int]] = {mid: set() for mid in methods}
        readers: dict[_FieldKey, set[int]] = {key: set() for key in fields}
        for dex_i in range(len(self.dexes)):
            try:
                self._find_users_in(dex_i, callers, readers)
            except DexFormatError as exc:
                self.errors.append(str(exc))
        return callers, readers

    def _find_users_in(
        self, dex_i: int, callers: dict[int, set[int]], readers: dict[_FieldKey, set[int]]
    ) -> None:
        dex = self.dexes[dex_i]
        method_targets: dict[int, int] = {}
        for mid in callers:
            method = self.methods[mid]
            for index in self._named_ids(dex_i, method.name, False):
                class_name, _, descriptor = dex.method(index)
                if (
                    descriptor == method.descriptor
                    and self.resolve(class_name, method.name, descriptor) == mid
                ):
                    method_targets[index] = mid
        field_targets: dict[int, _FieldKey] = {}
        for key in readers:
            for index in self._named_ids(dex_i, key[1], True):
                if self.field_key(dex_i, index) == key:
                    field_targets[index] = key
        pattern = _pattern(
            (*INVOKES, *_FIELD_READS) if field_targets else INVOKES,
            {*method_targets, *field_targets},
        )
        if pattern is None:
            return

        def wanted(op: int, index: int) -> bool:
            return index in (method_targets if op in INVOKES else field_targets)

        for user, _, op, index in self.scan(dex_i, pattern, wanted):
            if op in INVOKES:
                callers[method_targets[index]].add(user)
            else:
                readers[field_targets[index]].add(user)


def _build_body(
    code: CodeItem, insns: list[tuple[int, int, tuple[Any, ...]]], tries: Sequence[TryBlock]
) -> _Body:
    """Split a method into basic blocks with normal and exceptional successors."""
    if not insns:
        return _Body(code.registers, code.ins, insns, [], [], [])
    position = {pc: i for i, (pc, _, _) in enumerate(insns)}
    payload_targets = {
        pc: operands[0]
        for pc, op, operands in insns
        if op in (PACKED_SWITCH_PAYLOAD, SPARSE_SWITCH_PAYLOAD)
    }
    jumps: dict[int, tuple[int, ...]] = {}
    leaders = {0}
    for i, (pc, op, operands) in enumerate(insns):
        following = insns[i + 1][0] if i + 1 < len(insns) else None
        targets: tuple[int, ...] = ()
        if 0x28 <= op <= 0x2A:
            targets = (pc + operands[0],)
        elif 0x32 <= op <= 0x3D:
            targets = (pc + operands[-1],)
        elif op in (0x2B, 0x2C):
            targets = tuple(pc + t for t in payload_targets.get(pc + operands[1], ()))
        elif op not in _ENDS_BLOCK and op < 0x100:
            continue
        jumps[i] = tuple(position[t] for t in targets if t in position)
        leaders.update(t for t in targets if t in position)
        if following is not None:
            leaders.add(following)
    handler_addresses = {address for block in tries for address in block.handlers}
    leaders.update(a for a in handler_addresses if a in position)
    starts = sorted(position[pc] for pc in leaders if pc in position)
    blocks = [
        (first, starts[k + 1] if k + 1 < len(starts) else len(insns))
        for k, first in enumerate(starts)
    ]
    block_of = {first: k for k, (first, _) in enumerate(blocks)}
    successors: list[tuple[int, ...]] = []
    handlers: list[tuple[int, ...]] = []
    for first, end in blocks:
        last = end - 1
        op = insns[last][1]
        out = [block_of[t] for t in jumps.get(last, ())]
        falls = op not in _ENDS_BLOCK and op < 0x100
        if falls and end < len(insns):
            out.append(block_of[end])
        successors.append(tuple(sorted(set(out))))
        low, high = insns[first][0], insns[last][0]
        caught = {
            block_of[position[address]]
            for block in tries
            if block.start <= high and low < block.start + block.length
            for address in block.handlers
            if address in position
        }
        handlers.append(tuple(sorted(caught)))
    return _Body(code.registers, code.ins, insns, blocks, successors, handlers)


class _Flows:
    """The taint analysis over the app (see the module docstring for the rule)."""

    def __init__(
        self,
        app: _App,
        source_sites: dict[tuple[int, int], tuple[int, ...]],
        sink_sites: dict[tuple[int, int], tuple[int, ...]],
        rank: Callable[[str], tuple[bool, str]],
        max_chain: int,
        errors: list[str],
    ) -> None:
        self.app = app
        self.source_sites = source_sites
        self.sink_sites = sink_sites
        self.rank = rank
        self.max_chain = max_chain
        self.errors = errors
        self.fields: dict[_FieldKey, _Labels] = {}
        self.returns: dict[int, _Labels] = {}
        self.found: dict[tuple[int, str | None], set[tuple[int, tuple[tuple[int, int], ...]]]] = {}
        self._generation = 0
        self._memo: dict[tuple[int, frozenset[tuple[int, _Labels]]], tuple[int, _Labels]] = {}
        self._active: set[tuple[int, frozenset[tuple[int, _Labels]]]] = set()
        self._runs = 0
        self._queue: deque[int] = deque()
        self._queued: set[int] = set()
        self._callers: dict[int, set[int]] = {}
        self._readers: dict[_FieldKey, set[int]] = {}
        self._want_callers: set[int] = set()
        self._want_readers: set[_FieldKey] = set()
        self._broken: set[int] = set()

    # worklist over methods

    def _enqueue(self, mids: Iterable[int]) -> None:
        for mid in sorted(mids):
            if mid not in self._queued:
                self._queued.add(mid)
                self._queue.append(mid)

    def run(self, roots: Iterable[int]) -> None:
        """Analyse from the methods that read identifiers until nothing changes."""
        self._enqueue(roots)
        while self._queue or self._want_callers or self._want_readers:
            while self._queue:
                if self._runs >= MAX_METHOD_RUNS:
                    self.errors.append(
                        f"flow analysis stopped after {MAX_METHOD_RUNS} method analyses"
                    )
                    return
                mid = self._queue.popleft()
                self._queued.discard(mid)
                labels = self._analyze(mid, {})
                old = self.returns.get(mid, _EMPTY)
                if labels is not None and not labels <= old:
                    self.returns[mid] = old | labels
                    self._generation += 1
                    if _only(labels, _IDENT):
                        self._users_of(mid)
            if self._want_callers or self._want_readers:
                callers, readers = self.app.find_users(self._want_callers, self._want_readers)
                self._want_callers.clear()
                self._want_readers.clear()
                self._callers.update(callers)
                self._readers.update(readers)
                self._enqueue(user for users in callers.values() for user in users)
                self._enqueue(user for users in readers.values() for user in users)

    def _users_of(self, mid: int) -> None:
        if mid in self._callers:
            self._enqueue(self._callers[mid])
        else:
            self._want_callers.add(mid)

    def _field_written(self, key: _FieldKey, labels: _Labels) -> None:
        old = self.fields.get(key, _EMPTY)
        if labels <= old:
            return
        self.fields[key] = old | labels
        self._generation += 1
        if any(a[0] != _LITERAL for a in labels - old):
            if key in self._readers:
                self._enqueue(self._readers[key])
            else:
                self._want_readers.add(key)

    # labels crossing method boundaries

    def _move(
        self, chain: tuple[tuple[int, int], ...], mid: int, pc: int
    ) -> tuple[tuple[int, int], ...] | None:
        """The chain once the value moves into method ``mid`` at ``pc`` (None: too long)."""
        for k, (method, _) in enumerate(chain):
            if method == mid:
                return chain[: k + 1]
        if len(chain) >= self.max_chain:
            return None
        return (*chain, (mid, pc))

    def _arrive(self, labels: _Labels, mid: int, pc: int) -> _Labels:
        """Labels from another method (an argument, a return value, a field) arriving in
        ``mid`` at ``pc``: identifier chains grow by one method, or drop when too long."""
        out = set()
        for atom in labels:
            if atom[0] != _IDENT:
                out.add(atom)
                continue
            chain = self._move(atom[2], mid, pc)
            if chain is not None:
                out.add((_IDENT, atom[1], chain))
        return frozenset(out)

    def _record(self, sink: int, target: str | None, data: _Labels, mid: int, pc: int) -> None:
        found = self.found.setdefault((sink, target), set())
        for atom in data:
            chain = atom[2]
            found.add((atom[1], (*chain[:-1], (mid, pc)) if len(chain) > 1 else chain))

    def _target(self, receiver: _Labels | None, args: Sequence[_Labels]) -> str | None:
        for labels in ([receiver] if receiver is not None else []) + list(args):
            texts = [a[1] for a in labels if a[0] == _LITERAL]
            if not texts:
                texts = [a[2] for a in labels if a[0] == _PROVENANCE and a[2] is not None]
            if texts:
                return str(min(texts, key=self.rank))
        return None

    # one method

    def _analyze(self, mid: int, entry: dict[int, _Labels]) -> _Labels | None:
        """Labels of the method's return values given labels on its parameters.

        ``None`` when the method cannot be analysed (recursion, malformed code, budget).
        """
        key = (mid, frozenset(entry.items()))
        memo = self._memo.get(key)
        if memo is not None and memo[0] == self._generation:
            return memo[1]
        if (
            key in self._active
            or len(self._active) >= self.max_chain
            or mid in self._broken
            or self._runs >= MAX_METHOD_RUNS
        ):
            return None
        self._runs += 1
        self._active.add(key)
        generation = self._generation
        try:
            result = self._fixpoint(mid, self.app.body(mid), entry)
        except DexFormatError as exc:
            self._broken.add(mid)
            location = self.app.location(mid, 0)
            self.errors.append(f"{location.dex}: {location.class_name}->{location.method}: {exc}")
            return None
        finally:
            self._active.discard(key)
        self._memo[key] = (generation, result)
        return result

    def _fixpoint(self, mid: int, body: _Body, entry: dict[int, _Labels]) -> _Labels:
        count = len(body.blocks)
        if not count:
            return _EMPTY
        states: list[dict[int, _Labels] | None] = [None] * count
        states[0] = dict(entry)
        heap = [0]
        queued = {0}
        visits = [0] * count
        returned: set[_Atom] = set()
        while heap:
            block = heapq.heappop(heap)
            queued.discard(block)
            visits[block] += 1
            if visits[block] > MAX_BLOCK_VISITS:
                continue
            state_in = states[block]
            assert state_in is not None
            state = dict(state_in)
            first, end = body.blocks[block]
            result = _EMPTY
            for pc, op, operands in body.insns[first:end]:
                result = self._step(mid, state, pc, op, operands, result, returned)
            outgoing = [(s, state) for s in body.successors[block]]
            if body.handlers[block]:
                caught = {
                    r: state_in.get(r, _EMPTY) | state.get(r, _EMPTY) for r in {*state_in, *state}
                }
                outgoing += [(h, caught) for h in body.handlers[block]]
            for successor, out in outgoing:
                target = states[successor]
                if target is None:
                    states[successor] = dict(out)
                    changed = True
                else:
                    changed = False
                    for reg, labels in out.items():
                        old = target.get(reg)
                        if old is None:
                            target[reg] = labels
                            changed = True
                        elif not labels <= old:
                            target[reg] = old | labels
                            changed = True
                if changed and successor not in queued:
                    queued.add(successor)
                    heapq.heappush(heap, successor)
        return frozenset(returned)

    def _set(self, state: dict[int, _Labels], reg: int, labels: _Labels, wide: bool) -> None:
        if labels:
            state[reg] = labels
        else:
            state.pop(reg, None)
        if wide:
            if labels:
                state[reg + 1] = labels
            else:
                state.pop(reg + 1, None)

    def _step(
        self,
        mid: int,
        state: dict[int, _Labels],
        pc: int,
        op: int,
        operands: tuple[Any, ...],
        result: _Labels,
        returned: set[_Atom],
    ) -> _Labels:
        """Apply one instruction to ``state``; the labels a following move-result takes."""
        kind = _KINDS[op] if op < 0x100 else _K_NONE
        get = state.get
        wide = op in _WIDE_DEST
        if kind == _K_INVOKE:
            return self._invoke(mid, state, pc, op, operands[0], operands[1])
        if kind == _K_RESULT:
            self._set(state, operands[0], result, wide)
        elif kind == _K_MOVE:
            self._set(state, operands[0], get(operands[1], _EMPTY), wide)
        elif kind == _K_CLEAR:
            self._set(state, operands[0], _EMPTY, wide)
        elif kind == _K_STRING:
            text = self.app.dexes[self.app.methods[mid].dex].string(operands[1])
            self._set(state, operands[0], frozenset(((_LITERAL, text, None),)), False)
        elif kind == _K_UNOP:
            self._set(state, operands[0], _only(get(operands[1], _EMPTY), _IDENT), wide)
        elif kind == _K_BINOP:
            labels = get(operands[1], _EMPTY) | get(operands[2], _EMPTY)
            self._set(state, operands[0], _only(labels, _IDENT), wide)
        elif kind == _K_BINOP2:
            labels = get(operands[0], _EMPTY) | get(operands[1], _EMPTY)
            self._set(state, operands[0], _only(labels, _IDENT), wide)
        elif kind == _K_RETURN:
            returned.update(get(operands[0], _EMPTY))
        elif kind == _K_AGET:
            self._set(state, operands[0], get(operands[1], _EMPTY), wide)
        elif kind == _K_APUT:
            value = get(operands[0], _EMPTY)
            if value:
                self._set(state, operands[1], get(operands[1], _EMPTY) | value, False)
        elif kind in (_K_IGET, _K_SGET):
            dex_i = self.app.methods[mid].dex
            labels = self.fields.get(self.app.field_key(dex_i, operands[-1]), _EMPTY)
            labels = self._arrive(labels, mid, pc) if labels else _EMPTY
            if kind == _K_IGET:
                labels |= _only(get(operands[1], _EMPTY), _IDENT)
            else:
                labels |= self._reads_at(mid, pc)
            self._set(state, operands[0], labels, wide)
        elif kind == _K_PUT:
            value = get(operands[0], _EMPTY)
            if value:
                dex_i = self.app.methods[mid].dex
                self._field_written(self.app.field_key(dex_i, operands[-1]), value)
        elif kind == _K_FILLED:
            labels = _union(get(r, _EMPTY) for r in operands[1])
            return frozenset(a for a in labels if a[0] != _PROVENANCE)
        elif kind == _K_OPAQUE:
            registers = operands[1]
            labels = _union(get(r, _EMPTY) for r in registers)
            return frozenset(a for a in labels if a[0] != _PROVENANCE) | (
                _only(get(registers[0], _EMPTY), _PROVENANCE) if registers else _EMPTY
            )
        return _EMPTY

    def _reads_at(self, mid: int, pc: int) -> _Labels:
        uses = self.source_sites.get((mid, pc), ())
        return frozenset((_IDENT, use, ((mid, pc),)) for use in uses)

    def _invoke(
        self,
        mid: int,
        state: dict[int, _Labels],
        pc: int,
        op: int,
        method_idx: int,
        registers: tuple[int, ...],
    ) -> _Labels:
        """Apply a call to ``state``; the labels of its result."""
        static = op in _STATIC_INVOKES
        get = state.get
        receiver = _EMPTY if static or not registers else get(registers[0], _EMPTY)
        args = [get(r, _EMPTY) for r in (registers if static else registers[1:])]
        arg_labels = _union(args)
        reads = self._reads_at(mid, pc)
        if reads:
            return reads | _only(receiver | arg_labels, _IDENT)
        callee = self.app.callee(self.app.methods[mid].dex, method_idx)
        sinks = self.sink_sites.get((mid, pc))
        if sinks:
            target = self._target(None if static else receiver, args)
            data = _only(receiver | arg_labels, _IDENT)
            if data:
                for sink in sinks:
                    self._record(sink, target, data, mid, pc)
            provenance = frozenset((_PROVENANCE, sink, target) for sink in sinks)
            if callee.init and registers:
                state[registers[0]] = provenance
                return _EMPTY
            return provenance
        idents = _only(arg_labels, _IDENT)
        provenance = _only(receiver, _PROVENANCE)
        if idents:
            for atom in provenance:
                self._record(atom[1], atom[2], idents, mid, pc)
        literals = _only(arg_labels if static else receiver, _LITERAL)
        result = idents | _only(receiver, _IDENT) | provenance | literals
        if callee.target is not None:
            called = self._call_app(mid, pc, callee.target, registers, state)
            if called is not None:
                result = called
        if callee.init and registers:
            if arg_labels:
                state[registers[0]] = receiver | arg_labels
            return _EMPTY
        if callee.builder and registers and arg_labels:
            stored = receiver | idents | _only(args[-1], _LITERAL)
            state[registers[0]] = stored
            result |= stored
        return result

    def _call_app(
        self, mid: int, pc: int, callee: int, registers: tuple[int, ...], state: dict[int, _Labels]
    ) -> _Labels | None:
        """Labels an app method returns to this call, or None to fall back to the default."""
        if not any(a[0] != _LITERAL for reg in registers for a in state.get(reg, _EMPTY)):
            summary = self.returns.get(callee)
            return self._arrive(summary, mid, pc) if summary else None
        try:
            body = self.app.body(callee)
        except DexFormatError:
            return None
        base = body.registers - body.ins
        entry = {}
        for i, reg in enumerate(registers[: body.ins]):
            labels = state.get(reg)
            if labels and any(a[0] != _LITERAL for a in labels):
                entered = self._arrive(labels, callee, 0)
                if entered:
                    entry[base + i] = entered
        if not entry:
            return None
        returned = self._analyze(callee, entry)
        return None if returned is None else self._arrive(returned, mid, pc)


def _use_key(use: ApiUse) -> tuple[CodeLocation, str]:
    return use.location, use.rule.id


class _Triage(NamedTuple):
    """The ids of one file that matter, from its id tables."""

    methods: dict[int, tuple[ApiRule, ...]]
    fields: dict[int, tuple[ApiRule, ...]]
    strings: set[int]


CONTEXT = "Landroid/content/Context;"
CONTEXT_SUBCLASSES = frozenset(
    {
        "Landroid/content/ContextWrapper;",
        "Landroid/view/ContextThemeWrapper;",
        "Landroid/app/Activity;",
        "Landroid/app/ListActivity;",
        "Landroid/app/ActivityGroup;",
        "Landroid/app/TabActivity;",
        "Landroid/app/ExpandableListActivity;",
        "Landroid/app/AliasActivity;",
        "Landroid/app/NativeActivity;",
        "Landroid/app/LauncherActivity;",
        "Landroid/preference/PreferenceActivity;",
        "Landroid/app/Service;",
        "Landroid/app/IntentService;",
        "Landroid/app/Application;",
        "Landroid/app/backup/BackupAgent;",
        "Landroid/app/backup/BackupAgentHelper;",
        "Landroid/accessibilityservice/AccessibilityService;",
        "Landroid/inputmethodservice/InputMethodService;",
        "Landroid/service/wallpaper/WallpaperService;",
    }
)
"""Framework classes that are a Context: javac writes a call such as ``startActivity`` made in
an Activity as ``Lcom/app/MainActivity;->startActivity``, so a Context rule must also match
methods of app classes that descend from one of these."""


def _context_classes(dexes: Sequence[DexFile]) -> frozenset[str]:
    """App classes (across all DEX files) whose superclass chain reaches a Context class."""
    supers: dict[str, str] = {}
    for dex in dexes:
        for cd in dex.class_defs():
            if cd.superclass_idx != NO_INDEX:
                supers[dex.type_descriptor(cd.class_idx)] = dex.type_descriptor(cd.superclass_idx)
    found: set[str] = set()
    for cls in supers:
        seen, cur = set(), cls
        while cur in supers and cur not in seen:
            seen.add(cur)
            cur = supers[cur]
            if cur in CONTEXT_SUBCLASSES or cur == CONTEXT or cur in found:
                found.add(cls)
                break
    return frozenset(found) | CONTEXT_SUBCLASSES


def _triage(
    dex: DexFile,
    rules: SignatureSet,
    keep: Callable[[str], bool],
    contexts: frozenset[str] = frozenset(),
) -> _Triage:
    methods: dict[int, list[ApiRule]] = {}
    fields: dict[int, list[ApiRule]] = {}
    for rule in (*rules.sources, *rules.sinks):
        found: Sequence[int] = dex.find_members(rule.class_name, rule.member, field=rule.is_field)
        if rule.class_name == CONTEXT and not rule.is_field:
            # Calls on an Activity, Service or app subclass of them count as Context calls.
            found = [
                *found,
                *(
                    i
                    for i in dex.members_named(rule.member, field=False)
                    if dex.method(i)[0] in contexts
                ),
            ]
        for index in found:
            if rule.is_field:
                if rule.descriptor is None or dex.field(index)[2] == rule.descriptor:
                    fields.setdefault(index, []).append(rule)
            elif (
                rule.descriptor is None or dex.method(index)[2] == rule.descriptor
            ) and rule not in methods.get(index, []):
                methods.setdefault(index, []).append(rule)
    strings = {i for i, text in enumerate(dex.strings()) if keep(text)}
    return _Triage(
        {k: tuple(v) for k, v in methods.items()}, {k: tuple(v) for k, v in fields.items()}, strings
    )


def _string_arg_held(dex: DexFile, body: _Body, pc: int, text: str) -> bool:
    """Whether an argument of the invoke at ``pc`` holds ``text`` from a const-string.

    A linear scan in instruction order: a register holds the string of the last
    ``const-string`` written to it, until another instruction writes it.
    """
    held: dict[int, str] = {}
    for insn_pc, op, operands in body.insns:
        if insn_pc == pc:
            return any(held.get(reg) == text for reg in operands[1])
        if op in (0x1A, 0x1B):
            held[operands[0]] = dex.string(operands[1])
        elif op < 0x100 and _KINDS[op] in _WRITES_A:
            held.pop(operands[0], None)
            if op in _WIDE_DEST:
                held.pop(operands[0] + 1, None)
    return False


def analyze_dex_files(
    dex_files: Sequence[tuple[str, bytes]],
    rules: SignatureSet,
    *,
    string_filter: Callable[[str], bool],
    max_chain: int = 5,
) -> DexReport:
    """Reads, sinks, interesting strings and identifier flows of one app's DEX files.

    ``dex_files`` are ``(inner name, bytes)`` pairs, e.g. ``("classes2.dex", data)``. A file
    that is not valid DEX is reported in ``errors`` and the others are still analysed.
    """
    errors: list[str] = []
    dexes: list[DexFile] = []
    for name, data in dex_files:
        try:
            dexes.extend(load_dex(name, data))
        except DexFormatError as exc:
            errors.append(str(exc))
    app = _App(dexes, rules.library_prefixes, errors)
    classes = sum(dex.class_count for dex in dexes)
    try:
        contexts = _context_classes(dexes)
    except DexFormatError as exc:
        errors.append(str(exc))
        contexts = CONTEXT_SUBCLASSES
    ranks: dict[str, tuple[bool, str]] = {}

    def rank(text: str) -> tuple[bool, str]:
        known = ranks.get(text)
        if known is None:
            known = ranks[text] = (not string_filter(text), text)
        return known

    reads: list[ApiUse] = []
    sinks: list[ApiUse] = []
    strings: set[StringUse] = set()
    source_sites: dict[tuple[int, int], list[int]] = {}
    sink_sites: dict[tuple[int, int], list[int]] = {}
    for dex_i, dex in enumerate(dexes):
        try:
            triage = _triage(dex, rules, string_filter, contexts)
            patterns = (
                _pattern(
                    (*INVOKES, *_SGETS) if triage.fields else INVOKES,
                    {*triage.methods, *triage.fields},
                ),
                _pattern(_CONST_STRINGS, triage.strings, triage.strings),
            )

            def wanted(op: int, index: int, triage: _Triage = triage) -> bool:
                if op in INVOKES:
                    return index in triage.methods
                if op in _CONST_STRINGS:
                    return index in triage.strings
                return index in triage.fields

            hits = [
                site
                for pattern in patterns
                if pattern is not None
                for site in app.scan(dex_i, pattern, wanted)
            ]
            for mid, pc, op, index in sorted(hits):
                location = app.location(mid, pc)
                library = app.methods[mid].library
                if op in _CONST_STRINGS:
                    strings.add(StringUse(dex.string(index), location, library))
                    continue
                matched = triage.methods[index] if op in INVOKES else triage.fields[index]
                for rule in matched:
                    if rule.string_arg is not None and not _string_arg_held(
                        dex, app.body(mid), pc, rule.string_arg
                    ):
                        continue
                    uses, sites = (
                        (reads, source_sites) if rule.role == "source" else (sinks, sink_sites)
                    )
                    sites.setdefault((mid, pc), []).append(len(uses))
                    uses.append(ApiUse(rule, location, library))
        except DexFormatError as exc:
            errors.append(str(exc))
    flows: list[Flow] = []
    if reads and sinks:
        engine = _Flows(
            app,
            {k: tuple(v) for k, v in source_sites.items()},
            {k: tuple(v) for k, v in sink_sites.items()},
            rank,
            max_chain,
            errors,
        )
        engine.run(sorted({mid for mid, _ in source_sites}))
        flows = _collect_flows(app, engine, reads, sinks)
    if len(errors) > MAX_ERRORS:
        errors[MAX_ERRORS:] = [f"... and {len(errors) - MAX_ERRORS} more errors"]
    return DexReport(
        reads=tuple(sorted(reads, key=_use_key)),
        sinks=tuple(sorted(sinks, key=_use_key)),
        strings=tuple(sorted(strings, key=lambda s: (s.location, s.value))),
        flows=tuple(flows),
        classes=classes,
        methods_decoded=app.walked,
        unresolved_calls=app.unresolved,
        errors=tuple(errors),
    )


def _collect_flows(
    app: _App, engine: _Flows, reads: Sequence[ApiUse], sinks: Sequence[ApiUse]
) -> list[Flow]:
    """Turn the analysis' findings into sorted :class:`Flow` records."""
    flows = []
    for (sink_i, target), found in engine.found.items():
        sink = sinks[sink_i]
        sources = sorted({reads[read_i] for read_i, _ in found}, key=_use_key)
        chains = {tuple(app.location(m, pc) for m, pc in chain) for _, chain in found}
        chain = min(chains, key=lambda c: (len(c), c))
        library = (
            sink.library
            and all(use.library for use in sources)
            and all(app.is_library(loc.class_name) for loc in chain)
        )
        flows.append(
            Flow(
                categories=tuple(sorted({use.rule.category for use in sources})),
                sources=tuple(sources),
                sink=sink,
                target=target,
                chain=chain,
                library=library,
            )
        )
    flows.sort(key=lambda f: (f.sink.location, f.sink.rule.id, f.target or "", f.categories))
    return flows

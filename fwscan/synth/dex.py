"""A writer of DEX files (Dalvik executable, version 035) in pure Python.

The synthesizer uses it to put real bytecode into the apps of sample firmware, without Java, d8 or
smali. The API is a small builder::

    dex = DexBuilder()
    cls = dex.add_class("Lcom/example/Hello;", source_file="Hello.java")
    code = cls.add_method("greet", ("Landroid/content/Context;",), "V")
    text = code.local()
    code.const_string(text, "hello")
    code.return_void()
    data = dex.to_bytes()

Types are written as descriptors (``I``, ``Ljava/lang/String;``, ``[B``); :func:`class_descriptor`
turns a dotted Java name into one. Members are named by :class:`FieldRef` and :class:`MethodRef`,
which also parse the smali notation ``Lcom/a/B;->name(I)V``.

Code is assembled from symbolic registers: :meth:`Code.local` hands out locals in order (so locals
taken one after another are consecutive registers, as ``/range`` invokes need) and
:meth:`Code.param` names the incoming arguments, which Dalvik places in the highest registers.
Register numbers, instruction formats (``const/4`` or ``const``, ``invoke`` or ``invoke/range``,
``const-string`` or ``const-string/jumbo``, ``goto`` or ``goto/16`` or ``goto/32``) and branch
offsets are all decided when :meth:`DexBuilder.to_bytes` lays out the file, once every index is
known. Registers belong to the :class:`Code` that made them.

The file follows the format of source.android.com ("Dalvik executable format"): every id table
sorted as required, class definitions with superclasses and interfaces first, a data section of
4-aligned type lists and code items, MUTF-8 string data and class data, a map list, and the
Adler-32 checksum and SHA-1 signature. No debug info or annotations are written. Output is a
function of the builder calls only, so building twice gives identical bytes.

Inputs the format cannot index are refused with :class:`fwscan.errors.ManifestError`.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from fwscan.analyze.dex import uleb128
from fwscan.errors import ManifestError

DEX_MAGIC = b"dex\n035\x00"
"""The magic of the files this module writes (format version 035)."""

ACC_PUBLIC = 0x1
ACC_PRIVATE = 0x2
ACC_PROTECTED = 0x4
ACC_STATIC = 0x8
ACC_FINAL = 0x10
ACC_NATIVE = 0x100
ACC_INTERFACE = 0x200
ACC_ABSTRACT = 0x400
ACC_SYNTHETIC = 0x1000
ACC_CONSTRUCTOR = 0x10000

MAX_INDEX16 = 0xFFFF
"""Most type, proto, field and method ids one file may hold (instructions index them in 16 bits)."""
MAX_STRINGS = 1 << 22
"""Most strings one file may hold."""
MAX_STRING_UNITS = 1 << 20
"""Longest string, in UTF-16 code units."""
MAX_CODE_UNITS = 1 << 20
"""Longest method body, in 16-bit code units."""
MAX_REGISTERS = 0xFFFF
"""Most registers one method may use."""

_NO_INDEX = 0xFFFFFFFF
_HEADER_SIZE = 0x70
_ENDIAN_CONSTANT = 0x12345678

# map_list item type codes
_TYPE_HEADER = 0x0000
_TYPE_STRING_ID = 0x0001
_TYPE_TYPE_ID = 0x0002
_TYPE_PROTO_ID = 0x0003
_TYPE_FIELD_ID = 0x0004
_TYPE_METHOD_ID = 0x0005
_TYPE_CLASS_DEF = 0x0006
_TYPE_MAP_LIST = 0x1000
_TYPE_TYPE_LIST = 0x1001
_TYPE_CLASS_DATA = 0x2000
_TYPE_CODE = 0x2001
_TYPE_STRING_DATA = 0x2002

_SEGMENT = r"[A-Za-z0-9_$-]+"
_CLASS_RE = re.compile("L" + _SEGMENT + "(?:/" + _SEGMENT + ")*;")
_TYPE_RE = re.compile(r"\[{0,255}(?:[ZBSCIJFD]|L" + _SEGMENT + "(?:/" + _SEGMENT + ")*;)")
_MEMBER_RE = re.compile("<init>|<clinit>|" + _SEGMENT)
_JAVA_NAME_RE = re.compile(_SEGMENT + r"(?:\." + _SEGMENT + ")*")
_METHOD_SPEC_RE = re.compile(r"(?P<owner>.+?)->(?P<name>[^(]+)\((?P<params>[^)]*)\)(?P<ret>.+)")
_FIELD_SPEC_RE = re.compile(r"(?P<owner>.+?)->(?P<name>[^:]+):(?P<type>.+)")
_PARAM_RE = re.compile(r"\[*(?:[ZBSCIJFD]|L[^;]+;)")


def class_descriptor(java_name: str) -> str:
    """The descriptor of a dotted Java class name: ``com.a.B`` gives ``Lcom/a/B;``."""
    if not _JAVA_NAME_RE.fullmatch(java_name):
        raise ManifestError(f"invalid Java class name {java_name!r}")
    return "L" + java_name.replace(".", "/") + ";"


def _check_type(descriptor: str, *, void: bool = False) -> str:
    if not (_TYPE_RE.fullmatch(descriptor) or (void and descriptor == "V")):
        raise ManifestError(f"invalid type descriptor {descriptor!r}")
    return descriptor


def _check_class(descriptor: str) -> str:
    if not _CLASS_RE.fullmatch(descriptor):
        raise ManifestError(f"invalid class descriptor {descriptor!r}")
    return descriptor


def _check_reference(descriptor: str) -> str:
    if not descriptor.startswith(("L", "[")):
        raise ManifestError(f"not a class or array type: {descriptor!r}")
    return _check_type(descriptor)


def _check_member(name: str) -> str:
    if not _MEMBER_RE.fullmatch(name):
        raise ManifestError(f"invalid member name {name!r}")
    return name


def _words(descriptor: str) -> int:
    """Registers a value of this type occupies."""
    return 2 if descriptor in ("J", "D") else 1


def _shorty(descriptor: str) -> str:
    return "L" if descriptor[0] in "L[" else descriptor


@dataclass(frozen=True)
class FieldRef:
    """A field, as smali writes it: ``Lcom/a/B;->name:Ljava/lang/String;``."""

    owner: str
    """Descriptor of the class that declares the field."""
    name: str
    """The field's name."""
    type: str
    """Descriptor of the field's type."""

    def __post_init__(self) -> None:
        _check_reference(self.owner)
        _check_member(self.name)
        _check_type(self.type)

    @classmethod
    def parse(cls, spec: str) -> FieldRef:
        """A field from smali notation, ``Lowner;->name:type``."""
        match = _FIELD_SPEC_RE.fullmatch(spec)
        if match is None:
            raise ManifestError(f"invalid field reference {spec!r}")
        return cls(match["owner"], match["name"], match["type"])


@dataclass(frozen=True)
class MethodRef:
    """A method, as smali writes it: ``Lcom/a/B;->name(ILjava/lang/String;)V``."""

    owner: str
    """Descriptor of the class (or array type) the method is looked up in."""
    name: str
    """The method's name (``<init>`` for constructors)."""
    params: tuple[str, ...]
    """Descriptors of the declared parameters, without ``this``."""
    returns: str
    """Descriptor of the return type (``V`` for void)."""

    def __post_init__(self) -> None:
        _check_reference(self.owner)
        _check_member(self.name)
        for param in self.params:
            _check_type(param)
        _check_type(self.returns, void=True)
        if sum(_words(p) for p in self.params) > 255:
            raise ManifestError(f"method {self.name!r} has more than 255 argument words")

    @classmethod
    def parse(cls, spec: str) -> MethodRef:
        """A method from smali notation, ``Lowner;->name(params)return``."""
        match = _METHOD_SPEC_RE.fullmatch(spec)
        if match is None:
            raise ManifestError(f"invalid method reference {spec!r}")
        params = match["params"]
        found = _PARAM_RE.findall(params)
        if "".join(found) != params:
            raise ManifestError(f"invalid parameter list in {spec!r}")
        return cls(match["owner"], match["name"], tuple(found), match["ret"])


@dataclass(frozen=True)
class Reg:
    """A register of one method; numbered when the method is assembled.

    Locals take the low registers in the order :meth:`Code.local` handed them out; parameters
    (``this`` first) take the registers after the locals.
    """

    kind: Literal["local", "param"]
    """Whether the register is a local or an incoming argument."""
    slot: int
    """Position among the locals or among the argument registers."""
    wide: bool = False
    """A register pair holding a ``long`` or ``double``."""


InvokeKind = Literal["virtual", "super", "direct", "static", "interface"]
"""The five kinds of ``invoke-*`` instruction."""
IfTest = Literal["eq", "ne", "lt", "ge", "gt", "le"]
"""The comparisons of ``if-*z``."""

_INVOKE_OPCODES: dict[str, int] = {
    "virtual": 0x6E,
    "super": 0x6F,
    "direct": 0x70,
    "static": 0x71,
    "interface": 0x72,
}
_RANGE_SHIFT = 0x74 - 0x6E
_IFZ_OPCODES: dict[str, int] = {
    "eq": 0x38,
    "ne": 0x39,
    "lt": 0x3A,
    "ge": 0x3B,
    "gt": 0x3C,
    "le": 0x3D,
}
# iget/iput/sget/sput come in seven variants, in this order: int/float, wide, object, boolean,
# byte, char, short.
_FIELD_VARIANT: dict[str, int] = {"I": 0, "F": 0, "J": 1, "D": 1, "Z": 3, "B": 4, "C": 5, "S": 6}
_FIELD_BASE: dict[str, int] = {"iget": 0x52, "iput": 0x59, "sget": 0x60, "sput": 0x67}
# return-void, return, return-wide, return-object: the instructions a method may end with (or goto)
_RETURNS = frozenset((0x0E, 0x0F, 0x10, 0x11))
_SIZES: dict[str, int] = {
    "10x": 1,
    "12x": 1,
    "11n": 1,
    "11x": 1,
    "10t": 1,
    "20t": 2,
    "21t": 2,
    "22x": 2,
    "21s": 2,
    "21c": 2,
    "22c": 2,
    "30t": 3,
    "32x": 3,
    "31i": 3,
    "31c": 3,
    "35c": 3,
    "3rc": 3,
}


@dataclass(frozen=True)
class _Insn:
    """One symbolic instruction, lowered to a format once registers and indexes are known."""

    kind: str
    opcode: int
    regs: tuple[Reg, ...] = ()
    ref: str | FieldRef | MethodRef | None = None
    value: int = 0
    label: str | None = None


@dataclass(frozen=True)
class _Low:
    """An instruction with its format and numeric operands; ``label`` is a pending branch."""

    fmt: str
    opcode: int
    a: int = 0
    b: int = 0
    c: int = 0
    regs: tuple[int, ...] = ()
    label: str | None = None


@dataclass(frozen=True)
class _Index:
    """The final, sorted position of every string, type, proto, field and method."""

    strings: dict[str, int]
    types: dict[str, int]
    protos: dict[tuple[str, tuple[str, ...]], int]
    fields: dict[FieldRef, int]
    methods: dict[MethodRef, int]


def _fit(number: int, bits: int, what: str) -> int:
    if number >= 1 << bits:
        raise ManifestError(f"register v{number} does not fit the {bits}-bit field of {what}")
    return number


class Code:
    """The body of one method, built one instruction at a time."""

    def __init__(self, ref: MethodRef, *, static: bool) -> None:
        self.ref = ref
        """The method this code belongs to."""
        self._static = static
        slot = 0 if static else 1
        self._params: list[Reg] = []
        for param in ref.params:
            self._params.append(Reg("param", slot, _words(param) == 2))
            slot += _words(param)
        self._ins = slot
        self._locals = 0
        self._insns: list[_Insn] = []
        self._labels: dict[str, int] = {}

    # registers

    @property
    def this(self) -> Reg:
        """The ``this`` argument of an instance method."""
        if self._static:
            raise ManifestError(f"static method {self.ref.name!r} has no 'this'")
        return Reg("param", 0)

    def param(self, index: int) -> Reg:
        """The register (or pair) holding declared parameter ``index``."""
        if not 0 <= index < len(self._params):
            raise ManifestError(f"method {self.ref.name!r} has no parameter {index}")
        return self._params[index]

    def local(self, *, wide: bool = False) -> Reg:
        """A new local register, or a register pair for a ``long``/``double`` when ``wide``."""
        reg = Reg("local", self._locals, wide)
        self._locals += 2 if wide else 1
        if self._locals + self._ins > MAX_REGISTERS:
            raise ManifestError(
                f"method {self.ref.name!r} needs more than {MAX_REGISTERS} registers"
            )
        return reg

    # instructions

    def _add(self, insn: _Insn) -> None:
        self._insns.append(insn)

    def nop(self) -> None:
        """``nop``."""
        self._add(_Insn("10x", 0x00))

    def move(self, dst: Reg, src: Reg) -> None:
        """``move`` (or ``move-wide`` for register pairs), choosing the form by register numbers."""
        if dst.wide != src.wide:
            raise ManifestError("move between a register and a register pair")
        self._add(_Insn("move", 0x04 if dst.wide else 0x01, (dst, src)))

    def move_object(self, dst: Reg, src: Reg) -> None:
        """``move-object``, choosing the form by register numbers."""
        self._add(_Insn("move", 0x07, (_narrow(dst), _narrow(src))))

    def move_result(self, dst: Reg) -> None:
        """``move-result`` (or ``move-result-wide`` into a register pair)."""
        self._add(_Insn("11x", 0x0B if dst.wide else 0x0A, (dst,)))

    def move_result_object(self, dst: Reg) -> None:
        """``move-result-object``."""
        self._add(_Insn("11x", 0x0C, (_narrow(dst),)))

    def return_void(self) -> None:
        """``return-void``."""
        self._add(_Insn("10x", 0x0E))

    def return_value(self, reg: Reg) -> None:
        """``return`` (or ``return-wide`` for a register pair)."""
        self._add(_Insn("11x", 0x10 if reg.wide else 0x0F, (reg,)))

    def return_object(self, reg: Reg) -> None:
        """``return-object``."""
        self._add(_Insn("11x", 0x11, (_narrow(reg),)))

    def const(self, dst: Reg, value: int) -> None:
        """``const/4``, ``const/16`` or ``const``: a 32-bit literal (0 is also ``null``)."""
        if not -(1 << 31) <= value < 1 << 31:
            raise ManifestError(f"constant {value} does not fit 32 bits")
        self._add(_Insn("const", 0, (_narrow(dst),), value=value))

    def const_string(self, dst: Reg, value: str) -> None:
        """``const-string`` (``const-string/jumbo`` when the string's index needs 32 bits)."""
        if len(value) > MAX_STRING_UNITS:
            raise ManifestError(f"string of {len(value)} characters is too long")
        self._add(_Insn("const-string", 0, (_narrow(dst),), value))

    def new_instance(self, dst: Reg, class_type: str) -> None:
        """``new-instance`` of a class."""
        self._add(_Insn("21c-type", 0x22, (_narrow(dst),), _check_class(class_type)))

    def check_cast(self, reg: Reg, ref_type: str) -> None:
        """``check-cast`` to a class or array type."""
        self._add(_Insn("21c-type", 0x1F, (_narrow(reg),), _check_reference(ref_type)))

    def iget(self, dst: Reg, obj: Reg, field: FieldRef) -> None:
        """``iget-*`` of an instance field; the variant follows the field's type."""
        self._field_op("iget", field, (dst, _narrow(obj)))

    def iput(self, src: Reg, obj: Reg, field: FieldRef) -> None:
        """``iput-*`` into an instance field; the variant follows the field's type."""
        self._field_op("iput", field, (src, _narrow(obj)))

    def sget(self, dst: Reg, field: FieldRef) -> None:
        """``sget-*`` of a static field; the variant follows the field's type."""
        self._field_op("sget", field, (dst,))

    def sput(self, src: Reg, field: FieldRef) -> None:
        """``sput-*`` into a static field; the variant follows the field's type."""
        self._field_op("sput", field, (src,))

    def _field_op(self, name: str, field: FieldRef, regs: tuple[Reg, ...]) -> None:
        variant = _FIELD_VARIANT.get(field.type, 2)
        if regs[0].wide != (variant == 1):
            raise ManifestError(f"{name} of {field.name!r}: register width does not match type")
        kind = "22c" if name[0] == "i" else "21c-field"
        self._add(_Insn(kind, _FIELD_BASE[name] + variant, regs, field))

    def invoke(self, kind: InvokeKind, method: MethodRef, *args: Reg) -> None:
        """``invoke-<kind>`` (``/range`` when the arguments need it); ``this`` comes first."""
        expected = list(method.params) if kind == "static" else [method.owner, *method.params]
        if len(args) != len(expected) or any(
            a.wide != (_words(t) == 2) for a, t in zip(args, expected, strict=True)
        ):
            raise ManifestError(
                f"invoke of {method.name!r}: arguments do not match {method.params}"
                + ("" if kind == "static" else " plus 'this'")
            )
        self._add(_Insn("invoke", _INVOKE_OPCODES[kind], args, method))

    def label(self, name: str) -> None:
        """Mark the next instruction as the target ``name`` of branches."""
        if name in self._labels:
            raise ManifestError(f"label {name!r} defined twice in {self.ref.name!r}")
        self._labels[name] = len(self._insns)

    def goto(self, label: str) -> None:
        """``goto``, ``goto/16`` or ``goto/32``, whichever reaches ``label``."""
        self._add(_Insn("goto", 0x28, label=label))

    def if_zero(self, test: IfTest, reg: Reg, label: str) -> None:
        """``if-<test>z``: branch to ``label`` when ``reg`` compared with zero (or null) holds."""
        self._add(_Insn("21t", _IFZ_OPCODES[test], (_narrow(reg),), label=label))

    # assembly

    def _assemble(self, index: _Index) -> tuple[int, int, int, list[int]]:
        """Registers, ins and outs sizes and the code units of the method."""
        last = self._insns[-1] if self._insns else None
        if last is None or not (
            last.kind == "goto" or (last.kind in ("10x", "11x") and last.opcode in _RETURNS)
        ):
            raise ManifestError(f"method {self.ref.name!r} does not end with a return or goto")
        for name, position in self._labels.items():
            if position >= len(self._insns):
                raise ManifestError(f"label {name!r} of {self.ref.name!r} marks no instruction")

        def number(reg: Reg) -> int:
            if reg.kind == "local":
                if reg.slot >= self._locals:
                    raise ManifestError(f"register of another method used in {self.ref.name!r}")
                return reg.slot
            if reg.slot >= self._ins:
                raise ManifestError(f"register of another method used in {self.ref.name!r}")
            return self._locals + reg.slot

        lows = [_lower(insn, number, index) for insn in self._insns]
        for low in lows:
            if low.label is not None and low.label not in self._labels:
                raise ManifestError(f"branch to undefined label {low.label!r} in {self.ref.name!r}")
        positions = _relax(lows, self._labels)
        units: list[int] = []
        for i, low in enumerate(lows):
            offset = 0
            if low.label is not None:
                offset = positions[self._labels[low.label]] - positions[i]
                if low.fmt == "21t" and not (-32768 <= offset <= 32767 and offset != 0):
                    raise ManifestError(
                        f"branch to {low.label!r} out of reach in {self.ref.name!r}"
                    )
            units.extend(_encode(low, offset))
        if len(units) > MAX_CODE_UNITS:
            raise ManifestError(
                f"method {self.ref.name!r} has more than {MAX_CODE_UNITS} code units"
            )
        outs = max(
            (sum(2 if r.wide else 1 for r in i.regs) for i in self._insns if i.kind == "invoke"),
            default=0,
        )
        return self._locals + self._ins, self._ins, outs, units


def _narrow(reg: Reg) -> Reg:
    if reg.wide:
        raise ManifestError("a register pair used where a single register is needed")
    return reg


def _lower(insn: _Insn, number: Callable[[Reg], int], index: _Index) -> _Low:
    """Choose the format of one instruction and fill in its operands."""
    nums = [number(r) for r in insn.regs]
    kind, opcode = insn.kind, insn.opcode
    if kind == "10x":
        return _Low("10x", opcode)
    if kind == "11x":
        return _Low("11x", opcode, _fit(nums[0], 8, "an 11x instruction"))
    if kind == "move":
        dst, src = nums
        if dst < 16 and src < 16:
            return _Low("12x", opcode, dst, src)
        if dst < 256:
            return _Low("22x", opcode + 1, dst, _fit(src, 16, "move/from16"))
        return _Low("32x", opcode + 2, _fit(dst, 16, "move/16"), _fit(src, 16, "move/16"))
    if kind == "const":
        value = insn.value
        if -8 <= value <= 7 and nums[0] < 16:
            return _Low("11n", 0x12, nums[0], value)
        dst = _fit(nums[0], 8, "const")
        if -32768 <= value <= 32767:
            return _Low("21s", 0x13, dst, value)
        return _Low("31i", 0x14, dst, value)
    if kind == "const-string":
        assert isinstance(insn.ref, str)
        string_idx = index.strings[insn.ref]
        dst = _fit(nums[0], 8, "const-string")
        if string_idx <= 0xFFFF:
            return _Low("21c", 0x1A, dst, string_idx)
        return _Low("31c", 0x1B, dst, string_idx)
    if kind == "21c-type":
        assert isinstance(insn.ref, str)
        return _Low("21c", opcode, _fit(nums[0], 8, "a type instruction"), index.types[insn.ref])
    if kind == "21c-field":
        assert isinstance(insn.ref, FieldRef)
        return _Low("21c", opcode, _fit(nums[0], 8, "sget/sput"), index.fields[insn.ref])
    if kind == "22c":
        assert isinstance(insn.ref, FieldRef)
        value, obj = (_fit(n, 4, "iget/iput") for n in nums)
        return _Low("22c", opcode, value, obj, index.fields[insn.ref])
    if kind == "invoke":
        assert isinstance(insn.ref, MethodRef)
        method_idx = index.methods[insn.ref]
        words: list[int] = []
        for reg, num in zip(insn.regs, nums, strict=True):
            words.extend((num, num + 1) if reg.wide else (num,))
        if len(words) <= 5 and all(w < 16 for w in words):
            return _Low("35c", opcode, b=method_idx, regs=tuple(words))
        first = words[0]
        if words != list(range(first, first + len(words))) or first + len(words) > 0x10000:
            raise ManifestError(
                f"invoke of {insn.ref.name!r} needs consecutive registers for invoke/range"
            )
        if len(words) > 255:
            raise ManifestError(f"invoke of {insn.ref.name!r} passes more than 255 words")
        return _Low("3rc", opcode + _RANGE_SHIFT, b=method_idx, regs=tuple(words))
    if kind == "goto":
        return _Low("10t", opcode, label=insn.label)
    if kind == "21t":
        return _Low("21t", opcode, _fit(nums[0], 8, "if-testz"), label=insn.label)
    raise AssertionError(f"unknown instruction kind {kind}")


def _relax(lows: list[_Low], labels: dict[str, int]) -> list[int]:
    """Widen gotos until each reaches its target; the code-unit position of every instruction."""
    while True:
        positions = [0]
        for low in lows:
            positions.append(positions[-1] + _SIZES[low.fmt])
        changed = False
        for i, low in enumerate(lows):
            if low.fmt not in ("10t", "20t"):
                continue
            assert low.label is not None
            offset = positions[labels[low.label]] - positions[i]
            if offset != 0 and -128 <= offset <= 127:
                need = "10t"
            elif offset != 0 and -32768 <= offset <= 32767:
                need = "20t"
            else:
                need = "30t"
            if _SIZES[need] > _SIZES[low.fmt]:
                lows[i] = replace(low, fmt=need, opcode={"20t": 0x29, "30t": 0x2A}[need])
                changed = True
        if not changed:
            return positions


def _encode(low: _Low, offset: int) -> list[int]:
    """The code units of one lowered instruction; ``offset`` is its branch offset."""
    op, a, b, c = low.opcode, low.a, low.b, low.c
    fmt = low.fmt
    if fmt == "10x":
        return [op]
    if fmt in ("12x", "11n"):
        return [op | a << 8 | (b & 0xF) << 12]
    if fmt == "11x":
        return [op | a << 8]
    if fmt == "10t":
        return [op | (offset & 0xFF) << 8]
    if fmt == "20t":
        return [op, offset & 0xFFFF]
    if fmt == "30t":
        return [op, offset & 0xFFFF, (offset >> 16) & 0xFFFF]
    if fmt == "21t":
        return [op | a << 8, offset & 0xFFFF]
    if fmt in ("22x", "21s", "21c"):
        return [op | a << 8, b & 0xFFFF]
    if fmt == "22c":
        return [op | a << 8 | b << 12, c]
    if fmt == "32x":
        return [op, a, b]
    if fmt in ("31i", "31c"):
        return [op | a << 8, b & 0xFFFF, (b >> 16) & 0xFFFF]
    regs = low.regs
    if fmt == "35c":
        padded = [*regs, 0, 0, 0, 0, 0]
        return [
            op | padded[4] << 8 | len(regs) << 12,
            b,
            padded[0] | padded[1] << 4 | padded[2] << 8 | padded[3] << 12,
        ]
    assert fmt == "3rc"
    return [op | len(regs) << 8, b, regs[0] if regs else 0]


@dataclass(frozen=True)
class _Field:
    ref: FieldRef
    access: int


@dataclass(frozen=True)
class _Method:
    ref: MethodRef
    access: int
    code: Code | None

    @property
    def direct(self) -> bool:
        return bool(self.access & (ACC_STATIC | ACC_PRIVATE | ACC_CONSTRUCTOR))


class ClassBuilder:
    """One class definition: its fields and methods. Made by :meth:`DexBuilder.add_class`."""

    def __init__(
        self,
        descriptor: str,
        access: int,
        superclass: str | None,
        interfaces: tuple[str, ...],
        source_file: str | None,
    ) -> None:
        self.descriptor = descriptor
        """Descriptor of the class."""
        self.access = access
        """Access flags of the class."""
        self.superclass = superclass
        """Descriptor of the superclass; ``None`` only for ``java.lang.Object``."""
        self.interfaces = interfaces
        """Descriptors of the implemented interfaces."""
        self.source_file = source_file
        """Name of the source file, or ``None``."""
        self._fields: dict[str, _Field] = {}
        self._methods: dict[MethodRef, _Method] = {}

    def add_field(self, name: str, type_: str, access: int = ACC_PRIVATE) -> FieldRef:
        """Declare a field (static when ``access`` has ``ACC_STATIC``); its reference."""
        ref = FieldRef(self.descriptor, name, type_)
        if name in self._fields:
            raise ManifestError(f"field {name!r} declared twice in {self.descriptor}")
        self._fields[name] = _Field(ref, access)
        return ref

    def add_method(
        self, name: str, params: Sequence[str], returns: str, access: int = ACC_PUBLIC
    ) -> Code:
        """Declare a method with a body; the :class:`Code` to fill in.

        ``<init>`` and ``<clinit>`` get ``ACC_CONSTRUCTOR`` added. A method is direct when it is
        static, private or a constructor, virtual otherwise.
        """
        if access & (ACC_NATIVE | ACC_ABSTRACT):
            raise ManifestError(f"method {name!r}: native and abstract methods have no code")
        ref = self._declare(name, params, returns, access)
        code = Code(ref, static=bool(access & ACC_STATIC))
        self._methods[ref] = _Method(ref, self._flags(name, access), code)
        return code

    def declare_method(
        self, name: str, params: Sequence[str], returns: str, access: int
    ) -> MethodRef:
        """Declare a native or abstract method (``access`` says which); its reference."""
        if bool(access & ACC_NATIVE) == bool(access & ACC_ABSTRACT):
            raise ManifestError(f"method {name!r} without code must be native or abstract")
        if access & ACC_ABSTRACT and not self.access & ACC_ABSTRACT:
            raise ManifestError(f"abstract method {name!r} in a class that is not abstract")
        ref = self._declare(name, params, returns, access)
        self._methods[ref] = _Method(ref, self._flags(name, access), None)
        return ref

    def _declare(self, name: str, params: Sequence[str], returns: str, access: int) -> MethodRef:
        ref = MethodRef(self.descriptor, name, tuple(params), returns)
        if ref in self._methods:
            raise ManifestError(f"method {name}{ref.params} declared twice in {self.descriptor}")
        if bin(access & (ACC_PUBLIC | ACC_PRIVATE | ACC_PROTECTED)).count("1") > 1:
            raise ManifestError(f"method {name!r}: conflicting visibility flags")
        return ref

    @staticmethod
    def _flags(name: str, access: int) -> int:
        if name == "<init>":
            if access & ACC_STATIC:
                raise ManifestError("a constructor cannot be static")
            return access | ACC_CONSTRUCTOR
        if name == "<clinit>":
            return access | ACC_STATIC | ACC_CONSTRUCTOR
        if access & ACC_CONSTRUCTOR:
            raise ManifestError(f"method {name!r} is not a constructor")
        return access


def _utf16_key(value: str) -> bytes:
    """Sort key putting strings in UTF-16 code-unit order, as string_ids require."""
    return value.encode("utf-16-be", "surrogatepass")


def _mutf8(value: str) -> tuple[int, bytes]:
    """The UTF-16 length and MUTF-8 bytes of a string (NUL as C0 80, surrogates one by one)."""
    if value.isascii() and "\0" not in value:
        return len(value), value.encode("ascii")
    raw = _utf16_key(value)
    out = bytearray()
    for i in range(0, len(raw), 2):
        unit = raw[i] << 8 | raw[i + 1]
        if 0 < unit < 0x80:
            out.append(unit)
        elif unit < 0x800:
            out += bytes((0xC0 | unit >> 6, 0x80 | unit & 0x3F))
        else:
            out += bytes((0xE0 | unit >> 12, 0x80 | (unit >> 6) & 0x3F, 0x80 | unit & 0x3F))
    return len(raw) // 2, bytes(out)


def _align(buf: bytearray, alignment: int = 4) -> None:
    buf.extend(bytes(-len(buf) % alignment))


class DexBuilder:
    """Collects class definitions and writes them as one DEX file."""

    def __init__(self) -> None:
        self._classes: dict[str, ClassBuilder] = {}

    def add_class(
        self,
        descriptor: str,
        *,
        access: int = ACC_PUBLIC,
        superclass: str | None = "Ljava/lang/Object;",
        interfaces: Sequence[str] = (),
        source_file: str | None = None,
    ) -> ClassBuilder:
        """Define a class; the builder for its members."""
        _check_class(descriptor)
        if descriptor in self._classes:
            raise ManifestError(f"class {descriptor} defined twice")
        if superclass is None:
            if descriptor != "Ljava/lang/Object;":
                raise ManifestError(f"class {descriptor} needs a superclass")
        else:
            _check_class(superclass)
        for interface in interfaces:
            _check_class(interface)
        if access & ACC_INTERFACE and not access & ACC_ABSTRACT:
            raise ManifestError(f"interface {descriptor} must be abstract")
        if source_file is not None and len(source_file) > MAX_STRING_UNITS:
            raise ManifestError(f"source file name of {descriptor} is too long")
        builder = ClassBuilder(descriptor, access, superclass, tuple(interfaces), source_file)
        self._classes[descriptor] = builder
        return builder

    def _ordered_classes(self) -> list[ClassBuilder]:
        """Classes in definition order, moved so that supertypes defined here come first."""
        done: set[str] = set()
        order: list[ClassBuilder] = []
        for root in self._classes.values():
            stack: list[tuple[ClassBuilder, bool]] = [(root, False)]
            visiting: set[str] = set()
            while stack:
                cls, expanded = stack.pop()
                if cls.descriptor in done:
                    continue
                if expanded:
                    visiting.discard(cls.descriptor)
                    done.add(cls.descriptor)
                    order.append(cls)
                    continue
                if cls.descriptor in visiting:
                    raise ManifestError(f"class {cls.descriptor} inherits from itself")
                visiting.add(cls.descriptor)
                stack.append((cls, True))
                supers = [cls.superclass, *cls.interfaces]
                for parent in reversed(supers):
                    if parent in self._classes and parent not in done:
                        if parent in visiting:
                            raise ManifestError(f"class {parent} inherits from itself")
                        stack.append((self._classes[parent], False))
        return order

    def _build_index(self, classes: list[ClassBuilder]) -> _Index:
        strings: set[str] = set()
        types: set[str] = set()
        protos: set[tuple[str, tuple[str, ...]]] = set()
        fields: set[FieldRef] = set()
        methods: set[MethodRef] = set()

        def add_method(ref: MethodRef) -> None:
            methods.add(ref)
            types.add(ref.owner)
            protos.add((ref.returns, ref.params))
            strings.add(ref.name)

        def add_field(ref: FieldRef) -> None:
            fields.add(ref)
            types.update((ref.owner, ref.type))
            strings.add(ref.name)

        for cls in classes:
            types.add(cls.descriptor)
            if cls.superclass is not None:
                types.add(cls.superclass)
            types.update(cls.interfaces)
            if cls.source_file is not None:
                strings.add(cls.source_file)
            for fld in cls._fields.values():
                add_field(fld.ref)
            for method in cls._methods.values():
                add_method(method.ref)
                if method.code is None:
                    continue
                for insn in method.code._insns:
                    if isinstance(insn.ref, MethodRef):
                        add_method(insn.ref)
                    elif isinstance(insn.ref, FieldRef):
                        add_field(insn.ref)
                    elif insn.kind == "const-string":
                        assert insn.ref is not None
                        strings.add(insn.ref)
                    elif insn.ref is not None:
                        types.add(insn.ref)
        for ret, params in protos:
            types.add(ret)
            types.update(params)
            strings.add(_shorty(ret) + "".join(_shorty(p) for p in params))
        strings.update(types)
        for label, count, limit in (
            ("strings", len(strings), MAX_STRINGS),
            ("types", len(types), MAX_INDEX16),
            ("prototypes", len(protos), MAX_INDEX16),
            ("fields", len(fields), MAX_INDEX16),
            ("methods", len(methods), MAX_INDEX16),
        ):
            if count > limit:
                raise ManifestError(f"a DEX file holds at most {limit} {label}, not {count}")

        string_idx = {s: i for i, s in enumerate(sorted(strings, key=_utf16_key))}
        type_idx = {t: i for i, t in enumerate(sorted(types, key=string_idx.__getitem__))}

        def proto_key(proto: tuple[str, tuple[str, ...]]) -> tuple[int, list[int]]:
            return type_idx[proto[0]], [type_idx[p] for p in proto[1]]

        proto_idx = {p: i for i, p in enumerate(sorted(protos, key=proto_key))}
        field_idx = {
            f: i
            for i, f in enumerate(
                sorted(
                    fields,
                    key=lambda f: (type_idx[f.owner], string_idx[f.name], type_idx[f.type]),
                )
            )
        }
        method_idx = {
            m: i
            for i, m in enumerate(
                sorted(
                    methods,
                    key=lambda m: (
                        type_idx[m.owner],
                        string_idx[m.name],
                        proto_idx[(m.returns, m.params)],
                    ),
                )
            )
        }
        return _Index(string_idx, type_idx, proto_idx, field_idx, method_idx)

    def to_bytes(self) -> bytes:
        """The complete DEX file."""
        classes = self._ordered_classes()
        index = self._build_index(classes)
        strings = sorted(index.strings, key=index.strings.__getitem__)
        types = sorted(index.types, key=index.types.__getitem__)
        protos = sorted(index.protos, key=index.protos.__getitem__)
        fields = sorted(index.fields, key=index.fields.__getitem__)
        methods = sorted(index.methods, key=index.methods.__getitem__)

        # id sections, in file order
        offset = _HEADER_SIZE
        section_offsets: list[int] = []
        for count, item_size in (
            (len(strings), 4),
            (len(types), 4),
            (len(protos), 12),
            (len(fields), 8),
            (len(methods), 8),
            (len(classes), 32),
        ):
            section_offsets.append(offset if count else 0)
            offset += count * item_size
        data_off = offset
        data = bytearray()
        maps: list[tuple[int, int, int]] = [(_TYPE_HEADER, 1, 0)]
        for map_type, count, off in zip(
            (
                _TYPE_STRING_ID,
                _TYPE_TYPE_ID,
                _TYPE_PROTO_ID,
                _TYPE_FIELD_ID,
                _TYPE_METHOD_ID,
                _TYPE_CLASS_DEF,
            ),
            (len(strings), len(types), len(protos), len(fields), len(methods), len(classes)),
            section_offsets,
            strict=True,
        ):
            if count:
                maps.append((map_type, count, off))

        def here() -> int:
            return data_off + len(data)

        # type lists: proto parameters and interfaces, shared when equal
        lists: set[tuple[int, ...]] = {
            tuple(index.types[p] for p in params) for _, params in protos if params
        }
        lists.update(
            tuple(index.types[i] for i in cls.interfaces) for cls in classes if cls.interfaces
        )
        list_offsets: dict[tuple[int, ...], int] = {}
        for type_list in sorted(lists):
            _align(data)
            list_offsets[type_list] = here()
            data += struct.pack(f"<I{len(type_list)}H", len(type_list), *type_list)
        if lists:
            maps.append((_TYPE_TYPE_LIST, len(lists), min(list_offsets.values())))

        # code items
        code_offsets: dict[MethodRef, int] = {}
        for cls in classes:
            for method in sorted(cls._methods.values(), key=lambda m: index.methods[m.ref]):
                if method.code is None:
                    continue
                registers, ins, outs, units = method.code._assemble(index)
                _align(data)
                code_offsets[method.ref] = here()
                data += struct.pack("<4HII", registers, ins, outs, 0, 0, len(units))
                data += struct.pack(f"<{len(units)}H", *units)
        if code_offsets:
            maps.append((_TYPE_CODE, len(code_offsets), min(code_offsets.values())))

        # string data
        string_offsets: list[int] = []
        if strings:
            maps.append((_TYPE_STRING_DATA, len(strings), here()))
        for value in strings:
            string_offsets.append(here())
            length, encoded = _mutf8(value)
            data += uleb128(length) + encoded + b"\0"

        # class data
        class_data_offsets: dict[str, int] = {}
        for cls in classes:
            blob = _class_data(cls, index, code_offsets)
            if blob:
                class_data_offsets[cls.descriptor] = here()
                data += blob
        if class_data_offsets:
            maps.append(
                (_TYPE_CLASS_DATA, len(class_data_offsets), min(class_data_offsets.values()))
            )

        # map list, last
        _align(data)
        map_off = here()
        maps.append((_TYPE_MAP_LIST, 1, map_off))
        data += struct.pack("<I", len(maps))
        for map_type, count, off in maps:
            data += struct.pack("<HHII", map_type, 0, count, off)

        file_size = data_off + len(data)
        if file_size > 0xFFFFFFFF:
            raise ManifestError(f"DEX file of {file_size} bytes exceeds the 4 GiB format limit")

        ids = bytearray()
        ids += struct.pack(f"<{len(strings)}I", *string_offsets)
        ids += struct.pack(f"<{len(types)}I", *(index.strings[t] for t in types))
        for ret, params in protos:
            shorty = _shorty(ret) + "".join(_shorty(p) for p in params)
            params_off = list_offsets[tuple(index.types[p] for p in params)] if params else 0
            ids += struct.pack("<III", index.strings[shorty], index.types[ret], params_off)
        for fld in fields:
            ids += struct.pack(
                "<HHI", index.types[fld.owner], index.types[fld.type], index.strings[fld.name]
            )
        for mth in methods:
            ids += struct.pack(
                "<HHI",
                index.types[mth.owner],
                index.protos[(mth.returns, mth.params)],
                index.strings[mth.name],
            )
        for cls in classes:
            ids += struct.pack(
                "<8I",
                index.types[cls.descriptor],
                cls.access,
                _NO_INDEX if cls.superclass is None else index.types[cls.superclass],
                list_offsets[tuple(index.types[i] for i in cls.interfaces)]
                if cls.interfaces
                else 0,
                _NO_INDEX if cls.source_file is None else index.strings[cls.source_file],
                0,
                class_data_offsets.get(cls.descriptor, 0),
                0,
            )
        assert _HEADER_SIZE + len(ids) == data_off

        header = struct.pack(
            "<8s4x20s20I",
            DEX_MAGIC,
            b"",
            file_size,
            _HEADER_SIZE,
            _ENDIAN_CONSTANT,
            0,
            0,
            map_off,
            len(strings),
            section_offsets[0],
            len(types),
            section_offsets[1],
            len(protos),
            section_offsets[2],
            len(fields),
            section_offsets[3],
            len(methods),
            section_offsets[4],
            len(classes),
            section_offsets[5],
            len(data),
            data_off,
        )
        out = bytearray(header + ids + data)
        out[12:32] = hashlib.sha1(out[32:]).digest()
        out[8:12] = struct.pack("<I", zlib.adler32(out[12:]))
        return bytes(out)


def _class_data(cls: ClassBuilder, index: _Index, code_offsets: dict[MethodRef, int]) -> bytes:
    """The class_data_item of a class, or nothing when it has no members."""
    fields = sorted(cls._fields.values(), key=lambda f: index.fields[f.ref])
    methods = sorted(cls._methods.values(), key=lambda m: index.methods[m.ref])
    static_fields = [f for f in fields if f.access & ACC_STATIC]
    instance_fields = [f for f in fields if not f.access & ACC_STATIC]
    direct = [m for m in methods if m.direct]
    virtual = [m for m in methods if not m.direct]
    if not fields and not methods:
        return b""
    out = bytearray()
    for count in (len(static_fields), len(instance_fields), len(direct), len(virtual)):
        out += uleb128(count)
    for group in (static_fields, instance_fields):
        previous = 0
        for fld in group:
            idx = index.fields[fld.ref]
            out += uleb128(idx - previous) + uleb128(fld.access)
            previous = idx
    for group_m in (direct, virtual):
        previous = 0
        for method in group_m:
            idx = index.methods[method.ref]
            out += uleb128(idx - previous) + uleb128(method.access)
            out += uleb128(code_offsets.get(method.ref, 0))
            previous = idx
    return bytes(out)

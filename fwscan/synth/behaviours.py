"""Behaviours planted in synthesized apps, compiled to Dalvik bytecode with :mod:`fwscan.synth.dex`.

A behaviour is an :class:`Action`: read device identifiers through their real Android APIs, join
them into one payload and hand it to a sink (network, SMS, screen, log, socket, file). The
bytecode is what javac and d8 would make of the equivalent Java, so a firmware analyser sees
the same calls, descriptors and register flows as in a real app.

The scheme, for every app built by :func:`build_app_dex`:

* Every :class:`Component` is a public class extending its Android superclass, with a public
  ``<init>()V`` that calls the superclass constructor, and the lifecycle methods of its kind:
  Activity ``onCreate(Landroid/os/Bundle;)V`` (calls ``super.onCreate``), Service ``onCreate()V``
  (calls ``super.onCreate``) and ``onBind(Landroid/content/Intent;)Landroid/os/IBinder;``
  (returns null), Application ``onCreate()V`` (calls ``super.onCreate``), BroadcastReceiver
  ``onReceive(Landroid/content/Context;Landroid/content/Intent;)V``. The lifecycle method
  (``onCreate`` or ``onReceive``) calls, in order, every action method declared on the class,
  passing the component itself as the Context (the ``context`` argument for a receiver).
* Every action is a public instance method ``void <method>(android.content.Context)`` on the
  class named by :attr:`Action.class_name`. A class that is not a component extends
  ``java.lang.Object``, has a public ``<init>()V`` and nothing calls its action methods.
* The action method first calls ``System.loadLibrary`` when asked (and the class declares
  ``private native void native<Method>()``), then loads the extra strings with
  ``const-string``. Each identifier read is appended to one ``java.lang.StringBuilder`` whose
  ``toString()`` is the payload given to the sink. With no sink, the payload is stored in the
  private field ``String <method>$value`` of the class.
* With :attr:`Action.via_helper`, the action method calls the private method
  ``void <method>$deliver(Context)``, which calls the private method
  ``String <method>$collect(Context)``: the reads happen in ``$collect``, the payload comes back
  as its return value and the sink (or the field store) happens in ``$deliver``. Both calls are
  ``invoke-direct``, so the read is two calls below the action method.
* A location may be null: the code tests it with ``if-eqz`` and appends ``"none"`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fwscan.errors import ManifestError
from fwscan.synth.dex import (
    ACC_NATIVE,
    ACC_PRIVATE,
    ACC_PROTECTED,
    ACC_PUBLIC,
    ClassBuilder,
    Code,
    DexBuilder,
    InvokeKind,
    MethodRef,
    Reg,
    class_descriptor,
)

IDENTIFIERS: tuple[str, ...] = (
    "imei",
    "device_id",
    "meid",
    "iccid",
    "imsi",
    "phone_number",
    "cell_id",
    "lac",
    "serial",
    "android_id",
    "mac",
    "location",
    "installed_apps",
    "accounts",
)
"""The identifiers an action can read."""

SINKS: tuple[str, ...] = (
    "http_post",
    "http_get",
    "sms",
    "display",
    "log",
    "socket",
    "file",
    "broadcast",
)
"""Where an action can send what it read."""

MAX_ACTION_ITEMS = 64
"""Most reads, or extra strings, one action may list."""

_JAVA_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*")
_METHOD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LIBRARY_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,128}")
_TARGET_LIMIT = 4096

_CONTEXT = "Landroid/content/Context;"
_STRING = "Ljava/lang/String;"
_BUILDER = "Ljava/lang/StringBuilder;"


def _m(spec: str) -> MethodRef:
    return MethodRef.parse(spec)


_GET_SYSTEM_SERVICE = _m(f"{_CONTEXT}->getSystemService({_STRING})Ljava/lang/Object;")
_TELEPHONY = "Landroid/telephony/TelephonyManager;"
_TELEPHONY_GETTERS: dict[str, str] = {
    "imei": "getImei",
    "device_id": "getDeviceId",
    "meid": "getMeid",
    "iccid": "getSimSerialNumber",
    "imsi": "getSubscriberId",
    "phone_number": "getLine1Number",
}
_CELL_GETTERS: dict[str, str] = {"cell_id": "getCid", "lac": "getLac"}
_GSM_CELL = "Landroid/telephony/gsm/GsmCellLocation;"
_APPEND_STRING = _m(f"{_BUILDER}->append({_STRING}){_BUILDER}")
_APPEND_INT = _m(f"{_BUILDER}->append(I){_BUILDER}")
_APPEND_DOUBLE = _m(f"{_BUILDER}->append(D){_BUILDER}")
_BUILDER_INIT = _m(f"{_BUILDER}-><init>()V")
_TO_STRING = _m(f"{_BUILDER}->toString(){_STRING}")
_GET_BYTES = _m(f"{_STRING}->getBytes()[B")
_HTTP = "Ljava/net/HttpURLConnection;"
_URL = "Ljava/net/URL;"


@dataclass(frozen=True)
class Action:
    """One planted behaviour: a method that reads identifiers and sends them somewhere."""

    class_name: str
    """Dotted Java name of the class that declares the method."""
    method: str
    """Name of the action method (a Java identifier without ``$``)."""
    reads: tuple[str, ...] = ()
    """Identifiers read (from :data:`IDENTIFIERS`), each through its real Android API."""
    sink: str | None = None
    """Where the payload goes (one of :data:`SINKS`), or ``None`` to keep it in a field."""
    target: str | None = None
    """URL for ``http_*``, ``host:port`` for ``socket``, number for ``sms``, tag for ``log``,
    path for ``file``, intent action for ``broadcast``; ``None`` for ``display`` and for no
    sink."""
    strings: tuple[str, ...] = ()
    """Extra string constants the method loads with ``const-string`` (benign URLs, ...)."""
    load_library: str | None = None
    """A native library loaded with ``System.loadLibrary``; a native method is declared too."""
    via_helper: bool = False
    """Read in one helper method and send from another, two direct calls below the action."""

    def __post_init__(self) -> None:
        where = f"action {self.class_name}.{self.method}"
        if not _JAVA_NAME.fullmatch(self.class_name):
            raise ManifestError(f"{where}: class_name is not a dotted Java name")
        if not _METHOD_NAME.fullmatch(self.method):
            raise ManifestError(f"{where}: method is not a Java identifier")
        if len(self.reads) > MAX_ACTION_ITEMS or len(self.strings) > MAX_ACTION_ITEMS:
            raise ManifestError(f"{where}: more than {MAX_ACTION_ITEMS} reads or strings")
        for read in self.reads:
            if read not in IDENTIFIERS:
                raise ManifestError(f"{where}: reads: unknown identifier {read!r}")
        if self.sink is not None and self.sink not in SINKS:
            raise ManifestError(f"{where}: sink: unknown sink {self.sink!r}")
        if self.sink in (None, "display"):
            if self.target is not None:
                raise ManifestError(f"{where}: target: sink {self.sink} takes no target")
        elif not self.target or len(self.target) > _TARGET_LIMIT:
            raise ManifestError(f"{where}: target: sink {self.sink} needs a target")
        if self.sink in ("http_post", "http_get") and not str(self.target).startswith(
            ("http://", "https://")
        ):
            raise ManifestError(f"{where}: target: not an http(s) URL")
        if self.sink == "socket":
            _host_port(str(self.target), where)
        if self.load_library is not None and not _LIBRARY_NAME.fullmatch(self.load_library):
            raise ManifestError(f"{where}: load_library: invalid library name")
        if any(len(s) > _TARGET_LIMIT for s in self.strings):
            raise ManifestError(f"{where}: strings: a string is longer than {_TARGET_LIMIT}")


_LIFECYCLE: dict[str, str] = {
    "android.app.Activity": "activity",
    "android.app.Service": "service",
    "android.app.Application": "application",
    "android.content.BroadcastReceiver": "receiver",
}


@dataclass(frozen=True)
class Component:
    """An app component: a class extending one of the Android component classes."""

    class_name: str
    """Dotted Java name of the component class."""
    superclass: str
    """``android.app.Activity``, ``android.app.Service``, ``android.app.Application`` or
    ``android.content.BroadcastReceiver``."""

    def __post_init__(self) -> None:
        if not _JAVA_NAME.fullmatch(self.class_name):
            raise ManifestError(f"component {self.class_name!r}: not a dotted Java name")
        if self.superclass not in _LIFECYCLE:
            raise ManifestError(
                f"component {self.class_name}: superclass {self.superclass!r} is not one of "
                + ", ".join(_LIFECYCLE)
            )


def _host_port(target: str, where: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ManifestError(f"{where}: target: {target!r} is not host:port")
    return host, int(port)


def _source_file(java_name: str) -> str:
    return java_name.rsplit(".", 1)[-1].split("$", 1)[0] + ".java"


class _Regs:
    """The locals of one generated method, one per role, taken on first use."""

    def __init__(self, code: Code) -> None:
        self._code = code
        self._taken: dict[str, Reg] = {}

    def __getitem__(self, role: str) -> Reg:
        if role not in self._taken:
            self._taken[role] = self._code.local(wide=role == "wide")
        return self._taken[role]


class _ActionWriter:
    """Writes the methods of one action into its class."""

    def __init__(self, cls: ClassBuilder, action: Action) -> None:
        self._cls = cls
        self._action = action
        self._labels = 0

    def write(self) -> MethodRef:
        """Declare the action method (and its helpers); its reference."""
        action, cls = self._action, self._cls
        code = cls.add_method(action.method, (_CONTEXT,), "V", ACC_PUBLIC)
        regs = _Regs(code)
        if action.load_library is not None:
            cls.declare_method(
                "native" + action.method[0].upper() + action.method[1:],
                (),
                "V",
                ACC_PRIVATE | ACC_NATIVE,
            )
            code.const_string(regs["text"], action.load_library)
            code.invoke("static", _m(f"Ljava/lang/System;->loadLibrary({_STRING})V"), regs["text"])
        for value in action.strings:
            code.const_string(regs["text"], value)
        if action.via_helper:
            deliver = cls.add_method(f"{action.method}$deliver", (_CONTEXT,), "V", ACC_PRIVATE)
            collect = cls.add_method(f"{action.method}$collect", (_CONTEXT,), _STRING, ACC_PRIVATE)
            code.invoke("direct", deliver.ref, code.this, code.param(0))
            code.return_void()
            deliver_regs = _Regs(deliver)
            deliver.invoke("direct", collect.ref, deliver.this, deliver.param(0))
            deliver.move_result_object(deliver_regs["payload"])
            self._deliver(deliver, deliver_regs, deliver_regs["payload"])
            deliver.return_void()
            collect_regs = _Regs(collect)
            self._collect(collect, collect_regs)
            collect.return_object(collect_regs["payload"])
        else:
            if action.reads or action.sink is not None:
                self._collect(code, regs)
                self._deliver(code, regs, regs["payload"])
            code.return_void()
        return code.ref

    # reads

    def _collect(self, code: Code, regs: _Regs) -> None:
        """Append every read to a new StringBuilder; its text ends in ``regs["payload"]``."""
        builder = regs["builder"]
        code.new_instance(builder, _BUILDER)
        code.invoke("direct", _BUILDER_INIT, builder)
        for read in self._action.reads:
            self._read(code, regs, read)
        code.invoke("virtual", _TO_STRING, builder)
        code.move_result_object(regs["payload"])

    def _service(self, code: Code, regs: _Regs, name: str, manager: str) -> Reg:
        """``(Manager) context.getSystemService(name)``, in ``regs["object"]``."""
        code.const_string(regs["text"], name)
        code.invoke("virtual", _GET_SYSTEM_SERVICE, code.param(0), regs["text"])
        code.move_result_object(regs["object"])
        code.check_cast(regs["object"], manager)
        return regs["object"]

    @staticmethod
    def _call(
        code: Code, kind: InvokeKind, method: MethodRef | str, *args: Reg, result: Reg
    ) -> None:
        """Invoke a method and move its result into ``result``."""
        ref = _m(method) if isinstance(method, str) else method
        code.invoke(kind, ref, *args)
        if ref.returns[0] in "L[":
            code.move_result_object(result)
        else:
            code.move_result(result)

    def _read(self, code: Code, regs: _Regs, read: str) -> None:
        """Read one identifier and append it to ``regs["builder"]``."""
        builder, value, context = regs["builder"], regs["value"], code.param(0)
        if read in _TELEPHONY_GETTERS:
            manager = self._service(code, regs, "phone", _TELEPHONY)
            getter = _TELEPHONY_GETTERS[read]
            self._call(code, "virtual", f"{_TELEPHONY}->{getter}(){_STRING}", manager, result=value)
        elif read in _CELL_GETTERS:
            manager = self._service(code, regs, "phone", _TELEPHONY)
            spec = f"{_TELEPHONY}->getCellLocation()Landroid/telephony/CellLocation;"
            self._call(code, "virtual", spec, manager, result=value)
            code.check_cast(value, _GSM_CELL)
            spec = f"{_GSM_CELL}->{_CELL_GETTERS[read]}()I"
            self._call(code, "virtual", spec, value, result=regs["number"])
            code.invoke("virtual", _APPEND_INT, builder, regs["number"])
            return
        elif read == "serial":
            self._call(code, "static", f"Landroid/os/Build;->getSerial(){_STRING}", result=value)
        elif read == "android_id":
            resolver = "Landroid/content/ContentResolver;"
            spec = f"{_CONTEXT}->getContentResolver(){resolver}"
            self._call(code, "virtual", spec, context, result=regs["object"])
            code.const_string(regs["text"], "android_id")
            spec = f"Landroid/provider/Settings$Secure;->getString({resolver}{_STRING}){_STRING}"
            self._call(code, "static", spec, regs["object"], regs["text"], result=value)
        elif read == "mac":
            wifi = self._service(code, regs, "wifi", "Landroid/net/wifi/WifiManager;")
            info = "Landroid/net/wifi/WifiInfo;"
            spec = f"Landroid/net/wifi/WifiManager;->getConnectionInfo(){info}"
            self._call(code, "virtual", spec, wifi, result=value)
            self._call(code, "virtual", f"{info}->getMacAddress(){_STRING}", value, result=value)
        elif read == "location":
            self._read_location(code, regs)
            return
        elif read == "installed_apps":
            manager_type = "Landroid/content/pm/PackageManager;"
            spec = f"{_CONTEXT}->getPackageManager(){manager_type}"
            self._call(code, "virtual", spec, context, result=regs["object"])
            code.const(regs["number"], 0)
            spec = f"{manager_type}->getInstalledPackages(I)Ljava/util/List;"
            self._call(code, "virtual", spec, regs["object"], regs["number"], result=value)
            spec = f"Ljava/lang/Object;->toString(){_STRING}"
            self._call(code, "virtual", spec, value, result=value)
        else:
            assert read == "accounts"
            manager_type = "Landroid/accounts/AccountManager;"
            spec = f"{manager_type}->get({_CONTEXT}){manager_type}"
            self._call(code, "static", spec, context, result=regs["object"])
            spec = f"{manager_type}->getAccounts()[Landroid/accounts/Account;"
            self._call(code, "virtual", spec, regs["object"], result=value)
            spec = f"Ljava/util/Arrays;->toString([Ljava/lang/Object;){_STRING}"
            self._call(code, "static", spec, value, result=value)
        code.invoke("virtual", _APPEND_STRING, builder, value)

    def _read_location(self, code: Code, regs: _Regs) -> None:
        """Append latitude and longitude of the last GPS fix, or ``"none"`` when there is none."""
        builder, value, wide = regs["builder"], regs["value"], regs["wide"]
        location = "Landroid/location/Location;"
        manager = self._service(code, regs, "location", "Landroid/location/LocationManager;")
        code.const_string(regs["text"], "gps")
        spec = f"Landroid/location/LocationManager;->getLastKnownLocation({_STRING}){location}"
        self._call(code, "virtual", spec, manager, regs["text"], result=value)
        self._labels += 1
        missing, done = f"no_location_{self._labels}", f"location_done_{self._labels}"
        code.if_zero("eq", value, missing)
        for getter in ("getLatitude", "getLongitude"):
            self._call(code, "virtual", f"{location}->{getter}()D", value, result=wide)
            code.invoke("virtual", _APPEND_DOUBLE, builder, wide)
        code.goto(done)
        code.label(missing)
        code.const_string(regs["text"], "none")
        code.invoke("virtual", _APPEND_STRING, builder, regs["text"])
        code.label(done)

    # sinks

    def _deliver(self, code: Code, regs: _Regs, payload: Reg) -> None:
        """Hand ``payload`` to the action's sink, or store it in a field when there is none."""
        sink = self._action.sink
        if sink is None:
            field = self._cls.add_field(f"{self._action.method}$value", _STRING, ACC_PRIVATE)
            code.iput(payload, code.this, field)
            return
        writers: dict[str, Callable[[Code, _Regs, Reg], None]] = {
            "http_post": self._http_post,
            "http_get": self._http_get,
            "sms": self._sms,
            "display": self._display,
            "log": self._log,
            "socket": self._socket,
            "file": self._file,
            "broadcast": self._broadcast,
        }
        writers[sink](code, regs, payload)

    @property
    def _target(self) -> str:
        assert self._action.target is not None
        return self._action.target

    def _open(self, code: Code, regs: _Regs, url: Reg) -> Reg:
        """``(HttpURLConnection) new URL(url).openConnection()``, in ``regs["value"]``."""
        connection = regs["value"]
        code.new_instance(regs["object"], _URL)
        code.invoke("direct", _m(f"{_URL}-><init>({_STRING})V"), regs["object"], url)
        spec = f"{_URL}->openConnection()Ljava/net/URLConnection;"
        self._call(code, "virtual", spec, regs["object"], result=connection)
        code.check_cast(connection, _HTTP)
        return connection

    def _write(self, code: Code, regs: _Regs, stream_owner: str, stream: Reg, payload: Reg) -> None:
        """``stream.write(payload.getBytes()); stream.close()``."""
        self._call(code, "virtual", _GET_BYTES, payload, result=regs["bytes"])
        code.invoke("virtual", _m(f"{stream_owner}->write([B)V"), stream, regs["bytes"])
        code.invoke("virtual", _m(f"{stream_owner}->close()V"), stream)

    def _http_post(self, code: Code, regs: _Regs, payload: Reg) -> None:
        code.const_string(regs["text"], self._target)
        connection = self._open(code, regs, regs["text"])
        code.const_string(regs["text"], "POST")
        spec = f"{_HTTP}->setRequestMethod({_STRING})V"
        code.invoke("virtual", _m(spec), connection, regs["text"])
        code.const(regs["number"], 1)
        code.invoke("virtual", _m(f"{_HTTP}->setDoOutput(Z)V"), connection, regs["number"])
        stream = "Ljava/io/OutputStream;"
        spec = f"{_HTTP}->getOutputStream(){stream}"
        self._call(code, "virtual", spec, connection, result=regs["object"])
        self._write(code, regs, stream, regs["object"], payload)

    def _http_get(self, code: Code, regs: _Regs, payload: Reg) -> None:
        url = regs["builder"]
        code.new_instance(url, _BUILDER)
        code.invoke("direct", _BUILDER_INIT, url)
        code.const_string(regs["text"], self._target)
        code.invoke("virtual", _APPEND_STRING, url, regs["text"])
        code.invoke("virtual", _APPEND_STRING, url, payload)
        self._call(code, "virtual", _TO_STRING, url, result=regs["text"])
        connection = self._open(code, regs, regs["text"])
        stream = "Ljava/io/InputStream;"
        spec = f"{_HTTP}->getInputStream(){stream}"
        self._call(code, "virtual", spec, connection, result=regs["object"])
        code.invoke("virtual", _m(f"{stream}->close()V"), regs["object"])

    def _sms(self, code: Code, regs: _Regs, payload: Reg) -> None:
        # sendTextMessage takes six argument words: they must sit in consecutive registers.
        block = [code.local() for _ in range(6)]
        manager = "Landroid/telephony/SmsManager;"
        self._call(code, "static", f"{manager}->getDefault(){manager}", result=block[0])
        code.const_string(block[1], self._target)
        code.const(block[2], 0)
        code.move_object(block[3], payload)
        code.const(block[4], 0)
        code.const(block[5], 0)
        intent = "Landroid/app/PendingIntent;"
        spec = f"{manager}->sendTextMessage({_STRING}{_STRING}{_STRING}{intent}{intent})V"
        code.invoke("virtual", _m(spec), *block)

    def _display(self, code: Code, regs: _Regs, payload: Reg) -> None:
        view = "Landroid/widget/TextView;"
        code.new_instance(regs["object"], view)
        code.invoke("direct", _m(f"{view}-><init>({_CONTEXT})V"), regs["object"], code.param(0))
        spec = f"{view}->setText(Ljava/lang/CharSequence;)V"
        code.invoke("virtual", _m(spec), regs["object"], payload)

    def _log(self, code: Code, regs: _Regs, payload: Reg) -> None:
        code.const_string(regs["text"], self._target)
        spec = f"Landroid/util/Log;->d({_STRING}{_STRING})I"
        self._call(code, "static", spec, regs["text"], payload, result=regs["number"])

    def _socket(self, code: Code, regs: _Regs, payload: Reg) -> None:
        host, port = _host_port(self._target, self._action.method)
        socket = "Ljava/net/Socket;"
        code.new_instance(regs["object"], socket)
        code.const_string(regs["text"], host)
        code.const(regs["number"], port)
        spec = f"{socket}-><init>({_STRING}I)V"
        code.invoke("direct", _m(spec), regs["object"], regs["text"], regs["number"])
        stream = "Ljava/io/OutputStream;"
        spec = f"{socket}->getOutputStream(){stream}"
        self._call(code, "virtual", spec, regs["object"], result=regs["value"])
        self._write(code, regs, stream, regs["value"], payload)
        code.invoke("virtual", _m(f"{socket}->close()V"), regs["object"])

    def _file(self, code: Code, regs: _Regs, payload: Reg) -> None:
        stream = "Ljava/io/FileOutputStream;"
        code.new_instance(regs["object"], stream)
        code.const_string(regs["text"], self._target)
        code.invoke("direct", _m(f"{stream}-><init>({_STRING})V"), regs["object"], regs["text"])
        self._write(code, regs, stream, regs["object"], payload)

    def _broadcast(self, code: Code, regs: _Regs, payload: Reg) -> None:
        """``Intent i = new Intent(action); i.putExtra("data", payload);
        context.sendBroadcast(i)``: an inter-process sink."""
        intent = "Landroid/content/Intent;"
        code.new_instance(regs["object"], intent)
        code.const_string(regs["text"], self._target)
        code.invoke("direct", _m(f"{intent}-><init>({_STRING})V"), regs["object"], regs["text"])
        code.const_string(regs["text"], "data")
        spec = f"{intent}->putExtra({_STRING}{_STRING}){intent}"
        code.invoke("virtual", _m(spec), regs["object"], regs["text"], payload)
        spec = f"{_CONTEXT}->sendBroadcast({intent})V"
        code.invoke("virtual", _m(spec), code.param(0), regs["object"])


def _lifecycle(cls: ClassBuilder, superclass: str, actions: Sequence[MethodRef]) -> None:
    """The lifecycle methods of a component; the entry one calls ``actions`` in order."""
    kind = _LIFECYCLE[superclass]
    super_type = class_descriptor(superclass)
    intent = "Landroid/content/Intent;"
    if kind == "receiver":
        code = cls.add_method("onReceive", (_CONTEXT, intent), "V", ACC_PUBLIC)
        context = code.param(0)
    else:
        params = ("Landroid/os/Bundle;",) if kind == "activity" else ()
        code = cls.add_method("onCreate", params, "V", ACC_PROTECTED if params else ACC_PUBLIC)
        state = [code.param(0)] if params else []
        code.invoke("super", MethodRef(super_type, "onCreate", params, "V"), code.this, *state)
        context = code.this
    for ref in actions:
        code.invoke("virtual", ref, code.this, context)
    code.return_void()
    if kind == "service":
        bind = cls.add_method("onBind", (intent,), "Landroid/os/IBinder;", ACC_PUBLIC)
        binder = bind.local()
        bind.const(binder, 0)
        bind.return_object(binder)


def build_app_dex(components: Sequence[Component], actions: Sequence[Action]) -> bytes:
    """The ``classes.dex`` of an app with these components and planted actions.

    Classes come in the order of ``components``, then of the first action naming each other
    class. The same arguments always give the same bytes.
    """
    if not components and not actions:
        raise ManifestError("an app's code needs at least one component or action")
    dex = DexBuilder()
    classes: dict[str, ClassBuilder] = {}
    for component in components:
        if component.class_name in classes:
            raise ManifestError(f"component {component.class_name} is listed twice")
        classes[component.class_name] = dex.add_class(
            class_descriptor(component.class_name),
            superclass=class_descriptor(component.superclass),
            source_file=_source_file(component.class_name),
        )
    for action in actions:
        if action.class_name not in classes:
            classes[action.class_name] = dex.add_class(
                class_descriptor(action.class_name), source_file=_source_file(action.class_name)
            )
    for cls in classes.values():
        assert cls.superclass is not None
        init = cls.add_method("<init>", (), "V", ACC_PUBLIC)
        init.invoke("direct", MethodRef(cls.superclass, "<init>", (), "V"), init.this)
        init.return_void()
    declared: dict[str, list[MethodRef]] = {}
    for action in actions:
        methods = declared.setdefault(action.class_name, [])
        if any(ref.name == action.method for ref in methods):
            raise ManifestError(f"action {action.class_name}.{action.method} is listed twice")
        methods.append(_ActionWriter(classes[action.class_name], action).write())
    for component in components:
        _lifecycle(
            classes[component.class_name],
            component.superclass,
            declared.get(component.class_name, []),
        )
    return dex.to_bytes()

"""Running one function over many items in worker processes, each task bounded in time and memory.

A hostile or huge artifact must not stop a scan: :func:`run_tasks` turns every way a task can go
wrong (an exception, a deadline passed, the address-space limit hit, the worker process dying)
into a :class:`TaskFailure` in that task's slot, and goes on with the other items.

Workers are started with the ``spawn`` method. ``fork`` is faster but copies a parent that may
hold thread pools (locks held by other threads stay locked forever in the child) and every open
descriptor, including the parent ends of other workers' pipes, so a worker would never see EOF.
``forkserver`` starts replacements faster (measured: about 7 ms against 37 ms for ``spawn``) but
keeps a process-wide server whose ``sys.path`` and preloaded modules are fixed at first use, and
makes workers its own children, so the parent can neither reap them nor be sure a process group
id is still theirs. Replacement workers are only needed after a timeout, a crash or a memory
failure, each of which already cost far more than the start-up.

Each worker calls :func:`os.setsid`, so the terminal's Ctrl-C reaches only the parent (which then
kills the workers) and a timed-out worker is killed together with any tool it started. On Linux
a worker is also killed when the parent dies without cleaning up (``SIGKILL``, ``SIGTERM``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import multiprocessing
import os
import pickle
import resource
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Literal, TypeVar

T = TypeVar("T")
R = TypeVar("R")

FailureKind = Literal["error", "timeout", "memory", "crash"]

_READY = b"ready"
"""The first message of every worker: its limits are in place and it waits for tasks."""
_MAX_MESSAGE = 1000
"""Longest :attr:`TaskFailure.message`; exception texts can quote whole inputs."""
_PR_SET_PDEATHSIG = 1
"""``prctl`` option of Linux: the signal a process gets when its parent dies."""
_SHUTDOWN_GRACE = 5.0
"""Seconds idle workers get to exit on their own at the end of a run before they are killed."""


@dataclass(frozen=True)
class TaskFailure:
    """Why a task produced no result. Stands in that task's slot of :func:`run_tasks`' list."""

    kind: FailureKind
    """``error`` (the function raised), ``timeout``, ``memory`` (``MemoryError``, usually the
    address-space limit) or ``crash`` (the worker process died: signal, ``os._exit``)."""
    message: str
    """One line, no traceback, e.g. ``ValueError: bad magic``."""


def run_tasks(
    func: Callable[[T], R],
    items: Sequence[T],
    *,
    jobs: int,
    timeout: float | None,
    memory_limit: int | None,
    on_done: Callable[[int], None] | None = None,
) -> list[R | TaskFailure]:
    """Apply ``func`` to every item; return the results (or failures) in the order of ``items``.

    ``jobs`` worker processes run at once (fewer if there are fewer items). ``timeout`` bounds
    the wall-clock seconds of each task, ``memory_limit`` the address space in bytes of each
    worker (``RLIMIT_AS``: it counts the interpreter and every mapping, not only the task's
    data). With ``jobs <= 1`` and neither bound, the tasks run in this process.

    ``func`` must be a module-level function; items and results must be picklable (an item or
    result that cannot be pickled becomes an ``error``). Workers are fresh interpreters that
    import ``func``'s module and the main script, which must therefore not start work when
    imported (``if __name__ == "__main__":``). ``on_done`` is called in this process with
    the number of tasks finished so far, after each one. On any exception, including
    ``KeyboardInterrupt``, every worker is killed before the exception propagates.

    Raises:
        RuntimeError: a worker process died before it was ready for tasks (``func``'s module
            cannot be imported in a fresh interpreter, or ``memory_limit`` is too small to
            start one). That is a fault of the setup, not of an item.
    """
    if not items:
        return []
    if jobs <= 1 and timeout is None and memory_limit is None:
        results: list[R | TaskFailure] = []
        for item in items:
            results.append(_guarded(functools.partial(func, item), None))
            if on_done is not None:
                on_done(len(results))
        return results
    pool = _Pool(func, items, min(max(jobs, 1), len(items)), timeout, memory_limit, on_done)
    return pool.run()


def _one_line(text: str) -> str:
    """``text`` on one line (line breaks become spaces), cut to :data:`_MAX_MESSAGE`."""
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"


def _describe(exc: BaseException) -> str:
    """``Type: message`` for an exception (only ``Type`` when the message is empty)."""
    text = str(exc)
    return _one_line(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _guarded(call: Callable[[], R], memory_limit: int | None) -> R | TaskFailure:
    """The result of ``call()``, or the failure it raised (``SystemExit`` included)."""
    try:
        return call()
    except MemoryError as exc:
        limit = "" if memory_limit is None else f" (address-space limit {memory_limit} bytes)"
        return TaskFailure("memory", _describe(exc) + limit)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - every failure belongs to its task
        return TaskFailure("error", _describe(exc))


def _worker_main(
    conn: Connection, func: Callable[[Any], Any], memory_limit: int | None, parent: int
) -> None:
    """The loop of a worker process: receive a pickled item, send back the pickled outcome.

    Returns (and so exits the process) when the parent closes its end of the pipe; is killed
    when the parent dies, even while it works on a task.
    """
    os.setsid()
    if sys.platform == "linux":
        # PR_SET_PDEATHSIG: SIGKILL when the parent (the thread that started us) ends.
        if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # it died before the prctl call
            return
    if memory_limit is not None:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = memory_limit if hard == resource.RLIM_INFINITY else min(memory_limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    conn.send_bytes(_READY)
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        outcome = _guarded(functools.partial(_apply, func, data), memory_limit)
        conn.send_bytes(outcome if isinstance(outcome, bytes) else _pickle(outcome, "failure"))


def _apply(func: Callable[[Any], Any], data: bytes) -> bytes:
    """``func`` applied to the item pickled in ``data``, its result pickled.

    Both (un)picklings happen here, so that their failures, ``MemoryError`` included, are the
    task's failure.
    """
    return _pickle(func(pickle.loads(data)), "result")  # noqa: S301 - sent by our parent


def _pickle(obj: object, what: str) -> bytes:
    """``obj`` pickled; any failure but ``MemoryError`` is a ``PicklingError`` naming ``what``."""
    try:
        return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    except MemoryError:
        raise
    except Exception as exc:  # pickling can raise anything
        raise pickle.PicklingError(f"cannot pickle the {what}: {_describe(exc)}") from exc


@dataclass
class _Worker:
    """The parent's view of one worker process."""

    process: BaseProcess
    conn: Connection
    ready: bool = False
    """The worker has sent :data:`_READY`; tasks are only sent to ready workers."""
    task: int | None = None
    """The index of the item it works on."""
    deadline: float = math.inf
    """``time.monotonic()`` value at which its task times out."""


class _Pool:
    """The worker processes of one :func:`run_tasks` call and the loop that feeds them."""

    def __init__(
        self,
        func: Callable[[Any], Any],
        items: Sequence[Any],
        size: int,
        timeout: float | None,
        memory_limit: int | None,
        on_done: Callable[[int], None] | None,
    ) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._func = func
        self._items = items
        self._size = size
        self._timeout = timeout
        self._memory_limit = memory_limit
        self._on_done = on_done
        self._workers: list[_Worker] = []
        self._next = 0
        """The index of the first item not yet sent to a worker."""
        self._results: dict[int, Any] = {}

    def run(self) -> list[Any]:
        """Every outcome in item order; the workers are gone when this returns or raises."""
        completed = False
        try:
            for _ in range(self._size):
                self._start()
            while len(self._results) < len(self._items):
                self._step()
            completed = True
        finally:
            self._shutdown(graceful=completed)
        return [self._results[i] for i in range(len(self._items))]

    def _start(self) -> None:
        """Start one more worker; it gets tasks once it has said it is ready."""
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker_main,
            args=(child_conn, self._func, self._memory_limit, os.getpid()),
            name="fwscan-worker",
        )
        try:
            process.start()
        finally:
            child_conn.close()
        self._workers.append(_Worker(process, parent_conn))

    def _step(self) -> None:
        """Feed idle workers, wait for a message, a death or the next deadline, handle it."""
        for worker in self._workers:
            if worker.ready and worker.task is None:
                self._dispatch(worker)
        deadlines = [w.deadline for w in self._workers if w.task is not None]
        wait_time = None
        if self._timeout is not None and deadlines:
            wait_time = max(0.0, min(deadlines) - time.monotonic())
        owners: dict[Any, _Worker] = {}
        for worker in self._workers:
            owners[worker.conn] = worker
            owners[worker.process.sentinel] = worker
        ready = wait(list(owners), wait_time)
        for worker in {id(owners[obj]): owners[obj] for obj in ready}.values():
            self._receive(worker)
        now = time.monotonic()
        for worker in list(self._workers):
            task = worker.task
            if task is not None and worker.deadline <= now:
                self._retire(worker)
                self._finish(task, TaskFailure("timeout", f"timed out after {self._timeout:g} s"))

    def _dispatch(self, worker: _Worker) -> None:
        """Send the next item that can be pickled to an idle worker."""
        while self._next < len(self._items):
            index = self._next
            self._next += 1
            try:
                payload = _pickle(self._items[index], "item")
            except pickle.PicklingError as exc:
                self._finish(index, TaskFailure("error", _describe(exc)))
                continue
            worker.task = index
            worker.deadline = time.monotonic() + (
                math.inf if self._timeout is None else self._timeout
            )
            # A worker that died meanwhile is found by its sentinel and its task becomes a crash.
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(payload)
            return

    def _receive(self, worker: _Worker) -> None:
        """Handle a worker whose pipe or sentinel is ready: its hello, its result or its death."""
        data = None
        if worker.conn.poll():
            with contextlib.suppress(EOFError, OSError):
                data = worker.conn.recv_bytes()
        if data is None:  # end of file on its pipe, or only its sentinel was ready: it died
            task = worker.task
            exitcode = self._retire(worker)
            if not worker.ready:
                raise RuntimeError(
                    f"a worker process failed to start ({_exit_text(exitcode)}); "
                    "is the function's module importable and the memory limit large enough?"
                )
            if task is not None:
                self._finish(task, TaskFailure("crash", f"worker {_exit_text(exitcode)}"))
        elif not worker.ready:
            worker.ready = True
        else:
            task, worker.task = worker.task, None
            assert task is not None
            try:
                outcome = pickle.loads(data)  # noqa: S301 - our own worker's message
            except Exception as exc:  # noqa: BLE001 - unpickling can raise anything
                outcome = TaskFailure("error", f"cannot unpickle the result: {_describe(exc)}")
            if isinstance(outcome, TaskFailure) and outcome.kind == "memory":
                # Its heap may stay near the limit, and an innocent next item would fail.
                self._retire(worker)
            self._finish(task, outcome)

    def _finish(self, index: int, outcome: Any) -> None:
        """Record the outcome of item ``index`` and report progress."""
        self._results[index] = outcome
        if self._on_done is not None:
            self._on_done(len(self._results))

    def _retire(self, worker: _Worker) -> int | None:
        """Kill and reap ``worker``, start a replacement if items are left; its exit code."""
        self._workers.remove(worker)
        exitcode = _kill(worker)
        if worker.ready and self._next < len(self._items):
            self._start()
        return exitcode

    def _shutdown(self, *, graceful: bool) -> None:
        """End every worker: when ``graceful`` by closing its pipe and waiting a while, and
        then (or at once) by ``SIGKILL``."""
        workers, self._workers = self._workers, []
        if graceful:
            for worker in workers:
                worker.conn.close()
            running = {w.process.sentinel for w in workers}
            deadline = time.monotonic() + _SHUTDOWN_GRACE
            while running and (left := deadline - time.monotonic()) > 0:
                running.difference_update(wait(list(running), left))
        for worker in workers:
            _kill(worker)


def _kill(worker: _Worker) -> int | None:
    """SIGKILL a worker (alive or not) and its process group, reap it, release its resources.

    The process group is killed before the worker is reaped: until then its id cannot name
    another process. Returns the worker's exit code (negative: the signal that ended it).
    """
    process = worker.process
    assert process.pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the worker's session, once it called setsid
    process.kill()  # in case it has not called setsid yet
    process.join()
    exitcode = process.exitcode
    process.close()
    worker.conn.close()
    return exitcode


def _exit_text(exitcode: int | None) -> str:
    """``exited with code 3`` or ``killed by signal 11 (Segmentation fault)``."""
    if exitcode is not None and exitcode < 0:
        name = signal.strsignal(-exitcode)
        return f"killed by signal {-exitcode}" + (f" ({name})" if name else "")
    return f"exited with code {exitcode}"

"""fwscan.workers with real worker processes: order, failures of every kind, no leftovers.

The task functions are defined here at module level: spawned workers import this module.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.resource_tracker
import os
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fwscan.workers import TaskFailure, run_tasks

MiB = 1 << 20
_hoard: list[bytearray] = []
"""Memory a task keeps after it failed, as a leaky native library would."""


def double(x: int) -> int:
    return 2 * x


def sleep_then_double(x: int) -> int:
    """Later items finish first, so results arrive out of order."""
    time.sleep(0.005 * (8 - x % 8))
    return 2 * x


def misbehave(x: int) -> object:
    """Fail in the way item ``x`` asks for; otherwise ``2 * x``."""
    if x == -1:
        raise ValueError("bad\nthing")
    if x == -2:
        time.sleep(60)
    if x == -3:
        os._exit(3)
    if x == -4:
        os.kill(os.getpid(), signal.SIGSEGV)
    if x == -5:
        return len(bytearray(1 << 30))
    if x == -6:
        return threading.Lock()  # cannot be pickled
    if x == -7:
        sys.exit(2)
    if x == -8:
        _hoard.append(bytearray(150 * MiB))
        return len(bytearray(1 << 30))
    if x == -9:
        return len(bytearray(150 * MiB))
    return 2 * x


def spawn_sleeper_and_hang(pid_file: str) -> None:
    """Start a grandchild process, record its pid, and outlive any timeout."""
    child = subprocess.Popen(["sleep", "60"])
    Path(pid_file).write_text(str(child.pid))
    time.sleep(60)


def record_pid_and_hang(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)


def _children() -> set[int]:
    """Pids of this process's children, zombies included, from /proc."""
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:
            found.add(int(entry))
    return found


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass; its last value."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def _fds() -> set[str]:
    """Descriptors of this process, with what they point to."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            continue  # the descriptor of the listing itself
    return found


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Each test leaves no child process (zombie or not) and no descriptor behind."""
    # The spawn start method keeps one resource tracker process (and a pipe to it) for good.
    multiprocessing.resource_tracker.ensure_running()
    children, fds = _children(), _fds()
    yield
    assert multiprocessing.active_children() == []
    assert _children() == children
    assert _fds() == fds


@pytest.mark.parametrize(("jobs", "timeout"), [(1, None), (1, 30.0), (2, 30.0), (4, None)])
def test_results_in_input_order(jobs: int, timeout: float | None) -> None:
    items = list(range(24))
    assert run_tasks(sleep_then_double, items, jobs=jobs, timeout=timeout, memory_limit=None) == [
        2 * x for x in items
    ]


def test_no_items() -> None:
    assert run_tasks(double, [], jobs=4, timeout=1.0, memory_limit=None) == []


@pytest.mark.parametrize("jobs", [1, 2])
def test_exception_becomes_error(jobs: int) -> None:
    results = run_tasks(misbehave, [1, -1, 2, -7, 3], jobs=jobs, timeout=None, memory_limit=None)
    assert results == [
        2,
        TaskFailure("error", "ValueError: bad thing"),
        4,
        TaskFailure("error", "SystemExit: 2"),
        6,
    ]


def test_timeout_kills_only_that_task() -> None:
    # The hung task sleeps 60 s: it is reported as a timeout and its worker is killed (the
    # leak fixture checks that no child process survives), while the others complete.
    results = run_tasks(misbehave, [1, -2, 2, 3, 4], jobs=2, timeout=1.0, memory_limit=None)
    assert results == [2, TaskFailure("timeout", "timed out after 1 s"), 4, 6, 8]


def test_timeout_kills_processes_the_task_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    results = run_tasks(
        spawn_sleeper_and_hang, [str(pid_file)], jobs=1, timeout=2.0, memory_limit=None
    )
    assert results == [TaskFailure("timeout", "timed out after 2 s")]
    grandchild = int(pid_file.read_text())
    assert _wait_for(lambda: not _alive(grandchild), 10)


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")
def test_workers_die_with_their_parent(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = (
        "import sys, test_workers\n"
        "from fwscan.workers import run_tasks\n"
        "run_tasks(test_workers.record_pid_and_hang, [sys.argv[1]], jobs=1, timeout=120,"
        " memory_limit=None)\n"
    )
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), str(here.parent)])}
    parent = subprocess.Popen([sys.executable, "-c", code, str(pid_file)], env=env)
    try:
        assert _wait_for(lambda: pid_file.exists() and pid_file.read_text() != "", 30)
    finally:
        parent.kill()
        parent.wait()
    worker = int(pid_file.read_text())
    assert _wait_for(lambda: not _alive(worker), 10)


@pytest.mark.parametrize("item", [-5, -8])
def test_memory_limit(item: int) -> None:
    # One worker. Item -8 keeps 150 MiB after its failure: item -9 gets its 150 MiB only
    # because the worker is replaced after a memory failure.
    results = run_tasks(misbehave, [1, item, -9, 2], jobs=1, timeout=None, memory_limit=256 * MiB)
    assert results[0] == 2
    assert results[2:] == [150 * MiB, 4]
    failure = results[1]
    assert isinstance(failure, TaskFailure)
    assert failure.kind == "memory"
    assert failure.message == "MemoryError (address-space limit 268435456 bytes)"


@pytest.mark.parametrize(
    ("item", "message"),
    [(-3, "worker exited with code 3"), (-4, "worker killed by signal 11 (Segmentation fault)")],
)
def test_dead_worker_becomes_crash(item: int, message: str) -> None:
    results = run_tasks(misbehave, [1, item, 2, 3], jobs=1, timeout=30.0, memory_limit=None)
    assert results == [2, TaskFailure("crash", message), 4, 6]


def test_several_failures_with_several_workers() -> None:
    items = [-1, -2, -3, -4, -5, -6, *range(20)]
    results = run_tasks(misbehave, items, jobs=3, timeout=1.0, memory_limit=256 * MiB)
    kinds = [r.kind if isinstance(r, TaskFailure) else r for r in results]
    assert kinds == ["error", "timeout", "crash", "crash", "memory", "error"] + [
        2 * x for x in range(20)
    ]


def test_unpicklable_item_and_result() -> None:
    results = run_tasks(
        misbehave, [1, threading.Lock(), -6], jobs=2, timeout=None, memory_limit=None
    )
    assert results[0] == 2
    for failure, what in zip(results[1:], ["item", "result"], strict=True):
        assert failure == TaskFailure(
            "error",
            f"PicklingError: cannot pickle the {what}: "
            "TypeError: cannot pickle '_thread.lock' object",
        )


@pytest.mark.parametrize("jobs", [1, 3])
def test_on_done_counts_every_task(jobs: int) -> None:
    seen: list[int] = []
    run_tasks(
        misbehave, [1, -1, 2, 3], jobs=jobs, timeout=None, memory_limit=None, on_done=seen.append
    )
    assert seen == [1, 2, 3, 4]


def test_keyboard_interrupt_kills_workers() -> None:
    # A shell without job control starts background commands with SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_tasks(misbehave, [-2, -2, -2], jobs=3, timeout=None, memory_limit=None)
    finally:
        timer.join()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - start < 20


def test_worker_that_cannot_start() -> None:
    # The function pickles by reference here, but its module does not exist in a worker.
    module = types.ModuleType("fwscan_test_vanishing")
    exec("def f(x):\n    return x\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        with pytest.raises(RuntimeError, match="failed to start"):
            run_tasks(module.f, [1, 2], jobs=2, timeout=None, memory_limit=None)
    finally:
        del sys.modules[module.__name__]


def test_small_per_task_overhead() -> None:
    start = time.monotonic()
    results = run_tasks(double, list(range(1000)), jobs=2, timeout=30.0, memory_limit=None)
    assert results == [2 * x for x in range(1000)]
    assert time.monotonic() - start < 10

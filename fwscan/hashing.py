"""Read a partition's files on a second thread, ahead of the thread that hashes them.

Listing a partition costs two things per byte: decoding it (reading the image, decompressing,
Python bookkeeping per extent, the interpreter lock held most of the time) and hashing it
(OpenSSL's SHA-256, which releases the interpreter lock while it runs). :class:`ReadAhead`
reads the files of a partition, in order, on one background thread, gathered into blocks of
at least :data:`BLOCK` bytes (a small file is one block), and hands them to the caller, whose
``hash.update(block)`` runs while the thread decodes what follows: the two overlap on two
cores, across file boundaries.

The way round matters. With the decoder on the caller's thread and the hash on another, a
finished ``update`` must wait for the busy decoder to give up the interpreter lock, and no
time was saved (measured). Reading one file at a time on the thread, the caller waiting at
each file's start and end, saved nothing either (measured): the reader must run ahead across
files. Measured on a 1.1 GiB LZ4HC EROFS image (``benchmarks/formats_bench.py``, 2 cores): walk
plus SHA-256 of every file 1.5-1.6 s inline, about 1.0-1.1 s read ahead.

While a :class:`ReadAhead` runs, its thread alone uses the file system (the readers are not
thread-safe): anything else that needs the file system waits until it is closed. At most
:data:`MAX_PENDING` blocks wait at once, so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from types import TracebackType

from fwscan.unpack.base import FileSystem, FsEntry

BLOCK = 1 << 20
"""Bytes gathered into one block before it is handed over."""
MAX_PENDING = 8
"""Blocks (or whole small files) read and not yet taken, at most."""

_END = "end"
_BLOCK = "block"
_ERROR = "error"


class _StopError(Exception):
    """The consumer closed the read-ahead: the reading thread stops."""


class ReadAhead:
    """The contents of ``entries`` (regular files of ``fs``), read in order on a background
    thread. Take them in the same order with :meth:`next_file`; use as a context manager (the
    thread is started on entry, stopped and joined on exit)."""

    def __init__(self, fs: FileSystem, entries: Sequence[FsEntry]) -> None:
        self._fs = fs
        self._entries = list(entries)
        self._queue: queue.Queue[tuple[str, bytes | BaseException | None]] = queue.Queue(
            maxsize=MAX_PENDING
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="fwscan-read", daemon=True)
        self._taken = 0
        self._unfinished = False

    def __enter__(self) -> ReadAhead:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the thread and wait for it: the file system is the caller's again."""
        self._stop.set()
        if self._thread.is_alive() or self._thread.ident is not None:
            self._thread.join()

    def next_file(self) -> Iterator[bytes]:
        """The blocks of the next entry. An error met while reading it is raised here, where
        the stream stopped. A stream not read to its end is skipped when the next one is
        asked for (and can no longer be read)."""
        if self._taken >= len(self._entries):
            raise IndexError("no file left to read")
        if self._unfinished:
            self._skip_rest()
        self._taken += 1
        self._unfinished = True
        return self._stream(self._taken)

    def _get(self) -> tuple[str, bytes | BaseException | None]:
        while True:
            try:
                return self._queue.get(timeout=0.05)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the reading thread ended early") from None

    def _skip_rest(self) -> None:
        self._unfinished = False
        with contextlib.suppress(RuntimeError):
            while self._get()[0] not in (_END, _ERROR):
                pass

    def _stream(self, serial: int) -> Iterator[bytes]:
        while True:
            if serial != self._taken or not self._unfinished:
                raise RuntimeError("this file's stream was left for the next file")
            kind, payload = self._get()
            if kind == _END:
                self._unfinished = False
                return
            if kind == _ERROR:
                self._unfinished = False
                assert isinstance(payload, BaseException)
                raise payload
            assert isinstance(payload, bytes)
            yield payload

    def _put(self, kind: str, payload: bytes | BaseException | None) -> None:
        while True:
            if self._stop.is_set():
                raise _StopError
            with contextlib.suppress(queue.Full):
                self._queue.put((kind, payload), timeout=0.05)
                return

    def _read(self) -> None:
        try:
            for entry in self._entries:
                self._read_one(entry)
        except _StopError:
            return

    def _read_one(self, entry: FsEntry) -> None:
        parts: list[bytes] = []
        have = 0
        chunks = self._fs.iter_content(entry)
        try:
            for chunk in chunks:
                parts.append(chunk)
                have += len(chunk)
                if have >= BLOCK:
                    self._put(_BLOCK, parts[0] if len(parts) == 1 else b"".join(parts))
                    parts = []
                    have = 0
        except _StopError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(_ERROR, exc)
            return
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # the reader's clean-up runs on this thread, before the next file
        if parts:
            self._put(_BLOCK, parts[0] if len(parts) == 1 else b"".join(parts))
        self._put(_END, None)

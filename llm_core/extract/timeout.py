"""A wall-clock bound on one piece of pure-Python work that really interrupts it, on any thread.

trafilatura is pure Python, so a timeout that only stops waiting for it (a future's `result(timeout)`) cannot stop
it: the work would keep running, and keep its core, after the caller gave up. `time_limit` arms a timer instead;
when the bound passes, the timer's thread sets `DocumentTimeout` as the bounded thread's pending exception
(`PyThreadState_SetAsyncExc`), and the interpreter raises it there at the next bytecode boundary, the same points
where it runs a signal handler, which interrupts the running Python code. A long call inside C (one lxml parse) is
interrupted when it returns, which the size bound keeps short. Unlike a SIGALRM timer, this needs no main thread,
so the extract stage runs wherever its shard task runs (a thread of the orchestrator, a Dask worker's thread).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import time
from collections.abc import Iterator


class DocumentTimeout(Exception):
    """The work ran past its time bound and was interrupted."""


def _set_pending_exception(thread_id: int, exc: type[BaseException] | None) -> None:
    """Make `exc` the pending exception of a thread of this interpreter (None: clear a pending one)."""
    pending = None if exc is None else ctypes.py_object(exc)  # None is passed as NULL
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), pending)


class _Watchdog:
    """One daemon thread per process that sets `DocumentTimeout` in each bounded thread whose deadline passed.

    A bounded thread takes `_lock` only with `with self._lock:` on the C lock itself: the exception may be raised in
    it at any bytecode boundary, and only a C `__enter__` leaves none between taking the lock and the `with`'s
    release on the way out (`Condition.__enter__` is Python: raised there, the lock would stay held)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """No deadlines and no thread yet (also in a forked child, where the parent's thread does not exist)."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._deadlines: dict[int, float] = {}  # thread id -> monotonic deadline of its current block
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="time_limit", daemon=True)
                self._thread.start()
            self._deadlines[threading.get_ident()] = time.monotonic() + seconds
            self._changed.notify()

    def disarm(self) -> None:
        with self._lock:
            self._deadlines.pop(threading.get_ident(), None)
            _set_pending_exception(threading.get_ident(), None)  # set as the block ended: dropped

    def _watch(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for thread_id in [t for t, deadline in self._deadlines.items() if deadline <= now]:
                    del self._deadlines[thread_id]
                    _set_pending_exception(thread_id, DocumentTimeout)
                self._changed.wait(min(self._deadlines.values(), default=now + 3600) - now)


_watchdog = _Watchdog()
os.register_at_fork(after_in_child=_watchdog.reset)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `DocumentTimeout` in the block if it runs longer than `seconds` (blocks of one thread do not nest)."""
    try:
        _watchdog.arm(seconds)
        yield
    finally:
        _watchdog.disarm()

"""A wall-clock bound on one piece of pure-Python work, enforced with SIGALRM.

trafilatura is pure Python, so a thread-based timeout cannot stop it: the thread would keep running (and keep
its core) after the caller gave up. `signal.setitimer(ITIMER_REAL)` delivers SIGALRM to the process, and the
handler raises `DocumentTimeout` inside the running Python code at the next bytecode boundary, which really
interrupts it. A long call inside C (one lxml parse) is interrupted when it returns, which the size bound keeps
short.

Signals can only be handled in a process's main thread: `can_interrupt()` says whether this is the case. The
extract stage is therefore `main_thread_only`: called from a thread, its shards run in a pool process.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class DocumentTimeout(Exception):
    """The work ran past its time bound and was interrupted."""


def can_interrupt() -> bool:
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")


def _raise_timeout(signum: int, frame: object) -> None:
    raise DocumentTimeout


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `DocumentTimeout` in the block if it runs longer than `seconds` (main thread only)."""
    if not can_interrupt():
        raise RuntimeError("time_limit needs the main thread of a process (SIGALRM); run the work in a subprocess")
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

"""The web chat's generation worker: one thread owns every forward pass; requests wait in a bounded queue.

Concurrency is queued, not batched: the worker interleaves up to `max_active` replies token by token (one forward
pass of one reply per step, each reply with its own KV cache, round robin), so a new chat sees its first token
after at most one step of each active reply instead of after whole replies; total throughput is one reply's. Beyond
`max_active`, replies wait in a FIFO of at most `max_pending` (a submit past it raises `Busy`: the server answers
503 with the reason). A cancelled reply (its client went away, or pressed stop) is dropped before its next token,
whether it was running or still waiting.

Events of a reply, each a dict handed to its job's `emit` (from the worker thread) with the job's `tag` merged in:
`queued` (`ahead`: replies before it), `start`, `token` (`kind`, `text`: the characters added, `new`: a new segment,
see `stream_text`), then `done` (`message`, `stop`: "end" or "length", `tokens`) or `error` (`reason`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_core.chat.engine import Engine, SamplingParams, StreamToken
from llm_core.chat.stream_text import ReplyText

Event = dict[str, Any]


class Busy(RuntimeError):
    """The queue is full; the message says how full."""


@dataclass(eq=False)
class Job:
    """One reply to generate: the prompt's ids (already fitted to the model's context), sampling, and where its
    events go."""

    engine: Engine
    prompt: list[int]
    params: SamplingParams
    emit: Callable[[Event], None]
    seed: int | None = None
    tag: dict[str, Any] = field(default_factory=dict)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def send(self, event: Event) -> None:
        self.emit({**event, **self.tag})


class _Running:
    def __init__(self, job: Job):
        self.job = job
        self.text = ReplyText(job.engine.tokenizer)
        self.tokens: Iterator[StreamToken] = job.engine.stream(job.prompt, job.params, job.seed)


class GenerationQueue:
    """The worker thread and its queue (see the module docstring)."""

    def __init__(self, max_active: int = 4, max_pending: int = 16):
        assert max_active >= 1 and max_pending >= 0, "max_active must be >= 1 and max_pending >= 0"
        self.max_active, self.max_pending = max_active, max_pending
        self._pending: deque[Job] = deque()
        self._active: list[_Running] = []
        self._wake = threading.Condition()
        self._closed = False
        self.counts = {"done": 0, "cancelled": 0, "failed": 0}
        self._thread = threading.Thread(target=self._loop, name="llmpipe-web-engine", daemon=True)
        self._thread.start()

    def submit(self, jobs: Sequence[Job]) -> None:
        """Queue jobs together (an arena's two replies): all of them, or none and `Busy`."""
        with self._wake:
            if self._closed:
                raise Busy("the server is shutting down")
            self._drop_cancelled()
            if len(self._active) + len(self._pending) + len(jobs) > self.max_active + self.max_pending:
                raise Busy(f"server busy: {len(self._active)} replies are being written and {len(self._pending)} "
                           f"wait (at most {self.max_pending} may wait); try again in a moment")
            ahead = len(self._active) + len(self._pending)
            for i, job in enumerate(jobs):
                job.send({"type": "queued", "ahead": max(0, ahead + i - self.max_active + 1)})
                self._pending.append(job)
            self._wake.notify()

    def stats(self) -> dict[str, int]:
        with self._wake:
            return {"active": len(self._active), "pending": len(self._pending), "max_active": self.max_active,
                    "max_pending": self.max_pending, **self.counts}

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)

    def _drop_cancelled(self) -> None:
        """Waiting jobs whose client went away give their place up (called holding the lock)."""
        waiting = [job for job in self._pending if not job.cancelled.is_set()]
        self.counts["cancelled"] += len(self._pending) - len(waiting)
        self._pending = deque(waiting)

    def _admit(self) -> bool:
        """Move waiting jobs into the active set (blocking while there is nothing to do); False once closed."""
        with self._wake:
            while not self._closed and not self._active and not self._pending:
                self._wake.wait()
            if self._closed:
                return False
            self._drop_cancelled()
            while self._pending and len(self._active) < self.max_active:
                job = self._pending.popleft()
                self._active.append(_Running(job))
                job.send({"type": "start"})
            return True

    def _loop(self) -> None:
        while self._admit():
            for running in list(self._active):
                ended = self._step(running)
                if ended is not None:
                    outcome, last = ended
                    with self._wake:  # counted before the last event, so a client that saw it sees it counted
                        self._active.remove(running)
                        self.counts[outcome] += 1
                    if last is not None:
                        running.job.send(last)
        for running in self._active:
            running.tokens.close()

    def _step(self, running: _Running) -> tuple[str, Event | None] | None:
        """Advance one reply by a token; when it ended, the outcome (done, cancelled, failed) and its last event."""
        job = running.job
        if job.cancelled.is_set():
            running.tokens.close()
            return "cancelled", None
        try:
            token = next(running.tokens)
        except StopIteration:
            rest = running.text.rest()
            if rest is not None:
                job.send({"type": "token", "kind": rest.kind, "text": rest.text, "new": False})
            n = len(running.text.ids)
            stop = "end" if n < job.params.max_tokens else "length"
            return "done", {"type": "done", "message": running.text.message(), "stop": stop, "tokens": n}
        except Exception as e:  # noqa: BLE001 - one failing reply must not stop the others
            return "failed", {"type": "error", "reason": f"generation failed: {type(e).__name__}: {e}"}
        piece = running.text.push(token)
        if piece.text or piece.new_segment:
            job.send({"type": "token", "kind": piece.kind, "text": piece.text, "new": piece.new_segment})
        return None

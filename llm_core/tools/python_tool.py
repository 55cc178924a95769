"""The Python tool: runs the code a chat model wrote, in a sandbox, and returns what it printed, else the repr of its
last expression's value, as a Python REPL shows it (`347*29` -> `10063`, `'strawberry'.count('r')` -> `3`). A call
that fails returns `error: ...` (`error: SyntaxError: '(' was never closed (line 1)`, `error: timed out after 2 s`):
an output that starts with `error:` means the call failed, and nothing printed before the failure is shown.

How: a worker process (`sandbox_worker.py`, started on the first call and kept) forks one child per call. The child
lowers its resource limits, loads a seccomp filter and interprets the code with asteval, a restricted interpreter of
Python's AST; the worker kills it at the wall-clock limit. About 3 ms a call (median on 2 busy cores: fork, limits,
filter, a short expression); `bench/python_tool.py` measures it.

Threat model. The code is untrusted: a small model writes it, and a prompt can steer what it writes.
Defended against:
- Reaching anything beyond arithmetic, `math` and string operations: asteval evaluates the AST itself, with Python's
  plain builtins only (no `open`, `eval`, `exec`, `compile`, `getattr`, `__import__`, `globals`), no attribute
  that starts and ends with `__` nor any of its other unsafe attributes (`__subclasses__`, `gi_frame`, `str.format`,
  ...), and `import` limited to `math` and `string` (stand-ins holding their public names; the real `string`
  module's Formatter would reach attributes asteval refuses). Anything else is an `error: ...` the model reads.
- Running or allocating without bound: CPU seconds (RLIMIT_CPU), the wall clock (the worker kills the child's process
  group), memory (RLIMIT_AS: `memory_mb` beyond the interpreter's own address space), output (`max_chars`).
- A way out of asteval (a bug in it): the child still runs under a seccomp filter that refuses new processes and
  programs (fork, clone, execve: no fork bomb), sockets (no network), signals to other processes, ptrace,
  namespaces and mounts, opening any file (for reading too: what the code may use is loaded before the fork) and
  every change to the file system; its file-size limit is 0, it holds no descriptor but its result pipe, and its
  working directory is an empty temporary folder.
- Harm to the caller: the code runs in another process and answers through a pipe; a worker that dies or hangs is
  killed and replaced on the next call; the caller gets an `error: ...` text, never an exception.

Not defended against: kernel exploits (a deny-list filter on a shared kernel, not a VM or a container); metadata
of files (`stat` is allowed), once asteval is escaped; CPU contention (a call may use its whole CPU budget);
machines without seccomp (Linux with libseccomp): there asteval and the resource limits remain, and
`PythonTool.seccomp` is False. Running as root, RLIMIT_NPROC binds nothing; the filter is what stops a fork there.
A codec not loaded beforehand (`sandbox_worker.CODECS`) is an error: importing it would open a file.

Calls are deterministic: each child is a fresh copy of the same worker state, and the worker runs with
`PYTHONHASHSEED=0` (the order of a set of strings is the same in every run).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from llm_core.config import StrictModel
from llm_core.tools.base import ToolSpec, clip
from llm_core.tools.sandbox_worker import read_frame, write_frame

WORKER = Path(__file__).with_name("sandbox_worker.py")
START_TIMEOUT_S = 30.0  # a worker starts in a fraction of a second; this is for a machine under heavy load
GRACE_S = 5.0  # how long past the wall-clock limit the caller waits for the worker's own answer


class SandboxLimits(StrictModel):
    """What one Python tool call may use."""

    wall_s: float = Field(2.0, gt=0, le=600, description="wall-clock seconds before the call is killed")
    cpu_s: int = Field(1, ge=1, le=600, description="CPU seconds (whole seconds: RLIMIT_CPU's unit)")
    memory_mb: int = Field(256, ge=16, le=1 << 20, description="memory the code may allocate (MiB of address space)")
    max_chars: int = Field(500, ge=40, le=1_000_000, description="longest output; longer ones are cut, with a note")


class SandboxFailure(RuntimeError):
    """The worker process failed (did not start, died, or did not answer)."""


class PythonTool:
    """The `python` tool: `tool("347*29")` -> `"10063"`. Thread-safe (calls take turns); close() ends the worker."""

    name = "python"

    def __init__(self, limits: SandboxLimits = SandboxLimits()):
        self.limits = limits
        self.seccomp: bool | None = None  # whether the worker confines its children with seccomp (None: not started)
        self._proc: subprocess.Popen | None = None
        self._workdir: str | None = None
        self._owner = os.getpid()
        self._lock = threading.Lock()

    def __call__(self, call: str) -> str:
        if not isinstance(call, str) or not call.strip():
            return "error: empty code"
        with self._lock:
            try:
                reply = self._ask(call)
                text = str(reply["text"]).encode("utf-8", "replace").decode("utf-8")  # no lone surrogates
                return clip(text, self.limits.max_chars, int(reply["total"]))
            except TimeoutError:
                self._stop()
                return f"error: timed out after {self.limits.wall_s:g} s"
            except Exception as e:  # noqa: BLE001 - a tool answers with an error text, never raises
                self._stop()
                return clip(f"error: the sandbox failed ({type(e).__name__}: {e})", self.limits.max_chars)

    def close(self) -> None:
        with self._lock:
            self._stop()

    def __enter__(self) -> PythonTool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._stop()

    def _ask(self, code: str) -> dict[str, Any]:
        proc = self._worker()
        assert proc.stdin is not None and proc.stdout is not None
        write_frame(proc.stdin.fileno(), {"code": code})
        reply = read_frame(proc.stdout.fileno(), time.monotonic() + self.limits.wall_s + GRACE_S)
        if not isinstance(reply, dict):
            raise SandboxFailure(f"the worker ended (exit status {proc.poll()})")
        return reply

    def _worker(self) -> subprocess.Popen:
        """The running worker, started if needed (again after a failure, or in a forked copy of this process)."""
        if self._owner != os.getpid():  # a fork of the process that started it: that worker is not ours to use
            self._proc, self._workdir, self._owner = None, None, os.getpid()
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._stop()
        self._workdir = tempfile.mkdtemp(prefix="python-tool-")
        limits = {**self.limits.model_dump(), "workdir": self._workdir}
        env = {"PYTHONHASHSEED": "0", **{k: os.environ[k] for k in ("LD_LIBRARY_PATH",) if k in os.environ}}
        self._proc = subprocess.Popen(
            [sys.executable, "-s", str(WORKER), json.dumps(limits)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            cwd=self._workdir, env=env, start_new_session=True,
        )
        assert self._proc.stdout is not None
        try:
            hello = read_frame(self._proc.stdout.fileno(), time.monotonic() + START_TIMEOUT_S)
        except TimeoutError:
            raise SandboxFailure(f"the worker did not start within {START_TIMEOUT_S:g} s") from None
        if not isinstance(hello, dict) or not hello.get("ready"):
            raise SandboxFailure(f"the worker did not start (exit status {self._proc.poll()})")
        self.seccomp = bool(hello.get("seccomp"))
        return self._proc

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and self._owner == os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the worker leads its own session and process group
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


SPEC = ToolSpec("python", lambda inputs: PythonTool(inputs.limits.get("python", SandboxLimits())))

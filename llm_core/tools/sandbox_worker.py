"""The Python tool's own process: a small zygote that forks one confined child per call.

`PythonTool` starts this file as a script (`python -s sandbox_worker.py LIMITS_JSON`, with `PYTHONHASHSEED=0` so the
order of a set of strings is the same in every run). It imports nothing from `llm_core` and only the standard
library, `asteval` and `pyseccomp`, so it starts in a fraction of a second, and a fork of it costs about a
millisecond. The threat model is in `python_tool`'s docstring.

Protocol on stdin/stdout: frames of a 4-byte big-endian length and a JSON payload (ASCII). The worker first writes
`{"ready": true, "seccomp": bool}`; then for each `{"code": str}` it writes `{"text": str, "total": int}` (`text` at
most `max_chars` characters of an output of `total` characters). It exits at the end of its input.

Each call: fork; the child moves to its own process group, points stdin/stdout/stderr at /dev/null, closes every
other descriptor but its result pipe, lowers its resource limits (CPU seconds, address space, file size 0, no core
dump, few descriptors, no processes), loads the seccomp filter, evaluates the code with asteval and writes its
result. The worker reads the result until the wall-clock limit, then kills the child's process group.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    del sys.path[0]  # this script's folder: none of its modules may stand in for the standard library's

import contextlib  # noqa: E402 - the standard library, once the line above has run
import errno
import json
import math
import os
import resource
import select
import signal
import string
import struct
import time
import types
from typing import Any

HEADER = struct.Struct(">I")

# Modules `import` may name. `string` is a stand-in holding its constants and capwords: the real module's
# Formatter would reach attributes that asteval keeps out of reach (asteval refuses str.format for that reason).
STRING_NAMES = ("ascii_letters", "ascii_lowercase", "ascii_uppercase", "capwords", "digits", "hexdigits",
                "octdigits", "printable", "punctuation", "whitespace")

# Syscalls the child may not make (EPERM): new processes and programs, sockets, signals to other processes, tracing,
# namespaces and mounts, opening any file (everything the code needs is loaded before the fork), changes to the
# file system, and raising its own limits. Everything else (read and write on its pipe, mmap, brk, ...) is
# allowed: a deny list, kept as a second wall behind asteval, not an allow list of what CPython needs.
DENIED_SYSCALLS = (
    "fork", "vfork", "clone", "clone3", "execve", "execveat",
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open", "pidfd_send_signal",
    "pidfd_getfd", "ptrace", "process_vm_readv", "process_vm_writev",
    "setsid", "setpgid", "prlimit64", "setrlimit", "personality", "prctl", "seccomp",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_by_handle_at", "name_to_handle_at",
    "open", "openat", "openat2", "creat", "mkdir", "mkdirat", "mknod", "mknodat", "rmdir", "unlink", "unlinkat",
    "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat",
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
    "truncate", "ftruncate", "utime", "utimes", "utimensat", "futimesat",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr", "memfd_create",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key", "init_module", "finit_module", "delete_module", "kexec_load",
    "reboot", "swapon", "swapoff", "sethostname", "setdomainname", "acct", "quotactl", "syslog",
)
# Codecs `str.encode` and `bytes.decode` may name, loaded before the fork (a codec is a module, imported on first use).
CODECS = ("ascii", "latin-1", "utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "cp1252", "idna")
MAX_FDS = 16


# -- framing (also used by the parent, python_tool)
def read_exactly(fd: int, n: int, deadline: float | None = None) -> bytes | None:
    """`n` bytes from `fd`, or None at end of input; TimeoutError once `deadline` (time.monotonic) passes."""
    chunks, left = [], n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError("no answer in time")
        chunk = os.read(fd, left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_frame(fd: int, obj: Any) -> None:
    payload = json.dumps(obj).encode("ascii")
    write_all(fd, HEADER.pack(len(payload)) + payload)


def read_frame(fd: int, deadline: float | None = None) -> Any:
    """The next frame's JSON value, or None at end of input."""
    head = read_exactly(fd, HEADER.size, deadline)
    payload = None if head is None else read_exactly(fd, HEADER.unpack(head)[0], deadline)
    return None if payload is None else json.loads(payload)


# -- the interpreter
class BoundedWriter:
    """Where `print` writes: keeps the first `limit` characters, counts them all."""

    def __init__(self, limit: int):
        self.limit, self.kept, self.total, self.parts = limit, 0, 0, []

    def write(self, text: str) -> int:
        text = str(text)
        if self.kept < self.limit:
            self.parts.append(text[: self.limit - self.kept])
            self.kept += len(self.parts[-1])
        self.total += len(text)
        return len(text)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(self.parts)


class Module(types.SimpleNamespace):
    """A module as the sandbox offers it: its public names only."""

    def __init__(self, name: str, names: dict[str, Any]):
        super().__init__(**names)
        self._name = name

    def __repr__(self) -> str:
        return f"<module '{self._name}'>"


def sandbox_modules() -> dict[str, Module]:
    return {
        "math": Module("math", {k: getattr(math, k) for k in dir(math) if not k.startswith("_")}),
        "string": Module("string", {k: getattr(string, k) for k in STRING_NAMES}),
    }


def make_interpreter(max_chars: int) -> Any:
    """An asteval interpreter with builtins, math functions, `math` and `string`, printing to a BoundedWriter;
    generator expressions evaluate as lists.
    Left out of asteval's defaults: `open` (read-only there, but the sandbox reads nothing) and `id` (an address:
    not the same from run to run)."""
    from asteval import Interpreter

    modules = sandbox_modules()

    class SandboxInterpreter(Interpreter):
        def import_module(self, name: str, asname: Any, fromlist: list[str] | None = None) -> None:
            module = modules.get(name)
            if module is None:
                allowed = " and ".join(sorted(modules))
                self.raise_exception(None, exc=ImportError, msg=f"module {name!r} is not available here "
                                     f"(only {allowed} can be imported)")
            if fromlist is None:
                self.symtable[asname or name] = module
                return
            for sym, alias in zip(fromlist, asname or [None] * len(fromlist)):
                if sym == "*":
                    self.symtable.update({k: v for k, v in vars(module).items() if not k.startswith("_")})
                elif sym.startswith("_") or not hasattr(module, sym):
                    self.raise_exception(None, exc=ImportError, msg=f"cannot import name {sym!r} from {name!r}")
                else:
                    self.symtable[alias or sym] = getattr(module, sym)

        def on_generatorexp(self, node: Any) -> list:
            """`sum(1 for c in s if c == 'r')`: asteval has no generators; this one is evaluated as a list."""
            return self.on_listcomp(node)

    writer = BoundedWriter(max_chars)
    interp = SandboxInterpreter(writer=writer, err_writer=BoundedWriter(0), use_numpy=False, with_import=True,
                                with_importfrom=True)
    interp.allow_unsafe_modules = False  # asteval ties it to `import`; the modules above are safe stand-ins
    interp.node_handlers["generatorexp"] = interp.on_generatorexp
    for name in ("open", "id"):
        interp.symtable.pop(name, None)
    interp.symtable.update(modules)
    return interp


def format_error(errors: list[Any], memory_mb: int) -> str:
    """The model's view of asteval's first error (the cause; later ones are its echoes up the call stack)."""
    err = errors[0]
    name = err.exc.__name__ if err.exc else "Error"
    cause = err.exc_info[1]
    msg, line = err.msg, err.lineno
    if isinstance(cause, SyntaxError):
        msg, line = cause.msg, cause.lineno
    msg = (msg or "").strip().splitlines()[-1] if (msg or "").strip() else ""
    if name == "MemoryError":
        msg = f"out of memory (limit {memory_mb} MB)"
    text = f"error: {name}: {msg}" if msg else f"error: {name}"
    return f"{text} (line {line})" if line else text


def evaluate(interp: Any, code: str, max_chars: int, memory_mb: int) -> dict[str, Any]:
    """Run `code`: what it printed, else the repr of its final expression's value; an `error: ...` on failure."""
    value = interp.eval(code, show_errors=False)
    if interp.error:
        text = format_error(interp.error, memory_mb)
        return {"text": text[:max_chars], "total": len(text)}
    writer = interp.writer
    if writer.total:
        text, total = writer.text(), writer.total
        if total == len(text) and text.endswith("\n"):  # print's own line end, as a REPL shows it
            text, total = text[:-1], total - 1
        return {"text": text, "total": total}
    text = "" if value is None else repr(value)
    return {"text": text[:max_chars], "total": len(text)}


# -- confinement
def syscall_filter() -> Any | None:
    """The seccomp filter (not loaded yet), or None where libseccomp or pyseccomp is missing."""
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError, OSError):
        return None
    f = sc.SyscallFilter(defaction=sc.ALLOW)
    deny = sc.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        with contextlib.suppress(OSError, ValueError):  # a syscall this architecture does not have
            f.add_rule(deny, name)
    return f


def vm_bytes() -> int:
    """This process's address space (VmSize), or 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def confine(limits: dict[str, Any], address_space: int, seccomp: Any | None, keep_fd: int) -> None:
    """Everything the child gives up before it runs untrusted code. Irreversible: call it in a fresh process."""
    os.setpgid(0, 0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd != keep_fd:
            os.dup2(devnull, fd)
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, max(keep_fd + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    cpu = int(limits["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU at cpu_s, SIGKILL a second later
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    for limit, value in ((resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NOFILE, MAX_FDS),
                         (resource.RLIMIT_NPROC, 0)):
        resource.setrlimit(limit, (value, value))
    if seccomp is not None:
        seccomp.load()


# -- one call
def read_result(fd: int, deadline: float) -> tuple[bytes, bool]:
    """What the child wrote, read until it closes the pipe; and whether the deadline passed first."""
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return b"".join(chunks), True
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)


def kill_child(pid: int) -> None:
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill()


def child_failure(status: int, limits: dict[str, Any]) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return f"error: used more than {limits['cpu_s']} s of CPU time"
        return f"error: the interpreter crashed ({signal.Signals(sig).name})"
    return "error: the interpreter ended without an answer"


def run_call(code: str, interp: Any, seccomp: Any | None, limits: dict[str, Any], address_space: int) -> dict:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the worker's loop
        os.close(r)
        try:
            confine(limits, address_space, seccomp, w)
            result = evaluate(interp, code, limits["max_chars"], limits["memory_mb"])
            write_all(w, json.dumps(result).encode("ascii"))
        except BaseException as e:  # noqa: BLE001 - anything at all must end this process
            with contextlib.suppress(BaseException):
                text = f"error: {type(e).__name__}" + (f": {e}" if str(e) else "")
                write_all(w, json.dumps({"text": text[: limits["max_chars"]], "total": len(text)}).encode())
        finally:
            os._exit(0)
    os.close(w)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also here: the worker may kill the group before the child has made it
    data, timed_out = read_result(r, time.monotonic() + limits["wall_s"])
    os.close(r)
    if timed_out:
        kill_child(pid)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        text = f"error: timed out after {limits['wall_s']:g} s"
        return {"text": text, "total": len(text)}
    try:
        return json.loads(data)
    except ValueError:
        text = child_failure(status, limits)
        return {"text": text, "total": len(text)}


def main(argv: list[str]) -> None:
    limits = json.loads(argv[1])
    sys.modules["numpy"] = None  # type: ignore[assignment]  # asteval offers numpy if it imports; keep it out
    interp = make_interpreter(limits["max_chars"])
    for codec in CODECS:
        "".encode(codec)
    seccomp = syscall_filter()
    os.chdir(limits["workdir"])
    baseline = vm_bytes()
    address_space = baseline + limits["memory_mb"] * 2**20 if baseline else resource.RLIM_INFINITY
    write_frame(1, {"ready": True, "seccomp": seccomp is not None})
    while (request := read_frame(0)) is not None:
        write_frame(1, run_call(request["code"], interp, seccomp, limits, address_space))


if __name__ == "__main__":
    main(sys.argv)

"""Prefect's temporary server, started before the command imports the pipeline.

A command that runs flows without `PREFECT_API_URL` needs Prefect's ephemeral API: a uvicorn process serving
`prefect.server.api.server:create_app` on a local port. Left to Prefect, it starts on the first API call, after
this process has imported the flows (torch, Prefect, pyarrow, ...), and the two start-ups, each several seconds of
one core, run one after the other. `llmpipe` starts it first instead (the same command and environment Prefect's
`SubprocessASGIServer` uses) and sets `PREFECT_API_URL` to it, so it comes up on the other core while this process
imports, and the flows report to it as to any server. `wait_until_ready` is called before the first flow; the
server is stopped when the process exits.

This module imports only the standard library: it runs before everything else.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

FLOW_COMMANDS = frozenset({"run", "refresh", "stage"})
# A busy laptop can take longer than Prefect's default 20 s to start the server (this one, or Prefect's own when
# the CLI runs in-process without `start_for`).
STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
os.environ.setdefault(STARTUP_TIMEOUT, "120")


class TemporaryServer:
    """One uvicorn process serving Prefect's API (no UI, ephemeral services) on a free local port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        app_dir = Path(importlib.util.find_spec("prefect").origin).parent.parent
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "error", "--lifespan", "on"],
            env={**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                 "PREFECT__SERVER_FINAL": "1"},
            preexec_fn=_stop_with_parent if sys.platform == "linux" else None,
        )
        self.ready = False
        atexit.register(self.stop)

    def wait_until_ready(self) -> None:
        """Block until the API answers /health; a server that exits or never answers is an error (what it printed,
        at uvicorn's error level, is above it on the terminal)."""
        timeout_s = float(os.environ[STARTUP_TIMEOUT])
        deadline = time.monotonic() + timeout_s
        while not self.ready:
            if self.process.poll() is not None:
                raise RuntimeError(f"Prefect's temporary server on port {self.port} exited with code "
                                   f"{self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Prefect's temporary server on port {self.port} did not answer within "
                                   f"{timeout_s:.0f} s ({STARTUP_TIMEOUT})")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    self.ready = response.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_started: list[TemporaryServer] = []


def start_for(argv: list[str]) -> TemporaryServer | None:
    """Start the server when the command `argv` (without the program name) runs flows and no server is configured;
    `PREFECT_API_URL` then points this process, and every process it starts, at it."""
    if not runs_flows(argv) or os.environ.get("PREFECT_API_URL"):
        return None
    server = TemporaryServer()
    os.environ["PREFECT_API_URL"] = server.api_url
    os.environ.setdefault("PREFECT_UI_URL", "")  # it serves no UI: no "View at" links to a page that is not there
    _started.append(server)
    print(f"Starting Prefect's temporary server on {server.api_url} (no PREFECT_API_URL set)", file=sys.stderr)
    return server


def runs_flows(argv: list[str]) -> bool:
    """Whether `llmpipe argv` runs flows: its command (the first word not an option) is one of FLOW_COMMANDS."""
    command = next((a for a in argv if not a.startswith("-")), None)
    return command in FLOW_COMMANDS and "--help" not in argv


def wait_until_ready() -> None:
    """Before the first flow: wait for the server `start_for` started, if it started one."""
    for server in _started:
        server.wait_until_ready()


def _stop_with_parent() -> None:
    """In the server's process before it starts (Linux): SIGTERM when `llmpipe` dies, even killed by SIGKILL, which
    runs no atexit hook. An orphaned server would keep its services writing to Prefect's SQLite database, and the
    next run would wait on its locks."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

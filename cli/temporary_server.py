"""Prefect's temporary server, started before the command imports the pipeline.

A command that runs flows with no Prefect server configured needs Prefect's ephemeral API: a uvicorn process serving
`prefect.server.api.server:create_app` on a local port. Left to Prefect, it starts on the first API call, after
this process has imported the flows (torch, Prefect, pyarrow, ...), and the two start-ups, each several seconds of
one core, run one after the other. `llmpipe` starts it first instead (`start_for`: the same command and environment
Prefect's `SubprocessASGIServer` uses), so it comes up on the other core while this process imports. Before the
first flow, `use_started_server` points Prefect at it, in this process and the ones it starts, unless Prefect's own
settings (a profile, `.env`, `prefect.toml`) name a server: then that one is used and this one stopped. The server
is stopped when the process exits, however it exits.

This module imports only the standard library at the top: it runs before everything else.
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
    """Start the server when the command `argv` (without the program name) runs flows and `PREFECT_API_URL` is not
    set; nothing reports to it before `use_started_server`."""
    if not runs_flows(argv) or os.environ.get("PREFECT_API_URL"):
        return None
    server = TemporaryServer()
    _started.append(server)
    return server


def runs_flows(argv: list[str]) -> bool:
    """Whether `llmpipe argv` runs flows: its command (the first word not an option) is one of FLOW_COMMANDS."""
    command = next((a for a in argv if not a.startswith("-")), None)
    return command in FLOW_COMMANDS and "--help" not in argv


def use_started_server() -> None:
    """Before the first flow: report to the server `start_for` started, once it answers, unless Prefect's settings
    name a server of their own. `PREFECT_API_URL` then points this process, and every process it starts, at it."""
    if not _started:
        return
    server = _started.pop()
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        server.stop()
        return
    server.wait_until_ready()
    os.environ["PREFECT_API_URL"] = server.api_url
    os.environ.setdefault("PREFECT_UI_URL", "")  # it serves no UI: no "View at" links to a page that is not there
    refresh_global_settings_context()
    print(f"Prefect's temporary server: {server.api_url} (no Prefect server configured)", file=sys.stderr)


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

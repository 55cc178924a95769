"""The docker-compose stack without Docker: PostgreSQL, an S3 server and a Prefect server on loopback, and
`llmpipe serve`, each a child process, all gone when the `LocalStack` context exits.

The same wiring as docker-compose.yml (Prefect's database on Postgres, its UI on the server's port, the artifact
store on `s3://`), for the tests and for trying the UI on a machine without Docker: `llmpipe serve` gets the S3
endpoint and credentials in its environment (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ..., read by s3fs, never in
the flow parameters) and `run.artifact_root=s3://llmpipe/artifacts` as the default override of every run form, so
served runs write their artifacts to the bucket.

    .venv/bin/python -m ops.local_stack [SERVE_ARGS ...]   # prints the UI address, serves until Ctrl-C

PostgreSQL refuses to run as root: as root, the cluster is created and started as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUCKET = "llmpipe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, what: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with code {proc.returncode}")
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.3)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s")


def port_open(port: int) -> bool:
    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    return True


def postgres_bin(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else in Debian's /usr/lib/postgresql/VERSION/bin."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise FileNotFoundError(f"{name} not found: install PostgreSQL (apt-get install postgresql)")
    return found


def postgres_available() -> bool:
    try:
        postgres_bin("initdb")
        postgres_bin("pg_ctl")
    except FileNotFoundError:
        return False
    return os.geteuid() != 0 or shutil.which("runuser") is not None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}")


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback (trust auth); yields Prefect's SQLAlchemy URL of database `prefect`.
    The cluster lives in its own folder under the system temp dir (reachable by the `postgres` user when run as
    root) and is deleted on exit."""
    workdir, port = Path(tempfile.mkdtemp(prefix="llmpipe-pg-")), free_port()
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    data, pg_ctl = workdir / "data", postgres_bin("pg_ctl")
    try:
        _run(_as_postgres_user([postgres_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                "-E", "UTF8", "--no-sync"]))
        _run(_as_postgres_user([pg_ctl, "-D", str(data), "-l", str(workdir / "postgres.log"), "-w", "start",
                                "-o", f"-h 127.0.0.1 -p {port} -k {workdir} -F"]))
        try:
            _run(_as_postgres_user([postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                    "prefect"]))
            yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect"
        finally:
            subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def child(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A child process logging to `log`, terminated (then killed) on exit."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def s3_server(workdir: Path) -> Iterator[dict]:
    """moto's S3 server on loopback with bucket `llmpipe`; yields the artifact root and its fsspec options."""
    import boto3

    port = free_port()
    with child([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], workdir / "s3.log") as proc:
        wait_until(lambda: port_open(port), "S3 server", 30, proc)
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                     region_name="us-east-1").create_bucket(Bucket=BUCKET)
        options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint,
                                                                      "region_name": "us-east-1"}}
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_DEFAULT_REGION": "us-east-1"}
        yield {"root": f"s3://{BUCKET}/artifacts", "storage_options": options, "endpoint": endpoint, "env": env}


def prefect_env(api_url: str, home: Path, **settings: str) -> dict[str, str]:
    """The environment of a process that talks to the server at `api_url` (a client, `llmpipe serve`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_API_URL=api_url, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DO_NOT_TRACK="1", **settings)
    return env


@contextlib.contextmanager
def prefect_server(database_url: str, workdir: Path, scheduler_loop_s: int = 60) -> Iterator[str]:
    """`prefect server start` on loopback against `database_url`; yields its API URL (the UI is at its root)."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = prefect_env(api_url, workdir / "prefect-home",
                      PREFECT_API_DATABASE_CONNECTION_URL=database_url,
                      PREFECT_API_SERVICES_SCHEDULER_LOOP_SECONDS=str(scheduler_loop_s),
                      PREFECT_UI_API_URL=api_url)
    del env["PREFECT_API_URL"]  # the server itself must not look for another one
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with child(cmd, workdir / "prefect-server.log", env) as proc:
        wait_until(lambda: urllib.request.urlopen(f"{api_url}/health", timeout=2).status == 200,
                   "Prefect server", 120, proc)
        yield api_url


@dataclass
class LocalStack:
    """Postgres + S3 + Prefect server (+ `llmpipe serve` when `serve_args` is not None), started on enter."""

    workdir: Path
    serve_args: list[str] | None = field(default_factory=list)
    scheduler_loop_s: int = 60
    api_url: str = ""
    s3: dict = field(default_factory=dict)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    def env(self, **settings: str) -> dict[str, str]:
        return prefect_env(self.api_url, self.workdir / "client-home", **settings)

    def __enter__(self) -> LocalStack:
        try:
            database_url = self._stack.enter_context(postgres())
            self.s3 = self._stack.enter_context(s3_server(self.workdir))
            self.api_url = self._stack.enter_context(prefect_server(database_url, self.workdir, self.scheduler_loop_s))
            if self.serve_args is not None:
                cmd = [sys.executable, "-m", "cli.main", "serve", "--set", f"run.artifact_root={self.s3['root']}",
                       *self.serve_args]
                self._stack.enter_context(child(cmd, self.workdir / "serve.log", self.env(**self.s3["env"])))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="llmpipe-stack-"))
    with LocalStack(workdir, serve_args=sys.argv[1:]) as stack:
        print(f"Prefect UI: {stack.ui_url}\nPREFECT_API_URL={stack.api_url}\nS3 endpoint: {stack.s3['endpoint']} "
              f"(bucket {BUCKET}; served runs write to {stack.s3['root']})\nlogs: {workdir}\n"
              "Ctrl-C stops everything.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()

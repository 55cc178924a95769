"""Shared test fixtures: the repo's sample data, a Prefect test server, a local S3 server."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


@contextlib.contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server on a free loopback port, serving `handler` on daemon threads; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine OpenMP threads contend badly."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cpu_kernels_built():
    """The fused CPU kernels, built: a test needing them is skipped where they cannot be (disabled, or no C
    compiler), and fails where a compiler is present yet the build did not work."""
    import os
    import shutil

    from llm_core import cpu_kernels

    if cpu_kernels.load() is None:
        if os.environ.get("LLMPIPE_CPU_KERNELS") == "0":
            pytest.skip("the CPU kernels are disabled (LLMPIPE_CPU_KERNELS=0)")
        assert shutil.which(os.environ.get("CC", "cc")) is None, "a C compiler is here, yet the kernels did not build"
        pytest.skip("no C compiler: the CPU kernels are not built")
    return cpu_kernels


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole test run (starting one costs seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API (moto's server) on loopback; yields fsspec storage options for it."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("moto S3 server did not start")
    import boto3

    boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    ).create_bucket(Bucket="llmpipe")
    options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    yield {"root": "s3://llmpipe/artifacts", "storage_options": options, "endpoint": endpoint}
    proc.terminate()
    proc.wait(timeout=10)

"""Compression bombs and endless bodies cost at most the byte limit: every content encoding (gzip, deflate, br,
zstd) and chunked transfer coding is decoded piece by piece with the limit on the decoded output, in the archived
body decoder (WARC reading) and in the live crawler's fetcher. Each case runs in a child process whose peak RSS
(itself and its children) is measured."""

from __future__ import annotations

import json
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from conftest import loopback_server

from hostile import bomb, gzip_members, http_response, warc_record

REPO = Path(__file__).resolve().parents[1]
BOMB_MIB = 256  # decoded size of each bomb; an unbounded decoder needs at least this much memory
LIMIT = 2_000_000  # decoded bytes kept
GROWTH_BOUND_MB = 24  # allowed peak RSS growth over the child's baseline (imports, input read); measured 4-9 MB
ENCODINGS = ["gzip", "deflate", "br", "zstd"]

PEAK = """
import json, resource
def peak_mb():
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
"""

DECODE_CHILD = PEAK + """
import sys
from llm_core.crawl.http_body import decode_body
raw = open(sys.argv[1], "rb").read()
before = peak_mb()
out = decode_body(raw, None, sys.argv[2], int(sys.argv[3]))
print(json.dumps({"bytes": len(out), "zeros": out.count(0), "before": before, "peak": peak_mb()}))
"""

FETCH_CHILD = PEAK + """
import sys
from llm_core.crawl.fetcher import Fetcher
fetcher = Fetcher(user_agent="t", timeout_s=30, max_bytes=int(sys.argv[2]), content_types=["text/html"],
                  allow_private_addresses=True)
before = peak_mb()
fetch = fetcher.get(sys.argv[1])
print(json.dumps({"bytes": len(fetch.body), "truncated": fetch.truncated, "error": fetch.error,
                  "before": before, "peak": peak_mb()}))
"""

WARC_CHILD = PEAK + """
import sys
from llm_core.crawl.warc_reader import Page, read_archive
before = peak_mb()
with open(sys.argv[1], "rb") as f:
    items = list(read_archive(f, name="bombs", source="t", content_types=["text/html"],
                              max_body_bytes=int(sys.argv[2]), max_decoded_bytes=int(sys.argv[3])))
print(json.dumps({"pages": sum(isinstance(i, Page) for i in items), "records": len(items),
                  "largest": max((len(i.body) for i in items if isinstance(i, Page)), default=0),
                  "truncated": sum(i.truncated for i in items if isinstance(i, Page)),
                  "before": before, "peak": peak_mb()}))
"""


def run_child(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, bytes]:
    return {encoding: bomb(encoding, BOMB_MIB) for encoding in ENCODINGS}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_archived_body_bomb_is_decoded_within_the_limit(encoding, bombs, tmp_path):
    path = tmp_path / f"bomb.{encoding}"
    path.write_bytes(bombs[encoding])
    result = run_child(DECODE_CHILD, str(path), encoding, str(LIMIT))
    assert result["bytes"] == LIMIT and result["zeros"] == LIMIT, "decoded, not passed through"
    assert result["peak"] - result["before"] < GROWTH_BOUND_MB, result


class BombSite(BaseHTTPRequestHandler):
    """/gzip, /deflate, /br, /zstd: a bomb with that Content-Encoding; /chunked: an endless chunked body."""

    bombs: dict[str, bytes] = {}

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        name = self.path.strip("/")
        try:
            if name == "chunked":
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"<p>" + b"x" * 65530 + b"</p>"
                for _ in range(BOMB_MIB * 16):  # BOMB_MIB MiB in all, far past the limit
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
                return
            body = self.bombs[name]
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Encoding", name)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the fetcher stopped reading at its limit
            pass


@pytest.fixture(scope="module")
def bomb_site(bombs):
    BombSite.bombs = bombs
    with loopback_server(BombSite) as url:
        yield url


@pytest.mark.parametrize("encoding", [*ENCODINGS, "chunked"])
def test_live_fetch_of_a_bomb_stops_at_the_limit(encoding, bomb_site):
    result = run_child(FETCH_CHILD, f"{bomb_site}/{encoding}", str(LIMIT))
    assert result["error"] is None and result["truncated"] and result["bytes"] == LIMIT, result
    assert result["peak"] - result["before"] < GROWTH_BOUND_MB, result


def test_warc_records_holding_bombs_are_read_within_the_limit(bombs, tmp_path):
    records = [warc_record(http_response(bombs[e], Content_Encoding=e)) for e in ENCODINGS]
    path = tmp_path / "bombs.warc.gz"
    path.write_bytes(gzip_members(records))
    result = run_child(WARC_CHILD, str(path), str(LIMIT), str(LIMIT))
    assert result["records"] == len(ENCODINGS), result
    assert result["peak"] - result["before"] < GROWTH_BOUND_MB + BOMB_MIB // 256, result


def test_the_decoded_size_has_its_own_limit_and_a_cut_body_is_marked_truncated(bombs, tmp_path):
    records = [warc_record(http_response(bombs[e], Content_Encoding=e)) for e in ENCODINGS]
    path = tmp_path / "bombs.warc.gz"
    path.write_bytes(gzip_members(records))
    raised = 1 << 30  # the record limit raised far past the bombs' decoded size: the decode limit still holds
    result = run_child(WARC_CHILD, str(path), str(raised), str(LIMIT))
    assert result["pages"] == len(ENCODINGS) and result["largest"] == LIMIT, result
    assert result["truncated"] == len(ENCODINGS), "a body cut at the decode limit is marked truncated"
    assert result["peak"] - result["before"] < GROWTH_BOUND_MB + BOMB_MIB // 256, result

"""Hostile inputs shared by the reliability tests and benchmarks: compression bombs, WARC records built byte by
byte, and a stage killed with SIGKILL at a chosen point."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ZEROS = bytes(1 << 20)


def bomb(encoding: str, mib: int) -> bytes:
    """`mib` MiB of zeros compressed with an HTTP content encoding (gzip, deflate, br, zstd): a few hundred KB that
    expand about a thousandfold (brotli and zstd far more)."""
    if encoding in ("gzip", "deflate"):
        c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
        return b"".join(c.compress(ZEROS) for _ in range(mib)) + c.flush()
    if encoding == "br":
        import brotli

        c = brotli.Compressor(quality=1)
        return b"".join(c.process(ZEROS) for _ in range(mib)) + c.finish()
    if encoding == "zstd":
        import zstandard

        c = zstandard.ZstdCompressor(level=1).compressobj()
        return b"".join(c.compress(ZEROS) for _ in range(mib)) + c.flush()
    raise ValueError(f"no bomb for {encoding!r}")


def http_response(body: bytes, content_type: str = "text/html", **headers: str) -> bytes:
    lines = [b"HTTP/1.1 200 OK", f"Content-Type: {content_type}".encode()]
    lines += [f"{k.replace('_', '-')}: {v}".encode() for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def warc_record(payload: bytes, url: str = "http://example.com/", record_type: str = "response",
                content_type: str = "application/http; msgtype=response", length: int | None = None,
                extra: str = "") -> bytes:
    """One WARC/1.0 record (uncompressed); `length` may lie about the payload's size."""
    head = (
        f"WARC/1.0\r\nWARC-Type: {record_type}\r\nWARC-Target-URI: {url}\r\n"
        f"WARC-Date: 2024-01-01T00:00:00Z\r\nWARC-Record-ID: <urn:uuid:{zlib.crc32(payload + url.encode()):08x}"
        f"-0000-0000-0000-000000000000>\r\nContent-Type: {content_type}\r\n{extra}"
        f"Content-Length: {len(payload) if length is None else length}\r\n\r\n"
    )
    return head.encode() + payload + b"\r\n\r\n"


def gzip_members(records: list[bytes]) -> bytes:
    """One gzip member per record, as WARC files are compressed."""
    return b"".join(gzip.compress(r) for r in records)


KILL_CHILD = """
import importlib, inspect, os, signal, sys
from ops.micro import micro_config
from llm_core.pipeline import plan
from llm_core.registry import STAGES
from llm_core.stage import run_stage

root, stage, module, cls_name, method, survive = sys.argv[1:7]
cls = getattr(importlib.import_module(module), cls_name)
real = getattr(cls, method)
calls = [0]

def hit():
    calls[0] += 1
    if calls[0] > int(survive):
        os.kill(os.getpid(), signal.SIGKILL)

if inspect.isgeneratorfunction(real):
    def patched(*args, **kwargs):
        for item in real(*args, **kwargs):
            hit()
            yield item
else:
    def patched(*args, **kwargs):
        hit()
        return real(*args, **kwargs)

setattr(cls, method, patched)
config = micro_config(root, extra=sys.argv[7:], targets=[stage])
run_stage(STAGES[stage], plan(config, [stage])[stage])
sys.exit(3)  # the kill point was never reached
"""


def kill_stage(root: Path, stage: str, point: tuple[str, str, str, int], extra: list[str]) -> None:
    """Run `stage` of the micro config on `root` in a child process that SIGKILLs itself when the method named by
    `point` (module, class, method, calls survived) is called (or yields) once more than it may."""
    module, cls_name, method, survive = point
    child = subprocess.run([sys.executable, "-c", KILL_CHILD, str(root), stage, module, cls_name, method,
                            str(survive), *extra], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, f"{stage} was not killed at {point}: {child.stderr[-2000:]}"


def rows_match_counts(stage: str, ctx) -> None:
    """Assert that a committed data stage's manifest counts equal the rows (tokens) in its files, and that the
    folder holds no file the manifest does not list."""
    reader = ctx.store().reader(ctx.output)
    counts = reader.manifest.counts
    if stage == "crawl":
        assert reader.count_rows("pages/*.parquet") == counts["pages"]
        assert reader.count_rows("skipped/*.parquet") == counts["skipped"]
        assert reader.count_rows("documents/*.parquet") == counts.get("documents", 0)
    elif stage in ("extract", "filter"):
        assert reader.count_rows("documents/*.parquet") == counts["kept"]
        assert reader.count_rows("rejected/*.parquet") == counts["rejected"]
    else:
        for split in ("train", "val"):
            tokens = sum(reader.manifest.files[n].size for n in reader.files(f"{split}/*.bin")) // 2
            assert tokens == counts[f"{split}_tokens"]
    listed = {n for n in reader.files() if not n.startswith("_")} - {"manifest.json", "run.json"}
    assert listed == set(reader.manifest.files), "every file in the folder is one the manifest lists"


def dying_after(stage_class: type, ok: int):
    """A `ShardedStage` of `stage_class` that dies after finishing `ok` shards, as a killed worker would; its
    `done` lists the shards it finished."""

    class Dying(stage_class):
        def __init__(self):
            self.done: list[str] = []

        def run_shard(self, ctx, shard):
            if len(self.done) == ok:
                raise RuntimeError("worker killed")
            self.done.append(shard)
            return super().run_shard(ctx, shard)

    return Dying()

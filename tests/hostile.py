"""Hostile inputs shared by the reliability tests and `bench/reliability.py`: compression bombs and WARC records
built byte by byte."""

from __future__ import annotations

import gzip
import zlib

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

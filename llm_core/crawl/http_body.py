"""Undo the transfer and content encodings of an archived HTTP body, tolerantly.

Archives often keep `Transfer-Encoding: chunked` or `Content-Encoding: gzip` headers on bodies their crawler
already decoded, so each step falls back to the bytes as they are when they do not parse. Output is capped at
`limit` bytes (a decompression bomb cannot grow past it).
"""

from __future__ import annotations

import zlib


def dechunk(data: bytes) -> bytes:
    """Decode chunked transfer encoding; `data` unchanged if it is not validly chunked."""
    out, pos = bytearray(), 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return bytes(out) if out else data
        size_field = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            return bytes(out) if out else data
        if size == 0:
            return bytes(out)
        out += data[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2


def decompress(data: bytes, encoding: str, limit: int) -> bytes:
    """gzip / deflate / br content decoding, at most `limit` bytes out; `data` unchanged if it does not decode."""
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, limit)
        if encoding == "deflate":
            try:
                return zlib.decompressobj().decompress(data, limit)
            except zlib.error:
                return zlib.decompressobj(-zlib.MAX_WBITS).decompress(data, limit)
        if encoding == "br":
            import brotli  # optional: only archives with brotli bodies need it

            return brotli.decompress(data)[:limit]
    except Exception:  # zlib, brotli or a missing brotli module: treat the body as not really encoded
        return data
    return data


def decode_body(raw: bytes, transfer_encoding: str | None, content_encoding: str | None, limit: int) -> bytes:
    """The payload of an HTTP response as the server meant it, from the archived bytes and the two headers."""
    body = raw
    if "chunked" in (transfer_encoding or "").lower():
        body = dechunk(body)
    for encoding in reversed([e.strip().lower() for e in (content_encoding or "").split(",")]):
        if encoding and encoding != "identity":
            body = decompress(body, encoding, limit)
    return body[:limit]

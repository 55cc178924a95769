"""Undo the transfer and content encodings of an HTTP body, incrementally and within a byte limit.

Every decoder (chunked, gzip, deflate, br, zstd) turns a stream of input chunks into a stream of output pieces of
at most `PIECE` bytes, and the caller stops pulling once `limit` bytes are out: a decompression bomb costs at most
the limit plus one piece of memory, whatever its ratio. The live crawler feeds network chunks as they arrive
(`decoded_pieces` over the raw network chunks); the WARC reader decodes a whole archived body (`decode_body`).

Archives often keep `Transfer-Encoding: chunked` or `Content-Encoding: gzip` headers on bodies their crawler
already decoded, so a layer that fails before producing any output passes its input through unchanged; one that
fails later keeps what it decoded.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator

PIECE = 1 << 16  # largest output piece a decoder yields at a time


def _zlib_pieces(chunks: Iterator[bytes], wbits: int) -> Iterator[bytes]:
    """gzip (several members allowed) or zlib/raw deflate, `PIECE` bytes at a time."""
    d = zlib.decompressobj(wbits)
    for chunk in chunks:
        data = chunk
        while data:
            out = d.decompress(data, PIECE)
            if out:
                yield out
            data = d.unconsumed_tail
            if d.eof:
                data = d.unused_data
                if not data.lstrip(b"\0"):
                    return  # padding after the last member
                d = zlib.decompressobj(wbits)
        while out := d.decompress(b"", PIECE):  # output still pending inside zlib
            yield out


def _deflate_pieces(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """`deflate` means zlib-wrapped data, but many servers send raw deflate: tell them apart by the zlib header."""
    first = next(chunks, b"")
    wrapped = len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
    yield from _zlib_pieces(_prepend(first, chunks), zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)


def _brotli_pieces(chunks: Iterator[bytes]) -> Iterator[bytes]:
    import brotli

    d = brotli.Decompressor()
    for chunk in chunks:
        out = d.process(chunk, output_buffer_limit=PIECE)
        while out:  # the output buffer stops growing near PIECE; the rest comes from calls with no new input
            yield out
            out = d.process(b"", output_buffer_limit=PIECE) if not d.is_finished() else b""
        if d.is_finished():
            return


class _ChunkReader:
    """A file-like `read(n)` over an iterator of chunks (what zstandard's streaming reader pulls from)."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks, self.buffer = chunks, b""

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self.buffer) < n) and (chunk := next(self.chunks, None)) is not None:
            self.buffer += chunk
        out, self.buffer = (self.buffer, b"") if n < 0 else (self.buffer[:n], self.buffer[n:])
        return out


def _zstd_pieces(chunks: Iterator[bytes]) -> Iterator[bytes]:
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(_ChunkReader(chunks), read_size=PIECE, read_across_frames=True)
    while out := reader.read(PIECE):
        yield out


def _dechunk_pieces(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Chunked transfer coding; stops at the last chunk, or at bytes that are not a chunk header (the data so far
    was the body)."""
    buffer = b""
    chunks = iter(chunks)
    while True:
        while b"\r\n" not in buffer[:1024]:
            more = next(chunks, None)
            if more is None:
                if buffer:
                    raise ValueError("chunk header not terminated")
                return
            buffer += more
        line, _, buffer = buffer.partition(b"\r\n")
        size = int(line.split(b";", 1)[0].strip() or b"x", 16)  # ValueError: not chunked
        if size == 0:
            return
        while size:
            if not buffer:
                buffer = next(chunks, None)
                if buffer is None:
                    return  # cut short: what came is the body
            piece, buffer = buffer[:size], buffer[size:]
            size -= len(piece)
            yield from (piece[i : i + PIECE] for i in range(0, len(piece), PIECE))
        while len(buffer) < 2 and (more := next(chunks, None)) is not None:
            buffer += more
        buffer = buffer[2:]  # the CRLF after the chunk data


DECODERS: dict[str, Callable[[Iterator[bytes]], Iterator[bytes]]] = {
    "gzip": lambda chunks: _zlib_pieces(chunks, 16 + zlib.MAX_WBITS),
    "x-gzip": lambda chunks: _zlib_pieces(chunks, 16 + zlib.MAX_WBITS),
    "deflate": _deflate_pieces,
    "br": _brotli_pieces,
    "zstd": _zstd_pieces,
}


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


class _InputFailed(Exception):
    """The input of a decoder failed (a network timeout): not a decoding problem, so it is re-raised as it was."""


def _tolerant(decoder: Callable[[Iterator[bytes]], Iterator[bytes]], chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Run a decoder; if it fails before any output (or cannot load), pass its input through as it came."""
    seen: list[bytes] = []
    started = False

    def remember(source: Iterator[bytes]) -> Iterator[bytes]:
        while True:
            try:
                chunk = next(source)
            except StopIteration:
                return
            except Exception as e:
                raise _InputFailed from e
            if not started:
                seen.append(chunk)
            yield chunk

    source = iter(chunks)
    try:
        for piece in decoder(remember(source)):
            started = True
            seen.clear()
            yield piece
    except _InputFailed as e:
        raise e.__cause__ from None
    except Exception:  # zlib.error, brotli.error, zstd errors, ValueError, a missing optional module
        if not started:
            yield from seen
            yield from source


def decoded_pieces(
    chunks: Iterable[bytes], transfer_encoding: str | None, content_encoding: str | None
) -> Iterator[bytes]:
    """The payload as the server meant it, piece by piece, from the raw body chunks and the two headers."""
    stream: Iterable[bytes] = iter(chunks)
    if "chunked" in (transfer_encoding or "").lower():
        stream = _tolerant(_dechunk_pieces, stream)
    for encoding in reversed([e.strip().lower() for e in (content_encoding or "").split(",")]):
        if encoding in DECODERS:
            stream = _tolerant(DECODERS[encoding], stream)
    return iter(stream)


def take(pieces: Iterator[bytes], limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes from `pieces`, and whether there was more."""
    out = bytearray()
    for piece in pieces:
        room = limit - len(out)
        out += piece[:room]
        if len(piece) > room:
            return bytes(out), True
        if len(out) == limit:
            return bytes(out), any(pieces)
    return bytes(out), False


def dechunk(data: bytes) -> bytes:
    """Chunked transfer coding of a whole body undone; `data` unchanged if it is not chunked."""
    return b"".join(_tolerant(_dechunk_pieces, [data]))


def decode_archived(
    raw: bytes, transfer_encoding: str | None, content_encoding: str | None, limit: int
) -> tuple[bytes, bool]:
    """The payload of an archived HTTP response, at most `limit` bytes of it, and whether it was cut there."""
    chunks = (raw[i : i + PIECE] for i in range(0, len(raw), PIECE))
    return take(decoded_pieces(chunks, transfer_encoding, content_encoding), limit)


def decode_body(raw: bytes, transfer_encoding: str | None, content_encoding: str | None, limit: int) -> bytes:
    """The payload of an archived HTTP response, at most `limit` bytes of it."""
    return decode_archived(raw, transfer_encoding, content_encoding, limit)[0]

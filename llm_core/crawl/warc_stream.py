"""The byte level of WARC reading: the input as a forward-only stream that can go back a bounded way, gzip members
decoded one at a time, the search for the next record or member, and the check that a record's Content-Length
matches its bytes. `llm_core.crawl.warc_reader` builds records and recovery on top of it."""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import IO

GZIP_MAGIC = b"\x1f\x8b\x08"
HEADER_ALLOWANCE = 1 << 16  # WARC + HTTP header bytes decoded beyond max_body_bytes from a damaged member
_WINDOW_MAX = 64 << 20  # bytes kept to go back to after a damaged member (more only while one record needs it)
_LOOKAHEAD = 16 << 20  # the longest block whose Content-Length is checked against the bytes after it
_RECORD_START = b"\r\n\r\nWARC/1."  # a record's end, then the next record's version line


class SourceReadError(Exception):
    """Reading the input itself failed (network, storage): not a corrupt file, so the shard fails and is retried."""


class SourceStream(io.RawIOBase):
    """The input as the parsers see it: a forward-only stream that knows its position (FastWARC asks for it, and
    not every fsspec stream can tell), whose own read failures become `SourceReadError`.

    It keeps the bytes read since the last `mark` (at most about `_WINDOW_MAX` of them), so reading can go back
    there with `rewind` after a damaged gzip member."""

    def __init__(self, raw: IO[bytes]):
        self.raw, self.position = raw, 0
        self.chunks: list[bytes] = []  # the bytes read since the last mark, as read (no copies)
        self.window_start = self.window_end = 0  # offsets of the first kept byte and after the last read one
        self.head = b""  # the first bytes of the input, to tell a gzip file

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        if self.position < self.window_end:  # after a rewind: serve the kept bytes first
            data = self._kept(self.position, len(buffer))
        else:
            try:
                data = self.raw.read(len(buffer))
            except Exception as e:
                raise SourceReadError(f"reading the input failed: {type(e).__name__}: {e}") from e
            if not self.head:
                self.head = data[:4]
            self.chunks.append(data)
            self.window_end += len(data)
            if self.window_end - self.window_start > _WINDOW_MAX:
                self.mark(self.window_end - _WINDOW_MAX // 2)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def _kept(self, offset: int, size: int) -> bytes:
        start = self.window_start
        for chunk in self.chunks:
            if offset < start + len(chunk):
                return chunk[offset - start : offset - start + size]
            start += len(chunk)
        return b""

    def mark(self, offset: int) -> None:
        """Reading will never go back before `offset`: forget the chunks that end before it."""
        offset = min(offset, self.position)
        while self.chunks and self.window_start + len(self.chunks[0]) <= offset:
            self.window_start += len(self.chunks.pop(0))

    def rewind(self, offset: int) -> None:
        """Read from `offset` again (no earlier than the oldest kept byte)."""
        self.position = max(offset, self.window_start)

    def starts_with(self, prefix: bytes) -> bool:
        return self.head.startswith(prefix)

    def peek(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset` (no earlier than the oldest kept byte), reading position unchanged."""
        saved, out = self.position, bytearray()
        self.rewind(offset)
        while len(out) < size and (data := self.read(size - len(out))):
            out += data
        self.position = saved
        return bytes(out)


def length_lie(stream: SourceStream, start: int, declared: int) -> tuple[int, str] | None:
    """(where the next record starts, -1 if none; why) if the record at `start` declares a Content-Length its
    bytes do not have, else None (also when it cannot be told here: records cut short are judged later)."""
    if declared > _LOOKAHEAD:
        return None
    if stream.starts_with(GZIP_MAGIC):
        return _gzip_length_lie(stream, start, declared)
    header_end = stream.peek(start, HEADER_ALLOWANCE).find(b"\r\n\r\n")
    if header_end < 0:
        return None
    block = start + header_end + 4
    trailer = stream.peek(block + declared, 4)
    if trailer == b"\r\n\r\n" or b"\r\n\r\n".startswith(trailer):  # well framed, or the file ends with it
        if len(trailer) == 4 or next_marker(stream, block, _RECORD_START) is None:
            return None
    found = next_marker(stream, block, _RECORD_START)
    next_start = found + 4 if found is not None else -1
    how = "runs over the next record's header" if 0 <= next_start < block + declared else "ends before its block does"
    end = f"the next record at byte {next_start}" if next_start >= 0 else "the end of the file"
    return next_start, f"bytes {start}-{next_start if next_start >= 0 else 'end'}: Content-Length {declared} {how}; " \
                       f"read on from {end}"


def _gzip_length_lie(stream: SourceStream, start: int, declared: int) -> tuple[int, str] | None:
    """`length_lie` for a gzip member per record: the record (headers, block, blank line) fills its member."""
    saved = stream.position
    member = decode_member(stream, start, HEADER_ALLOWANCE + declared + 8)
    more = member is not None and member.complete and has_bytes(stream, member.end)
    stream.rewind(saved)
    if member is None or not member.complete:
        return None  # a damaged member: the recovery below judges it
    header_end = member.data.find(b"\r\n\r\n")
    expected = header_end + 4 + declared
    if header_end < 0 or expected <= len(member.data) <= expected + 4 or (len(member.data) < expected and not more):
        return None
    how = "is longer than its gzip member" if len(member.data) < expected else "ends before its gzip member does"
    return member.end, f"bytes {start}-{member.end}: Content-Length {declared} {how}; read on from the next member"


@dataclass(frozen=True)
class Member:
    data: bytes  # decoded bytes (at most the cap asked for)
    complete: bool
    end: int  # offset after the member's compressed bytes (or after what was read of a damaged one)
    error: str


def decode_member(stream: SourceStream, offset: int, cap: int) -> Member | None:
    """The gzip member at `offset`, decoded as far as it goes (first `cap` bytes kept); None at the end of input."""
    stream.rewind(offset)
    decoder, out, consumed = zlib.decompressobj(16 + zlib.MAX_WBITS), bytearray(), 0
    while not decoder.eof:
        chunk = stream.read(1 << 16)
        if not chunk:
            if not consumed:
                return None
            return Member(bytes(out), False, offset + consumed, "the file ends inside a gzip member")
        consumed += len(chunk)
        data = chunk
        try:
            while data and not decoder.eof:
                piece = decoder.decompress(data, 1 << 20)
                if len(out) < cap:
                    out += piece[: cap - len(out)]
                data = decoder.unconsumed_tail
        except zlib.error as e:
            return Member(bytes(out), False, offset + consumed, f"gzip: {e}")
    return Member(bytes(out), True, offset + consumed - len(decoder.unused_data), "")


def member_end(stream: SourceStream, offset: int) -> int | None:
    member = decode_member(stream, offset, 0)
    return member.end if member is not None and member.complete else None


def has_bytes(stream: SourceStream, offset: int) -> bool:
    stream.rewind(offset)
    return bool(stream.read(1))


def next_marker(stream: SourceStream, offset: int, marker: bytes = GZIP_MAGIC) -> int | None:
    """Offset of the next `marker` (a gzip member header, by default) at or after `offset`, or None."""
    stream.rewind(offset)
    tail, base = b"", offset
    while chunk := stream.read(1 << 16):
        hay = tail + chunk
        found = hay.find(marker)
        if found >= 0:
            return base + found
        tail = hay[-(len(marker) - 1) :]
        base += len(hay) - len(tail)
    return None

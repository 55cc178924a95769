"""Read WARC (and legacy ARC) files record by record into raw pages, accounting for every record.

`read_archive(stream, ...)` yields one `Page` or one `Skip` per record seen, never holding more than one record in
memory. Kept: `response` records with an HTTP 2xx status and an HTML-like media type, body decoded from chunked
transfer encoding and content encoding (gzip, deflate, brotli). Skipped with a reason: other record types
(`warc:request`, `warc:revisit`, `warc:metadata`, `warc:conversion` (WET), ...), `warc:not_html`, `warc:status`,
`warc:not_http` (the block is not an HTTP response), `warc:too_large`, `warc:truncated` (the record ends before
its HTTP headers do), `warc:bad_length` (a record whose Content-Length lies, with its byte range) and `warc:corrupt`
(a stretch of the file that holds no readable record, with its byte range).

Nothing readable is lost:
- HTTP headers that FastWARC cannot split (bare LF line ends, as some real crawls write) are parsed again by
  warcio's tolerant parser; well-formed records never take that path.
- A record cut short (truncated file, damaged gzip member) yields the bytes present as a page marked `truncated`;
  the extract stage decides whether they hold text.
- A Content-Length that lies is caught before the record is read: in a plain file its block must end in the
  blank line that ends every record, in a gzip file it must fill its member. One too long (running over the next
  record's header) or too short makes the record a `warc:bad_length` skip naming its byte range, and reading goes
  on at the next record (the next `WARC/1.x` header, or the next gzip member), so no well-formed record is lost.
  A block that runs past the end of the file with no record header in it is a record cut short (below).
- After a damaged gzip member, reading resynchronises at the next gzip member that decodes to a WARC record and goes
  on; the bytes in between are one `warc:corrupt` skip naming their range. The stream stays forward-only: the
  reader keeps the bytes since the current record's start (`SourceStream`) to go back to.

WARC files are parsed with FastWARC; ARC files (`.arc`, `.arc.gz`) with warcio, which converts them to WARC records
(an ARC record cut short is kept as a `truncated` page too; a broken ARC file still ends at the break).
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import re
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import IO

from fastwarc.warc import ArchiveIterator as FastArchiveIterator
from fastwarc.warc import WarcRecordType
from warcio.statusandheaders import StatusAndHeadersParser, StatusAndHeadersParserException

from llm_core.crawl.http_body import decode_archived
from llm_core.crawl.warc_stream import (
    GZIP_MAGIC,
    HEADER_ALLOWANCE,
    Member,
    SourceReadError,
    SourceStream,
    decode_member,
    has_bytes,
    length_lie,
    member_end,
    next_marker,
)

REASON_CORRUPT = "warc:corrupt"
REASON_TRUNCATED = "warc:truncated"
REASON_BAD_LENGTH = "warc:bad_length"
_PEEK_BYTES = 512  # enough for the status line, to tell CRLF from bare-LF line ends
_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")
_HTTP_PARSER = StatusAndHeadersParser(["HTTP/1.0", "HTTP/1.1", "HTTP/2"], verify=False)


@dataclass(frozen=True)
class Page:
    """One kept page, in the RAW_PAGES schema. `truncated`: the record ended before its declared length."""

    url: str
    fetched_at: dt.datetime | None
    status: int
    content_type: str
    charset: str | None
    body: bytes
    warc_record_id: str | None
    source: str
    truncated: bool = False

    def row(self) -> dict:
        return self.__dict__.copy()


@dataclass(frozen=True)
class Skip:
    """One record not kept, and why."""

    url: str | None
    record_id: str | None
    reason: str
    detail: str


def media_type(content_type: str | None) -> tuple[str, str | None]:
    """'text/html; charset=GB2312' -> ('text/html', 'gb2312')."""
    if not content_type:
        return "", None
    mime, *params = content_type.split(";")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'").lower()
    return mime.strip().lower(), charset


def is_arc(name: str) -> bool:
    return name.lower().removesuffix(".gz").endswith(".arc")


def read_archive(
    stream: IO[bytes], *, name: str, source: str, content_types: list[str], max_body_bytes: int,
    max_decoded_bytes: int | None = None,
) -> Iterator[Page | Skip]:
    """Pages and skips of one WARC/ARC stream (gzip per record or plain); `name` picks the format. Records over
    `max_body_bytes` are skipped; a body decodes to at most `max_decoded_bytes` (default: `max_body_bytes`), and
    one cut there is a page marked `truncated`.

    Raises `SourceReadError` if the stream itself fails; broken data in a stream that reads fine becomes
    truncated pages and `warc:truncated` / `warc:corrupt` skips instead."""
    wrapped = SourceStream(stream)
    decoded = max_body_bytes if max_decoded_bytes is None else max_decoded_bytes
    if is_arc(name):
        yield from _read_arc(wrapped, source=source, content_types=set(content_types), max_body_bytes=max_body_bytes,
                             max_decoded_bytes=decoded)
    else:
        yield from _read_warc(wrapped, _RecordReader(source, set(content_types), max_body_bytes, decoded))


def _classify(
    status: int | None, mime: str, declared: int, content_types: set[str], max_body_bytes: int
) -> tuple[str, str] | None:
    """The (reason, detail) a response record is skipped for, or None to keep it."""
    if status is None:
        return "warc:not_http", ""
    if mime not in content_types:
        return "warc:not_html", mime or "(no content type)"
    if not 200 <= status < 300:
        return "warc:status", str(status)
    if declared > max_body_bytes:
        return "warc:too_large", f"{declared} bytes"
    return None


@dataclass(frozen=True)
class _Failure:
    """Where the fast path stopped: recovery starts at `offset`; `done` says the record there was read in full;
    `error` is empty when the fast path saw no error."""

    offset: int
    done: bool
    error: str
    skip_to: int | None = None  # a record with a lying length was skipped: go on here (-1: at the end of input)


@dataclass(frozen=True)
class _RecordReader:
    source: str
    content_types: set[str]
    max_body_bytes: int
    max_decoded_bytes: int

    def records(self, stream: IO[bytes]) -> Generator[Page | Skip, None, _Failure]:
        """Items of the records in `stream` read with FastWARC; returns where it failed (`error` empty at what
        FastWARC took for the end: the start of the last record)."""
        begin = stream.tell()
        mark = stream.mark if isinstance(stream, SourceStream) else None
        records = iter(FastArchiveIterator(stream, parse_http=False))
        last_start: int | None = None
        while True:
            try:
                record = next(records)
            except StopIteration:
                return _Failure(last_start if last_start is not None else begin, last_start is not None, "")
            except OSError as e:  # a damaged gzip member or unparsable record
                start = last_start if last_start is not None else begin
                return _Failure(start, last_start is not None, f"{type(e).__name__}: {e}")
            url = record.headers.get("WARC-Target-URI")
            length = record.headers.get("Content-Length")
            lie = length_lie(stream, record.stream_pos, int(length)) if mark and (length or "").isdigit() else None
            if lie is not None:
                next_start, detail = lie
                yield Skip(url, record.record_id, REASON_BAD_LENGTH, detail)
                return _Failure(record.stream_pos, False, "", skip_to=next_start)
            if length is None:  # FastWARC takes header lines cut short for a record
                yield Skip(url, record.record_id, REASON_TRUNCATED, "WARC headers without Content-Length: cut short")
            elif record.record_type != WarcRecordType.response:
                detail = record.headers.get("Content-Type") or ""
                yield Skip(url, record.record_id, f"warc:{record.record_type}", detail)
            else:
                try:
                    item = self.response(record, url, int(length) if length.isdigit() else 0)
                except OSError as e:  # the block itself is damaged: recover from this record's start
                    return _Failure(record.stream_pos, False, f"{type(e).__name__}: {e}")
                yield item
            last_start = record.stream_pos
            if mark is not None:
                mark(last_start)

    def response(self, record, url: str | None, declared: int) -> Page | Skip:
        """One response record (`declared`: its Content-Length): a page (maybe `truncated`), or a skip."""
        record_id = record.record_id
        if declared > self.max_body_bytes:
            return Skip(url, record_id, "warc:too_large", f"{declared} bytes")
        record.freeze()  # the block in memory (bounded above), so a short read shows as truncation
        present = record.content_length
        truncated = present < declared
        head = record.reader.read(_PEEK_BYTES)
        record.reader.seek(0)
        eol = head.find(b"\n")
        if truncated or (eol > 0 and head[eol - 1] != 0x0D):  # cut short, or bare LF line ends: parse tolerantly
            block = record.reader.read()
            parsed = _tolerant_http(block)
            if parsed is None and truncated and block.startswith(b"HTTP/"):
                detail = f"cut inside the HTTP headers: {present} of {declared} bytes"
                return Skip(url, record_id, REASON_TRUNCATED, detail)
            if parsed is not None:
                status, headers, raw_body = parsed
                return self._page(record, url, status, headers, raw_body, declared, truncated)
            record.reader.seek(0)
        record.parse_http(auto_decode="none")
        if not record.is_http:
            return Skip(url, record_id, "warc:not_http", record.headers.get("Content-Type") or "")
        headers = record.http_headers
        return self._page(record, url, headers.status_code, headers, None, declared, truncated)

    def _page(self, record, url, status, headers, raw_body, declared, truncated) -> Page | Skip:
        """A page, or a skip for its status, type or size; `raw_body` None: the rest of the record's reader."""
        content_type = headers.get("Content-Type")
        mime, charset = media_type(content_type)
        skip = _classify(status, mime, declared, self.content_types, self.max_body_bytes)
        if skip:
            return Skip(url, record.record_id, *skip)
        if raw_body is None:
            raw_body = record.reader.read()
        body, cut = decode_archived(
            raw_body, headers.get("Transfer-Encoding"), headers.get("Content-Encoding"), self.max_decoded_bytes
        )
        return Page(url, record.record_date, status, mime, charset, body, record.record_id, self.source,
                    truncated or cut)


class _Headers(dict):
    """Case-insensitive header lookup over warcio's parsed headers (first value wins)."""

    def __init__(self, pairs: list[tuple[str, str]]):
        super().__init__()
        for name, value in pairs:
            self.setdefault(name.lower(), value)

    def get(self, name: str, default=None):  # type: ignore[override]
        return super().get(name.lower(), default)


def _tolerant_http(block: bytes) -> tuple[int | None, _Headers, bytes] | None:
    """(status, headers, raw body) of an HTTP response block whose lines may end in a bare LF (warcio's parser);
    None if the block holds no complete header section."""
    end = _HEADER_END_RE.search(block) if block.startswith(b"HTTP/") else None
    if end is None:
        return None
    try:
        parsed = _HTTP_PARSER.parse(io.BytesIO(block[: end.end()]))
    except (StatusAndHeadersParserException, EOFError, ValueError):
        return None
    if parsed is None or not parsed.headers:
        return None
    code = parsed.get_statuscode()
    return (int(code) if code and code.isdigit() else None), _Headers(parsed.headers), block[end.end() :]


def _read_warc(stream: SourceStream, reader: _RecordReader) -> Iterator[Page | Skip]:
    while True:
        failure = yield from reader.records(stream)
        if failure.skip_to is not None:
            if failure.skip_to < 0:
                return
            stream.rewind(failure.skip_to)
            continue
        if not failure.error:  # FastWARC ends quietly at a gzip member cut inside its WARC headers: look past it
            if not stream.starts_with(GZIP_MAGIC):
                return
            after = member_end(stream, failure.offset) if failure.done else failure.offset
            if after is None or not has_bytes(stream, after):
                return
            failure = _Failure(after, False, "the file ends inside a gzip member")
        if stream.starts_with(GZIP_MAGIC):
            resume = yield from _recover(stream, failure, reader)
        else:  # an uncompressed file: go on at the next WARC header line
            resume = next_marker(stream, failure.offset + 1, b"WARC/1.")
            end = resume if resume is not None else stream.position
            where = f"after the record at {failure.offset}" if failure.done else f"from {failure.offset}"
            yield Skip(None, None, REASON_CORRUPT, f"bytes {where} to {end} unreadable: {failure.error}")
        if resume is None:
            return
        stream.rewind(resume)


def _recover(
    stream: SourceStream, failure: _Failure, reader: _RecordReader
) -> Generator[Page | Skip, None, int | None]:
    """Walk the gzip members from where the fast path failed: records cut short yield what is present, stretches
    that hold none become one `warc:corrupt` skip with their byte range. Returns the offset of the next member that
    decodes in full to a WARC record (where the fast path goes on), or None at the end of the input."""
    cap = reader.max_body_bytes + HEADER_ALLOWANCE
    offset: int | None = max(failure.offset, stream.window_start)
    lost_from: int | None = None
    error = failure.error
    if failure.done:  # the record there was read and yielded already (its member's end may be what is damaged)
        end = member_end(stream, offset)
        offset = end if end is not None else next_marker(stream, offset + 1)
    while offset is not None:
        stream.mark(offset)
        member = decode_member(stream, offset, cap)
        if member is None:
            break
        if member.complete and not member.data:  # an empty member: legal, holds nothing
            offset = member.end
            continue
        is_warc = member.data.startswith(b"WARC/")
        if member.complete and is_warc and offset > failure.offset:
            break
        if is_warc:  # a record cut short (or one FastWARC failed on): what is present
            if lost_from is not None:
                yield Skip(None, None, REASON_CORRUPT, f"bytes {lost_from}-{offset} unreadable: {error}")
                lost_from = None
            yield from _partial_record(member, offset, reader)
        elif lost_from is None:
            lost_from, error = offset, member.error or "not a WARC record"
        offset = next_marker(stream, offset + 1)
    if lost_from is not None:
        end = offset if offset is not None else stream.position
        yield Skip(None, None, REASON_CORRUPT, f"bytes {lost_from}-{end} unreadable: {error}")
    return offset


def _partial_record(member: Member, offset: int, reader: _RecordReader) -> Iterator[Page | Skip]:
    """The record(s) in the decoded bytes of the member at `offset` that the fast path could not read."""
    if b"\r\n\r\n" not in member.data:  # FastWARC would take the header lines present for a whole record
        detail = f"record at byte {offset} cut inside its WARC headers ({member.error or 'no blank line'})"
        yield Skip(None, None, REASON_TRUNCATED, detail)
        return
    seen = 0
    for item in reader.records(io.BytesIO(member.data)):  # a for loop drops the generator's return value
        seen += 1
        yield item
    if not seen:
        detail = f"record at byte {offset} unparsable: {member.error or 'bad WARC headers'}"
        yield Skip(None, None, REASON_CORRUPT, detail)


def _read_arc(
    stream: IO[bytes], *, source: str, content_types: set[str], max_body_bytes: int, max_decoded_bytes: int
) -> Iterator[Page | Skip]:
    from warcio.archiveiterator import ArchiveIterator

    records = iter(ArchiveIterator(stream, arc2warc=True))
    for index in itertools.count():
        try:
            record = next(records)
        except StopIteration:
            return
        except SourceReadError:
            raise
        except Exception as e:  # warcio raises several types on a broken ARC: keep what was read before
            yield Skip(None, None, REASON_CORRUPT, f"{type(e).__name__}: {e}")
            return
        url = record.rec_headers.get_header("WARC-Target-URI")
        date = record.rec_headers.get_header("WARC-Date")
        # ARC records have no ids; warcio invents random ones. Derive a stable one so reruns give equal output.
        record_id = f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{index} {date} {url}')}>"
        if record.rec_type != "response":
            yield Skip(url, record_id, f"warc:{record.rec_type}", "")
            continue
        headers = record.http_headers
        status = int(headers.get_statuscode()) if headers and headers.get_statuscode().isdigit() else None
        mime, charset = media_type(headers.get_header("Content-Type") if headers else None)
        declared = int(record.rec_headers.get_header("Content-Length") or 0)
        skip = _classify(status, mime, declared, content_types, max_body_bytes)
        if skip:
            yield Skip(url, record_id, *skip)
            continue
        fetched_at = dt.datetime.fromisoformat(date.replace("Z", "+00:00")) if date else None
        raw = record.raw_stream.read(max_body_bytes + 1)
        # warcio's reader counts down the declared length: bytes still owed after a short read = the file ended
        truncated = len(raw) <= max_body_bytes and getattr(record.raw_stream, "limit", 0) > 0
        body, cut = decode_archived(
            raw, headers.get_header("Transfer-Encoding"), headers.get_header("Content-Encoding"), max_decoded_bytes
        )
        yield Page(url, fetched_at, status, mime, charset, body, record_id, source, truncated or cut)

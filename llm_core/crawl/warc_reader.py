"""Read WARC (and legacy ARC) files record by record into raw pages, accounting for every record.

`read_archive(stream, ...)` yields one `Page` or one `Skip` per record seen, never holding more than one record in
memory. Kept: `response` records with an HTTP 2xx status and an HTML-like media type, body decoded from chunked
transfer encoding and content encoding (gzip, deflate, brotli). Skipped with a reason: other record types
(`warc:request`, `warc:revisit`, `warc:metadata`, `warc:conversion` (WET), ...), `warc:not_html`, `warc:status`,
`warc:not_http`, `warc:too_large`. A truncated or corrupt file yields one `warc:corrupt` skip
and ends: the records read before it are kept.

WARC files are parsed with FastWARC; ARC files (`.arc`, `.arc.gz`) with warcio, which converts them to WARC records.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from fastwarc.warc import ArchiveIterator as FastArchiveIterator
from fastwarc.warc import WarcRecordType

from llm_core.crawl.http_body import decode_body

REASON_CORRUPT = "warc:corrupt"


@dataclass(frozen=True)
class Page:
    """One kept page, in the RAW_PAGES schema."""

    url: str
    fetched_at: dt.datetime | None
    status: int
    content_type: str
    charset: str | None
    body: bytes
    warc_record_id: str | None
    source: str

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


class SourceReadError(Exception):
    """Reading the input itself failed (network, storage): not a corrupt file, so the shard fails and is retried."""


class _SourceStream(io.RawIOBase):
    """The input as the parsers see it: a forward-only stream that knows its position (FastWARC asks for it, and
    not every fsspec stream can tell), whose own read failures become `SourceReadError`."""

    def __init__(self, raw: IO[bytes]):
        self.raw, self.position = raw, 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        try:
            data = self.raw.read(len(buffer))
        except Exception as e:
            raise SourceReadError(f"reading the input failed: {type(e).__name__}: {e}") from e
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def read_archive(
    stream: IO[bytes], *, name: str, source: str, content_types: list[str], max_body_bytes: int
) -> Iterator[Page | Skip]:
    """Pages and skips of one WARC/ARC stream (gzip per record or plain); `name` picks the format.

    Raises `SourceReadError` if the stream itself fails; a stream that reads fine but holds broken data ends with
    a `warc:corrupt` skip instead."""
    reader = _read_arc if is_arc(name) else _read_warc
    wrapped = _SourceStream(stream)
    yield from reader(wrapped, source=source, content_types=set(content_types), max_body_bytes=max_body_bytes)


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


def _read_warc(
    stream: IO[bytes], *, source: str, content_types: set[str], max_body_bytes: int
) -> Iterator[Page | Skip]:
    records = iter(FastArchiveIterator(stream, parse_http=False))
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except OSError as e:  # corrupt gzip member or unparsable record: keep what was read before
            yield Skip(None, None, REASON_CORRUPT, f"{type(e).__name__}: {e}")
            return
        url = record.headers.get("WARC-Target-URI")
        record_id = record.record_id
        rec_type = str(record.record_type)
        if record.record_type != WarcRecordType.response:
            yield Skip(url, record_id, f"warc:{rec_type}", record.headers.get("Content-Type") or "")
            continue
        item = _read_response(record, url, record_id, source, content_types, max_body_bytes)
        yield item
        if isinstance(item, Skip) and item.reason == REASON_CORRUPT:
            return


def _read_response(
    record, url: str | None, record_id: str, source: str, content_types: set[str], max_body_bytes: int
) -> Page | Skip:
    """One response record: a page, or a skip (a `warc:corrupt` skip means the stream ends here)."""
    declared = int(record.headers.get("Content-Length") or 0)
    if declared > max_body_bytes:
        return Skip(url, record_id, "warc:too_large", f"{declared} bytes")
    try:
        record.freeze()  # the block in memory (bounded above), so a short read shows as truncation
    except OSError as e:
        return Skip(url, record_id, REASON_CORRUPT, f"{type(e).__name__}: {e}")
    if record.content_length < declared:
        return Skip(url, record_id, REASON_CORRUPT, f"truncated: {record.content_length} of {declared} bytes")
    try:
        record.parse_http(auto_decode="none")
    except OSError as e:
        return Skip(url, record_id, "warc:not_http", str(e))
    status = record.http_headers.status_code if record.is_http else None
    mime, charset = media_type(record.http_headers.get("Content-Type") if record.is_http else None)
    skip = _classify(status, mime, declared, content_types, max_body_bytes)
    if skip:
        return Skip(url, record_id, *skip)
    headers = record.http_headers
    body = decode_body(
        record.reader.read(), headers.get("Transfer-Encoding"), headers.get("Content-Encoding"), max_body_bytes
    )
    return Page(url, record.record_date, status, mime, charset, body, record_id, source)


def _read_arc(
    stream: IO[bytes], *, source: str, content_types: set[str], max_body_bytes: int
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
        body = decode_body(
            record.raw_stream.read(max_body_bytes + 1),
            headers.get_header("Transfer-Encoding"),
            headers.get_header("Content-Encoding"),
            max_body_bytes,
        )
        yield Page(url, fetched_at, status, mime, charset, body, record_id, source)

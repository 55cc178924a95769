"""Write fetched HTTP responses as WARC `response` records (gzip per record), rolling to a new file every
`records_per_file` records: `{prefix}-00000.warc.gz`, `{prefix}-00001.warc.gz`, ...

The body is stored decoded (as the crawler received it after HTTP content decoding), so the archived headers drop
`Content-Encoding`/`Transfer-Encoding` and carry the stored `Content-Length`; a body cut at the size cap gets
`WARC-Truncated: length`. Files are opened through `open_file(name)` (the artifact's atomic writer, or a plain
folder), so a file appears only when complete.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import IO, ContextManager

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from llm_core.crawl.fetcher import Fetch

DROPPED_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}


class WarcFiles:
    def __init__(self, open_file: Callable[[str], ContextManager[IO[bytes]]], prefix: str, records_per_file: int):
        self.open_file, self.prefix, self.records_per_file = open_file, prefix, records_per_file
        self.files: list[str] = []
        self._stack: contextlib.ExitStack | None = None
        self._writer: WARCWriter | None = None
        self._records = 0

    def _open_next(self) -> WARCWriter:
        name = f"{self.prefix}-{len(self.files):05d}.warc.gz"
        self._stack = contextlib.ExitStack()
        stream = self._stack.enter_context(self.open_file(name))
        self.files.append(name)
        self._records = 0
        return WARCWriter(stream, gzip=True)

    def write(self, fetch: Fetch) -> str:
        """Archive one response; returns its WARC-Record-ID."""
        if self._writer is None:
            self._writer = self._open_next()
        headers = [(k, v) for k, v in fetch.headers if k.lower() not in DROPPED_HEADERS]
        headers.append(("Content-Length", str(len(fetch.body))))
        http_headers = StatusAndHeaders(f"{fetch.status} {fetch.reason_phrase}".strip(), headers, protocol="HTTP/1.1")
        warc_headers = {"WARC-Date": fetch.fetched_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        if fetch.truncated:
            warc_headers["WARC-Truncated"] = "length"
        record = self._writer.create_warc_record(
            fetch.url, "response", payload=io.BytesIO(fetch.body), http_headers=http_headers,
            warc_headers_dict=warc_headers,
        )
        self._writer.write_record(record)
        self._records += 1
        if self._records >= self.records_per_file:
            self.close()
        return record.rec_headers.get_header("WARC-Record-ID")

    def close(self, exc: BaseException | None = None) -> None:
        if self._stack is not None:
            stack, self._stack, self._writer = self._stack, None, None
            if exc is None:
                stack.close()
            else:
                stack.__exit__(type(exc), exc, exc.__traceback__)

    def __enter__(self) -> WarcFiles:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exc)

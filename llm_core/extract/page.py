"""One fetched page -> one document or one rejection with a reason. No I/O, no shards: see `stage.py`.

The checks run cheapest first: HTTP status, content type, size, emptiness, decoding (`charset.py`), then
trafilatura under a time bound (`timeout.py`). The title comes from trafilatura's own title logic
(`extract_title`: `<title>`, `og:title`, `<h1>`) instead of `with_metadata=True`, which would also run date
detection and halves throughput.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import trafilatura
from trafilatura.deduplication import LRUCache
from trafilatura.metadata import extract_title
from trafilatura.settings import LRU_SIZE

from llm_core.extract.charset import UndecodableError, charset_from_content_type, decode_body
from llm_core.extract.config import ExtractConfig
from llm_core.extract.timeout import DocumentTimeout, time_limit

HTML_TYPES = ("text/html", "application/xhtml+xml", "text/xml", "application/xml")
_SNIFF_BYTES = 1024
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<title", b"<div", b"<p", b"<meta")


@dataclass(frozen=True)
class Rejection:
    reason: str  # extract:<what>
    detail: str


@dataclass(frozen=True)
class Extracted:
    text: str
    title: str | None
    encoding: str


def doc_id(url: str, text: str) -> str:
    """Stable id of a document: the same page text at the same URL always gets the same id."""
    return hashlib.sha256(f"{url}\n{text}".encode()).hexdigest()[:32]


def looks_like_html(content_type: str | None, body: bytes) -> bool:
    """HTML by its declared type; with no usable type, by sniffing the first bytes for HTML tags."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime:
        return mime in HTML_TYPES
    head = body[:_SNIFF_BYTES].lstrip().lower()
    return b"\x00" not in head and any(marker in head for marker in _HTML_MARKERS)


class PageExtractor:
    """Extracts pages with one config; holds one dedup cache, so create one per shard (deterministic output)."""

    def __init__(self, config: ExtractConfig):
        self.config = config
        self.dedup: bool | LRUCache = LRUCache(maxsize=LRU_SIZE) if config.deduplicate else False

    def __call__(self, page: dict[str, Any]) -> Extracted | Rejection:
        body: bytes = page.get("body") or b""
        status = page.get("status")
        if status is not None and not 200 <= status < 300:
            return Rejection("extract:http_status", f"status={status}")
        content_type = page.get("content_type")
        if not looks_like_html(content_type, body):
            return Rejection("extract:not_html", f"content_type={content_type!r}")
        if len(body) > self.config.max_bytes:
            return Rejection("extract:too_large", f"bytes={len(body)} > max_bytes={self.config.max_bytes}")
        if not body.strip():
            return Rejection("extract:empty", "empty body")
        try:
            decoded = decode_body(body, page.get("charset") or charset_from_content_type(content_type))
        except UndecodableError as e:
            return Rejection("extract:decode_error", str(e))
        try:
            with time_limit(self.config.timeout_s):
                text, title = self.extract(decoded.text, page.get("url"))
        except DocumentTimeout:
            return Rejection("extract:timeout", f"over {self.config.timeout_s}s")
        except Exception as e:  # noqa: BLE001 - any parser failure on one page is a rejection, not a crash
            return Rejection("extract:error", f"{type(e).__name__}: {e}"[:500])
        if not text or not text.strip():
            return Rejection("extract:empty", f"no main text found (decoded as {decoded.encoding})")
        return Extracted(text=text, title=title, encoding=decoded.encoding)

    def extract(self, html: str, url: str | None) -> tuple[str | None, str | None]:
        """Main text and title of a decoded page (trafilatura); (None, None) when it finds no content.

        The title tree is dropped before extraction, which parses again: handing trafilatura a tree makes it
        deep-copy it, so two trees of a big page would be alive at once, while a parse costs ~1% of extraction."""
        tree = trafilatura.load_html(html)
        if tree is None:
            return None, None
        title = extract_title(tree)
        del tree
        document = trafilatura.bare_extraction(
            html,
            url=url,
            favor_precision=self.config.favor_precision,
            fast=self.config.fast,
            include_comments=self.config.include_comments,
            include_tables=self.config.include_tables,
            deduplicate=self.dedup,
        )
        if document is None:
            return None, title
        return document.text, title or document.title

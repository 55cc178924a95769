"""One fetched page -> one document or one rejection with a reason. No I/O, no shards: see `stage.py`.

The checks run cheapest first: HTTP status, content type, size, emptiness, decoding (`charset.py`), then
trafilatura under a time bound (`timeout.py`), then the text itself: none (`extract:empty`) or no line that reads as
a sentence, only menus, link lists or a copyright line (`extract:boilerplate_only`). Each page is extracted on its
own, so its text does not depend on the pages before it; leading lines that repeat the title are dropped from the
text (the title has its own column). The defaults (`config.py`) were chosen with `bench/extraction_quality.py`.
The title comes from trafilatura's own title logic (`extract_title`: `<title>`, `og:title`, `<h1>`) instead of
`with_metadata=True`, which would also run date detection and halves throughput.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import trafilatura
from trafilatura.metadata import extract_title

from llm_core.extract.charset import UndecodableError, charset_from_content_type, decode_body
from llm_core.extract.config import ExtractConfig
from llm_core.extract.timeout import DocumentTimeout, time_limit

HTML_TYPES = ("text/html", "application/xhtml+xml", "text/xml", "application/xml")
_SNIFF_BYTES = 1024
_WORD_RE = re.compile(r"[^\W\d_]+")
_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
# A line reads as prose when it ends like a sentence (or a line of verse) and is long enough, or is long anyway.
_SENTENCE_ENDS = (".", "!", "?", "\"", "'", "”", "’", ")", ":", ",", ";", "。", "！", "？", "，", "；", "」", "』", "…")
_MIN_SENTENCE_WORDS, _MIN_RUN_WORDS = 6, 12
_MIN_SENTENCE_CJK, _MIN_RUN_CJK = 5, 24  # "床前明月光，" is a line of a poem; a menu item rarely ends in "，"
_BOILERPLATE_LINE_RE = re.compile(
    r"©|\(c\)\s*\d{4}|\bcopyright\b|all rights reserved|\buses? cookies\b|\bcookie (?:policy|settings)\b",
    re.IGNORECASE,
)
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


def _words(text: str) -> str:
    return " ".join(_WORD_RE.findall(text.lower()))


def drop_title_lines(text: str | None, title: str | None) -> str | None:
    """`text` without the leading lines that repeat the page title (it is kept in the `title` column)."""
    if not text or not title:
        return text
    lines, wanted = text.split("\n"), _words(title)
    drop = 0
    while drop < min(2, len(lines) - 1):
        line = _words(lines[drop])
        if not (line == wanted or (len(line) > 15 and line in wanted)):
            break
        drop += 1
    return "\n".join(lines[drop:])


def is_boilerplate_only(text: str) -> bool:
    """True when no line of `text` reads as prose: none of `_MIN_SENTENCE_WORDS` words (or `_MIN_SENTENCE_CJK`
    CJK characters) ending like a sentence or a line of verse, none of `_MIN_RUN_WORDS` words (`_MIN_RUN_CJK`)
    at all. Copyright lines, menus, link lists and cookie notices are not sentences; a short real document, a poem
    included, still has one."""
    for line in text.split("\n"):
        line = line.strip()
        if _BOILERPLATE_LINE_RE.search(line):
            continue
        words = len(_WORD_RE.findall(line))
        cjk = len(_CJK_RE.findall(line))
        ends = line.endswith(_SENTENCE_ENDS)
        if (words >= _MIN_SENTENCE_WORDS and ends) or words >= _MIN_RUN_WORDS:
            return False
        if (cjk >= _MIN_SENTENCE_CJK and ends) or cjk >= _MIN_RUN_CJK:
            return False
    return True


class PageExtractor:
    """Extracts pages with one config. Each page on its own: the same page gives the same text whatever pages came
    before it (trafilatura's `deduplicate` cache, shared across pages, is not used; repetition across documents
    is the filter stage's job)."""

    def __init__(self, config: ExtractConfig):
        self.config = config

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
            charset = page.get("charset") or charset_from_content_type(content_type)
            decoded = decode_body(body, charset, truncated=bool(page.get("truncated")))
        except UndecodableError as e:
            return Rejection("extract:decode_error", str(e))
        try:
            with time_limit(self.config.timeout_s):
                text, title = self.extract(decoded.text, page.get("url"))
        except DocumentTimeout:
            return Rejection("extract:timeout", f"over {self.config.timeout_s}s")
        except Exception as e:  # noqa: BLE001 - any parser failure on one page is a rejection, not a crash
            return Rejection("extract:error", f"{type(e).__name__}: {e}"[:500])
        cut = "; the page was truncated" if page.get("truncated") else ""
        if not text or not text.strip():
            return Rejection("extract:empty", f"no main text found (decoded as {decoded.encoding}){cut}")
        if self.config.reject_boilerplate and is_boilerplate_only(text):
            first = text.strip().split("\n", 1)[0][:80]
            return Rejection("extract:boilerplate_only", f"no sentence in {len(text)} chars, first line {first!r}{cut}")
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
            favor_recall=self.config.favor_recall,
            fast=self.config.fast,
            include_comments=self.config.include_comments,
            include_tables=self.config.include_tables,
            deduplicate=False,
        )
        if document is None:
            return None, title
        title = title or document.title
        return drop_title_lines(document.text, title), title

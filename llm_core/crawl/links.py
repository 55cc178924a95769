"""Links of an HTML page, as absolute http(s) URLs without fragments, in document order, without repeats.

Honours `<base href>` and skips `rel="nofollow"` links. Unparsable HTML gives no links, never an error.
"""

from __future__ import annotations

from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.etree
import lxml.html


def normalize(url: str) -> str:
    return urldefrag(url.strip())[0]


def extract_links(body: bytes, page_url: str) -> list[str]:
    try:
        doc = lxml.html.document_fromstring(body)
    except (lxml.etree.ParserError, ValueError):
        return []
    base = page_url
    for href in doc.xpath("//base/@href")[:1]:
        base = urljoin(page_url, href)
    seen: dict[str, None] = {}
    for anchor in doc.iter("a"):
        href = anchor.get("href")
        if not href or "nofollow" in (anchor.get("rel") or "").lower():
            continue
        try:
            url = normalize(urljoin(base, href))
            scheme = urlsplit(url).scheme
        except ValueError:  # e.g. an unbalanced "[" in the host part
            continue
        if scheme in ("http", "https"):
            seen.setdefault(url, None)
    return list(seen)

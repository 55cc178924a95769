"""Turn the raw bytes of a fetched page into text, as a browser would.

Where the encoding comes from, in order:

1. a byte-order mark (it overrides every declaration, as in the WHATWG encoding standard);
2. valid UTF-8 with non-ASCII bytes is UTF-8 whatever was declared: legacy multi-byte text is almost never valid
   UTF-8 by chance, while "declared iso-8859-1, served UTF-8" is a common server misconfiguration;
3. the charset of the HTTP `Content-Type` header, then the page's `<meta charset>` / `<meta http-equiv>` tag,
   each used only if the body decodes with it without error;
4. detection (charset-normalizer, see `detect`) when nothing declared fits.

Labels are mapped to the codec a browser really uses: gb2312/gbk -> gb18030, shift_jis -> cp932,
iso-8859-1/ascii -> cp1252, euc-kr -> cp949, big5 -> big5hkscs. This module does not parse HTML beyond the
meta prescan of the first bytes.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

import charset_normalizer

# Browser-compatible supersets of the labels pages declare (WHATWG encoding standard), by Python codec name.
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "iso8859-1": "cp1252",
    "ascii": "cp1252",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
    "tis-620": "cp874",
    "iso8859-11": "cp874",
}
# WHATWG labels Python does not know.
_ALIASES = {"x-sjis": "cp932", "windows-31j": "cp932", "x-gbk": "gb18030", "x-euc-jp": "euc_jp"}
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_PRESCAN_BYTES = 4096
_META_CHARSET = re.compile(rb"""<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_CT_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # the Python codec used
    origin: str  # bom | utf-8 | header | meta | detected | ascii


class UndecodableError(ValueError):
    """The body fits no declared encoding and detection found none (binary data, most likely)."""


def normalize_encoding(label: str | None) -> str | None:
    """A declared charset label -> the Python codec a browser would decode with; None if unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    try:
        name = codecs.lookup(_ALIASES.get(label, label)).name
    except LookupError:
        return None
    return _SUPERSETS.get(name, name)


def charset_from_content_type(content_type: str | None) -> str | None:
    """The `charset=` parameter of a Content-Type value, if any."""
    match = _CT_CHARSET.search(content_type or "")
    return match.group(1) if match else None


def meta_charset(body: bytes) -> str | None:
    """The charset declared by `<meta charset>` or `<meta http-equiv="Content-Type" content="...; charset=">`."""
    match = _META_CHARSET.search(body[:_PRESCAN_BYTES])
    return match.group(1).decode("ascii", "ignore") if match else None


def _try(body: bytes, encoding: str | None, truncated: bool = False) -> str | None:
    """`body` decoded strictly, or None; of a `truncated` body, an incomplete character at the end is dropped."""
    if encoding is None:
        return None
    try:
        if truncated:
            return codecs.getincrementaldecoder(encoding)().decode(body, final=False)
        return body.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def detect(body: bytes) -> charset_normalizer.CharsetMatch | None:
    """The likeliest encoding by charset-normalizer, ranked by chaos minus coherence: its own ranking (chaos
    first) lets short EUC-JP text pass as EUC-KR, which decodes with little chaos but forms no known language."""
    matches = list(charset_normalizer.from_bytes(body))
    return min(matches, key=lambda m: m.chaos - m.coherence, default=None)


def decode_body(body: bytes, header_charset: str | None = None, truncated: bool = False) -> Decoded:
    """Decode a page body; `header_charset` is the charset of the HTTP header (raw label, may be None). A
    `truncated` body (cut short in the archive) may end inside a multi-byte character, which is dropped."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return Decoded(body[len(bom) :].decode(encoding, errors="replace"), encoding, "bom")
    if not body.isascii():
        text = _try(body, "utf-8", truncated)
        if text is not None:
            return Decoded(text, "utf-8", "utf-8")
    for origin, label in (("header", header_charset), ("meta", meta_charset(body))):
        encoding = normalize_encoding(label)
        if origin == "meta" and encoding and encoding.startswith("utf-16"):
            encoding = "utf-8"  # a meta tag readable as ASCII cannot be UTF-16 (WHATWG prescan rule)
        text = _try(body, encoding, truncated)
        if text is not None:
            return Decoded(text, encoding, origin)
    if body.isascii():
        return Decoded(body.decode("ascii"), "ascii", "ascii")
    best = detect(body)
    if best is None:
        raise UndecodableError("no declared charset fits and detection found none")
    encoding = normalize_encoding(best.encoding) or best.encoding
    text = _try(body, encoding, truncated)
    return Decoded(text if text is not None else str(best), encoding, "detected")

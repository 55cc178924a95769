"""What the search index holds: passages of about N words cut from documents and from curated JSONL files.

A passage is a window of whitespace-separated words, joined by single spaces (so a hit prints on one line). Text
written without spaces (Chinese, Japanese) has few such words, so a passage is also capped at `CHARS_PER_WORD`
characters per word it may hold, and a longer "word" is cut into pieces of that cap.

A curated file holds one JSON object per line, `{"url": ..., "text": ...}` (other keys are ignored). A line that
is not such an object is recorded with its reason and skipped; blank lines are not records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

CHARS_PER_WORD = 8


def cut_passages(text: str, words: int) -> list[str]:
    """`text` as consecutive passages of at most `words` words and `words * CHARS_PER_WORD` characters."""
    cap = words * CHARS_PER_WORD
    pieces = (w[i : i + cap] for w in text.split() for i in range(0, len(w), cap))
    passages: list[str] = []
    current: list[str] = []
    size = 0
    for piece in pieces:
        if current and (len(current) == words or size + 1 + len(piece) > cap):
            passages.append(" ".join(current))
            current, size = [], 0
        size += len(piece) + (1 if current else 0)
        current.append(piece)
    if current:
        passages.append(" ".join(current))
    return passages


@dataclass(frozen=True)
class CuratedLine:
    """One line of a curated file: a document (url and text), or why it is not one (`reason`)."""

    line: int
    url: str = ""
    text: str = ""
    reason: str = ""


def curated_lines(path: str) -> Iterator[CuratedLine]:
    """Every non-blank line of a curated JSONL file, numbered from 1, checked."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield check_line(number, line)


def check_line(number: int, line: str) -> CuratedLine:
    try:
        record = json.loads(line)
    except ValueError as e:
        return CuratedLine(number, reason=f"not JSON ({e.msg})")
    if not isinstance(record, dict):
        return CuratedLine(number, reason=f"not a JSON object (a {type(record).__name__})")
    url, text = record.get("url"), record.get("text")
    if not isinstance(url, str) or not url.strip():
        return CuratedLine(number, reason="no url (a non-empty string)")
    if not isinstance(text, str) or not text.strip():
        return CuratedLine(number, reason="no text (a non-empty string)")
    return CuratedLine(number, url=url.strip(), text=text)

"""What every tool is: a name and a call (the text the model wrote between the tool's start and end tokens) that
returns the text the model reads back. A tool never raises on bad input or on its own failure: it answers with an
`error: ...` text, bounded in length and the same for the same input."""

from __future__ import annotations

from typing import Protocol


class Tool(Protocol):
    name: str

    def __call__(self, call: str) -> str:
        """Run one call; the output text (an `error: ...` text on failure), at most the tool's `max_chars`."""
        ...


def clip(text: str, max_chars: int, total: int | None = None) -> str:
    """`text` if it fits in `max_chars`, else its head and a note of how much was left out, `max_chars` in all.
    `total` is the length of the whole text when `text` is already a cut head of it."""
    total = len(text) if total is None else max(total, len(text))
    if total <= max_chars:
        return text
    note = f"...[{total:,} chars in all]"
    return text[: max(0, max_chars - len(note))] + note[:max_chars]

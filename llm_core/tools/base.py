"""What every tool is: a name and a call (the text the model wrote between the tool's start and end tokens) that
returns the text the model reads back. A tool never raises on bad input or on its own failure: it answers with an
`error: ...` text, bounded in length and the same for the same input."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm_core.store import ArtifactReader
from llm_core.tokenizer.base import call_tokens


class Tool(Protocol):
    name: str

    def __call__(self, call: str) -> str:
        """Run one call; the output text (an `error: ...` text on failure), at most the tool's `max_chars`."""
        ...


@dataclass(frozen=True)
class ToolInputs:
    """What tools open from: the `index` artifact (None when there is none) and per-tool limits by tool name (a
    tool's defaults where absent)."""

    index: ArtifactReader | None = None
    limits: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolSpec:
    """One tool as the registry declares it: its name (its call tokens follow from it), how it opens from
    `ToolInputs` (None when what it needs is missing) and the artifact stage it needs, if any."""

    name: str
    open: Callable[[ToolInputs], Tool | None]
    needs: str | None = None

    @property
    def tokens(self) -> tuple[str, str]:
        """The call's start and end tokens."""
        return call_tokens(self.name)


def clip(text: str, max_chars: int, total: int | None = None) -> str:
    """`text` if it fits in `max_chars`, else its head and a note of how much was left out, `max_chars` in all.
    `total` is the length of the whole text when `text` is already a cut head of it."""
    total = len(text) if total is None else max(total, len(text))
    if total <= max_chars:
        return text
    note = f"...[{total:,} chars in all]"
    return text[: max(0, max_chars - len(note))] + note[:max_chars]

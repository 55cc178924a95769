"""The `Tool` protocol: what the chat engine calls when the model closes a tool call."""

from __future__ import annotations

from typing import Protocol


class Tool(Protocol):
    """A tool the model can call. `name` picks its tokens (`python`, `search`: `tokenizer.base.TOOL_DELIMITERS`)."""

    name: str

    def __call__(self, call: str) -> str: ...  # never raises; returns bounded output text, "error: ..." on failure

"""Every tool a chat model can call, in one ordered list (`TOOLS`), and how callers open them: the SFT data's tool
sources, the eval's tool suites, the engine (which finds a tool's call by its tokens) and the chat CLI and web."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from llm_core.tools import python_tool, search_tool
from llm_core.tools.base import Tool, ToolInputs, ToolSpec

TOOLS: list[ToolSpec] = [
    python_tool.SPEC,
    search_tool.SPEC,
]


def tool_spec(name: str) -> ToolSpec:
    """The declared tool `name`."""
    for spec in TOOLS:
        if spec.name == name:
            return spec
    raise KeyError(f"no tool {name!r}; the tools are {[s.name for s in TOOLS]}")


def open_tools(inputs: ToolInputs, names: Iterable[str] | None = None) -> list[Tool]:
    """The tools named (all if None) that open with `inputs`, in `TOOLS` order; those whose input is missing are
    left out."""
    wanted = None if names is None else set(names)
    tools = [spec.open(inputs) for spec in TOOLS if wanted is None or spec.name in wanted]
    return [t for t in tools if t is not None]


@contextlib.contextmanager
def opened_tools(inputs: ToolInputs, names: Iterable[str] | None = None) -> Iterator[list[Tool]]:
    """`open_tools`, closing each tool that holds a process (the Python sandbox) at the end."""
    tools = open_tools(inputs, names)
    try:
        yield tools
    finally:
        for tool in tools:
            close = getattr(tool, "close", None)
            if close is not None:
                close()

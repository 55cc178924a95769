"""The `Tokenizer` interface every stage uses, and the special tokens of the chat format and of tool calls.

A tokenizer maps text to ids and back. Ordinary text never yields a special id: a special token's string written
inside user text (say, a user typing "<|im_end|>") is encoded as ordinary text, piece by piece, so only code that
asks for a special id with `encode_special` can produce one. This is what keeps user input from forging chat
structure.

Tool tokens (`TOOL_TOKENS`) delimit a tool call inside an assistant turn (`<|python_start|>` code
`<|python_end|>`, `<|search_start|>` query `<|search_end|>`) and the tool's output that follows it
(`<|output_start|>` ... `<|output_end|>`). They are optional: a tokenizer trained without them (older artifacts, a
config that lists only `SPECIAL_TOKENS`) still loads, and tools are then unavailable (`has_tools` is False).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_SEP = "<|im_sep|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_SEP, IM_END)

OUTPUT_START = "<|output_start|>"
OUTPUT_END = "<|output_end|>"
# The tools whose call tokens a tokenizer trained with the tools holds, in special-token order. A literal here, not
# read from `llm_core.tools.registry.TOOLS`: the tokenizer sits below the tools (they import it, not the reverse), and
# the ids of a tokenizer artifact follow this order. `tests/test_tools_registry.py` checks that the registry declares
# the same tools in the same order; a new tool adds its name here too (and needs a tokenizer trained with its tokens).
TOOL_NAMES: tuple[str, ...] = ("python", "search")


def call_tokens(name: str) -> tuple[str, str]:
    """The tokens around a call to the tool `name`: `<|name_start|>`, `<|name_end|>`."""
    return f"<|{name}_start|>", f"<|{name}_end|>"


# A tool is identified by its name; these are the tokens around a call to it.
TOOL_DELIMITERS: dict[str, tuple[str, str]] = {name: call_tokens(name) for name in TOOL_NAMES}
TOOL_TOKENS: tuple[str, ...] = (*(t for name in TOOL_NAMES for t in TOOL_DELIMITERS[name]), OUTPUT_START, OUTPUT_END)
# What the bpe stage trains with unless its config says otherwise.
DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = SPECIAL_TOKENS + TOOL_TOKENS


class Tokenizer(abc.ABC):
    """Text <-> token ids, with a fixed set of special tokens (each a single id)."""

    def __init__(self, special_ids: dict[str, int]):
        missing = [t for t in SPECIAL_TOKENS if t not in special_ids]
        if missing:
            raise ValueError(f"tokenizer lacks the special tokens {missing}; every tokenizer needs {SPECIAL_TOKENS}")
        self.special_ids: dict[str, int] = dict(special_ids)

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of ids (max id + 1), special tokens included."""

    @property
    def has_tools(self) -> bool:
        """Whether every tool token is a special token here (else tools cannot be called nor rendered)."""
        return all(t in self.special_ids for t in TOOL_TOKENS)

    @property
    def eot_id(self) -> int:
        """Id of `<|endoftext|>`, the separator between documents."""
        return self.special_ids[ENDOFTEXT]

    def encode_special(self, name: str) -> int:
        """The single id of a special token, e.g. `encode_special("<|im_start|>")`."""
        if name not in self.special_ids:
            raise KeyError(f"{name!r} is not a special token of this tokenizer; it has {sorted(self.special_ids)}")
        return self.special_ids[name]

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of ordinary text; never a special id."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` over many texts (subclasses parallelise)."""
        return [self.encode(t) for t in texts]

    @abc.abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids; special ids are rendered as their token strings."""

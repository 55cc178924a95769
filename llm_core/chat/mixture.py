"""The conversation mixture: which sources, with what weight, and a deterministic train/val split.

A source's `weight` multiplies how often its conversations appear in the training split: 0.5 keeps a deterministic
half, 2.0 repeats each twice (nanochat's task mixture does the same with epochs). The split is decided by a hash of
the conversation's content, before weighting, so a repeated conversation never lands in both splits and the split of
one conversation does not depend on the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field, model_validator

from llm_core.chat.hashing import unit_hash
from llm_core.chat.loaders import Sample, load_gsm8k, load_oasst, load_prompt_response
from llm_core.chat.synthetic import (
    arithmetic_conversations,
    identity_conversations,
    keyword_conversations,
    refusal_conversations,
)
from llm_core.chat.tool_conversations import ToolFn, python_conversations, search_conversations
from llm_core.config import StrictModel

FILE_KINDS = ("oasst", "gsm8k", "prompt_response", "search_tool")
GENERATED_KINDS = ("identity", "refusals", "arithmetic", "keyword", "python_tool", "search_tool")
TOOL_KINDS = {"python_tool": "python", "search_tool": "search"}  # source kind -> the tool its conversations call


class IdentityConfig(StrictModel):
    name: str = "Tinychat"
    creator: str = "the llm-pipeline project"
    chinese_share: float = Field(0.3, ge=0, le=1)


class SourceConfig(StrictModel):
    """One source of conversations: a file (`path`) or a generated set (`count`)."""

    kind: Literal["oasst", "gsm8k", "prompt_response", "identity", "refusals", "arithmetic", "keyword", "python_tool",
                  "search_tool"]
    path: str | None = None
    count: int = Field(0, ge=0, description="how many to generate (generated kinds)")
    weight: float = Field(1.0, ge=0, description="times each training conversation appears; fractions subsample")
    name: str | None = Field(None, description="source label in the data; default: the kind")
    prompt_field: str = "prompt"
    response_field: str = "response"
    max_operand: int = Field(20, ge=1, description="arithmetic: largest addend")
    hedge_share: float = Field(0.0, ge=0, le=1, description="arithmetic: share of answers that hedge instead")
    worked_sums: bool = Field(False, description="arithmetic: answers show the unit steps before `#### N`")
    keyword_share: float = Field(0.5, ge=0, le=1, description="keyword: share of answers that use the keyword")
    direct_share: float = Field(0.2, ge=0, le=1, description="python_tool: share of questions answered without a call")

    @model_validator(mode="after")
    def _check(self) -> SourceConfig:
        if self.kind in FILE_KINDS and not self.path:
            raise ValueError(f"a {self.kind} source needs a path" + (" (its facts file)" if self.kind == "search_tool" else ""))
        if self.kind in GENERATED_KINDS and self.count <= 0:
            raise ValueError(f"a generated {self.kind} source needs count > 0")
        return self

    @property
    def label(self) -> str:
        return self.name or self.kind


def load_source(
    src: SourceConfig, identity: IdentityConfig, seed: int, tools: dict[str, ToolFn] | None = None
) -> Iterator[Sample]:
    """Every record of one source, kept or with its reject reason; tool sources run their tool (`tools`, by name:
    `python`, `search`) for the output of every call."""
    if src.kind == "oasst":
        yield from load_oasst(src.path, src.label)
    elif src.kind == "gsm8k":
        yield from load_gsm8k(src.path, src.label)
    elif src.kind == "prompt_response":
        yield from load_prompt_response(src.path, src.label, src.prompt_field, src.response_field)
    elif src.kind == "identity":
        yield from identity_conversations(identity.name, identity.creator, src.count, seed, identity.chinese_share)
    elif src.kind == "refusals":
        yield from refusal_conversations(src.count, seed)
    elif src.kind == "arithmetic":
        yield from arithmetic_conversations(src.count, seed, src.max_operand, src.hedge_share, src.worked_sums)
    elif src.kind == "keyword":
        yield from keyword_conversations(src.count, seed, src.keyword_share)
    else:
        tool = (tools or {}).get(TOOL_KINDS[src.kind])
        if tool is None:
            raise ValueError(f"a {src.kind} source needs the {TOOL_KINDS[src.kind]} tool")
        if src.kind == "python_tool":
            yield from python_conversations(src.count, seed, tool, src.direct_share)
        else:
            yield from search_conversations(src.count, seed, src.path, tool)


def is_validation(obj: object, val_fraction: float, seed: int) -> bool:
    return unit_hash(obj, f"split:{seed}:") < val_fraction


def copies(obj: object, weight: float, seed: int) -> int:
    """How many times a training record appears for a source weight (integer part + a deterministic coin)."""
    whole = int(weight)
    return whole + (1 if unit_hash(obj, f"weight:{seed}:") < weight - whole else 0)

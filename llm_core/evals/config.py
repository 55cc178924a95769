"""The eval stage's config, and the reader of its JSONL eval sets (checked when the config loads)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, model_validator

from llm_core.chat.tool_conversations import read_facts
from llm_core.config import ConfigError, StageConfig, StrictModel
from llm_core.data_files import read_jsonl
from llm_core.tools.python_tool import SandboxLimits


def read_eval_file(path: str, required: Sequence[str]) -> list[dict]:
    """Rows of a JSONL eval set; a missing file, a line that is not a JSON object or lacks a field, an empty file or
    repeated item ids are a ConfigError naming the file (and line)."""
    rows = read_jsonl(path, required, "eval file")
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"eval file {path}: item ids are not unique")
    return rows


class StandardTask(StrictModel):
    """A published multiple-choice set in its own format, from a local file or (with internet) the hub."""

    kind: str = Field(pattern=r"^(hellaswag|arc|piqa|lambada)$")
    path: str = Field(description="local .jsonl/.json/.parquet file or a hub dataset name")
    limit: int = Field(200, ge=1)


class EvalConfig(StageConfig):
    identity_file: str = "data/eval/identity.jsonl"
    made_up_file: str = "data/eval/idk.jsonl"
    assistant_name: str | None = Field(None, description="expected in identity replies; None = sft_data's identity")
    known_questions: int = Field(80, ge=1, description="SFT training questions asked for the over-refusal rate")
    gsm8k_problems: int = Field(40, ge=0, description="GSM8K problems of the SFT data's held-back split")
    sums_max_operand: int = Field(9, ge=1, le=99)
    max_tokens: int = Field(48, ge=1, description="reply length bound")
    temperature: float = Field(0.0, ge=0, description="0 = greedy")
    samples: int = Field(1, ge=1, description="replies per item (needs temperature > 0 when above 1)")
    ngram: int = Field(13, ge=4, description="n of the n-gram decontamination")
    bpb_tokens: int = Field(16384, ge=256, description="held-out tokens scored per text group")
    mc_items: int = Field(100, ge=0, description="cloze and next-sentence items each, from held-out text")
    mc_shots: int = Field(1, ge=0)
    standard_tasks: list[StandardTask] = Field(default_factory=list)
    tool_items: int = Field(40, ge=0, description="held-out items per tool suite (0: no tool suites)")
    facts_file: str = Field("data/tools/facts.jsonl", description="made-up facts the index holds: the search suite")
    tool_max_tokens: int = Field(96, ge=1, description="reply length bound with tools (calls and outputs count)")
    tool_max_calls: int = Field(2, ge=1, description="tool calls per reply")
    tool_output_tokens: int = Field(64, ge=1, description="a tool output is cut to this many tokens")
    python: SandboxLimits = Field(default_factory=SandboxLimits, description="limits of the Python tool")

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if self.samples > 1 and self.temperature == 0:
            raise ValueError("samples > 1 needs temperature > 0 (greedy replies would all be the same)")
        read_eval_file(self.identity_file, ("id", "prompt"))
        read_eval_file(self.made_up_file, ("id", "prompt", "entity"))
        if self.tool_items:
            read_facts(self.facts_file)
        return self

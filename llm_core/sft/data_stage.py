"""The `sft_data` stage: the conversation mixture as CONVERSATIONS parquet, split into train and val.

Layout of the artifact:
    train/part-00000.parquet     conversations for SFT (weighted: a conversation may appear more than once)
    val/part-00000.parquet       held-back conversations (each once)
    rejected/part-00000.parquet  records that could not be used, with `reason`

Every record of every source is counted: input = kept + rejected, per source and in total.

Tool sources (`python_tool`, `search_tool`) run the real tools for the output of every call: the Python sandbox,
and the search tool over the `index` artifact, which is then an input of this stage.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pydantic import Field

from llm_core.chat.mixture import TOOL_KINDS, IdentityConfig, SourceConfig, load_source
from llm_core.chat.splits import Mixture, MixtureStage, Records, Source
from llm_core.chat.template import validate_messages
from llm_core.chat.tool_conversations import ToolFn
from llm_core.config import StageConfig
from llm_core.schemas import CONVERSATIONS
from llm_core.stage import Input, StageContext
from llm_core.tools.base import ToolInputs
from llm_core.tools.registry import opened_tools, tool_spec


def default_sources() -> list[SourceConfig]:
    return [
        SourceConfig(kind="oasst", path="data/oasst/en_80_tree.jsonl", weight=2.0),
        SourceConfig(kind="gsm8k", path="data/gsm8k/train.jsonl", weight=0.3),
        SourceConfig(kind="identity", count=200),
        SourceConfig(kind="refusals", count=200),
        SourceConfig(kind="arithmetic", count=600),
        SourceConfig(kind="keyword", count=400),
    ]


class SftDataConfig(StageConfig):
    sources: list[SourceConfig] = Field(default_factory=default_sources, min_length=1)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    val_fraction: float = Field(0.05, gt=0, lt=1, description="share of each source held back for evaluation")


class SftDataStage(MixtureStage):
    name = "sft_data"
    config_model = SftDataConfig
    version = "4"  # 3: messages have a `parts` field (tool calls); 4: a search reply states only what its output shows
    title = "SFT conversation mixture"
    columns = {"source": "source", "weight": "weight", "input": "input", "kept": "kept", "rejected": "rejected",
               "train_unique": "train (unique)", "train": "train (weighted)", "val": "val"}

    def input_stages(self, config: SftDataConfig) -> dict[str, str | Input]:
        """The search index, when a search source asks questions the tool answers from it."""
        needs = [tool_spec(TOOL_KINDS[src.kind]).needs for src in config.sources if src.kind in TOOL_KINDS]
        return {stage: stage for stage in needs if stage}

    def mixtures(self, ctx: StageContext) -> list[Mixture]:
        cfg: SftDataConfig = ctx.config

        def records(i: int, src: SourceConfig) -> Records:
            with source_tool(ctx, src) as tools:
                for sample in load_source(src, cfg.identity, ctx.run.seed + i, tools):
                    row = {"messages": sample.messages, "source": sample.source}
                    yield row, sample.reject or validate_messages(sample.messages), sample.messages

        return [Mixture(CONVERSATIONS, [Source(src.label, src.weight, records(i, src))
                                        for i, src in enumerate(cfg.sources)])]


@contextlib.contextmanager
def source_tool(ctx: StageContext, src: SourceConfig) -> Iterator[dict[str, ToolFn]]:
    """The tool a tool source calls, by name (none for other sources), opened through the registry: the Python
    sandbox (its worker process ends with the source), or the search tool over the `index` input."""
    tool = TOOL_KINDS.get(src.kind)
    needs = tool_spec(tool).needs if tool else None
    inputs = ToolInputs(index=ctx.reader(needs) if needs == "index" else None)
    with opened_tools(inputs, [tool] if tool else []) as tools:
        yield {t.name: t for t in tools}

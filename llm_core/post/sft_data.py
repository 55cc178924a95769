"""The `sft_data` stage: the conversation mixture as CONVERSATIONS parquet, split into train and val.

Layout of the artifact:
    train/part-00000.parquet     conversations for SFT (weighted: a conversation may appear more than once)
    val/part-00000.parquet       held-back conversations (each once)
    rejected/part-00000.parquet  records that could not be used, with `reason`

Every record of every source is counted: input = kept + rejected, per source and in total.
"""

from __future__ import annotations

from pydantic import Field

from llm_core.chat.mixture import IdentityConfig, SourceConfig, load_source
from llm_core.chat.template import validate_messages
from llm_core.config import StageConfig
from llm_core.schemas import CONVERSATIONS
from llm_core.stage import Stage, StageContext, StageResult
from llm_core.post.splits import Records, write_splits



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


class SftDataStage(Stage):
    name = "sft_data"
    config_model = SftDataConfig
    version = "3"  # 3: messages have a `parts` field (tool calls)
    uses_seed = True

    def data_paths(self, ctx_config: SftDataConfig) -> list[str]:
        return [src.path for src in ctx_config.sources if src.path]

    def run(self, ctx: StageContext) -> StageResult:
        cfg: SftDataConfig = ctx.config

        def records(i: int, src: SourceConfig) -> Records:
            for sample in load_source(src, cfg.identity, ctx.run.seed + i):
                row = {"messages": sample.messages, "source": sample.source}
                yield row, sample.reject or validate_messages(sample.messages), sample.messages

        sources = [(src.label, src.weight, records(i, src)) for i, src in enumerate(cfg.sources)]
        counts, rows = write_splits(ctx, CONVERSATIONS, sources, cfg.val_fraction)
        return StageResult(counts=counts, tables={"sources": rows}, markdown=funnel_markdown(rows))


def funnel_markdown(rows: list[dict]) -> str:
    head = ("| source | weight | input | kept | rejected | train (unique) | train (weighted) | val |\n"
            "|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['source']} | {r['weight']} | {r['input']} | {r['kept']} | {r['rejected']} | {r['train_unique']} "
        f"| {r['train']} | {r['val']} |\n"
        for r in rows
    )
    return "### SFT conversation mixture\n\n" + head + body

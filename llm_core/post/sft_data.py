"""The `sft_data` stage: the conversation mixture as CONVERSATIONS parquet, split into train and val.

Layout of the artifact:
    train/part-00000.parquet     conversations for SFT (weighted: a conversation may appear more than once)
    val/part-00000.parquet       held-back conversations (each once)
    rejected/part-00000.parquet  records that could not be used, with `reason`

Every record of every source is counted: input = kept + rejected, per source and in total.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
from pydantic import Field

from llm_core.chat.mixture import IdentityConfig, SourceConfig, load_source, route_record
from llm_core.chat.template import validate_messages
from llm_core.config import StageConfig
from llm_core.schemas import CONVERSATIONS
from llm_core.stage import Stage, StageContext, StageResult
from llm_core.store import ParquetShardWriter

REJECTED_CONVERSATIONS = pa.schema([*CONVERSATIONS, ("reason", pa.string())])
TRAIN, VAL, REJECTED = "train/part-00000.parquet", "val/part-00000.parquet", "rejected/part-00000.parquet"


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
    version = "1"
    uses_seed = True

    def run(self, ctx: StageContext) -> StageResult:
        cfg: SftDataConfig = ctx.config
        seed = ctx.run.seed
        writer = ctx.writer()
        counts: Counter[str] = Counter()
        rows = []
        with (
            ParquetShardWriter(writer, TRAIN, CONVERSATIONS) as train,
            ParquetShardWriter(writer, VAL, CONVERSATIONS) as val,
            ParquetShardWriter(writer, REJECTED, REJECTED_CONVERSATIONS) as rejected,
        ):
            for i, src in enumerate(cfg.sources):
                c: Counter[str] = Counter()
                for sample in load_source(src, cfg.identity, seed + i):
                    route_record({"messages": sample.messages, "source": sample.source},
                                 sample.reject or validate_messages(sample.messages), sample.messages,
                                 weight=src.weight, val_fraction=cfg.val_fraction, seed=seed,
                                 train=train, val=val, rejected=rejected, counts=c)
                for k, v in c.items():
                    counts[k] += v
                    counts[f"{src.label}:{k}"] += v
                rows.append({"source": src.label, "weight": src.weight, **{k: c[k] for k in
                             ("input", "kept", "rejected", "train_unique", "train", "val")}})
                ctx.progress(i + 1, len(cfg.sources))
        return StageResult(counts=dict(counts), tables={"sources": rows}, markdown=funnel_markdown(rows))


def funnel_markdown(rows: list[dict]) -> str:
    head = ("| source | weight | input | kept | rejected | train (unique) | train (weighted) | val |\n"
            "|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['source']} | {r['weight']} | {r['input']} | {r['kept']} | {r['rejected']} | {r['train_unique']} "
        f"| {r['train']} | {r['val']} |\n"
        for r in rows
    )
    return "### SFT conversation mixture\n\n" + head + body

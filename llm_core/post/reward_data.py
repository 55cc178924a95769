"""The `reward_data` stage: preference pairs as PREFERENCES parquet, split into train and val.

Sources: HH-RLHF transcripts (`hh_rlhf`), ranked OpenAssistant siblings (`oasst`), and the generated keyword
preference (`keyword`: the answer uses the requested word vs another word), which a tiny reward model can learn.

Layout of the artifact:
    train/part-00000.parquet, val/part-00000.parquet   PREFERENCES rows
    rejected/part-00000.parquet                        unusable records with `reason`
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field, model_validator

from llm_core.chat.loaders import Pair, load_hh_rlhf, load_oasst_pairs
from llm_core.chat.synthetic import keyword_pairs
from llm_core.config import StageConfig, StrictModel
from llm_core.schemas import PREFERENCES
from llm_core.stage import Stage, StageContext, StageResult
from llm_core.post.splits import Records, write_splits



class PreferenceSourceConfig(StrictModel):
    kind: Literal["hh_rlhf", "oasst", "keyword"]
    path: str | None = None
    count: int = Field(0, ge=0, description="keyword: how many pairs to generate")
    weight: float = Field(1.0, ge=0, description="times each training pair appears; fractions subsample")

    @model_validator(mode="after")
    def _check(self) -> PreferenceSourceConfig:
        if self.kind != "keyword" and not self.path:
            raise ValueError(f"a {self.kind} source needs a path")
        if self.kind == "keyword" and self.count <= 0:
            raise ValueError("a keyword source needs count > 0")
        return self


def default_sources() -> list[PreferenceSourceConfig]:
    return [
        PreferenceSourceConfig(kind="hh_rlhf", path="data/hh_rlhf/harmless-base-test.dev.jsonl"),
        PreferenceSourceConfig(kind="oasst", path="data/oasst/en_80_tree.jsonl"),
        PreferenceSourceConfig(kind="keyword", count=600),
    ]


class RewardDataConfig(StageConfig):
    sources: list[PreferenceSourceConfig] = Field(default_factory=default_sources, min_length=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)


def load_pairs(src: PreferenceSourceConfig, seed: int) -> Iterator[Pair]:
    if src.kind == "hh_rlhf":
        yield from load_hh_rlhf(src.path)
    elif src.kind == "oasst":
        yield from load_oasst_pairs(src.path)
    else:
        yield from keyword_pairs(src.count, seed)


class RewardDataStage(Stage):
    name = "reward_data"
    config_model = RewardDataConfig
    version = "2"
    uses_seed = True

    def data_paths(self, ctx_config: RewardDataConfig) -> list[str]:
        return [src.path for src in ctx_config.sources if src.path]

    def run(self, ctx: StageContext) -> StageResult:
        cfg: RewardDataConfig = ctx.config

        def records(i: int, src: PreferenceSourceConfig) -> Records:
            for pair in load_pairs(src, ctx.run.seed + i):
                row = {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected, "source": pair.source}
                yield row, pair.reject, pair.prompt  # split by prompt: sibling pairs share answers

        sources = [(src.kind, src.weight, records(i, src)) for i, src in enumerate(cfg.sources)]
        counts, rows = write_splits(ctx, PREFERENCES, sources, cfg.val_fraction)
        md = "### Preference pairs\n\n| source | input | kept | rejected | train | val |\n|---|---|---|---|---|---|\n"
        md += "".join(f"| {r['source']} | {r['input']} | {r['kept']} | {r['rejected']} | {r['train']} | {r['val']} |\n"
                      for r in rows)
        return StageResult(counts=counts, tables={"sources": rows}, markdown=md)

"""The `reward_data` stage: preference pairs as PREFERENCES parquet, split into train and val.

Sources: HH-RLHF transcripts (`hh_rlhf`), ranked OpenAssistant siblings (`oasst`), the generated keyword
preference (`keyword`: the answer uses the requested word vs another word), which a tiny reward model can learn,
and `rankings`: K answers ranked by people or a model (the `rank` stage's artifact when `path` is not set, else a
rankings Parquet file or folder, e.g. chat feedback). Rankings stay whole (the reward loss can use the full ranking)
and are split by prompt, so the reward stage reports its agreement with held-out rankings on its own. With
`max_tokens` (the reward model's context), a comparison longer than that is rejected as `too_long` rather than cut:
a reward model that reads only one end of two answers cannot compare them.

Layout of the artifact:
    train/part-00000.parquet, val/part-00000.parquet   PREFERENCES rows
    rejected/part-00000.parquet                        unusable records with `reason`
    train_rankings/, val_rankings/, rejected_rankings/ RANKINGS rows (only with a `rankings` source)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal

from pydantic import Field, model_validator

from llm_core.chat.loaders import Pair, load_hh_rlhf, load_oasst_pairs
from llm_core.chat.splits import Mixture, MixtureStage, Records, Source
from llm_core.chat.synthetic import keyword_pairs
from llm_core.chat.template import Message
from llm_core.config import StageConfig, StrictModel
from llm_core.data_files import resolve_data_path
from llm_core.preference.rankings import RANKINGS, read_rankings, usable_rankings
from llm_core.preference.reward_model import comparison_tokens
from llm_core.schemas import PREFERENCES
from llm_core.stage import StageContext
from llm_core.tokenizer import load_tokenizer

RANKING_SPLITS = ("train_rankings", "val_rankings", "rejected_rankings")


class PreferenceSourceConfig(StrictModel):
    kind: Literal["hh_rlhf", "oasst", "keyword", "rankings"]
    path: str | None = Field(None, description="rankings: a rankings Parquet file or folder; unset = the rank stage")
    count: int = Field(0, ge=0, description="keyword: how many pairs to generate")
    weight: float = Field(1.0, ge=0, description="times each training pair appears; fractions subsample")

    @model_validator(mode="after")
    def _check(self) -> PreferenceSourceConfig:
        if self.kind not in ("keyword", "rankings") and not self.path:
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
    max_tokens: int | None = Field(
        None, ge=16, description="a comparison whose prompt + longest answer is longer than this many tokens is "
        "rejected (`too_long`), so a reward model of this context reads every pair whole; None = keep all")


def load_pairs(src: PreferenceSourceConfig, seed: int) -> Iterator[Pair]:
    if src.kind == "hh_rlhf":
        yield from load_hh_rlhf(src.path)
    elif src.kind == "oasst":
        yield from load_oasst_pairs(src.path)
    else:
        yield from keyword_pairs(src.count, seed)


class RewardDataStage(MixtureStage):
    name = "reward_data"
    config_model = RewardDataConfig
    version = "3"  # 3: max_tokens (comparisons longer than the reward model's context rejected as too_long)
    title = "Preference pairs"
    columns = {k: k for k in ("source", "input", "kept", "rejected", "train", "val")}

    def input_stages(self, config: RewardDataConfig) -> dict[str, str]:
        uses_rank = any(s.kind == "rankings" and not s.path for s in config.sources)
        inputs = {"rankings": "rank"} if uses_rank else {}
        if config.max_tokens is not None:
            inputs["tokenizer"] = "bpe"
        return inputs

    def mixtures(self, ctx: StageContext) -> list[Mixture]:
        cfg: RewardDataConfig = ctx.config
        too_long = length_check(ctx, cfg.max_tokens)

        def records(i: int, src: PreferenceSourceConfig) -> Records:
            for pair in load_pairs(src, ctx.run.seed + i):
                row = {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected, "source": pair.source}
                reject = pair.reject or too_long(pair.prompt, (pair.chosen, pair.rejected))
                yield row, reject, pair.prompt  # split by prompt: sibling pairs share answers

        pairs = Mixture(PREFERENCES, [Source(src.kind, src.weight, records(i, src))
                                      for i, src in enumerate(cfg.sources) if src.kind != "rankings"])
        rankings = [Source(f"rankings:{src.path}" if src.path else "rankings", src.weight,
                           ranking_records(ctx, src, too_long)) for src in cfg.sources if src.kind == "rankings"]
        return [pairs, Mixture(RANKINGS, rankings, RANKING_SPLITS)] if rankings else [pairs]


LengthCheck = Callable[[Sequence[Message], Sequence[str]], str | None]


def length_check(ctx: StageContext, max_tokens: int | None) -> LengthCheck:
    """(prompt, answers) -> `too_long` when the comparison is longer than `max_tokens` tokens, else None."""
    if max_tokens is None:
        return lambda prompt, answers: None
    tokenizer = load_tokenizer(ctx.reader("tokenizer"))
    return lambda prompt, answers: "too_long" if comparison_tokens(tokenizer, prompt, answers) > max_tokens else None


def ranking_records(ctx: StageContext, src: PreferenceSourceConfig, too_long: LengthCheck) -> Records:
    """The rows of a rankings source: usable rankings (ratings paired per prompt), the rest with their reason."""
    if src.path:
        rows = read_rankings(resolve_data_path(src.path))
    else:
        rows = list(ctx.reader("rankings").iter_rows("rankings/*.parquet"))
    for row in rows:
        if row["status"] == "rated":
            continue  # ratings come back below, paired into rankings per prompt
        if row["status"] != "ranked":
            yield row, f"rankings:{row['status']}", row["prompt"]
        elif not row["pairs"]:
            yield row, "rankings:no_pairs", row["prompt"]
    for row in usable_rankings(rows):
        reason = too_long(row["prompt"], row["answers"])
        yield row, reason and f"rankings:{reason}", row["prompt"]  # split by prompt, as the pairs are

"""The `rank` stage: the SFT model writes K distinct answers to N prompts, and someone puts each prompt's answers in
order, best first (the data the reward model learns from, as in InstructGPT).

Who ranks is `labeler` in the config:
- `model`: a rule (`judge: longer` / `shorter`) or an existing reward model (`judge: reward/KEY`) ranks them,
  unattended (CI, tests, `make run`, or RLAIF);
- `ui`: people, in a form in the Prefect UI (`rank_form.py`; the Prefect layer pauses the flow run to show it);
- `cli`: a person in the terminal (`llmpipe rank`).
Every labeler goes through `rank_prompts(ctx, labeler)`: `run` with the model's, `run_with_people` with the form's
(for a caller that can show forms), `llmpipe rank` with the terminal's; `run` alone says where people rank.

Prompts come from a JSONL file (default: the OpenAssistant prompt lottery; or a user's own file of strings or of
objects with a `prompt` field); an empty source is refused before any sampling. Answers are sampled at
`temperature` > 0 and kept distinct (prompts are sampled again for missing answers, `sample_rounds` times at most; a
prompt left with fewer than two distinct answers is counted and not asked).

Partial work survives a kill: the sampled answers (`items.json`) and every submitted batch of judgements
(`_submitted/batch-NNNNN.json`) are written into the uncommitted artifact as they come, so a rerun shows the same
answers and asks only the batches not yet submitted. Output artifact:

    rankings/part-00000.parquet   RANKINGS rows (llm_core/preference/rankings.py), one per prompt: ranked, skipped, or
                                  timeout (only with on_timeout=commit)
    items.json                    the prompts and answers as they were shown
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator

from llm_core.chat.engine import Engine, SamplingParams
from llm_core.chat.loaders import load_prompts
from llm_core.chat.template import render_prompt
from llm_core.config import StageConfig
from llm_core.people import AskPeople
from llm_core.preference.rank_form import form_labeler
from llm_core.preference.rankings import (
    RANKINGS,
    Judgement,
    Labeler,
    RankItem,
    format_ranking,
    ranking_row,
)
from llm_core.preference.reward_model import ScalarHeadModel, encode_answer, score
from llm_core.stage import Stage, StageContext, StageResult
from llm_core.store import ParquetShardWriter
from llm_core.tokenizer import load_tokenizer
from llm_core.tokenizer.base import Tokenizer
from llm_core.train.model_files import load_gpt, load_model

ITEMS_FILE, RANKINGS_FILE, SUBMITTED_DIR = "items.json", "rankings/part-00000.parquet", "_submitted"

class RankConfig(StageConfig):
    enabled: bool = False
    prompts_path: str = Field("data/oasst/prompt_lottery_en_250_text.jsonl",
                              description="JSONL of prompts: strings, or objects with `prompt_field`")
    prompt_field: str = "prompt"
    prompts: int = Field(20, ge=1, description="N: prompts drawn (seeded) from the file")
    answers: int = Field(5, ge=2, le=26, description="K: distinct answers per prompt")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (> 0, or the answers would not differ)")
    top_p: float | None = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(64, ge=1)
    sample_rounds: int = Field(3, ge=1, description="tries to get K distinct answers per prompt")
    labeler: Literal["ui", "cli", "model"] = "ui"
    judge: str = Field("longer", description="model labeler: longer | shorter | reward/KEY (a reward artifact)")
    batch_size: int = Field(5, ge=1, description="prompts per form (ui) or per saved batch (cli, model)")
    timeout_s: int = Field(86_400, ge=1, description="ui: how long one form waits for a person")
    on_timeout: Literal["fail", "commit"] = Field(
        "fail", description="fail: the stage fails, submitted rankings kept for the next run, which asks the rest; "
                            "commit: the artifact is committed with unranked prompts marked `timeout`")
    poll_s: int = Field(2, ge=1, description="ui: seconds between checks for a submitted form")

    runtime_fields: ClassVar[frozenset[str]] = frozenset({"timeout_s", "on_timeout", "poll_s", "batch_size"})

    @field_validator("judge")
    @classmethod
    def _judge(cls, v: str) -> str:
        if v not in ("longer", "shorter") and not (v.startswith("reward/") and len(v) > len("reward/")):
            raise ValueError(f"judge must be longer, shorter or reward/KEY (a reward artifact), not {v!r}")
        return v


class RankingTimeout(RuntimeError):
    """Nobody answered a form in time; what was submitted is kept in the uncommitted artifact."""


def draw_prompts(cfg: RankConfig, seed: int) -> list[list[dict]]:
    """N prompts drawn from the prompt file (seeded); ValueError if it holds none."""
    prompts = list(dict.fromkeys(load_prompts(cfg.prompts_path, cfg.prompt_field)))
    if not prompts:
        raise ValueError(f"rank.prompts_path {cfg.prompts_path!r} holds no prompts (expected JSONL of strings or of "
                         f"objects with a non-empty {cfg.prompt_field!r}); nothing to rank")
    chosen = random.Random(seed).sample(prompts, min(cfg.prompts, len(prompts)))
    return [[{"role": "user", "content": p}] for p in chosen]


def sample_items(
    engine: Engine, prompts: Sequence[list[dict]], k: int, params: SamplingParams, seed: int, rounds: int
) -> tuple[list[RankItem], int]:
    """Up to K distinct non-empty answers per prompt, sampling again for the missing ones; returns the items with at
    least two answers and how many prompts had fewer."""
    answers: list[list[str]] = [[] for _ in prompts]
    ids = [render_prompt(engine.tokenizer, p) for p in prompts]
    for r in range(rounds):
        todo = [i for i, a in enumerate(answers) if len(a) < k]
        if not todo:
            break
        outs = engine.generate([ids[i] for i in todo], params, n=k, seed=seed + r)
        for i, completions in zip(todo, outs):
            for c in completions:
                text = c.text.strip()
                if text and text not in answers[i] and len(answers[i]) < k:
                    answers[i].append(text)
    items = [RankItem(list(p), a) for p, a in zip(prompts, answers) if len(a) >= 2]
    return items, len(prompts) - len(items)


def rule_labeler(rule: str) -> Labeler:
    """Longer (or shorter) answers first, equal lengths tied: a rule for unattended runs and tests."""
    sign = -1 if rule == "longer" else 1

    def label(items: list[RankItem], batch: int, batches: int) -> list[Judgement]:
        out = []
        for item in items:
            tiers: dict[int, list[int]] = {}
            for i, a in enumerate(item.answers):
                tiers.setdefault(sign * len(a), []).append(i)
            out.append(Judgement("ranked", [tiers[t] for t in sorted(tiers)], f"model:{rule}", ranked_at=None))
        return out

    return label


def reward_model_labeler(model: Any, tokenizer: Tokenizer, name: str) -> Labeler:
    """The answers in the order of a reward model's scores (RLAIF)."""
    block = model.gpt.config.block_size

    def label(items: list[RankItem], batch: int, batches: int) -> list[Judgement]:
        out = []
        for item in items:
            scores = score(model, [encode_answer(tokenizer, item.prompt, a, block) for a in item.answers],
                           tokenizer.eot_id).tolist()
            order = sorted(range(len(item.answers)), key=lambda i: -scores[i])
            out.append(Judgement("ranked", [[i] for i in order], f"model:{name}", ranked_at=None))
        return out

    return label


def model_labeler(ctx: StageContext, tokenizer: Tokenizer) -> Labeler:
    cfg: RankConfig = ctx.config
    if not cfg.judge.startswith("reward/"):
        return rule_labeler(cfg.judge)
    store = ctx.store()
    ref = store.find(cfg.judge)
    if ref.stage != "reward":
        raise ValueError(f"rank.judge {cfg.judge!r} is a {ref.stage!r} artifact, not a reward model")
    return reward_model_labeler(load_model(ScalarHeadModel, store.reader(ref)).eval(), tokenizer, str(ref))


def batch_name(batch: int) -> str:
    return f"{SUBMITTED_DIR}/batch-{batch:05d}.json"


def prepare_items(ctx: StageContext) -> list[RankItem]:
    """The prompts and their answers: as saved by an earlier attempt, else drawn and sampled now (and saved)."""
    writer = ctx.writer()
    if writer.exists(ITEMS_FILE):
        return [RankItem(**item) for item in writer.read_json(ITEMS_FILE)["items"]]
    cfg: RankConfig = ctx.config
    prompts = draw_prompts(cfg, ctx.run.seed)  # an empty source stops here, before the model is loaded
    tokenizer = load_tokenizer(ctx.reader("tokenizer"))
    engine = Engine(load_gpt(ctx.reader("sft")).eval(), tokenizer)
    params = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
    torch.manual_seed(ctx.run.seed)
    items, too_few = sample_items(engine, prompts, cfg.answers, params, ctx.run.seed, cfg.sample_rounds)
    writer.write_json(ITEMS_FILE, {"items": [vars(i) for i in items], "prompts": len(prompts),
                                   "too_few_answers": too_few})
    return items


def batches_of(items: list[RankItem], size: int) -> list[list[RankItem]]:
    return [items[s:s + size] for s in range(0, len(items), size)]


def submitted(ctx: StageContext, batch: int) -> list[Judgement] | None:
    """The judgements of a batch submitted by an earlier attempt, if any."""
    writer = ctx.writer()
    if not writer.exists(batch_name(batch)):
        return None
    return [Judgement.from_json(j) for j in writer.read_json(batch_name(batch))["judgements"]]


def rank_prompts(ctx: StageContext, labeler: Labeler) -> StageResult:
    """Ask `labeler` for every batch not yet submitted, keep each answer as it comes, then write the rankings."""
    cfg: RankConfig = ctx.config
    writer = ctx.writer()
    items = prepare_items(ctx)
    batches = batches_of(items, cfg.batch_size)
    judgements: list[Judgement] = []
    resumed = 0
    for b, batch in enumerate(batches):
        done = submitted(ctx, b)
        if done is not None:
            resumed += 1
        else:
            done = labeler(batch, b, len(batches))
            if len(done) != len(batch):
                raise ValueError(f"the labeler returned {len(done)} judgements for {len(batch)} prompts")
            if any(j.status == "timeout" for j in done):
                ranked = sum(len(x) for x in batches[:b])
                if cfg.on_timeout == "fail":
                    raise RankingTimeout(
                        f"no ranking submitted for batch {b + 1} of {len(batches)} within {cfg.timeout_s} s; "
                        f"{ranked} of {len(items)} prompts are ranked and kept in {ctx.output.uri}: run the stage "
                        f"again to rank the rest (set rank.on_timeout=commit to go on with what is ranked)")
                judgements += [Judgement("timeout", labeler=done[0].labeler) for x in batches[b:] for _ in x]
                break
            writer.write_json(batch_name(b), {"judgements": [j.to_json() for j in done]})
        judgements += done
        ctx.progress(b + 1, len(batches))
    rows = [ranking_row(item, j) for item, j in zip(items, judgements)]
    with ParquetShardWriter(writer, RANKINGS_FILE, RANKINGS) as out:
        for row in rows:
            out.write(row)
    return rank_result(rows, writer.read_json(ITEMS_FILE), resumed)


def rank_result(rows: list[dict[str, Any]], items_info: dict[str, Any], resumed_batches: int) -> StageResult:
    by_status = {s: sum(r["status"] == s for r in rows) for s in ("ranked", "skipped", "timeout")}
    pairs = sum(len(r["pairs"]) for r in rows)
    tied = sum(len(r["answers"]) * (len(r["answers"]) - 1) // 2 - len(r["pairs"])
               for r in rows if r["status"] == "ranked")
    counts = {"prompts": int(items_info["prompts"]), "too_few_answers": int(items_info["too_few_answers"]),
              "asked": len(rows), **by_status, "pairs": pairs, "tied_pairs": tied,
              "answers": sum(len(r["answers"]) for r in rows), "resumed_batches": resumed_batches}
    metrics = {
        "rankings": float(by_status["ranked"]),
        "ranking_pairs": float(pairs),
        "ranked_share": by_status["ranked"] / max(len(rows), 1),
        "answers_per_prompt": counts["answers"] / max(len(rows), 1),
    }
    table = [{"prompt": r["prompt"][-1]["content"][:80], "status": r["status"], "labeler": r["labeler"],
              "ranking": format_ranking([[i] for i in r["ranking"]]) if r["ranking"] else "", "pairs": len(r["pairs"])}
             for r in rows]
    md = (f"### Rankings\n\n{by_status['ranked']} of {len(rows)} prompts ranked ({by_status['skipped']} skipped, "
          f"{by_status['timeout']} timed out), {pairs} pairs implied ({tied} tied pairs left out); "
          f"{counts['too_few_answers']} prompts had fewer than two distinct answers.\n")
    return StageResult(counts=counts, metrics=metrics, tables={"rankings": table}, markdown=md)


class RankStage(Stage):
    name = "rank"
    config_model = RankConfig
    version = "2"  # 2: a model's rankings carry no time (`ranked_at` null): a rerun writes the same bytes
    uses_seed = True

    def input_stages(self, config: RankConfig) -> dict[str, str]:
        return {"sft": "sft", "tokenizer": "bpe"}

    def data_paths(self, ctx_config: RankConfig) -> list[str]:
        return [ctx_config.prompts_path]

    def asks_people(self, config: RankConfig) -> bool:
        return config.labeler == "ui"

    def run_with_people(self, ctx: StageContext, ask: AskPeople) -> StageResult:
        cfg: RankConfig = ctx.config
        return rank_prompts(ctx, form_labeler(ask, cfg.timeout_s, cfg.poll_s))

    def run(self, ctx: StageContext) -> StageResult:
        cfg: RankConfig = ctx.config
        if cfg.labeler != "model":
            where = "the Prefect UI: run the pipeline through Prefect (llmpipe run, or the full-pipeline deployment)" \
                if cfg.labeler == "ui" else "the terminal: run `llmpipe rank`"
            raise RuntimeError(f"rank.labeler={cfg.labeler} asks people to rank in {where}")
        return rank_prompts(ctx, model_labeler(ctx, load_tokenizer(ctx.reader("tokenizer"))))


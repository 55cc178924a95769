"""The `reward` stage: a reward model (SFT trunk + scalar head) trained on preference pairs and rankings.

Inputs: `sft` (its `model/`), `data` (`reward_data`: PREFERENCES train/val, and RANKINGS train/val when it has a
rankings source), `tokenizer` (`bpe`). Training reuses the pretraining loop (checkpoints, resume, schedule).

Every training example is a comparison: a pair (chosen, rejected) or a whole ranking of K answers to one prompt.
`ranking_loss` says how a ranking is learnt:
- `pairs`: split into its K(K-1)/2 pairs, each its own example, shuffled apart (the Bradley-Terry loss);
- `all_pairs`: InstructGPT's way, all its pairs in the same batch as one example (the K answers go through the
  model once), the Bradley-Terry loss averaged over its pairs, so a ranking weighs as much as one plain pair and
  its correlated pairs do not overfit;
- `plackett_luce`: the likelihood of the whole order, `sum_i r_i - logsumexp(r_j : j ranked at or below i)`
  (tied answers share a tier and do not compete with each other).
A plain pair gives the same loss under all three. Evaluation: pairwise accuracy on the held-back pairs, overall and
per source, beside the always-pick-the-longer-answer baseline; and on held-out rankings, on their own: the share of
their implied pairs the model orders as the rankers did (`rankings/pair_accuracy`, its agreement with them) and
the share of prompts where its best answer is in the rankers' best tier (`rankings/top1_accuracy`); the same on the
training rankings (`rankings_train/...`: how well it fits them). At the end the
reward is normalised to mean 0 / std 1 over replies the SFT model samples for held-back prompts. Output artifact:

    model/model.safetensors, model/config.json   the reward model (load with `ScalarHeadModel.load`)
    history.json, result.json                    training record and final metrics
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from llm_core.chat.engine import Engine, SamplingParams
from llm_core.chat.splits import evenly_spaced
from llm_core.chat.template import render_completion, render_prompt
from llm_core.config import StageConfig
from llm_core.preference.reward_model import (
    ScalarHeadModel,
    comparison_tokens,
    encode_answer,
    normalise,
    pad_rows,
    score,
)
from llm_core.sft.batches import LengthBucketBatches
from llm_core.stage import StageContext, StageResult, Throughput
from llm_core.tokenizer import load_tokenizer
from llm_core.tokenizer.base import Tokenizer
from llm_core.train.checkpoint import CheckpointStore
from llm_core.train.distributed import init_distributed
from llm_core.train.model_files import HISTORY_FILE, MODEL_DIR, RESULT_FILE, load_gpt, save_model_files
from llm_core.train.optim import OptimSection
from llm_core.train.trainer import LoopSettings, Trainer, TrainHistory
from llm_core.train.training_stage import TrainingStage


def reward_optim() -> OptimSection:
    return OptimSection(lr=1e-4, min_lr=1e-5, weight_decay=0.0, warmup_steps=10)


class RewardConfig(StageConfig):
    max_steps: int = Field(200, ge=1)
    block_size: int | None = Field(
        None, ge=16, description="tokens the reward model reads (rotary positions: it may exceed the SFT model's "
        "context); None = the SFT model's. A comparison longer than this is cut from the left")
    batch_size: int = Field(16, ge=1, description="comparisons (pairs, or whole rankings) per step")
    ranking_loss: Literal["pairs", "all_pairs", "plackett_luce"] = Field(
        "all_pairs", description="how a ranking of K answers is learnt (see the module docstring)")
    optim: OptimSection = Field(default_factory=reward_optim)
    margin: float = Field(0.0, ge=0, description="Bradley-Terry margin: chosen must beat rejected by this much")
    center_coef: float = Field(0.0, ge=0, description="weight of (r_chosen + r_rejected)^2, keeps rewards near 0")
    eval_every: int = Field(50, ge=0)
    eval_pairs: int = Field(400, ge=1, description="held-back pairs scored per evaluation")
    eval_rankings: int = Field(400, ge=1, description="held-out rankings scored per evaluation")
    normalise_prompts: int = Field(64, ge=2, description="held-back prompts the SFT model answers to normalise on")
    sample_tokens: int = Field(64, ge=1)
    temperature: float = Field(1.0, ge=0)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    checkpoint_every: int = Field(100, ge=0)
    log_every: int = Field(10, ge=1)

    runtime_fields: ClassVar[frozenset[str]] = frozenset({"device", "checkpoint_every", "log_every"})


def encode_pairs(tokenizer: Tokenizer, pairs: Sequence[dict], block: int) -> list[tuple[list[int], list[int]]]:
    return [(encode_answer(tokenizer, p["prompt"], p["chosen"], block),
             encode_answer(tokenizer, p["prompt"], p["rejected"], block)) for p in pairs]


@dataclass
class Comparison:
    """One training example: token rows (prompt + answer) and each row's tier (0 = best; equal tiers are ties)."""

    rows: list[list[int]]
    tiers: list[int]


def pair_comparisons(encoded: list[tuple[list[int], list[int]]]) -> list[Comparison]:
    return [Comparison([c, r], [0, 1]) for c, r in encoded]


def ranking_comparisons(
    tokenizer: Tokenizer, rankings: Sequence[dict], block: int, loss: str
) -> list[Comparison]:
    """RANKINGS rows as comparisons: one per ranking, or one per implied pair with `loss="pairs"`."""
    out = []
    for row in rankings:
        rows = {i: encode_answer(tokenizer, row["prompt"], row["answers"][i], block) for i in row["ranking"]}
        if loss == "pairs":
            out += [Comparison([rows[p["chosen"]], rows[p["rejected"]]], [0, 1]) for p in row["pairs"]]
        else:
            out.append(Comparison([rows[i] for i in row["ranking"]], list(row["tiers"])))
    return out


def comparison_batch(comparisons: Sequence[Comparison], pad_id: int) -> dict[str, torch.Tensor]:
    """Every comparison's rows, right-padded, with the index tensors the losses need: the ordered pairs
    (`pair_better`, `pair_worse`, `pair_weight`) and the Plackett-Luce terms (`pl_item` beats every row of its
    `pl_field` row), weighted so each comparison counts once."""
    x, lengths = pad_rows([r for c in comparisons for r in c.rows], pad_id)
    better, worse, pair_w, pl_item, pl_field, pl_w = [], [], [], [], [], []
    offset, n_rows, n = 0, x.size(0), len(comparisons)
    for c in comparisons:
        k, worst = len(c.rows), max(c.tiers)
        pairs = [(i, j) for i in range(k) for j in range(k) if c.tiers[i] < c.tiers[j]]
        for i, j in pairs:
            better.append(offset + i)
            worse.append(offset + j)
            pair_w.append(1.0 / (len(pairs) * n))
        terms = [i for i in range(k) if c.tiers[i] < worst]
        for i in terms:
            pl_item.append(offset + i)
            pl_field.append([offset <= col < offset + k and c.tiers[col - offset] >= c.tiers[i]
                             for col in range(n_rows)])
            pl_w.append(1.0 / (len(terms) * n))
        offset += k
    return {
        "x": x, "lengths": lengths,
        "pair_better": torch.tensor(better, dtype=torch.long), "pair_worse": torch.tensor(worse, dtype=torch.long),
        "pair_weight": torch.tensor(pair_w), "pl_item": torch.tensor(pl_item, dtype=torch.long),
        "pl_field": torch.tensor(pl_field, dtype=torch.bool).reshape(len(pl_item), n_rows),
        "pl_weight": torch.tensor(pl_w),
    }


def comparison_loss(r: torch.Tensor, batch: dict[str, torch.Tensor], kind: str, margin: float = 0.0,
                    center_coef: float = 0.0) -> torch.Tensor:
    """Bradley-Terry over the weighted pairs (margin applies), or Plackett-Luce over the orders; plus the centering
    term `coef * (r_better + r_worse)^2` over the same pairs."""
    rb, rw = r[batch["pair_better"]], r[batch["pair_worse"]]
    if kind == "plackett_luce":
        field = r.unsqueeze(0).masked_fill(~batch["pl_field"], float("-inf")).logsumexp(-1)
        loss = -(batch["pl_weight"] * (r[batch["pl_item"]] - field)).sum()
    else:
        loss = -(batch["pair_weight"] * F.logsigmoid(rb - rw - margin)).sum()
    if center_coef:
        loss = loss + center_coef * (batch["pair_weight"] * (rb + rw) ** 2).sum()
    return loss


def comparison_loss_fn(kind: str, margin: float, center_coef: float) -> Callable[[torch.nn.Module, Any], torch.Tensor]:
    def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return comparison_loss(model(batch["x"], batch["lengths"]), batch, kind, margin, center_coef)

    return loss


def evaluate_rankings(model: ScalarHeadModel, tokenizer: Tokenizer, rankings: Sequence[dict]) -> dict[str, float]:
    """On held-out rankings: the share of implied pairs ordered as the rankers did, and of prompts whose
    top-scored answer is in the rankers' best tier."""
    block = model.gpt.config.block_size
    hits, top1 = [], []
    for row in rankings:
        scores = score(model, [encode_answer(tokenizer, row["prompt"], a, block) for a in row["answers"]],
                       tokenizer.eot_id).tolist()
        hits += [float(scores[p["chosen"]] > scores[p["rejected"]]) for p in row["pairs"]]
        best = [i for i, t in zip(row["ranking"], row["tiers"]) if t == 0]
        top1.append(float(max(range(len(scores)), key=scores.__getitem__) in best))
    if not rankings:
        return {}
    return {"rankings/pair_accuracy": sum(hits) / max(len(hits), 1), "rankings/top1_accuracy": sum(top1) / len(top1),
            "rankings/eval_rankings": float(len(rankings)), "rankings/eval_pairs": float(len(hits))}


def longer_answer_wins(pair: dict) -> float:
    """The "longer answer wins" rule on one pair: 1 when it picks the chosen answer, 0.5 on a tie, else 0
    ("shorter wins" is 1 minus this)."""
    c_len, r_len = len(pair["chosen"]), len(pair["rejected"])
    return 1.0 if c_len > r_len else 0.5 if c_len == r_len else 0.0


def evaluate_pairs(model: ScalarHeadModel, tokenizer: Tokenizer, pairs: Sequence[dict]) -> dict[str, float]:
    """Pairwise accuracy of the model and of the longer-answer baseline, overall and per source."""
    encoded = encode_pairs(tokenizer, pairs, model.gpt.config.block_size)
    chosen = score(model, [c for c, _ in encoded], tokenizer.eot_id)
    rejected = score(model, [r for _, r in encoded], tokenizer.eot_id)
    hits: dict[str, list[float]] = defaultdict(list)
    for p, c, r in zip(pairs, chosen.tolist(), rejected.tolist()):
        for group in ("all", p["source"]):
            hits[f"accuracy/{group}"].append(float(c > r))
            hits[f"length_baseline/{group}"].append(longer_answer_wins(p))
    out = {k: sum(v) / len(v) for k, v in hits.items()}
    out["margin_mean"] = float((chosen - rejected).mean()) if len(pairs) else 0.0
    return out


def train_reward_model(
    model: ScalarHeadModel, tokenizer: Tokenizer, train_pairs: Sequence[dict], val_pairs: Sequence[dict],
    cfg: RewardConfig, seed: int, checkpoints: CheckpointStore | None = None,
    on_progress: Callable[[int, int, dict[str, float]], None] | None = None,
    train_rankings: Sequence[dict] = (), val_rankings: Sequence[dict] = (),
) -> TrainHistory:
    env = init_distributed(cfg.device)
    model.to(env.device)
    block = model.gpt.config.block_size
    comparisons = pair_comparisons(encode_pairs(tokenizer, train_pairs, block))
    comparisons += ranking_comparisons(tokenizer, train_rankings, block, cfg.ranking_loss)
    batches = LengthBucketBatches([max(len(r) for r in c.rows) for c in comparisons], cfg.batch_size, seed,
                                  lambda idx: comparison_batch([comparisons[i] for i in idx], tokenizer.eot_id))
    val = evenly_spaced(val_pairs, cfg.eval_pairs)
    held_rankings = evenly_spaced(val_rankings, cfg.eval_rankings)

    def evaluate(m: ScalarHeadModel, step: int) -> dict[str, float]:
        return {**(evaluate_pairs(m, tokenizer, val) if val else {}),
                **evaluate_rankings(m, tokenizer, held_rankings)}

    trainer = Trainer(
        model,
        cfg.optim,
        batches,
        comparison_loss_fn(cfg.ranking_loss, cfg.margin, cfg.center_coef),
        LoopSettings(max_steps=cfg.max_steps, eval_every=cfg.eval_every, checkpoint_every=cfg.checkpoint_every,
                     log_every=cfg.log_every, seed=seed),
        env,
        checkpoints,
        evaluate=evaluate if val or held_rankings else None,
        on_progress=on_progress,
    )
    return trainer.fit()


def normalise_on_samples(
    model: ScalarHeadModel, policy_engine: Engine, tokenizer: Tokenizer, prompts: Sequence[list[dict]],
    params: SamplingParams, seed: int,
) -> tuple[float, float]:
    """Sample one reply per prompt from the SFT model and normalise the reward over them."""
    prompt_ids = [render_prompt(tokenizer, p) for p in prompts]
    outs = policy_engine.generate(prompt_ids, params, n=1, seed=seed)
    block = model.gpt.config.block_size
    rows = [(p + render_completion(tokenizer, o[0].text))[-block:] for p, o in zip(prompt_ids, outs)]
    return normalise(model, rows, tokenizer.eot_id)


class RewardStage(TrainingStage):
    name = "reward"
    config_model = RewardConfig
    version = "4"  # 4: a context of its own (block_size), the count of training pairs cut by it
    throughput = Throughput("steps", 4.0)
    headline = ("accuracy/all", "length_baseline/all", "accuracy/hh_rlhf", "length_baseline/hh_rlhf",
                "accuracy/keyword", "length_baseline/keyword")
    uses_seed = True

    def input_stages(self, config: RewardConfig) -> dict[str, str]:
        return {"sft": "sft", "data": "reward_data", "tokenizer": "bpe"}

    def result(self, ctx: StageContext) -> StageResult:
        return build_result(ctx.writer().read_json(RESULT_FILE))

    def train(self, ctx: StageContext) -> None:
        cfg: RewardConfig = ctx.config
        seed = ctx.run.seed
        torch.manual_seed(seed)
        tokenizer = load_tokenizer(ctx.reader("tokenizer"))
        sft = load_gpt(ctx.reader("sft"))
        model = ScalarHeadModel.from_sft(sft, cfg.block_size)
        block = model.gpt.config.block_size
        data = ctx.reader("data")
        train = list(data.iter_rows("train/*.parquet"))
        val = list(data.iter_rows("val/*.parquet"))
        train_rankings, val_rankings = (list(data.iter_rows(f"{split}/*.parquet")) if data.files(f"{split}/*") else []
                                        for split in ("train_rankings", "val_rankings"))
        writer = ctx.writer()
        history = train_reward_model(model, tokenizer, train, val, cfg, seed, CheckpointStore(writer),
                                     lambda step, total, m: ctx.progress(step, total, **m),
                                     train_rankings=train_rankings, val_rankings=val_rankings)
        model.eval()
        params = SamplingParams(max_tokens=cfg.sample_tokens, temperature=cfg.temperature)
        mean, std = normalise_on_samples(model, Engine(sft.eval(), tokenizer), tokenizer,
                                         [p["prompt"] for p in val[: cfg.normalise_prompts]], params, seed)
        # the loop evaluated the final weights; normalising (a positive affine map) leaves accuracies unchanged
        final = {k: v for k, v in history.evals[-1].items() if k != "step"} if history.evals else {}
        fitted = evaluate_rankings(model, tokenizer, evenly_spaced(train_rankings, cfg.eval_rankings))
        final.update({k.replace("rankings/", "rankings_train/"): v for k, v in fitted.items()})
        save_model_files(writer, model)
        writer.write_json(HISTORY_FILE, {"train": history.train, "evals": history.evals})
        writer.write_json(RESULT_FILE, {**final, "steps": cfg.max_steps, "train_pairs": len(train),
                                        "val_pairs": min(len(val), cfg.eval_pairs), "context": block,
                                        "train_pairs_cut": sum(
                                            comparison_tokens(tokenizer, p["prompt"], (p["chosen"], p["rejected"]))
                                            > block for p in train),
                                        "rankings_train": len(train_rankings),
                                        "ranking_pairs_train": sum(len(r["pairs"]) for r in train_rankings),
                                        "rankings_val": min(len(val_rankings), cfg.eval_rankings),
                                        "raw_reward_mean": mean,
                                        "raw_reward_std": std, "final_train_loss": history.train[-1]["loss"]})


def build_result(result: dict[str, Any]) -> StageResult:
    sources = sorted(k.split("/", 1)[1] for k in result if k.startswith("accuracy/"))
    rows = [{"source": s, "accuracy": round(result[f"accuracy/{s}"], 4),
             "longer_answer_baseline": round(result[f"length_baseline/{s}"], 4)} for s in sources]
    md = (
        f"### Reward model\n\n{result['steps']} steps on {result['train_pairs']} pairs "
        f"({result.get('train_pairs_cut', 0)} cut by its {result.get('context', '?')}-token context); held-back "
        "pairwise accuracy "
        f"on {result['val_pairs']} pairs, beside the always-pick-the-longer-answer baseline:\n\n"
        "| source | accuracy | longer-answer baseline |\n|---|---|---|\n"
        + "".join(f"| {r['source']} | {r['accuracy']:.3f} | {r['longer_answer_baseline']:.3f} |\n" for r in rows)
        + f"\nReward normalised on SFT samples (raw mean {result['raw_reward_mean']:.3f}, "
        f"std {result['raw_reward_std']:.3f}).\n"
    )
    if result.get("rankings_train") or result.get("rankings_val"):
        md += (f"\nRankings: {result['rankings_train']} used in training ({result['ranking_pairs_train']} pairs); "
               f"on {result['rankings_val']} held-out rankings the model orders "
               f"{result.get('rankings/pair_accuracy', float('nan')):.3f} of their pairs as the rankers did and "
               f"puts a best-tier answer first on {result.get('rankings/top1_accuracy', float('nan')):.3f}.\n")
    return StageResult(
        counts={"steps": int(result["steps"]), "train_pairs": int(result["train_pairs"]),
                "val_pairs": int(result["val_pairs"])},
        metrics={k: float(v) for k, v in result.items() if isinstance(v, (int, float))},
        tables={"accuracy": rows},
        markdown=md,
        extra={"model_dir": MODEL_DIR},
    )

"""The `reward` stage: a reward model (SFT trunk + scalar head) trained on preference pairs.

Inputs: `sft` (its `model/`), `data` (`reward_data`: PREFERENCES train/val), `tokenizer` (`bpe`). Training reuses the
pretraining loop (checkpoints, resume, schedule) with the Bradley-Terry loss. Evaluation: pairwise accuracy on the
held-back pairs, overall and per source, beside the always-pick-the-longer-answer baseline. At the end the reward
is normalised to mean 0 / std 1 over replies the SFT model samples for held-back prompts. Output artifact:

    model/model.safetensors, model/config.json   the reward model (load with `ScalarHeadModel.load`)
    history.json, result.json                    training record and final metrics
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from pydantic import Field

from llm_core.chat.engine import Engine, SamplingParams
from llm_core.post.splits import evenly_spaced
from llm_core.chat.template import render_completion, render_prompt
from llm_core.config import StageConfig
from llm_core.post.model_io import MODEL_DIR, load_gpt, save_model_files
from llm_core.post.reward_model import (
    ScalarHeadModel,
    bradley_terry_loss,
    encode_answer,
    normalise,
    pad_rows,
    score,
)
from llm_core.post.sft_batches import LengthBucketBatches
from llm_core.stage import StageContext, StageResult
from llm_core.tokenizer import load_tokenizer
from llm_core.tokenizer.base import Tokenizer
from llm_core.train.checkpoint import CheckpointStore
from llm_core.train.training_stage import RESULT_FILE, TrainingStage
from llm_core.train.distributed import init_distributed
from llm_core.train.optim import LRSchedule, build_adamw
from llm_core.train.pretrain_config import OptimSection
from llm_core.train.trainer import LoopSettings, Trainer, TrainHistory

HISTORY_FILE = "history.json"


def reward_optim() -> OptimSection:
    return OptimSection(lr=1e-4, min_lr=1e-5, weight_decay=0.0, warmup_steps=10)


class RewardConfig(StageConfig):
    max_steps: int = Field(200, ge=1)
    batch_size: int = Field(16, ge=1, description="pairs per step")
    optim: OptimSection = Field(default_factory=reward_optim)
    margin: float = Field(0.0, ge=0, description="Bradley-Terry margin: chosen must beat rejected by this much")
    center_coef: float = Field(0.0, ge=0, description="weight of (r_chosen + r_rejected)^2, keeps rewards near 0")
    eval_every: int = Field(50, ge=0)
    eval_pairs: int = Field(400, ge=1, description="held-back pairs scored per evaluation")
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


def pair_batch(encoded: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen rows then rejected rows, right-padded: (2B, T) ids and (2B,) lengths."""
    return pad_rows([c for c, _ in encoded] + [r for _, r in encoded], pad_id)


def pairwise_loss_fn(margin: float, center_coef: float) -> Callable[[torch.nn.Module, Any], torch.Tensor]:
    def loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, lengths = batch
        r = model(x, lengths)
        half = r.size(0) // 2
        return bradley_terry_loss(r[:half], r[half:], margin, center_coef)

    return loss


def evaluate_pairs(model: ScalarHeadModel, tokenizer: Tokenizer, pairs: Sequence[dict]) -> dict[str, float]:
    """Pairwise accuracy of the model and of the longer-answer baseline, overall and per source."""
    encoded = encode_pairs(tokenizer, pairs, model.gpt.config.block_size)
    chosen = score(model, [c for c, _ in encoded], tokenizer.eot_id)
    rejected = score(model, [r for _, r in encoded], tokenizer.eot_id)
    hits: dict[str, list[float]] = defaultdict(list)
    for p, c, r in zip(pairs, chosen.tolist(), rejected.tolist()):
        c_len, r_len = len(p["chosen"]), len(p["rejected"])
        longer = 1.0 if c_len > r_len else 0.5 if c_len == r_len else 0.0
        for group in ("all", p["source"]):
            hits[f"accuracy/{group}"].append(float(c > r))
            hits[f"length_baseline/{group}"].append(longer)
    out = {k: sum(v) / len(v) for k, v in hits.items()}
    out["margin_mean"] = float((chosen - rejected).mean()) if len(pairs) else 0.0
    return out


def train_reward_model(
    model: ScalarHeadModel, tokenizer: Tokenizer, train_pairs: Sequence[dict], val_pairs: Sequence[dict],
    cfg: RewardConfig, seed: int, checkpoints: CheckpointStore | None = None,
    on_progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> TrainHistory:
    env = init_distributed(cfg.device)
    model.to(env.device)
    encoded = encode_pairs(tokenizer, train_pairs, model.gpt.config.block_size)
    batches = LengthBucketBatches([max(len(c), len(r)) for c, r in encoded], cfg.batch_size, seed,
                                  lambda idx: pair_batch([encoded[i] for i in idx], tokenizer.eot_id))
    o = cfg.optim
    val = evenly_spaced(val_pairs, cfg.eval_pairs)
    trainer = Trainer(
        model,
        build_adamw(model, o.lr, o.weight_decay, (o.beta1, o.beta2), env.device.type),
        LRSchedule(o.lr, o.min_lr, o.warmup_steps, cfg.max_steps, o.schedule, o.decay_steps, o.wsd_decay_fraction),
        batches,
        pairwise_loss_fn(cfg.margin, cfg.center_coef),
        LoopSettings(max_steps=cfg.max_steps, eval_every=cfg.eval_every, checkpoint_every=cfg.checkpoint_every,
                     log_every=cfg.log_every, seed=seed, grad_clip=o.grad_clip or None),
        env,
        checkpoints,
        evaluate=(lambda m, step: evaluate_pairs(m, tokenizer, val)) if val else None,
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
    version = "2"
    uses_seed = True

    def input_stages(self, config: Any) -> dict[str, str]:
        return {"sft": "sft", "data": "reward_data", "tokenizer": "bpe"}

    def result(self, ctx: StageContext) -> StageResult:
        return build_result(ctx.writer().read_json(RESULT_FILE))

    def train(self, ctx: StageContext) -> None:
        cfg: RewardConfig = ctx.config
        seed = ctx.run.seed
        torch.manual_seed(seed)
        tokenizer = load_tokenizer(ctx.reader("tokenizer"))
        sft = load_gpt(ctx.reader("sft"))
        model = ScalarHeadModel.from_sft(sft)
        data = ctx.reader("data")
        train = list(data.iter_rows("train/*.parquet"))
        val = list(data.iter_rows("val/*.parquet"))
        writer = ctx.writer()
        history = train_reward_model(model, tokenizer, train, val, cfg, seed, CheckpointStore(writer),
                                     lambda step, total, m: ctx.progress(step, total, **m))
        model.eval()
        params = SamplingParams(max_tokens=cfg.sample_tokens, temperature=cfg.temperature)
        mean, std = normalise_on_samples(model, Engine(sft.eval(), tokenizer), tokenizer,
                                         [p["prompt"] for p in val[: cfg.normalise_prompts]], params, seed)
        # the loop evaluated the final weights; normalising (a positive affine map) leaves accuracies unchanged
        final = {k: v for k, v in history.evals[-1].items() if k != "step"} if history.evals else {}
        save_model_files(writer, model)
        writer.write_json(HISTORY_FILE, {"train": history.train, "evals": history.evals})
        writer.write_json(RESULT_FILE, {**final, "steps": cfg.max_steps, "train_pairs": len(train),
                                        "val_pairs": min(len(val), cfg.eval_pairs), "raw_reward_mean": mean,
                                        "raw_reward_std": std, "final_train_loss": history.train[-1]["loss"]})


def build_result(result: dict[str, Any]) -> StageResult:
    sources = sorted(k.split("/", 1)[1] for k in result if k.startswith("accuracy/"))
    rows = [{"source": s, "accuracy": round(result[f"accuracy/{s}"], 4),
             "longer_answer_baseline": round(result[f"length_baseline/{s}"], 4)} for s in sources]
    md = (
        f"### Reward model\n\n{result['steps']} steps on {result['train_pairs']} pairs; held-back pairwise accuracy "
        f"on {result['val_pairs']} pairs, beside the always-pick-the-longer-answer baseline:\n\n"
        "| source | accuracy | longer-answer baseline |\n|---|---|---|\n"
        + "".join(f"| {r['source']} | {r['accuracy']:.3f} | {r['longer_answer_baseline']:.3f} |\n" for r in rows)
        + f"\nReward normalised on SFT samples (raw mean {result['raw_reward_mean']:.3f}, "
        f"std {result['raw_reward_std']:.3f}).\n"
    )
    return StageResult(
        counts={"steps": int(result["steps"]), "train_pairs": int(result["train_pairs"]),
                "val_pairs": int(result["val_pairs"])},
        metrics={k: float(v) for k, v in result.items() if isinstance(v, (int, float))},
        tables={"accuracy": rows},
        markdown=md,
        extra={"model_dir": MODEL_DIR},
    )

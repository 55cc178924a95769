"""The `sft` stage: supervised fine-tuning of the base model on conversations, loss on assistant tokens only.

Inputs: `base` (a `pretrain` artifact: `model/`), `data` (`sft_data`: CONVERSATIONS train/val), `tokenizer` (`bpe`).
It reuses the pretraining loop (`llm_core.train.Trainer`: AdamW, its own warmup + cosine schedule, checkpoints and
resume inside the artifact, evaluation hook); only the batches (one conversation per row, padded, masked) and the
evaluation differ. Output artifact:

    model/model.safetensors, model/config.json   the chat model
    history.json                                 train-loss rows and eval-loss rows
    samples.json                                 replies to held-back prompts (sampled at the end)
    result.json                                  final metrics (the stage result is rebuilt from it on a retry)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from pydantic import Field

from llm_core.chat.engine import Engine, SamplingParams
from llm_core.chat.splits import evenly_spaced
from llm_core.chat.template import Message, render_prompt
from llm_core.config import StageConfig
from llm_core.model import GPT
from llm_core.sft.batches import (
    collate,
    conversation_batches,
    encode_conversations,
)
from llm_core.stage import StageContext, StageResult, Throughput
from llm_core.tokenizer import load_tokenizer
from llm_core.tokenizer.base import Tokenizer
from llm_core.train.checkpoint import CheckpointStore
from llm_core.train.distributed import init_distributed
from llm_core.train.model_files import HISTORY_FILE, MODEL_DIR, RESULT_FILE, SAMPLES_FILE, load_gpt, save_model_files
from llm_core.train.optim import OptimSection
from llm_core.train.trainer import LoopSettings, Trainer, TrainHistory
from llm_core.train.training_stage import TrainingStage


def sft_optim() -> OptimSection:
    return OptimSection(lr=3e-4, min_lr=3e-5, weight_decay=0.0, warmup_steps=20)


class SftConfig(StageConfig):
    max_steps: int = Field(300, ge=1)
    batch_size: int = Field(16, ge=1, description="conversations per step")
    optim: OptimSection = Field(default_factory=sft_optim)
    eval_every: int = Field(100, ge=0, description="0 = only at the end")
    eval_conversations: int = Field(200, ge=1, description="held-back conversations scored for eval loss")
    sample_prompts: int = Field(32, ge=0, description="held-back prompts answered at the end (end-of-answer rate)")
    sample_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.7, ge=0)
    # runtime: how, not what
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    checkpoint_every: int = Field(100, ge=0)
    log_every: int = Field(10, ge=1)

    runtime_fields: ClassVar[frozenset[str]] = frozenset({"device", "checkpoint_every", "log_every"})


def masked_lm_loss(model: GPT, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return model.masked_loss(x, y)


@torch.no_grad()
def eval_loss(model: GPT, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean loss per assistant token over fixed batches."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for x, y in batches:
        n = int((y >= 0).sum())
        total += float(model.masked_loss(x.to(device), y.to(device))) * n
        count += n
    return total / max(count, 1)


def answer_prompts(
    engine: Engine, tokenizer: Tokenizer, conversations: list[list[Message]], params: SamplingParams, seed: int
) -> list[dict[str, Any]]:
    """Answer the first user turn of each conversation (after any system message); rows {prompt, reference (the
    conversation's own answer, if it has one), reply, finished}."""
    prompts = [[m for m in c[:2] if m["role"] != "assistant"] for c in conversations]
    outs = engine.generate([render_prompt(tokenizer, p) for p in prompts], params, n=1, seed=seed)
    return [
        {"prompt": p[-1]["content"], "reference": c[len(p)]["content"] if len(c) > len(p) else "",
         "reply": o[0].text, "finished": o[0].finished}
        for p, c, o in zip(prompts, conversations, outs)
    ]


def train_sft(
    model: GPT, tokenizer: Tokenizer, train: list[list[Message]], val: list[list[Message]], cfg: SftConfig,
    seed: int, checkpoints: CheckpointStore | None = None,
    on_progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> tuple[TrainHistory, dict[str, float]]:
    """Fine-tune `model` in place; returns the loop history and facts about the data (counts of truncation)."""
    env = init_distributed(cfg.device)
    model.to(env.device)
    block = model.config.block_size
    train_set = encode_conversations(tokenizer, train, block)
    val_set = encode_conversations(tokenizer, evenly_spaced(val, cfg.eval_conversations), block)
    val_batches = [collate(val_set.examples[i:i + cfg.batch_size], tokenizer.eot_id)
                   for i in range(0, len(val_set.examples), cfg.batch_size)]
    trainer = Trainer(
        model,
        cfg.optim,
        conversation_batches(train_set.examples, cfg.batch_size, tokenizer.eot_id, seed),
        masked_lm_loss,
        LoopSettings(max_steps=cfg.max_steps, eval_every=cfg.eval_every, checkpoint_every=cfg.checkpoint_every,
                     log_every=cfg.log_every, seed=seed),
        env,
        checkpoints,
        evaluate=(lambda m, step: {"val_loss": eval_loss(m, val_batches)}) if val_batches else None,
        on_progress=on_progress,
    )
    history = trainer.fit()
    facts = {"train_conversations": len(train_set.examples), "train_truncated": train_set.truncated,
             "train_no_target": train_set.no_target, "val_conversations": len(val_set.examples)}
    return history, facts


class SftStage(TrainingStage):
    name = "sft"
    config_model = SftConfig
    version = "2"
    throughput = Throughput("steps", 4.0)
    headline = ("first_val_loss", "val_loss", "ends_with_im_end")
    loss_curve = True
    uses_seed = True

    def input_stages(self, config: SftConfig) -> dict[str, str]:
        return {"base": "pretrain", "data": "sft_data", "tokenizer": "bpe"}

    def result(self, ctx: StageContext) -> StageResult:
        writer = ctx.writer()
        return build_result(writer.read_json(RESULT_FILE), writer.read_json(SAMPLES_FILE))

    def train(self, ctx: StageContext) -> None:
        cfg: SftConfig = ctx.config
        seed = ctx.run.seed
        torch.manual_seed(seed)
        tokenizer = load_tokenizer(ctx.reader("tokenizer"))
        model = load_gpt(ctx.reader("base"))
        data = ctx.reader("data")
        train = [r["messages"] for r in data.iter_rows("train/*.parquet", ["messages"])]
        val = [r["messages"] for r in data.iter_rows("val/*.parquet", ["messages"])]
        writer = ctx.writer()
        history, facts = train_sft(model, tokenizer, train, val, cfg, seed, CheckpointStore(writer),
                                   lambda step, total, m: ctx.progress(step, total, **m))
        engine = Engine(model.eval(), tokenizer)
        params = SamplingParams(max_tokens=cfg.sample_tokens, temperature=cfg.temperature)
        samples = answer_prompts(engine, tokenizer, val[: cfg.sample_prompts], params, seed)
        save_model_files(writer, model)
        writer.write_json(HISTORY_FILE, {"train": history.train, "evals": history.evals})
        writer.write_json(SAMPLES_FILE, samples)
        final = history.evals[-1] if history.evals else {}
        writer.write_json(RESULT_FILE, {
            **facts, "steps": cfg.max_steps, "final_train_loss": history.train[-1]["loss"],
            "val_loss": final.get("val_loss", math.nan),
            "first_val_loss": history.evals[0]["val_loss"] if history.evals else math.nan,
            "ends_with_im_end": sum(s["finished"] for s in samples) / max(len(samples), 1),
        })


def build_result(result: dict[str, Any], samples: list[dict]) -> StageResult:
    md = (
        f"### SFT\n\n{result['steps']} steps on {result['train_conversations']} conversations "
        f"({result['train_truncated']} cut to the context). Eval loss on {result['val_conversations']} held-back "
        f"conversations: **{result['val_loss']:.4f}** (first evaluation {result['first_val_loss']:.4f}). "
        f"Replies ending with `<|im_end|>`: {result['ends_with_im_end']:.0%} of {len(samples)}.\n\n"
        + "\n".join(f"- **user:** {s['prompt'][:200]!r}\n  **assistant:** {s['reply'][:300]!r}" for s in samples[:5])
    )
    return StageResult(
        counts={k: int(result[k]) for k in ("steps", "train_conversations", "train_truncated", "val_conversations")},
        metrics={k: float(result[k]) for k in ("val_loss", "first_val_loss", "final_train_loss", "ends_with_im_end")},
        tables={"samples": samples},
        markdown=md,
        extra={"model_dir": MODEL_DIR},
    )

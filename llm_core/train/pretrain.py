"""The `pretrain` stage: train a GPT on token shards, write the base model and its training record.

Inputs: `tokens` (a `tokenize` artifact) and `tokenizer` (its `bpe` artifact, for decoding samples and counting
bytes); on a refresh of a corpus also `corpus` and `champion_pretrain`: the run continues from the champion's base
model on the new tokens with a replay of the older ones (`continued.py`). Output artifact:

    model/model.safetensors, model/config.json   the final weights (load with `GPT.load`)
    history.json                                 train-loss rows, evaluation rows, final samples
    loss_curve.png                               train and val loss against steps, with the unigram baseline
    result.json                                  the metrics of the finished run (the stage result is built from it)
    _run/speed.json                              tokens/s of this run (not content: outside the manifest, in run.json)
    checkpoints/...                              while training only (see `checkpoint.py`); removed at the end

A retried stage resumes from the newest checkpoint; once `result.json` exists, a retry only rebuilds the result.
With `nproc > 1` (and not already under torchrun), the stage launches `torchrun` with that many processes running
`llm_core.train.pretrain_worker`; rank 0 writes the outputs and the launching process reads them back. Progress
callbacks reach the caller only in the single-process case (workers log instead).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from llm_core.model import GPT
from llm_core.stage import Input, StageContext, StageResult, Throughput
from llm_core.tokenizer import TokenShards, load_tokenizer
from llm_core.train.checkpoint import CheckpointStore
from llm_core.train.continued import (
    BaseModel,
    continue_trainer,
    corpus_token_shards,
    corpus_windows,
)
from llm_core.train.data import RandomWindowBatches, TokenWindows
from llm_core.train.distributed import DistEnv, init_distributed, launch_torchrun, shutdown_distributed, under_torchrun
from llm_core.train.evaluation import LMEvaluator, unigram_entropy
from llm_core.train.model_files import HISTORY_FILE, MODEL_DIR, RESULT_FILE, save_model_files
from llm_core.train.pretrain_config import PretrainConfig
from llm_core.train.report import eval_table, loss_curve_png
from llm_core.train.trainer import LoopSettings, Trainer, TrainHistory
from llm_core.train.training_stage import TrainingStage

SPEED_FILE = "_run/speed.json"  # tokens/s of this run: bookkeeping, left out of the manifest (see write_outputs)
UNIGRAM_SAMPLE_TOKENS = 10_000_000


def next_token_loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return model(x, y, return_logits=False)[1]


def read_stream(shards: TokenShards, split: str, max_tokens: int) -> np.ndarray:
    """The first `max_tokens` tokens of a split, in memory."""
    parts, have = [], 0
    for name in shards.files(split):
        if have >= max_tokens:
            break
        part = np.asarray(shards.memmap(name)[: max_tokens - have])
        parts.append(part)
        have += len(part)
    assert parts, f"the tokens artifact has no {split} shards"
    return np.concatenate(parts)


def train_windows(shards: TokenShards, block_size: int) -> TokenWindows:
    names = shards.files("train")
    lengths = [len(shards.memmap(n)) for n in names]
    return TokenWindows([lambda n=n: shards.memmap(n) for n in names], lengths, block_size)


def pretrain(ctx: StageContext) -> None:
    """Train in this process (one of several under torchrun, or alone); rank 0 writes the outputs."""
    cfg: PretrainConfig = ctx.config
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env = init_distributed(cfg.device)
    try:
        _pretrain(ctx, cfg, env)
        if env.is_distributed:
            # every rank waits for rank 0's writes before any tears the group down: a rank that destroys its gloo
            # group while a peer still holds the connection can abort ("terminate called without an active
            # exception"). Not in `finally`: a rank that failed must exit, not wait for the others.
            dist.barrier()
    finally:
        shutdown_distributed()


def _pretrain(ctx: StageContext, cfg: PretrainConfig, env: DistEnv) -> None:
    shards = TokenShards(ctx.reader("tokens"))
    tokenizer = load_tokenizer(ctx.reader("tokenizer"))
    assert shards.vocab_size == tokenizer.vocab_size, (
        f"token shards were made with a vocabulary of {shards.vocab_size}, the tokenizer has {tokenizer.vocab_size}")
    seed = ctx.run.seed
    torch.manual_seed(seed)
    base = BaseModel.of(ctx.reader("champion_pretrain")) if "champion_pretrain" in ctx.inputs else None
    if base is not None and shards.num_tokens("train") == 0:
        if env.is_main:
            keep_base(ctx, base)
        return
    model = base.load(env.device) if base else GPT(cfg.model.gpt_config(tokenizer.vocab_size)).to(env.device)
    model_config = model.config
    grad_accum = cfg.grad_accum(env.world_size)
    block = model_config.block_size
    steps = cfg.max_steps if base is None else base.steps + (cfg.continue_steps or cfg.max_steps)
    replayed = corpus_windows(ctx.reader("corpus"), block) if base is not None and "corpus" in ctx.inputs else None
    batches = RandomWindowBatches(train_windows(shards, block), cfg.batch_size, grad_accum, env.rank,
                                  env.world_size, seed, replayed, cfg.replay)
    val = read_stream(shards, "val", cfg.eval_tokens + 1) if shards.num_tokens("val") > block else None
    if val is None and "corpus" in ctx.inputs:  # a small snapshot: its few val tokens, then the earlier ones'
        val = np.concatenate([read_stream(s, "val", cfg.eval_tokens + 1)
                              for s in [shards, *corpus_token_shards(ctx.reader("corpus"))] if s.num_tokens("val")])
    evaluator = LMEvaluator(
        val, block, cfg.eval_tokens, cfg.eval_batch_size,
        special_ids=list(tokenizer.special_ids.values()), decode=tokenizer.decode,
        prompts=[tokenizer.encode(p) for p in cfg.sample_prompts], sample_tokens=cfg.sample_tokens,
        stop_token=tokenizer.eot_id, seed=seed,
    )
    tokens_per_step = cfg.batch_size * block * grad_accum * env.world_size
    settings = LoopSettings(
        max_steps=steps, grad_accum=grad_accum, eval_every=cfg.eval_every,
        checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every, seed=seed,
        tokens_per_step=tokens_per_step, compile=cfg.compile, bf16=cfg.bf16,
    )
    checkpoints = CheckpointStore(ctx.writer(), keep=cfg.keep_checkpoints)
    trainer = Trainer(model, cfg.optim, batches, next_token_loss, settings, env, checkpoints,
                      evaluate=evaluator, on_progress=lambda step, total, m: ctx.progress(step, total, **m))
    if base is not None:
        continue_trainer(trainer, base, cfg.optim, steps - base.steps)
    history = trainer.fit()
    if env.is_main:
        samples = evaluator.samples or evaluator.sample(model.eval(), trainer.step)
        baseline = unigram_entropy(read_stream(shards, "train", UNIGRAM_SAMPLE_TOKENS), tokenizer.vocab_size)
        write_outputs(ctx, model, history, samples, {
            "unigram_entropy": baseline,
            "tokens_per_s": history.tokens_per_s(),
            "params": model.num_params(),
            "flops_per_token": model.flops_per_token(),
            "tokens_per_step": tokens_per_step,
            "grad_accum": grad_accum,
            "world_size": env.world_size,
            "train_tokens_seen": tokens_per_step * (steps - (base.steps if base else 0)),
            "start_step": base.steps if base else 0,
            "replay": cfg.replay if base else 0.0,
            "train_tokens_available": int(shards.num_tokens("train")),
            "val_tokens_scored": evaluator.num_targets,
            "device": str(env.device),
        })


def keep_base(ctx: StageContext, base: BaseModel) -> None:
    """A refresh that brought no new tokens trains nothing: the artifact holds the champion's base model as it is
    (its files, history and result), and its result says so."""
    writer = ctx.writer()
    with tempfile.TemporaryDirectory() as tmp:
        for name in base.reader.files(f"{MODEL_DIR}/*") + [HISTORY_FILE, "loss_curve.png"]:
            writer.put_file(base.reader.get_file(name, os.path.join(tmp, os.path.basename(name))), name)
    result = base.reader.read_json(RESULT_FILE)
    writer.write_json(RESULT_FILE, {**result, "train_tokens_seen": 0, "tokens_per_s": 0.0, "start_step": base.steps,
                                    "no_new_tokens": 1})


def write_outputs(ctx: StageContext, model: GPT, history: TrainHistory, samples: list[dict], facts: dict) -> None:
    writer = ctx.writer()
    save_model_files(writer, model)
    # Speed is a fact of this run, not of the model: it goes to a bookkeeping file (not in the manifest) and from
    # there to run.json, so two runs that train the same weights write the same history.json and result.json.
    facts = dict(facts)
    writer.write_json(SPEED_FILE, {"tokens_per_s": facts.pop("tokens_per_s"),
                                   "train": [{"step": r["step"], "tokens_per_s": r["tokens_per_s"]}
                                             for r in history.train if "tokens_per_s" in r]})
    train_rows = [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in history.train]
    writer.write_json(HISTORY_FILE, {"train": train_rows, "evals": history.evals, "samples": samples})
    writer.write_bytes("loss_curve.png", loss_curve_png(history, facts["unigram_entropy"], f"pretrain {ctx.output}"))
    final = history.evals[-1] if history.evals else {}
    result = {**facts, "final_train_loss": history.train[-1]["loss"],
              **{k: v for k, v in final.items() if k != "step"}, "steps": final.get("step", 0)}
    writer.write_json(RESULT_FILE, result)


def build_result(ctx: StageContext) -> StageResult:
    files = ctx.writer()  # the artifact being built: read back what training wrote
    speed = files.read_json(SPEED_FILE)["tokens_per_s"]
    result: dict[str, Any] = {**files.read_json(RESULT_FILE), "tokens_per_s": speed}
    recorded = files.read_json(HISTORY_FILE)
    history = TrainHistory(train=recorded["train"], evals=recorded["evals"])
    samples = recorded["samples"]
    metrics = {k: float(v) for k, v in result.items() if isinstance(v, (int, float))}
    model_config = files.read_json(f"{MODEL_DIR}/config.json")
    markdown = (
        f"### Pretraining\n\n{result['params']:,} parameters ({model_config['n_layer']} layers, "
        f"{model_config['n_embd']} wide), {result['steps']} steps of {result['tokens_per_step']:,} tokens on "
        f"{result['world_size']} x {result['device']}, {result['tokens_per_s']:,.0f} tokens/s.\n\n"
        f"Validation loss **{result.get('val_loss', float('nan')):.4f}** nats/token "
        f"({result.get('val_bpb', float('nan')):.4f} bits/byte); unigram baseline "
        f"{result['unigram_entropy']:.4f}.\n\n"
        + ("No new tokens in this snapshot: nothing was trained, this is the champion's base model unchanged.\n\n"
           if result.get("no_new_tokens") else "")
        + (f"Continued from the champion's base model at step {result['start_step']:,}, {result['replay']:.0%} of "
           "every batch replayed from the corpus's earlier snapshots.\n\n" if result.get("start_step") else "")
        + "\n".join(f"- `{s['prompt']!r}` → {s['continuation']!r}" for s in samples)
    )
    return StageResult(
        counts={"steps": int(result["steps"]), "train_tokens_seen": int(result["train_tokens_seen"]),
                "params": int(result["params"])},
        metrics=metrics,
        tables={"evaluations": eval_table(history), "samples": samples},
        markdown=markdown,
        extra={"model_config": model_config, "model_dir": MODEL_DIR},
    )


class PretrainStage(TrainingStage):
    name = "pretrain"
    config_model = PretrainConfig
    # 2: tokens_per_s moved to run.json; 3: continued pretraining from the champion on a refresh, start_step and
    # replay in the result
    version = "3"
    throughput = Throughput("train_tokens_seen", 3550.0)
    headline = ("val_loss", "val_bpb", "unigram_entropy", "params", "tokens_per_s")
    loss_curve = True
    uses_seed = True

    def machine_warnings(self, config: PretrainConfig, cores: int, load: float) -> list[str]:
        """Torch threads that fight: more threads than cores, or all cores while other jobs hold some."""
        threads = config.threads or cores
        if threads * config.nproc > cores:
            return [f"pretrain's torch threads fight: {config.nproc} process(es) x {threads} threads on {cores} "
                    f"cores; set pretrain.threads={max(1, cores // config.nproc)}"]
        if load > cores and not config.threads and cores > 1:
            return [f"pretrain.threads=0 lets torch use all {cores} cores while other jobs hold {load:.1f} of them: "
                    f"its threads wait on each other at every step; set "
                    f"pretrain.threads={max(1, cores - round(load - cores))}"]
        return []

    def input_stages(self, config: PretrainConfig) -> dict[str, str | Input]:
        """On a refresh the corpus (its earlier snapshots: the replay) and, carried over by the planner,
        `champion_pretrain` (the base model the run continues from)."""
        return {"tokens": "tokenize", "tokenizer": "bpe", "corpus": Input(("corpus",), optional=True)}

    def train(self, ctx: StageContext) -> None:
        cfg: PretrainConfig = ctx.config
        if cfg.nproc * cfg.nnodes > 1 and not under_torchrun():
            launch_workers(ctx)
        else:
            pretrain(ctx)

    def result(self, ctx: StageContext) -> StageResult:
        return build_result(ctx)


def launch_workers(ctx: StageContext) -> None:
    """Run `pretrain(ctx)` in `nproc` processes under torchrun (CPU: the cores are split between them)."""
    cfg: PretrainConfig = ctx.config
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "context.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(dump_context(ctx))
        threads = None if torch.cuda.is_available() else cfg.threads or max(1, (os.cpu_count() or 1) // cfg.nproc)
        launch_torchrun(cfg.nproc, "llm_core.train.pretrain_worker", [path], threads_per_proc=threads,
                        nnodes=cfg.nnodes, rdzv_endpoint=cfg.rdzv_endpoint, rdzv_id=cfg.rdzv_id)


def dump_context(ctx: StageContext) -> str:
    """JSON of a stage context with its full stage config (the context's own dump keeps only the base fields)."""
    data = json.loads(ctx.model_dump_json(exclude={"config"}))
    data["config"] = ctx.config.model_dump(mode="json")
    return json.dumps(data)


def load_context(text: str) -> StageContext:
    data = json.loads(text)
    data["config"] = PretrainConfig.model_validate(data["config"])
    return StageContext.model_validate(data)

"""The `rlhf` stage: PPO against the reward model (default) or GRPO on a verifiable reward, chosen in config.

Inputs: `sft` (the policy's start and the frozen reference), `tokenizer`, and for PPO `reward` (the reward model,
which also initialises the value model). Prompts: PPO uses the OpenAssistant prompt lottery (a file of real user
prompts); GRPO a task with reference answers (`arithmetic`, generated, or `gsm8k`). A deterministic share of the
prompts is held back; the policy is evaluated on them before and after training (mean reward, KL to the reference,
share of replies that end, reply length).

Iterations are checkpointed into the artifact (policy weights plus optimizer, value model, KL coefficient and the
log), so a retried stage resumes from the last finished iteration. Output artifact:

    model/model.safetensors, model/config.json   the RL policy (a GPT, like the SFT model)
    history.json    per-iteration logs (PPO: score, kl, entropy, clipfrac, vf_loss, ratio mean/var, length...)
    samples.json    held-back prompts with the SFT and the RL replies
    result.json     before/after metrics
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from llm_core.chat.engine import Engine, SamplingParams
from llm_core.chat.loaders import load_prompts
from llm_core.chat.mixture import is_validation
from llm_core.chat.template import render_prompt
from llm_core.config import StageConfig
from llm_core.model import GPT
from llm_core.post.grpo import GrpoConfig, GrpoTrainer
from llm_core.post.model_io import (
    MODEL_DIR,
    load_gpt,
    load_scalar_model,
    save_model_files,
)
from llm_core.post.ppo import PpoConfig, PpoTrainer
from llm_core.post.reward_model import ScalarHeadModel
from llm_core.post.rewards import arithmetic_task, get_reward, gsm8k_task
from llm_core.post.rollout import RolloutBatch, make_batch, token_logprobs
from llm_core.stage import StageContext, StageResult
from llm_core.tokenizer import load_tokenizer
from llm_core.tokenizer.base import Tokenizer
from llm_core.train.checkpoint import CheckpointStore
from llm_core.train.training_stage import RESULT_FILE, TrainingStage

HISTORY_FILE, SAMPLES_FILE = "history.json", "samples.json"


class RlhfConfig(StageConfig):
    algorithm: Literal["ppo", "grpo"] = "ppo"
    iterations: int = Field(20, ge=1)
    prompts_path: str = Field("data/oasst/prompt_lottery_en_250_text.jsonl", description="PPO prompts")
    task_size: int = Field(2000, ge=1, description="GRPO: problems drawn for the task (before the split)")
    eval_fraction: float = Field(0.15, gt=0, lt=1, description="share of prompts held back for evaluation")
    eval_prompts: int = Field(32, ge=1, description="held-back prompts used in the before/after evaluation")
    eval_samples: int = Field(2, ge=1, description="replies per held-back prompt in the evaluation")
    max_tokens: int = Field(64, ge=1)
    temperature: float = Field(1.0, gt=0, description="sampling temperature, also applied to log-probs")
    ppo: PpoConfig = Field(default_factory=PpoConfig)
    grpo: GrpoConfig = Field(default_factory=GrpoConfig)
    checkpoint_every: int = Field(5, ge=0, description="iterations between checkpoints; 0 = only at the end")

    runtime_fields: ClassVar[frozenset[str]] = frozenset({"checkpoint_every"})


Prompt = tuple[str, str | None]  # (user prompt, reference answer or None)
Scorer = Callable[[RolloutBatch, list[str], list[str], list[str | None]], torch.Tensor]  # -> reward per row


def split_prompts(items: Sequence[Prompt], eval_fraction: float, seed: int) -> tuple[list[Prompt], list[Prompt]]:
    """Unique prompts split by a hash of their text: (train, held back)."""
    unique = list(dict.fromkeys(items))
    held = [p for p in unique if is_validation(p[0], eval_fraction, seed)]
    return [p for p in unique if p not in set(held)], held


def task_prompts(cfg: RlhfConfig, seed: int) -> list[Prompt]:
    if cfg.algorithm == "ppo":
        return [(p, None) for p in load_prompts(cfg.prompts_path)]
    g = cfg.grpo
    if g.task == "arithmetic":
        return arithmetic_task(cfg.task_size, seed, g.max_operand)
    if g.task == "gsm8k":
        return gsm8k_task(g.task_path, cfg.task_size)
    raise ValueError(f"rlhf.grpo.task must be arithmetic or gsm8k, not {g.task!r}")


def reward_model_scorer(rm: ScalarHeadModel) -> Scorer:
    return lambda batch, prompts, replies, refs: rm(batch.ids, batch.lengths)


def verifiable_scorer(name: str) -> Scorer:
    fn = get_reward(name)
    return lambda batch, prompts, replies, refs: torch.tensor(
        [fn(p, r, ref) for p, r, ref in zip(prompts, replies, refs)], dtype=torch.float32)


@torch.no_grad()
def evaluate_policy(
    policy: GPT, ref: GPT, tokenizer: Tokenizer, prompts: Sequence[Prompt], scorer: Scorer,
    params: SamplingParams, n: int, seed: int,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """On `n` replies per prompt: mean reward, KL(policy || ref) per reply (k1 summed over its tokens), share of
    replies that end, mean length; plus one sample per prompt."""
    policy.eval()
    ids = [render_prompt(tokenizer, [{"role": "user", "content": p}]) for p, _ in prompts]
    outs = Engine(policy, tokenizer).generate(ids, params, n=n, seed=seed)
    rows = [i for i in ids for _ in range(n)]
    completions = [c for o in outs for c in o]
    batch = make_batch(rows, completions, tokenizer.eot_id)
    texts = [p for p, _ in prompts for _ in range(n)]
    replies = [c.text for c in completions]
    rewards = scorer(batch, texts, replies, [r for _, r in prompts for _ in range(n)])
    kl = []
    for s in range(0, len(rows), 32):
        part = batch.ids[s:s + 32]
        diff = token_logprobs(policy, part, params.temperature)[0] - token_logprobs(ref, part, params.temperature)[0]
        kl.append((diff * batch.response_mask[s:s + 32]).sum(1))
    metrics = {
        "reward": float(rewards.mean()),
        "kl": float(torch.cat(kl).mean()),
        "finished": float(batch.finished.float().mean()),
        "length": float(batch.response_mask.sum(1).mean()),
    }
    samples = [{"prompt": texts[i], "reply": replies[i], "reward": round(float(rewards[i]), 4)}
               for i in range(0, len(rows), n)]
    return metrics, samples


def iteration_prompts(train: Sequence[Prompt], count: int, seed: int, iteration: int) -> list[Prompt]:
    """The prompts of one iteration: a pure function of (seed, iteration), so a resumed run draws the same ones."""
    rng = random.Random(seed * 100_003 + iteration)
    return [train[rng.randrange(len(train))] for _ in range(count)]


def run_rl(
    policy: GPT, ref: GPT, tokenizer: Tokenizer, cfg: RlhfConfig, train: Sequence[Prompt], seed: int,
    reward_model: ScalarHeadModel | None = None, checkpoints: CheckpointStore | None = None,
    on_progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train `policy` in place for `cfg.iterations` iterations; returns the per-iteration logs."""
    sampling = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature)
    engine = Engine(policy, tokenizer)
    pad = tokenizer.eot_id
    value = None
    if cfg.algorithm == "ppo":
        assert reward_model is not None, "PPO needs a reward model (rlhf.algorithm=ppo takes the reward stage)"
        value = copy.deepcopy(reward_model)
        trainer: PpoTrainer | GrpoTrainer = PpoTrainer(policy, ref, value, reward_model, engine, cfg.ppo, sampling,
                                                       pad)
        per_iteration = cfg.ppo.prompts_per_iteration
    else:
        trainer = GrpoTrainer(policy, ref, engine, get_reward(cfg.grpo.reward), cfg.grpo, sampling, pad)
        per_iteration = cfg.grpo.prompts_per_iteration
    log: list[dict[str, float]] = []
    start = 0
    state = checkpoints.load_latest(policy, "cpu") if checkpoints is not None else None
    if state is not None:
        start, log = int(state["iteration"]), list(state["log"])
        trainer.load_state_dict(state["trainer"])
        if value is not None:
            value.load_state_dict(state["value"])
    for it in range(start, cfg.iterations):
        batch = iteration_prompts(train, per_iteration, seed, it)
        ids = [render_prompt(tokenizer, [{"role": "user", "content": p}]) for p, _ in batch]
        if isinstance(trainer, PpoTrainer):
            stats = trainer.step(ids, seed=seed * 7919 + it)
        else:
            stats = trainer.step(ids, [p for p, _ in batch], [r for _, r in batch], seed=seed * 7919 + it)
        log.append({"iteration": it + 1, **stats})
        if on_progress is not None:
            on_progress(it + 1, cfg.iterations, {k: stats[k] for k in ("score", "reward", "kl") if k in stats})
        last = it + 1 == cfg.iterations
        if checkpoints is not None and (last or (cfg.checkpoint_every and (it + 1) % cfg.checkpoint_every == 0)):
            checkpoints.save(it + 1, policy, {"iteration": it + 1, "log": log, "trainer": trainer.state_dict(),
                                              "value": value.state_dict() if value is not None else {}})
    return log


class RlhfStage(TrainingStage):
    name = "rlhf"
    config_model = RlhfConfig
    version = "3"
    uses_seed = True

    def input_stages(self, config: RlhfConfig) -> dict[str, str]:
        inputs = {"sft": "sft", "tokenizer": "bpe"}
        if config.algorithm == "ppo":
            inputs["reward"] = "reward"
        return inputs

    def data_paths(self, ctx_config: RlhfConfig) -> list[str]:
        if ctx_config.algorithm == "ppo":
            return [ctx_config.prompts_path]
        return [ctx_config.grpo.task_path] if ctx_config.grpo.task == "gsm8k" else []

    def result(self, ctx: StageContext) -> StageResult:
        writer = ctx.writer()
        return build_result(writer.read_json(RESULT_FILE), writer.read_json(SAMPLES_FILE))

    def train(self, ctx: StageContext) -> None:
        cfg: RlhfConfig = ctx.config
        seed = ctx.run.seed
        torch.manual_seed(seed)
        tokenizer = load_tokenizer(ctx.reader("tokenizer"))
        policy = load_gpt(ctx.reader("sft"))
        ref = copy.deepcopy(policy).eval()
        rm = load_scalar_model(ctx.reader("reward")).eval() if cfg.algorithm == "ppo" else None
        scorer = reward_model_scorer(rm) if rm is not None else verifiable_scorer(cfg.grpo.reward)
        room = policy.config.block_size - cfg.max_tokens
        assert room > 8, f"rlhf.max_tokens={cfg.max_tokens} leaves no room for a prompt in the model's context"
        prompts = task_prompts(cfg, seed)
        fitting = [p for p in prompts if len(render_prompt(tokenizer, [{"role": "user", "content": p[0]}])) <= room]
        train, held = split_prompts(fitting, cfg.eval_fraction, seed)
        held = held[: cfg.eval_prompts]
        assert train and held, (
            f"{len(fitting)} of {len(prompts)} prompts fit the context ({room} tokens before the reply): too few to "
            "train and evaluate; lower rlhf.max_tokens or use a model with a longer block_size")
        params = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature)
        before, before_samples = evaluate_policy(policy, ref, tokenizer, held, scorer, params, cfg.eval_samples, seed)
        writer = ctx.writer()
        log = run_rl(policy, ref, tokenizer, cfg, train, seed, rm, CheckpointStore(writer),
                     lambda i, total, m: ctx.progress(i, total, **m))
        after, after_samples = evaluate_policy(policy, ref, tokenizer, held, scorer, params, cfg.eval_samples, seed)
        save_model_files(writer, policy)
        writer.write_json(HISTORY_FILE, log)
        writer.write_json(SAMPLES_FILE, [{"prompt": b["prompt"], "sft_reply": b["reply"], "sft_reward": b["reward"],
                                          "rl_reply": a["reply"], "rl_reward": a["reward"]}
                                         for b, a in zip(before_samples, after_samples)])
        writer.write_json(RESULT_FILE, {
            "algorithm": cfg.algorithm, "iterations": cfg.iterations, "train_prompts": len(train),
            "prompts_too_long": len(prompts) - len(fitting),
            "eval_prompts": len(held), **{f"before_{k}": v for k, v in before.items()},
            **{f"after_{k}": v for k, v in after.items()},
        })


def build_result(result: dict[str, Any], samples: list[dict]) -> StageResult:
    reward_name = "reward-model score" if result["algorithm"] == "ppo" else "verifiable reward (pass@1)"
    keys = ("reward", "kl", "finished", "length")
    md = (
        f"### RL ({result['algorithm'].upper()})\n\n{result['iterations']} iterations on {result['train_prompts']} "
        f"prompts ({result['prompts_too_long']} left out: too long for the context); {result['eval_prompts']} "
        f"held-back prompts, {reward_name}:\n\n"
        "| | reward | KL to SFT (nats/reply) | replies that end | length |\n|---|---|---|---|---|\n"
        + "".join(f"| {when} | " + " | ".join(f"{result[f'{when}_{k}']:.3f}" for k in keys) + " |\n"
                  for when in ("before", "after"))
        + "\n" + "\n".join(f"- **user:** {s['prompt'][:160]!r}\n  **SFT:** {s['sft_reply'][:200]!r}\n"
                            f"  **RL:** {s['rl_reply'][:200]!r}" for s in samples[:4])
    )
    return StageResult(
        counts={k: int(result[k]) for k in ("iterations", "train_prompts", "eval_prompts", "prompts_too_long")},
        metrics={k: float(v) for k, v in result.items() if isinstance(v, (int, float))},
        tables={"samples": samples},
        markdown=md,
        extra={"model_dir": MODEL_DIR, "algorithm": result["algorithm"]},
    )

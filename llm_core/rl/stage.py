"""The `rlhf` stage: PPO against the reward model (default) or GRPO on a verifiable reward, chosen in config.

Inputs: `sft` (the policy's start and the frozen reference), `tokenizer`, and for PPO `reward` (the reward model,
which also initialises the value model). The algorithm (`rlhf.algorithm`, one `RLAlgorithm` in `ALGORITHMS`: see
`algorithm.py`, `ppo.py`, `grpo.py`) supplies the prompts and the reward: PPO the OpenAssistant prompt lottery (a
file of real user prompts) and the reward model's score; GRPO a task with reference answers (`arithmetic`,
generated, or `gsm8k`) and a verifiable reward. A deterministic share of the prompts is held back; the policy is
evaluated on them before and after training (mean reward, KL to the reference, share of replies that end, reply
length).

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
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import zip_longest
from typing import Any

import torch

from llm_core.chat.mixture import is_validation
from llm_core.preference.reward_model import ScalarHeadModel
from llm_core.rl.algorithm import Prompt, RLAlgorithm, user_prompt_ids
from llm_core.rl.config import RlhfConfig
from llm_core.rl.grpo import Grpo
from llm_core.rl.ppo import Ppo
from llm_core.rl.rollout import token_logprobs
from llm_core.stage import StageContext, StageResult, Throughput
from llm_core.tokenizer import load_tokenizer
from llm_core.train.checkpoint import CheckpointStore
from llm_core.train.model_files import (
    HISTORY_FILE,
    MODEL_DIR,
    RESULT_FILE,
    SAMPLES_FILE,
    load_gpt,
    load_model,
    save_model_files,
)
from llm_core.train.training_stage import TrainingStage

ALGORITHMS: dict[str, type[RLAlgorithm]] = {"ppo": Ppo, "grpo": Grpo}


def split_prompts(items: Sequence[Prompt], eval_fraction: float, seed: int) -> tuple[list[Prompt], list[Prompt]]:
    """Unique prompts split by a hash of their text: (train, held back)."""
    unique = list(dict.fromkeys(items))
    held = [p for p in unique if is_validation(p[0], eval_fraction, seed)]
    return [p for p in unique if p not in set(held)], held


def balanced(prompts: Sequence[Prompt], count: int, kind: Callable[[Prompt], str]) -> list[Prompt]:
    """Up to `count` prompts taken from each kind in turn, so every kind is evaluated (in order within a kind)."""
    groups: dict[str, list[Prompt]] = {}
    for p in prompts:
        groups.setdefault(kind(p), []).append(p)
    order = [p for turn in zip_longest(*groups.values()) for p in turn if p is not None]
    return order[:count]


def prompt_counts(prompts: Sequence[Prompt], kind: Callable[[Prompt], str]) -> dict[str, int]:
    """`eval_prompts/KIND` for each kind, when there are several."""
    counts = Counter(kind(p) for p in prompts)
    return {f"eval_prompts/{k}": v for k, v in sorted(counts.items())} if len(counts) > 1 else {}


@torch.no_grad()
def evaluate_policy(
    algorithm: RLAlgorithm, prompts: Sequence[Prompt], n: int, seed: int
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """On `n` replies per prompt: mean reward (the algorithm's) and its other scores, KL(policy || ref) per reply (k1
    summed over its tokens), share of replies that end, mean length; each also per kind of prompt (`name/kind`)
    when there are several; plus one sample per prompt."""
    algorithm.policy.eval()
    rollouts = algorithm.rollout(prompts, n, seed)
    batch, temperature = rollouts.batch, algorithm.sampling.temperature
    kl = []
    for s in range(0, len(batch.ids), 32):
        part = batch.ids[s:s + 32]
        mask = batch.response_mask[s:s + 32]
        diff = (token_logprobs(algorithm.policy, part, temperature, mask, banned=algorithm.banned)[0]
                - token_logprobs(algorithm.ref, part, temperature, mask, banned=algorithm.banned)[0])
        kl.append((diff * mask).sum(1))
    extra = algorithm.scores(rollouts)
    rows = {"reward": algorithm.reward(rollouts), **extra, "kl": torch.cat(kl),
            "finished": batch.finished.float(), "length": batch.response_mask.sum(1).float()}
    metrics = {k: float(v.mean()) for k, v in rows.items()}
    kinds = [algorithm.prompt_kind(p) for p in prompts for _ in range(n)]
    if len(set(kinds)) > 1:
        for kind in sorted(set(kinds)):
            mask = torch.tensor([k == kind for k in kinds])
            metrics.update({f"{k}/{kind}": float(v[mask].mean()) for k, v in rows.items()})
    samples = [{"prompt": rollouts.prompts[i], "reply": rollouts.replies[i],
                **{k: round(float(rows[k][i]), 4) for k in ("reward", *extra)}}
               for i in range(0, len(batch.ids), n)]
    return metrics, samples


def iteration_prompts(train: Sequence[Prompt], count: int, seed: int, iteration: int) -> list[Prompt]:
    """The prompts of one iteration: a pure function of (seed, iteration), so a resumed run draws the same ones."""
    rng = random.Random(seed * 100_003 + iteration)
    return [train[rng.randrange(len(train))] for _ in range(count)]


def run_rl(
    algorithm: RLAlgorithm, cfg: RlhfConfig, train: Sequence[Prompt], seed: int,
    checkpoints: CheckpointStore | None = None, on_progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train the algorithm's policy in place for `cfg.iterations` iterations, resuming from the newest checkpoint;
    returns the per-iteration logs."""
    log: list[dict[str, float]] = []
    start = 0
    state = checkpoints.load_latest(algorithm.policy, "cpu") if checkpoints is not None else None
    if state is not None:
        start, log = int(state["iteration"]), list(state["log"])
        algorithm.load_state_dict(state["algorithm"])
    for it in range(start, cfg.iterations):
        stats = algorithm.step(iteration_prompts(train, algorithm.prompts_per_iteration, seed, it), seed * 7919 + it)
        log.append({"iteration": it + 1, **stats})
        if on_progress is not None:
            on_progress(it + 1, cfg.iterations, {k: stats[k] for k in algorithm.progress_metrics})
        last = it + 1 == cfg.iterations
        if checkpoints is not None and (last or (cfg.checkpoint_every and (it + 1) % cfg.checkpoint_every == 0)):
            checkpoints.save(it + 1, algorithm.policy,
                             {"iteration": it + 1, "log": log, "algorithm": algorithm.state_dict()})
    return log


class RlhfStage(TrainingStage):
    name = "rlhf"
    config_model = RlhfConfig
    version = "5"  # 5: PPO's reward and the reward-model score apart, per kind of prompt; value warm-up; keywords
    throughput = Throughput("iterations", 0.35)
    headline = ("before_reward", "after_reward", "before_kl", "after_kl", "before_finished", "after_finished")
    iteration_chart = True
    uses_seed = True

    def input_stages(self, config: RlhfConfig) -> dict[str, str]:
        inputs = {"sft": "sft", "tokenizer": "bpe"}
        if config.algorithm == "ppo":
            inputs["reward"] = "reward"
        return inputs

    def data_paths(self, ctx_config: RlhfConfig) -> list[str]:
        return ALGORITHMS[ctx_config.algorithm].data_paths(ctx_config)

    def result(self, ctx: StageContext) -> StageResult:
        writer = ctx.writer()
        return build_result(writer.read_json(RESULT_FILE), writer.read_json(SAMPLES_FILE),
                            writer.read_json(HISTORY_FILE))

    def train(self, ctx: StageContext) -> None:
        cfg: RlhfConfig = ctx.config
        seed = ctx.run.seed
        torch.manual_seed(seed)
        tokenizer = load_tokenizer(ctx.reader("tokenizer"))
        policy = load_gpt(ctx.reader("sft"))
        ref = copy.deepcopy(policy).eval()
        rm = load_model(ScalarHeadModel, ctx.reader("reward")).eval() if "reward" in ctx.inputs else None
        algorithm = ALGORITHMS[cfg.algorithm](cfg, policy, ref, tokenizer, rm)
        room = policy.config.block_size - cfg.max_tokens
        assert room > 8, f"rlhf.max_tokens={cfg.max_tokens} leaves no room for a prompt in the model's context"
        prompts = algorithm.prompts(cfg, seed)
        fitting = [p for p in prompts if len(user_prompt_ids(tokenizer, p[0])) <= room]
        train, held = split_prompts(fitting, cfg.eval_fraction, seed)
        held = balanced(held, cfg.eval_prompts, algorithm.prompt_kind)
        assert train and held, (
            f"{len(fitting)} of {len(prompts)} prompts fit the context ({room} tokens before the reply): too few to "
            "train and evaluate; lower rlhf.max_tokens or use a model with a longer block_size")
        before, before_samples = evaluate_policy(algorithm, held, cfg.eval_samples, seed)
        writer = ctx.writer()
        log = run_rl(algorithm, cfg, train, seed, CheckpointStore(writer),
                     lambda i, total, m: ctx.progress(i, total, **m))
        after, after_samples = evaluate_policy(algorithm, held, cfg.eval_samples, seed)
        save_model_files(writer, policy)
        writer.write_json(HISTORY_FILE, log)
        writer.write_json(SAMPLES_FILE, [
            {"prompt": b["prompt"], **{f"sft_{k}": v for k, v in b.items() if k != "prompt"},
             **{f"rl_{k}": v for k, v in a.items() if k != "prompt"}} for b, a in zip(before_samples, after_samples)])
        writer.write_json(RESULT_FILE, {
            "algorithm": cfg.algorithm, "iterations": cfg.iterations, "train_prompts": len(train),
            "prompts_too_long": len(prompts) - len(fitting),
            "eval_prompts": len(held), **prompt_counts(held, algorithm.prompt_kind),
            **{f"before_{k}": v for k, v in before.items()},
            **{f"after_{k}": v for k, v in after.items()},
        })


SCORE_LABELS = {"reward": "reward", "score": "reward-model score", "kl": "KL to SFT (nats/reply)",
                "finished": "replies that end", "length": "length"}
ITERATION_KEYS = ("reward", "score", "kl", "finished", "length")


def build_result(result: dict[str, Any], samples: list[dict], log: list[dict] | None = None) -> StageResult:
    reward_name = ALGORITHMS[result["algorithm"]].reward_name
    keys = [k for k in SCORE_LABELS if f"before_{k}" in result]
    kinds = sorted({k.split("/", 1)[1] for k in result if k.startswith("before_reward/")})
    groups = [("", "all")] + [(f"/{kind}", kind) for kind in kinds]
    table = (f"| prompts | | {' | '.join(SCORE_LABELS[k] for k in keys)} |\n|---|---|" + "---|" * len(keys) + "\n"
             + "".join(f"| {name} | {when} | " + " | ".join(
                 "—" if k == "kl" and when == "before" else f"{result[f'{when}_{k}{suffix}']:.3f}" for k in keys)
                 + " |\n" for suffix, name in groups for when in ("before", "after")))
    md = (
        f"### RL ({result['algorithm'].upper()})\n\n{result['iterations']} iterations on {result['train_prompts']} "
        f"prompts ({result['prompts_too_long']} left out: too long for the context); {result['eval_prompts']} "
        f"held-back prompts; reward: {reward_name}:\n\n" + table
        + "\n" + "\n".join(f"- **user:** {s['prompt'][:160]!r}\n  **SFT:** {s['sft_reply'][:200]!r}\n"
                            f"  **RL:** {s['rl_reply'][:200]!r}" for s in samples[:4])
        + (iteration_markdown(log) if log else "")
    )
    return StageResult(
        counts={k: int(result[k]) for k in ("iterations", "train_prompts", "eval_prompts", "prompts_too_long")},
        metrics={k: float(v) for k, v in result.items() if isinstance(v, (int, float))},
        tables={"samples": samples},
        markdown=md,
        extra={"model_dir": MODEL_DIR, "algorithm": result["algorithm"]},
    )


def iteration_markdown(log: list[dict]) -> str:
    """The training figures of each iteration (on that iteration's own prompts), as a table."""
    keys = [k for k in ITERATION_KEYS if k in log[0]]
    return ("\n\nPer iteration (its own training prompts):\n\n| iteration | "
            + " | ".join(SCORE_LABELS[k] for k in keys)
            + " |\n|---|" + "---|" * len(keys) + "\n"
            + "".join(f"| {row['iteration']} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |\n" for row in log))

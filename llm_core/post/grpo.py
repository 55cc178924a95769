"""GRPO (DeepSeekMath) with a verifiable reward.

Per iteration: `samples_per_prompt` replies per prompt; reward from a named function of the reply and the
reference answer (`rewards.REWARDS`); advantage of a reply = (reward - group mean) / (group std + eps), the same for
all of its tokens, so no value model is needed. Loss per token: the clipped policy-ratio objective plus
`kl_coef * k3` where k3 = exp(ref - logp) - (ref - logp) - 1 is the unbiased, always-positive KL estimator; averaged
over each reply's tokens, then over replies. With `epochs = 1` the ratio is 1 and this is REINFORCE with a group
baseline (nanochat's simplification); groups where every reply got the same reward carry no signal and are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field

from llm_core.chat.engine import Engine, SamplingParams
from llm_core.config import StrictModel
from llm_core.model import GPT
from llm_core.post.rewards import RewardFn
from llm_core.post.rollout import make_batch, masked_mean, token_logprobs


class GrpoConfig(StrictModel):
    reward: str = Field("exact_answer", description="a name in llm_core.post.rewards.REWARDS")
    task: str = Field("arithmetic", description="prompts: arithmetic (generated) or gsm8k (a file)")
    task_path: str = Field("data/gsm8k/train.jsonl", description="gsm8k task: the problems file")
    max_operand: int = Field(9, ge=1, description="arithmetic task: largest addend")
    prompts_per_iteration: int = Field(8, ge=1)
    samples_per_prompt: int = Field(8, ge=2)
    epochs: int = Field(1, ge=1)
    minibatch_size: int = Field(32, ge=1)
    lr: float = Field(1e-5, gt=0)
    kl_coef: float = Field(0.0, ge=0)
    cliprange: float = Field(0.2, gt=0)
    max_grad_norm: float = Field(1.0, gt=0)


def group_advantages(rewards: torch.Tensor, group: int, eps: float = 1e-4) -> torch.Tensor:
    """(reward - group mean) / (group std + eps) for consecutive groups of `group` replies."""
    r = rewards.view(-1, group)
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + eps)).view(-1)


class GrpoTrainer:
    def __init__(
        self, policy: GPT, ref: GPT, engine: Engine, reward_fn: RewardFn, cfg: GrpoConfig,
        sampling: SamplingParams, pad_id: int,
    ):
        self.policy, self.ref, self.engine, self.reward_fn = policy, ref, engine, reward_fn
        self.cfg, self.sampling, self.pad_id = cfg, sampling, pad_id
        ref.eval()
        policy.requires_grad_(True)
        self.opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])

    def step(
        self, prompts: Sequence[Sequence[int]], texts: Sequence[str], references: Sequence[str | None], seed: int
    ) -> dict[str, float]:
        cfg, n, temp = self.cfg, self.cfg.samples_per_prompt, self.sampling.temperature
        groups = self.engine.generate(prompts, self.sampling, n=n, seed=seed)
        completions = [c for g in groups for c in g]
        rows = [p for p in prompts for _ in range(n)]
        rewards = torch.tensor([self.reward_fn(texts[i // n], c.text, references[i // n])
                                for i, c in enumerate(completions)], dtype=torch.float32)
        adv = group_advantages(rewards, n)
        batch = make_batch(rows, completions, self.pad_id)
        with torch.no_grad():
            old_logp, _ = token_logprobs(self.policy, batch.ids, temp)
            ref_logp = token_logprobs(self.ref, batch.ids, temp)[0] if cfg.kl_coef > 0 else None
        live = (rewards.view(-1, n).std(1) > 0).repeat_interleave(n).nonzero().flatten()
        stats: dict[str, list[float]] = {"loss": [], "kl": [], "clipfrac": [], "entropy": []}
        g = torch.Generator().manual_seed(seed)
        self.policy.train()
        for _ in range(cfg.epochs if len(live) else 0):
            order = live[torch.randperm(len(live), generator=g)]
            for s in range(0, len(order), cfg.minibatch_size):
                idx = order[s:s + cfg.minibatch_size]
                mb, m = batch.select(idx), batch.response_mask[idx]
                logp, entropy = token_logprobs(self.policy, mb.ids, temp, with_entropy=True)
                ratio = torch.exp(logp - old_logp[idx])
                a = adv[idx].unsqueeze(1)
                per_token = -torch.min(ratio * a, ratio.clamp(1 - cfg.cliprange, 1 + cfg.cliprange) * a)
                kl = torch.zeros_like(logp)
                if ref_logp is not None:
                    d = ref_logp[idx] - logp
                    kl = torch.exp(d) - d - 1
                    per_token = per_token + cfg.kl_coef * kl
                loss = masked_mean(per_token, m, dim=1).mean()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                self.opt.step()
                stats["loss"].append(loss.item())
                stats["kl"].append(float(masked_mean(kl.detach(), m)))
                stats["clipfrac"].append(float(masked_mean(((ratio.detach() - 1).abs() > cfg.cliprange).float(), m)))
                stats["entropy"].append(float(masked_mean(entropy.detach(), m)))
        out = {k: (sum(v) / len(v) if v else 0.0) for k, v in stats.items()}
        out.update(reward=float(rewards.mean()), live_groups=float(len(live) // n),
                   length=float(batch.response_mask.sum(1).mean()), finished=float(batch.finished.float().mean()))
        return out

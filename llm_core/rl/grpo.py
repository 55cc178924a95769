"""GRPO (DeepSeekMath) on a verifiable reward: addition problems or GSM8K, each with its reference answer.

Per iteration: `samples_per_prompt` replies per prompt; reward from a named function of the reply and the
reference answer (`rewards.REWARDS`); advantage of a reply = (reward - group mean) / (group std + eps), the same for
all of its tokens, so no value model is needed. Loss per token: the clipped policy-ratio objective plus
`kl_coef * k3` where k3 = exp(ref - logp) - (ref - logp) - 1 is the unbiased, always-positive KL estimator; averaged
over each reply's tokens, then over replies.

Simplifications against DeepSeekMath:
1) with `epochs = 1` (the default) every update is on policy, the ratio is 1 and this is REINFORCE with a group
   baseline (nanochat's simplification); more epochs bring the ratio and its clipping back;
2) groups where every reply got the same reward carry no signal and are skipped;
3) the reference stays the SFT model (no iterative GRPO), `kl_coef` defaults to 0 (no trust region);
4) outcome rewards only (no process supervision), a constant learning rate, no weight decay.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llm_core.model import GPT
from llm_core.preference.reward_model import ScalarHeadModel
from llm_core.rl.algorithm import Prompt, RLAlgorithm, Rollouts
from llm_core.rl.config import RlhfConfig
from llm_core.rl.rollout import masked_mean, token_logprobs
from llm_core.rl.verifiable_rewards import arithmetic_task, get_reward, gsm8k_task
from llm_core.tokenizer.base import Tokenizer


def group_advantages(rewards: torch.Tensor, group: int, eps: float = 1e-4) -> torch.Tensor:
    """(reward - group mean) / (group std + eps) for consecutive groups of `group` replies."""
    r = rewards.view(-1, group)
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + eps)).view(-1)


class Grpo(RLAlgorithm):
    reward_name = "verifiable reward (pass@1)"
    progress_metrics = ("reward", "kl")

    def __init__(
        self, cfg: RlhfConfig, policy: GPT, ref: GPT, tokenizer: Tokenizer, reward_model: ScalarHeadModel | None
    ):
        super().__init__(cfg, policy, ref, tokenizer, reward_model)
        self.cfg = cfg.grpo
        self.prompts_per_iteration = self.cfg.prompts_per_iteration
        self.reward_fn = get_reward(self.cfg.reward)
        self.opt = torch.optim.AdamW(policy.parameters(), lr=self.cfg.lr, weight_decay=0.0)

    @staticmethod
    def prompts(cfg: RlhfConfig, seed: int) -> list[Prompt]:
        g = cfg.grpo
        if g.task == "arithmetic":
            return arithmetic_task(cfg.task_size, seed, g.max_operand)
        if g.task == "gsm8k":
            return gsm8k_task(g.task_path, cfg.task_size)
        raise ValueError(f"rlhf.grpo.task must be arithmetic or gsm8k, not {g.task!r}")

    @staticmethod
    def data_paths(cfg: RlhfConfig) -> list[str]:
        return [cfg.grpo.task_path] if cfg.grpo.task == "gsm8k" else []

    def reward(self, rollouts: Rollouts) -> torch.Tensor:
        return torch.tensor([self.reward_fn(p, r, ref) for p, r, ref in
                             zip(rollouts.prompts, rollouts.replies, rollouts.references)], dtype=torch.float32)

    def step(self, prompts: Sequence[Prompt], seed: int) -> dict[str, float]:
        cfg, n, temp = self.cfg, self.cfg.samples_per_prompt, self.sampling.temperature
        rollouts = self.rollout(prompts, n, seed)
        batch, rewards = rollouts.batch, self.reward(rollouts)
        adv = group_advantages(rewards, n)
        with torch.no_grad():
            mask = batch.response_mask
            old_logp, _ = token_logprobs(self.policy, batch.ids, temp, mask, banned=self.banned)
            ref_logp = None
            if cfg.kl_coef > 0:
                ref_logp = token_logprobs(self.ref, batch.ids, temp, mask, banned=self.banned)[0]
        live = (rewards.view(-1, n).std(1) > 0).repeat_interleave(n).nonzero().flatten()
        stats: dict[str, list[float]] = {"loss": [], "kl": [], "clipfrac": [], "entropy": []}
        g = torch.Generator().manual_seed(seed)
        self.policy.train()
        for _ in range(cfg.epochs if len(live) else 0):
            order = live[torch.randperm(len(live), generator=g)]
            for s in range(0, len(order), cfg.minibatch_size):
                idx = order[s:s + cfg.minibatch_size]
                mb, m = batch.select(idx), batch.response_mask[idx]
                logp, entropy = token_logprobs(self.policy, mb.ids, temp, m, with_entropy=True, banned=self.banned)
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

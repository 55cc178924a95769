"""PPO against a learned reward model (RLHF), following "The N Implementation Details of RLHF with PPO" and TRL.

Per iteration: sample one reply per prompt from the policy; score it with the (normalised) reward model, minus
`missing_eos_penalty` when the reply never ended (that difference is PPO's reward; the reward model's score alone is
reported beside it, since a policy that learns to end its replies loses length the reward model likes); per-token
reward = `-kl_coef * (log pi - log pi_ref)` (k1) with
the score added on the last reply token; GAE with gamma = 1, lambda = 0.95 over the reply tokens; advantages
whitened; then `ppo_epochs` passes over shuffled mini-batches with the clipped policy loss and the clipped value
loss. The first `value_warmup` iterations train the value model alone (OpenRLHF's `freezing_actor_steps`). Optional
adaptive KL coefficient (Ziegler et al.): nudged towards `kl_target`. Prompts: real user prompts (`rlhf.prompts_path`,
the OpenAssistant prompt lottery), plus `keyword_prompts` generated sentence requests (`Use the word "river" in a
sentence.`): at tiny scale the reward model's preference on real prompts is mostly length, while the keyword
preference is one it learns, so only there does its score say something about the reply.

Simplifications against that recipe:
1) one reply per prompt and one rollout batch per iteration, sampled and scored in full precision;
2) the policy and the value model (a separate trunk + head initialised from the reward model) step together, from
   one backward pass of `pg_loss + vf_coef * vf_loss`, each with its own AdamW;
3) a constant learning rate, no weight decay, no entropy bonus, no reward clipping or whitening.

Sampling and log-probs use the same temperature. Logged per iteration, as TRL does: score, KL, entropy, clip
fraction, value loss, ratio mean and variance, reply length, share of replies that ended.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from llm_core.chat.loaders import load_prompts
from llm_core.model import GPT
from llm_core.preference.reward_model import ScalarHeadModel
from llm_core.rl.algorithm import Prompt, RLAlgorithm, Rollouts
from llm_core.rl.config import RlhfConfig
from llm_core.rl.rollout import (
    masked_mean,
    masked_whiten,
    token_logprobs,
)
from llm_core.rl.verifiable_rewards import keyword_task
from llm_core.tokenizer.base import Tokenizer


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Advantages and returns (B, T) by generalised advantage estimation over the masked (reply) positions."""
    T = rewards.size(1)
    adv = torch.zeros_like(rewards)
    next_adv = torch.zeros(rewards.size(0), device=rewards.device)
    next_value = torch.zeros(rewards.size(0), device=rewards.device)
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv[:, t] = (delta + gamma * lam * next_adv) * mask[:, t]
        next_adv, next_value = adv[:, t], values[:, t] * mask[:, t]
    return adv, adv + values


class Ppo(RLAlgorithm):
    reward_name = "the reward-model score less the missing-EOS penalty"
    progress_metrics = ("reward", "score", "kl")

    def __init__(
        self, cfg: RlhfConfig, policy: GPT, ref: GPT, tokenizer: Tokenizer, reward_model: ScalarHeadModel | None
    ):
        if reward_model is None:
            raise ValueError("rlhf.algorithm=ppo needs a reward model: the rlhf stage takes the reward stage's")
        super().__init__(cfg, policy, ref, tokenizer, reward_model)
        self.cfg = cfg.ppo
        self.prompts_per_iteration = self.cfg.prompts_per_iteration
        self.value = copy.deepcopy(reward_model)
        self.reward_model = reward_model.eval()
        self.value.requires_grad_(True)
        self.opt = torch.optim.AdamW(policy.parameters(), lr=self.cfg.lr, weight_decay=0.0)
        self.value_opt = torch.optim.AdamW(self.value.parameters(), lr=self.cfg.value_lr, weight_decay=0.0)
        self.kl_coef = self.cfg.kl_coef
        self.iteration = 0

    @staticmethod
    def prompts(cfg: RlhfConfig, seed: int) -> list[Prompt]:
        """The real prompts (no reference) and the keyword requests (the keyword as reference)."""
        return [(p, None) for p in load_prompts(cfg.prompts_path)] + list(keyword_task(cfg.ppo.keyword_prompts, seed))

    @staticmethod
    def prompt_kind(prompt: Prompt) -> str:
        return "keyword" if prompt[1] is not None else "chat"

    @staticmethod
    def data_paths(cfg: RlhfConfig) -> list[str]:
        return [cfg.prompts_path]

    def scores(self, rollouts: Rollouts) -> dict[str, torch.Tensor]:
        return {"score": self.reward_model(rollouts.batch.ids, rollouts.batch.lengths)}

    def reward(self, rollouts: Rollouts) -> torch.Tensor:
        return self.penalised(self.scores(rollouts)["score"], rollouts.batch.finished)

    def penalised(self, score: torch.Tensor, finished: torch.Tensor) -> torch.Tensor:
        """The reward-model score, less the missing-EOS penalty for a reply that never ended."""
        return score - self.cfg.missing_eos_penalty * (~finished).float()

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict(), "value": self.value.state_dict(),
                "value_opt": self.value_opt.state_dict(), "kl_coef": self.kl_coef, "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])
        self.value.load_state_dict(state["value"])
        self.value_opt.load_state_dict(state["value_opt"])
        self.kl_coef = float(state["kl_coef"])
        self.iteration = int(state["iteration"])

    @torch.no_grad()
    def experience(self, prompts: Sequence[Prompt], seed: int) -> tuple[Rollouts, dict[str, torch.Tensor]]:
        """One reply per prompt, with what the updates need: old log-probs, values, advantages, returns, rewards
        (`scores`, as TRL names them) and the reward model's score alone."""
        rollouts = self.rollout(prompts, 1, seed)
        batch, temp = rollouts.batch, self.sampling.temperature
        logp, _ = token_logprobs(self.policy, batch.ids, temp, batch.response_mask, banned=self.banned)
        ref_logp, _ = token_logprobs(self.ref, batch.ids, temp, batch.response_mask, banned=self.banned)
        values = self.value.per_token(batch.ids)[:, :-1]
        score = self.scores(rollouts)["score"]
        scores = self.penalised(score, batch.finished)
        m = batch.response_mask
        kl = (logp - ref_logp) * m
        rewards = -self.kl_coef * kl
        last = (batch.lengths - 2).unsqueeze(1)
        rewards = rewards.scatter_add(1, last, scores.unsqueeze(1))
        values = values * m
        adv, returns = gae(rewards, values, m, self.cfg.gamma, self.cfg.lam)
        adv = masked_whiten(adv, m)
        data = {"logp": logp, "values": values, "adv": adv, "returns": returns, "scores": scores, "kl": kl.sum(1),
                "score": score}
        return rollouts, data

    def step(self, prompts: Sequence[Prompt], seed: int) -> dict[str, float]:
        rollouts, data = self.experience(prompts, seed)
        batch, cfg, temp = rollouts.batch, self.cfg, self.sampling.temperature
        stats: dict[str, list[float]] = {k: [] for k in ("pg_loss", "vf_loss", "clipfrac", "vf_clipfrac", "entropy",
                                                          "ratio_mean", "ratio_var", "approx_kl")}
        g = torch.Generator().manual_seed(seed)
        train_policy = self.iteration >= cfg.value_warmup
        self.policy.train()
        self.value.train()
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(batch.ids.size(0), generator=g)
            for s in range(0, len(order), cfg.minibatch_size):
                rows = order[s:s + cfg.minibatch_size]
                mb, m = batch.select(rows), batch.response_mask[rows]
                logp, entropy = token_logprobs(self.policy, mb.ids, temp, m, with_entropy=True, banned=self.banned)
                ratio = torch.exp(logp - data["logp"][rows])
                adv = data["adv"][rows]
                pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.cliprange, 1 + cfg.cliprange))
                pg_loss = masked_mean(pg, m)
                vpred = self.value.per_token(mb.ids)[:, :-1]
                old_v, ret = data["values"][rows], data["returns"][rows]
                v_clipped = old_v + (vpred - old_v).clamp(-cfg.cliprange_value, cfg.cliprange_value)
                vf = torch.max((vpred - ret) ** 2, (v_clipped - ret) ** 2)
                vf_loss = 0.5 * masked_mean(vf, m)
                self.opt.zero_grad(set_to_none=True)
                self.value_opt.zero_grad(set_to_none=True)
                ((pg_loss if train_policy else 0.0) + cfg.vf_coef * vf_loss).backward()
                if train_policy:
                    torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                    self.opt.step()
                torch.nn.utils.clip_grad_norm_(self.value.parameters(), cfg.max_grad_norm)
                self.value_opt.step()
                with torch.no_grad():
                    r = ratio[m.bool()]
                    stats["pg_loss"].append(float(pg_loss))
                    stats["vf_loss"].append(float(vf_loss))
                    stats["clipfrac"].append(float(masked_mean(((ratio - 1).abs() > cfg.cliprange).float(), m)))
                    stats["vf_clipfrac"].append(float(masked_mean(((vpred - old_v).abs() > cfg.cliprange_value)
                                                                  .float(), m)))
                    stats["entropy"].append(float(masked_mean(entropy, m)))
                    stats["ratio_mean"].append(float(r.mean()))
                    stats["ratio_var"].append(float(r.var()) if r.numel() > 1 else 0.0)
                    stats["approx_kl"].append(float(masked_mean(0.5 * (logp - data["logp"][rows]) ** 2, m)))
        mean_kl = float(data["kl"].mean())
        out = {k: sum(v) / len(v) for k, v in stats.items()}
        self.iteration += 1
        out.update(reward=float(data["scores"].mean()), score=float(data["score"].mean()), kl=mean_kl,
                   objective=float((data["scores"] - self.kl_coef * data["kl"]).mean()), kl_coef=self.kl_coef,
                   policy_trained=float(train_policy),
                   length=float(batch.response_mask.sum(1).mean()), finished=float(batch.finished.float().mean()))
        if cfg.adaptive_kl:
            error = max(-0.2, min(0.2, mean_kl / cfg.kl_target - 1))
            self.kl_coef *= 1 + error * len(prompts) / cfg.kl_horizon
        return out

"""PPO for RLHF against a reward model, following "The N Implementation Details of RLHF with PPO" and TRL.

Per iteration: sample one reply per prompt from the policy; score it with the (normalised) reward model, minus
`missing_eos_penalty` when the reply never ended; per-token reward = `-kl_coef * (log pi - log pi_ref)` (k1) with
the score added on the last reply token; GAE with gamma = 1, lambda = 0.95 over the reply tokens; advantages
whitened; then `ppo_epochs` passes over shuffled mini-batches with the clipped policy loss and the clipped value
loss. Optional adaptive KL coefficient (Ziegler et al.): nudged towards `kl_target`.

The value model is a separate trunk + head initialised from the reward model. Sampling and log-probs use the same
temperature. Logged per iteration, as TRL does: score, KL, entropy, clip fraction, value loss, ratio mean and
variance, reply length, share of replies that ended.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field

from llm_core.chat.engine import Engine, SamplingParams
from llm_core.config import StrictModel
from llm_core.model import GPT
from llm_core.post.reward_model import ScalarHeadModel
from llm_core.post.rollout import (
    RolloutBatch,
    make_batch,
    masked_mean,
    masked_whiten,
    token_logprobs,
)


class PpoConfig(StrictModel):
    prompts_per_iteration: int = Field(16, ge=1)
    minibatch_size: int = Field(8, ge=1)
    ppo_epochs: int = Field(2, ge=1)
    lr: float = Field(1e-5, gt=0)
    value_lr: float = Field(1e-4, gt=0)
    kl_coef: float = Field(0.05, ge=0)
    adaptive_kl: bool = False
    kl_target: float = Field(6.0, gt=0, description="adaptive KL: target KL per reply (nats)")
    kl_horizon: int = Field(10000, ge=1, description="adaptive KL: horizon in replies")
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    cliprange: float = Field(0.2, gt=0)
    cliprange_value: float = Field(0.2, gt=0)
    vf_coef: float = Field(0.1, ge=0)
    missing_eos_penalty: float = Field(1.0, ge=0, description="subtracted from the score of a reply that never ends")
    max_grad_norm: float = Field(1.0, gt=0)


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


class PpoTrainer:
    """One PPO iteration at a time (`step`), so the caller can checkpoint between iterations."""

    def __init__(
        self, policy: GPT, ref: GPT, value: ScalarHeadModel, reward_model: ScalarHeadModel, engine: Engine,
        cfg: PpoConfig, sampling: SamplingParams, pad_id: int,
    ):
        self.policy, self.ref, self.value, self.reward_model = policy, ref, value, reward_model
        self.engine, self.cfg, self.sampling, self.pad_id = engine, cfg, sampling, pad_id
        ref.eval()
        reward_model.eval()
        policy.requires_grad_(True)
        value.requires_grad_(True)
        self.opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.value_opt = torch.optim.AdamW(value.parameters(), lr=cfg.value_lr, weight_decay=0.0)
        self.kl_coef = cfg.kl_coef

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict(), "value_opt": self.value_opt.state_dict(), "kl_coef": self.kl_coef}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])
        self.value_opt.load_state_dict(state["value_opt"])
        self.kl_coef = float(state["kl_coef"])

    @torch.no_grad()
    def rollout(self, prompts: Sequence[Sequence[int]], seed: int) -> tuple[RolloutBatch, dict[str, torch.Tensor]]:
        completions = [c[0] for c in self.engine.generate(prompts, self.sampling, n=1, seed=seed)]
        batch = make_batch(prompts, completions, self.pad_id)
        temp = self.sampling.temperature
        logp, _ = token_logprobs(self.policy, batch.ids, temp)
        ref_logp, _ = token_logprobs(self.ref, batch.ids, temp)
        values = self.value.per_token(batch.ids)[:, :-1]
        scores = self.reward_model(batch.ids, batch.lengths)
        scores = scores - self.cfg.missing_eos_penalty * (~batch.finished).float()
        m = batch.response_mask
        kl = (logp - ref_logp) * m
        rewards = -self.kl_coef * kl
        last = (batch.lengths - 2).unsqueeze(1)
        rewards = rewards.scatter_add(1, last, scores.unsqueeze(1))
        values = values * m
        adv, returns = gae(rewards, values, m, self.cfg.gamma, self.cfg.lam)
        adv = masked_whiten(adv, m)
        data = {"logp": logp, "values": values, "adv": adv, "returns": returns, "scores": scores, "kl": kl.sum(1)}
        return batch, data

    def step(self, prompts: Sequence[Sequence[int]], seed: int) -> dict[str, float]:
        batch, data = self.rollout(prompts, seed)
        cfg, temp = self.cfg, self.sampling.temperature
        stats: dict[str, list[float]] = {k: [] for k in ("pg_loss", "vf_loss", "clipfrac", "vf_clipfrac", "entropy",
                                                          "ratio_mean", "ratio_var", "approx_kl")}
        g = torch.Generator().manual_seed(seed)
        self.policy.train()
        self.value.train()
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(batch.ids.size(0), generator=g)
            for s in range(0, len(order), cfg.minibatch_size):
                rows = order[s:s + cfg.minibatch_size]
                mb, m = batch.select(rows), batch.response_mask[rows]
                logp, entropy = token_logprobs(self.policy, mb.ids, temp, with_entropy=True)
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
                (pg_loss + cfg.vf_coef * vf_loss).backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                torch.nn.utils.clip_grad_norm_(self.value.parameters(), cfg.max_grad_norm)
                self.opt.step()
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
        out.update(score=float(data["scores"].mean()), kl=mean_kl, kl_coef=self.kl_coef,
                   length=float(batch.response_mask.sum(1).mean()), finished=float(batch.finished.float().mean()))
        if cfg.adaptive_kl:
            error = max(-0.2, min(0.2, mean_kl / cfg.kl_target - 1))
            self.kl_coef *= 1 + error * len(prompts) / cfg.kl_horizon
        return out

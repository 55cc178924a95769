"""What PPO and GRPO share: sampled rollouts as padded tensors, and per-token log-probs at a temperature.

A rollout row is `prompt + response` right-padded; `response_mask[b, t]` marks the positions whose *next* token is a
response token, so `logprobs[b, t] = log p(ids[b, t+1] | ids[b, :t+1])` lines up with values read at the same
position. Log-probs divide the logits by the sampling temperature, the same as the engine did when sampling (a
mismatch silently biases the policy ratio).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llm_core.chat.engine import Completion
from llm_core.model import GPT, scatter_at


@dataclass
class RolloutBatch:
    ids: torch.Tensor  # (B, T) prompt + response, right-padded
    response_mask: torch.Tensor  # (B, T-1) float, 1 where the next token is a response token
    lengths: torch.Tensor  # (B,) real length of each row
    finished: torch.Tensor  # (B,) bool, the response ended with <|im_end|>

    def to(self, device: torch.device) -> RolloutBatch:
        return RolloutBatch(*(t.to(device) for t in (self.ids, self.response_mask, self.lengths, self.finished)))

    def select(self, rows: torch.Tensor) -> RolloutBatch:
        return RolloutBatch(self.ids[rows], self.response_mask[rows], self.lengths[rows], self.finished[rows])


def make_batch(prompts: Sequence[Sequence[int]], completions: Sequence[Completion], pad_id: int) -> RolloutBatch:
    rows = [list(p) + list(c.ids) for p, c in zip(prompts, completions)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width - 1))
    for i, (p, r) in enumerate(zip(prompts, rows)):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, len(p) - 1 : len(r) - 1] = 1.0
    lengths = torch.tensor([len(r) for r in rows])
    finished = torch.tensor([c.finished for c in completions])
    return RolloutBatch(ids, mask, lengths, finished)


def token_logprobs(
    model: GPT, ids: torch.Tensor, temperature: float, where: torch.Tensor, with_entropy: bool = False,
    banned: Sequence[int] = (),
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (B, T-1) of each next token at `temperature`, and optionally the entropies of those distributions,
    at the positions `where` (B, T-1) marks (a rollout's `response_mask`), 0 elsewhere: the LM head and softmax run
    only there, not over the prompt.

    `banned` ids get no probability, as when the rollout sampled them (`Engine.never_sampled`): the log-probs are
    then those of the distribution the replies were drawn from."""
    keep = where.bool()
    logits = model.logits_where(ids[:, :-1], keep) / max(temperature, 1e-6)
    if banned:
        logits[:, list(banned)] = float("-inf")
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = scatter_at(keep, logp_all.gather(-1, ids[:, 1:][keep].unsqueeze(-1)).squeeze(-1))
    entropy = None
    if with_entropy:
        terms = logp_all.exp() * logp_all
        entropy = scatter_at(keep, -(terms.nan_to_num(0.0) if banned else terms).sum(-1))  # 0 * -inf counts 0
    return logp, entropy


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp_min(1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp_min(1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return out if shift_mean else out + mean

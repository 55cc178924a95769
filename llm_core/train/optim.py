"""AdamW with decoupled weight-decay groups, and the learning-rate schedules (warmup + cosine, warmup-stable-decay).

Weight decay applies to matrices (linear weights, embeddings) and not to norm gains, as in nanoGPT.
A schedule is a pure function of the step, so a resumed run needs no schedule state beyond the step number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn


def build_adamw(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], device_type: str
) -> torch.optim.AdamW:
    """AdamW over two groups (decay: weights of linear layers and embeddings; no decay: the rest, i.e. norm gains);
    fused kernels on CPU and CUDA."""
    matrices = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Linear, nn.Embedding))}
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if id(p) in matrices]
    no_decay = [p for p in params if id(p) not in matrices]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = device_type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)


@dataclass(frozen=True)
class LRSchedule:
    """Learning rate at a step: linear warmup to `max_lr`, then either
    - `cosine`: cosine decay to `min_lr` at `decay_steps`, flat after (nanoGPT), or
    - `wsd`: flat at `max_lr`, then linear decay to `min_lr` over the last `wsd_decay_fraction` of `total_steps`."""

    max_lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int
    kind: Literal["cosine", "wsd"] = "cosine"
    decay_steps: int | None = None  # cosine: the step where min_lr is reached (default total_steps)
    wsd_decay_fraction: float = 0.2

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.max_lr * (step + 1) / (self.warmup_steps + 1)
        if self.kind == "wsd":
            decay_start = self.total_steps - int(self.wsd_decay_fraction * self.total_steps)
            if step < decay_start:
                return self.max_lr
            frac = min(1.0, (step - decay_start) / max(1, self.total_steps - decay_start))
            return self.max_lr + frac * (self.min_lr - self.max_lr)
        end = self.decay_steps or self.total_steps
        if step >= end:
            return self.min_lr
        frac = (step - self.warmup_steps) / max(1, end - self.warmup_steps)
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * frac)) * (self.max_lr - self.min_lr)

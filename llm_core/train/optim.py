"""The optimizer of every training stage: its config section (`OptimSection`), AdamW with decoupled weight-decay
groups, and the learning-rate schedules (warmup + cosine, warmup-stable-decay).

Weight decay applies to matrices (linear weights, embeddings) and not to norm gains, as in nanoGPT.
A schedule is a pure function of the step, so a resumed run needs no schedule state beyond the step number.
`build_optimizer` turns a stage's `optim` section into the AdamW and the schedule the training loop runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
from pydantic import Field

from llm_core.config import StrictModel


class OptimSection(StrictModel):
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-4, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="0 = no clipping")
    schedule: Literal["cosine", "wsd"] = "cosine"
    warmup_steps: int = Field(100, ge=0)
    decay_steps: int | None = Field(None, ge=1, description="cosine: step where min_lr is reached (default: max_steps)")
    wsd_decay_fraction: float = Field(0.2, gt=0, le=1, description="wsd: share of steps spent decaying")


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


def build_optimizer(
    model: nn.Module, optim: OptimSection, max_steps: int, device_type: str
) -> tuple[torch.optim.AdamW, LRSchedule]:
    """The AdamW and the learning-rate schedule over `max_steps` steps that an `optim` section describes."""
    optimizer = build_adamw(model, optim.lr, optim.weight_decay, (optim.beta1, optim.beta2), device_type)
    schedule = LRSchedule(optim.lr, optim.min_lr, optim.warmup_steps, max_steps, optim.schedule, optim.decay_steps,
                          optim.wsd_decay_fraction)
    return optimizer, schedule

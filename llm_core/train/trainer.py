"""A generic training loop for a GPT: batches in, loss out, with the mechanics every training stage needs.

The loop knows nothing of what it trains on. A caller gives it:

- a batch source: `batch(step, micro_step)` for this rank, plus `state_dict()` / `load_state_dict()` for whatever
  position it must remember across a restart (random windows remember nothing: they are a function of the step);
- a loss function `loss_fn(model, batch) -> scalar loss` (pretraining: next-token cross-entropy; SFT: the same on
  assistant tokens only; a reward model: a pairwise loss on its head);
- an `optim` section (`OptimSection`): the AdamW, its learning-rate schedule (a pure function of the step) and
  gradient clipping, as every training stage configures them;
- optionally an `evaluate(model, step) -> metrics` hook, a `CheckpointStore`, and a progress callback.

It does gradient accumulation (no gradient all-reduce until the last micro-step under DDP), gradient clipping,
bf16 autocast on CUDA (fp32 on CPU), optional `torch.compile`, DDP when the process group is up, evaluation and
checkpoints every N steps, and resume: `fit()` starts from the newest checkpoint if there is one and continues the
same loss curve. Random numbers (dropout) are reseeded from (seed, rank, step) at every step, so a resumed run draws
the numbers the uninterrupted run drew without saving generator state.

Only rank 0 evaluates, logs, and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from llm_core.model import GPT
from llm_core.train.checkpoint import CheckpointStore
from llm_core.train.distributed import DistEnv, all_reduce_mean
from llm_core.train.optim import OptimSection, build_optimizer

log = logging.getLogger("llm_core.train")


class BatchSource(Protocol):
    def batch(self, step: int, micro_step: int) -> Any: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


LossFn = Callable[[nn.Module, Any], torch.Tensor]
EvalFn = Callable[[GPT, int], dict[str, float]]
ProgressFn = Callable[[int, int, dict[str, float]], None]


@dataclass
class LoopSettings:
    max_steps: int
    grad_accum: int = 1
    eval_every: int = 0  # 0: evaluate only at the end
    checkpoint_every: int = 0  # 0: only at the end (when a CheckpointStore is given)
    log_every: int = 10
    seed: int = 0
    tokens_per_step: int = 0  # global tokens per optimizer step, for throughput (0: not reported)
    compile: bool = False
    bf16: bool = True  # autocast to bfloat16 on CUDA; CPU always trains in fp32


@dataclass
class TrainHistory:
    """What the loop recorded: `train` rows {step, loss, lr, tokens_per_s} every `log_every` steps, `evals` rows
    {step, **metrics}. Kept in checkpoints, so a resumed run continues the same curve."""

    train: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)

    def tokens_per_s(self) -> float:
        """Mean training throughput over logged intervals, leaving out the first (warm-up, compilation)."""
        rows = [r for r in self.train if r.get("tokens_per_s")]
        rows = rows[1:] if len(rows) > 1 else rows
        return sum(r["tokens_per_s"] for r in rows) / len(rows) if rows else 0.0


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a batch onto the device; to CUDA through pinned memory, so the copy overlaps the running step."""
    if isinstance(batch, torch.Tensor):
        if device.type == "cuda" and not batch.is_pinned():
            batch = batch.pin_memory()
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def step_seed(seed: int, rank: int, step: int) -> int:
    return ((seed * 1_000_003 + step) * 1_009 + rank) % (2**63)


def seed_step_rng(seed: int, device: torch.device) -> None:
    """Seed the generators a training step draws from (dropout): the CPU's, and the device's own. The same state as
    `torch.manual_seed(seed)` gives them, at about 1 us instead of about 100: that also visits every other backend."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


class Trainer:
    def __init__(
        self,
        model: GPT,
        optim: OptimSection,
        batches: BatchSource,
        loss_fn: LossFn,
        settings: LoopSettings,
        env: DistEnv,
        checkpoints: CheckpointStore | None = None,
        evaluate: EvalFn | None = None,
        on_progress: ProgressFn | None = None,
    ):
        self.model, self.grad_clip = model, optim.grad_clip
        self.optimizer, self.schedule = build_optimizer(model, optim, settings.max_steps, env.device.type)
        self.batches, self.loss_fn, self.settings, self.env = batches, loss_fn, settings, env
        self.checkpoints, self.evaluate, self.on_progress = checkpoints, evaluate, on_progress
        self.history = TrainHistory()
        self.step = 0
        train_model: nn.Module = torch.compile(model) if settings.compile else model
        if env.is_distributed:
            train_model = DDP(train_model, device_ids=[env.local_rank] if env.device.type == "cuda" else None)
        self.train_model = train_model

    # -- checkpoint state
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "batches": self.batches.state_dict(),
            "history": {"train": self.history.train, "evals": self.history.evals},
        }

    def restore(self) -> bool:
        """Load the newest checkpoint if there is one (every rank loads it); True if resumed."""
        if self.checkpoints is None:
            return False
        state = self.checkpoints.load_latest(self.model, self.env.device)
        if state is None:
            return False
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.batches.load_state_dict(state["batches"])
        self.history = TrainHistory(train=list(state["history"]["train"]), evals=list(state["history"]["evals"]))
        log.info("resumed from the checkpoint at step %d", self.step)
        return True

    def save_checkpoint(self) -> None:
        if self.checkpoints is not None and self.env.is_main:
            self.checkpoints.save(self.step, self.model, self.state())

    # -- the loop
    def autocast(self) -> contextlib.AbstractContextManager:
        if self.env.device.type == "cuda" and self.settings.bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self) -> torch.Tensor:
        """One optimizer step over `grad_accum` micro-batches; returns the mean loss (a tensor on the device)."""
        s = self.settings
        seed_step_rng(step_seed(s.seed, self.env.rank, self.step), self.env.device)
        lr = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.env.device)
        for micro in range(s.grad_accum):
            batch = to_device(self.batches.batch(self.step, micro), self.env.device)
            last = micro == s.grad_accum - 1
            sync = contextlib.nullcontext() if last or not self.env.is_distributed else self.train_model.no_sync()
            with sync:
                with self.autocast():
                    loss = self.loss_fn(self.train_model, batch)
                    if s.grad_accum > 1:
                        loss = loss / s.grad_accum
                loss.backward()
            total += loss.detach()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total

    def run_eval(self) -> None:
        if self.evaluate is None or not self.env.is_main:
            return
        self.model.eval()
        with torch.no_grad(), self.autocast():
            metrics = self.evaluate(self.model, self.step)
        self.model.train()
        self.history.evals.append({"step": self.step, **metrics})
        log.info("step %d: %s", self.step, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

    def fit(self) -> TrainHistory:
        s = self.settings
        self.restore()
        self.model.train()
        interval_start, interval_steps, excluded = time.perf_counter(), 0, 0.0
        running = torch.zeros((), device=self.env.device)
        while self.step < s.max_steps:
            running += self.train_step()
            interval_steps += 1
            step, done = self.step, self.step == s.max_steps
            if step % s.log_every == 0 or done:
                loss = all_reduce_mean(running / interval_steps, self.env).item()  # syncs the device
                seconds = time.perf_counter() - interval_start - excluded
                row = {"step": step, "loss": loss, "lr": self.schedule(step - 1)}
                if s.tokens_per_step:
                    row["tokens_per_s"] = interval_steps * s.tokens_per_step / seconds
                self.history.train.append(row)
                if self.on_progress is not None and self.env.is_main:
                    self.on_progress(step, s.max_steps, {"loss": loss})
                interval_start, interval_steps, excluded = time.perf_counter(), 0, 0.0
                running.zero_()
            paused = time.perf_counter()
            if (s.eval_every and step % s.eval_every == 0) or done:
                self.run_eval()
            if (s.checkpoint_every and step % s.checkpoint_every == 0) or done:
                self.save_checkpoint()
            excluded += time.perf_counter() - paused
        return self.history

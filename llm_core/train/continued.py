"""Continued pretraining on a refresh: start from the corpus's champion base model, re-warm and re-decay the
learning rate, and mix a replay fraction of the corpus's older tokens into every batch.

The recipe of Ibrahim et al. (2024, "Simple and Scalable Strategies to Continually Pre-train Large Language
Models"): keep the tokenizer, warm the learning rate up again and decay it again over the new run, and replay some
old data so the model does not forget it. Their figures: 5% replay suffices for a weak distribution shift, 25% for a
strong one; the default here (`pretrain.replay`) is 25% because the first snapshot of a corpus also carries the
curated text (plays, Wikipedia, Chinese poetry) that later snapshots never bring again, a strong shift for it.

The optimizer state is not carried over: a committed model artifact keeps the weights, not AdamW's moments (its
checkpoints are removed at the commit), and with the learning rate re-warmed from near zero the moments are
re-estimated within the warm-up, which is what the paper's re-warming assumes anyway.

The step counter and the loss curve continue: the run starts at the base's last step, with its history, and trains
`continue_steps` more; the schedule runs over those steps only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llm_core.manifest import parse_ref
from llm_core.store import ArtifactReader
from llm_core.tokenizer import TokenShards
from llm_core.train.data import TokenWindows
from llm_core.train.model_files import load_gpt
from llm_core.train.optim import LRSchedule, OptimSection
from llm_core.train.trainer import Trainer, TrainHistory


@dataclass(frozen=True)
class ShiftedSchedule:
    """A schedule over the continued steps only: step `offset + i` gets the inner schedule's step `i`."""

    inner: LRSchedule
    offset: int

    def __call__(self, step: int) -> float:
        return self.inner(step - self.offset)


@dataclass
class BaseModel:
    """The model a continued run starts from: its weights' reader, its last step and its training history."""

    reader: ArtifactReader
    steps: int
    history: TrainHistory

    @classmethod
    def of(cls, reader: ArtifactReader) -> BaseModel:
        recorded = reader.read_json("history.json")
        return cls(reader, int(reader.manifest.counts.get("steps", 0)),
                   TrainHistory(train=list(recorded["train"]), evals=list(recorded["evals"])))

    def load(self, device: torch.device):
        return load_gpt(self.reader, device=device)


def continue_trainer(trainer: Trainer, base: BaseModel, optim: OptimSection, continue_steps: int) -> None:
    """Set a fresh trainer (built over `base.steps + continue_steps` steps, on the base's weights) to go on from the
    base: its step counter, its history, and the re-warmed schedule. A checkpoint of this run, if any, overrides all
    of it when `fit` restores."""
    trainer.step = base.steps
    trainer.history = TrainHistory(train=list(base.history.train), evals=list(base.history.evals))
    trainer.schedule = ShiftedSchedule(
        LRSchedule(optim.lr, optim.min_lr, optim.warmup_steps, continue_steps, optim.schedule, None,
                   optim.wsd_decay_fraction), base.steps)


def corpus_token_shards(corpus: ArtifactReader, earlier_only: bool = True) -> list[TokenShards]:
    """The token shards of the corpus's snapshots (without the newest, this night's, when `earlier_only`)."""
    store = corpus.store
    snapshots = corpus.read_json("corpus.json")["snapshots"]
    if earlier_only:
        snapshots = snapshots[:-1]
    return [TokenShards(store.reader(store.ref(*parse_ref(s["tokens"])))) for s in snapshots]


def corpus_windows(corpus: ArtifactReader, block_size: int) -> TokenWindows | None:
    """Training windows over every earlier snapshot's train shards (the replay), or None when there are none."""
    openers, lengths = [], []
    for shards in corpus_token_shards(corpus):
        for name in shards.files("train"):
            openers.append(lambda s=shards, n=name: s.memmap(n))
            lengths.append(len(shards.memmap(name)))
    if sum(max(0, n - block_size) for n in lengths) == 0:
        return None
    return TokenWindows(openers, lengths, block_size)

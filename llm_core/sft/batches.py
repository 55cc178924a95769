"""SFT examples as padded batches with loss masks.

Each conversation is rendered with the chat template (loss only on assistant content and its `<|im_end|>`) and
becomes one row; rows of a batch are right-padded to the longest, the padding has no loss. One conversation per row
means no attention crosses conversations, without a block-diagonal mask (which the model does not take). Batches
are drawn from length buckets so little compute goes to padding.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from llm_core.chat.template import Message, Rendered, render_conversation
from llm_core.model import IGNORE_INDEX
from llm_core.tokenizer.base import Tokenizer


@dataclass
class EncodedSet:
    examples: list[Rendered]
    truncated: int  # conversations cut to the context length
    no_target: int  # conversations dropped: nothing to learn within the context (no assistant token kept)


def encode_conversations(tokenizer: Tokenizer, conversations: Iterable[list[Message]], block_size: int) -> EncodedSet:
    """Render conversations, cutting each to `block_size + 1` tokens (inputs and shifted targets)."""
    examples, truncated, no_target = [], 0, 0
    for messages in conversations:
        r = render_conversation(tokenizer, messages)
        if len(r) > block_size + 1:
            r = Rendered(r.ids[: block_size + 1], r.mask[: block_size + 1])
            truncated += 1
        if not any(r.mask[1:]):
            no_target += 1
            continue
        examples.append(r)
    return EncodedSet(examples, truncated, no_target)


def collate(examples: list[Rendered], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of shape (B, T): targets are IGNORE_INDEX where the mask is 0 or on padding."""
    width = max(len(e) for e in examples) - 1
    x = torch.full((len(examples), width), pad_id, dtype=torch.long)
    y = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for i, e in enumerate(examples):
        ids, mask = torch.tensor(e.ids), torch.tensor(e.mask, dtype=torch.bool)
        n = len(e) - 1
        x[i, :n] = ids[:-1]
        y[i, :n] = ids[1:].masked_fill(~mask[1:], IGNORE_INDEX)
    return x, y


def batch_order(lengths: list[int], batch_size: int, rng: random.Random, bucket_batches: int = 16) -> list[list[int]]:
    """Indices grouped into batches of similar length: shuffle, sort within chunks of `bucket_batches` batches,
    cut into batches, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * bucket_batches
    batches = []
    for s in range(0, len(order), chunk):
        part = sorted(order[s:s + chunk], key=lambda i: lengths[i])
        batches += [part[b:b + batch_size] for b in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


class LengthBucketBatches:
    """The training loop's batch source: batch `(step, micro_step)` is a pure function of the seed and the step
    (epoch e is ordered with seed + e), so a resumed run needs no saved position. `make` builds a batch from item
    indices (padding and masks)."""

    def __init__(
        self, lengths: list[int], batch_size: int, seed: int, make: Callable[[list[int]], Any], grad_accum: int = 1
    ):
        assert lengths, "no training examples"
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.make, self.grad_accum = make, grad_accum
        self.per_epoch = -(-len(lengths) // batch_size)  # batch_order's chunks are whole batches: one short batch
        self._epoch, self._order = -1, []  # only the current epoch's order is kept: each costs a shuffle of all items

    def order(self, epoch: int) -> list[list[int]]:
        if epoch != self._epoch:
            rng = random.Random(self.seed + epoch)
            self._epoch, self._order = epoch, batch_order(self.lengths, self.batch_size, rng)
        return self._order

    def batch(self, step: int, micro_step: int) -> Any:
        epoch, i = divmod(step * self.grad_accum + micro_step, self.per_epoch)
        return self.make(self.order(epoch)[i])

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def conversation_batches(
    examples: list[Rendered], batch_size: int, pad_id: int, seed: int, grad_accum: int = 1
) -> LengthBucketBatches:
    return LengthBucketBatches([len(e) for e in examples], batch_size, seed,
                               lambda idx: collate([examples[i] for i in idx], pad_id), grad_accum)

"""Language-model evaluation during pretraining: validation loss, bits per byte, sampled continuations.

- Validation loss: mean next-token cross-entropy (nats) over fixed, non-overlapping windows of the val stream.
- Bits per byte: the same predictions' total loss, leaving out special-token targets (`<|endoftext|>`), in bits,
  divided by the UTF-8 bytes those targets decode to. It compares models with different tokenizers (nanochat does
  the same); the bytes are counted once, by decoding the evaluated tokens.
- Unigram baseline: the entropy of the train stream's token frequencies, i.e. the loss of a model that ignores
  context; a trained model must get clearly below it.
- Samples: continuations of fixed prompts with a fixed generator seed, so runs can be compared by eye (they stop
  at `<|endoftext|>`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from llm_core.model import GPT
from llm_core.train.data import eval_windows, iter_eval_batches


class LMEvaluator:
    def __init__(
        self,
        val_tokens: np.ndarray,
        block_size: int,
        max_tokens: int,
        batch_size: int,
        special_ids: Sequence[int],
        decode: Callable[[list[int]], str],
        prompts: Sequence[list[int]] = (),
        sample_tokens: int = 0,
        stop_token: int | None = None,
        seed: int = 0,
    ):
        self.tokens, self.block_size, self.batch_size = val_tokens, block_size, batch_size
        self.starts = eval_windows(val_tokens, block_size, max_tokens)
        self.special = torch.tensor(sorted(special_ids), dtype=torch.long)
        self.decode, self.prompts, self.sample_tokens = decode, list(prompts), sample_tokens
        self.stop_token, self.seed = stop_token, seed
        targets = val_tokens[1:len(self.starts) * block_size + 1].astype(np.int64)
        specials = set(special_ids)
        ordinary = [int(t) for t in targets if int(t) not in specials]
        self.num_targets = len(targets)
        self.num_bytes = len(decode(ordinary).encode("utf-8"))
        self.samples: list[dict] = []  # the latest evaluation's continuations

    def __call__(self, model: GPT, step: int) -> dict[str, float]:
        device = next(model.parameters()).device
        special = self.special.to(device)
        nats = torch.zeros((), dtype=torch.float64, device=device)
        ordinary_nats = torch.zeros((), dtype=torch.float64, device=device)
        for x, y in iter_eval_batches(self.tokens, self.starts, self.block_size, self.batch_size):
            x, y = x.to(device), y.to(device)
            losses = model.token_losses(x, y)
            nats += losses.sum().double()
            ordinary_nats += losses[~torch.isin(y, special)].sum().double()
        metrics = {
            "val_loss": nats.item() / self.num_targets,
            "val_bpb": ordinary_nats.item() / math.log(2) / max(1, self.num_bytes),
        }
        self.samples = self.sample(model, step)
        return metrics

    def sample(self, model: GPT, step: int) -> list[dict]:
        if not self.prompts or not self.sample_tokens:
            return []
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(self.seed)
        out = []
        for prompt in self.prompts:
            idx = torch.tensor([prompt], dtype=torch.long, device=device)
            ids = model.generate(idx, self.sample_tokens, temperature=0.8, top_k=50, generator=generator,
                                 stop_token=self.stop_token)
            out.append({"step": step, "prompt": self.decode(prompt),
                        "continuation": self.decode(ids[0, len(prompt):].tolist())})
        return out


def unigram_entropy(tokens: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats per token) of the token frequencies of a stream."""
    counts = np.bincount(tokens.astype(np.int64), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())

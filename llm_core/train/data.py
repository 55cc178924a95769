"""Batches of token windows from token shards (flat uint16/uint32 arrays, memory-mapped).

Training batches are random windows of `block_size + 1` tokens (inputs and next-token targets), as nanoGPT samples
them. The windows of a step are a pure function of (seed, step): the whole step's global batch is drawn from one
generator, and each (rank, micro-step) takes its own slice of it. So:

- resuming at step N needs no data-loader state: step N draws the same windows as in the uninterrupted run;
- a 2-process run sees, summed over ranks, exactly the windows a 1-process run with twice the gradient
  accumulation sees (per-rank sharding without a sampler object to keep in sync).

Validation uses fixed, non-overlapping windows from the start of the val stream, so every evaluation scores the
same tokens and bits per byte can be computed against the bytes of exactly those tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

ShardOpener = Callable[[], np.ndarray]  # returns the shard's tokens (a fresh np.memmap: cheap, nothing held open)


class TokenWindows:
    """Windows of `block_size + 1` consecutive tokens over a list of shards (a window never crosses shards)."""

    def __init__(self, shards: list[ShardOpener], lengths: list[int], block_size: int):
        self.shards, self.block_size = shards, block_size
        starts_per_shard = [max(0, n - block_size) for n in lengths]  # valid window starts in each shard
        assert sum(starts_per_shard) > 0, (
            f"no shard holds a window of {block_size + 1} tokens (shard lengths {lengths}): use a smaller "
            "block_size or more data")
        self.lengths = lengths
        self._cum = np.cumsum([0, *starts_per_shard])

    @classmethod
    def from_arrays(cls, arrays: list[np.ndarray], block_size: int) -> TokenWindows:
        return cls([lambda a=a: a for a in arrays], [len(a) for a in arrays], block_size)

    @property
    def num_windows(self) -> int:
        return int(self._cum[-1])

    def gather(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets (n, block_size) int64 for global window positions in [0, num_windows)."""
        shard_of = np.searchsorted(self._cum, positions, side="right") - 1
        rows = np.empty((len(positions), self.block_size + 1), dtype=np.int64)
        offsets = np.arange(self.block_size + 1)
        for shard in np.unique(shard_of):
            sel = np.nonzero(shard_of == shard)[0]
            data = self.shards[shard]()
            starts = positions[sel] - self._cum[shard]
            rows[sel] = data[starts[:, None] + offsets]
        t = torch.from_numpy(rows)
        return t[:, :-1], t[:, 1:]


@dataclass
class RandomWindowBatches:
    """Training batches for one rank: `batch(step, micro_step)` -> (inputs, targets) of `batch_size` windows.

    With `replay_windows` (continued pretraining: the corpus's earlier snapshots) each row comes from them with
    probability `replay`, else from `windows`. Implements the trainer's batch-source protocol; it has no state to
    checkpoint: a batch is a pure function of (seed, step) (see the module docstring)."""

    windows: TokenWindows
    batch_size: int
    grad_accum: int
    rank: int = 0
    world_size: int = 1
    seed: int = 0
    replay_windows: TokenWindows | None = None
    replay: float = 0.0

    def batch(self, step: int, micro_step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        global_rows = self.batch_size * self.grad_accum * self.world_size
        positions = rng.integers(0, self.windows.num_windows, size=global_rows)
        first = (micro_step * self.world_size + self.rank) * self.batch_size
        mine = slice(first, first + self.batch_size)
        x, y = self.windows.gather(positions[mine])
        if self.replay_windows is not None and self.replay > 0:
            replayed = np.flatnonzero(rng.random(global_rows)[mine] < self.replay)
            replay_positions = rng.integers(0, self.replay_windows.num_windows, size=global_rows)[mine]
            if len(replayed):
                x[replayed], y[replayed] = self.replay_windows.gather(replay_positions[replayed])
        return x, y

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


def eval_windows(tokens: np.ndarray, block_size: int, max_tokens: int) -> np.ndarray:
    """Start offsets of non-overlapping windows covering the start of a token stream, about `max_tokens` targets."""
    n = min(len(tokens) - 1, max_tokens) // block_size
    assert n > 0, f"the val stream has {len(tokens)} tokens: too few for one window of {block_size + 1}"
    return np.arange(n) * block_size


def iter_eval_batches(
    tokens: np.ndarray, starts: np.ndarray, block_size: int, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    offsets = np.arange(block_size + 1)
    for i in range(0, len(starts), batch_size):
        rows = torch.from_numpy(tokens[starts[i:i + batch_size, None] + offsets].astype(np.int64))
        yield rows[:, :-1], rows[:, 1:]

"""The length-bucketed batch source shared by SFT and the reward stage: what each step reads, across epochs."""

from __future__ import annotations

import random

from llm_core.sft import batches
from llm_core.sft.batches import LengthBucketBatches, batch_order


def test_every_item_once_per_epoch_in_batches_of_similar_length():
    lengths = [random.Random(i).randint(3, 300) for i in range(1000)]
    src = LengthBucketBatches(lengths, 16, seed=7, make=list)
    epoch = [src.batch(step, 0) for step in range(src.per_epoch)]
    assert sorted(i for b in epoch for i in b) == list(range(1000))
    assert [len(b) for b in epoch].count(16) == len(epoch) - 1
    spread = sorted(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epoch)
    assert spread[len(spread) // 2] < 30  # unsorted batches of 16 from 3..300 spread by about 250


def test_per_epoch_matches_the_order_for_every_size():
    for n in [1, 15, 16, 17, 255, 256, 257, 1000]:
        for size in [1, 3, 16]:
            src = LengthBucketBatches(list(range(n)), size, seed=0, make=list)
            assert src.per_epoch == len(batch_order(src.lengths, size, random.Random(0))), (n, size)


def test_a_step_is_a_pure_function_of_seed_and_step_and_each_epoch_is_shuffled_once(monkeypatch):
    calls = []
    real = batches.batch_order
    monkeypatch.setattr(batches, "batch_order", lambda *a, **k: calls.append(1) or real(*a, **k))
    lengths = [random.Random(i).randint(3, 60) for i in range(100)]
    src = LengthBucketBatches(lengths, 8, seed=3, make=list, grad_accum=2)
    steps = range(3 * src.per_epoch // 2)  # three epochs of micro-batches
    run = [src.batch(s, m) for s in steps for m in range(2)]
    assert len(calls) == 3
    resumed = LengthBucketBatches(lengths, 8, seed=3, make=list, grad_accum=2)  # a restart at step 10
    assert [resumed.batch(s, m) for s in steps[10:] for m in range(2)] == run[20:] and len(run[20:]) == 18
    assert run[:src.per_epoch] != run[src.per_epoch:2 * src.per_epoch]

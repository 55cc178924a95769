"""One SFT optimizer step on real conversations: the LM head at every position (`model(x, y)`, what a plain
causal-LM loss does) against only at the target positions (`GPT.masked_loss`, what the sft stage runs), interleaved.

    .venv/bin/python bench/sft_step.py --root artifacts     # a root holding a `make run`'s bpe, pretrain, sft_data

Batches are the sft stage's own (length buckets, 16 conversations, the tiny config's context), from the root's
`sft_data` train split and `pretrain` model; both sides start from the same weights and each runs AdamW steps on the
same sequence of batches. Rounds of `--steps` steps alternate (A then B, then B then A); the first round is warm-up.
Prints each round, the medians, the share of positions that are targets, and the load average before and after.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

from llm_core.model import GPT
from llm_core.sft.batches import conversation_batches, encode_conversations
from llm_core.tokenizer import load_tokenizer


def only(root: Path, stage: str) -> Path:
    keys = sorted(p.parent for p in (root / stage).glob("*/manifest.json"))  # committed artifacts
    if len(keys) != 1:
        raise SystemExit(f"--root {root}: expected one {stage} artifact, found {len(keys)}")
    return keys[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("artifacts"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(str(only(args.root, "bpe")))
    data = only(args.root, "sft_data")
    conversations = [m for f in sorted((data / "train").glob("*.parquet"))
                     for m in pq.read_table(f, columns=["messages"]).column("messages").to_pylist()]
    base = GPT.load(str(only(args.root, "pretrain") / "model"))
    examples = encode_conversations(tokenizer, conversations, base.config.block_size).examples
    targets = sum(sum(e.mask[1:]) for e in examples)
    positions = sum(len(e.ids) - 1 for e in examples)

    def side(loss_of):
        model = copy.deepcopy(base).train()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)
        batches = conversation_batches(examples, args.batch, tokenizer.eot_id, seed=0)
        state = {"step": 0}

        def step() -> None:
            x, y = batches.batch(state["step"], 0)
            loss = loss_of(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state["step"] += 1

        return step

    sides = {"every position": side(lambda m, x, y: m(x, y)[1]),
             "targets only": side(lambda m, x, y: m.masked_loss(x, y))}
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(args.rounds):
        for name in list(sides) if r % 2 == 0 else list(reversed(sides)):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                sides[name]()
            times[name].append((time.perf_counter() - t0) / args.steps * 1000)
        print(f"round {r}: " + ", ".join(f"{n} {times[n][-1]:.1f} ms/step" for n in sides)
              + (" (warm-up, left out)" if r == 0 else ""), flush=True)
    load_after = os.getloadavg()
    print(f"\n{len(examples):,} conversations, {targets / positions:.1%} of {positions:,} positions are targets; "
          f"batch {args.batch}, {args.threads} threads, {args.rounds - 1} rounds x {args.steps} steps per side")
    medians = {n: statistics.median(t[1:]) for n, t in times.items()}
    for name, ms in medians.items():
        print(f"{name:15} median {ms:6.1f} ms/step")
    print(f"targets only / every position: {medians['every position'] / medians['targets only']:.2f}x steps/s")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")


if __name__ == "__main__":
    main()

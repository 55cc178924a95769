"""Training-step speed of this project's GPT against a real nanoGPT checkout's model.py, interleaved in one process.

    python bench/pretrain_ab.py --nanogpt-dir ~/nanoGPT                # eager, 2 threads, 8 rounds of 25 steps
    python bench/pretrain_ab.py --nanogpt-dir ~/nanoGPT --compile      # both models through torch.compile
    python bench/pretrain_ab.py --nanogpt-dir ~/nanoGPT --profile 20   # also: top ops of 20 profiled steps each
    NANOGPT_DIR=~/nanoGPT python bench/pretrain_ab.py

Shapes are nanoGPT's CPU shakespeare-char baseline (4 layers, 4 heads, 128 wide, block 64, batch 12, dropout 0,
no biases, vocabulary of the 65 characters of data/tinyshakespeare/input.txt, first 90% train). Each side runs
its own training step as its own code does it:

- nanoGPT: the checkout's `model.GPT` and `configure_optimizers` (AdamW, weight decay 0.1 on >= 2-D tensors,
  lr from train.py's `get_lr`, betas 0.9/0.99) and train.py's loop body: `get_batch` on a fresh `np.memmap` of
  train.bin each step, forward, backward, clipping at 1.0, step, `zero_grad(set_to_none=True)` and `loss.item()`
  (the README command logs every iteration);
- ours: `llm_core.model.GPT` with the same shapes in the project's `Trainer.train_step` (same AdamW settings and
  schedule, random windows from `RandomWindowBatches`), and the loss read every step too.

Both start from the same seed. The two alternate in rounds of `--steps` steps (A then B, then B then A, ...) so a
change in the machine's speed hits both alike; the first round of each is warm-up and left out. Printed: ms/step of
every round, the median of each side, tokens/s and the ratio (ours / nanoGPT; above 1 means ours is faster), with
the load average before and after; and the median of the per-round ratios, each from two blocks run back to back,
which a slow spell of the machine moves less than it moves either side's median. The checkout's code is imported
from `--nanogpt-dir`; nothing of it is copied.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from llm_core.model import GPT, GPTConfig
from llm_core.train import DistEnv, LoopSettings, OptimSection, Trainer
from llm_core.train.data import RandomWindowBatches, TokenWindows
from llm_core.train.pretrain import next_token_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_throughput import shakespeare_chars  # noqa: E402  (nanoGPT's prepare.py split of the same file)

N_LAYER, N_HEAD, N_EMBD, BLOCK, BATCH = 4, 4, 128, 64, 12
LR, MIN_LR, WARMUP, DECAY, BETAS, WEIGHT_DECAY, CLIP = 1e-3, 1e-4, 100, 2000, (0.9, 0.99), 0.1, 1.0


def load_nanogpt_model(checkout: Path):
    """The checkout's model.py as a module (its GPT, GPTConfig)."""
    path = checkout / "model.py"
    if not path.is_file():
        raise SystemExit(f"--nanogpt-dir {checkout}: no model.py there (expected a karpathy/nanoGPT checkout)")
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def nanogpt_lr(it: int) -> float:
    """train.py's get_lr with the shakespeare-char settings."""
    if it < WARMUP:
        return LR * (it + 1) / (WARMUP + 1)
    if it > DECAY:
        return MIN_LR
    ratio = (it - WARMUP) / (DECAY - WARMUP)
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


def nanogpt_stepper(module, train_bin: Path, vocab_size: int, compile_model: bool) -> Callable[[], float]:
    """A closure running one iteration of nanoGPT's train.py loop (CPU, fp32, no accumulation)."""
    torch.manual_seed(1337)
    config = module.GPTConfig(block_size=BLOCK, vocab_size=vocab_size, n_layer=N_LAYER, n_head=N_HEAD,
                              n_embd=N_EMBD, dropout=0.0, bias=False)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints parameter counts
        model = module.GPT(config)
        optimizer = model.configure_optimizers(WEIGHT_DECAY, LR, BETAS, "cpu")
    run_model = torch.compile(model) if compile_model else model

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        data = np.memmap(train_bin, dtype=np.uint16, mode="r")
        ix = torch.randint(len(data) - BLOCK, (BATCH,))
        x = torch.stack([torch.from_numpy((data[i:i + BLOCK]).astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy((data[i + 1:i + 1 + BLOCK]).astype(np.int64)) for i in ix])
        return x, y

    state = {"it": 0, "batch": get_batch()}

    def step() -> float:
        for group in optimizer.param_groups:
            group["lr"] = nanogpt_lr(state["it"])
        x, y = state["batch"]
        _, loss = run_model(x, y)
        state["batch"] = get_batch()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["it"] += 1
        return loss.item()

    return step


def ours_stepper(train: np.ndarray, vocab_size: int, compile_model: bool) -> Callable[[], float]:
    """A closure running one optimizer step of the project's Trainer on the same shapes and settings."""
    torch.manual_seed(1337)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=BLOCK, n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD))
    optim = OptimSection(lr=LR, min_lr=MIN_LR, warmup_steps=WARMUP, decay_steps=DECAY, beta1=BETAS[0],
                         beta2=BETAS[1], weight_decay=WEIGHT_DECAY, grad_clip=CLIP)
    settings = LoopSettings(max_steps=DECAY, seed=1337, compile=compile_model)
    batches = RandomWindowBatches(TokenWindows.from_arrays([train], BLOCK), BATCH, 1, seed=1337)
    trainer = Trainer(model, optim, batches, next_token_loss, settings, DistEnv(0, 1, 0, torch.device("cpu")))
    model.train()
    return lambda: trainer.train_step().item()


def time_round(step: Callable[[], float], steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps * 1000


def profile(name: str, step: Callable[[], float], steps: int, rows: int = 15) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    kernels = sum(e.count for e in events if e.key.startswith("aten::") and not e.cpu_children)
    print(f"\n{name}: {kernels / steps:.0f} leaf aten calls a step; top ops by self CPU time over {steps} steps")
    print(events.table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt-dir", type=Path, default=os.environ.get("NANOGPT_DIR"),
                        help="a karpathy/nanoGPT checkout (or set NANOGPT_DIR)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8, help="rounds per side, the first left out")
    parser.add_argument("--steps", type=int, default=25, help="steps per round")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--profile", type=int, default=0, help="also profile this many steps of each side")
    args = parser.parse_args()
    if args.nanogpt_dir is None:
        parser.error("give --nanogpt-dir (or NANOGPT_DIR): a karpathy/nanoGPT checkout")
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the first is warm-up)")
    torch.set_num_threads(args.threads)
    checkout = args.nanogpt_dir.expanduser()
    module = load_nanogpt_model(checkout)
    commit = ""
    with contextlib.suppress(Exception):
        import subprocess
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    train, _, chars = shakespeare_chars()
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        train_bin = Path(tmp) / "train.bin"
        train.tofile(train_bin)
        sides = {"nanoGPT": nanogpt_stepper(module, train_bin, len(chars), args.compile),
                 "ours": ours_stepper(train, len(chars), args.compile)}
        times: dict[str, list[float]] = {name: [] for name in sides}
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                times[name].append(time_round(sides[name], args.steps))
            print(f"round {r}: " + ", ".join(f"{n} {times[n][-1]:.1f} ms/step" for n in sides)
                  + (" (warm-up, left out)" if r == 0 else ""), flush=True)
        if args.profile:
            for name, step in sides.items():
                profile(name, step, args.profile)
    load_after = os.getloadavg()

    tokens = BATCH * BLOCK
    medians = {n: statistics.median(t[1:]) for n, t in times.items()}
    print(f"\nnanoGPT checkout {checkout} ({commit or 'commit unknown'}), torch {torch.__version__}, "
          f"{args.threads} threads, {'compiled' if args.compile else 'eager'}, {tokens} tokens a step, "
          f"{args.rounds - 1} rounds x {args.steps} steps per side")
    for name, ms in medians.items():
        print(f"{name:8} median {ms:6.1f} ms/step  {tokens / ms * 1000:8,.0f} tokens/s  "
              f"(rounds: {', '.join(f'{t:.1f}' for t in times[name][1:])})")
    paired = [a / b for a, b in zip(times["nanoGPT"][1:], times["ours"][1:])]
    print(f"ours / nanoGPT: {medians['nanoGPT'] / medians['ours']:.2f}x tokens/s; median of the per-round ratios "
          f"{statistics.median(paired):.2f}x (range {min(paired):.2f}-{max(paired):.2f})")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")


if __name__ == "__main__":
    sys.exit(main())

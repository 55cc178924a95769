"""Wall time to reach nanoGPT's shakespeare-char validation loss (1.88): this project's GPT against a nanoGPT
checkout's train.py with its README recipe, alternated.

    python bench/pretrain_time_to_loss.py --nanogpt-dir ~/nanoGPT              # 2 pairs, 2 threads
    python bench/pretrain_time_to_loss.py --nanogpt-dir ~/nanoGPT --pairs 3 --target 1.88
    python bench/pretrain_time_to_loss.py --nanogpt-dir ~/nanoGPT --target 1.905 --our-lr 3e-3 --our-steps 700

Each side runs in its own subprocess with the same thread count (OMP_NUM_THREADS and torch's), and the parent
stamps every "step N: ... val loss X" line as it arrives; a side's time is from its process start to the first
line at or below the target (imports, start-up and its own evaluations included). Pairs alternate the order
(nanoGPT first, then ours first, ...). Printed: each run's time and step, the medians, the ratio ours / nanoGPT
(below 1: ours gets there sooner) and the load average before and after.

- nanoGPT: `train.py config/train_shakespeare_char.py` with the README's CPU command (4 layers, 128 wide, block 64,
  batch 12, 2000 iterations, lr decay to 2000, dropout 0, `--eval_iters=20`), evaluating every `--eval-every`
  iterations; its val loss is its own estimate on 20 random val batches. If the checkout has no
  data/shakespeare_char/*.bin, they are written from data/tinyshakespeare/input.txt in prepare.py's format.
- ours: `llm_core.model.GPT` with the same shapes, batch, AdamW betas, weight decay, clipping and warmup, through
  the project's `Trainer`, its cosine schedule decaying over `--our-steps` steps from `--our-lr` (nanoGPT's 1e-3 by
  default; the tiny config pretrains at 3e-3 and trains stably there; the floor scales with it), so
  a run that aims at 1.88 need not plan for 2000 steps; scored every `--eval-every` steps on the first 20 x 12 x 64
  val tokens in fixed windows (as many tokens as nanoGPT's estimate).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from llm_core.model import GPT, GPTConfig
from llm_core.train import DistEnv, LoopSettings, OptimSection, Trainer
from llm_core.train.data import RandomWindowBatches, TokenWindows
from llm_core.train.evaluation import LMEvaluator
from llm_core.train.pretrain import next_token_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_ab import (  # noqa: E402
    BATCH, BETAS, BLOCK, CLIP, LR, MIN_LR, N_EMBD, N_HEAD, N_LAYER, WARMUP, WEIGHT_DECAY)
from pretrain_throughput import shakespeare_chars  # noqa: E402
from pretrain_reference import NANOGPT_CPU_ARGS, write_nanogpt_data  # noqa: E402

EVAL_LINE = re.compile(r"^step (\d+):.*val loss ([\d.]+)")
EVAL_TOKENS = 20 * BATCH * BLOCK


def train_ours(steps: int, eval_every: int, target: float, lr: float = LR) -> None:
    """The worker: train and print "step N: val loss X" lines until the target is reached or steps run out."""
    train, val, chars = shakespeare_chars()
    torch.manual_seed(1337)
    model = GPT(GPTConfig(vocab_size=len(chars), block_size=BLOCK, n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD))
    optim = OptimSection(lr=lr, min_lr=MIN_LR * lr / LR, warmup_steps=WARMUP, beta1=BETAS[0], beta2=BETAS[1],
                         weight_decay=WEIGHT_DECAY, grad_clip=CLIP)
    batches = RandomWindowBatches(TokenWindows.from_arrays([train], BLOCK), BATCH, 1, seed=1337)
    trainer = Trainer(model, optim, batches, next_token_loss, LoopSettings(max_steps=steps, seed=1337),
                      DistEnv(0, 1, 0, torch.device("cpu")))
    evaluator = LMEvaluator(val, BLOCK, EVAL_TOKENS, 64, special_ids=[], decode=lambda ids: "")
    model.train()
    while trainer.step < steps:
        trainer.train_step()
        if trainer.step % eval_every == 0 or trainer.step == steps:
            model.eval()
            with torch.no_grad():
                loss = evaluator(model, trainer.step)["val_loss"]
            model.train()
            print(f"step {trainer.step}: val loss {loss:.4f}", flush=True)
            if loss <= target:
                return


@dataclass
class Outcome:
    """One side's run: when it reached the target (None: never), and its best evaluation and whole wall time."""

    seconds: float | None
    step: int | None
    best_loss: float
    best_step: int
    run_seconds: float

    def line(self) -> str:
        if self.seconds is not None:
            return f"{self.seconds:.1f} s (step {self.step})"
        return (f"never reached: best val loss {self.best_loss:.4f} at step {self.best_step}, "
                f"whole run {self.run_seconds:.1f} s")


def timed_run(command: list[str], cwd: Path, threads: int, target: float) -> Outcome:
    """Run one side until its first val loss <= target (then stop it) or until it ends."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    best_loss, best_step = float("inf"), -1
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            m = EVAL_LINE.match(line)
            if not m:
                continue
            step, loss = int(m.group(1)), float(m.group(2))
            if loss < best_loss:
                best_loss, best_step = loss, step
            if loss <= target:
                return Outcome(time.perf_counter() - t0, step, loss, step, time.perf_counter() - t0)
    finally:
        proc.kill()
        proc.wait()
    return Outcome(None, None, best_loss, best_step, time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt-dir", type=Path, default=os.environ.get("NANOGPT_DIR"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--target", type=float, default=1.88)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--our-steps", type=int, default=1000, help="length of our cosine schedule")
    parser.add_argument("--our-lr", type=float, default=LR, help="our peak learning rate (nanoGPT's recipe: 1e-3)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        train_ours(args.our_steps, args.eval_every, args.target, args.our_lr)
        return
    if args.nanogpt_dir is None:
        parser.error("give --nanogpt-dir (or NANOGPT_DIR): a karpathy/nanoGPT checkout")
    checkout = args.nanogpt_dir.expanduser()
    data_dir = checkout / "data" / "shakespeare_char"
    if not (data_dir / "train.bin").exists():
        write_nanogpt_data(data_dir, str(Path(__file__).resolve().parents[1] / "data/tinyshakespeare/input.txt"))
    repo = Path(__file__).resolve().parents[1]
    load_before = os.getloadavg()
    results: dict[str, list[Outcome]] = {"nanoGPT": [], "ours": []}
    with tempfile.TemporaryDirectory() as out_dir:
        commands = {
            "nanoGPT": ([sys.executable, "train.py", *NANOGPT_CPU_ARGS, "--compile=False",
                         f"--eval_interval={args.eval_every}", f"--out_dir={out_dir}"], checkout),
            "ours": ([sys.executable, str(Path(__file__).resolve()), "--worker", f"--threads={args.threads}",
                      f"--our-steps={args.our_steps}", f"--our-lr={args.our_lr}", f"--eval-every={args.eval_every}",
                      f"--target={args.target}"], repo),
        }
        for pair in range(args.pairs):
            order = ["nanoGPT", "ours"] if pair % 2 == 0 else ["ours", "nanoGPT"]
            for name in order:
                command, cwd = commands[name]
                results[name].append(timed_run(command, cwd, args.threads, args.target))
                print(f"pair {pair} {name}: {results[name][-1].line()}", flush=True)
    load_after = os.getloadavg()
    medians = {n: statistics.median(o.seconds for o in r if o.seconds is not None)
               if any(o.seconds is not None for o in r) else None for n, r in results.items()}
    whole_runs = {n: statistics.median(o.run_seconds for o in r) for n, r in results.items()}
    print(f"\nval loss <= {args.target}, {args.threads} threads, nanoGPT {checkout}; ours: schedule of "
          f"{args.our_steps} steps")
    for name, median in medians.items():
        if median is not None:
            reached = sum(o.seconds is not None for o in results[name])
            print(f"{name:8} median {median:.1f} s ({reached} of {len(results[name])} runs reached it)")
        else:
            print(f"{name:8} did not reach the target (best {min(o.best_loss for o in results[name]):.4f}; "
                  f"whole runs, median {whole_runs[name]:.1f} s)")
    if medians["nanoGPT"] is not None and medians["ours"] is not None:
        print(f"ours / nanoGPT wall time: {medians['ours'] / medians['nanoGPT']:.2f}x")
    elif medians["ours"] is not None:  # nanoGPT would need longer than its whole run: the ratio is an upper bound
        print(f"ours / nanoGPT wall time: < {medians['ours'] / whole_runs['nanoGPT']:.2f}x "
              "(nanoGPT's whole run, not reaching it)")
    print(f"load average before {' '.join(f'{v:.2f}' for v in load_before)}, "
          f"after {' '.join(f'{v:.2f}' for v in load_after)}")


if __name__ == "__main__":
    main()

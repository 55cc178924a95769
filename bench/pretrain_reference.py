"""nanoGPT's CPU shakespeare-char baseline through this project's stages, timed beside nanoGPT's model on the same
machine.

    python bench/pretrain_reference.py                      # configs/shakespeare_char.yaml, 2000 steps, eager
    python bench/pretrain_reference.py --compile            # torch.compile (ours and the peer)
    python bench/pretrain_reference.py --peer-full          # also train the peer as many steps as ours: its val loss
    python bench/pretrain_reference.py --nanogpt-dir ~/nanoGPT   # also run a nanoGPT checkout's train.py
    python bench/pretrain_reference.py --set pretrain.max_steps=300 --set pretrain.eval_every=0  # a quick look

What runs, one after the other in this process, with the same torch thread count:
1. This project: `bpe` (kind char), `tokenize` (nanoGPT's 90/10 split) and `pretrain` into a fresh artifact root;
   our validation loss at the final step and our training throughput (tokens/s, evaluation left out).
2. The peer: nanoGPT's architecture and training loop, re-implemented here for a same-machine timing; not
   nanoGPT's code. Its model.py's GPT (LayerNorm without bias, learned position embeddings, GELU 4x MLP, no biases,
   lm_head tied to the token embedding, causal `scaled_dot_product_attention`) and its train.py's loop (random
   windows drawn with `torch.randint` each step, clipping at 1.0, non-fused AdamW with weight decay on the >= 2-D
   parameters only, warmup + cosine learning rate, `loss.item()` every step as with `--log_interval=1`), with the
   config's model, batch and optimizer settings, on the characters of the same file (vocabulary: its sorted
   characters; the first 90% to train, the rest val, as nanoGPT's prepare.py). `--peer-steps` steps are timed,
   the first 20 left out (warm-up, compilation). With `--peer-full` it trains as many steps as ours and its loss
   is scored over the whole val split in non-overlapping windows, as ours is.
3. Optionally a nanoGPT checkout (`--nanogpt-dir`): its train.py with the README's CPU command (`--compile=True`
   instead of False with `--compile`), the same thread count through OMP_NUM_THREADS. If the checkout has no
   data/shakespeare_char/train.bin, train.bin, val.bin and meta.pkl are written from our input file in
   prepare.py's format (prepare.py itself would download the text). Tokens/s come from its
   "iter N: ... time X ms" lines (768 tokens an iteration), leaving out the first 20 iterations and those that
   evaluated; the val loss is its last "step N: ... val loss X" line (estimated on `--eval_iters=20` random
   batches). Its data files and its parsing of train.py's log lines are checked; it has not been run
   against a real checkout.
4. The matmul-only ceiling: the matrix products of one training step of this model shape (each linear layer's
   forward x @ W^T, grad-input dy @ W and grad-weight dy^T @ x, batch x block rows; attention's small batched
   products left out), timed back to back; tokens/s if a step were nothing else: a bound no trainer using
   torch's matmuls can beat on this machine.

nanoGPT's published 1.88 (README) and its measured 1.8857 at step 2000 are losses, so they stand as they are on
any machine; no peer speed is taken from elsewhere.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.registry import STAGES
from llm_core.stage import run_stage
from llm_core.train.pretrain_config import PretrainConfig

PUBLISHED_VAL_LOSS = 1.88  # nanoGPT's README, CPU shakespeare-char baseline
MEASURED_VAL_LOSS = 1.8857  # nanoGPT run with the README's CPU command, step 2000
WARMUP_STEPS = 20  # steps (iterations) left out of every throughput figure
NANOGPT_ITERS = 2000
NANOGPT_CPU_ARGS = ["config/train_shakespeare_char.py", "--device=cpu", "--eval_iters=20", "--log_interval=1",
                    "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128",
                    f"--max_iters={NANOGPT_ITERS}", f"--lr_decay_iters={NANOGPT_ITERS}", "--dropout=0.0"]
ITER_LINE = re.compile(r"^iter (\d+): loss \S+, time ([\d.]+)ms", re.MULTILINE)
EVAL_LINE = re.compile(r"^step (\d+): train loss \S+, val loss ([\d.]+)", re.MULTILINE)


@dataclass(frozen=True)
class Row:
    name: str
    steps: int | None = None
    val_loss: float | None = None
    tokens_per_s: float | None = None


class Block(nn.Module):
    """nanoGPT's transformer block (pre-LayerNorm attention and GELU MLP, no biases, no dropout)."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd, bias=False), nn.LayerNorm(n_embd, bias=False)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.attn_proj = nn.Linear(n_embd, n_embd, bias=False)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.mlp_proj = nn.Linear(4 * n_embd, n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (h.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
                   for h in self.c_attn(self.ln_1(x)).split(c, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class NanoGPTArch(nn.Module):
    """nanoGPT's GPT: token + learned position embeddings, blocks, final LayerNorm, head tied to the embedding;
    nanoGPT's initialisation (normal 0.02, residual projections 0.02 / sqrt(2 * n_layer)). Returns the loss."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, n_embd), nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=False)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def shakespeare_chars(path: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """nanoGPT's prepare.py: character vocabulary (sorted), uint16 ids, first 90% train, the rest val."""
    text = Path(path).read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    ids = np.array([stoi[ch] for ch in text], dtype=np.uint16)
    n = int(len(ids) * 0.9)
    return ids[:n], ids[n:], chars


def get_batch(data: np.ndarray, batch_size: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([torch.from_numpy(data[i:i + block_size].astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block_size].astype(np.int64)) for i in ix])
    return x, y


def nanogpt_lr(it: int, cfg: PretrainConfig) -> float:
    """nanoGPT's get_lr: linear warmup, cosine decay to min_lr at the decay step, flat after."""
    o = cfg.optim
    decay_steps = o.decay_steps or cfg.max_steps
    if it < o.warmup_steps:
        return o.lr * (it + 1) / (o.warmup_steps + 1)
    if it > decay_steps:
        return o.min_lr
    ratio = (it - o.warmup_steps) / (decay_steps - o.warmup_steps)
    return o.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (o.lr - o.min_lr)


@torch.no_grad()
def val_loss(model: NanoGPTArch, val: np.ndarray, block_size: int, batch_size: int = 64) -> float:
    """Mean next-character loss over the val split in non-overlapping windows (how our evaluator scores)."""
    model.eval()
    windows = torch.from_numpy(val[:(len(val) - 1) // block_size * block_size + 1].astype(np.int64))
    x, y = windows[:-1].view(-1, block_size), windows[1:].view(-1, block_size)
    total = sum(model(x[i:i + batch_size], y[i:i + batch_size]).item() * len(x[i:i + batch_size])
                for i in range(0, len(x), batch_size))
    model.train()
    return total / len(x)


def run_peer(cfg: PretrainConfig, seed: int, train: np.ndarray, val: np.ndarray, vocab_size: int, steps: int,
             compile_model: bool, score: bool) -> Row:
    """Train the nanoGPT-architecture model `steps` steps with nanoGPT's loop; tokens/s after the warm-up steps,
    and the val loss if `score`."""
    m = cfg.model
    torch.manual_seed(seed)
    model = NanoGPTArch(vocab_size, m.block_size, m.n_layer, m.n_head, m.n_embd)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.optim.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
    train_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = (
        torch.compile(model) if compile_model else model)
    x, y = get_batch(train, cfg.batch_size, m.block_size)
    t0 = time.perf_counter()
    for it in range(steps):
        if it == WARMUP_STEPS:
            t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = nanogpt_lr(it, cfg)
        loss = train_model(x, y)
        x, y = get_batch(train, cfg.batch_size, m.block_size)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # nanoGPT with --log_interval=1 reads the loss every step
    seconds = time.perf_counter() - t0
    return Row("nanoGPT architecture, same machine", steps,
               val_loss(model, val, m.block_size) if score else None,
               (steps - WARMUP_STEPS) * cfg.batch_size * m.block_size / seconds)


def write_nanogpt_data(data_dir: Path, text_path: str) -> None:
    """train.bin, val.bin (uint16 ids) and meta.pkl (vocab_size, itos, stoi) as nanoGPT's prepare.py writes them."""
    train, val, chars = shakespeare_chars(text_path)
    data_dir.mkdir(parents=True, exist_ok=True)
    train.tofile(data_dir / "train.bin")
    val.tofile(data_dir / "val.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": {ch: i for i, ch in enumerate(chars)}}
    with open(data_dir / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)


def parse_nanogpt_log(log: str, tokens_per_iter: int) -> tuple[int, float, float]:
    """(last evaluated step, its val loss, tokens/s) from train.py's output; iterations before WARMUP_STEPS and
    those that evaluated (their time includes the evaluation) are left out of tokens/s."""
    evals = {int(step): float(loss) for step, loss in EVAL_LINE.findall(log)}
    times_ms = [float(ms) for it, ms in ITER_LINE.findall(log) if int(it) >= WARMUP_STEPS and int(it) not in evals]
    if not evals or not times_ms:
        raise ValueError("no 'step N: train loss X, val loss Y' or 'iter N: loss X, time Y ms' lines in the output")
    last = max(evals)
    return last, evals[last], len(times_ms) * tokens_per_iter / (sum(times_ms) / 1000)


def run_nanogpt_checkout(checkout: Path, text_path: str, compile_model: bool, tokens_per_iter: int) -> Row:
    """The checkout's train.py with the README's CPU command, in a subprocess with this process's thread count."""
    data_dir = checkout / "data" / "shakespeare_char"
    if not (data_dir / "train.bin").exists():
        write_nanogpt_data(data_dir, text_path)
    command = [sys.executable, "train.py", *NANOGPT_CPU_ARGS, f"--compile={compile_model}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    print(f"nanoGPT checkout: {' '.join(command[1:])} (in {checkout})")
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"nanoGPT's train.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    step, loss, tokens_per_s = parse_nanogpt_log(done.stdout, tokens_per_iter)
    return Row("nanoGPT checkout", step, loss, tokens_per_s)


def matmul_ceiling(rows: int, n_embd: int, n_layer: int, vocab_size: int) -> tuple[float, float]:
    """(tokens/s, GFLOP/s) of the linear layers' matrix products of one training step, run back to back."""
    shapes = [(n_embd, 3 * n_embd), (n_embd, n_embd), (n_embd, 4 * n_embd), (4 * n_embd, n_embd)] * n_layer
    products = []
    for fan_in, fan_out in [*shapes, (n_embd, vocab_size)]:
        x, w, dy = torch.randn(rows, fan_in), torch.randn(fan_out, fan_in), torch.randn(rows, fan_out)
        products += [(x, w.t()), (dy, w), (dy.t(), x)]  # forward, grad-input, grad-weight (autograd's layouts)
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in products)

    def step() -> None:
        for a, b in products:
            torch.mm(a, b)

    for _ in range(10):
        step()
    best = math.inf
    for _ in range(10):
        t0 = time.perf_counter()
        for _ in range(10):
            step()
        best = min(best, (time.perf_counter() - t0) / 10)
    return rows / best, flops / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/shakespeare_char.yaml")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model and the peer")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--root", default=None, help="artifact root (default: a fresh temporary folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    parser.add_argument("--peer-steps", type=int, default=300, help=f"peer steps timed (the first {WARMUP_STEPS} "
                        "left out)")
    parser.add_argument("--peer-full", action="store_true", help="train the peer as many steps as ours and score it")
    parser.add_argument("--nanogpt-dir", type=Path, default=None, help="a nanoGPT checkout: run its train.py too")
    args = parser.parse_args()
    if args.peer_steps <= WARMUP_STEPS:
        parser.error(f"--peer-steps must be more than the {WARMUP_STEPS} warm-up steps")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"run.artifact_root={args.root or tmp}", f"pretrain.compile={str(args.compile).lower()}",
                     *args.overrides]
        config = load_config(args.config, overrides)
        contexts = plan(config, ["pretrain"])
        for name, ctx in contexts.items():
            t0 = time.perf_counter()
            manifest, hit = run_stage(STAGES[name], ctx)
            print(f"{name}: {'cache hit' if hit else f'{time.perf_counter() - t0:.1f} s'}")
        m = manifest.metrics

    cfg, text_path = config.pretrain, config.tokenize.sources[0].path
    tokens_per_step = cfg.batch_size * cfg.model.block_size
    train, val, chars = shakespeare_chars(text_path)
    t0 = time.perf_counter()
    peer = run_peer(cfg, config.run.seed, train, val, len(chars),
                    cfg.max_steps if args.peer_full else args.peer_steps, args.compile, args.peer_full)
    print(f"peer: {time.perf_counter() - t0:.1f} s")
    checkout = (run_nanogpt_checkout(args.nanogpt_dir.expanduser(), text_path, args.compile, tokens_per_step)
                if args.nanogpt_dir else None)
    ceiling, gflops = matmul_ceiling(tokens_per_step, cfg.model.n_embd, cfg.model.n_layer, len(chars))

    rows = [Row("nanoGPT README (published)", NANOGPT_ITERS, PUBLISHED_VAL_LOSS),
            Row("nanoGPT measured (its README run)", NANOGPT_ITERS, MEASURED_VAL_LOSS),
            peer, *([checkout] if checkout else []),
            Row("this project", int(m["steps"]), m["val_loss"], m["tokens_per_s"]),
            Row("matmul-only ceiling", tokens_per_s=ceiling)]
    mode = "compiled" if args.compile else "eager"
    print(f"\nshakespeare-char, {int(m['params']):,} parameters (ours), {config.pretrain.device}, "
          f"{torch.get_num_threads()} threads, {mode}, {tokens_per_step} tokens a step")
    print(f"{'':38}{'steps':>7}{'val loss':>10}{'tokens/s':>10}")
    for r in rows:
        print(f"{r.name:38}{r.steps or '':>7}{'' if r.val_loss is None else f'{r.val_loss:.4f}':>10}"
              f"{'' if r.tokens_per_s is None else f'{r.tokens_per_s:,.0f}':>10}")
    print(f"\nours / nanoGPT architecture: {m['tokens_per_s'] / peer.tokens_per_s:.2f}x tokens/s"
          + (f"; ours / nanoGPT checkout: {m['tokens_per_s'] / checkout.tokens_per_s:.2f}x" if checkout else ""))
    print(f"matmul-only ceiling: {gflops:.1f} GFLOP/s over the linear layers' products of a step; ours reaches "
          f"{m['tokens_per_s'] / ceiling:.0%} of its tokens/s")
    print(f"val bits/byte {m['val_bpb']:.4f}, unigram baseline {m['unigram_entropy']:.4f} nats, "
          f"{m['flops_per_token'] * m['tokens_per_s'] / 1e9:.1f} GFLOP/s (ours, model FLOPs)")


if __name__ == "__main__":
    main()

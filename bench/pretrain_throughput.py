"""Training throughput of the GPT through the project's Trainer: tokens/s, achieved TFLOP/s and MFU.

    python bench/pretrain_throughput.py --depth 12 --block 1024 --batch 16 --compile     # a GPT-2-small-sized run
    python bench/pretrain_throughput.py --reference                                      # nanoGPT's shakespeare-char

Without `--reference` the tokens are uniform random ids (throughput does not depend on the text); with it, the
model and schedule are nanoGPT's CPU shakespeare-char baseline (configs/shakespeare_char.yaml) on the character
ids of data/tinyshakespeare, and the final validation loss over the whole val split is printed beside nanoGPT's
published 1.88. It needs only torch, numpy and the model and training modules (no pipeline stages), so it runs on
a bare GPU machine. MFU uses the dense bf16 peak of the GPU (H100/H200 SXM: 989 TFLOP/s, H100 PCIe: 756) and
the FLOP count of `GPT.flops_per_token` (6 N + 12 L C T).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from llm_core.model import GPT, GPTConfig
from llm_core.train import DistEnv, LoopSettings, OptimSection, Trainer
from llm_core.train.data import RandomWindowBatches, TokenWindows
from llm_core.train.evaluation import LMEvaluator
from llm_core.train.pretrain import next_token_loss

# dense bf16 peaks (no sparsity), the most specific name first: PCIe H100s are clocked lower than SXM ones
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0}
SHAKESPEARE = Path(__file__).resolve().parents[1] / "data/tinyshakespeare/input.txt"


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def shakespeare_chars() -> tuple[np.ndarray, np.ndarray, str]:
    text = SHAKESPEARE.read_text(encoding="utf-8")
    chars = "".join(sorted(set(text)))
    lookup = {c: i for i, c in enumerate(chars)}
    ids = np.array([lookup[c] for c in text], dtype=np.uint16)
    cut = int(0.9 * len(ids))
    return ids[:cut], ids[cut:], chars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", action="store_true", help="nanoGPT's shakespeare-char setting, real data")
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--mlp", default="gelu", choices=["gelu", "swiglu", "relu2"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(1337)

    evaluator = None
    if args.reference:
        train, val, chars = shakespeare_chars()
        config = GPTConfig(vocab_size=len(chars), block_size=64, n_layer=4, n_head=4, n_embd=128)
        batch, steps, lr, min_lr, warmup, betas = 12, 2000, 1e-3, 1e-4, 100, (0.9, 0.99)
        evaluator = LMEvaluator(val, 64, len(val) - 1, 256, special_ids=[], decode=lambda ids: "")
    else:
        config = GPTConfig.from_depth(args.depth, vocab_size=args.vocab, block_size=args.block, mlp=args.mlp)
        train = np.random.default_rng(0).integers(0, args.vocab, size=50_000_000, dtype=np.uint32)
        batch, steps, lr, min_lr, warmup, betas = args.batch, args.steps, 6e-4, 6e-5, 10, (0.9, 0.95)

    model = GPT(config).to(device)
    windows = TokenWindows.from_arrays([train], config.block_size)
    settings = LoopSettings(max_steps=steps, log_every=10, seed=1337, tokens_per_step=batch * config.block_size,
                            compile=args.compile)
    optim = OptimSection(lr=lr, min_lr=min_lr, warmup_steps=warmup, beta1=betas[0], beta2=betas[1])
    trainer = Trainer(model, optim, RandomWindowBatches(windows, batch, 1, seed=1337), next_token_loss, settings,
                      DistEnv(0, 1, 0, device), evaluate=evaluator)
    t0 = time.perf_counter()
    history = trainer.fit()
    wall = time.perf_counter() - t0

    tps = history.tokens_per_s()
    flops = model.flops_per_token() * tps
    peak = peak_tflops(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{where}, torch {torch.__version__}, {'compiled' if args.compile else 'eager'}, "
          f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}")
    print(f"model: {config.n_layer} layers, {config.n_embd} wide, {config.n_head} heads, block {config.block_size}, "
          f"vocab {config.vocab_size}, {model.num_params():,} parameters; batch {batch} x {config.block_size} tokens")
    print(f"steps {steps}, wall {wall:.1f} s, train loss {history.train[-1]['loss']:.4f}")
    print(f"throughput {tps:,.0f} tokens/s, {flops / 1e12:.1f} TFLOP/s"
          + (f", MFU {100 * flops / (peak * 1e12):.1f}% of {peak:.0f} TFLOP/s bf16" if peak else ""))
    if history.evals:
        print(f"val loss {history.evals[-1]['val_loss']:.4f} (nanoGPT: 1.88 published, 1.8857 measured on CPU)")


if __name__ == "__main__":
    main()

"""nanoGPT's CPU shakespeare-char baseline through this project's stages, side by side with nanoGPT's figures.

    python bench/pretrain_reference.py                      # configs/shakespeare_char.yaml, 2000 steps, eager
    python bench/pretrain_reference.py --compile            # torch.compile
    python bench/pretrain_reference.py --set pretrain.device=cuda

Runs `bpe` (kind char), `tokenize` (nanoGPT's 90/10 split) and `pretrain` into a fresh artifact root, then prints
our validation loss at the final step and our training throughput (tokens/s, evaluation time left out) beside
the published 1.88 and nanoGPT measured on a 2-core CPU machine (1.8857 at step
2000, about 21,000 tokens/s eager, 24,000 with torch.compile).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

import torch

from llm_core.config import load_config
from llm_core.pipeline import plan
from llm_core.registry import STAGES
from llm_core.stage import run_stage

NANOGPT = {"published_val_loss": 1.88, "measured_val_loss": 1.8857, "eager_tokens_per_s": 21_000,
           "compiled_tokens_per_s": 24_000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/shakespeare_char.yaml")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--root", default=None, help="artifact root (default: a fresh temporary folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    args = parser.parse_args()
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

    mode = "compiled" if args.compile else "eager"
    peer_speed = NANOGPT[f"{mode}_tokens_per_s"]
    print(f"\nshakespeare-char, {int(m['steps'])} steps, {int(m['params']):,} parameters, {config.pretrain.device}, "
          f"{torch.get_num_threads()} threads, {mode}")
    print(f"{'':28}{'val loss':>10}{'tokens/s':>12}")
    print(f"{'nanoGPT README (published)':28}{NANOGPT['published_val_loss']:>10.4f}{'':>12}")
    print(f"{'nanoGPT measured, 2-core CPU':28}{NANOGPT['measured_val_loss']:>10.4f}{peer_speed:>12,}")
    print(f"{'this project':28}{m['val_loss']:>10.4f}{m['tokens_per_s']:>12,.0f}")
    print(f"\nval bits/byte {m['val_bpb']:.4f}, unigram baseline {m['unigram_entropy']:.4f} nats, "
          f"{m['flops_per_token'] * m['tokens_per_s'] / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()

"""Compression and encoding speed of the trained tokenizer, side by side with GPT-2 and cl100k (GPT-4).

Trains the `bpe` stage of a config (default: configs/tiny.yaml) on its curated text sources only (the web stages
are switched off, so the figure does not depend on what the sample crawl kept), at each `--vocab-size`, and prints:

- bytes per token on the stage's held-back text, per language (every source of the language mixed) and per source,
  and on the fixed reference text (WikiText-2 test, which nothing trains on) (higher = fewer tokens for the same
  text); the smallest swept vocabulary that does not lose to GPT-2 on English is named;
- encoding throughput (MB of UTF-8 per second, 2 runs, best) over all the curated text: the trained vocabulary
  through tiktoken (what the pipeline uses), the same through `tokenizers`' `encode_batch`, and cl100k in tiktoken.

    .venv/bin/python bench/tokenizer_compression.py --vocab-size 4096 8192 16384
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.registry import STAGES
from llm_core.stage import run_stage
from llm_core.store import ArtifactStore
from llm_core.tokenizer import load_tokenizer
from llm_core.tokenizer.reference import cl100k_encoding

WEB_STAGES = ("crawl", "extract", "filter")


def throughput(encode_batch: Callable[[list[str]], list[list[int]]], texts: list[str]) -> float:
    size = sum(len(t.encode("utf-8")) for t in texts)
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        encode_batch(texts)
        best = min(best, time.perf_counter() - t0)
    return size / best / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--vocab-size", type=int, nargs="+", default=[8192])
    args = parser.parse_args()

    off = [f"{s}.enabled=false" for s in WEB_STAGES if s in STAGES]
    compression, speed = [], []
    with tempfile.TemporaryDirectory() as root:
        for vocab_size in args.vocab_size:
            config = load_config(args.config, [*off, f"run.artifact_root={root}", f"bpe.vocab_size={vocab_size}"])
            ctx = plan(config, ["bpe"])["bpe"]
            t0 = time.perf_counter()
            manifest, _ = run_stage(STAGES["bpe"], ctx)
            train_s = time.perf_counter() - t0
            tables = manifest.extra["tables"]
            for row in tables["compression_by_source"]:
                compression.append({"vocab": vocab_size, **row, "text": f"  {row['language']} {row['source']}"})
            for row in tables["compression"]:
                compression.append({"vocab": vocab_size, **row, "text": f"{row['language']} held-back"})
            for row in tables.get("reference_compression", []):
                compression.append({"vocab": vocab_size, **row, "text": f"en {row['text']}"})
            tok = load_tokenizer(ArtifactStore(root).reader(ctx.output))
            texts = [d for s in config.bpe.sources for d in s.documents() if d.strip()]
            cl100k = cl100k_encoding(config.bpe.reference_vocab_dir)
            speed.append({
                "vocab": vocab_size,
                "train_s": train_s,
                "ours_tiktoken": throughput(tok.encode_batch, texts),
                "ours_tokenizers": throughput(tok.encode_slow_batch, texts),
                "cl100k_tiktoken": throughput(cl100k.encode_ordinary_batch, texts),
            })

    print("bytes per token (higher is better): held-back text per source and per language, and the reference")
    print(f"{'vocab':>6} {'text':<28} {'bytes':>9} {'ours':>6} {'GPT-2':>6} {'cl100k':>6}")
    for r in compression:
        print(f"{r['vocab']:>6} {r['text']:<28} {r['bytes']:>9} "
              f"{r['ours']:>6.3f} {r['gpt2']:>6.3f} {r['cl100k']:>6.3f}")
    english = [r for r in compression if r["text"].startswith("en ")]
    for text in sorted({r["text"] for r in english}):
        even = [r["vocab"] for r in english if r["text"] == text and r["ours"] >= r["gpt2"]]
        verdict = f"from {min(even)} ids on" if even else "at none of the swept sizes"
        print(f"ours matches GPT-2 on {text.removeprefix('en ')} {verdict}")
    print("\nencoding throughput, MB/s (all curated text), and bpe stage wall time")
    print(f"{'vocab':>6} {'train s':>8} {'ours/tiktoken':>14} {'ours/tokenizers':>16} {'cl100k/tiktoken':>16}")
    for r in speed:
        print(f"{r['vocab']:>6} {r['train_s']:>8.1f} {r['ours_tiktoken']:>14.2f} {r['ours_tokenizers']:>16.2f} "
              f"{r['cl100k_tiktoken']:>16.2f}")


if __name__ == "__main__":
    main()

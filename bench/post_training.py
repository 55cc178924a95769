"""Time the post-training stages (sft_data -> sft -> reward_data -> reward -> rlhf -> report) on a config's settings.

Starts from a committed tokenizer (`bpe` artifact folder) and either a committed base model (`--pretrain`) or, to
time the stages alone, a randomly initialised base of the config's `pretrain.model` shape (the work per step is the
same; only the figures of the models differ). Prints seconds per stage and its headline metrics.

    .venv/bin/python bench/post_training.py --bpe artifacts/bpe/KEY [--pretrain artifacts/pretrain/KEY]
        [--config configs/tiny.yaml] [--root /tmp/post-bench]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from llm_core.model import GPT
from llm_core.pipeline import input_sources
from llm_core.pipeline_config import load_config
from llm_core.registry import STAGES
from llm_core.stage import StageContext, run_stage
from llm_core.store import ArtifactStore
from llm_core.tokenizer import load_tokenizer
from llm_core.train.model_files import save_model_files

HEADLINE = {"sft": ["val_loss", "ends_with_im_end"], "reward": ["accuracy/all", "length_baseline/all"],
            "rlhf": ["before_reward", "after_reward", "after_kl", "after_finished"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bpe", required=True, help="a committed bpe artifact folder")
    ap.add_argument("--pretrain", help="a committed pretrain artifact folder (default: random base of the shape)")
    ap.add_argument("--config", default="configs/tiny.yaml")
    ap.add_argument("--root", default="/tmp/post-bench")
    args = ap.parse_args()
    cfg = load_config(args.config, [f"run.artifact_root={args.root}"])
    store = ArtifactStore(args.root)
    refs = {}
    for stage, folder in (("bpe", args.bpe), ("pretrain", args.pretrain)):
        if folder:
            src = Path(folder)
            refs[stage] = store.ref(stage, src.name)
            if not store.is_committed(refs[stage]):
                shutil.copytree(src, Path(args.root) / stage / src.name)
    if "pretrain" not in refs:
        tokenizer = load_tokenizer(store.reader(refs["bpe"]))
        refs["pretrain"] = store.ref("pretrain", "randombase")
        if not store.is_committed(refs["pretrain"]):
            torch.manual_seed(0)
            writer = store.writer(refs["pretrain"])
            save_model_files(writer, GPT(cfg.pretrain.model.gpt_config(tokenizer.vocab_size)))
            writer.commit(version="bench", config={}, inputs={"tokenizer": str(refs["bpe"])})
    total = 0.0
    print(f"{'stage':12} {'seconds':>8}  figures")
    for name in ("sft_data", "sft", "reward_data", "reward", "rlhf", "report"):
        if not cfg.is_enabled(name):
            continue
        stage = STAGES[name]
        inputs = {k: refs[v] for k, v in input_sources(cfg, name).items()}
        ctx = StageContext(stage=name, config=cfg.section(name), run=cfg.run, inputs=inputs,
                           output=store.ref(name, f"bench-{cfg.run.name}"))
        t0 = time.perf_counter()
        manifest, hit = run_stage(stage, ctx)
        seconds = time.perf_counter() - t0 if not hit else manifest.timings.get("seconds", 0.0)
        total += seconds
        refs[name] = ctx.output
        figures = ", ".join(f"{k} {manifest.metrics[k]:.3f}" for k in HEADLINE.get(name, []) if k in manifest.metrics)
        print(f"{name:12} {seconds:8.1f}  {figures}", flush=True)
    print(f"{'total':12} {total:8.1f}")


if __name__ == "__main__":
    main()

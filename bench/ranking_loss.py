"""Reward models learning from K-wise human rankings, three ways side by side: the peer's way (TRL's RewardTrainer,
and this project before rankings: each ranking cut into independent pairs, `pairs`), InstructGPT's (all K-choose-2
pairs of a prompt in one batch element, `all_pairs`) and Plackett-Luce over the whole order (`plackett_luce`).

Data: the real human rankings in data/oasst/en_80_tree.jsonl (OpenAssistant sibling replies with ranks; K = 2..9,
mostly 3), split by prompt (`--heldout` share held out). Model: the reward trunk is the tiny pipeline's SFT model
(an `sft` artifact and its `bpe` tokenizer in `--artifacts`, e.g. after `make run`). The three trainers start from
the same weights and seed and take turns in blocks of `--block` steps, so machine load falls on all three alike;
each block is timed and the median ms per step reported, with held-out pair accuracy and top-1 accuracy at the
end (mean over `--seeds`).

    .venv/bin/python bench/ranking_loss.py --artifacts ./artifacts
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from llm_core.chat.loaders import oasst_rankings, read_records
from llm_core.chat.mixture import is_validation
from llm_core.preference.rankings import Judgement, RankItem, ranking_row
from llm_core.preference.reward_model import ScalarHeadModel
from llm_core.preference.reward_stage import (
    RewardConfig,
    comparison_batch,
    comparison_loss_fn,
    evaluate_rankings,
    ranking_comparisons,
)
from llm_core.sft.batches import LengthBucketBatches
from llm_core.store import ArtifactStore
from llm_core.tokenizer import load_tokenizer
from llm_core.train.distributed import init_distributed
from llm_core.train.model_files import load_gpt
from llm_core.train.trainer import LoopSettings, Trainer

LOSSES = ("pairs", "all_pairs", "plackett_luce")


def human_rankings(path: str) -> list[dict]:
    rows = []
    for record in read_records(path):
        for prompt, replies in oasst_rankings(record["prompt"]):
            tiers = [[i] for i in range(len(replies))]
            rows.append(ranking_row(RankItem(prompt, replies, "oasst"), Judgement("ranked", tiers, "oasst")))
    return rows


def trainer_for(loss: str, sft, tokenizer, train: list[dict], args, seed: int) -> Trainer:
    torch.manual_seed(seed)
    model = ScalarHeadModel.from_sft(sft)
    cfg = RewardConfig(max_steps=args.steps, batch_size=args.batch, ranking_loss=loss, device="cpu")
    comparisons = ranking_comparisons(tokenizer, train, model.gpt.config.block_size, loss)
    batches = LengthBucketBatches([max(len(r) for r in c.rows) for c in comparisons], cfg.batch_size, seed,
                                  lambda idx: comparison_batch([comparisons[i] for i in idx], tokenizer.eot_id))
    env = init_distributed("cpu")
    return Trainer(model, cfg.optim, batches, comparison_loss_fn(loss, 0.0, 0.0),
                   LoopSettings(max_steps=cfg.max_steps, eval_every=0, checkpoint_every=0, log_every=10**9, seed=seed),
                   env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", default="./artifacts", help="artifact root holding an sft and a bpe artifact")
    ap.add_argument("--data", default="data/oasst/en_80_tree.jsonl")
    ap.add_argument("--heldout", type=float, default=0.25)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=8, help="comparisons per step")
    ap.add_argument("--block", type=int, default=5, help="steps per turn")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    store = ArtifactStore(args.artifacts)
    sft_ref, bpe_ref = store.latest("sft"), store.latest("bpe")
    if sft_ref is None or bpe_ref is None:
        raise SystemExit(f"no sft/bpe artifact under {args.artifacts}: run the pipeline to sft first")
    sft, tokenizer = load_gpt(store.reader(sft_ref)).eval(), load_tokenizer(store.reader(bpe_ref))
    rows = human_rankings(args.data)
    held = [r for r in rows if is_validation(r["prompt_id"], args.heldout, 0)]
    train = [r for r in rows if not is_validation(r["prompt_id"], args.heldout, 0)]
    k = statistics.mean(len(r["answers"]) for r in rows)
    print(f"{len(rows)} human rankings (mean K {k:.2f}): {len(train)} train, {len(held)} held out; "
          f"model {sft_ref}, {args.steps} steps x {args.batch} comparisons, {args.seeds} seeds, blocks of {args.block}")

    ms: dict[str, list[float]] = {loss: [] for loss in LOSSES}
    scores: dict[str, list[dict]] = {loss: [] for loss in LOSSES}
    for seed in range(args.seeds):
        trainers = {loss: trainer_for(loss, sft, tokenizer, train, args, seed) for loss in LOSSES}
        for start in range(0, args.steps, args.block):
            for loss, trainer in trainers.items():
                t0 = time.perf_counter()
                for _ in range(min(args.block, args.steps - start)):
                    trainer.train_step()
                ms[loss].append(1000 * (time.perf_counter() - t0) / min(args.block, args.steps - start))
        for loss, trainer in trainers.items():
            scores[loss].append(evaluate_rankings(trainer.model, tokenizer, held))

    untrained = evaluate_rankings(ScalarHeadModel.from_sft(sft), tokenizer, held)
    print(f"\n{'loss':<15}{'ms/step (median)':>18}{'rows/step':>11}{'pairs/step':>12}{'ms/pair':>9}"
          f"{'held-out pair acc':>19}{'held-out top-1':>16}")
    print(f"{'untrained head':<15}{'-':>18}{'-':>11}{'-':>12}{'-':>9}{untrained['rankings/pair_accuracy']:>19.3f}"
          f"{untrained['rankings/top1_accuracy']:>16.3f}")
    for loss in LOSSES:
        acc = statistics.mean(s["rankings/pair_accuracy"] for s in scores[loss])
        top1 = statistics.mean(s["rankings/top1_accuracy"] for s in scores[loss])
        comparisons = ranking_comparisons(tokenizer, train, sft.config.block_size, loss)
        rows = args.batch * statistics.mean(len(c.rows) for c in comparisons)
        pairs = args.batch * statistics.mean(
            sum(a < b for a in c.tiers for b in c.tiers) for c in comparisons)
        step = statistics.median(ms[loss])
        print(f"{loss:<15}{step:>18.1f}{rows:>11.1f}{pairs:>12.1f}{step / pairs:>9.1f}{acc:>19.3f}{top1:>16.3f}")


if __name__ == "__main__":
    main()

"""A micro config: configs/tiny.yaml with its enabled stages kept but their inputs and sizes cut down, so a whole
pipeline run through a Prefect server (tests, the UI check, the scale-out benchmark) takes seconds of work.

It follows tiny.yaml: stages added there run here too; only the stages named in `MICRO_OVERRIDES` are shrunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_core.pipeline_config import PipelineConfig, load_config
from llm_core.registry import STAGES

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"

# stage -> overrides applied when the stage is registered: one sample WARC file (about 30 pages) in place of all,
# a one-layer model, a few steps of each training stage, a few generated conversations (tool ones too) and
# preference pairs.
MICRO_OVERRIDES: dict[str, list[str]] = {
    "crawl": ["crawl.warc=[data/warc/resiliparse_cc_warcfile.dev.warc.gz]", "crawl.html_dirs=[]"],
    "bpe": ["bpe.vocab_size=512"],
    "pretrain": ["pretrain.model={n_layer: 1, n_head: 2, n_embd: 32, block_size: 128}", "pretrain.batch_size=4",
                 "pretrain.max_steps=4", "pretrain.eval_every=0", "pretrain.eval_tokens=1024",
                 "pretrain.optim.warmup_steps=1", "pretrain.sample_tokens=4"],
    "sft_data": [("sft_data.sources=[{kind: identity, count: 40}, {kind: arithmetic, count: 40}, "
                  "{kind: python_tool, count: 10}, {kind: search_tool, path: data/tools/facts.jsonl, count: 10}]"),
                 "sft_data.val_fraction=0.2"],
    "sft": ["sft.max_steps=2", "sft.batch_size=4", "sft.eval_every=0", "sft.eval_conversations=4",
            "sft.sample_prompts=1", "sft.sample_tokens=4", "sft.optim.warmup_steps=1"],
    "rank": ["rank.prompts=2", "rank.answers=2", "rank.max_tokens=4"],
    "reward_data": ["reward_data.sources=[{kind: keyword, count: 40}, {kind: rankings}]"],
    "reward": ["reward.max_steps=2", "reward.batch_size=4", "reward.eval_every=0", "reward.eval_pairs=4",
               "reward.normalise_prompts=2", "reward.sample_tokens=4", "reward.optim.warmup_steps=1"],
    "rlhf": ["rlhf.iterations=1", "rlhf.max_tokens=4", "rlhf.eval_prompts=2", "rlhf.eval_samples=1",
             "rlhf.ppo.prompts_per_iteration=2", "rlhf.ppo.minibatch_size=2", "rlhf.ppo.ppo_epochs=1"],
    "eval": ["eval.known_questions=4", "eval.gsm8k_problems=0", "eval.max_tokens=4", "eval.bpb_tokens=512",
             "eval.mc_items=4", "eval.tool_items=2", "eval.tool_max_tokens=8"],
    "report": ["report.sample_chats=1"],
}


def micro_overrides(extra: list[str] | None = None) -> list[str]:
    return [o for stage, items in MICRO_OVERRIDES.items() if stage in STAGES for o in items] + (extra or [])


def micro_config(artifact_root: str, storage_options: dict[str, Any] | None = None,
                 extra: list[str] | None = None, targets: list[str] | None = None) -> PipelineConfig:
    """The micro config writing to `artifact_root`. With `targets`, stages after the last target are disabled
    (e.g. the data stages only)."""
    config = load_config(TINY, micro_overrides(extra))
    run = config.run.model_copy(update={"artifact_root": artifact_root, "storage_options": storage_options or {}})
    config = config.model_copy(update={"run": run})
    if targets:
        order = list(STAGES)
        last = max(order.index(t) for t in targets)
        for name in order[last + 1:]:
            config = config.model_copy(update={name: config.section(name).model_copy(update={"enabled": False})})
    return config

"""A store holding what the `rank` stage reads (a `bpe` tokenizer and an `sft` model artifact), built in a second.

The model is a freshly initialised 1-layer GPT: at temperature 1 it writes distinct answers, which is all the rank
stage needs from it (what the answers say does not matter to the ranking mechanics under test).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from post_fixtures import chat_tokenizer

from llm_core.config import RunConfig
from llm_core.model import GPT, GPTConfig
from llm_core.pipeline import make_context
from llm_core.pipeline_config import PipelineConfig
from llm_core.preference.rank_stage import RankConfig
from llm_core.stage import StageContext
from llm_core.store import ArtifactRef, ArtifactStore
from llm_core.tokenizer.artifact import save_tokenizer
from llm_core.train.model_files import save_model_files

PROMPTS = ["What is a watermelon?", "Name a colour.", "How do birds fly?", "Why is the sky blue?",
           "Tell me a joke.", "What is 2 + 2?"]


def committed(store: ArtifactStore, stage: str, key: str, fill, inputs: dict | None = None) -> ArtifactRef:
    ref = store.ref(stage, key)
    if not store.is_committed(ref):
        writer = store.writer(ref)
        fill(writer)
        writer.commit(version="test", config={}, inputs=inputs or {})
    return ref


def model_inputs(root: Path) -> dict[str, ArtifactRef]:
    """`sft` and `tokenizer` artifacts in the store at `root`."""
    store = ArtifactStore(str(root))
    tok = chat_tokenizer()

    def fill_model(writer) -> None:
        torch.manual_seed(0)
        save_model_files(writer, GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2,
                                               n_embd=32)))

    tokenizer = committed(store, "bpe", "testtokenizer", lambda w: save_tokenizer(w, tok))
    return {"tokenizer": tokenizer, "sft": committed(store, "sft", "testrandomgpt", fill_model, {"tokenizer": tokenizer})}


def prompts_file(path: Path, prompts: list[str] = PROMPTS) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in prompts), encoding="utf-8")
    return path


def rank_context(root: Path, **rank: object) -> StageContext:
    """The rank stage's context over the test store, with `rank` settings over small defaults (4 prompts, K=3,
    batches of 2, short answers)."""
    settings = {"enabled": True, "prompts_path": str(prompts_file(root / "prompts.jsonl")), "prompts": 4,
                "answers": 3, "max_tokens": 8, "batch_size": 2, "labeler": "model", "poll_s": 1, **rank}
    config = PipelineConfig(run=RunConfig(artifact_root=str(root / "artifacts"), retries=0),
                            rank=RankConfig(**settings))
    return make_context(config, "rank", model_inputs(root / "artifacts"))

"""A model to chat with, by artifact key: the model with the tokenizer of its lineage, and the tools of its chat."""

from __future__ import annotations

import torch

from llm_core.model import GPT
from llm_core.store import ArtifactRef, ArtifactStore
from llm_core.tokenizer import Tokenizer, load_tokenizer
from llm_core.tools.base import Tool, ToolInputs
from llm_core.train.model_files import load_gpt

CHAT_MODEL_STAGES = ("pretrain", "sft", "rlhf")


def load_chat_model(store: ArtifactStore, key: str, device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer, str]:
    """A chat-capable model artifact (`pretrain`, `sft` or `rlhf`) by key, key prefix or 'stage/key', with the
    tokenizer found in its lineage. Returns (model, tokenizer, 'stage/key')."""
    ref = store.find(key)
    if ref.stage not in CHAT_MODEL_STAGES:
        raise ValueError(f"{ref} is a {ref.stage!r} artifact; chat needs one of {CHAT_MODEL_STAGES}")
    tokenizers = [m for _, m in store.lineage(ref) if m.stage == "bpe"]
    if not tokenizers:
        raise ValueError(f"no bpe (tokenizer) artifact in the lineage of {ref}")
    tokenizer = load_tokenizer(store.reader(store.ref("bpe", tokenizers[0].key)))
    return load_gpt(store.reader(ref), device=device).eval(), tokenizer, str(ref)


def index_for(store: ArtifactStore, model: str) -> ArtifactRef | None:
    """The newest committed `index` artifact (the chat's search tool) built from documents the model `'stage/key'`
    was trained on: one of the index's inputs is in the model's lineage. None when there is none."""
    lineage = {f"{m.stage}/{m.key}" for _, m in store.lineage(store.find(model))}
    built = [m for m in store.list("index") if set(m.inputs.values()) & lineage]
    return store.ref("index", built[-1].key) if built else None


def chat_tools(store: ArtifactStore, model: str) -> list[Tool]:
    """The tools of a chat with `model` ('stage/key'), from the registry: Python, and search over the index of its
    documents if built."""
    from llm_core.tools.registry import open_tools  # here, not at the top: the CLI imports this module at start

    index = index_for(store, model)
    return open_tools(ToolInputs(index=store.reader(index) if index is not None else None))

"""Shared, built-once objects for the post-training tests: a small chat tokenizer and a tiny SFT model.

Builders are cached per process (`lru_cache`), so every test module that imports them shares one copy.
"""

from __future__ import annotations

from functools import lru_cache

from llm_core.chat.loaders import load_oasst
from llm_core.chat.synthetic import (
    arithmetic_conversations,
    identity_conversations,
    keyword_conversations,
    refusal_conversations,
)
from llm_core.tokenizer.base import SPECIAL_TOKENS
from llm_core.tokenizer.bpe import BpeTokenizer, train_bpe
from conftest import DATA


@lru_cache(maxsize=1)
def chat_tokenizer() -> BpeTokenizer:
    """A 512-token byte-level BPE trained on the conversation sources (real oasst text plus generated sets)."""
    samples = [
        *load_oasst(str(DATA / "oasst" / "en_80_tree.jsonl")),
        *arithmetic_conversations(200, 0),
        *keyword_conversations(200, 0),
        *identity_conversations("Tinychat", "the llm-pipeline project", 100, 0),
        *refusal_conversations(100, 0),
    ]
    texts = [m["content"] for s in samples for m in s.messages] + ["system user assistant"]
    return BpeTokenizer(train_bpe(texts, 512, SPECIAL_TOKENS))

"""Shared, built-once objects for the post-training tests: a small chat tokenizer and a tiny SFT model.

Builders are cached per process (`lru_cache`), so every test module that imports them shares one copy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache

import torch
from conftest import DATA

from llm_core.chat.loaders import load_oasst
from llm_core.chat.synthetic import (
    arithmetic_conversations,
    identity_conversations,
    keyword_conversations,
    refusal_conversations,
)
from llm_core.tokenizer.base import SPECIAL_TOKENS
from llm_core.tokenizer.bpe import BpeTokenizer, train_bpe


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


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Tiny models train as fast on one thread, and a busy shared machine makes two threads much slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@lru_cache(maxsize=1)
@single_thread()
def tiny_sft_model():
    """A 2-layer, 128-wide GPT fine-tuned from scratch on generated chats (addition, half of it answered with a hedge; keyword
    sentences, half of them with the requested word; identity): the policy the reward-model and RL tests start
    from. Returns (model, tokenizer)."""
    from llm_core.model import GPT, GPTConfig
    from llm_core.sft.stage import SftConfig, train_sft
    from llm_core.train.pretrain_config import OptimSection

    tok = chat_tokenizer()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=96, n_layer=2, n_head=4, n_embd=128))
    train = [s.messages for s in sft_training_set()]
    cfg = SftConfig(max_steps=SFT_STEPS, batch_size=32, eval_every=0, device="cpu", checkpoint_every=0,
                    optim=OptimSection(lr=3e-3, min_lr=3e-4, weight_decay=0.0, warmup_steps=20))
    train_sft(model, tok, train, train[:64], cfg, seed=0)
    return model.eval(), tok


SFT_STEPS = 600  # enough for the model to answer most additions right when it commits (about 0.8 at temperature 1)
MAX_OPERAND = 4  # addition of 0..4: single-digit sums, learnable by a 2-layer model in a few hundred steps
HELD_BACK_SEED = 999  # generated prompts for evaluation use this seed; training sets use small seeds


def sft_training_set():
    return [
        *arithmetic_conversations(300, 1, max_operand=MAX_OPERAND, hedge_share=0.5, hold_out=False),
        *keyword_conversations(300, 2, keyword_share=0.5),
        *identity_conversations("Tinychat", "the llm-pipeline project", 60, 3),
    ]


@lru_cache(maxsize=1)
@single_thread()
def tiny_reward_model():
    """A reward model on the tiny SFT trunk, trained on the keyword preference, normalised on SFT samples.
    Returns (model, tokenizer, held-back pairs)."""
    from dataclasses import asdict

    from llm_core.chat.engine import Engine, SamplingParams
    from llm_core.chat.synthetic import keyword_pairs
    from llm_core.preference.reward_model import ScalarHeadModel
    from llm_core.preference.reward_stage import (
        RewardConfig,
        normalise_on_samples,
        train_reward_model,
    )
    from llm_core.rl.verifiable_rewards import keyword_task
    from llm_core.train.pretrain_config import OptimSection

    sft, tok = tiny_sft_model()
    torch.manual_seed(0)
    model = ScalarHeadModel.from_sft(sft)
    val = [asdict(p) for p in keyword_pairs(100, HELD_BACK_SEED)]
    cfg = RewardConfig(max_steps=120, batch_size=16, eval_every=0, device="cpu", checkpoint_every=0,
                       optim=OptimSection(lr=1e-3, min_lr=1e-4, weight_decay=0.0, warmup_steps=10))
    train_reward_model(model, tok, [asdict(p) for p in keyword_pairs(400, 5)], val, cfg, seed=0)
    prompts = [[{"role": "user", "content": p}] for p, _ in keyword_task(64, 11)]
    normalise_on_samples(model, Engine(sft, tok), tok, prompts, SamplingParams(max_tokens=32), seed=0)
    return model.eval(), tok, val

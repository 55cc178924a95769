"""SFT acceptance: a tiny model fine-tuned on chats ends its answers with <|im_end|> on held-back prompts."""

from __future__ import annotations

import pytest
from post_fixtures import (
    HELD_BACK_SEED,
    sft_training_set,
    single_thread,
    tiny_sft_model,
)

from llm_core.chat.engine import Engine, SamplingParams
from llm_core.chat.loaders import load_prompts
from llm_core.chat.synthetic import KEYWORD_PROMPTS, identity_conversations
from llm_core.sft.stage import answer_prompts


@pytest.mark.slow
def test_sft_model_ends_its_answers_on_held_back_prompts(data_dir):
    model, tok = tiny_sft_model()
    seen = {s.messages[0]["content"] for s in sft_training_set()}
    new_words = ["lemon", "tiger", "castle", "violin", "desert", "rocket", "pillow", "island", "wallet", "turtle"]
    held = [
        *[[{"role": "user", "content": t.format(kw=w)}] for w in new_words for t in KEYWORD_PROMPTS[:2]],
        *[[{"role": "user", "content": p}] for p in load_prompts(str(data_dir / "oasst" /
                                                                  "prompt_lottery_en_250_text.jsonl"))[:20]],
        *[s.messages[:1] for s in identity_conversations("Tinychat", "the llm-pipeline project", 10, HELD_BACK_SEED)],
    ]
    assert sum(c[0]["content"] not in seen for c in held) >= 40  # new keywords and real user prompts
    with single_thread():
        rows = answer_prompts(Engine(model, tok), tok, held, SamplingParams(max_tokens=48, temperature=1.0), seed=0)
    ended = sum(r["finished"] for r in rows) / len(rows)
    # 50 replies sampled at temperature 1 from a model trained for seconds: float rounding alone (the CPU kernels
    # against torch's ops) moves this by a reply (0.88 and 0.90 measured), so the bar sits below both
    assert ended >= 0.85, f"only {ended:.0%} of replies ended with <|im_end|>: {rows[:5]}"
    identity = [r["reply"] for r in rows[-10:]]
    assert sum("Tinychat" in r for r in identity) >= 3, identity  # a 2-layer model: the name, not always the rest

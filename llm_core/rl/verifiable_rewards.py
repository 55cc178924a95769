"""Verifiable rewards for RL, by name: a function of (prompt, completion, reference answer) -> reward in [0, 1].

- `exact_answer`: the completion's final answer (after `#### `, as GSM8K writes it; else its last number) equals the
  reference number. Used for GSM8K and for the addition task.
- `keyword`: the completion contains the word the prompt asked for (prompts of the form `... "word" ...`).

`TASKS` builds (prompt, reference) lists for the GRPO tasks: `arithmetic` (generated, seeded) and `gsm8k` (a file).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from llm_core.chat.loaders import load_gsm8k
from llm_core.chat.numbers import final_answer, same_number
from llm_core.chat.synthetic import (
    KEYWORD_PROMPTS,
    KEYWORDS,
    addition_problem,
    requested_keyword,
)

RewardFn = Callable[[str, str, str | None], float]

def exact_answer(prompt: str, completion: str, reference: str | None) -> float:
    got = final_answer(completion)
    return float(got is not None and reference is not None and same_number(got, reference))


def keyword(prompt: str, completion: str, reference: str | None) -> float:
    word = reference or requested_keyword(prompt)
    return float(bool(word) and re.search(rf"\b{re.escape(word)}\b", completion, re.IGNORECASE) is not None)


REWARDS: dict[str, RewardFn] = {"exact_answer": exact_answer, "keyword": keyword}


def get_reward(name: str) -> RewardFn:
    if name not in REWARDS:
        raise KeyError(f"unknown reward {name!r}; known: {sorted(REWARDS)}")
    return REWARDS[name]


def arithmetic_task(count: int, seed: int, max_operand: int, hold_out: bool = True) -> list[tuple[str, str]]:
    """(question, answer) addition problems; with `hold_out`, never the eval stage's held-out operand pairs."""
    rng = random.Random(seed)
    return [(q, str(a)) for q, a in (addition_problem(rng, max_operand, hold_out) for _ in range(count))]


def gsm8k_task(path: str, count: int) -> list[tuple[str, str]]:
    out = []
    for s in load_gsm8k(path):
        if s.reject is None:
            out.append((s.messages[0]["content"], final_answer(s.messages[1]["content"]) or ""))
        if len(out) >= count:
            break
    return out


def keyword_task(count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        kw = rng.choice(KEYWORDS)
        out.append((rng.choice(KEYWORD_PROMPTS).format(kw=kw), kw))
    return out

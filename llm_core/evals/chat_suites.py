"""The chat suites: what a chat model should have learned in SFT, asked in ways SFT never showed it.

| suite | items | correct when |
|---|---|---|
| `identity` | English phrasings of "who are you" absent from the SFT identity set (`data/eval/identity.jsonl`) | the reply names the configured assistant |
| `identity_other` | the same in languages and phrasings SFT never used | idem |
| `idk_made_up` | questions about made-up people, places, things (`data/eval/idk.jsonl`), names built from syllables no generator uses | the reply says it does not know |
| `idk_known` | questions from the SFT training split whose training answer is an answer (sums, keyword sentences, identity, real prompts) | the reply does not refuse (its complement is the over-refusal rate) |
| `sums_heldout` | every single-digit operand pair that no generated training set holds (`synthetic.is_heldout_sum`) | the reply's final number is the sum |
| `gsm8k` | GSM8K problems of the SFT data's held-back split | the final number equals the reference (GSM8K's `#### N`) |

Two rates are read off all of a model's replies: `im_end` (replies that end with `<|im_end|>`) and `special_leaks`
(replies that contain another special token). A reply that cannot be parsed (no number) is wrong, with its reason.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llm_core.chat.engine import Engine, SamplingParams
from llm_core.chat.numbers import final_answer, same_number
from llm_core.chat.splits import evenly_spaced
from llm_core.chat.synthetic import heldout_sums, sum_question
from llm_core.chat.template import render_prompt
from llm_core.config import ConfigError
from llm_core.evals.config import read_eval_file
from llm_core.evals.contamination import ContaminationIndex
from llm_core.evals.data import EvalData
from llm_core.evals.results import ItemOutcome, ResultRow, complement, rate_row
from llm_core.evals.suite import GPT_MODELS, Scored, Suite, SuiteReport
from llm_core.model import GPT
from llm_core.tokenizer.base import IM_END, Tokenizer

REFUSAL = re.compile(
    r"\b(i don'?t know|i do not know|i'?m not aware|i am not aware|not sure|no (reliable )?information|"
    r"can'?t find|cannot find|don'?t have (any )?information|never heard|hard to say|can'?t work (that|it) out)\b"
    r"|不知道|不清楚|没有.{0,6}信息",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    return REFUSAL.search(text) is not None


@dataclass(frozen=True)
class ChatItem:
    suite: str
    item_id: str
    prompt: str
    expected: str = ""
    entity: str | None = None
    decontaminate: bool = True  # False for items that are in training on purpose (idk_known)


def identity_items(path: str, name: str) -> list[ChatItem]:
    return [
        ChatItem("identity" if row.get("language", "en") == "en" else "identity_other", row["id"], row["prompt"], name)
        for row in read_eval_file(path, ("id", "prompt"))
    ]


def made_up_items(path: str) -> list[ChatItem]:
    return [ChatItem("idk_made_up", row["id"], row["prompt"], "I don't know", entity=row["entity"])
            for row in read_eval_file(path, ("id", "prompt", "entity"))]


def known_items(conversations: Sequence[list[dict]]) -> list[ChatItem]:
    """Single-turn training conversations whose answer is not itself a refusal or hedge."""
    out = []
    for i, messages in enumerate(conversations):
        user, answer = messages[0]["content"], messages[1]["content"]
        if not is_refusal(answer):
            out.append(ChatItem("idk_known", f"known-{i:04d}", user, answer[:200], decontaminate=False))
    return out


def sum_items(max_operand: int) -> list[ChatItem]:
    return [ChatItem("sums_heldout", f"sum-{a}-{b}", sum_question(a, b), str(a + b))
            for a, b in heldout_sums(max_operand)]


def gsm8k_items(conversations: Sequence[list[dict]]) -> list[ChatItem]:
    out = []
    for messages in conversations:
        reference = final_answer(messages[1]["content"])
        if reference is not None:
            out.append(ChatItem("gsm8k", f"gsm8k-{len(out):04d}", messages[0]["content"], reference))
    return out


def names_assistant(item: ChatItem, reply: str) -> tuple[bool, str]:
    ok = item.expected.lower() in reply.lower()
    return ok, "" if ok else "does not name the assistant"


def says_unknown(item: ChatItem, reply: str) -> tuple[bool, str]:
    ok = is_refusal(reply)
    return ok, "" if ok else "answers about an entity that does not exist"


def answers(item: ChatItem, reply: str) -> tuple[bool, str]:
    ok = not is_refusal(reply)
    return ok, "" if ok else "refuses a question answered in training"


def final_number(item: ChatItem, reply: str) -> tuple[bool, str]:
    got = final_answer(reply)
    if got is None:
        return False, "no number in the reply"
    ok = same_number(got, item.expected)
    return ok, "" if ok else f"final number {got}"


# each chat suite, in the order of its rows, and how one reply to its items is scored: (correct, reason), the reason
# saying why a reply is wrong or could not be parsed
SCORERS: dict[str, Callable[[ChatItem, str], tuple[bool, str]]] = {
    "identity": names_assistant, "identity_other": names_assistant, "idk_made_up": says_unknown,
    "idk_known": answers, "sums_heldout": final_number, "gsm8k": final_number,
}


def score(item: ChatItem, reply: str) -> tuple[bool, str]:
    """(correct, reason) of one reply to `item`."""
    return SCORERS[item.suite](item, reply)


IDENTITY_CONTROL_SUITES = ("idk_made_up", "sums_heldout", "gsm8k")


def encode_prompt(tokenizer: Tokenizer, prompt: str) -> list[int] | None:
    """The chat-template ids of a one-turn user prompt, or None when the tokenizer cannot encode it (a character
    vocabulary meeting an unseen character)."""
    try:
        return render_prompt(tokenizer, [{"role": "user", "content": prompt}])
    except ValueError:
        return None


def leaked_specials(ids: Sequence[int], tokenizer: Tokenizer) -> list[int]:
    """The special ids inside a reply's generated `ids`; the `<|im_end|>` or `<|endoftext|>` it stopped at is none."""
    stops = {tokenizer.special_ids[IM_END], tokenizer.eot_id}
    body = ids[:-1] if ids and ids[-1] in stops else ids
    specials = set(tokenizer.special_ids.values())
    return [t for t in body if t in specials]


def run_chat_suites(
    model_name: str, model: GPT, tokenizer: Tokenizer, items: Sequence[ChatItem], params: SamplingParams,
    samples: int, index: ContaminationIndex, seed: int, max_operand: int,
) -> tuple[list[ResultRow], list[ItemOutcome]]:
    """Every item answered `samples` times through the chat template; one results row per suite beside its
    baseline, plus the `<|im_end|>` and special-token-leak rates over all replies."""
    prompts = {i: ids for i, item in enumerate(items) if (ids := encode_prompt(tokenizer, item.prompt)) is not None}
    asked = list(prompts)
    generated = Engine(model, tokenizer).generate([prompts[i] for i in asked], params, n=samples, seed=seed)
    replies = dict(zip(asked, generated))
    by_suite: dict[str, list[ItemOutcome]] = defaultdict(list)
    finished, leaks = [], []
    for i, item in enumerate(items):
        why = index.reason(item.prompt, "", item.entity) if item.decontaminate else None
        if i not in replies:
            by_suite[item.suite].append(ItemOutcome(model_name, item.suite, item.item_id, item.prompt, "",
                                                    item.expected, False, "the tokenizer cannot encode the prompt",
                                                    why is not None))
            continue
        completions = replies[i]
        for k, c in enumerate(completions):
            ok, reason = score(item, c.text)
            item_id = item.item_id if samples == 1 else f"{item.item_id}#{k}"
            by_suite[item.suite].append(ItemOutcome(model_name, item.suite, item_id, item.prompt, c.text,
                                                    item.expected, ok, why or reason, why is not None))
            finished.append(ItemOutcome(model_name, "im_end", item_id, item.prompt, c.text, "<|im_end|>",
                                        c.finished, "" if c.finished else "no <|im_end|> within the bound"))
            leaked = leaked_specials(c.ids, tokenizer)
            leaks.append(ItemOutcome(model_name, "special_leaks", item_id, item.prompt, c.text, "", bool(leaked),
                                     f"{len(leaked)} special token(s)" if leaked else ""))
    name = next((i.expected for i in items if i.suite.startswith("identity")), "")
    control = [o for s in IDENTITY_CONTROL_SUITES for o in by_suite.get(s, [])]
    name_rate = sum(bool(name) and name.lower() in o.output.lower() for o in control) / max(len(control), 1)
    known = by_suite.get("idk_known", [])
    refusal_rate = sum(not o.correct for o in known) / max(len(known), 1)
    baselines = {
        "identity": (name_rate, "name in replies to other prompts"),
        "identity_other": (name_rate, "name in replies to other prompts"),
        "idk_made_up": (refusal_rate, "refusals of known questions"),
        "sums_heldout": (1 / (2 * max_operand + 1), "chance"),
        "gsm8k": (0.0, "chance"),
    }
    rows: list[ResultRow] = []
    for suite in SCORERS:
        outcomes = by_suite.get(suite, [])
        if not outcomes:
            continue
        if suite == "idk_known":
            rows.append(complement(rate_row(model_name, suite, "answered", outcomes), "over_refusal"))
            continue
        base, base_name = baselines[suite]
        rows.append(rate_row(model_name, suite, "accuracy", outcomes, baseline=base, baseline_name=base_name))
        if suite == "idk_made_up":
            rows.append(complement(rows[-1], "hallucination"))
    rows.append(rate_row(model_name, "im_end", "rate", finished))
    rows.append(rate_row(model_name, "special_leaks", "rate", leaks, higher_is_better=False))
    return rows, [o for outcomes in by_suite.values() for o in outcomes] + finished + leaks


class ChatSuites(Suite[list[ChatItem]]):
    """The chat suites of every GPT model, asked in one batch (the rates over all replies need them together)."""

    models = tuple(GPT_MODELS)
    report = SuiteReport(rows=(*SCORERS, "im_end", "special_leaks"))

    def items(self, data: EvalData) -> list[ChatItem]:
        cfg = data.config
        without_calls = [c for c in data.sft_train if not any(m.get("parts") for m in c)]  # tool questions: tools
        single_turn = [_thawed(m) for m in dict.fromkeys(map(_frozen, without_calls)) if len(m) == 2]
        gsm8k = [r["messages"] for r in data.sft_val if r["source"] == "gsm8k"]
        return ((identity_items(cfg.identity_file, data.assistant_name) if data.assistant_name else [])
                + made_up_items(cfg.made_up_file)
                + evenly_spaced(known_items(single_turn), cfg.known_questions)
                + sum_items(cfg.sums_max_operand)
                + gsm8k_items(evenly_spaced(gsm8k, cfg.gsm8k_problems)))

    def check_vocabulary(self, items: list[ChatItem], data: EvalData) -> None:
        by_file = {"identity": data.config.identity_file, "identity_other": data.config.identity_file,
                   "idk_made_up": data.config.made_up_file}
        for suite, path in by_file.items():
            asked = [i for i in items if i.suite == suite]
            if asked and all(encode_prompt(data.tokenizer, i.prompt) is None for i in asked):
                raise ConfigError(f"eval file {path}: no item of suite {suite!r} can be encoded by the tokenizer")

    def score(self, model_name: str, model: GPT, items: list[ChatItem], data: EvalData) -> Scored:
        cfg = data.config
        params = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature)
        return run_chat_suites(model_name, model, data.tokenizer, items, params, cfg.samples, data.indexes[model_name],
                               data.seed, cfg.sums_max_operand)


def _frozen(messages: list[dict]) -> tuple[tuple[str, str], ...]:
    return tuple((m["role"], m["content"]) for m in messages)


def _thawed(messages: tuple[tuple[str, str], ...]) -> list[dict]:
    return [{"role": r, "content": c} for r, c in messages]

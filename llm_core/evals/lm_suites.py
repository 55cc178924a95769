"""Language-model suites: bits per byte on held-out text, and multiple choice by log-likelihood.

- `bpb/{group}`: bits per UTF-8 byte on held-out text of each group (web and curated text, per language), the
  same measure as pretraining's validation (`LMEvaluator`), so models with different tokenizers compare.
- `mc/cloze` and `mc/next_sentence`: four-way multiple choice built from held-out English text (the last word of a
  sentence; the sentence that follows), scored as lm-eval-harness and CORE do: each choice's summed log-probability
  given the context, divided by its length in bytes (`acc_norm`), with `shots` solved examples before the question.
  Chance is 1/4.
- The standard sets load through the same `MCItem` shape (`standard_items`): HellaSwag (`ctx`, `endings`,
  `label`), ARC (`question`, `choices.text`, `answerKey`), PIQA (`goal`, `sol1`, `sol2`, `label`) and LAMBADA (`text`:
  the last word against three other last words), from a local JSON/JSONL/Parquet file or, with internet, a hub
  dataset name through `datasets`.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from llm_core.chat.loaders import read_records
from llm_core.evals.contamination import ContaminationIndex
from llm_core.evals.data import EvalData
from llm_core.evals.results import ItemOutcome, ResultRow, rate_row
from llm_core.evals.suite import GPT_MODELS, Scored, Suite, SuiteReport
from llm_core.model import GPT, IGNORE_INDEX
from llm_core.tokenizer.base import Tokenizer
from llm_core.train.evaluation import LMEvaluator

SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
LAST_WORD = re.compile(r"([^\W\d_]{3,})\W*$")  # the sentence's last word (letters only), before closing punctuation


@dataclass(frozen=True)
class MCItem:
    suite: str
    item_id: str
    context: str
    choices: tuple[str, ...]
    label: int


def bits_per_byte(model: GPT, tokenizer: Tokenizer, texts: Sequence[str], max_tokens: int) -> tuple[float, int]:
    """(bits per byte, tokens scored) on up to `max_tokens` tokens of `texts`, each followed by `<|endoftext|>`."""
    stream: list[int] = []
    for ids in tokenizer.encode_batch(list(texts)):
        stream += [*ids, tokenizer.eot_id]
        if len(stream) > max_tokens + 1:
            break
    block = model.config.block_size
    tokens = np.asarray(stream[: max_tokens + 1], dtype=np.int64)
    if len(tokens) <= block:
        return float("nan"), 0
    evaluator = LMEvaluator(tokens, block, max_tokens, 16, tokenizer.special_ids.values(), tokenizer.decode)
    return evaluator(model, 0)["val_bpb"], evaluator.num_targets


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE.split(text.replace("\n", " ")) if s.strip()]


def heldout_mc_items(texts: Iterable[str], count: int, seed: int) -> list[MCItem]:
    """`count` cloze and `count` next-sentence items from held-out English text, fixed by `seed`."""
    split = [sentences(t) for t in texts]
    pool = [s for ss in split for s in ss if 6 <= len(s.split()) <= 30 and "<unk>" not in s]
    pairs = [(a, b) for ss in split for a, b in zip(ss, ss[1:])
             if 6 <= len(a.split()) <= 30 and 4 <= len(b.split()) <= 30 and "<unk>" not in a + b]
    rng = random.Random(seed)
    items: list[MCItem] = []
    cut = [(m.group(1), s[: m.start(1)].rstrip()) for s in pool if (m := LAST_WORD.search(s))]
    last_words = sorted({w for w, _ in cut})
    for i, (word, context) in enumerate(rng.sample(cut, min(count, len(cut)))):
        candidates = [w for w in last_words if w.lower() != word.lower()]
        if len(candidates) < 3:
            break
        choices, label = shuffled([word, *rng.sample(candidates, 3)], rng)
        items.append(MCItem("mc/cloze", f"cloze-{i:04d}", context, tuple(" " + c for c in choices), label))
    others = [b for _, b in pairs]
    for i, (a, b) in enumerate(rng.sample(pairs, min(count, len(pairs)))):
        distractors = rng.sample([o for o in others if o != b], 3) if len(others) > 3 else []
        if not distractors:
            continue
        choices, label = shuffled([b, *distractors], rng)
        items.append(MCItem("mc/next_sentence", f"next-{i:04d}", a, tuple(" " + c for c in choices), label))
    return items


def shuffled(choices: list[str], rng: random.Random) -> tuple[list[str], int]:
    """The choices in random order and the new index of the first (correct) one."""
    order = list(range(len(choices)))
    rng.shuffle(order)
    return [choices[i] for i in order], order.index(0)


def standard_items(kind: str, path: str, limit: int, seed: int = 0) -> list[MCItem]:
    """Items of a standard multiple-choice set in its published format (see the module docstring)."""
    rows = list(read_records(path))
    out = []
    for i, r in enumerate(rows):
        item_id = f"{kind}-{i:05d}"
        if kind == "hellaswag":
            out.append(MCItem(f"mc/{kind}", item_id, r["ctx"], tuple(" " + e for e in r["endings"]), int(r["label"])))
        elif kind == "arc":
            labels = list(r["choices"]["label"])
            out.append(MCItem(f"mc/{kind}", item_id, f"Question: {r['question']}\nAnswer:",
                              tuple(" " + t for t in r["choices"]["text"]), labels.index(r["answerKey"])))
        elif kind == "piqa":
            out.append(MCItem(f"mc/{kind}", item_id, f"Question: {r['goal']}\nAnswer:",
                              (" " + r["sol1"], " " + r["sol2"]), int(r["label"])))
        elif kind == "lambada":
            words = [row["text"].rsplit(" ", 1)[-1] for row in rows]
            context, word = r["text"].rsplit(" ", 1)
            rng = random.Random(seed + i)
            distractors = rng.sample(sorted({w for w in words if w != word}), 3)
            choices, label = shuffled([word, *distractors], rng)
            out.append(MCItem(f"mc/{kind}", item_id, context, tuple(" " + c for c in choices), label))
        else:
            raise ValueError(f"unknown multiple-choice format {kind!r}; known: hellaswag, arc, piqa, lambada")
        if len(out) >= limit:
            break
    return out


def with_shots(item: MCItem, shots: Sequence[MCItem]) -> str:
    solved = "".join(f"{s.context}{s.choices[s.label]}\n\n" for s in shots)
    return solved + item.context


@torch.no_grad()
def choice_logprobs(model: GPT, rows: Sequence[tuple[list[int], list[int]]], pad_id: int, batch: int = 32) -> list[float]:
    """Summed log p(choice | context) for (context ids, choice ids) rows, contexts cut on the left to fit."""
    block = model.config.block_size
    out: list[float] = []
    device = next(model.parameters()).device
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        seqs = [(ctx + ch)[-(block + 1):] for ctx, ch in chunk]
        width = max(len(s) for s in seqs) - 1
        x = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        y = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
        for r, ((_, ch), seq) in enumerate(zip(chunk, seqs)):
            x[r, : len(seq) - 1] = torch.tensor(seq[:-1])
            n = min(len(ch), len(seq) - 1)
            y[r, len(seq) - 1 - n: len(seq) - 1] = torch.tensor(seq[len(seq) - n:])
        out += (-model.token_losses(x.to(device), y.to(device)).sum(dim=1)).tolist()
    return out


def answer_mc(model: GPT, tokenizer: Tokenizer, items: Sequence[MCItem], shots: int) -> list[int]:
    """The chosen index of every item by length-normalised log-likelihood; the shots are the items before it in
    the same suite (fixed, so every model sees the same prompts)."""
    rows, owners = [], []
    for i, item in enumerate(items):
        same = [s for s in items[:i] if s.suite == item.suite][-shots:] if shots else []
        context = tokenizer.encode(with_shots(item, same))
        for c in item.choices:
            rows.append((context, tokenizer.encode(c)))
            owners.append((i, len(c.encode("utf-8"))))
    scores = choice_logprobs(model, rows, tokenizer.eot_id)
    picked: dict[int, tuple[float, int]] = {}
    seen: dict[int, int] = {}
    for (i, nbytes), s in zip(owners, scores):
        c = seen[i] = seen.get(i, -1) + 1
        norm = s / max(nbytes, 1)
        if i not in picked or norm > picked[i][0]:
            picked[i] = (norm, c)
    return [picked[i][1] for i in range(len(items))]


def run_mc_suites(
    model_name: str, model: GPT, tokenizer: Tokenizer, items: Sequence[MCItem], shots: int, index: ContaminationIndex,
) -> tuple[list[ResultRow], list[ItemOutcome]]:
    """Accuracy per multiple-choice suite beside chance; contaminated items flagged and not scored."""
    picks = answer_mc(model, tokenizer, items, shots)
    by_suite: dict[str, list[ItemOutcome]] = defaultdict(list)
    chance: dict[str, float] = {}
    for item, pick in zip(items, picks):
        why = index.reason(item.context, item.choices[item.label])
        chance[item.suite] = 1 / len(item.choices)
        by_suite[item.suite].append(ItemOutcome(
            model_name, item.suite, item.item_id, item.context, item.choices[pick].strip(),
            item.choices[item.label].strip(), pick == item.label, why or "", why is not None))
    rows = [rate_row(model_name, suite, "acc_norm", outcomes, baseline=chance[suite], baseline_name="chance")
            for suite, outcomes in sorted(by_suite.items())]
    return rows, [o for outcomes in by_suite.values() for o in outcomes]


class BitsPerByte(Suite[dict[str, list[str]]]):
    """`bpb/{group}` of every GPT model on the held-out pretraining text."""

    models = tuple(GPT_MODELS)
    report = SuiteReport(rows=("bpb/",))

    def items(self, data: EvalData) -> dict[str, list[str]]:
        return data.heldout

    def score(self, model_name: str, model: GPT, items: dict[str, list[str]], data: EvalData) -> Scored:
        rows = []
        for group, texts in sorted(items.items()):
            bpb, n = bits_per_byte(model, data.tokenizer, texts, data.config.bpb_tokens)
            if n:
                rows.append(ResultRow(model_name, f"bpb/{group}", "bpb", bpb, n, higher_is_better=False))
        return rows, []


class MultipleChoice(Suite[list[MCItem]]):
    """`mc/...` of every GPT model: cloze and next sentence from held-out English text, then the standard sets."""

    models = tuple(GPT_MODELS)
    report = SuiteReport(rows=("mc/",))

    def items(self, data: EvalData) -> list[MCItem]:
        english = [t for g, texts in sorted(data.heldout.items()) if g.endswith("_en") for t in texts]
        items = heldout_mc_items(english, data.config.mc_items, data.seed)
        for task in data.config.standard_tasks:
            items += standard_items(task.kind, task.path, task.limit, data.seed)
        return items

    def score(self, model_name: str, model: GPT, items: list[MCItem], data: EvalData) -> Scored:
        return run_mc_suites(model_name, model, data.tokenizer, items, data.config.mc_shots, data.indexes[model_name])

"""Loaders that turn conversation and preference sources into the CONVERSATIONS / PREFERENCES row shapes.

Files are read with Hugging Face `datasets` (`json` builder), so a local `.jsonl`/`.json`/`.parquet` path works and,
where there is internet, so does a hub dataset name. Every input record comes out, either as a sample or with the
reason it could not be used (`Sample.reject` / `Pair.reject`), so a stage can count kept + rejected = input.

- OpenAssistant trees: every root-to-leaf path that follows the best-ranked assistant reply at each turn (all
  follow-up user branches are kept); sibling replies with ranks give preference pairs (lower rank = chosen), or
  kept whole, K-wise rankings by people.
- GSM8K: question -> worked solution without the `<<calc>>` annotations, still ending in `#### N`.
- Plain prompt/response files (field names configurable).
- HH-RLHF: `\\n\\nHuman:` / `\\n\\nAssistant:` transcripts; the shared prefix is the prompt, the last answers differ.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from llm_core.chat.template import Message
from llm_core.data_files import hf_datasets


@dataclass
class Sample:
    messages: list[Message]
    source: str
    reject: str | None = None


@dataclass
class Pair:
    prompt: list[Message]
    chosen: str
    rejected: str
    source: str
    reject: str | None = None


def read_records(path: str) -> Iterator[dict[str, Any]]:
    """Rows of a local json/jsonl/parquet file (or a hub dataset name) via HF datasets."""
    suffix = Path(path).suffix.lower()
    if suffix in {".json", ".jsonl"}:
        ds = hf_datasets().load_dataset("json", data_files=path, split="train")
    elif suffix == ".parquet":
        ds = hf_datasets().load_dataset("parquet", data_files=path, split="train")
    else:
        ds = hf_datasets().load_dataset(path, split="train")
    yield from ds


def msg(role: str, content: str) -> Message:
    return {"role": role, "content": content}


# -- OpenAssistant ---------------------------------------------------------------------------------------------------


def _usable(node: dict) -> bool:
    return bool(node) and not node.get("deleted") and node.get("review_result") is not False and bool(node.get("text"))


def _best_reply(replies: list[dict]) -> dict | None:
    usable = [r for r in replies if _usable(r)]
    if not usable:
        return None
    ranked = [r for r in usable if r.get("rank") is not None]
    return min(ranked, key=lambda r: r["rank"]) if ranked else usable[0]


def oasst_paths(tree_root: dict) -> list[list[Message]]:
    """Every root-to-leaf path of best-ranked assistant replies (conversations ending with an assistant turn)."""
    paths: list[list[Message]] = []

    def walk_user(node: dict, history: list[Message]) -> None:
        history = [*history, msg("user", node["text"])]
        best = _best_reply(node.get("replies") or [])
        if best is None:
            if len(history) > 1:
                paths.append(history[:-1])
            return
        walk_assistant(best, history)

    def walk_assistant(node: dict, history: list[Message]) -> None:
        history = [*history, msg("assistant", node["text"])]
        followups = [r for r in node.get("replies") or [] if _usable(r)]
        if not followups:
            paths.append(history)
        for f in followups:
            walk_user(f, history)

    if _usable(tree_root):
        walk_user(tree_root, [])
    return paths


def oasst_pairs(tree_root: dict) -> list[tuple[list[Message], str, str]]:
    """(prompt, chosen, rejected) for ranked sibling replies, along every best-reply path of the tree."""
    pairs: list[tuple[list[Message], str, str]] = []

    def walk_user(node: dict, history: list[Message]) -> None:
        history = [*history, msg("user", node["text"])]
        replies = [r for r in node.get("replies") or [] if _usable(r)]
        ranked = sorted((r for r in replies if r.get("rank") is not None), key=lambda r: r["rank"])
        for better, worse in combinations(ranked, 2):
            if better["rank"] < worse["rank"] and better["text"] != worse["text"]:
                pairs.append((history, better["text"], worse["text"]))
        best = _best_reply(replies)
        if best is not None:
            answered = [*history, msg("assistant", best["text"])]
            for f in best.get("replies") or []:
                if _usable(f):
                    walk_user(f, answered)

    if _usable(tree_root):
        walk_user(tree_root, [])
    return pairs


def oasst_rankings(tree_root: dict) -> list[tuple[list[Message], list[str]]]:
    """(prompt, replies best first) wherever two or more distinct sibling replies carry ranks, along every best-reply
    path: the K-wise human rankings that `oasst_pairs` cuts into pairs."""
    rankings: list[tuple[list[Message], list[str]]] = []

    def walk_user(node: dict, history: list[Message]) -> None:
        history = [*history, msg("user", node["text"])]
        replies = [r for r in node.get("replies") or [] if _usable(r)]
        ranked = sorted((r for r in replies if r.get("rank") is not None), key=lambda r: r["rank"])
        texts = list(dict.fromkeys(r["text"] for r in ranked))
        if len(texts) >= 2:
            rankings.append((history, texts))
        best = _best_reply(replies)
        if best is not None:
            for f in best.get("replies") or []:
                if _usable(f):
                    walk_user(f, [*history, msg("assistant", best["text"])])

    if _usable(tree_root):
        walk_user(tree_root, [])
    return rankings


def load_oasst(path: str, source: str = "oasst") -> Iterator[Sample]:
    for row in read_records(path):
        root = row.get("prompt")
        paths = oasst_paths(root) if isinstance(root, dict) else []
        if not paths:
            yield Sample([], source, reject="oasst:no_answered_path")
        for p in paths:
            yield Sample(p, source)


def load_oasst_pairs(path: str, source: str = "oasst") -> Iterator[Pair]:
    for row in read_records(path):
        root = row.get("prompt")
        pairs = oasst_pairs(root) if isinstance(root, dict) else []
        if not pairs:
            yield Pair([], "", "", source, reject="oasst:no_ranked_siblings")
        for prompt, chosen, rejected in pairs:
            yield Pair(prompt, chosen, rejected, source)


# -- GSM8K and plain prompt/response ---------------------------------------------------------------------------------

CALC_ANNOTATION = re.compile(r"<<[^>]*>>")


def gsm8k_solution(answer: str) -> str:
    """The worked solution without calculator annotations; it still ends with `#### N`."""
    return CALC_ANNOTATION.sub("", answer).strip()


def load_gsm8k(path: str, source: str = "gsm8k") -> Iterator[Sample]:
    for row in read_records(path):
        question, answer = row.get("question"), row.get("answer")
        if not question or not answer or "####" not in answer:
            yield Sample([], source, reject="gsm8k:malformed")
            continue
        yield Sample([msg("user", question.strip()), msg("assistant", gsm8k_solution(answer))], source)


def load_prompt_response(
    path: str, source: str, prompt_field: str = "prompt", response_field: str = "response"
) -> Iterator[Sample]:
    for row in read_records(path):
        prompt, response = row.get(prompt_field), row.get(response_field)
        if not isinstance(prompt, str) or not isinstance(response, str) or not prompt.strip() or not response.strip():
            yield Sample([], source, reject=f"{source}:missing_{prompt_field}_or_{response_field}")
            continue
        yield Sample([msg("user", prompt.strip()), msg("assistant", response.strip())], source)


# -- HH-RLHF ---------------------------------------------------------------------------------------------------------

HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def parse_hh_transcript(text: str) -> list[Message]:
    """'\\n\\nHuman: a\\n\\nAssistant: b' -> [user a, assistant b]; [] if it is not such a transcript."""
    parts = HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        return []
    roles = {"Human": "user", "Assistant": "assistant"}
    return [msg(roles[parts[i]], parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]


def hh_pair(chosen_text: str, rejected_text: str, source: str = "hh_rlhf") -> Pair:
    chosen, rejected = parse_hh_transcript(chosen_text), parse_hh_transcript(rejected_text)
    if not chosen or not rejected:
        return Pair([], "", "", source, reject="hh:not_a_transcript")
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        return Pair([], "", "", source, reject="hh:no_final_answer")
    if chosen[:-1] != rejected[:-1]:
        return Pair([], "", "", source, reject="hh:prompts_differ")
    if chosen[-1]["content"] == rejected[-1]["content"]:
        return Pair([], "", "", source, reject="hh:identical_answers")
    if not chosen[-1]["content"] or not rejected[-1]["content"]:
        return Pair([], "", "", source, reject="hh:empty_answer")
    return Pair(chosen[:-1], chosen[-1]["content"], rejected[-1]["content"], source)


def load_hh_rlhf(path: str, source: str = "hh_rlhf") -> Iterator[Pair]:
    for row in read_records(path):
        yield hh_pair(row.get("chosen") or "", row.get("rejected") or "", source)


def load_prompts(path: str, field: str = "prompt") -> list[str]:
    """Prompts from a JSONL of strings (the OpenAssistant prompt lottery) or of objects with `field`."""
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl":
        ds = hf_datasets().load_dataset("text", data_files=path, split="train")
        prompts = []
        for row in ds:
            value = json.loads(row["text"]) if row["text"].strip() else None
            value = value.get(field) if isinstance(value, dict) else value
            if isinstance(value, str) and value.strip():
                prompts.append(value.strip())
        return prompts
    return [r[field].strip() for r in read_records(path) if isinstance(r.get(field), str) and r[field].strip()]

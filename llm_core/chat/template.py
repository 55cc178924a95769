"""The chat template: conversations as token ids, with the mask that says where the SFT loss applies.

    <|endoftext|><|im_start|>system<|im_sep|>...<|im_end|><|im_start|>user<|im_sep|>...<|im_end|>
    <|im_start|>assistant<|im_sep|>...<|im_end|>

A conversation opens with `<|endoftext|>` (the document separator of pretraining, so the base model has seen it as a
"start of text"). `mask[i] == 1` means token `ids[i]` is a training target: assistant content and its `<|im_end|>`,
never role headers, system or user text. Training predicts `ids[1:]` from `ids[:-1]` and weights by `mask[1:]`.

An assistant message may call tools. It then carries `parts`, a list of `{"kind", "text"}` in order: `text` (the
reply itself), `python` or `search` (a call: code, or a query) and `output` (what the tool returned, right after its
call). `content` stays the plain reply, the `text` parts joined, so code that reads only `content` works:

    <|im_start|>assistant<|im_sep|>Let me compute.<|python_start|>123*45<|python_end|>
    <|output_start|>5535<|output_end|>It is 5535.<|im_end|>
    mask: 1 on the text, on the call with its two tokens and on <|im_end|>; 0 from <|output_start|> to
    <|output_end|>: the model learns to call, never to invent an output (the engine pastes the real one in).

A message without `parts` (or with `parts` None: Parquet rows written before the column existed, or messages
without tools) renders its `content` as one text part.

This module does not tokenise text itself: it takes any tokenizer with `encode(text) -> list[int]` (ordinary text
never yields a special id, so user text cannot forge the structure) and `special_ids` (special token -> id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_core.tokenizer.base import ENDOFTEXT as EOT
from llm_core.tokenizer.base import (
    IM_END,
    IM_SEP,
    IM_START,
    OUTPUT_END,
    OUTPUT_START,
    SPECIAL_TOKENS,
    TOOL_DELIMITERS,
    TOOL_TOKENS,
    Tokenizer,
)

ROLES = ("system", "user", "assistant")
CALL_KINDS = tuple(TOOL_DELIMITERS)  # ("python", "search")
PART_KINDS = ("text", *CALL_KINDS, "output")

# {"role": ..., "content": ...}, and for an assistant turn that calls tools, "parts": [{"kind": ..., "text": ...}]
Message = dict[str, Any]


@dataclass
class Rendered:
    """Token ids of a conversation and the loss mask (1 = train on this token)."""

    ids: list[int]
    mask: list[int]

    def __len__(self) -> int:
        return len(self.ids)


def special_id(tokenizer: Tokenizer, token: str) -> int:
    try:
        return tokenizer.special_ids[token]
    except KeyError:
        tool = token in TOOL_TOKENS
        needs = f"tool calls need {TOOL_TOKENS}" if tool else f"the chat template needs {SPECIAL_TOKENS}"
        raise KeyError(f"tokenizer has no special token {token!r}; {needs} (train the tokenizer with them: "
                       "bpe.special_tokens)") from None


def tool_message(parts: Sequence[tuple[str, str]]) -> Message:
    """An assistant message from (kind, text) parts, e.g. `[("python", "2**10"), ("output", "1024"),
    ("text", "1024.")]`; its `content` is the text parts joined."""
    return {
        "role": "assistant",
        "content": "".join(text for kind, text in parts if kind == "text"),
        "parts": [{"kind": kind, "text": text} for kind, text in parts],
    }


def message_parts(message: Message) -> list[dict[str, str]]:
    """The parts of a message: its `parts`, or its `content` as one text part."""
    return list(message.get("parts") or [{"kind": "text", "text": message["content"]}])


def validate_parts(parts: Sequence[dict[str, str]], content: str) -> str | None:
    """Why an assistant message's parts cannot be trained on, or None: known kinds, calls and text not blank, every
    call followed directly by its output and every output preceded by a call, `content` equal to the text parts."""
    if not parts:
        return "empty_parts"
    for i, part in enumerate(parts):
        kind = part.get("kind")
        if kind not in PART_KINDS:
            return f"bad_part_kind:{kind}"
        after_call = i > 0 and parts[i - 1]["kind"] in CALL_KINDS
        if kind == "output" and not after_call:
            return "output_without_call"
        if kind != "output" and after_call:
            return "call_without_output"
        if kind != "output" and not (part.get("text") or "").strip():
            return "empty_part"
    if parts[-1]["kind"] in CALL_KINDS:
        return "call_without_output"
    if "".join(p["text"] for p in parts if p["kind"] == "text") != content:
        return "content_not_text_parts"
    return None


def validate_messages(messages: Sequence[Message]) -> str | None:
    """Why a conversation cannot be trained on, or None if it can: known roles, an optional leading system message,
    then user/assistant turns alternating, starting with user and ending with assistant, no empty content; `parts`
    only on assistant turns, and valid (`validate_parts`)."""
    if not messages:
        return "empty"
    if any(m.get("parts") is not None and m["role"] != "assistant" for m in messages):
        return "parts_not_on_assistant"
    body = list(messages[1:] if messages[0]["role"] == "system" else messages)
    if not body:
        return "no_turns"
    for i, m in enumerate(body):
        if m["role"] not in ROLES or m["role"] == "system":
            return f"bad_role:{m['role']}"
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            return "turns_not_alternating"
        if not (m.get("content") or "").strip():
            return "empty_message"
        reason = validate_parts(m["parts"], m["content"]) if m.get("parts") is not None else None
        if reason:
            return reason
    if body[-1]["role"] != "assistant":
        return "no_final_answer"
    return None


def _header(tokenizer: Tokenizer, role: str) -> list[int]:
    return [special_id(tokenizer, IM_START), *tokenizer.encode(role), special_id(tokenizer, IM_SEP)]


def render_part(tokenizer: Tokenizer, kind: str, text: str) -> tuple[list[int], int]:
    """Ids of one part of an assistant message and whether they are trained on (1) or not (0)."""
    if kind == "text":
        return tokenizer.encode(text), 1
    if kind == "output":
        return [special_id(tokenizer, OUTPUT_START), *tokenizer.encode(text), special_id(tokenizer, OUTPUT_END)], 0
    if kind not in TOOL_DELIMITERS:
        raise ValueError(f"unknown message part kind {kind!r}; kinds are {PART_KINDS}")
    start, end = TOOL_DELIMITERS[kind]
    return [special_id(tokenizer, start), *tokenizer.encode(text), special_id(tokenizer, end)], 1


def render_conversation(tokenizer: Tokenizer, messages: Sequence[Message]) -> Rendered:
    """Ids and loss mask of a whole conversation (see the module docstring)."""
    im_end = special_id(tokenizer, IM_END)
    ids, mask = [special_id(tokenizer, EOT)], [0]
    for m in messages:
        header = _header(tokenizer, m["role"])
        ids += header
        mask += [0] * len(header)
        train = 1 if m["role"] == "assistant" else 0
        for part in message_parts(m):
            part_ids, part_train = render_part(tokenizer, part["kind"], part["text"])
            ids += part_ids
            mask += [train * part_train] * len(part_ids)
        ids.append(im_end)
        mask.append(train)
    return Rendered(ids, mask)


def render_prompt(tokenizer: Tokenizer, messages: Sequence[Message]) -> list[int]:
    """Ids of a conversation up to the point where the assistant answers next (ends with its header)."""
    return render_conversation(tokenizer, messages).ids + _header(tokenizer, "assistant")


def render_completion(tokenizer: Tokenizer, text: str) -> list[int]:
    """Ids of an assistant answer as it follows `render_prompt`: content then `<|im_end|>`."""
    return [*tokenizer.encode(text), special_id(tokenizer, IM_END)]

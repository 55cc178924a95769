"""The chat template: conversations as token ids, with the mask that says where the SFT loss applies.

    <|endoftext|><|im_start|>system<|im_sep|>...<|im_end|><|im_start|>user<|im_sep|>...<|im_end|>
    <|im_start|>assistant<|im_sep|>...<|im_end|>

A conversation opens with `<|endoftext|>` (the document separator of pretraining, so the base model has seen it as a
"start of text"). `mask[i] == 1` means token `ids[i]` is a training target: assistant content and its `<|im_end|>`,
never role headers, system or user text. Training predicts `ids[1:]` from `ids[:-1]` and weights by `mask[1:]`.

This module does not tokenise text itself: it takes any tokenizer with `encode(text) -> list[int]` (ordinary text
never yields a special id, so user text cannot forge the structure) and `special_ids` (special token -> id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llm_core.tokenizer.base import ENDOFTEXT as EOT
from llm_core.tokenizer.base import IM_END, IM_SEP, IM_START, SPECIAL_TOKENS, Tokenizer

ROLES = ("system", "user", "assistant")


Message = dict[str, str]  # {"role": ..., "content": ...}


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
        raise KeyError(
            f"tokenizer has no special token {token!r}; the chat template needs {SPECIAL_TOKENS} "
            "(train the tokenizer with them)"
        ) from None


def validate_messages(messages: Sequence[Message]) -> str | None:
    """Why a conversation cannot be trained on, or None if it can: known roles, an optional leading system message,
    then user/assistant turns alternating, starting with user and ending with assistant, no empty content."""
    if not messages:
        return "empty"
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
    if body[-1]["role"] != "assistant":
        return "no_final_answer"
    return None


def _header(tokenizer: Tokenizer, role: str) -> list[int]:
    return [special_id(tokenizer, IM_START), *tokenizer.encode(role), special_id(tokenizer, IM_SEP)]


def render_conversation(tokenizer: Tokenizer, messages: Sequence[Message]) -> Rendered:
    """Ids and loss mask of a whole conversation (see the module docstring)."""
    im_end = special_id(tokenizer, IM_END)
    ids, mask = [special_id(tokenizer, EOT)], [0]
    for m in messages:
        header = _header(tokenizer, m["role"])
        content = [*tokenizer.encode(m["content"]), im_end]
        train = 1 if m["role"] == "assistant" else 0
        ids += header + content
        mask += [0] * len(header) + [train] * len(content)
    return Rendered(ids, mask)


def render_prompt(tokenizer: Tokenizer, messages: Sequence[Message]) -> list[int]:
    """Ids of a conversation up to the point where the assistant answers next (ends with its header)."""
    return render_conversation(tokenizer, messages).ids + _header(tokenizer, "assistant")


def render_completion(tokenizer: Tokenizer, text: str) -> list[int]:
    """Ids of an assistant answer as it follows `render_prompt`: content then `<|im_end|>`."""
    return [*tokenizer.encode(text), special_id(tokenizer, IM_END)]

"""What the web chat's API accepts: request bodies (pydantic, unknown fields refused), the limits a request must
keep, and the checks that turn a bad one into a 4xx with a one-line reason."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_core.chat.engine import SamplingParams
from llm_core.chat.template import Message, render_prompt
from llm_core.tokenizer import Tokenizer

NAME = re.compile(r"^[\w .@+-]{1,40}$")


@dataclass(frozen=True)
class WebSettings:
    """What one server allows."""

    feedback: Path  # the rankings file votes, thumbs and edits are appended to
    token: str | None = None  # every request must carry it when set
    max_tokens: int = 256  # per reply, tool outputs included
    max_active: int = 4  # replies written at once (interleaved)
    max_pending: int = 16  # replies that may wait beyond those
    max_body_bytes: int = 64 * 1024
    tools: bool = True


class RequestError(Exception):
    """A request that cannot be served: HTTP status and the reason shown to the person."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Part(_Body):
    kind: Literal["text", "python", "search", "output"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant"]
    content: str
    parts: list[Part] | None = None


class Sampling(_Body):
    temperature: float = Field(0.7, ge=0, le=5)
    top_k: int | None = Field(50, ge=1)
    top_p: float | None = Field(0.95, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, description="default: the server's limit or half the context")
    seed: int | None = None


class ChatRequest(Sampling):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)


class ArenaRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)


class FeedbackRequest(_Body):
    model: str
    messages: list[ChatMessage] = Field(min_length=2, description="the conversation up to the rated reply")
    up: bool
    better: str = ""
    name: str = ""


class VoteRequest(_Body):
    battle: str
    verdict: Literal["A", "B", "tie", "both_bad"]
    better: str = ""
    comment: str = Field("", max_length=2000)
    name: str = ""


Body = TypeVar("Body", bound=_Body)


def parse(raw: bytes, model: type[Body], limit: int) -> Body:
    """The request body as `model`: 413 past `limit` bytes, 400 when it is not JSON, 422 naming the first bad field."""
    if len(raw) > limit:
        raise RequestError(413, f"the request is {len(raw):,} bytes; this server takes at most {limit:,}")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f"the request body is not valid JSON: {e}") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise RequestError(422, f"{where}: {first['msg']}") from None


def messages_of(body: ChatRequest | ArenaRequest | FeedbackRequest) -> list[Message]:
    return [m.model_dump(exclude_none=True) for m in body.messages]


def check_conversation(messages: list[Message], answered: bool) -> None:
    """422 unless `messages` is a conversation (an optional system message, then user and assistant alternating,
    from the user's) that ends with the user's message, or with `answered`, with the assistant's reply. A user's
    message may not be empty; a reply may (a model may answer with a tool call alone, or nothing)."""
    body = messages[1:] if messages[0]["role"] == "system" else messages
    if not body:
        raise RequestError(422, "messages: there is no user message")
    for i, m in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise RequestError(422, f"messages[{i + len(messages) - len(body)}]: a {m['role']} message where a "
                                    f"{expected} message belongs (user and assistant alternate, from the user's)")
        if m.get("parts") is not None and m["role"] != "assistant":
            raise RequestError(422, "messages: only assistant messages may have parts")
        if m["role"] == "user" and not m["content"].strip():
            raise RequestError(422, "messages: a message is empty: type something")
    last = "assistant" if answered else "user"
    if body[-1]["role"] != last:
        raise RequestError(422, f"messages: the conversation must end with the {last}'s message")


def labeler(name: str) -> str:
    """`web:NAME` for the person's name (or the browser's anonymous id); 422 for a name that is not one."""
    if not name:
        return "web:anonymous"
    if not NAME.match(name):
        raise RequestError(422, "name: at most 40 letters, digits, spaces and . @ + - _")
    return f"web:{name}"


def fit(tokenizer: Tokenizer, block_size: int, messages: list[Message], body: Sampling,
        settings: WebSettings) -> tuple[list[int], SamplingParams]:
    """The prompt's ids and the sampling of a reply; 422 past the server's max_tokens, 413 past the context."""
    if body.max_tokens is not None and body.max_tokens > settings.max_tokens:
        raise RequestError(422, f"max_tokens: {body.max_tokens} is over this server's limit of {settings.max_tokens}")
    max_tokens = body.max_tokens or min(settings.max_tokens, block_size // 2)
    prompt = render_prompt(tokenizer, messages)
    if len(prompt) + max_tokens > block_size:
        raise RequestError(413, f"the conversation is {len(prompt):,} tokens and a reply may take {max_tokens}; the "
                                f"model reads at most {block_size:,} in all: start a new chat, shorten the message or "
                                "lower max_tokens")
    params = SamplingParams(max_tokens=max_tokens, temperature=body.temperature, top_k=body.top_k, top_p=body.top_p)
    return prompt, params


def dump(event: dict[str, Any]) -> str:
    """One server-sent event."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"

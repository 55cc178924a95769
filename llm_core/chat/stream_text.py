"""A streamed reply as text: turns the engine's tokens (`Engine.stream`) into the characters each one adds, segment
by segment (the reply's text, a tool call, a tool's output), and, at the end, the reply as a message.

Both chats show a reply with it: the terminal prints a call as `[python: ...]` and its output as `[-> ...]`, the web
chat draws a box per call and output. Only whole characters are given out: a token that ends inside a UTF-8
sequence adds nothing until the token that completes it, and what a reply never completes comes out at its end
(`rest`). Tool delimiting tokens add no text; they open a segment.
"""

from __future__ import annotations

from typing import NamedTuple

from llm_core.chat.engine import StreamToken, reply_message, reply_parts
from llm_core.chat.template import Message
from llm_core.tokenizer.base import TOOL_TOKENS, Tokenizer


class Piece(NamedTuple):
    kind: str  # "text", a tool name (the call) or "output"
    text: str  # the characters this token adds ("" for a delimiter or an incomplete UTF-8 sequence)
    new_segment: bool  # the first token of a segment of this kind


class ReplyText:
    """The growing text of one streamed reply."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.delimiters = {tokenizer.special_ids[t] for t in TOOL_TOKENS if t in tokenizer.special_ids}
        self.ids: list[int] = []
        self.kinds: list[str] = []
        self._segment: list[int] = []
        self._shown = ""

    def push(self, token: StreamToken) -> Piece:
        """What `token` adds to the reply."""
        new_segment = not self.kinds or token.kind != self.kinds[-1]
        if new_segment:
            self._segment, self._shown = [], ""
        self.ids.append(token.id)
        self.kinds.append(token.kind)
        if token.id in self.delimiters:
            return Piece(token.kind, "", new_segment)
        self._segment.append(token.id)
        text = self.tokenizer.decode(self._segment)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for its next byte
            return Piece(token.kind, "", new_segment)
        return Piece(token.kind, self._give_out(text), new_segment)

    def rest(self) -> Piece | None:
        """When the reply has ended: the characters of its last segment not given out yet (a UTF-8 sequence that the
        reply never completed, shown as U+FFFD as in `message()`), or None. After it the pieces add up to the text."""
        added = self._give_out(self.tokenizer.decode(self._segment))
        return Piece(self.kinds[-1], added, False) if added else None

    def _give_out(self, text: str) -> str:
        """The characters of the segment's `text` beyond those given out so far; they count as given out now."""
        added, self._shown = text[len(self._shown):], text
        return added

    def message(self) -> Message:
        """The reply so far as an assistant message (with `parts` when it called a tool)."""
        return reply_message(reply_parts(self.tokenizer, self.ids, self.kinds))

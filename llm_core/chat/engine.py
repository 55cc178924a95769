"""The inference engine: sample assistant replies from a GPT with a KV cache, and run the tools the model calls.

- Temperature, top-k and top-p (nucleus) sampling; temperature 0 is greedy (`sampling.py`).
- Stops a row at `<|im_end|>` (or `<|endoftext|>`); a reply that hits the token bound without one is `finished=False`
  (RLHF penalises those).
- N samples per prompt in one batch: the prompt is run once (prefill), its cache is copied N times. Prompts of
  different lengths share a batch, left-padded (the KV cache masks the padding); each reply keeps the token bound it
  would have alone, and a batch never mixes a prompt with one so long that the bound would not fit. Once a quarter
  of a batch's rows have ended, they leave it (their KV cache rows are dropped): a step costs about what its rows do.
- `stream` yields the tokens of one reply as they come, each with its kind (text, a call, a tool's output), so the
  chat CLI prints calls and outputs as they happen.

Tools (the chat format's tool tokens, see `template`). With `tools`, when a row samples a tool's end token
(`<|python_end|>`), the engine decodes the call since its start token, runs the tool (in this process; the Python
tool starts its own sandbox), and forces `<|output_start|>` + the output's first `max_output_tokens` tokens +
`<|output_end|>` into that row, one token per step in place of what the row samples, then sampling goes on. Rows
stay in lockstep and keep their KV cache while they write; every row (every sample of every prompt) calls on its
own. Forced tokens count against the row's token bound, so the cache bound holds. Rules, all applied as logit bans:
- a row outside a call may not sample an end token nor an output token (the engine alone writes outputs: a model
  that would start an output itself cannot invent one), nor the start token of a tool the engine lacks;
- a row inside a call may not start another one (no nesting);
- without tools (`tools=()`, the default) every start token is banned: the model must answer directly, and the
  suites and RL rollouts behave as before tools existed.
A call beyond `max_calls` in one reply is not run; its output is "error: call limit reached". A reply that ends
(stop token or token bound) inside a call records it with `well_formed=False` and runs nothing. A tokenizer without
the tool tokens has no bans and cannot take tools.

It does not render chat turns (see `template`) and does not compute training log-probs (the trainers recompute
them with gradients).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from llm_core.chat.template import EOT, IM_END, Message, render_prompt, special_id, tool_message
from llm_core.model import GPT, KVCache
from llm_core.sampling import sample_tokens
from llm_core.tokenizer.base import OUTPUT_END, OUTPUT_START, Tokenizer
from llm_core.tools.base import Tool

CALL_LIMIT_OUTPUT = "error: call limit reached"


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 128
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        assert self.max_tokens >= 1, "max_tokens must be at least 1"
        assert self.temperature >= 0, "temperature must be >= 0 (0 = greedy)"
        assert self.top_p is None or 0 < self.top_p <= 1, "top_p must be in (0, 1]"

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One token id per row (B,) from logits (B, vocab)."""
        return sample_tokens(logits, self.temperature, self.top_k, self.top_p, generator)


@dataclass
class ToolCall:
    tool: str  # "python" | "search"
    call: str  # the code or query, without its tokens
    output: str  # what the model was shown (truncated to the engine's bound); "" when the call never closed
    well_formed: bool  # closed by its end token


class StreamToken(NamedTuple):
    id: int
    kind: str  # "text", a tool name for a call's tokens (start and end included), "output" for a forced output


@dataclass
class Completion:
    ids: list[int]  # generated ids, forced ones included, with the stop token when the reply ended
    text: str  # the reply without the stop token (tool tokens, calls and outputs included when it called tools)
    finished: bool  # ended with <|im_end|>
    calls: list[ToolCall] = field(default_factory=list)
    answer: str = ""  # the text parts only, outside calls and outputs (equal to `text` without tools)
    parts: list[tuple[str, str]] = field(default_factory=list)  # (kind, text), as in `template.tool_message`

    @property
    def message(self) -> Message:
        """The reply as an assistant message: with `parts` when it called a tool."""
        return reply_message(self.parts)


def reply_message(parts: Sequence[tuple[str, str]]) -> Message:
    """An assistant message from a reply's parts: plain `content` when they are all text, else with `parts`."""
    if all(kind == "text" for kind, _ in parts):
        return {"role": "assistant", "content": "".join(text for _, text in parts)}
    return tool_message(parts)


def call_delimiters(tokenizer: Tokenizer) -> dict[str, tuple[str, str]]:
    """Tool name -> its call's (start, end) tokens, for the tools of `registry.TOOLS` whose tokens `tokenizer` holds
    (none when it lacks the tool tokens)."""
    if not tokenizer.has_tools:
        return {}
    from llm_core.tools import registry  # here, not at the top: opening tools imports the sandbox and the index

    return {s.name: s.tokens for s in registry.TOOLS if all(t in tokenizer.special_ids for t in s.tokens)}


def reply_parts(tokenizer: Tokenizer, ids: Sequence[int], kinds: Sequence[str]) -> list[tuple[str, str]]:
    """(kind, text) parts of a reply from its ids and their kinds: runs of one kind, calls and outputs without
    their delimiting tokens."""
    calls = [t for tokens in call_delimiters(tokenizer).values() for t in tokens]
    delimiters = {special_id(tokenizer, t) for t in [*calls, OUTPUT_START, OUTPUT_END]} if calls else set()
    runs: list[tuple[str, list[int]]] = []
    for i, kind in zip(ids, kinds):
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(i)
        else:
            runs.append((kind, [i]))
    return [(kind, tokenizer.decode([i for i in run if i not in delimiters])) for kind, run in runs]


class _Reply:
    """One row's reply as it grows: ids and the kind of each, finished calls, the open call, tokens to force."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.kinds: list[str] = []
        self.calls: list[ToolCall] = []
        self.open: tuple[str, int] | None = None  # (tool, index of the call's first body token)
        self.forced: deque[int] = deque()


class Engine:
    """Samples replies from `model` for prompts rendered with `tokenizer`'s chat tokens, running `tools`."""

    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer,
        tools: Sequence[Tool] = (),
        max_calls: int = 4,
        max_output_tokens: int = 64,
        max_batch: int = 64,
    ):
        self.model, self.tokenizer, self.max_batch = model, tokenizer, max_batch
        self.max_calls, self.max_output_tokens = max_calls, max_output_tokens
        self.im_end = special_id(tokenizer, IM_END)
        self.stop_ids = torch.tensor([self.im_end, special_id(tokenizer, EOT)])
        self.tools = {t.name: t for t in tools}
        if self.tools and not tokenizer.has_tools:
            raise ValueError("this tokenizer has no tool tokens, so the model cannot call tools: train the tokenizer "
                             "with them (bpe.special_tokens, the default) or use the engine without tools")
        delimiters = call_delimiters(tokenizer)
        unknown = [name for name in self.tools if name not in delimiters]
        if unknown or len(self.tools) != len(tools):
            raise ValueError(f"tools {[t.name for t in tools]}: each must be one of {list(delimiters)}, once")
        self._start_of: dict[int, str] = {}  # start token id -> tool name
        self._end_id: dict[str, int] = {}
        self._states: list[str | None] = [None, *delimiters]  # outside a call, or inside a call to a tool
        # (states, most banned ids of a state): the ids a row in each state may not sample, a state's list padded with
        # its own first id; a few special tokens, so a step sets a few logits instead of masking the whole vocabulary
        self._bans: torch.Tensor | None = None
        if delimiters:
            self._start_of = {special_id(tokenizer, s): name for name, (s, _) in delimiters.items()}
            self._end_id = {name: special_id(tokenizer, e) for name, (_, e) in delimiters.items()}
            self.output_start, self.output_end = special_id(tokenizer, OUTPUT_START), special_id(tokenizer, OUTPUT_END)
            outputs = [self.output_start, self.output_end]
            unavailable = [i for i, name in self._start_of.items() if name not in self.tools]
            outside = [*outputs, *unavailable, *self._end_id.values()]
            inside = {name: [*outputs, *self._start_of, *(e for t, e in self._end_id.items() if t != name)]
                      for name in delimiters}
            banned = [sorted(set(ids)) for ids in [outside, *inside.values()]]
            width = max(len(ids) for ids in banned)
            self._bans = torch.tensor([ids + ids[:1] * (width - len(ids)) for ids in banned])

    @property
    def never_sampled(self) -> list[int]:
        """Ids no reply of this engine can sample at any step: with no tools no call starts, so the bans outside a call
        hold throughout (RL scores its rollouts under the same bans). Empty when calls are possible."""
        if self._bans is None or self.tools:
            return []
        return sorted(set(self._bans[self._states.index(None)].tolist()))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def fit_prompt(self, prompt: Sequence[int], params: SamplingParams) -> tuple[list[int], int]:
        """The prompt (left-truncated if it leaves no room) and how many tokens may follow it."""
        block = self.model.config.block_size
        room = min(params.max_tokens, max(1, block // 2))
        prompt = list(prompt)[-(block - room):] if len(prompt) + room > block else list(prompt)
        return prompt, min(params.max_tokens, block - len(prompt))

    def _constrain(self, logits: torch.Tensor, replies: list[_Reply]) -> torch.Tensor:
        """The step's logits, with the banned tokens of each row set to -inf in place (see the module docstring)."""
        if self._bans is None:
            return logits
        if self._bans.device != logits.device:
            self._bans = self._bans.to(logits.device)
        states = [self._states.index(r.open[0] if r.open else None) for r in replies]
        return logits.scatter_(1, self._bans[states], float("-inf"))

    def _push(self, reply: _Reply, token: int, forced: bool) -> None:
        """Append a token to a reply; on a call's end token, run the tool and queue its output to force."""
        kind = "output" if forced else "text"
        if not forced and reply.open is not None:
            tool, begin = reply.open
            kind = tool
            if token == self._end_id[tool]:
                reply.open = None
                reply.calls.append(self._run_tool(reply, tool, self.tokenizer.decode(reply.ids[begin:])))
        elif not forced and token in self._start_of:
            kind = self._start_of[token]
            reply.open = (kind, len(reply.ids) + 1)
        reply.ids.append(token)
        reply.kinds.append(kind)

    def _run_tool(self, reply: _Reply, tool: str, call: str) -> ToolCall:
        if len(reply.calls) >= self.max_calls:
            output = CALL_LIMIT_OUTPUT
        else:
            try:  # a tool answers "error: ..." itself; a bug in one must not stop a whole batch
                output = self.tools[tool](call)
            except Exception as e:  # noqa: BLE001
                output = f"error: {type(e).__name__}: {e}"
        ids = self.tokenizer.encode(output)[: self.max_output_tokens]
        reply.forced.extend([self.output_start, *ids, self.output_end])
        return ToolCall(tool, call, self.tokenizer.decode(ids), well_formed=True)

    @torch.no_grad()
    def _steps(
        self, prompts: list[list[int]], n: int, budgets: list[int], params: SamplingParams,
        generator: torch.Generator | None,
    ) -> Iterator[list[_Reply]]:
        """The replies of every row after each step; n rows per prompt, rows of prompt i stop after `budgets[i]`
        tokens. Prompts are left-padded to the longest."""
        was_training = self.model.training
        self.model.eval()
        try:
            width = max(len(p) for p in prompts)
            pad = torch.tensor([width - len(p) for p in prompts], device=self.device)
            x = torch.tensor([[self.im_end] * (width - len(p)) + p for p in prompts], device=self.device)
            max_new = max(budgets)
            param = next(self.model.parameters())
            cache = KVCache(self.model.config, x.size(0), width + max_new, x.device, param.dtype, left_pad=pad)
            logits = self.model.last_logits(x, cache)
            if n > 1:
                cache.repeat_rows(n)
                logits = logits.repeat_interleave(n, 0)
            replies = [_Reply() for _ in range(logits.size(0))]
            rows = list(range(len(replies)))  # the reply of each row still in the batch
            budget = torch.tensor(budgets, device=x.device).repeat_interleave(n)
            done = torch.zeros(len(rows), dtype=torch.bool, device=x.device)
            stops = self.stop_ids.to(x.device)
            for step in range(max_new):
                tokens = params.sample(self._constrain(logits, [replies[r] for r in rows]), generator).tolist()
                for i in (~done).nonzero().flatten().tolist():
                    r = rows[i]
                    forced = bool(replies[r].forced)
                    if forced:
                        tokens[i] = replies[r].forced.popleft()
                    self._push(replies[r], tokens[i], forced)
                yield replies
                tok = torch.tensor(tokens, device=x.device)
                done |= torch.isin(tok, stops) | (budget <= step + 1)
                if bool(done.all()):
                    break
                if int(done.sum()) * 4 >= len(rows):  # drop finished rows: a step's cost follows the batch's rows
                    keep = (~done).nonzero().flatten()
                    cache.keep_rows(keep)
                    rows, tok, budget, done = [rows[i] for i in keep.tolist()], tok[keep], budget[keep], done[keep]
                logits = self.model.last_logits(tok[:, None], cache)
        finally:
            self.model.train(was_training)

    def batches(self, fitted: list[tuple[list[int], int]], n: int) -> list[list[int]]:
        """Indices of prompts, shortest first, in batches of at most max_batch / n prompts where the longest prompt
        plus every reply's token bound fits in the model's block."""
        block, per_batch = self.model.config.block_size, max(1, self.max_batch // n)
        out: list[list[int]] = []
        for i in sorted(range(len(fitted)), key=lambda i: len(fitted[i][0])):
            current = out[-1] if out else []
            fits = current and len(current) < per_batch and (
                len(fitted[i][0]) + max(fitted[j][1] for j in current) <= block)
            if fits:
                current.append(i)
            else:
                out.append([i])
        return out

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, n: int = 1, seed: int | None = None
    ) -> list[list[Completion]]:
        """`n` completions for each prompt (token ids, e.g. from `render_prompt`), in prompt order."""
        generator = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        fitted = [self.fit_prompt(p, params) for p in prompts]
        out: list[list[Completion]] = [[] for _ in prompts]
        for chunk in self.batches(fitted, n):
            replies: list[_Reply] = []
            for replies in self._steps([fitted[i][0] for i in chunk], n, [fitted[i][1] for i in chunk], params,
                                       generator):
                pass
            for r, reply in enumerate(replies):
                out[chunk[r // n]].append(self._completion(reply))
        return out

    def _completion(self, reply: _Reply) -> Completion:
        ids, kinds = reply.ids, reply.kinds
        finished = bool(ids) and ids[-1] == self.im_end
        end = len(ids) - 1 if ids and int(ids[-1]) in self.stop_ids.tolist() else len(ids)
        calls = list(reply.calls)
        if reply.open is not None:  # the reply ended inside a call
            tool, begin = reply.open
            calls.append(ToolCall(tool, self.tokenizer.decode(ids[begin:end]), "", well_formed=False))
        body, body_kinds = ids[:end], kinds[:end]
        return Completion(
            ids=list(ids),
            text=self.tokenizer.decode(body),
            finished=finished,
            calls=calls,
            answer=self.tokenizer.decode([i for i, k in zip(body, body_kinds) if k == "text"]),
            parts=reply_parts(self.tokenizer, body, body_kinds) if calls else [("text", self.tokenizer.decode(body))],
        )

    def stream(
        self, prompt: Sequence[int], params: SamplingParams, seed: int | None = None
    ) -> Iterator[StreamToken]:
        """The tokens of one reply as they come, with their kind; stops after the stop token (not yielded)."""
        generator = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        prompt, max_new = self.fit_prompt(prompt, params)
        stops = self.stop_ids.tolist()
        for replies in self._steps([prompt], 1, [max_new], params, generator):
            token = StreamToken(replies[0].ids[-1], replies[0].kinds[-1])
            if token.id in stops:
                return
            yield token

    def reply(self, messages: Sequence[Message], params: SamplingParams, seed: int | None = None) -> Completion:
        """One assistant reply to a conversation."""
        return self.generate([render_prompt(self.tokenizer, messages)], params, n=1, seed=seed)[0][0]

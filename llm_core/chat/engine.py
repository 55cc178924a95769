"""The inference engine: sample assistant replies from a GPT with a KV cache.

- Temperature, top-k and top-p (nucleus) sampling; temperature 0 is greedy.
- Stops a row at `<|im_end|>` (or `<|endoftext|>`); a reply that hits the token bound without one is `finished=False`
  (RLHF penalises those).
- N samples per prompt in one batch: the prompt is run once (prefill), its cache is copied N times. Prompts of
  different lengths share a batch, left-padded (the KV cache masks the padding); each reply keeps the token bound it
  would have alone, and a batch never mixes a prompt with one so long that the bound would not fit.
- `stream` yields the tokens of one reply as they are sampled (the chat CLI prints them live).

It does not render chat turns (see `template`) and does not compute training log-probs (the trainers recompute
them with gradients).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from llm_core.chat.template import EOT, IM_END, Message, render_prompt, special_id
from llm_core.model import GPT, KVCache
from llm_core.tokenizer.base import Tokenizer


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


@dataclass
class Completion:
    ids: list[int]  # generated ids, with the stop token when the reply ended
    text: str  # the reply without the stop token
    finished: bool  # ended with <|im_end|>


def sample_tokens(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One token id per row (B,) from logits (B, vocab)."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / params.temperature
    if params.top_k is not None:
        kth = torch.topk(logits, min(params.top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p is not None and params.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        outside = probs.cumsum(dim=-1) - probs >= params.top_p  # keep the smallest prefix reaching top_p
        sorted_logits = sorted_logits.masked_fill(outside, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)


class Engine:
    """Samples replies from `model` for prompts rendered with `tokenizer`'s chat tokens."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, max_batch: int = 64):
        self.model, self.tokenizer, self.max_batch = model, tokenizer, max_batch
        self.im_end = special_id(tokenizer, IM_END)
        self.stop_ids = torch.tensor([self.im_end, special_id(tokenizer, EOT)])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def fit_prompt(self, prompt: Sequence[int], params: SamplingParams) -> tuple[list[int], int]:
        """The prompt (left-truncated if it leaves no room) and how many tokens may follow it."""
        block = self.model.config.block_size
        room = min(params.max_tokens, max(1, block // 2))
        prompt = list(prompt)[-(block - room):] if len(prompt) + room > block else list(prompt)
        return prompt, min(params.max_tokens, block - len(prompt))

    @torch.no_grad()
    def _steps(
        self, prompts: list[list[int]], n: int, budgets: list[int], params: SamplingParams,
        generator: torch.Generator | None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(sampled ids (rows,), finished-before mask (rows,)) per step; n rows per prompt, row r of prompt i stops
        after `budgets[i]` tokens. Prompts are left-padded to the longest."""
        was_training = self.model.training
        self.model.eval()
        try:
            width = max(len(p) for p in prompts)
            pad = torch.tensor([width - len(p) for p in prompts], device=self.device)
            x = torch.tensor([[self.im_end] * (width - len(p)) + p for p in prompts], device=self.device)
            max_new = max(budgets)
            param = next(self.model.parameters())
            cache = KVCache(self.model.config, x.size(0), width + max_new, x.device, param.dtype, left_pad=pad)
            logits = self.model(x, cache=cache)[0][:, -1]
            if n > 1:
                cache.repeat_rows(n)
                logits = logits.repeat_interleave(n, 0)
            budget = torch.tensor(budgets, device=x.device).repeat_interleave(n)
            done = torch.zeros(logits.size(0), dtype=torch.bool, device=x.device)
            stops = self.stop_ids.to(x.device)
            for step in range(max_new):
                tok = sample_tokens(logits, params, generator)
                yield tok, done.clone()
                done |= torch.isin(tok, stops) | (budget <= step + 1)
                if bool(done.all()):
                    break
                logits = self.model(tok[:, None], cache=cache)[0][:, -1]
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
            rows: list[list[int]] = [[] for _ in range(len(chunk) * n)]
            steps = self._steps([fitted[i][0] for i in chunk], n, [fitted[i][1] for i in chunk], params, generator)
            for tok, done in steps:
                for r in (~done).nonzero().flatten().tolist():
                    rows[r].append(int(tok[r]))
            for r, ids in enumerate(rows):
                out[chunk[r // n]].append(self._completion(ids))
        return out

    def _completion(self, ids: list[int]) -> Completion:
        finished = bool(ids) and ids[-1] == self.im_end
        body = ids[:-1] if ids and int(ids[-1]) in self.stop_ids.tolist() else ids
        return Completion(ids=ids, text=self.tokenizer.decode(body), finished=finished)

    def stream(self, prompt: Sequence[int], params: SamplingParams, seed: int | None = None) -> Iterator[int]:
        """The ids of one reply as they are sampled; stops after the stop token (which is not yielded)."""
        generator = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        prompt, max_new = self.fit_prompt(prompt, params)
        for tok, _ in self._steps([prompt], 1, [max_new], params, generator):
            t = int(tok[0])
            if t in self.stop_ids.tolist():
                return
            yield t

    def reply(self, messages: Sequence[Message], params: SamplingParams, seed: int | None = None) -> Completion:
        """One assistant reply to a conversation."""
        return self.generate([render_prompt(self.tokenizer, messages)], params, n=1, seed=seed)[0][0]

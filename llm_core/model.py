"""A decoder-only GPT in one file: config, blocks, model, KV cache, generation, save/load.

It follows nanoGPT's layout with the changes modern small models share (nanochat, Llama, OLMo):

- RMSNorm (with a learned gain) before attention and MLP and before the head; no biases anywhere.
- Rotary position embeddings (no learned position table), so the KV cache needs no position bookkeeping beyond an
  offset.
- QK-norm: queries and keys are RMS-normalised per head before attention, which keeps attention logits bounded and
  training stable at higher learning rates.
- MLP: GELU (4x), SwiGLU (8/3 x, rounded to a multiple of 64) or ReLU^2 (4x).
- Optional tying of the token embedding and the output head.
- `F.scaled_dot_product_attention` (flash / memory-efficient kernels on GPU).
- On CPU in float32, RMSNorm (with the residual add before it), the attention inputs (QK-norm, gains, rotary,
  head layout) and the GELU run as fused C kernels (`cpu_kernels`); the torch code beside them serves GPUs, other
  dtypes and torch.compile, and computes the same.
- `GPTConfig.from_depth(depth, ...)`: one dial for people who don't want to tune: width = 64 * depth, one head per
  64 channels.

What a post-training stage needs sits here too: `trunk()` gives the final hidden states (a reward or value head sits
on them), `token_losses()` the loss at each target token for evaluation, and `generate()` samples with a KV cache.
Weights are saved as safetensors beside a `config.json`; loading never unpickles anything.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_model, save_model

from llm_core import cpu_kernels
from llm_core.cpu_matmul import Linear
from llm_core.head_loss import IGNORE_INDEX, head_cross_entropy, head_token_losses
from llm_core.sampling import sample_tokens

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 256
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    mlp: Literal["gelu", "swiglu", "relu2"] = "gelu"
    tie_embeddings: bool = True
    dropout: float = 0.0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        assert self.n_embd % self.n_head == 0, f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}"
        assert (self.n_embd // self.n_head) % 2 == 0, "head size must be even for rotary embeddings"
        assert self.mlp in ("gelu", "swiglu", "relu2"), f"mlp must be gelu, swiglu or relu2, not {self.mlp!r}"

    @classmethod
    def from_depth(cls, depth: int, vocab_size: int, block_size: int = 256, **overrides) -> GPTConfig:
        """The single dial: `depth` layers, 64 * depth channels, heads of 64 channels."""
        n_embd = 64 * depth
        return cls(vocab_size=vocab_size, block_size=block_size, n_layer=depth, n_head=depth, n_embd=n_embd,
                   **overrides)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_hidden(self) -> int:
        if self.mlp == "swiglu":
            return 64 * math.ceil(8 * self.n_embd / 3 / 64)
        return 4 * self.n_embd


def scatter_at(keep: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A zero tensor shaped like the mask `keep`, holding `values` (one per True, in order) where it is True."""
    return torch.zeros(keep.shape, dtype=values.dtype, device=values.device).masked_scatter(keep, values)


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """RMS-normalise the last dimension of x (times `weight` if given): `F.rms_norm`, or on CPU its fused kernel
    (`cpu_kernels`; torch composes it of about seven kernels there)."""
    if cpu_kernels.usable(x, weight):
        return cpu_kernels.RMSNorm.apply(x, weight, eps)
    return F.rms_norm(x, (x.size(-1),), weight, eps)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)

    def after_add(self, x: torch.Tensor, residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(s, this norm of s) for the residual stream s = x + residual (x itself when residual is None): on CPU the
        add, the norm and, in backward, the stream's gradient accumulation are one kernel each way."""
        if residual is None:
            return x, self(x)
        if cpu_kernels.usable(x, residual, self.weight):
            return cpu_kernels.AddRMSNorm.apply(x, residual, self.weight, self.eps)
        x = x + residual
        return x, self(x)


def rotary_tables(head_dim: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Tables (length, head_dim) for rotary embeddings: channel i and i + head_dim/2 form a pair rotated by
    angle pos * theta^(-2i/head_dim). Returns [cos, cos] and [-sin, sin], so that `apply_rotary` is
    x * cos + swap_halves(x) * sin."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)


def swap_halves(x: torch.Tensor) -> torch.Tensor:
    """[x2, x1] for x = [x1, x2] on the last dimension: a roll by half, one kernel forward and backward (a `cat`
    of slices costs a zero-filled copy per slice in backward)."""
    return x.roll(x.size(-1) // 2, dims=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + D/2) of x (B, T, ..., D) by the angles of each position T; `cos` and `sin`
    are (T, D) tables, or (T, ..., D) ones that broadcast over x's middle dimensions."""
    shape = (1, x.size(1), *([1] * (x.dim() - cos.dim() - 1)), *cos.shape[1:])
    return torch.addcmul(x * cos.view(shape).to(x.dtype), swap_halves(x), sin.view(shape).to(x.dtype))


class KVCache:
    """Keys and values of every layer for `max_len` positions; `pos` is how many positions are filled.

    Rows of a batch may hold prompts of different lengths, left-padded to a common length: `left_pad[b]` is the
    number of padding positions that open row b. Their keys are masked out of attention; with rotary embeddings
    scores depend only on relative positions, so a row's shift by its padding changes nothing else."""

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device, dtype=torch.float32,
                 left_pad: torch.Tensor | None = None):
        shape = (config.n_layer, batch_size, config.n_head, max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pos = 0
        self.left_pad = None if left_pad is None or not bool(left_pad.any()) else left_pad.to(device)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, T, D) at the current position; return all keys and values so far."""
        end = self.pos + k.size(2)
        assert end <= self.max_len, f"KV cache holds {self.max_len} positions; {end} were asked for"
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def attention_mask(self, T: int) -> tuple[torch.Tensor | None, bool]:
        """(mask, is_causal) for `scaled_dot_product_attention` when T new queries follow the cached positions:
        each query sees the keys up to its own position, minus padding. A padding query also sees itself, so that
        no row of the mask is empty (its output is never read)."""
        start, device = self.pos, self.k.device
        if self.left_pad is None:
            if start == 0:
                return None, True
            if T == 1:
                return None, False
        keys = torch.arange(start + T, device=device)
        queries = start + torch.arange(T, device=device)
        mask = keys[None, :] <= queries[:, None]  # (T, Tk)
        if self.left_pad is not None:
            real = keys[None, :] >= self.left_pad[:, None]  # (B, Tk)
            mask = mask & (real[:, None, :] | (keys[None, :] == queries[:, None]))  # (B, T, Tk)
            mask = mask[:, None]  # (B, 1, T, Tk): the same for every head
        return mask, False

    def repeat_rows(self, n: int) -> None:
        """Repeat every row n times in place (row b becomes rows b*n .. b*n+n-1): n samples from one prefill."""
        self.k, self.v = self.k.repeat_interleave(n, 1), self.v.repeat_interleave(n, 1)
        if self.left_pad is not None:
            self.left_pad = self.left_pad.repeat_interleave(n)

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only these rows (indices, in order): a batch drops the replies that have finished."""
        self.k, self.v = self.k.index_select(1, rows), self.v.index_select(1, rows)
        if self.left_pad is not None:
            self.left_pad = self.left_pad.index_select(0, rows)

    def reset(self) -> None:
        self.pos = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer, self.n_head, self.head_dim = layer, config.n_head, config.head_dim
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = Linear(config.n_embd, config.n_embd)
        self.qk_gain = nn.Parameter(torch.ones(2, 1, self.head_dim))  # gains of the query and key RMSNorms
        self.eps, self.dropout = config.norm_eps, config.dropout

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None,
        mask: torch.Tensor | None, causal: bool,
    ) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.c_attn(x)
        if self.head_dim <= cpu_kernels.MAX_HEAD_DIM and cpu_kernels.usable(qkv, self.qk_gain, cos):
            q, k, v = cpu_kernels.QKVRotary.apply(qkv, self.qk_gain.view(2, self.head_dim), cos, sin, self.n_head,
                                                  self.eps)
        else:
            q, k, v = self.heads(qkv, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))

    def heads(self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q, k, v (B, H, T, D) from c_attn's output (B, T, 3C), with QK-norm and rotary embeddings (the torch path
        of `cpu_kernels.QKVRotary`)."""
        B, T, C = qkv.size(0), qkv.size(1), qkv.size(2) // 3
        qk, v = qkv.split([2 * C, C], dim=-1)  # split: one `cat` in backward, not a copy per slice
        # QK-norm's gains folded into the rotary tables: (x * g) * cos + swap(x * g) * sin
        # = x * (g * cos) + swap(x) * (swap(g) * sin), so the full-size tensor is multiplied twice, not three times
        cos, sin = cos[:, None, None, :], sin[:, None, None, :]  # (T, 1, 1, D)
        gain = self.qk_gain.to(qkv.dtype)  # (2, 1, D): queries, keys
        qk = rms_norm(qk.view(B, T, 2, self.n_head, self.head_dim), None, self.eps)
        qk = apply_rotary(qk, cos * gain, sin * swap_halves(gain))
        q, k = qk.transpose(1, 3).unbind(2)  # (B, H, T, D) each
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        return q, k, v


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.kind = config.mlp
        hidden = config.mlp_hidden
        self.c_fc = Linear(config.n_embd, 2 * hidden if self.kind == "swiglu" else hidden)
        self.c_proj = Linear(hidden, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        if self.kind == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        elif self.kind == "relu2":
            h = F.relu(h).square()
        else:
            h = cpu_kernels.GELU.apply(h) if cpu_kernels.usable(h) else F.gelu(h)
        return self.c_proj(h)


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = RMSNorm(config.n_embd, config.norm_eps)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, pending: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
        cache: KVCache | None, mask: torch.Tensor | None, causal: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x + attn(ln_1(x)), then + mlp(ln_2(x)), with each add done by the norm after it (`RMSNorm.after_add`):
        `pending` is the previous block's MLP output, still to be added to the stream x (None for the first block),
        and this block returns the stream and its own MLP output, which the next norm adds."""
        x, h = self.ln_1.after_add(x, pending)
        x, h = self.ln_2.after_add(x, self.drop(self.attn(h, cos, sin, cache, mask, causal)))
        return x, self.drop(self.mlp(h))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = RMSNorm(config.n_embd, config.norm_eps)
        self.lm_head = Linear(config.n_embd, config.vocab_size)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        cos, sin = rotary_tables(config.head_dim, config.block_size, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled down by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # -- forward passes
    def trunk(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Final hidden states (B, T, n_embd), after the last norm: what the LM head, a reward head or a value head
        reads. With a cache, `idx` continues the cached positions and the cache advances."""
        T = idx.size(1)
        start = cache.pos if cache is not None else 0
        assert start + T <= self.config.block_size, (
            f"sequence of {start + T} tokens is longer than block_size={self.config.block_size}")
        cos, sin = self.rope_cos[start:start + T], self.rope_sin[start:start + T]
        mask, causal = cache.attention_mask(T) if cache is not None else (None, True)
        x, pending = self.drop(self.wte(idx)), None
        for block in self.blocks:
            x, pending = block(x, pending, cos, sin, cache, mask, causal)
        if cache is not None:
            cache.pos += T
        return self.ln_f.after_add(x, pending)[1]

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
        return_logits: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Logits (B, T, vocab) and, given targets, the mean cross-entropy over targets != IGNORE_INDEX. With
        targets and `return_logits=False` the logits are never formed (`head_loss`) and None is returned for them."""
        h = self.trunk(idx, cache)
        if targets is not None and not return_logits:
            return None, self.head_loss(h.flatten(0, -2), targets.reshape(-1))
        logits = self.lm_head(h).float()
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX)
        return logits, loss

    def last_logits(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """`forward(idx, cache=cache)[0][:, -1]`, the logits (B, vocab) at the last position only: what sampling
        reads, without the LM head at every prompt position of a prefill."""
        return self.lm_head(self.trunk(idx, cache)[:, -1]).float()

    def head_loss(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the LM head on hidden states h (N, C) over targets (N,) != IGNORE_INDEX: chunked
        without the (N, vocab) logits in float32 (`head_loss`); through the logits under autocast or compile."""
        if h.dtype == torch.float32 and not torch.is_autocast_enabled(h.device.type) \
                and not torch.compiler.is_compiling():
            return head_cross_entropy(h, self.lm_head.weight, targets)
        return F.cross_entropy(self.lm_head(h).float(), targets, ignore_index=IGNORE_INDEX)

    def logits_where(self, idx: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """`forward(idx)[0][keep]`, the logits (N, vocab) at the N positions `keep` (B, T) marks, with the LM head
        (a (positions, vocab) matmul) applied only there: SFT's and RL's prompt positions need none."""
        return self.lm_head(self.trunk(idx)[keep]).float()

    def masked_loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of `forward(idx, targets)`, with the head applied only where targets != IGNORE_INDEX."""
        keep = targets != IGNORE_INDEX
        return self.head_loss(self.trunk(idx)[keep], targets[keep])

    @torch.no_grad()
    def token_losses(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """-log p(targets[b, t] | idx[b, :t+1]) at every position, shape (B, T), 0 where targets == IGNORE_INDEX:
        what evaluation sums (bits per byte, a choice's likelihood). The head runs only at the targets, and in
        float32 chunk by chunk (`head_token_losses`) without the (positions, vocab) logits. No gradient."""
        keep = targets != IGNORE_INDEX
        h = self.trunk(idx)[keep]
        if h.dtype == torch.float32 and not torch.is_autocast_enabled(h.device.type):
            losses = head_token_losses(h, self.lm_head.weight, targets[keep])
        else:
            losses = F.cross_entropy(self.lm_head(h).float(), targets[keep], reduction="none")
        return scatter_at(keep, losses)

    # -- generation
    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        stop_token: int | None = None,
    ) -> torch.Tensor:
        """Append up to `max_new_tokens` sampled tokens to idx (B, T), using a KV cache. temperature=0 is greedy.
        Once the context fills `block_size`, each step recomputes the last `block_size` tokens (as nanoGPT crops).
        With `stop_token`, stops when every row has produced it (rows that stopped keep emitting it)."""
        block = self.config.block_size
        B = idx.size(0)
        param = next(self.parameters())
        cache = KVCache(self.config, B, block, idx.device, param.dtype)
        done = torch.zeros(B, dtype=torch.bool, device=idx.device)
        logits = self.last_logits(idx[:, -block:], cache)
        for _ in range(max_new_tokens):
            next_id = sample_tokens(logits, temperature, top_k, generator=generator)[:, None]
            if stop_token is not None:
                next_id = torch.where(done[:, None], torch.full_like(next_id, stop_token), next_id)
                done |= next_id[:, 0] == stop_token
            idx = torch.cat([idx, next_id], dim=1)
            if stop_token is not None and bool(done.all()):
                break
            if cache.pos < block:
                logits = self.last_logits(next_id, cache)
            else:
                cache.reset()
                logits = self.last_logits(idx[:, -block:], cache)
        return idx

    # -- sizes
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward), as in the PaLM appendix / nanoGPT: 6 N for the matmuls
        (N excludes an untied embedding table, a lookup) plus 12 L T C for attention scores and values."""
        c = self.config
        n = self.num_params() - (0 if c.tie_embeddings else self.wte.weight.numel())
        return 6 * n + 12 * c.n_layer * c.n_embd * (seq_len or c.block_size)

    # -- persistence
    def save(self, directory: str) -> None:
        """Write `model.safetensors` and `config.json` into a local directory."""
        os.makedirs(directory, exist_ok=True)
        save_model(self, os.path.join(directory, WEIGHTS_FILE))
        with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(asdict(self.config), f, indent=2)

    @classmethod
    def load(cls, directory: str, device: str | torch.device = "cpu") -> GPT:
        """Load a model saved by `save` (safetensors only, no pickle)."""
        with open(os.path.join(directory, CONFIG_FILE), encoding="utf-8") as f:
            raw = json.load(f)
        known = {f.name for f in fields(GPTConfig)}
        unknown = set(raw) - known
        assert not unknown, f"{directory}/{CONFIG_FILE} has keys this GPTConfig does not know: {sorted(unknown)}"
        model = cls(GPTConfig(**raw))
        load_model(model, os.path.join(directory, WEIGHTS_FILE), device=str(device))
        return model.to(device)

"""Cross-entropy of the LM head, `F.cross_entropy(h @ weight.T, targets)`, without the (N, vocab) logits.

With a vocabulary of thousands, the logits dwarf everything else in a small model's step: for the tiny config's
2,048 tokens and 8,192 ids they are 67 MB, written by the head's matmul, read and written again by log-softmax,
filled and scattered by the loss's backward, read twice more by log-softmax's backward. Here the rows go through in
chunks of about two million logits (8 MB, while they are still in cache), and each chunk's gradient
(softmax - one-hot) is formed in the forward pass and multiplied into the gradients of h and of the head's weight
at once (the approach of Liger Kernel's fused linear cross-entropy); backward only scales them. On CPU in float32
the softmax, the loss and the gradient of a chunk are one C pass (`cpu_kernels.cross_entropy_rows_`) where torch's
ops take about five, and the three products go through oneDNN (`cpu_matmul`), the rows padded to its grid. Same
FLOPs, same result to float rounding (`tests/test_head_loss.py`); BENCHMARKS.md has the tiny config's step times.
Not twice-differentiable. `head_token_losses` gives evaluation each row's loss from the same chunks, no gradient.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from llm_core import cpu_kernels
from llm_core.cpu_matmul import aligned_rows_down, matmul_nt, onednn_rows, pad_rows, weight_grad

IGNORE_INDEX = -100  # targets with this value take no part in the loss (prompt tokens in SFT, padding)
CHUNK_LOGITS = 1 << 21


def _padded(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h (N, C) and targets (N,), checked, with rows of no loss (IGNORE_INDEX) added up to a row count oneDNN keeps
    a kernel for (unchanged when N is off its grid)."""
    vocab = weight.size(0)
    out_of_range = (targets != IGNORE_INDEX) & ((targets < 0) | (targets >= vocab))
    if bool(out_of_range.any()):
        raise IndexError(f"target {int(targets[out_of_range][0])} is out of range for {vocab} classes")
    padded = onednn_rows(h.size(0), h, weight)
    return (h, targets) if padded is None else (pad_rows(h, padded), pad_rows(targets, padded, IGNORE_INDEX))


def _chunks(h: torch.Tensor, weight: torch.Tensor,
            targets: torch.Tensor) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """(start, end, the rows' losses, their logits turned into the gradient softmax - one-hot) for chunks of the
    rows of h; an ignored row's loss is 0 and its gradient row zero."""
    rows = aligned_rows_down(max(1, CHUNK_LOGITS // weight.size(0)))  # full chunks on oneDNN's grid of shapes
    fused = cpu_kernels.usable(h, weight)
    for start in range(0, h.size(0), rows):
        end = min(h.size(0), start + rows)
        logits = matmul_nt(h[start:end], weight)
        if fused:  # one C pass: the rows' losses, and the logits become the gradient (IGNORE_INDEX < 0: no loss)
            yield start, end, cpu_kernels.cross_entropy_rows_(logits, targets[start:end]), logits
            continue
        t_chunk, v_chunk = targets[start:end].clamp(min=0), targets[start:end] != IGNORE_INDEX
        logp = torch.log_softmax(logits, dim=-1)
        losses = -logp.gather(1, t_chunk[:, None]).squeeze(1).masked_fill(~v_chunk, 0.0)
        grad = logp.exp_()  # softmax; minus one at the target, zero on ignored rows
        grad[torch.arange(end - start, device=h.device), t_chunk] -= 1.0
        grad.masked_fill_(~v_chunk[:, None], 0.0)
        yield start, end, losses, grad


class HeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        n = h.size(0)
        h, targets = _padded(h, weight, targets)
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(h) if want_h else None
        grad_w = None  # in the layout weight_grad gives: the chunks add up without a strided pass each
        total = h.new_zeros(())
        for start, end, losses, grad in _chunks(h, weight, targets):
            total += losses.sum()
            if want_h:
                grad_h[start:end] = matmul_nt(grad, weight.t())
            if want_w:
                part = weight_grad(grad, h[start:end])
                grad_w = part if grad_w is None else grad_w.add_(part)
        count = (targets != IGNORE_INDEX).sum().to(h.dtype)  # all targets ignored: 0 / 0 = nan, as F.cross_entropy
        grad_h = None if grad_h is None else grad_h[:n]
        grad_w = torch.zeros_like(weight) if want_w and grad_w is None else grad_w  # no rows at all
        ctx.save_for_backward(*(g / count if g is not None else None for g in (grad_h, grad_w)))
        return total / count

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        grad_h, grad_w = ctx.saved_tensors
        return (None if grad_h is None else grad_h * grad_loss, None if grad_w is None else grad_w * grad_loss, None)


@torch.no_grad()
def head_token_losses(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The cross-entropy of each row of the logits `h @ weight.T` (N,) against targets (N,), 0 where a target is
    IGNORE_INDEX: what evaluation sums (all tokens, ordinary tokens only), without the (N, vocab) logits."""
    n = h.size(0)
    h, targets = _padded(h, weight, targets)
    out = h.new_empty(h.size(0))
    for start, end, losses, _ in _chunks(h, weight, targets):
        out[start:end] = losses
    return out[:n]


def head_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the logits `h @ weight.T` (h (N, C), weight (vocab, C)) over targets (N,) that are
    not IGNORE_INDEX, in float32 as `GPT.forward` computes it."""
    return HeadCrossEntropy.apply(h, weight, targets)

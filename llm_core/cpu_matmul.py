"""The GPT's float32 matmuls on CPU through oneDNN: its linear layers and the LM head.

torch's CPU `F.linear` and `@` call MKL's sgemm for float32. On the AMD EPYC of BENCHMARKS.md that sgemm is 1.7-2.5x
slower than oneDNN's float32 inner product (`torch.ops.mkldnn._linear_pointwise`, the op torch.compile lowers a CPU
linear to) at every shape of the tiny GPT's step; MKL picks its code path by CPU vendor. Both are float32
arithmetic, summed in a different order: the same result to float rounding (`tests/test_cpu_matmul.py`).

oneDNN compiles a kernel for each shape it meets, about 1 ms and up to 2 MB that the process keeps (measured: 150
row counts of the head's three products grew the process by 800 MB). So only a bounded set of shapes goes there:
every dimension at most `ROW_ALIGN`, or on a grid of four sizes a doubling (`aligned_rows`). `Linear` pads its rows
up to the grid (SFT batches are as wide as their longest conversation, so their row counts vary); `head_loss` pads
the head's. oneDNN also costs
about 10 us a call more, so a product under `MIN_MACS` multiply-adds (decoding a token for a few rows) stays with
torch, as does everything off the CPU, outside float32 (autocast), or inside torch.compile.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ROW_ALIGN = 64
MIN_MACS = 1 << 20
_INNER_PRODUCT = torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None


def _step(n: int) -> int:
    """The grid a size over ROW_ALIGN is rounded up to: multiples of a quarter of the power of two below it, at least
    ROW_ALIGN. Padding adds under ROW_ALIGN rows or a quarter, and the number of shapes grows with log(n)."""
    return max(ROW_ALIGN, 1 << max(n.bit_length() - 3, 0))


def _bounded(n: int) -> bool:
    return n <= ROW_ALIGN or n % _step(n) == 0


def _fits(m: int, k: int, n: int) -> bool:
    return all(map(_bounded, (m, k, n))) and m * k * n >= MIN_MACS


def _on_cpu_in_float32(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (_INNER_PRODUCT is not None and a.device.type == "cpu" and a.dtype == b.dtype == torch.float32
            and not torch.compiler.is_compiling())


def usable(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether `matmul_nt(a, b)` goes through oneDNN: 2-D float32 CPU operands of bounded shapes (see above), a
    product of at least MIN_MACS multiply-adds."""
    return a.dim() == b.dim() == 2 and _fits(a.size(0), a.size(1), b.size(0)) and _on_cpu_in_float32(a, b)


def aligned_rows(n: int) -> int:
    """`n` rows padded to a shape `usable` accepts."""
    return n if _bounded(n) else n + _step(n) - n % _step(n)


def aligned_rows_down(n: int) -> int:
    """The largest row count on the grid that is at most `n` (a chunk size that stays on it)."""
    return n if n <= ROW_ALIGN else n - n % _step(n)


def onednn_rows(rows: int, x: torch.Tensor, weight: torch.Tensor) -> int | None:
    """The row count to pad `rows` rows of x (rows, in) to for `x @ weight.T` through oneDNN, or None where torch's
    matmul does that product."""
    padded = aligned_rows(rows)
    return padded if _fits(padded, weight.size(1), weight.size(0)) and _on_cpu_in_float32(x, weight) else None


def pad_rows(t: torch.Tensor, rows: int, value: float = 0.0) -> torch.Tensor:
    """`t` with rows of `value` appended up to `rows` (t itself when it has them)."""
    return t if t.size(0) == rows else F.pad(t, (0, 0) * (t.dim() - 1) + (0, rows - t.size(0)), value=value)


def matmul_nt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`a @ b.T` for a (M, K) and b (N, K), either of them possibly a transposed view."""
    return _INNER_PRODUCT(a, b, None, "none", [], "") if usable(a, b) else a @ b.t()


def weight_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`grad.T @ x` (out, in) for grad (M, out) and x (M, in), formed as the product oneDNN does faster: with the
    wider side as the inner product's output features."""
    return matmul_nt(x.t(), grad.t()).t() if grad.size(1) > x.size(1) else matmul_nt(grad.t(), x.t())


class _Linear(torch.autograd.Function):
    """`x @ weight.T` over x's rows padded to `padded_rows` (`onednn_rows`): the padding's output rows are dropped,
    its gradient rows are zero."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, padded_rows: int) -> torch.Tensor:
        rows = x.reshape(-1, x.size(-1))
        padded = pad_rows(rows, padded_rows)
        ctx.save_for_backward(padded, weight)
        ctx.shape = x.shape
        return matmul_nt(padded, weight)[: rows.size(0)].view(*x.shape[:-1], weight.size(0))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        padded, weight = ctx.saved_tensors
        rows = grad.numel() // weight.size(0)
        grad = pad_rows(grad.reshape(rows, weight.size(0)), padded.size(0))
        grad_x = matmul_nt(grad, weight.t())[:rows].view(ctx.shape) if ctx.needs_input_grad[0] else None
        grad_w = weight_grad(grad, padded) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None


class Linear(nn.Linear):
    """`nn.Linear` without bias (same parameters and state dict) whose CPU float32 products, forward and backward,
    go through `matmul_nt` where it pays; otherwise `F.linear`."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = onednn_rows(x.numel() // max(self.in_features, 1), x, self.weight)
        return F.linear(x, self.weight) if padded is None else _Linear.apply(x, self.weight, padded)

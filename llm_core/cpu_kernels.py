"""Fused CPU kernels for the GPT: RMSNorm (with the residual add before it), the attention inputs (QK-norm, gains,
rotary, head layout), the GELU with its derivative, and the LM head's cross-entropy over a chunk of logits.

A small model's CPU step is bound by passes over memory and kernel launches, not by arithmetic: torch runs RMSNorm
as about seven kernels forward and backward and the QK-norm + rotary path as about twenty, where LayerNorm has one
fused kernel each way. `cpu_kernels.c` does each in one pass, on torch's OpenMP threads; training and inference both
use it. It is compiled on first use with the system C compiler (`$CC`, else `cc`) into a cache keyed by the source,
the flags and the compiler (`$LLMPIPE_KERNEL_CACHE`, else `~/.cache/llm-pipeline/kernels`) and called through
ctypes: plain C, no torch headers, so it compiles in a fraction of a second. Where no compiler works, or with
`LLMPIPE_CPU_KERNELS=0`, `load()` returns None and the model keeps its torch path (same results to float rounding;
`tests/test_cpu_kernels.py` checks both agree).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("cpu_kernels.c")
FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC"]
# vector extensions by the CPU torch itself dispatches for (its kernels use them too); part of the cache key
VECTOR_FLAGS = {"AVX2": ["-mavx2", "-mfma"], "AVX512": ["-mavx2", "-mfma", "-mavx512f", "-mprefer-vector-width=512"]}
MAX_HEAD_DIM = 1024  # the C side's scratch row
log = logging.getLogger(__name__)

_P, _L, _F, _I = ctypes.c_void_p, ctypes.c_long, ctypes.c_float, ctypes.c_int
_SIGNATURES = {
    "rms_norm_forward": [_P, _P, _P, _P, _P, _P, _L, _L, _F, _I],
    "rms_norm_backward": [_P, _P, _P, _P, _P, _P, _P, _L, _L, _I],
    "qkv_rotary_forward": [_P, _P, _P, _P, _P, _P, _L, _L, _L, _L, _F, _I],
    "qkv_rotary_backward": [_P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _L, _L, _L, _L, _I],
    "gelu_forward": [_P, _P, _P, _L, _I],
    "cross_entropy_rows": [_P, _P, _P, _L, _L, _I],
}


def _cache_dir() -> Path:
    if os.environ.get("LLMPIPE_KERNEL_CACHE"):
        return Path(os.environ["LLMPIPE_KERNEL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm-pipeline" / "kernels"


def _flags() -> list[str]:
    return FLAGS + VECTOR_FLAGS.get(torch.backends.cpu.get_cpu_capability(), [])


def _compile(compiler: str, target: Path) -> None:
    """Build the library next to `target` and move it into place, so concurrent processes never load half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        subprocess.run([compiler, *_flags(), str(SOURCE), "-o", str(out)], check=True, capture_output=True, text=True,
                       timeout=120)
        os.replace(out, target)


@functools.cache
def load() -> ctypes.CDLL | None:
    """The compiled kernels, or None (disabled, or no working C compiler: the reason is logged once)."""
    if os.environ.get("LLMPIPE_CPU_KERNELS", "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        log.warning("no C compiler (%s) found: the model uses torch's ops for RMSNorm and rotary on CPU",
                    os.environ.get("CC", "cc"))
        return None
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(_flags() + [compiler, platform.machine()]).encode())
    target = _cache_dir() / f"cpu_kernels-{digest.hexdigest()[:16]}.so"
    try:
        if not target.exists():
            _compile(compiler, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        log.warning("compiling %s with %s failed, so the model uses torch's ops on CPU: %s", SOURCE,
                    compiler, detail)
        return None
    for name, argtypes in _SIGNATURES.items():
        getattr(lib, name).argtypes, getattr(lib, name).restype = argtypes, None
    return lib


def usable(*tensors: torch.Tensor | None) -> bool:
    """Whether the kernels apply: float32 CPU tensors (None: an absent optional one) outside a traced graph
    (torch.compile fuses the torch path itself), and the library loads."""
    return (all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32) for t in tensors)
            and not torch.compiler.is_compiling() and load() is not None)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _rms_norm(ctx, x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor | None,
              eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(the rows normalised: x, or x + residual; the norm of them), saving what the backward needs."""
    x = x.contiguous()
    d = x.size(-1)
    residual = None if residual is None else residual.contiguous()  # held here: the kernel reads its memory
    total = None if residual is None else torch.empty_like(x)
    y, rstd = torch.empty_like(x), x.new_empty(x.numel() // d)
    load().rms_norm_forward(x.data_ptr(), _ptr(residual), _ptr(weight), _ptr(total), y.data_ptr(), rstd.data_ptr(),
                            rstd.numel(), d, eps, torch.get_num_threads())
    normed = x if total is None else total
    ctx.save_for_backward(normed, rstd, weight)
    return normed, y


def _rms_norm_backward(ctx, grad: torch.Tensor, grad_sum: torch.Tensor | None) -> tuple[torch.Tensor,
                                                                                         torch.Tensor | None]:
    """(the gradient of the rows normalised, plus `grad_sum` if given; the gain's gradient or None)."""
    x, rstd, weight = ctx.saved_tensors
    grad = grad.contiguous()
    grad_sum = None if grad_sum is None else grad_sum.contiguous()
    grad_x = torch.empty_like(x)
    grad_weight = torch.empty_like(weight) if weight is not None and ctx.needs_input_grad[-2] else None
    load().rms_norm_backward(grad.data_ptr(), _ptr(grad_sum), x.data_ptr(),
                             _ptr(weight), rstd.data_ptr(), grad_x.data_ptr(), _ptr(grad_weight), rstd.numel(),
                             x.size(-1), torch.get_num_threads())
    return grad_x, grad_weight


class RMSNorm(torch.autograd.Function):
    """`F.rms_norm(x, (x.size(-1),), weight, eps)`, one kernel forward and one backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
        return _rms_norm(ctx, x, None, weight, eps)[1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        return *_rms_norm_backward(ctx, grad, None), None


class AddRMSNorm(torch.autograd.Function):
    """(s, `F.rms_norm(s, (s.size(-1),), weight, eps)`) for s = x + residual: a residual stream's add and the norm
    after it in one kernel each way; in backward the stream's gradient is added to the norm's in the same pass,
    where autograd would accumulate it separately."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor | None,
                eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None: no zero tensor to add
        return _rms_norm(ctx, x, residual, weight, eps)

    @staticmethod
    def backward(ctx, grad_sum: torch.Tensor | None, grad: torch.Tensor | None):
        if grad is None:  # only the sum was used (or neither)
            return grad_sum, grad_sum, None, None
        grad_x, grad_weight = _rms_norm_backward(ctx, grad, grad_sum)
        return grad_x, grad_x, grad_weight, None


class QKVRotary(torch.autograd.Function):
    """The attention inputs from c_attn's output qkv (B, T, 3C): q and k RMS-normalised per head, times their gains
    (2, D), rotated by the rotary tables cos, sin (T, D). q, k, v are returned as (B, H, T, D) views of one
    (B, T, 3C) tensor, the layout nanoGPT hands to attention."""

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, gain: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_head: int,
                eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C3 = qkv.shape
        D = C3 // 3 // n_head
        qkv, gain, cos, sin = qkv.contiguous(), gain.contiguous(), cos.contiguous(), sin.contiguous()
        out, rstd = torch.empty_like(qkv), qkv.new_empty(B, T, 2, n_head)
        load().qkv_rotary_forward(qkv.data_ptr(), gain.data_ptr(), cos.data_ptr(), sin.data_ptr(), out.data_ptr(),
                                  rstd.data_ptr(), B, T, n_head, D, eps, torch.get_num_threads())
        ctx.save_for_backward(qkv, gain, cos, sin, rstd)
        ctx.n_head = n_head
        return out.view(B, T, 3, n_head, D).transpose(1, 3).unbind(2)

    @staticmethod
    def backward(ctx, dq: torch.Tensor, dk: torch.Tensor, dv: torch.Tensor):
        qkv, gain, cos, sin, rstd = ctx.saved_tensors
        B, T, _ = qkv.shape
        H, D = ctx.n_head, gain.size(-1)
        grads = [qkv.new_zeros(B, H, T, D) if g is None else g if g.stride(-1) == 1 else g.contiguous()
                 for g in (dq, dk, dv)]
        strides = (ctypes.c_long * 9)(*(n for g in grads for n in g.stride()[:3]))
        dqkv, dgain = torch.empty_like(qkv), torch.empty_like(gain)
        load().qkv_rotary_backward(*(g.data_ptr() for g in grads), strides, qkv.data_ptr(), gain.data_ptr(),
                                   cos.data_ptr(), sin.data_ptr(), rstd.data_ptr(), dqkv.data_ptr(), dgain.data_ptr(),
                                   B, T, H, D, torch.get_num_threads())
        return dqkv, dgain, None, None, None, None


class GELU(torch.autograd.Function):
    """`F.gelu(x)`, the exact (erf) form, to within 5e-7 (torch's own float32 GELU is within about 1e-6 of the
    exact value): one pass forward that also writes the derivative where a gradient is wanted, so the backward is
    one multiply instead of recomputing erf and exp from x."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        y = torch.empty_like(x)
        dy = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        load().gelu_forward(x.data_ptr(), y.data_ptr(), _ptr(dy), x.numel(), torch.get_num_threads())
        ctx.save_for_backward(dy)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (dy,) = ctx.saved_tensors
        return grad * dy


def cross_entropy_rows_(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy of contiguous logits (N, V) against targets (N,) (a negative target: no loss), and
    the logits overwritten with its gradient, softmax - one-hot (zero rows where there is no target)."""
    assert logits.is_contiguous() and targets.dtype == torch.long and targets.size(0) == logits.size(0)
    if targets.numel() and int(targets.max()) >= logits.size(1):
        raise IndexError(f"target {int(targets.max())} is out of range for {logits.size(1)} classes")
    targets = targets.contiguous()
    loss = logits.new_empty(logits.size(0))
    load().cross_entropy_rows(logits.data_ptr(), targets.data_ptr(), loss.data_ptr(), logits.size(0),
                              logits.size(1), torch.get_num_threads())
    return loss

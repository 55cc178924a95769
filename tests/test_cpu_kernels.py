"""The fused CPU kernels (llm_core/cpu_kernels.c) against the torch code they replace: values and gradients, the
GPT's loss, gradients and generation with and without them, and the fallback when they cannot be built."""

import logging

import pytest
import torch
import torch.nn.functional as F

from llm_core import cpu_kernels
from llm_core.model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread", "cpu_kernels_built")


def torch_path(monkeypatch) -> None:
    monkeypatch.setattr(cpu_kernels, "usable", lambda *tensors: False)


@pytest.mark.parametrize("with_weight", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
def test_rms_norm_matches_torch_in_value_and_gradient(with_weight, threads):
    torch.manual_seed(0)
    torch.set_num_threads(threads)  # the fixture restores the count; 2 threads split rows and reduce the weight's grad
    x = torch.randn(4, 9, 48).transpose(0, 1).requires_grad_()  # not contiguous: the kernel copies it
    w = (torch.rand(48) + 0.5).requires_grad_() if with_weight else None
    grad = torch.randn(9, 4, 48)
    out = cpu_kernels.RMSNorm.apply(x, w, 1e-6)
    want = F.rms_norm(x, (48,), w, 1e-6)
    torch.testing.assert_close(out, want)
    inputs = (x, w) if with_weight else (x,)
    for got, ref in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(want, inputs, grad)):
        torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("uses", ["both", "norm", "sum"])
@pytest.mark.parametrize("threads", [1, 2])
def test_add_rms_norm_matches_the_add_then_the_norm(uses, threads):
    """The residual add fused into the norm: both outputs and, whichever of them the loss reads, the gradients of
    x, the residual and the gain (one tensor reaching both summands, the stream's gradient added in the kernel)."""
    torch.manual_seed(1)
    torch.set_num_threads(threads)
    x, residual = torch.randn(3, 7, 40, requires_grad=True), torch.randn(3, 7, 40, requires_grad=True)
    w = (torch.rand(40) + 0.5).requires_grad_()
    g_sum, g_norm = torch.randn(3, 7, 40), torch.randn(3, 7, 40)

    def loss(total, normed):
        return ((total * g_sum).sum() if uses != "norm" else 0) + ((normed * g_norm).sum() if uses != "sum" else 0)

    total, normed = cpu_kernels.AddRMSNorm.apply(x, residual, w, 1e-6)
    want_total = x + residual
    want_normed = F.rms_norm(want_total, (40,), w, 1e-6)
    torch.testing.assert_close(total, want_total)
    torch.testing.assert_close(normed, want_normed)
    inputs = (x, residual) if uses == "sum" else (x, residual, w)
    got = torch.autograd.grad(loss(total, normed), inputs)
    want = torch.autograd.grad(loss(want_total, want_normed), inputs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_rms_norm_without_grad_needs_no_graph():
    x = torch.randn(5, 32)
    with torch.no_grad():
        out = cpu_kernels.RMSNorm.apply(x, None, 1e-6)
    assert not out.requires_grad
    torch.testing.assert_close(out, F.rms_norm(x, (32,), None, 1e-6))


@pytest.mark.parametrize("threads", [1, 2])
def test_gelu_and_its_derivative_match_the_exact_form(threads):
    """Against the erf GELU in float64, over the range where it bends, both tails and the values a layer sees; NaN
    stays NaN; no derivative is written without a graph."""
    torch.set_num_threads(threads)
    x = torch.cat([torch.linspace(-12, 12, 24_001), torch.randn(10_000) * 3, torch.tensor([0.0, -1e-30, 80.0, -80.0])])
    x = x.requires_grad_()
    y = cpu_kernels.GELU.apply(x)
    exact = x.detach().double().requires_grad_()
    want = F.gelu(exact)
    torch.testing.assert_close(y.double(), want.detach(), rtol=0, atol=5e-7)
    (got_grad,) = torch.autograd.grad(y.sum(), x)
    (want_grad,) = torch.autograd.grad(want.sum(), exact)
    torch.testing.assert_close(got_grad.double(), want_grad, rtol=0, atol=5e-7)
    assert cpu_kernels.GELU.apply(torch.tensor([float("nan")])).isnan().all()
    with torch.no_grad():
        torch.testing.assert_close(cpu_kernels.GELU.apply(x), y.detach())


def reference_heads(qkv, gain, cos, sin, n_head, eps):
    """The textbook QK-norm + rotary: normalise each head, times its gain, rotate pairs (i, i + D/2)."""
    B, T, C3 = qkv.shape
    D = C3 // 3 // n_head
    q, k, v = qkv.view(B, T, 3, n_head, D).unbind(2)

    def rotate(t):
        swapped = torch.cat([t[..., D // 2:], t[..., :D // 2]], dim=-1)
        return t * cos[None, :, None] + swapped * sin[None, :, None]

    q = rotate(F.rms_norm(q, (D,), eps=eps) * gain[0])
    k = rotate(F.rms_norm(k, (D,), eps=eps) * gain[1])
    return tuple(t.transpose(1, 2) for t in (q, k, v))


@pytest.mark.parametrize("threads", [1, 2])
def test_qkv_rotary_matches_the_textbook_form(threads):
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    B, T, H, D = 2, 7, 3, 16
    model = GPT(GPTConfig(vocab_size=11, block_size=T, n_layer=1, n_head=H, n_embd=H * D))
    cos, sin = model.rope_cos, model.rope_sin
    qkv = torch.randn(B, T, 3 * H * D, requires_grad=True)
    gain = (torch.rand(2, D) + 0.5).requires_grad_()
    got = cpu_kernels.QKVRotary.apply(qkv, gain, cos, sin, H, 1e-6)
    want = reference_heads(qkv, gain, cos, sin, H, 1e-6)
    for a, b in zip(got, want):
        assert a.shape == (B, H, T, D)
        torch.testing.assert_close(a, b)
    grads = [torch.randn(B, H, T, D) for _ in range(3)]
    grads[1] = grads[1].transpose(1, 2).contiguous().transpose(1, 2)  # strided, as attention's backward gives them
    for a, b in zip(torch.autograd.grad(got, (qkv, gain), grads), torch.autograd.grad(want, (qkv, gain), grads)):
        torch.testing.assert_close(a, b)


def test_qkv_rotary_backward_with_an_unused_output():
    torch.manual_seed(0)
    B, T, H, D = 1, 4, 2, 8
    model = GPT(GPTConfig(vocab_size=5, block_size=T, n_layer=1, n_head=H, n_embd=H * D))
    cos, sin = model.rope_cos, model.rope_sin
    qkv = torch.randn(B, T, 3 * H * D, requires_grad=True)
    gain = torch.ones(2, D, requires_grad=True)
    q, _, v = cpu_kernels.QKVRotary.apply(qkv, gain, cos, sin, H, 1e-6)
    (q.sum() + v.square().sum()).backward()
    rq, _, rv = reference_heads(qkv, gain, cos, sin, H, 1e-6)
    want = torch.autograd.grad(rq.sum() + rv.square().sum(), qkv)[0]
    torch.testing.assert_close(qkv.grad, want)
    assert qkv.grad[..., H * D:2 * H * D].abs().max() == 0  # keys took no part


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_gpt_loss_and_every_gradient_match_the_torch_path(mlp, monkeypatch):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=24, n_layer=2, n_head=4, n_embd=64, mlp=mlp))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 or "qk_gain" in name:
                p.add_(torch.randn_like(p) * 0.3)  # gains away from 1, so a wrong gain gradient shows
    idx, targets = torch.randint(0, 50, (3, 24)), torch.randint(0, 50, (3, 24))

    def loss_and_grads():
        model.zero_grad()
        loss = model(idx, targets)[1]
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    loss, grads = loss_and_grads()
    torch_path(monkeypatch)
    ref_loss, ref_grads = loss_and_grads()
    torch.testing.assert_close(loss, ref_loss)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_generation_with_a_kv_cache_matches_the_torch_path(monkeypatch):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    prompt = torch.randint(0, 40, (2, 5))
    fused = model.generate(prompt, 12, temperature=0.0)
    torch_path(monkeypatch)
    assert torch.equal(fused, model.generate(prompt, 12, temperature=0.0))


def test_disabled_or_unbuildable_kernels_fall_back_to_torch(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("LLMPIPE_KERNEL_CACHE", str(tmp_path))
    cpu_kernels.load.cache_clear()
    try:
        monkeypatch.setenv("LLMPIPE_CPU_KERNELS", "0")
        assert cpu_kernels.load() is None
        cpu_kernels.load.cache_clear()
        monkeypatch.setenv("LLMPIPE_CPU_KERNELS", "1")
        monkeypatch.setenv("CC", "no-such-compiler")
        with caplog.at_level(logging.WARNING, logger="llm_core.cpu_kernels"):
            assert cpu_kernels.load() is None
        assert "no-such-compiler" in caplog.text
        assert not cpu_kernels.usable(torch.ones(2))
        model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))
        loss = model(torch.randint(0, 20, (2, 8)), torch.randint(0, 20, (2, 8)))[1]
        loss.backward()
        assert torch.isfinite(loss)
    finally:
        cpu_kernels.load.cache_clear()
        monkeypatch.undo()
        assert cpu_kernels.load() is not None


def test_the_library_is_built_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMPIPE_KERNEL_CACHE", str(tmp_path))
    cpu_kernels.load.cache_clear()
    try:
        assert cpu_kernels.load() is not None
        built = list(tmp_path.iterdir())
        assert len(built) == 1 and built[0].suffix == ".so"
        mtime = built[0].stat().st_mtime_ns
        cpu_kernels.load.cache_clear()
        assert cpu_kernels.load() is not None
        assert built[0].stat().st_mtime_ns == mtime
    finally:
        cpu_kernels.load.cache_clear()

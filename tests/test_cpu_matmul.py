"""The oneDNN products of `llm_core.cpu_matmul` against torch's float32 matmul: values, gradients, padding, shapes."""

import pytest
import torch
import torch.nn.functional as F

from llm_core import cpu_matmul
from llm_core.cpu_matmul import Linear, aligned_rows, aligned_rows_down, matmul_nt, usable, weight_grad

needs_onednn = pytest.mark.skipif(cpu_matmul._INNER_PRODUCT is None, reason="this torch has no oneDNN")


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(b.detach().abs().max()))


@needs_onednn
@pytest.mark.parametrize("m,k,n", [(256, 128, 8192), (64, 512, 128), (1024, 128, 384), (40, 128, 8192)])
def test_matmul_nt_goes_through_onednn_and_equals_torch(m, k, n):
    torch.manual_seed(0)
    a, b = torch.randn(m, k), torch.randn(n, k)
    assert usable(a, b)
    assert close(matmul_nt(a, b), a @ b.t())
    # transposed views, as the backward passes them
    assert close(matmul_nt(a.t().contiguous().t(), b.t().contiguous().t()), a @ b.t())


def test_shapes_oneDNN_would_compile_a_kernel_for_each_of_stay_with_torch():
    a, b = torch.randn(908, 128), torch.randn(512, 128)  # 908 rows: not on the grid
    assert not usable(a, b)
    assert not usable(torch.randn(8, 128), torch.randn(128, 128))  # under MIN_MACS
    assert not usable(torch.randn(256, 128, dtype=torch.float64), torch.randn(512, 128, dtype=torch.float64))
    assert close(matmul_nt(a, b), a @ b.t())


def test_aligned_rows_pad_little_onto_a_small_grid():
    sizes = {aligned_rows(n) for n in range(1, 8193)}
    assert all(cpu_matmul._bounded(s) for s in sizes)
    assert all(0 <= aligned_rows(n) - n < max(cpu_matmul.ROW_ALIGN, n / 4) for n in range(1, 8193))
    assert len(sizes) == 64 + 3 + 4 * 5  # every size up to 64; 128, 192, 256; then four sizes a doubling
    assert aligned_rows(908) == 1024 and aligned_rows(2048) == 2048 and aligned_rows(65) == 128
    # chunk sizes rounded down stay on the same grid, losing under 64 rows or a quarter
    assert all(cpu_matmul._bounded(aligned_rows_down(n)) and 0 <= n - aligned_rows_down(n) < max(64, n / 4)
               for n in range(1, 8193))
    assert aligned_rows_down(2995) == 2560 and aligned_rows_down(256) == 256


def test_weight_grad_is_grad_transposed_times_x():
    torch.manual_seed(1)
    for out_features, in_features in [(8192, 128), (128, 512), (384, 128)]:
        grad, x = torch.randn(256, out_features), torch.randn(256, in_features)
        assert close(weight_grad(grad, x), grad.t() @ x)


@pytest.mark.parametrize("shape, padded", [((16, 57, 128), 1024), ((3, 5, 128), None), ((2, 128, 128), 256)])
def test_linear_matches_nn_linear_forward_and_backward(shape, padded, monkeypatch):
    """Rows padded to the grid (16 x 57 = 912 -> 1024; 256 as it is) through oneDNN, or a small product (15 rows)
    through torch, with the same outputs and gradients as F.linear."""
    torch.manual_seed(2)
    layer = Linear(128, 384)
    x = torch.randn(*shape, requires_grad=True)
    if cpu_matmul._INNER_PRODUCT is not None:
        calls = []
        monkeypatch.setattr(cpu_matmul, "_INNER_PRODUCT", lambda a, *rest: calls.append(a.shape) or
                            torch.ops.mkldnn._linear_pointwise(a, *rest))
    x_ref = x.detach().clone().requires_grad_()
    out, ref = layer(x), F.linear(x_ref, layer.weight)
    assert out.shape == ref.shape and close(out, ref)
    g = torch.randn_like(ref)
    out.backward(g)
    weight_grad_ours = layer.weight.grad.clone()
    layer.weight.grad = None
    ref.backward(g)
    assert close(x.grad, x_ref.grad)
    assert close(weight_grad_ours, layer.weight.grad)
    if cpu_matmul._INNER_PRODUCT is not None:  # the forward and the two gradients, all on the padded rows
        assert (len(calls), calls[0][0] if calls else None) == ((3, padded) if padded else (0, None))


def test_linear_keeps_nn_linear_parameters_and_state_dict():
    layer = Linear(128, 384)
    assert isinstance(layer, torch.nn.Linear) and layer.bias is None
    assert set(layer.state_dict()) == {"weight"} and layer.weight.shape == (384, 128)

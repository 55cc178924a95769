"""The LM head's chunked cross-entropy against `F.cross_entropy` of the full logits: loss, gradients, ignored
targets, chunk boundaries, rows padded for oneDNN, scaling by the upstream gradient, evaluation's per-row losses, and
the GPT paths that use it; each through the CPU kernel (`cpu_kernels.cross_entropy_rows_`) and through torch's ops."""

import pytest
import torch
import torch.nn.functional as F

from llm_core import cpu_kernels, cpu_matmul, head_loss
from llm_core.cpu_matmul import pad_rows
from llm_core.head_loss import IGNORE_INDEX, head_cross_entropy, head_token_losses
from llm_core.model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(params=["kernels", "torch"])
def loss_path(request, monkeypatch):
    if request.param == "kernels":
        request.getfixturevalue("cpu_kernels_built")
    else:
        monkeypatch.setattr(cpu_kernels, "usable", lambda *tensors: False)
    return request.param


@pytest.fixture
def inputs():
    torch.manual_seed(0)
    h = torch.randn(37, 16, requires_grad=True)
    weight = (torch.randn(50, 16) * 0.3).requires_grad_()
    targets = torch.randint(0, 50, (37,))
    targets[::5] = IGNORE_INDEX
    return h, weight, targets


def reference(h, weight, targets):
    return F.cross_entropy(h @ weight.t(), targets, ignore_index=IGNORE_INDEX)


@pytest.mark.parametrize("chunk_logits", [50, 7 * 50, 1 << 21], ids=["one-row-chunks", "7-row-chunks", "one-chunk"])
def test_loss_and_gradients_match_the_full_logits(inputs, chunk_logits, loss_path, monkeypatch):
    monkeypatch.setattr(head_loss, "CHUNK_LOGITS", chunk_logits)
    h, weight, targets = inputs
    got = head_cross_entropy(h, weight, targets)
    want = reference(h, weight, targets)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got * 3.0, (h, weight)), torch.autograd.grad(want * 3.0, (h, weight))):
        torch.testing.assert_close(a, b)
    ignored = targets == IGNORE_INDEX
    assert torch.autograd.grad(head_cross_entropy(h, weight, targets), h)[0][ignored].abs().max() == 0


def test_only_the_gradients_asked_for_are_formed(inputs, loss_path):
    h, weight, targets = inputs
    frozen_head = head_cross_entropy(h, weight.detach(), targets)
    torch.testing.assert_close(torch.autograd.grad(frozen_head, h)[0],
                               torch.autograd.grad(reference(h, weight.detach(), targets), h)[0])
    with torch.no_grad():
        loss = head_cross_entropy(h, weight, targets)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, reference(h, weight, targets).detach())


def test_all_targets_ignored_gives_nan_as_cross_entropy_does(inputs, loss_path):
    h, weight, _ = inputs
    nothing = torch.full((37,), IGNORE_INDEX)
    assert torch.isnan(head_cross_entropy(h, weight, nothing)) and torch.isnan(reference(h, weight, nothing))


def test_large_logits_and_a_wide_vocabulary_stay_exact(loss_path):
    """Logits in the hundreds (softmax needs its max subtracted) over 8,192 ids, as the tiny config's head has."""
    torch.manual_seed(1)
    h = (torch.randn(9, 32) * 20).requires_grad_()
    weight = torch.randn(8192, 32).requires_grad_()
    targets = torch.randint(0, 8192, (9,))
    got, want = head_cross_entropy(h, weight, targets), reference(h, weight, targets)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got, (h, weight)), torch.autograd.grad(want, (h, weight))):
        torch.testing.assert_close(a, b)


def test_rows_padded_for_onednn_change_neither_loss_nor_gradients(loss_path, monkeypatch):
    """300 rows of 128 over 8,192 ids, as SFT's assistant positions come: padded to 320 rows (of no loss) for
    oneDNN's products on CPU, chunked 256 + 64; the gradient of h keeps its 300 rows."""
    torch.manual_seed(2)
    h = torch.randn(300, 128, requires_grad=True)
    weight = (torch.randn(8192, 128) * 0.1).requires_grad_()
    targets = torch.randint(0, 8192, (300,))
    targets[::7] = IGNORE_INDEX
    padded_to = []
    monkeypatch.setattr(head_loss, "pad_rows", lambda t, rows, *a: padded_to.append(rows) or pad_rows(t, rows, *a))
    got, want = head_cross_entropy(h, weight, targets), reference(h, weight, targets)
    assert padded_to == ([320, 320] if cpu_matmul._INNER_PRODUCT is not None else [])  # h, and targets as ignored
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got, (h, weight)), torch.autograd.grad(want, (h, weight))):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("rows", [37, 300], ids=["off-grid", "padded-for-onednn"])
def test_token_losses_are_each_rows_cross_entropy(loss_path, rows, monkeypatch):
    """Evaluation's per-row losses (no gradient): F.cross_entropy(reduction='none') of the full logits, 0 where a
    target is ignored, across chunk boundaries and with the rows padded for oneDNN (300 -> 320) cut off again."""
    monkeypatch.setattr(head_loss, "CHUNK_LOGITS", 64 * 8192)
    torch.manual_seed(3)
    h, weight = torch.randn(rows, 128), torch.randn(8192, 128) * 0.1
    targets = torch.randint(0, 8192, (rows,))
    targets[::7] = IGNORE_INDEX
    got = head_token_losses(h, weight, targets)
    want = F.cross_entropy(h @ weight.t(), targets, ignore_index=IGNORE_INDEX, reduction="none")
    assert got.shape == (rows,) and (got[targets == IGNORE_INDEX] == 0).all()
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("bad", [50, -5])
def test_a_target_outside_the_vocabulary_is_an_error(inputs, loss_path, bad):
    """Past the vocabulary, or negative without being IGNORE_INDEX: an error naming it, never a write past a row
    or a silently ignored (or clamped) row."""
    h, weight, targets = inputs
    targets = targets.clone()
    targets[3] = bad
    with pytest.raises(IndexError, match=f"target {bad} is out of range for 50 classes"):
        head_cross_entropy(h, weight, targets)


def test_gpt_loss_without_logits_is_the_forward_loss_with_tied_embeddings():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=97, block_size=16, n_layer=2, n_head=2, n_embd=32))
    assert model.lm_head.weight is model.wte.weight
    idx, targets = torch.randint(0, 97, (3, 16)), torch.randint(0, 97, (3, 16))
    targets[0, :5] = IGNORE_INDEX

    def loss_and_grads(return_logits):
        model.zero_grad()
        logits, loss = model(idx, targets, return_logits=return_logits)
        assert (logits is None) == (not return_logits)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    loss, grads = loss_and_grads(False)
    ref_loss, ref_grads = loss_and_grads(True)
    torch.testing.assert_close(loss, ref_loss)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], msg=name)

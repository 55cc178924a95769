"""The GPT model: shapes, causality, KV-cache generation, log-probs, sizes, save/load."""

import json

import pytest
import torch
import torch.nn.functional as F

from llm_core.model import GPT, IGNORE_INDEX, GPTConfig, KVCache

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(**overrides) -> GPTConfig:
    base = dict(vocab_size=97, block_size=32, n_layer=2, n_head=2, n_embd=32)
    return GPTConfig(**{**base, **overrides})


@pytest.fixture(params=["gelu", "swiglu", "relu2"])
def model(request) -> GPT:
    torch.manual_seed(0)
    return GPT(tiny_config(mlp=request.param)).eval()


def test_shapes_and_loss(model):
    idx = torch.randint(0, 97, (3, 20))
    logits, loss = model(idx, torch.randint(0, 97, (3, 20)))
    assert logits.shape == (3, 20, 97)
    assert model.trunk(idx).shape == (3, 20, 32)
    # a freshly initialised model predicts close to uniform
    assert abs(loss.item() - torch.log(torch.tensor(97.0)).item()) < 0.3


def test_no_future_leakage(model):
    idx = torch.randint(0, 97, (2, 24))
    changed = idx.clone()
    changed[:, 15:] = torch.randint(0, 97, (2, 9))
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :15], b[:, :15])
    assert not torch.allclose(a[:, 15:], b[:, 15:])


def test_cached_forward_equals_full_forward(model):
    idx = torch.randint(0, 97, (2, 20))
    full, _ = model(idx)
    cache = KVCache(model.config, 2, 32, "cpu")
    parts = [model(idx[:, :7], cache=cache)[0], model(idx[:, 7:8], cache=cache)[0], model(idx[:, 8:], cache=cache)[0]]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_left_padded_rows_give_the_logits_of_each_prompt_alone(model):
    prompts = [torch.randint(0, 97, (n,)) for n in (9, 4, 6)]
    width = max(len(p) for p in prompts)
    pad = torch.tensor([width - len(p) for p in prompts])
    batch = torch.stack([torch.cat([torch.zeros(width - len(p), dtype=torch.long), p]) for p in prompts])
    cache = KVCache(model.config, 3, 32, "cpu", left_pad=pad)
    prefill = model(batch, cache=cache)[0]
    step = model(torch.tensor([[5], [6], [7]]), cache=cache)[0]  # one cached step after the padded prefill
    for b, p in enumerate(prompts):
        alone = model(torch.cat([p, torch.tensor([5 + b])])[None])[0][0]
        torch.testing.assert_close(prefill[b, int(pad[b]):], alone[:-1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(step[b, 0], alone[-1], atol=1e-5, rtol=1e-5)


def test_greedy_generation_equals_full_recompute(model):
    prompt = torch.randint(0, 97, (2, 5))
    out = model.generate(prompt, max_new_tokens=40, temperature=0)  # runs past block_size=32
    idx = prompt
    for _ in range(40):
        logits, _ = model(idx[:, -32:])
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, idx)


def test_sampling_is_reproducible_and_stops():
    torch.manual_seed(0)
    model = GPT(tiny_config()).eval()
    prompt = torch.zeros(3, 2, dtype=torch.long)
    a = model.generate(prompt, 10, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(1))
    b = model.generate(prompt, 10, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (3, 12)
    stop = int(a[0, 2])
    c = model.generate(prompt, 10, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(1),
                       stop_token=stop)
    assert torch.equal(c[:, :3], a[:, :3]) and (c[0, 2:] == stop).all()
    for row in c[:, 2:]:  # once a row has produced the stop token, it only repeats it
        hits = (row == stop).nonzero()
        assert len(hits) == 0 or (row[hits[0, 0]:] == stop).all()


def test_token_losses_are_the_per_token_cross_entropy_of_the_logits(model):
    idx = torch.randint(0, 97, (2, 16))
    targets = torch.randint(0, 97, (2, 16))
    targets[0, :4] = IGNORE_INDEX
    logits, loss = model(idx, targets)
    losses = model.token_losses(idx, targets)
    want = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    assert losses.shape == (2, 16) and (losses[0, :4] == 0).all()
    torch.testing.assert_close(losses.flatten(), want)
    torch.testing.assert_close(losses.sum() / (targets != IGNORE_INDEX).sum(), loss)


def test_masked_loss_is_the_loss_and_gradient_of_the_full_forward(model):
    idx = torch.randint(0, 97, (3, 20))
    targets = torch.randint(0, 97, (3, 20))
    targets[:, :12] = IGNORE_INDEX  # a prompt, as in SFT
    targets[2, 15:] = IGNORE_INDEX  # padding
    full = model(idx, targets)[1]
    (full_grad,) = torch.autograd.grad(full, model.lm_head.weight)
    masked = model.masked_loss(idx, targets)
    (masked_grad,) = torch.autograd.grad(masked, model.lm_head.weight)
    torch.testing.assert_close(masked, full)
    torch.testing.assert_close(masked_grad, full_grad)


def test_depth_dial_and_counts():
    config = GPTConfig.from_depth(4, vocab_size=1000, block_size=128)
    assert (config.n_layer, config.n_embd, config.n_head, config.head_dim) == (4, 256, 4, 64)
    model = GPT(config)
    # embedding 1000x256 (tied) + 4 x (attn 4*256^2 + mlp 8*256^2 + norms) + final norm
    expected = 1000 * 256 + 4 * (12 * 256 * 256 + 2 * 256 + 2 * 64) + 256
    assert model.num_params() == expected
    assert model.flops_per_token() == 6 * expected + 12 * 4 * 256 * 128
    untied = GPT(GPTConfig.from_depth(4, vocab_size=1000, tie_embeddings=False))
    assert untied.num_params() == expected + 1000 * 256


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = GPT(tiny_config(mlp="swiglu", tie_embeddings=True)).eval()
    model.save(str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["mlp"] == "swiglu"
    loaded = GPT.load(str(tmp_path)).eval()
    assert loaded.lm_head.weight.data_ptr() == loaded.wte.weight.data_ptr()
    idx = torch.randint(0, 97, (2, 10))
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0])


def test_bad_config_is_explained():
    with pytest.raises(AssertionError, match="divisible by n_head"):
        GPTConfig(vocab_size=10, n_embd=30, n_head=4)


@pytest.mark.parametrize("kernels", [True, False], ids=["cpu-kernels", "torch"])
def test_attention_equals_the_unfolded_qk_norm_and_rotary(model, kernels, request, monkeypatch):
    """Both forms (the fused CPU kernel; torch's, gains folded into the rotary tables) compute the textbook one:
    RMS-normalise q and k per head, multiply by their gains, rotate pairs (i, i + D/2), causal attention."""
    from llm_core import cpu_kernels

    if kernels:
        request.getfixturevalue("cpu_kernels_built")
    else:
        monkeypatch.setattr(cpu_kernels, "usable", lambda *tensors: False)
    torch.manual_seed(1)
    attn = model.blocks[0].attn
    with torch.no_grad():
        attn.qk_gain.copy_(torch.rand_like(attn.qk_gain) + 0.5)
    B, T, C, H, D = 2, 7, model.config.n_embd, attn.n_head, attn.head_dim
    x = torch.randn(B, T, C)
    cos, sin = model.rope_cos[:T], model.rope_sin[:T]
    got = attn(x, cos, sin, None, None, True)

    q, k, v = attn.c_attn(x).view(B, T, 3, H, D).unbind(2)
    q = torch.nn.functional.rms_norm(q, (D,), eps=attn.eps) * attn.qk_gain[0]
    k = torch.nn.functional.rms_norm(k, (D,), eps=attn.eps) * attn.qk_gain[1]

    def rotate(t):
        swapped = torch.cat([t[..., D // 2:], t[..., :D // 2]], dim=-1)
        return t * cos[None, :, None] + swapped * sin[None, :, None]

    q, k, v = (t.transpose(1, 2) for t in (rotate(q), rotate(k), v))
    y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    want = attn.c_proj(y.transpose(1, 2).reshape(B, T, C))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)

"""Sampling one token a row: the draw follows the probabilities and never picks an excluded token."""

from __future__ import annotations

import pytest
import torch

from llm_core.sampling import draw, sample_tokens


def test_draw_frequencies_follow_the_probabilities():
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]]).repeat(50_000, 1)
    ids = draw(probs, torch.Generator().manual_seed(0)).view(50_000, 2)
    freq = torch.bincount(ids[:, 0], minlength=5) / 50_000
    assert torch.allclose(freq, torch.tensor([0.5, 0.0, 0.3, 0.2, 0.0]), atol=0.01)  # 4.5 standard errors
    assert ids[:, 1].eq(4).all()


def test_draw_is_reproducible_from_the_generator():
    probs = torch.softmax(torch.randn(16, 8192, generator=torch.Generator().manual_seed(1)), dim=-1)
    a, b = (draw(probs, torch.Generator().manual_seed(7)) for _ in range(2))
    assert torch.equal(a, b) and a.unique().numel() > 1


def test_a_uniform_at_the_very_top_still_lands_on_an_allowed_token(monkeypatch):
    probs = torch.tensor([[0.25, 0.75, 0.0, 0.0]])
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.ones(1, 1, dtype=torch.float64))  # u * total == total
    assert draw(probs).tolist() == [1]


def test_invalid_probabilities_are_refused():
    for bad in ([[0.0, 0.0]], [[float("nan"), 1.0]], [[-0.5, 1.5]]):
        with pytest.raises(ValueError, match="probabilities"):
            draw(torch.tensor(bad))


def test_top_k_after_temperature_keeps_only_the_k_best():
    logits = torch.tensor([[5.0, 4.0, 0.0, -1.0]]).repeat(2000, 1)
    ids = sample_tokens(logits, temperature=2.0, top_k=2, generator=torch.Generator().manual_seed(0))
    share = ids.eq(0).float().mean().item()
    assert set(ids.tolist()) == {0, 1} and abs(share - 1 / (1 + torch.exp(torch.tensor(-0.5)).item())) < 0.04

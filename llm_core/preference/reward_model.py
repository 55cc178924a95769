"""The reward model: the SFT trunk with a scalar head read at the last token of prompt + answer.

Trained with the Bradley-Terry loss on preference pairs, `-log sigmoid(r_chosen - r_rejected - margin)`, plus an
optional centering term `coef * (r_chosen + r_rejected)^2` that keeps rewards near 0 (TRL's
`center_rewards_coefficient`). After training, `normalise` sets an affine map so rewards of SFT samples have mean
0 and std 1 (InstructGPT / "N implementation details"), which makes the KL coefficient of RLHF mean the same
thing from run to run.

Saved like a GPT (`model.safetensors` + `config.json`), the safetensors file holding the trunk (`gpt.*`), the head and
the normalisation, so the training loop's checkpoints store it as they store a GPT.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_model, save_model

from llm_core.chat.template import Message, render_completion, render_prompt
from llm_core.model import CONFIG_FILE, GPT, WEIGHTS_FILE, GPTConfig
from llm_core.tokenizer.base import Tokenizer


class ScalarHeadModel(nn.Module):
    """A GPT trunk plus a linear head giving one number per position; used as reward model and as PPO value model."""

    def __init__(self, gpt: GPT):
        super().__init__()
        self.gpt = gpt
        self.head = nn.Linear(gpt.config.n_embd, 1)
        nn.init.normal_(self.head.weight, std=1 / (gpt.config.n_embd + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("norm_mean", torch.zeros(()))
        self.register_buffer("norm_std", torch.ones(()))

    def per_token(self, idx: torch.Tensor) -> torch.Tensor:
        """Head output at every position (B, T), before normalisation."""
        return self.head(self.gpt.trunk(idx)).squeeze(-1).float()

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Normalised reward of each right-padded row (B,), read at its last real token (index lengths-1)."""
        raw = self.per_token(idx).gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)
        return (raw - self.norm_mean) / self.norm_std

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        save_model(self, os.path.join(directory, WEIGHTS_FILE))
        with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(asdict(self.gpt.config), f, indent=2)

    @classmethod
    def load(cls, directory: str, device: str | torch.device = "cpu") -> ScalarHeadModel:
        with open(os.path.join(directory, CONFIG_FILE), encoding="utf-8") as f:
            model = cls(GPT(GPTConfig(**json.load(f))))
        load_model(model, os.path.join(directory, WEIGHTS_FILE), device=str(device))
        return model.to(device)

    @classmethod
    def from_sft(cls, sft: GPT, block_size: int | None = None) -> ScalarHeadModel:
        """A reward model on a copy of the SFT trunk, reading up to `block_size` tokens (None: the SFT model's
        context). Rotary positions have no table to outgrow, so a longer context is the same weights."""
        if block_size is None or block_size == sft.config.block_size:
            return cls(copy.deepcopy(sft))
        gpt = GPT(replace(sft.config, block_size=block_size))
        gpt.load_state_dict(sft.state_dict())
        return cls(gpt)


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: float = 0.0, center_coef: float = 0.0
) -> torch.Tensor:
    loss = -F.logsigmoid(chosen - rejected - margin).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen + rejected) ** 2).mean()
    return loss


def answer_ids(tokenizer: Tokenizer, prompt: Sequence[Message], answer: str) -> list[int]:
    """Prompt + answer + `<|im_end|>`, whole (longer than the context when the conversation is)."""
    return render_prompt(tokenizer, prompt) + render_completion(tokenizer, answer)


def comparison_tokens(tokenizer: Tokenizer, prompt: Sequence[Message], answers: Sequence[str]) -> int:
    """Tokens the reward model must read to see a comparison whole: prompt + its longest answer."""
    return max(len(answer_ids(tokenizer, prompt, a)) for a in answers)


def encode_answer(tokenizer: Tokenizer, prompt: Sequence[Message], answer: str, block_size: int) -> list[int]:
    """`answer_ids` cut from the left to fit the context (the answer's end is what is read)."""
    return answer_ids(tokenizer, prompt, answer)[-block_size:]


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, T) ids and the lengths (B,)."""
    width = max(len(r) for r in rows)
    x = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
    return x, torch.tensor([len(r) for r in rows], dtype=torch.long)


@torch.no_grad()
def score(model: ScalarHeadModel, rows: Sequence[Sequence[int]], pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """Normalised rewards of token rows (each prompt + answer ending in `<|im_end|>`), in eval mode."""
    was = model.training
    model.eval()
    out = []
    device = next(model.parameters()).device
    for s in range(0, len(rows), batch_size):
        x, lengths = pad_rows(rows[s:s + batch_size], pad_id)
        out.append(model(x.to(device), lengths.to(device)))
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0)


def normalise(model: ScalarHeadModel, rows: Sequence[Sequence[int]], pad_id: int) -> tuple[float, float]:
    """Set the affine map so the rewards of these rows (SFT samples) get mean 0 and std 1; returns (mean, std) of
    the raw rewards."""
    model.norm_mean.fill_(0.0)
    model.norm_std.fill_(1.0)
    raw = score(model, rows, pad_id)
    mean, std = float(raw.mean()), float(raw.std().clamp_min(1e-6))
    model.norm_mean.fill_(mean)
    model.norm_std.fill_(std)
    return mean, std

"""`RLAlgorithm`: what the `rlhf` stage needs of an RL algorithm, and what every algorithm shares.

The stage chooses one subclass by name (`rlhf.algorithm`, looked up once in `rlhf.ALGORITHMS`) and drives it the
same way whichever it is:

- `prompts(cfg, seed)`, `data_paths(cfg)`: the (prompt, reference answer) pairs it trains on, and the data files
  they come from (their fingerprints join the artifact key);
- `step(prompts, seed)`, once per iteration: rollouts, rewards, updates; returns the iteration's log row, of which
  `progress_metrics` are shown as progress;
- `reward(rollouts)`: the reward it learns from, which the stage also measures the policy with before and after
  training (`reward_name` says what it is, in the report); `scores(rollouts)`: further figures reported beside it
  (PPO: the reward model's score without the missing-EOS penalty); `prompt_kind(prompt)`: the group a prompt is
  reported in, when its prompts are of several kinds;
- `state_dict()` / `load_state_dict()`: all a resumed run needs beyond the policy's weights.

Every algorithm is built the same way, `Algorithm(cfg, policy, ref, tokenizer, reward_model)` (`reward_model` is the
reward stage's model, or None when the stage has none). The base class holds the policy, the frozen reference, the
sampling settings, and `rollout`, which samples replies from the policy. A new algorithm is a module with a subclass,
its docstring stating the algorithm and its simplifications first, and one line in `rlhf.ALGORITHMS`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from llm_core.chat.engine import Engine, SamplingParams
from llm_core.chat.template import render_prompt
from llm_core.model import GPT
from llm_core.preference.reward_model import ScalarHeadModel
from llm_core.rl.config import RlhfConfig
from llm_core.rl.rollout import RolloutBatch, make_batch
from llm_core.tokenizer.base import Tokenizer

Prompt = tuple[str, str | None]  # (user prompt, reference answer or None)


def user_prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """A one-turn conversation with `prompt` as the user's message, rendered up to the assistant's reply."""
    return render_prompt(tokenizer, [{"role": "user", "content": prompt}])


@dataclass
class Rollouts:
    """Replies sampled from the policy, `n` per prompt in prompt order: the token rows, and each row's texts."""

    batch: RolloutBatch
    prompts: list[str]
    replies: list[str]
    references: list[str | None]


class RLAlgorithm(abc.ABC):
    reward_name: ClassVar[str]  # what `reward` measures, as the report names it
    progress_metrics: ClassVar[tuple[str, ...]]  # keys of the `step` log row shown as progress
    prompts_per_iteration: int
    opt: torch.optim.Optimizer  # the policy's optimizer

    def __init__(
        self, cfg: RlhfConfig, policy: GPT, ref: GPT, tokenizer: Tokenizer, reward_model: ScalarHeadModel | None
    ):
        self.policy, self.ref, self.tokenizer = policy, ref.eval(), tokenizer
        self.sampling = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature)
        self.engine = Engine(policy, tokenizer)
        self.banned = self.engine.never_sampled  # scored with the bans the rollouts were sampled under
        policy.requires_grad_(True)

    @staticmethod
    @abc.abstractmethod
    def prompts(cfg: RlhfConfig, seed: int) -> list[Prompt]:
        """The prompts to train and evaluate on, with their reference answers where the reward needs them."""

    @staticmethod
    @abc.abstractmethod
    def data_paths(cfg: RlhfConfig) -> list[str]:
        """The local data files `prompts` reads."""

    @abc.abstractmethod
    def reward(self, rollouts: Rollouts) -> torch.Tensor:
        """The reward of each rollout row, (B,)."""

    def scores(self, rollouts: Rollouts) -> dict[str, torch.Tensor]:
        """Further per-row figures reported beside the reward, by name (none by default)."""
        return {}

    @staticmethod
    def prompt_kind(prompt: Prompt) -> str:
        """The group a prompt's figures are reported in (one group by default)."""
        return "all"

    @abc.abstractmethod
    def step(self, prompts: Sequence[Prompt], seed: int) -> dict[str, float]:
        """One iteration on `prompts` (sampling seeded by `seed`); returns its log row."""

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])

    def rollout(self, prompts: Sequence[Prompt], n: int, seed: int) -> Rollouts:
        """`n` replies per prompt, sampled from the policy with the stage's sampling settings."""
        ids = [user_prompt_ids(self.tokenizer, p) for p, _ in prompts]
        completions = [c for group in self.engine.generate(ids, self.sampling, n=n, seed=seed) for c in group]
        batch = make_batch([i for i in ids for _ in range(n)], completions, self.tokenizer.eot_id)
        return Rollouts(batch, [p for p, _ in prompts for _ in range(n)], [c.text for c in completions],
                        [r for _, r in prompts for _ in range(n)])

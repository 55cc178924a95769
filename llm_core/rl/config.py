"""Config of the `rlhf` stage: the settings every algorithm shares, and one section per algorithm (`ppo`, `grpo`).

`algorithm` names the one that runs (`rlhf.ALGORITHMS`); the other's section is ignored but, like every field, is
part of the artifact key.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from llm_core.config import StageConfig, StrictModel


class PpoConfig(StrictModel):
    prompts_per_iteration: int = Field(16, ge=1)
    minibatch_size: int = Field(8, ge=1)
    ppo_epochs: int = Field(2, ge=1)
    lr: float = Field(1e-5, gt=0)
    value_lr: float = Field(1e-4, gt=0)
    kl_coef: float = Field(0.05, ge=0)
    adaptive_kl: bool = False
    kl_target: float = Field(6.0, gt=0, description="adaptive KL: target KL per reply (nats)")
    kl_horizon: int = Field(10000, ge=1, description="adaptive KL: horizon in replies")
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    cliprange: float = Field(0.2, gt=0)
    cliprange_value: float = Field(0.2, gt=0)
    vf_coef: float = Field(0.1, ge=0)
    missing_eos_penalty: float = Field(1.0, ge=0, description="subtracted from the score of a reply that never ends")
    keyword_prompts: int = Field(0, ge=0, description="generated keyword-sentence requests drawn into the prompts: "
                                 "the preference a small reward model does learn (its keyword pairs show it)")
    value_warmup: int = Field(0, ge=0, description="first iterations that train the value model alone, the policy "
                              "frozen: a value head read off the reward model's trunk knows nothing of the reply yet")
    max_grad_norm: float = Field(1.0, gt=0)


class GrpoConfig(StrictModel):
    reward: str = Field("exact_answer", description="a name in llm_core.rl.verifiable_rewards.REWARDS")
    task: str = Field("arithmetic", description="prompts: arithmetic (generated) or gsm8k (a file)")
    task_path: str = Field("data/gsm8k/train.jsonl", description="gsm8k task: the problems file")
    max_operand: int = Field(9, ge=1, description="arithmetic task: largest addend")
    prompts_per_iteration: int = Field(8, ge=1)
    samples_per_prompt: int = Field(8, ge=2)
    epochs: int = Field(1, ge=1)
    minibatch_size: int = Field(32, ge=1)
    lr: float = Field(1e-5, gt=0)
    kl_coef: float = Field(0.0, ge=0)
    cliprange: float = Field(0.2, gt=0)
    max_grad_norm: float = Field(1.0, gt=0)


class RlhfConfig(StageConfig):
    algorithm: Literal["ppo", "grpo"] = "ppo"
    iterations: int = Field(20, ge=1)
    prompts_path: str = Field("data/oasst/prompt_lottery_en_250_text.jsonl", description="PPO prompts")
    task_size: int = Field(2000, ge=1, description="GRPO: problems drawn for the task (before the split)")
    eval_fraction: float = Field(0.15, gt=0, lt=1, description="share of prompts held back for evaluation")
    eval_prompts: int = Field(32, ge=1, description="held-back prompts used in the before/after evaluation")
    eval_samples: int = Field(2, ge=1, description="replies per held-back prompt in the evaluation")
    max_tokens: int = Field(64, ge=1)
    temperature: float = Field(1.0, gt=0, description="sampling temperature, also applied to log-probs")
    ppo: PpoConfig = Field(default_factory=PpoConfig)
    grpo: GrpoConfig = Field(default_factory=GrpoConfig)
    checkpoint_every: int = Field(5, ge=0, description="iterations between checkpoints; 0 = only at the end")

    runtime_fields: ClassVar[frozenset[str]] = frozenset({"checkpoint_every"})

"""Reinforcement learning: the `rlhf` stage and its algorithms (PPO on the reward model, GRPO on a verifiable
reward)."""

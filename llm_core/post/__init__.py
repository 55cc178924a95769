"""Post-training stages: conversation data, SFT, preference data, reward model, RLHF (PPO / GRPO), report card."""

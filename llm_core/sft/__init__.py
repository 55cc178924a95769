"""Supervised fine-tuning: the `sft_data` stage (the conversation mixture) and the `sft` stage (training on it)."""

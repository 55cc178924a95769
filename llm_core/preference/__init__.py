"""Preferences: answers ranked by people (`rank`), preference pairs (`reward_data`), and the reward model trained
on them (`reward`)."""

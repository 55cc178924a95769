"""Conversations: the chat template, loaders of conversation and preference sources, generated sets, the mixture,
and the inference engine that samples replies."""

"""Prefect wrappers of the llm_core stages: one generic stage flow (cache check, shard fan-out with retries, commit,
UI artifacts) serves every stage in the registry. No stage logic lives here."""

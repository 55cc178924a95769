"""`PipelineConfig`: the global `run` settings plus one section per stage, in pipeline order."""

from __future__ import annotations

from pydantic import Field

from llm_core.config import RunConfig, StrictModel


class PipelineConfig(StrictModel):
    run: RunConfig = Field(default_factory=RunConfig)

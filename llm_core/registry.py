"""The stages of the pipeline, in execution order (each stage's inputs come before it)."""

from __future__ import annotations

from llm_core.stage import Stage

STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in [
    ]
}

"""The `train` flow: every enabled stage on one crawl snapshot, the deployment that follows a data refresh.

The data stages of that snapshot were built by `data-refresh` moments before, so they are cache hits here and only
the training stages (and what follows them) do work. The snapshot defaults to today's UTC date, the same default
`data-refresh` uses, so the run that a refresh's completion triggers trains on exactly that refresh.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow

from flows.pipeline import run_plan
from llm_core.pipeline import plan
from llm_core.pipeline_config import PipelineConfig


def on_snapshot(config: PipelineConfig, snapshot: str | None) -> PipelineConfig:
    """The config with its crawl snapshot set (default: today's UTC date)."""
    snapshot = snapshot or dt.datetime.now(dt.timezone.utc).date().isoformat()
    return config.model_copy(update={"crawl": config.crawl.model_copy(update={"snapshot": snapshot})})


@flow(name="train", log_prints=True)
def train(config: PipelineConfig, snapshot: str | None = None) -> dict[str, str]:
    """Every enabled stage on the crawl snapshot `snapshot` (default: today's), reusing its refreshed data."""
    return run_plan(plan(on_snapshot(config, snapshot)))

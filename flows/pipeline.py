"""The pipeline's flows. Each reads like the diagram: plan the stages, run them in order.

- `full_pipeline`: every enabled stage, crawl to report.
- `data_refresh`: a new crawl snapshot through extraction, filtering and tokenization (the nightly schedule);
  the snapshot label is part of the crawl key, so nothing older is overwritten.
- `run_stage`: one stage by name, its missing upstream stages first, or reading explicitly named artifacts.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger

from llm_core.pipeline import plan, with_inputs
from llm_core.pipeline_config import PipelineConfig
from llm_core.stage import StageContext
from tasks.stage_flow import run_stage_flow

DATA_REFRESH_TARGET = "tokenize"


def run_plan(contexts: dict[str, StageContext]) -> dict[str, str]:
    """Run planned stages in order; returns stage -> 'stage/key' of each artifact."""
    done = {}
    for name, ctx in contexts.items():
        ref = run_stage_flow(ctx)
        done[name] = str(ref)
    get_run_logger().info("artifacts: %s", done)
    return done


@flow(name="full-pipeline", log_prints=True)
def full_pipeline(config: PipelineConfig) -> dict[str, str]:
    """Every enabled stage of the pipeline, from crawl to the report."""
    return run_plan(plan(config))


@flow(name="data-refresh", log_prints=True)
def data_refresh(config: PipelineConfig, snapshot: str | None = None) -> dict[str, str]:
    """Crawl a new snapshot (default: today's UTC date) and carry it through to token shards."""
    snapshot = snapshot or dt.datetime.now(dt.timezone.utc).date().isoformat()
    config = config.model_copy(update={"crawl": config.crawl.model_copy(update={"snapshot": snapshot})})
    return run_plan(plan(config, [DATA_REFRESH_TARGET]))


@flow(name="stage", log_prints=True)
def run_stage(stage: str, config: PipelineConfig, inputs: dict[str, str] | None = None) -> dict[str, str]:
    """One stage by name. With `inputs` (input name -> artifact key) it reads exactly those artifacts;
    without, its upstream stages are resolved from the store and run first where missing."""
    if inputs:
        return run_plan({stage: with_inputs(config, stage, inputs)})
    return run_plan(plan(config, [stage]))

"""The pipeline's flows. Each reads like the diagram: resolve the config, plan the stages, run them in order.

- `full_pipeline`: every enabled stage, crawl to report.
- `data_refresh`: a new crawl snapshot through extraction, filtering, tokenization and into its corpus (the nightly
  schedule); the snapshot label is part of the crawl key, so nothing older is overwritten. When it completes it emits
  `llm-pipeline.refresh.completed` carrying the snapshot and config it built, which starts `train` (flows/train.py).
- `one_stage`: one stage by name, its missing upstream stages first, or reading explicitly named artifacts.

Every flow takes the run form (`options`, flows/run_options.py) and the optional whole config as JSON (`config`);
the config is resolved and validated before any stage runs. The run's summary (every stage's key, cache hit,
seconds, throughput beside the reference, and any oversubscription warning) and the report card are artifacts of
the flow run itself.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.events import emit_event

from flows.run_options import ConfigJSON, RunOptions, StageName, resolve_config, today
from llm_core.pipeline import data_refresh_targets, hold_run_locks, plan, with_inputs
from llm_core.pipeline_config import PipelineConfig
from llm_core.stage import StageContext
from tasks.publish import publish_run_summary
from tasks.run_summary import StageRun, slow_run_warnings
from tasks.stage_flow import run_stage_flow

REFRESH_COMPLETED = "llm-pipeline.refresh.completed"


def run_planned(config: PipelineConfig, targets: list[str] | None = None) -> dict[str, str]:
    """Plan `targets` (all enabled stages if None) and run them, holding the locks its stages hold for a whole run
    (a refresh, its corpus's: two refreshes of one corpus never interleave), planned again once they are held."""
    contexts = plan(config, targets)
    with contextlib.ExitStack() as locks:
        if hold_run_locks(locks, config, contexts):
            contexts = plan(config, targets)
        return run_plan(contexts, config)


def run_plan(contexts: dict[str, StageContext], config: PipelineConfig) -> dict[str, str]:
    """Run planned stages in order, then publish the run's summary; returns stage -> 'stage/key' of each artifact."""
    logger = get_run_logger()
    for warning in slow_run_warnings(config, contexts):
        logger.warning(warning)
    runs: list[StageRun] = []
    for ctx in contexts.values():
        cached = ctx.store().is_committed(ctx.output)
        started = time.perf_counter()
        run_stage_flow(ctx)
        runs.append(StageRun.of(ctx, cached, time.perf_counter() - started))
    publish_run_summary(runs, config)
    done = {run.stage: f"{run.stage}/{run.key}" for run in runs}
    logger.info("artifacts: %s", done)
    return done


@flow(name="full-pipeline", log_prints=True)
def full_pipeline(options: RunOptions = RunOptions(), config: ConfigJSON = {}) -> dict[str, str]:
    """Every enabled stage of the pipeline, from crawl to the report (or only `options.stages` and what they need).

    Args:
        options: what to run: a config from configs/, overrides (key.path=value), stages, crawl snapshot
        config: advanced: the whole pipeline config as JSON; empty uses the config file
    """
    cfg = resolve_config(options, config)
    return run_planned(cfg, options.stages or None)


@flow(name="data-refresh", log_prints=True)
def data_refresh(options: RunOptions = RunOptions(), config: ConfigJSON = {}) -> dict[str, str]:
    """Crawl a new snapshot (default: today's UTC date) and carry it through to token shards.

    Args:
        options: what to run: a config from configs/, overrides (key.path=value), stages, crawl snapshot
        config: advanced: the whole pipeline config as JSON; empty uses the config file
    """
    cfg = resolve_config(options, config, default_snapshot=today())
    done = run_planned(cfg, options.stages or data_refresh_targets())
    announce_refresh(options, config, cfg.snapshot)
    return done


def announce_refresh(options: RunOptions, config: dict[str, Any], snapshot: str) -> None:
    """The event `train`'s trigger waits for: the resolved snapshot as a resource label, and the form that built it
    in the payload, so the triggered run plans exactly these artifacts. Only a refresh that got here emits it."""
    built = options.model_copy(update={"snapshot": snapshot, "stages": []})
    emit_event(
        event=REFRESH_COMPLETED,
        resource={"prefect.resource.id": f"llm-pipeline.snapshot.{snapshot}", "prefect.resource.name": snapshot,
                  "llm-pipeline.snapshot": snapshot},
        payload={"options": built.model_dump(mode="json"), "config": config},
    )


@flow(name="stage", log_prints=True)
def one_stage(stage: StageName, options: RunOptions = RunOptions(), config: ConfigJSON = {},
              inputs: dict[str, str] | None = None) -> dict[str, str]:
    """One stage by name. With `inputs` (input name -> artifact key) it reads exactly those artifacts;
    without, its upstream stages are resolved from the store and run first where missing.

    Args:
        stage: the stage to run
        options: what to run: a config from configs/, overrides (key.path=value), stages, crawl snapshot
        config: advanced: the whole pipeline config as JSON; empty uses the config file
        inputs: input name -> artifact key, to read exactly those artifacts
    """
    cfg = resolve_config(options, config)
    if inputs:
        return run_plan({stage: with_inputs(cfg, stage, inputs)}, cfg)
    return run_planned(cfg, [stage])

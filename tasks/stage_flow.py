"""The one way every stage runs under Prefect.

`stage_flow(ctx)` is a subflow named after the stage:
- cache hit (the artifact's manifest exists and its files pass `run.verify`; if they do not, it is moved aside and
  rebuilt): returns at once, in a state named `Cached`, and says so in the UI;
- a sharded stage: one `shard` task per shard, `.map`ped on the configured task runner, each with retries (where
  inside the task the shard's work runs is llm_core's choice, `submit_shard`); finished shards are skipped on a
  retry (their completion markers are in the artifact), then `finalize` commits;
- any other stage: one `run` task with retries (training resumes from its last checkpoint inside the artifact).
Every commit publishes the stage's counts table, tables, plots and markdown summary as Prefect artifacts of the
stage's own run. While a stage works, its progress (training steps with the latest loss; shards done with records/s)
reaches the CLI's progress bars and a Prefect progress artifact, and its `llm_core` log lines reach the run's log.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task, unmapped
from prefect.futures import as_completed
from prefect.states import Completed

from llm_core.registry import STAGES
from llm_core.stage import (
    ShardedStage,
    StageContext,
    add_progress_listener,
    building,
    commit_stage,
    remove_progress_listener,
    submit_shard,
)
from llm_core.stats import ShardStats
from llm_core.store import ArtifactRef
from tasks import heartbeat  # noqa: F401  (flow runs end without waiting on Prefect's heartbeat thread)
from tasks.ask_people import ask_in_ui
from tasks.publish import ProgressArtifact, RunLogBridge, publish_manifest
from tasks.runners import make_task_runner


@task(name="shard", task_run_name="{ctx.stage}:{shard}")
def shard_task(ctx: StageContext, shard: str, shards: int) -> ShardStats:
    stage = STAGES[ctx.stage]
    assert isinstance(stage, ShardedStage)
    return submit_shard(stage, ctx, shard, shards).result()


@task(name="finalize", task_run_name="{ctx.stage}:finalize")
def finalize_task(ctx: StageContext, stats: dict[str, ShardStats], started: float) -> ArtifactRef:
    stage = STAGES[ctx.stage]
    assert isinstance(stage, ShardedStage)
    result = stage.finalize(ctx, stats)
    return _commit_and_publish(ctx, result, time.time() - started)


@task(name="run", task_run_name="{ctx.stage}:run")
def run_task(ctx: StageContext) -> ArtifactRef:
    progress = ProgressArtifact(ctx.stage)
    add_progress_listener(progress)
    started = time.time()
    try:
        with RunLogBridge():
            stage = STAGES[ctx.stage]
            result = stage.run_with_people(ctx, ask_in_ui) if stage.asks_people(ctx.config) else stage.run(ctx)
    finally:
        remove_progress_listener(progress)
    ref = _commit_and_publish(ctx, result, time.time() - started)
    progress.finish()
    return ref


def _commit_and_publish(ctx: StageContext, result, seconds: float) -> ArtifactRef:
    manifest = commit_stage(STAGES[ctx.stage], ctx, result, seconds)
    publish_manifest(manifest, ctx.store(), ctx.output.uri, cached=False)
    get_run_logger().info("%s committed %s: %s", ctx.stage, ctx.output.key, manifest.counts)
    return ctx.output


def _run_shards(ctx: StageContext, shards: list[str], retry: dict) -> dict[str, ShardStats]:
    """Map the shard tasks and report progress as each finishes: shards done / total, and records/s (what each
    shard's stats say it read)."""
    progress = ProgressArtifact(ctx.stage)
    add_progress_listener(progress)
    started, records = time.perf_counter(), 0
    try:
        with RunLogBridge():
            futures = shard_task.with_options(**retry).map(unmapped(ctx), shards, unmapped(len(shards)))
            shard_of = {f.task_run_id: s for f, s in zip(futures, shards)}
            stats: dict[str, ShardStats] = {}
            for future in as_completed(list(futures)):
                done = stats[shard_of[future.task_run_id]] = future.result()
                records += done.records()
                elapsed = max(time.perf_counter() - started, 1e-9)
                ctx.progress(len(stats), len(shards), records_per_s=records / elapsed)
    finally:
        remove_progress_listener(progress)
    progress.finish()
    return {s: stats[s] for s in shards}


def _stage_flow(ctx: StageContext):
    with building(ctx) as cached:
        if cached is not None:
            publish_manifest(cached, ctx.store(), ctx.output.uri, cached=True)
            get_run_logger().info("%s %s: cache hit, skipped", ctx.stage, ctx.output.key)
            return Completed(name="Cached", message=f"cache hit: {ctx.output}", data=ctx.output)
        return _build(ctx)


def _build(ctx: StageContext):
    logger = get_run_logger()
    stage = STAGES[ctx.stage]
    retry = {"retries": ctx.run.retries, "retry_delay_seconds": ctx.run.retry_delay_s}
    if not isinstance(stage, ShardedStage):
        if stage.asks_people(ctx.config):
            retry = {"retries": 0}  # an unanswered form ends the stage; a retry would only wait again
        return run_task.with_options(**retry)(ctx)
    started = time.time()
    shards = stage.shard_ids(ctx)
    logger.info("%s %s: %d shards", ctx.stage, ctx.output.key, len(shards))
    stats = _run_shards(ctx, shards, retry)
    return finalize_task.with_options(**retry)(ctx, stats, started)


def run_stage_flow(ctx: StageContext) -> ArtifactRef:
    """Run one stage as a subflow on the task runner its config names."""
    stage_flow = flow(
        _stage_flow,
        name=ctx.stage,
        flow_run_name=f"{ctx.stage}-{ctx.output.key}",
        task_runner=make_task_runner(ctx.run),
        validate_parameters=False,  # the context holds the stage's own config subclass: keep it as it is
        log_prints=True,
    )
    return stage_flow(ctx)

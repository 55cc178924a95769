"""How a stage is declared and run, without Prefect.

To add a stage, write one file and one line:

1. `llm_core/<area>/<name>.py` holds the stage's config and the stage (a small whole one: llm_core/sft/data_stage.py):

       class LengthsConfig(StageConfig):           # every field joins the artifact key, see StageConfig
           bins: int = 20

       class LengthsStage(Stage):
           name = "lengths"                        # its config section, artifact folder and CLI name
           config_model = LengthsConfig
           version = "1"                           # bump when a code change alters the output

           def input_stages(self, config: LengthsConfig) -> dict[str, str | Input]:
               return {"documents": "filter"}      # input name -> upstream stage (or an `Input`: alternatives)

           def run(self, ctx: StageContext) -> StageResult:
               ...                                 # ctx.reader("documents") -> ctx.writer(); return counts, metrics

2. `llm_core/registry.py`: its instance in `STAGES`, after the stages it reads (and its import).

From that line `PipelineConfig` gets a `lengths:` section, the planner keys and orders the stage, and `llmpipe
stage lengths`, `llmpipe run` and the Prefect flows run it, with no change in tasks/ or flows/ (nothing there names a
stage). What the run summary and the report card show of a stage, the stage declares beside its `name`:

           throughput = Throughput("documents", 5000.0)   # its speed in the run summary, beside this reference
           headline = ("mean_length",)                     # metrics of its row in the report card (None: all)

           def funnel(self, manifest: Manifest) -> list[tuple[str, int]]:
               return [("lengths: documents", manifest.counts["documents"])]   # steps of the card's data funnel

and, where it has them, the hooks `machine_warnings` (settings that make this machine slow), `run_lock` (a lock
the whole run holds) and `asks_people` / `run_with_people` (it waits for people answering forms: `llm_core/people.py`).

A stage is a function of (its config, its input artifacts, an output writer) that returns a small `StageResult`.
Two shapes:

- `Stage.run(ctx)`: one piece of work (training, a tokenizer).
- `ShardedStage`: `shard_ids(ctx)` lists shard ids, `run_shard(ctx, shard)` processes one and returns its stats (an
  object that adds up, `Counts` unless the stage names its `stats_type`, see `llm_core/stats.py`),
  `finalize(ctx, stats)` does any global step (dedup) and builds the result from the total. Each finished shard
  leaves `_shards/{shard}.json` (its stats, as JSON), so a retried stage skips it. Where a shard runs (here, or on
  this process's pool of `run.workers` processes) is decided in one place, `submit_shard`.

`run_stage` is the Prefect-free driver used by tests and by the tasks layer: cache hit (verified against its
manifest, see `building`) -> return the manifest, else run, then commit the manifest last.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from llm_core.config import RunConfig, StageConfig
from llm_core.data_files import local_digests
from llm_core.people import AskPeople
from llm_core.stats import Counts, ShardStats
from llm_core.store import ArtifactReader, ArtifactRef, ArtifactStore, ArtifactWriter, Manifest

SHARD_STATS_DIR = "_shards"


class StageResult(BaseModel):
    """What a stage reports: counts (records in/out, per reason), metrics, and what a person should see."""

    counts: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = Field(default_factory=dict, description="name -> rows, for the UI")
    markdown: str = ""
    extra: dict[str, Any] = Field(default_factory=dict, description="anything else worth keeping in the manifest")


ProgressFn = Callable[[str, float, float, dict[str, float]], None]  # (stage, done, total, metrics)
_progress_listeners: list[ProgressFn] = []


def add_progress_listener(fn: ProgressFn) -> None:
    """Register a callback (CLI progress bar, Prefect progress artifact) for progress reported in this process."""
    _progress_listeners.append(fn)


def remove_progress_listener(fn: ProgressFn) -> None:
    if fn in _progress_listeners:
        _progress_listeners.remove(fn)


class StageContext(BaseModel):
    """Everything a stage needs, small and picklable (it travels to worker processes)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    stage: str
    config: StageConfig
    run: RunConfig
    inputs: dict[str, ArtifactRef]
    output: ArtifactRef

    def store(self) -> ArtifactStore:
        return self.run.store()

    def reader(self, input_name: str) -> ArtifactReader:
        if input_name not in self.inputs:
            raise KeyError(f"stage {self.stage!r} has no input {input_name!r}; it has {sorted(self.inputs)}")
        return self.store().reader(self.inputs[input_name])

    def writer(self) -> ArtifactWriter:
        return self.store().writer(self.output)

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"llm_core.{self.stage}")

    def progress(self, done: float, total: float, **metrics: float) -> None:
        for fn in list(_progress_listeners):
            fn(self.stage, done, total, metrics)

    @property
    def workers(self) -> int:
        return self.run.workers or os.cpu_count() or 1


@dataclass(frozen=True)
class Input:
    """Where an input of a stage comes from when that depends on which stages a run enables; the planner resolves
    it (a plain stage name in `input_stages` is a required input from that stage).

    `stages`: the candidates, best first: the first enabled one is read. `optional`: with none of them enabled the
    input is left out (else the first is required: planning says it is disabled). `only_with`: the input exists
    only while that other stage is enabled (data read beside its model)."""

    stages: tuple[str, ...]
    optional: bool = False
    only_with: str | None = None


@dataclass(frozen=True)
class Throughput:
    """How the run summary measures a stage's speed: a count of its manifest per second, beside the rate the tiny
    config's `make run` reached on a quiet 2-core CPU (BENCHMARKS.md); a stage far below it is flagged as slow."""

    count: str
    reference_per_s: float


_DECLARED: dict[str, type[Stage]] = {}


class Stage(abc.ABC):
    """A pipeline stage. Subclasses set `name`, `config_model`, `version` and implement `run` (or use ShardedStage).

    `version` is part of the artifact key: bump it when a code change alters what the stage produces.
    """

    name: ClassVar[str]
    config_model: ClassVar[type[StageConfig]]
    version: ClassVar[str] = "1"
    uses_seed: ClassVar[bool] = False
    # What the layers above show of the stage (the run summary, the report card), declared by the stage itself.
    throughput: ClassVar[Throughput | None] = None
    headline: ClassVar[tuple[str, ...] | None] = ()  # its metrics in the card's headline table; None: all of them
    loss_curve: ClassVar[bool] = False  # its history.json's train loss (nats/token) joins the card's loss chart
    iteration_chart: ClassVar[bool] = False  # its history.json is a per-iteration log of reward and KL: a card chart
    run_card: ClassVar[bool] = False  # its markdown is the run's report card, published on the run itself
    ends_data_refresh: ClassVar[bool] = False  # the data refresh flow runs up to this stage

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            _DECLARED[cls.name] = cls

    def funnel(self, manifest: Manifest) -> list[tuple[str, int]]:
        """(label, records left) steps the stage adds to the report card's data funnel, from its manifest."""
        return []

    def machine_warnings(self, config: StageConfig, cores: int, load: float) -> list[str]:
        """What in this stage's config makes a machine of `cores` cores at load average `load` slow, each with what
        to change (the run summary prints them before the run)."""
        return []

    def run_lock(self, config: Any) -> contextlib.AbstractContextManager[None] | None:
        """A lock a run that includes this stage holds from its planning to its last stage (given the whole
        PipelineConfig), or None."""
        return None

    def asks_people(self, config: StageConfig) -> bool:
        """Whether this config's run waits for people answering forms (then the caller runs `run_with_people`)."""
        return False

    def run_with_people(self, ctx: StageContext, ask: AskPeople) -> StageResult:
        """`run`, with `ask` showing people a form where the caller's layer has them (the Prefect UI); a stage that
        asks nobody just runs."""
        return self.run(ctx)

    def input_stages(self, config: StageConfig) -> dict[str, str | Input]:
        """Input name -> the upstream stage it reads, or an `Input` naming alternatives, given this stage's own
        config; which stages are enabled is the planner's to resolve."""
        return {}

    @abc.abstractmethod
    def run(self, ctx: StageContext) -> StageResult:
        """Do the stage's work into `ctx.writer()`; the caller commits the manifest."""

    def check(self, ctx_config: StageConfig) -> None:
        """Raise ConfigError if this config cannot run (e.g. no source at all); called while planning a run, before
        any work starts, for the stages that will run."""

    def data_paths(self, ctx_config: StageConfig) -> list[str]:
        """Local data files or folders the stage reads beside its input artifacts; their content fingerprints join
        the artifact key, so an edited file gives a new artifact (paths that are not local, e.g. hub names, are
        named only)."""
        return []

    def key_config(self, ctx_config: StageConfig, run: RunConfig) -> dict[str, Any]:
        cfg = ctx_config.key_config()
        if self.uses_seed:
            cfg["seed"] = run.seed
        paths = self.data_paths(ctx_config)
        if paths:
            cfg["data_digests"] = local_digests(paths)
        return cfg


def declared_stage(name: str) -> Stage | None:
    """The stage declared under `name` among the stage modules imported in this process (a run imports them all,
    through the registry), or None: how the report card reads what a stage declares without importing the registry."""
    cls = _DECLARED.get(name)
    return cls() if cls is not None else None


class ShardedStage(Stage):
    """A stage whose work splits into independent shards, then an optional global step."""

    stats_type: ClassVar[type[ShardStats]] = Counts

    @abc.abstractmethod
    def shard_ids(self, ctx: StageContext) -> list[str]:
        """Shard ids, deterministic for a given input (they name the output files and completion markers)."""

    @abc.abstractmethod
    def run_shard(self, ctx: StageContext, shard: str) -> ShardStats:
        """Process one shard into the artifact; return its stats (a `stats_type`, added up over shards)."""

    def shard_outputs(self, shard: str) -> list[str]:
        """Globs of the files a shard writes under more than one name (rolling files): a shard that was not
        finished has them removed before it runs again, so a killed attempt's files never join the artifact.
        Files named by the shard id alone need nothing here: the rerun replaces them atomically."""
        return []

    def total(self, stats: dict[str, ShardStats]) -> ShardStats:
        """The sum of the shards' stats."""
        return sum(stats.values(), self.stats_type())

    def finalize(self, ctx: StageContext, stats: dict[str, ShardStats]) -> StageResult:
        return StageResult(counts=self.total(stats).to_manifest())

    def run(self, ctx: StageContext) -> StageResult:
        shards = self.shard_ids(ctx)
        futures = {s: submit_shard(self, ctx, s, len(shards)) for s in shards}
        stats = {}
        try:
            for i, (s, fut) in enumerate(futures.items()):
                stats[s] = fut.result()
                ctx.progress(i + 1, len(shards))
        except BaseException:
            wait(futures.values())  # the other shards finish (or fail) first, so a retry finds what they did
            raise
        return self.finalize(ctx, stats)


def shard_stats_name(shard: str) -> str:
    return f"{SHARD_STATS_DIR}/{shard}.json"


def process_shard(stage: ShardedStage, ctx: StageContext, shard: str) -> ShardStats:
    """Run one shard unless a previous attempt finished it; its stats file is its completion marker (a marker
    without `stats`, from an older version of the framework, is redone)."""
    writer = ctx.writer()
    marker = shard_stats_name(shard)
    if writer.exists(marker) and "stats" in (done := writer.read_json(marker)):
        return stage.stats_type.from_json(done["stats"])
    for pattern in stage.shard_outputs(shard):
        for name in writer.files(pattern):
            writer.remove(name)
    stats = stage.run_shard(ctx, shard)
    writer.write_json(marker, {"shard": shard, "stats": stats.to_json()})
    return stats


def submit_shard(stage: ShardedStage, ctx: StageContext, shard: str, shards: int) -> Future[ShardStats]:
    """Start one of `shards` shards where it runs; the one place that decides it:

    - `run.task_runner: threads` (shard tasks are threads of this process; also the Prefect-free `run`) and more
      than one shard and worker: on this process's pool of `run.workers` processes;
    - otherwise (one shard or worker; other runners, processes, Dask or Ray, whose workers are the fan-out): right
      here, where its task runs. Run here, the shard is done (or has raised) when this returns."""
    if ctx.run.task_runner == "threads" and min(ctx.workers, shards) > 1:
        return _submit_to_pool(ctx.workers, stage, ctx, shard)
    done: Future[ShardStats] = Future()
    done.set_result(process_shard(stage, ctx, shard))
    return done


_pools: dict[int, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


def _submit_to_pool(processes: int, stage: ShardedStage, ctx: StageContext, shard: str) -> Future[ShardStats]:
    """`process_shard` on a long-lived pool of `processes` processes (forkserver: safe beside threads, Prefect's
    and torch's), shared by concurrent callers; a pool broken by a dead worker is replaced."""
    with _pools_lock:
        pool = _pools.get(processes)
        if pool is not None:
            try:
                return pool.submit(process_shard, stage, ctx, shard)
            except BrokenProcessPool:  # a worker died under an earlier shard (killed, out of memory): start afresh
                pass
        pool = _pools[processes] = ProcessPoolExecutor(processes, mp_context=mp.get_context("forkserver"))
        return pool.submit(process_shard, stage, ctx, shard)


@contextlib.contextmanager
def building(ctx: StageContext) -> Iterator[Manifest | None]:
    """Hold the build lock of the stage's artifact and yield its trusted manifest (a cache hit), or None: build it.

    A committed artifact is checked first (`run.verify`); one that fails is moved aside and rebuilt. On a local
    root, a second run waits for the lock and then finds the first run's commit; holding the lock, the builder
    may clear temp files that killed attempts left behind."""
    store = ctx.store()
    with store.building(ctx.output):
        cached = store.trusted_manifest(ctx.output, store.full_verify(ctx.run.verify))
        if cached is None and store.is_local:
            ctx.writer().clean_temp()
        yield cached


def run_stage(stage: Stage, ctx: StageContext) -> tuple[Manifest, bool]:
    """Run a stage into its artifact unless already committed. Returns (manifest, cache_hit)."""
    with building(ctx) as cached:
        if cached is not None:
            return cached, True
        t0 = time.perf_counter()
        result = stage.run(ctx)
        return commit_stage(stage, ctx, result, time.perf_counter() - t0), False


def commit_stage(stage: Stage, ctx: StageContext, result: StageResult, seconds: float) -> Manifest:
    extra = dict(result.extra)
    if result.tables:
        extra["tables"] = result.tables
    if result.markdown:
        extra["markdown"] = result.markdown
    return ctx.writer().commit(
        version=stage.version,
        config=stage.key_config(ctx.config, ctx.run),
        inputs=ctx.inputs,
        counts=result.counts,
        metrics=result.metrics,
        timings={"seconds": round(seconds, 3)},
        extra=extra,
    )

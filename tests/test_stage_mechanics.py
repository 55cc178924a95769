"""The stage mechanics every stage relies on, with a small real stage: shards, completion markers, resume after a
crash, cache hits, and the same behaviour through the Prefect stage flow."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import pytest

from llm_core.config import RunConfig, StageConfig
from llm_core.registry import STAGES
from llm_core.stage import ShardedStage, StageContext, StageResult, run_stage, submit_shard
from llm_core.stats import Counts
from llm_core.store import ArtifactStore, artifact_key


class LineCountConfig(StageConfig):
    files: list[str]
    fail_on: str | None = None  # a shard name that raises, to simulate a crash


class LineCountStage(ShardedStage):
    """Counts lines per file into one JSON per shard: small, real, and shaped like every data stage."""

    name: ClassVar[str] = "line_count"
    config_model = LineCountConfig

    def shard_ids(self, ctx: StageContext) -> list[str]:
        return [f"part-{i:05d}" for i in range(len(ctx.config.files))]

    def run_shard(self, ctx: StageContext, shard: str) -> Counts:
        if shard == ctx.config.fail_on:
            raise RuntimeError(f"simulated crash in {shard}")
        path = ctx.config.files[int(shard.split("-")[1])]
        with open(path, encoding="utf-8") as f:
            lines = sum(1 for _ in f)
        ctx.writer().write_json(f"lines/{shard}.json", {"file": path, "lines": lines})
        return Counts(files=1, lines=lines)

    def finalize(self, ctx: StageContext, stats: dict[str, Counts]) -> StageResult:
        result = super().finalize(ctx, stats)
        result.tables["per_shard"] = [{"shard": s, **c} for s, c in sorted(stats.items())]
        return result


class WhereStage(LineCountStage):
    """Records where each shard ran: the process, and whether on its main thread."""

    def run_shard(self, ctx: StageContext, shard: str) -> Counts:
        on_main = threading.current_thread() is threading.main_thread()
        ctx.writer().write_json(f"where/{shard}.json", {"pid": os.getpid(), "main_thread": on_main})
        return Counts(shards=1)


def _context(tmp_path, data_dir, workers=1, task_runner="threads", **cfg) -> StageContext:
    files = [str(data_dir / "tinyshakespeare/input.txt"), str(data_dir / "wikitext2/valid.txt"),
             str(data_dir / "chinese_text/fortunes_zh_tang300.txt")]
    config = LineCountConfig(files=files, **cfg)
    run = RunConfig(artifact_root=str(tmp_path / "artifacts"), workers=workers, task_runner=task_runner, retries=0,
                    retry_delay_s=0)
    store = ArtifactStore(run.artifact_root)
    key = artifact_key("line_count", config.key_config(), {}, "1")
    return StageContext(stage="line_count", config=config, run=run, inputs={}, output=store.ref("line_count", key))


def _expected_lines(ctx) -> int:
    return sum(sum(1 for _ in open(p, encoding="utf-8")) for p in ctx.config.files)


def test_sharded_stage_runs_and_commits(tmp_path, data_dir):
    ctx = _context(tmp_path, data_dir, workers=2)
    manifest, cached = run_stage(LineCountStage(), ctx)
    assert not cached
    assert manifest.counts == {"files": 3, "lines": _expected_lines(ctx)}
    assert ctx.writer().exists("_shards/part-00002.json"), "each shard leaves its completion marker"
    assert not any(n.startswith("_") for n in manifest.files), "bookkeeping files are not content"
    again, cached = run_stage(LineCountStage(), ctx)
    assert cached and again.key == manifest.key


def test_crash_then_retry_skips_finished_shards(tmp_path, data_dir):
    crashing = _context(tmp_path, data_dir, fail_on="part-00002")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_stage(LineCountStage(), crashing)
    writer = crashing.writer()
    assert not ctx_committed(crashing)
    finished = {n: writer.fs.info(writer.path(n))["mtime"] for n in writer.files("lines/*")}
    assert sorted(finished) == ["lines/part-00000.json", "lines/part-00001.json"]

    # Same artifact, the crash cause gone: only the missing shard runs.
    fixed = crashing.model_copy(update={"config": crashing.config.model_copy(update={"fail_on": None})})
    manifest, _ = run_stage(LineCountStage(), fixed)
    assert {n: writer.fs.info(writer.path(n))["mtime"] for n in finished} == finished
    clean, _ = run_stage(LineCountStage(), _context(tmp_path / "clean", data_dir))
    assert manifest.counts == clean.counts
    assert {n: e.sha256 for n, e in manifest.files.items() if n.startswith("lines/")} == {
        n: e.sha256 for n, e in clean.files.items() if n.startswith("lines/")
    }


def test_one_function_decides_where_a_shard_runs(tmp_path, data_dir):
    def where(stage, task_runner, workers, shards, in_thread=False) -> tuple[bool, bool]:
        """(ran in this process, ran on a main thread) for one shard submitted as the tasks layer does."""
        ctx = _context(tmp_path, data_dir, workers=workers, task_runner=task_runner)
        shard = f"{type(stage).__name__}-{task_runner}-{workers}-{shards}-{in_thread}"
        if in_thread:
            with ThreadPoolExecutor(1) as thread:
                thread.submit(lambda: submit_shard(stage, ctx, shard, shards).result()).result()
        else:
            submit_shard(stage, ctx, shard, shards).result()
        ran = ctx.writer().read_json(f"where/{shard}.json")
        return ran["pid"] == os.getpid(), ran["main_thread"]

    assert where(WhereStage(), "threads", 2, 3) == (False, True), "several shards and workers: the process pool"
    assert where(WhereStage(), "threads", 2, 1) == (True, True), "one shard: here"
    assert where(WhereStage(), "threads", 1, 3, in_thread=True) == (True, False), "one worker: here, in the thread"
    assert where(WhereStage(), "dask", 2, 3, in_thread=True) == (True, False), "a cluster runner is the fan-out"


def ctx_committed(ctx: StageContext) -> bool:
    return ctx.store().is_committed(ctx.output)


@pytest.mark.slow
def test_stage_flow_under_prefect(tmp_path, data_dir, prefect_harness, monkeypatch):
    from prefect import flow

    from tasks.stage_flow import run_stage_flow

    monkeypatch.setitem(STAGES, "line_count", LineCountStage())
    ctx = _context(tmp_path, data_dir, workers=2)

    @flow
    def parent():
        return run_stage_flow(ctx), run_stage_flow(ctx)

    first, second = parent()
    assert first == second == ctx.output
    manifest = ctx.store().manifest(ctx.output)
    assert manifest.counts["lines"] == _expected_lines(ctx)
    assert [row["shard"] for row in manifest.extra["tables"]["per_shard"]] == ["part-00000", "part-00001", "part-00002"]


def test_flow_runs_do_not_wait_on_the_heartbeat_thread(prefect_harness, monkeypatch):
    """`tasks.heartbeat` leaves Prefect's heartbeat thread to stop on its own: the engine must still look the function
    up where the patch puts it, and the function must still take `join_on_exit`."""
    import contextlib
    import functools
    import inspect

    from prefect import flow, flow_engine

    import tasks.heartbeat  # noqa: F401

    patched = flow_engine._send_heartbeats
    assert isinstance(patched, functools.partial) and patched.keywords == {"join_on_exit": False}
    assert "join_on_exit" in inspect.signature(patched.func).parameters
    seen = []

    @contextlib.contextmanager
    def recording(engine, join_on_exit=True):
        seen.append(join_on_exit)
        with patched.func(engine, join_on_exit=join_on_exit):
            yield

    monkeypatch.setattr(flow_engine, "_send_heartbeats", functools.partial(recording, **patched.keywords))

    @flow
    def parent():
        return flow(lambda: 1, name="child")()

    assert parent() == 1
    assert seen == [False, False]  # the parent and its subflow

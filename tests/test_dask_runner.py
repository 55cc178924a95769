"""Scale-out of the data stages: the same shards `.map`ped on a 2-worker Dask LocalCluster (prefect-dask) build the
same artifacts (same keys, same files, same rows and values, timings aside) as the default thread runner with its
local process pool."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from flows.pipeline import full_pipeline
from llm_core.pipeline import plan
from llm_core.registry import STAGES
from llm_core.store import ArtifactStore
from ops.micro import micro_config

pytest.importorskip("prefect_dask", reason="prefect-dask is in the dev extra")

DATA_STAGES = [s for s in ("crawl", "extract", "filter") if s in STAGES]
# Four WARC files: four crawl shards, so the fan-out really spreads over both workers.
WARCS = "crawl.warc=[data/warc/resiliparse_cc_warcfile.dev.warc.gz, data/warc/whirlwind.warc.gz, " \
        "data/warc/warcio_example.warc.gz, data/warc/warcio_example-iana.org-chunked.warc]"
WALL_CLOCK_COLUMNS = {"extracted_at"}  # when a row was made, not what it holds


def without_timings(value):
    """A JSON value less the time measurements in it (`seconds`)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def rows(store: ArtifactStore, ref, name: str) -> list[dict]:
    with store.reader(ref).open(name) as f:
        table = pq.read_table(f)
    return table.drop_columns([c for c in table.column_names if c in WALL_CLOCK_COLUMNS]).to_pylist()


def build(root, runner: list[str]):
    config = micro_config(str(root), extra=[WARCS, *runner], targets=DATA_STAGES)
    full_pipeline(config=config)
    return config, ArtifactStore(config.run.artifact_root)


@pytest.mark.slow
def test_dask_local_cluster_builds_the_same_artifacts(tmp_path, prefect_harness):
    assert DATA_STAGES, "no data stage registered"
    threads, threads_store = build(tmp_path / "threads", ["run.task_runner=threads", "run.workers=2"])
    dask, dask_store = build(tmp_path / "dask", ["run.task_runner=dask", "run.workers=2"])

    planned_threads, planned_dask = plan(threads), plan(dask)
    assert list(planned_dask) == DATA_STAGES
    if "crawl" in STAGES:
        assert len(STAGES["crawl"].shard_ids(planned_dask["crawl"])) == 4
    for name in DATA_STAGES:
        a, b = planned_threads[name].output, planned_dask[name].output
        assert a.key == b.key, f"{name}: the task runner must not change the artifact key"
        ma, mb = threads_store.manifest(a), dask_store.manifest(b)
        assert without_timings(ma.counts) == without_timings(mb.counts), name
        files = {n for n in ma.files if not n.startswith("_shards/")}
        assert files == {n for n in mb.files if not n.startswith("_shards/")}, name
        for file in sorted(files):
            if file.endswith(".parquet"):
                assert rows(threads_store, a, file) == rows(dask_store, b, file), f"{name}/{file}"
            elif file.endswith(".json"):
                same = [without_timings(store.reader(ref).read_json(file)) for store, ref in
                        ((threads_store, a), (dask_store, b))]
                assert same[0] == same[1], f"{name}/{file}"
            else:
                assert ma.files[file].sha256 == mb.files[file].sha256, f"{name}/{file}"

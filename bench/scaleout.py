"""Scale-out of the data stages (crawl -> extract -> filter on the tiny config's sample data) by task runner.

Each configuration builds every artifact from scratch in its own folder (no cache hits), under one Prefect
ephemeral server started before the clock runs:

- threads, 1 worker: the serial baseline;
- threads, 2 workers: the default runner, shard work on the stage's own 2-process pool;
- dask, 2 workers: shards `.map`ped on a 2-worker Dask LocalCluster (one process per worker).

Printed beside datatrove's WARC -> trafilatura -> filters pipeline on the same machine (figures in
/work/shared/STACK.md: about 23 docs/s per worker, about 30 docs/s end to end with 2 workers).

    .venv/bin/python bench/scaleout.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow

from flows.pipeline import full_pipeline
from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.registry import STAGES
from llm_core.store import ArtifactStore

REPO = Path(__file__).resolve().parents[1]
DATA_STAGES = [s for s in ("crawl", "extract", "filter") if s in STAGES]
RUNNERS = {
    "threads x1 (serial)": ["run.task_runner=threads", "run.workers=1"],
    "threads x2 (process pool)": ["run.task_runner=threads", "run.workers=2"],
    "dask x2 (LocalCluster)": ["run.task_runner=dask", "run.workers=2"],
}
DATATROVE_DOCS_PER_S = {"threads x1 (serial)": 23.0, "threads x2 (process pool)": 30.0, "dask x2 (LocalCluster)": 30.0}


def data_config(root: str, runner: list[str]):
    last = DATA_STAGES[-1]
    later = [f"{name}.enabled=false" for name in list(STAGES)[list(STAGES).index(last) + 1:]]
    return load_config(REPO / "configs/tiny.yaml", [f"run.artifact_root={root}", *runner, *later])


def measure(runner: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="scaleout-") as root:
        config = data_config(root, runner)
        t0 = time.perf_counter()
        full_pipeline(config=config)
        seconds = time.perf_counter() - t0
        store = ArtifactStore(root)
        manifests = {name: store.manifest(ctx.output) for name, ctx in plan(config).items()}
    extract = manifests.get("extract")
    pages = extract.counts.get("input", 0) if extract else 0
    return {"seconds": seconds, "pages": pages, **{f"{n}_s": m.timings["seconds"] for n, m in manifests.items()}}


@flow(name="warm-up")
def warm_up() -> None:
    """Starts the ephemeral Prefect server outside the measured time."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (the best is kept)")
    args = parser.parse_args()
    os.chdir(REPO)
    warm_up()
    results = {}
    for label, runner in RUNNERS.items():
        runs = [measure(runner) for _ in range(args.repeat)]
        results[label] = min(runs, key=lambda r: r["seconds"])
    base = results["threads x1 (serial)"]["seconds"]
    stage_cols = [f"{n}_s" for n in DATA_STAGES]
    print(f"data stages {' -> '.join(DATA_STAGES)} on the tiny config's sample data, {os.cpu_count()} CPUs")
    header = f"{'runner':28} {'total s':>8} {'speedup':>8} " + " ".join(f"{c:>10}" for c in stage_cols)
    print(header + f" {'pages/s':>8} {'datatrove docs/s':>17}")
    for label, r in results.items():
        cols = " ".join(f"{r.get(c, 0):10.1f}" for c in stage_cols)
        rate = r["pages"] / r["seconds"] if r["seconds"] else 0.0
        print(f"{label:28} {r['seconds']:8.1f} {base / r['seconds']:7.2f}x {cols} {rate:8.1f} "
              f"{DATATROVE_DOCS_PER_S[label]:17.1f}")


if __name__ == "__main__":
    main()

"""The peer side of `data_throughput.py`: datatrove on the same WARC files, run with the bench environment's Python.

Not imported by the project (datatrove lives in a separate environment). Prints one JSON line:
`{"mode", "seconds", "records", "documents", "text_chars", "peak_rss_mb"}`. Modes:

- `ingest`: WarcReader only (WARC -> HTML records, decoded), what our `crawl` stage does on WARC input;
- `extract`: WarcReader -> Trafilatura (favour_precision, dedup, no comments) -> JsonlWriter, end to end.

datatrove shards by file: one task per input file, `--workers` processes.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import resource
import time

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.readers import WarcReader
from datatrove.pipeline.writers import JsonlWriter


def count_records(data, rank: int = 0, world_size: int = 1):
    """A last step that only consumes documents (datatrove counts them in its stats)."""
    for _ in data:
        pass
    return
    yield


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["ingest", "extract"])
    parser.add_argument("--warc-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()

    files = sorted(glob.glob(os.path.join(args.warc_dir, "*.warc.gz")))
    reader = WarcReader(args.warc_dir, glob_pattern="*.warc.gz", default_metadata={})
    if args.mode == "ingest":
        steps = [reader, count_records]
    else:
        steps = [
            reader,
            Trafilatura(favour_precision=True, deduplicate=True, timeout=args.timeout),
            JsonlWriter(os.path.join(args.out, "docs")),
        ]
    executor = LocalPipelineExecutor(
        pipeline=steps, tasks=len(files), workers=args.workers, logging_dir=os.path.join(args.out, "logs")
    )
    t0 = time.perf_counter()
    executor.run()
    seconds = time.perf_counter() - t0

    stats = json.load(open(os.path.join(args.out, "logs", "stats.json")))
    records = next(s["stats"].get("documents", {}).get("total", 0) for s in stats if "Warc" in s["name"])
    documents = text_chars = 0
    for path in glob.glob(os.path.join(args.out, "docs", "*.jsonl.gz")):
        with gzip.open(path, "rt") as f:
            for line in f:
                documents += 1
                text_chars += len(json.loads(line)["text"])
    rss = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(json.dumps({"mode": args.mode, "seconds": round(seconds, 3), "records": records, "documents": documents,
                      "text_chars": text_chars, "peak_rss_mb": round(rss / 1024, 1)}))


if __name__ == "__main__":
    main()

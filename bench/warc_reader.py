"""WARC reader speed, records/s: this reader beside an earlier version of it (default: the one before the
tolerant fallbacks) and warcio's ArchiveIterator (HTTP headers parsed, block read), on the same files.

The earlier version is loaded from git (`git show REV:llm_core/crawl/warc_reader.py`). Every file is read in
memory first; then the sides read all files in turn, `--rounds` times, alternating the order each round, and the
median records/s over rounds is reported per side. Well-formed files only: the point is what the fallbacks cost
when nothing needs them.

    .venv/bin/python bench/warc_reader.py [--before deefac4] [--rounds 15] [data/warc/*.warc*]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from llm_core.crawl import warc_reader

HTML = ["text/html", "application/xhtml+xml"]


def reader_at(revision: str) -> Callable:
    """`read_archive` of warc_reader.py as it was at `revision`."""
    source = subprocess.run(
        ["git", "show", f"{revision}:llm_core/crawl/warc_reader.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "warc_reader_before.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("warc_reader_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.read_archive


def ours(read_archive: Callable) -> Callable[[str, bytes], int]:
    def run(name: str, data: bytes) -> int:
        items = read_archive(io.BytesIO(data), name=name, source="b", content_types=HTML, max_body_bytes=5_000_000)
        return sum(1 for _ in items)

    return run


def warcio_side(name: str, data: bytes) -> int:
    records = 0
    for record in ArchiveIterator(io.BytesIO(data)):
        record.content_stream().read()
        records += 1
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", default=sorted(str(p) for p in Path("data/warc").glob("*.warc*")))
    parser.add_argument("--before", default="deefac4", help="git revision of the earlier reader")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    files = [(Path(f).name, Path(f).read_bytes()) for f in args.files]
    sides = {"ours (now)": ours(warc_reader.read_archive), f"ours ({args.before})": ours(reader_at(args.before)),
             "warcio": warcio_side}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    counts: dict[str, int] = {}
    order = list(sides)
    for round_ in range(args.rounds):
        for name in order if round_ % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            counts[name] = sum(sides[name](fname, data) for fname, data in files)
            rates[name].append(counts[name] / (time.perf_counter() - t0))
    size = sum(len(d) for _, d in files)
    print(f"{len(files)} files, {size / 1e6:.1f} MB, {args.rounds} rounds")
    print(f"{'side':<20} {'records':>8} {'median records/s':>17} {'min':>9} {'max':>9}")
    for name, r in rates.items():
        print(f"{name:<20} {counts[name]:>8} {statistics.median(r):>17,.0f} {min(r):>9,.0f} {max(r):>9,.0f}")


if __name__ == "__main__":
    main()

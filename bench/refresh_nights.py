"""What a night of a corpus costs as the corpus grows: time and peak memory of the data refresh (crawl -> extract ->
filter with cross-snapshot dedup -> tokenize -> corpus) on nights 1 to 5, each bringing the same number of new
documents (plus as many repeats of the night before, which the dedup index must catch).

The peer is the same nights with `filter.dedup.across_snapshots=none` (each snapshot deduplicated on its own, as
FineWeb does): the difference is what checking against the persistent index costs. The two corpora are refreshed
in alternating order, night by night, each night in its own process (peak RSS = that process's maximum), `--reps`
times on fresh roots; figures are medians.

Documents: real text cut into pieces of about 2,000 characters (WikiText-2 test and validation, tiny shakespeare,
the Chinese poems and fortunes shipped in data/), entering as a JSON text dataset (no HTML extraction). The
tokenizer is trained on night 1 only (its time is shown apart) and kept after.

    .venv/bin/python bench/refresh_nights.py [--new 300] [--nights 5] [--reps 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["data/wikitext2/test.txt.gz", "data/wikitext2/valid.txt", "data/tinyshakespeare/input.txt",
         *sorted(str(p.relative_to(REPO)) for p in (REPO / "data/chinese_text").glob("*.txt"))]
STAGES = ("crawl", "extract", "filter", "bpe", "tokenize", "corpus")  # seconds of each; filter includes the check
PARTS = (*STAGES, "cross_snapshot")  # ... of the new documents against the corpus's dedup index


def documents(size: int = 2000) -> list[str]:
    """Every text cut at line ends into pieces of about `size` characters, interleaved across texts."""
    per_text = []
    for name in TEXTS:
        path = REPO / name
        text = gzip.open(path, "rt", encoding="utf-8").read() if name.endswith(".gz") else path.read_text("utf-8")
        pieces, start = [], 0
        while start < len(text):
            end = text.find("\n", start + size)
            end = len(text) if end < 0 else end + 1
            pieces.append(text[start:end])
            start = end
        per_text.append([p for p in pieces if p.strip()])
    out = []
    for i in range(max(map(len, per_text))):
        out += [pieces[i] for pieces in per_text if i < len(pieces)]
    return out


def write_nights(folder: Path, nights: int, new: int) -> list[Path]:
    """Night n: `new` documents never seen before, then the previous night's new ones again (repeats)."""
    docs = documents()
    if len(docs) < nights * new:
        raise SystemExit(f"--new {new} x --nights {nights} needs {nights * new} documents; there are {len(docs)}")
    paths = []
    for n in range(nights):
        fresh = docs[n * new:(n + 1) * new]
        repeats = docs[(n - 1) * new:n * new] if n else []
        path = folder / f"night-{n + 1}.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in fresh + repeats), encoding="utf-8")
        paths.append(path)
    return paths


def overrides(root: Path, night: Path, policy: str) -> list[str]:
    return [f"run.artifact_root={root}", "run.workers=1", "run.name=bench", "crawl.warc=[]", "crawl.html_dirs=[]",
            f"crawl.text_datasets=[{{path: json, data_files: [{night}], source: bench}}]",
            f"crawl.snapshot={night.stem}", f"filter.dedup.across_snapshots={policy}", "bpe.sources=[]",
            "bpe.vocab_size=2048", "tokenize.sources=[]"]


def one_night(args: list[str]) -> None:
    """Run in a child process: the data refresh of one night; prints its figures as JSON."""
    sys.path.insert(0, str(REPO))
    from llm_core.pipeline import plan
    from llm_core.pipeline_config import load_config
    from llm_core.registry import STAGES as REGISTRY
    from llm_core.stage import run_stage

    cfg = load_config(REPO / "configs/tiny.yaml", args)
    seconds = {}
    for name, ctx in plan(cfg, ["corpus"]).items():
        started = time.perf_counter()
        manifest, _ = run_stage(REGISTRY[name], ctx)
        seconds[name] = time.perf_counter() - started
        if name == "filter":
            kept, input_ = manifest.counts["kept"], manifest.counts["input"]
            seconds["cross_snapshot"] = manifest.metrics.get("cross_snapshot_dedup_seconds", 0.0)
        if name == "corpus":
            corpus_docs = manifest.counts["documents"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "kept": kept, "input": input_,
                      "corpus_documents": corpus_docs}))


def measure(root: Path, night: Path, policy: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one-night", *overrides(root, night, policy)], cwd=REPO,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new", type=int, default=300, help="new documents per night")
    parser.add_argument("--nights", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    results: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_nights(Path(tmp), args.nights, args.new)
        for rep in range(args.reps):
            roots = {p: Path(tmp) / f"rep{rep}-{p}" for p in ("exact", "none")}
            for n, night in enumerate(paths, start=1):
                order = ("exact", "none") if (n + rep) % 2 else ("none", "exact")
                for policy in order:
                    results.setdefault((policy, n), []).append(measure(roots[policy], night, policy))
    print(f"{args.new} new documents a night (+ the night before's again); medians of {args.reps}; "
          "seconds per stage, bpe apart (night 1 only)")
    print("| night | dedup across snapshots | crawl | extract | filter | of which index check | tokenize | corpus | "
          "total w/o bpe | bpe | peak RSS MB | kept / in | corpus docs |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for n in range(1, args.nights + 1):
        for policy in ("exact", "none"):
            runs = results[(policy, n)]
            sec = {s: statistics.median(r["seconds"].get(s, 0.0) for r in runs) for s in PARTS}
            total = sum(sec[s] for s in STAGES if s != "bpe")
            peak = statistics.median(r["peak_mb"] for r in runs)
            print(f"| {n} | {policy} | {sec['crawl']:.2f} | {sec['extract']:.2f} | {sec['filter']:.2f} | "
                  f"{sec['cross_snapshot']:.3f} | "
                  f"{sec['tokenize']:.2f} | {sec['corpus']:.2f} | {total:.2f} | {sec['bpe']:.2f} | {peak:.0f} | "
                  f"{runs[0]['kept']} / {runs[0]['input']} | {runs[0]['corpus_documents']} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one-night":
        one_night(sys.argv[2:])
    else:
        main()

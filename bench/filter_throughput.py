"""Throughput of the filter stage, side by side with datatrove's FineWeb filters on the same input and cores.

Input: a mixed English/Chinese corpus built from the sample data (the sample pages through trafilatura, wikitext-2
articles, Shakespeare scenes, Chinese fortunes), with planted blocklisted URLs and near-duplicates.
Per filter: documents/s in one process, each filter seeing the documents that passed the previous ones (the order
both pipelines use), and the fraction it keeps. Whole stage: wall time of our `filter` stage (all filters, PII,
MinHash dedup across shards) and of datatrove's URLFilter -> LanguageFilter -> GopherRepetition -> GopherQuality ->
C4Quality -> FineWebQuality pipeline plus its four MinHash steps, with the same number of worker processes.

datatrove runs from its own virtual environment (default /work/bench-venv, `pip install datatrove[processing]
fasttext-numpy2-wheel`), given the same lid.176 model file; its URL filter uses its bundled UT1 adult lists.

    .venv/bin/python bench/filter_throughput.py [--workers 2] [--copies 1] [--stride 2] [--peer-python PYTHON]
    .venv/bin/python bench/filter_throughput.py --dedup-docs 100000 1000000   # memory of the global dedup step
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILTER_ORDER = ["url", "language", "gopher_repetition", "gopher_quality", "c4", "fineweb"]


# -- input, shared by both sides
def build_corpus(copies: int) -> list[dict]:
    """Distinct documents from the sample data, then `copies` passes of them with light edits (near-duplicates),
    plus a few URLs from the blocklists."""
    import trafilatura

    base: list[tuple[str, str]] = []
    for path in sorted((ROOT / "data/html").glob("*/*.html")):
        base.append((f"https://docs.example.org/{path.parent.name}/{path.stem}", trafilatura.extract(
            path.read_text(encoding="utf-8")) or ""))
    wiki = (ROOT / "data/wikitext2/valid.txt").read_text(encoding="utf-8")
    for i, article in enumerate(a for a in wiki.split("\n = ") if len(a) > 2000):
        base.append((f"https://wiki.example.org/article/{i}", " = " + article))
    plays = (ROOT / "data/tinyshakespeare/input.txt").read_text(encoding="utf-8").split("\n\n")
    for i in range(0, len(plays), 25):
        base.append((f"https://plays.example.org/scene/{i}", "\n\n".join(plays[i : i + 25])))
    fortunes = (ROOT / "data/chinese_text/fortunes_zh_chinese.txt").read_text(encoding="utf-8").split("\n%\n")
    for i in range(0, len(fortunes), 6):
        base.append((f"https://zh.example.org/fortune/{i}", "\n\n".join(fortunes[i : i + 6])))
    docs = [{"id": f"d{i:05d}", "url": url, "text": text} for i, (url, text) in enumerate(base)]
    blocked = ["http://0-casino.info/", "http://www.10putes.com/", "https://example.com/free-porn-videos"]
    for copy in range(1, copies + 1):
        for i, (url, text) in enumerate(base):
            words = text.split(" ")
            edited = " ".join(w for j, w in enumerate(words) if (j + copy) % 50)  # drop one word in 50
            url = blocked[i % len(blocked)] if i % 40 == 0 else f"{url}?copy={copy}"
            docs.append({"id": f"c{copy}-{i:05d}", "url": url, "text": edited})
    return docs


# -- our side
def ours_per_filter(docs: list[dict]) -> dict[str, dict]:
    from llm_core.filters.base import Document
    from llm_core.filters.minhash import exact_key
    from llm_core.filters.stage import FilterConfig, build_filters, minhasher

    config = FilterConfig()
    filters = build_filters(config)
    alive = [Document(doc_id=d["id"], url=d["url"], text=d["text"]) for d in docs]
    out: dict = {"dropped_by": {}, "language": {}}
    for f in filters:
        passed = []
        for d in alive:
            if f(d) is None:
                passed.append(d)
            else:
                out["dropped_by"][d.doc_id] = f.name
            if d.language is not None:
                out["language"][d.doc_id] = d.language
        out[f.name] = {"input": len(alive), "kept": len(passed), "seconds": f.stats.seconds}
        alive = passed
    hasher = minhasher(config.dedup)
    t0 = time.perf_counter()
    for d in alive:
        hasher.band_keys(d.text)
        exact_key(d.text)
    out["minhash_signature"] = {"input": len(alive), "kept": len(alive), "seconds": time.perf_counter() - t0}
    return out


def ours_stage(docs: list[dict], workers: int, shards: int, work: Path) -> dict:
    import pyarrow as pa

    from llm_core.config import RunConfig
    from llm_core.filters.stage import FilterConfig, FilterStage
    from llm_core.schemas import DOCUMENTS
    from llm_core.stage import StageContext, run_stage
    from llm_core.store import ArtifactStore

    store = ArtifactStore(str(work / "ours"))
    src = store.ref("extract", "bench")
    writer = store.writer(src)
    rows = [{"doc_id": d["id"], "url": d["url"], "text": d["text"], "title": None, "source": "bench",
             "extracted_at": None} for d in docs]
    for s in range(shards):
        writer.write_table(f"documents/part-{s:05d}.parquet", pa.Table.from_pylist(rows[s::shards], schema=DOCUMENTS))
    writer.commit(version="bench", config={}, inputs={})
    ctx = StageContext(stage="filter", config=FilterConfig(), run=RunConfig(artifact_root=store.root, workers=workers),
                       inputs={"documents": src}, output=store.ref("filter", "bench"))
    t0 = time.perf_counter()
    manifest, _ = run_stage(FilterStage(), ctx)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "input": manifest.counts["input"], "kept": manifest.counts["kept"],
            "dedup_seconds": manifest.metrics.get("dedup_seconds", 0.0),
            "dedup_dropped": sum(v for k, v in manifest.counts.items() if k.startswith("rejected:dedup"))}


# -- datatrove side (runs inside the peer venv)
def peer(input_path: Path, workers: int, work: Path) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.io import cached_assets_path
    from datatrove.data import Document
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import (
        C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter, LanguageFilter, URLFilter,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.lid import FT176LID
    from fsspec.core import strip_protocol

    # the same lid.176 model, placed where datatrove would download it
    lid_dir = cached_assets_path(library_name="datatrove", namespace="lid", subfolder=FT176LID.MODEL_SUBFOLDER)
    lid_path = os.path.join(lid_dir, strip_protocol(FT176LID.MODEL_URL).replace("/", "_"))
    if not os.path.exists(lid_path + ".completed"):
        shutil.copy(ROOT / "data/langid/lid.176.ftz", lid_path)
        Path(lid_path + ".completed").touch()

    def make_filters():
        return [URLFilter(), LanguageFilter(languages=["en", "zh"], language_threshold=0.65), GopherRepetitionFilter(),
                GopherQualityFilter(), C4QualityFilter(filter_no_terminal_punct=False), FineWebQualityFilter()]

    names = dict(zip(FILTER_ORDER, make_filters()))
    with gzip.open(input_path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    warm = Document(text="Warm up the models and word lists. " * 20, id="w", metadata={"url": "https://a.example.com"})
    for f in names.values():
        f.filter(warm)
    alive = [Document(text=r["text"], id=r["id"], metadata={"url": r["url"]}) for r in rows]
    per_filter: dict = {"dropped_by": {}}
    for name, f in names.items():
        passed = []
        t0 = time.perf_counter()
        for d in alive:
            try:
                ok = f.filter(d)
            except Exception:  # datatrove lets a filter raise; count it as a drop here
                ok = False
            if ok is True:
                passed.append(d)
            else:
                per_filter["dropped_by"][d.id] = name
        per_filter[name] = {"input": len(alive), "kept": len(passed), "seconds": time.perf_counter() - t0}
        print(f"datatrove {name}: {per_filter[name]}", file=sys.stderr)
        alive = passed

    cfg = MinhashConfig()  # 5-grams, 14 buckets x 8 hashes, as ours
    data = str(input_path.parent)
    t0 = time.perf_counter()
    runs = [
        ([JsonlReader(data, glob_pattern="*.jsonl.gz"), *make_filters(), JsonlWriter(f"{work}/filtered")], workers),
        ([JsonlReader(f"{work}/filtered"), MinhashDedupSignature(f"{work}/sigs", config=cfg)], workers),
        ([MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=cfg)], cfg.num_buckets),
        ([MinhashDedupCluster(f"{work}/buckets", f"{work}/clusters", config=cfg)], 1),
        ([JsonlReader(f"{work}/filtered"), MinhashDedupFilter(f"{work}/clusters"), JsonlWriter(f"{work}/dedup")],
         workers),
    ]
    for i, (pipeline, tasks) in enumerate(runs):
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=min(workers, tasks),
                              logging_dir=f"{work}/logs/{i}").run()
        print(f"datatrove pipeline step {i}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    seconds = time.perf_counter() - t0
    kept = sum(1 for p in Path(work, "dedup").glob("*.jsonl.gz") for _ in gzip.open(p, "rt"))
    filtered = sum(1 for p in Path(work, "filtered").glob("*.jsonl.gz") for _ in gzip.open(p, "rt"))
    return {"per_filter": per_filter, "stage": {"seconds": seconds, "input": len(rows), "kept": kept,
                                                "dedup_dropped": filtered - kept}}


# -- memory of the global dedup step, on synthetic keys (what the shards leave behind)
def dedup_scaling(n_docs: int, work: Path, shards: int = 8, dup_fraction: float = 0.01) -> dict:
    """Peak memory (tracemalloc, which sees numpy buffers) and time of `find_duplicates` over `n_docs` documents'
    keys in `shards` files, with `dup_fraction` of them planted as near-duplicates (one shared band)."""
    import tracemalloc

    import numpy as np

    from llm_core.filters.dedup import ShardKeys, find_duplicates

    rng = np.random.default_rng(0)
    per = n_docs // shards
    for s in range(shards):
        bands = rng.integers(0, 1 << 63, (per, 14), dtype=np.uint64)
        exact = rng.integers(0, 1 << 63, per, dtype=np.uint64)
        planted = rng.choice(per - 1, int(per * dup_fraction), replace=False) + 1
        bands[planted, 5] = bands[planted - 1, 5]
        ids = np.array([f"doc-{s:03d}-{i:09d}" for i in range(per)])
        (work / f"keys-{s}.npz").write_bytes(ShardKeys(doc_ids=ids, exact=exact, bands=bands).to_bytes())

    def load(i: int) -> ShardKeys:
        return ShardKeys.from_bytes((work / f"keys-{i}.npz").read_bytes())

    tracemalloc.start()
    t0 = time.perf_counter()
    found = find_duplicates(shards, load)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"docs": per * shards, "duplicates": len(found), "seconds": seconds, "peak_mb": peak / 1e6}


# -- report
def print_report(docs: int, workers: int, ours: dict, ours_stage_: dict, theirs: dict | None) -> None:
    print(f"{docs} documents, {workers} worker processes\n")
    print(f"{'filter':<18} {'ours docs/s':>12} {'ours kept':>10} {'datatrove docs/s':>17} {'datatrove kept':>15}")
    for name in [*FILTER_ORDER, "pii", "minhash_signature"]:
        o = ours.get(name)
        t = (theirs or {}).get("per_filter", {}).get(name)
        cols = []
        for r in (o, t):
            if r is None:
                cols += ["-", "-"]
            else:
                cols += [f"{r['input'] / r['seconds']:,.0f}" if r["seconds"] else "-",
                         f"{r['kept'] / max(1, r['input']):.1%}"]
        print(f"{name:<18} {cols[0]:>12} {cols[1]:>10} {cols[2]:>17} {cols[3]:>15}")
    if theirs:
        print()
        print_agreement(ours, theirs["per_filter"])
    print()
    rows = [("ours (filter stage)", ours_stage_)] + ([("datatrove", theirs["stage"])] if theirs else [])
    print(f"{'whole stage':<20} {'seconds':>8} {'docs/s':>8} {'kept':>6} {'kept %':>7} {'dedup dropped':>14}")
    for label, s in rows:
        print(f"{label:<20} {s['seconds']:>8.1f} {s['input'] / s['seconds']:>8.1f} {s['kept']:>6} "
              f"{s['kept'] / s['input']:>7.1%} {s['dedup_dropped']:>14}")


def print_agreement(ours: dict, theirs: dict) -> None:
    """Per language (ours' fastText label): documents each side keeps after the six filters, and how often both
    make the same decision (keep, or drop at the same filter)."""
    ids = sorted(ours["language"])
    print(f"{'language':<9} {'documents':>9} {'ours kept':>10} {'datatrove kept':>15} {'same decision':>14}")
    for lang in ("en", "zh"):
        docs = [i for i in ids if ours["language"][i] == lang]
        mine = [ours["dropped_by"].get(i) for i in docs]
        peer_ = [theirs["dropped_by"].get(i) for i in docs]
        kept_o = sum(1 for m in mine if m in (None, "pii"))
        kept_t = sum(1 for t in peer_ if t is None)
        same = sum(1 for m, t in zip(mine, peer_) if (m in (None, "pii") and t is None) or m == t)
        print(f"{lang:<9} {len(docs):>9} {kept_o / len(docs):>10.1%} {kept_t / len(docs):>15.1%} "
              f"{same / len(docs):>14.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--copies", type=int, default=1, help="near-duplicate passes over the base documents")
    parser.add_argument("--stride", type=int, default=2, help="keep every n-th document (smaller, faster runs)")
    parser.add_argument("--peer-python", default="/work/bench-venv/bin/python")
    parser.add_argument("--dedup-docs", type=int, nargs="+", help="only measure the dedup step on this many documents")
    parser.add_argument("--peer", type=Path, help=argparse.SUPPRESS)  # internal: run the datatrove side on this file
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        print(json.dumps(peer(args.peer, args.workers, args.work)))
        return

    if args.dedup_docs:
        print(f"{'documents':>10} {'duplicates':>10} {'seconds':>8} {'peak MB':>8} {'bytes/doc':>9}")
        for n in args.dedup_docs:
            with tempfile.TemporaryDirectory() as tmp:
                r = dedup_scaling(n, Path(tmp))
            print(f"{r['docs']:>10,} {r['duplicates']:>10,} {r['seconds']:>8.2f} {r['peak_mb']:>8.1f} "
                  f"{r['peak_mb'] * 1e6 / r['docs']:>9.0f}")
        return
    docs = build_corpus(args.copies)[:: args.stride]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "input").mkdir()
        with gzip.open(work / "input" / "corpus.jsonl.gz", "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
        ours = ours_per_filter(docs)
        stage = ours_stage(docs, args.workers, shards=2 * args.workers, work=work)
        theirs = None
        if args.peer_python and Path(args.peer_python).exists():
            proc = subprocess.run(
                [args.peer_python, __file__, "--peer", str(work / "input" / "corpus.jsonl.gz"),
                 "--workers", str(args.workers), "--work", str(work / "datatrove")],
                capture_output=True, text=True, cwd=ROOT,
            )
            if proc.returncode == 0:
                theirs = json.loads(proc.stdout.strip().splitlines()[-1])
            else:
                print(f"datatrove side failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        else:
            print(f"{args.peer_python} not found: datatrove side skipped", file=sys.stderr)
    print_report(len(docs), args.workers, ours, stage, theirs)


if __name__ == "__main__":
    main()

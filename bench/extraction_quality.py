"""Main-text extraction quality and speed on the article extraction benchmark, ours beside plain trafilatura.

Scores with the benchmark's own metric (scrapinghub/article-extraction-benchmark, `evaluate.py`): per page, the
4-word shingles of the extracted text against those of the hand-checked `articleBody` give tp/fp/fn, normalised
so that every page weighs the same; precision and recall are averaged over pages, F1 is their harmonic mean.

Sides, all in one run on the same pages:
- `ours`: the extract stage's `PageExtractor` with its config defaults (bytes in, charset detection included);
- `trafilatura`: `trafilatura.extract(html)` with its defaults (the published figure: F1 0.958 on all 181 pages);
- with `--sweep`, ours with each trafilatura setting flipped, to choose the defaults.

Speed: pages/s per side on one core, timed in alternating blocks of `--block` pages (ours, peer, ours, ...), the
median of the per-block rates reported. The number of pages rejected as boilerplate only is printed too.

    .venv/bin/python bench/extraction_quality.py [--data ../shared/data/extraction_benchmark] [--sweep]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import trafilatura

from llm_core.extract.config import ExtractConfig
from llm_core.extract.page import Extracted, PageExtractor

_TOKEN_RE = re.compile(r"\w+")


def shingles(text: str, n: int = 4) -> Counter:
    """Counts of the word n-grams of `text` (a text shorter than n words is one shingle)."""
    tokens = _TOKEN_RE.findall(text or "")
    return Counter(tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)) if tokens[i : i + n])


def page_scores(expected: str, predicted: str) -> tuple[float, float, float]:
    """(tp, fp, fn) over shingles of one page, normalised to sum to 1."""
    gold, pred = shingles(expected), shingles(predicted)
    tp = sum((gold & pred).values())
    fp = sum((pred - gold).values())
    fn = sum((gold - pred).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def aggregate(scores: list[tuple[float, float, float]]) -> dict[str, float]:
    """Precision and recall averaged over pages (the benchmark's convention for empty sides), and their F1."""

    def precision(tp: float, fp: float, fn: float) -> float:
        return 1.0 if fp == fn == 0 else 0.0 if tp == fp == 0 else tp / (tp + fp)

    def recall(tp: float, fp: float, fn: float) -> float:
        return 1.0 if fp == fn == 0 else 0.0 if tp == fn == 0 else tp / (tp + fn)

    p = statistics.mean(precision(*s) for s in scores if s[0] + s[1] > 0)
    r = statistics.mean(recall(*s) for s in scores if s[0] + s[2] > 0)
    return {"f1": 2 * p * r / (p + r) if p + r else 0.0, "precision": p, "recall": r}


def load_benchmark(folder: Path) -> list[tuple[str, bytes, str]]:
    """(page id, HTML bytes, expected article body) for every page of the benchmark folder."""
    truth = json.loads((folder / "ground-truth.json").read_text(encoding="utf-8"))
    pages = []
    for page_id in sorted(truth):
        path = folder / "html" / f"{page_id}.html.gz"
        if not path.exists():
            raise FileNotFoundError(f"{path}: listed in {folder / 'ground-truth.json'} but missing")
        pages.append((page_id, gzip.decompress(path.read_bytes()), truth[page_id]["articleBody"]))
    return pages


def ours(config: ExtractConfig) -> Callable[[bytes], str]:
    """Our extract stage on one page's bytes; a rejection counts as no text."""
    extractor = PageExtractor(config)

    def run(body: bytes) -> str:
        outcome = extractor(as_page(body))
        return outcome.text if isinstance(outcome, Extracted) else ""

    return run


def as_page(body: bytes) -> dict:
    return {"url": None, "status": 200, "content_type": "text/html", "charset": None, "body": body}


def trafilatura_defaults(body: bytes) -> str:
    return trafilatura.extract(body) or ""


def interleaved_runs(
    sides: dict[str, Callable[[bytes], str]], pages: list[tuple[str, bytes, str]], block: int
) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Median pages/s of each side over alternating blocks of `block` pages, and each side's texts in page order."""
    rates: dict[str, list[float]] = {name: [] for name in sides}
    texts: dict[str, list[str]] = {name: [] for name in sides}
    for start in range(0, len(pages), block):
        chunk = pages[start : start + block]
        for name, extract in sides.items():
            t0 = time.perf_counter()
            texts[name] += [extract(body) for _, body, _ in chunk]
            rates[name].append(len(chunk) / (time.perf_counter() - t0))
    return {name: statistics.median(r) for name, r in rates.items()}, texts


SWEEP = {
    "previous defaults (precision, fallbacks)": {"favor_precision": True, "favor_recall": False, "fast": False},
    "fast=False (fallbacks on)": {"fast": False},
    "favor_recall=False": {"favor_recall": False},
    "favor_precision=True": {"favor_precision": True, "favor_recall": False},
    "include_tables=False": {"include_tables": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/extraction_benchmark")
    parser.add_argument("--block", type=int, default=8, help="pages per alternating timing block")
    parser.add_argument("--sweep", action="store_true", help="also score ours with each setting flipped")
    args = parser.parse_args()
    pages = load_benchmark(Path(args.data))
    default = ExtractConfig()
    sides = {"ours (defaults)": ours(default), "trafilatura defaults": trafilatura_defaults}
    if args.sweep:
        sides |= {f"ours, {name}": ours(ExtractConfig(**change)) for name, change in SWEEP.items()}
    rates, texts = interleaved_runs(sides, pages, args.block)
    extractor = PageExtractor(default)
    outcomes = Counter(getattr(extractor(as_page(body)), "reason", "kept") for _, body, _ in pages)
    print(f"{len(pages)} pages of {args.data}; ours with its defaults: {dict(outcomes)}")
    print(f"{'side':<48} {'F1':>6} {'prec.':>6} {'recall':>6} {'pages/s':>8}")
    for name in sides:
        m = aggregate([page_scores(expected, text) for (_, _, expected), text in zip(pages, texts[name])])
        print(f"{name:<48} {m['f1']:>6.3f} {m['precision']:>6.3f} {m['recall']:>6.3f} {rates[name]:>8.1f}")


if __name__ == "__main__":
    main()

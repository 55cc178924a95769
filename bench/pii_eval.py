"""PII detection measured two ways, ours beside Presidio's pattern recognizers in the same run.

1. Recall and precision per type on the labelled Presidio sample (data/pii). A gold span counts as found when a
   predicted span of the same type overlaps it; a predicted span is correct when it overlaps a gold span of the
   same type. Gold types map to ours: EMAIL_ADDRESS -> EMAIL, IP_ADDRESS -> IP, PHONE_NUMBER -> PHONE,
   CREDIT_CARD -> CREDIT_CARD, IBAN_CODE -> IBAN, US_SSN -> SSN (the set has no Chinese IDs).
2. False redactions per 1,000 documents on text that holds no PII: GSM8K problems with their worked answers
   (calculator annotations `<<a-b=c>>` included), WikiText-2 validation paragraphs and OpenAssistant messages.
   Every span found there counts as false (`--errors clean` prints them to check).

The peer is presidio-analyzer's pattern recognizers for the same types (email, IP, phone via `phonenumbers`,
credit card, IBAN, US SSN), run without an NLP model, keeping every result as its AnalyzerEngine does by default
(score threshold 0). It is optional: `pip install -e ".[bench]"`; without it only our side is printed.

    .venv/bin/python bench/pii_eval.py [--data data/pii/synth_dataset_v2.dev.json] [--errors PHONE|clean]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from llm_core.filters.pii import find_pii

GOLD_TYPES = {
    "EMAIL_ADDRESS": "EMAIL",
    "IP_ADDRESS": "IP",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "SSN",
}
TARGETS = {"EMAIL": 0.97, "IP": 0.97, "CREDIT_CARD": 0.97, "PHONE": 0.97, "IBAN": 0.97, "SSN": 0.97}
MAX_FALSE_PER_1000 = 1.0

Span = tuple[int, int, str]
Detector = Callable[[str], list[Span]]


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def evaluate(records: list[dict], detect: Detector = find_pii, show_errors: str | None = None) -> dict[str, dict]:
    """Per type: gold spans, how many were found, spans predicted, how many were correct."""
    stats = {t: {"gold": 0, "found": 0, "predicted": 0, "correct": 0} for t in TARGETS}
    for rec in records:
        text = rec["full_text"]
        gold = [
            (s["start_position"], s["end_position"], GOLD_TYPES[s["entity_type"]])
            for s in rec["spans"]
            if s["entity_type"] in GOLD_TYPES
        ]
        pred = detect(text)
        for start, end, t in gold:
            stats[t]["gold"] += 1
            hit = any(pt == t and overlaps((start, end), (ps, pe)) for ps, pe, pt in pred)
            stats[t]["found"] += hit
            if not hit and show_errors == t:
                print(f"missed {t}: {text[start:end]!r}")
        for start, end, t in pred:
            if t not in stats:
                continue
            stats[t]["predicted"] += 1
            ok = any(gt == t and overlaps((start, end), (gs, ge)) for gs, ge, gt in gold)
            stats[t]["correct"] += ok
            if not ok and show_errors == t:
                print(f"false {t}: {text[start:end]!r} in {text[max(0, start - 40):end + 40]!r}")
    return stats


def clean_corpora(root: Path) -> dict[str, list[str]]:
    """Documents with no PII: GSM8K problems + answers, WikiText-2 paragraphs, OpenAssistant messages."""
    gsm8k = [
        f"{r['question']}\n{r['answer']}"
        for r in map(json.loads, (root / "gsm8k/train.jsonl").read_text(encoding="utf-8").splitlines())
    ]
    wikitext = [
        line.strip()
        for line in (root / "wikitext2/valid.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not re.fullmatch(r"\s*(= )+.*(= )*\s*", line)
    ]

    def messages(node: dict) -> Iterator[str]:
        yield node["text"]
        for reply in node.get("replies", []):
            yield from messages(reply)

    oasst = [
        text
        for tree in map(json.loads, (root / "oasst/en_80_tree.jsonl").read_text(encoding="utf-8").splitlines())
        for text in messages(tree["prompt"])
    ]
    return {"GSM8K": gsm8k, "WikiText-2": wikitext, "OpenAssistant": oasst}


def false_redactions(docs: list[str], detect: Detector, show: bool = False) -> int:
    found = 0
    for doc in docs:
        for start, end, t in detect(doc):
            found += 1
            if show:
                print(f"clean {t}: {doc[start:end]!r} in {doc[max(0, start - 40):end + 40]!r}")
    return found


def presidio_detector() -> Detector | None:
    """Presidio's pattern recognizers for our types, or None when presidio-analyzer is not installed."""
    try:
        import tldextract.tldextract
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            EmailRecognizer,
            IbanRecognizer,
            IpRecognizer,
            PhoneRecognizer,
            UsSsnRecognizer,
        )
    except ImportError:
        return None
    # The email recognizer checks domains with tldextract, which would fetch the public suffix list: use the copy
    # that ships with it (nothing is downloaded here).
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    recognizers = {
        "EMAIL": EmailRecognizer(),
        "IP": IpRecognizer(),
        "PHONE": PhoneRecognizer(),
        "CREDIT_CARD": CreditCardRecognizer(),
        "IBAN": IbanRecognizer(),
        "SSN": UsSsnRecognizer(),
    }

    def detect(text: str) -> list[Span]:
        spans = []
        for ours, recognizer in recognizers.items():
            for r in recognizer.analyze(text, recognizer.supported_entities, None):
                if r.score > 0:
                    spans.append((r.start, r.end, ours))
        return spans

    return detect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/pii/synth_dataset_v2.dev.json")
    parser.add_argument("--errors", help="print our misses and false hits of this type, or 'clean' for clean text")
    args = parser.parse_args()
    records = json.loads(Path(args.data).read_text(encoding="utf-8"))
    corpora = clean_corpora(Path(args.data).resolve().parents[1])
    sides: dict[str, Detector] = {"ours": find_pii}
    peer = presidio_detector()
    if peer is not None:
        sides["presidio"] = peer
    else:
        print("presidio-analyzer not installed (pip install -e '.[bench]'): our side only")

    results, seconds = {}, {}
    for name, detect in sides.items():
        t0 = time.perf_counter()
        results[name] = evaluate(records, detect, args.errors if name == "ours" else None)
        seconds[name] = time.perf_counter() - t0
    print(f"labelled set: {len(records)} records ({', '.join(f'{n} {s:.2f} s' for n, s in seconds.items())})")
    print(f"{'type':<12} {'gold':>5} " + " ".join(f"{n + ' recall':>16} {n + ' precision':>19}" for n in sides))
    for t in TARGETS:
        cells = []
        for name in sides:
            s = results[name][t]
            recall = s["found"] / s["gold"] if s["gold"] else float("nan")
            precision = s["correct"] / s["predicted"] if s["predicted"] else float("nan")
            cells.append(f"{recall:>16.3f} {precision:>19.3f}")
        print(f"{t:<12} {results['ours'][t]['gold']:>5} " + " ".join(cells) + f"   target recall >= {TARGETS[t]}")

    print(f"\nfalse redactions per 1,000 clean documents (target <= {MAX_FALSE_PER_1000})")
    print(f"{'corpus':<14} {'docs':>6} " + " ".join(f"{n:>12}" for n in sides))
    for corpus, docs in corpora.items():
        cells = [
            f"{1000 * false_redactions(docs, detect, args.errors == 'clean' and name == 'ours') / len(docs):>12.2f}"
            for name, detect in sides.items()
        ]
        print(f"{corpus:<14} {len(docs):>6} " + " ".join(cells))


if __name__ == "__main__":
    main()

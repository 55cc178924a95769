"""Recall and precision of the PII redactor per type on the labelled Presidio sample (data/pii).

A gold span counts as found when a predicted span of the same type overlaps it; a predicted span is correct when
it overlaps a gold span of the same type. Gold types map to ours: EMAIL_ADDRESS -> EMAIL, IP_ADDRESS -> IP,
PHONE_NUMBER -> PHONE, CREDIT_CARD -> CREDIT_CARD, IBAN_CODE -> IBAN (the set has no Chinese IDs).

    .venv/bin/python bench/pii_eval.py [--data data/pii/synth_dataset_v2.dev.json] [--errors PHONE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from llm_core.filters.pii import find_pii

GOLD_TYPES = {
    "EMAIL_ADDRESS": "EMAIL",
    "IP_ADDRESS": "IP",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
}
TARGETS = {"EMAIL": 0.95, "IP": 0.95, "CREDIT_CARD": 0.95, "PHONE": 0.9, "IBAN": 0.9}


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def evaluate(records: list[dict], show_errors: str | None = None) -> dict[str, dict[str, int]]:
    stats = {t: {"gold": 0, "found": 0, "predicted": 0, "correct": 0} for t in TARGETS}
    for rec in records:
        text = rec["full_text"]
        gold = [
            (s["start_position"], s["end_position"], GOLD_TYPES[s["entity_type"]])
            for s in rec["spans"]
            if s["entity_type"] in GOLD_TYPES
        ]
        pred = find_pii(text)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/pii/synth_dataset_v2.dev.json")
    parser.add_argument("--errors", help="print misses and false hits of this type")
    args = parser.parse_args()
    records = json.loads(Path(args.data).read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    stats = evaluate(records, args.errors)
    seconds = time.perf_counter() - t0
    print(f"{len(records)} records, {seconds:.2f} s ({len(records) / seconds:,.0f} records/s)")
    print(f"{'type':<12} {'gold':>5} {'recall':>7} {'predicted':>9} {'precision':>9}  target recall")
    for t, s in stats.items():
        recall = s["found"] / s["gold"] if s["gold"] else float("nan")
        precision = s["correct"] / s["predicted"] if s["predicted"] else float("nan")
        print(f"{t:<12} {s['gold']:>5} {recall:>7.3f} {s['predicted']:>9} {precision:>9.3f}  >= {TARGETS[t]}")


if __name__ == "__main__":
    main()

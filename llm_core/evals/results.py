"""What the eval stage produces: per-item outcomes and one results row per model x suite x metric.

A proportion gets a 95% Wilson score interval (sound at 0 and 1 and for small n, unlike the normal approximation).
Contaminated items are kept in the per-item output, flagged, and left out of every score.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

Z95 = 1.959964


def wilson_interval(hits: float, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    if n == 0:
        return None, None
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class ItemOutcome:
    """One eval item answered (or scored) by one model."""

    model: str
    suite: str
    item_id: str
    prompt: str
    output: str
    expected: str
    correct: bool
    reason: str = ""
    contaminated: bool = False

    def row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ResultRow:
    model: str
    suite: str
    metric: str
    value: float
    n: int
    ci_low: float | None = None
    ci_high: float | None = None
    baseline: float | None = None
    baseline_name: str | None = None
    contaminated: int = 0
    higher_is_better: bool | None = True  # None: no better direction (reply length)

    def row(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def metric_key(self) -> str:
        return f"{self.model}/{self.suite}/{self.metric}"


def rate_row(
    model: str, suite: str, metric: str, outcomes: list[ItemOutcome], *, baseline: float | None = None,
    baseline_name: str | None = None, higher_is_better: bool = True,
) -> ResultRow:
    """The share of clean items that are `correct`, with its interval; contaminated items counted, not scored."""
    clean = [o for o in outcomes if not o.contaminated]
    hits = sum(o.correct for o in clean)
    low, high = wilson_interval(hits, len(clean))
    return ResultRow(model, suite, metric, hits / len(clean) if clean else math.nan, len(clean), low, high,
                     baseline, baseline_name, len(outcomes) - len(clean), higher_is_better)


def complement(row: ResultRow, metric: str) -> ResultRow:
    """The share of items that did not do what `row` counts (over-refusal from answered, hallucination from "says
    it does not know"), lower is better."""
    flip = None if row.ci_high is None else 1 - row.ci_high, None if row.ci_low is None else 1 - row.ci_low
    return ResultRow(row.model, row.suite, metric, 1 - row.value, row.n, *flip, contaminated=row.contaminated,
                     higher_is_better=False)

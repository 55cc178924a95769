"""The filter base class: the mechanics every filter shares, so a filter is one predicate or one transformation.

`DocFilter.__call__` runs `filter(doc)`, times it, counts input / kept / dropped per reason, and turns the filter's
short reason into the full one (`quality:gopher:word_count`). A filter that raises does not stop the stage: the
document is dropped with reason `<filter>:error:<ExceptionType>`. Stats are plain counters that add up across shards.
"""

from __future__ import annotations

import abc
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from llm_core.config import StrictModel

FilterOutcome = bool | tuple[bool, str]


class FilterSettings(StrictModel):
    """Base of a filter's config: every filter can be switched off."""

    enabled: bool = True


@dataclass
class Document:
    """One document moving through the filters; `text` may be rewritten by transformations (C4 lines, PII)."""

    doc_id: str
    url: str
    text: str
    title: str | None = None
    source: str | None = None
    extracted_at: dt.datetime | None = None
    language: str | None = None
    language_score: float | None = None
    pii_redactions: dict[str, int] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Document:
        return cls(
            doc_id=row["doc_id"],
            url=row.get("url") or "",
            text=row["text"],
            title=row.get("title"),
            source=row.get("source"),
            extracted_at=row.get("extracted_at"),
        )

    def document_row(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "url": self.url,
            "text": self.text,
            "title": self.title,
            "source": self.source,
            "extracted_at": self.extracted_at,
        }

    def filtered_row(self) -> dict[str, Any]:
        return {
            **self.document_row(),
            "language": self.language,
            "language_score": self.language_score,
            "pii_redactions": dict(self.pii_redactions),
            "quality": dict(self.quality),
        }


@dataclass
class FilterStats:
    """Counters of one filter; `merge` adds another worker's or shard's stats."""

    input: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def merge(self, other: FilterStats) -> FilterStats:
        self.input += other.input
        self.kept += other.kept
        self.seconds += other.seconds
        for reason, n in other.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + n
        return self

    def to_counts(self, name: str) -> dict[str, int]:
        """Flat integer counters (`filter.<name>.input`, ..., `.us` for time) that sum across shards."""
        counts = {
            f"filter.{name}.input": self.input,
            f"filter.{name}.kept": self.kept,
            f"filter.{name}.us": int(self.seconds * 1e6),
        }
        counts.update({f"filter.{name}.dropped.{reason}": n for reason, n in self.dropped.items()})
        return counts

    @classmethod
    def from_counts(cls, name: str, counts: dict[str, int]) -> FilterStats:
        prefix = f"filter.{name}."
        dropped = {k[len(prefix) + 8 :]: v for k, v in counts.items() if k.startswith(prefix + "dropped.")}
        return cls(
            input=counts.get(prefix + "input", 0),
            kept=counts.get(prefix + "kept", 0),
            dropped=dropped,
            seconds=counts.get(prefix + "us", 0) / 1e6,
        )


class DocFilter(abc.ABC):
    """A filter: subclasses set `name` and `reason_prefix` and implement `filter`.

    `filter(doc)` returns True to keep, False or `(False, "short_reason")` to drop; a transformation edits `doc`
    and returns True.
    """

    name: ClassVar[str]
    reason_prefix: ClassVar[str]

    def __init__(self) -> None:
        self.stats = FilterStats()

    @abc.abstractmethod
    def filter(self, doc: Document) -> FilterOutcome:
        """Keep (True) or drop (False / (False, reason)) one document."""

    def __call__(self, doc: Document) -> str | None:
        """Apply the filter with bookkeeping; returns the full drop reason, or None if the document is kept."""
        t0 = time.perf_counter()
        try:
            outcome = self.filter(doc)
        except Exception as e:  # a bad document must not stop the stage: it is dropped with the error named
            outcome = (False, f"error:{type(e).__name__}")
        self.stats.seconds += time.perf_counter() - t0
        self.stats.input += 1
        keep, reason = outcome if isinstance(outcome, tuple) else (outcome, "dropped")
        if keep:
            self.stats.kept += 1
            return None
        self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + 1
        return f"{self.reason_prefix}:{reason}"

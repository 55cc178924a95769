"""The filter base class: the mechanics every filter shares, so a filter is one predicate or one transformation.

`DocFilter.__call__` runs `filter(doc)`, times it, counts input / kept / dropped per reason, and turns the filter's
short reason into the full one (`quality:gopher:word_count`). A filter that raises does not stop the stage: the
document is dropped with reason `<filter>:error:<ExceptionType>`. Stats are objects that add up across shards
(`FilterStats` per filter, `FilterShardStats` per shard of the stage) and travel as JSON.

To add a filter:
1. Write `llm_core/filters/<name>.py` with its settings, a `FilterSettings` subclass (every field defaulted), and its
   filter, a `DocFilter` subclass that sets `name` (its config section: `filter: {<name>: {...}}`),
   `reason_prefix` (`quality:<name>`), `config_model` (the settings class), implements `filter(doc)`, and
   overrides `data_paths` if it reads local files (their fingerprints join the artifact key).
2. Add the class to `FILTERS` in `llm_core/filters/stage.py`, at its place in the run order.
Its config section, its counters in the manifest (`filter.<name>.input`, `.kept`, `.dropped.<reason>`), its time
(`filter.<name>.seconds`) and its row in the stage's table follow from that entry; the new section changes the filter
stage's artifact key, so the stage reruns. Test it like `tests/test_filters.py` does the others.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from llm_core.config import StrictModel
from llm_core.stats import Counts

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
    """Counters of one filter (documents in, kept, dropped per reason) and its time; `a + b` adds two shards'."""

    input: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def __add__(self, other: FilterStats) -> FilterStats:
        return FilterStats(self.input + other.input, self.kept + other.kept,
                           dict(Counts(self.dropped) + other.dropped), self.seconds + other.seconds)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FilterStats:
        return cls(**data)

    def to_manifest(self, name: str) -> dict[str, int]:
        """The manifest's counters of filter `name` (its time is a measurement, reported apart)."""
        return {f"filter.{name}.input": self.input, f"filter.{name}.kept": self.kept,
                **{f"filter.{name}.dropped.{reason}": n for reason, n in self.dropped.items()}}


@dataclass
class FilterShardStats:
    """Stats of one shard of the filter stage (or their sum): documents read, documents that passed every filter
    (before the dedup across shards), and each filter that ran, in run order."""

    input: int = 0
    kept_before_dedup: int = 0
    filters: dict[str, FilterStats] = field(default_factory=dict)

    def __add__(self, other: FilterShardStats) -> FilterShardStats:
        filters = dict(self.filters)
        for name, st in other.filters.items():
            filters[name] = filters.get(name, FilterStats()) + st
        return FilterShardStats(self.input + other.input, self.kept_before_dedup + other.kept_before_dedup, filters)

    def to_json(self) -> dict[str, Any]:
        return {"input": self.input, "kept_before_dedup": self.kept_before_dedup,
                "filters": {name: st.to_json() for name, st in self.filters.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FilterShardStats:
        return cls(data["input"], data["kept_before_dedup"],
                   {name: FilterStats.from_json(st) for name, st in data["filters"].items()})

    def to_manifest(self) -> dict[str, int]:
        return {key: n for name, st in self.filters.items() for key, n in st.to_manifest(name).items()}

    def records(self) -> int:
        return self.input


class DocFilter(abc.ABC):
    """A filter: subclasses set `name`, `reason_prefix` and `config_model` and implement `filter` (see the module
    docstring); they are built with their settings, `cls(settings)`.

    `filter(doc)` returns True to keep, False or `(False, "short_reason")` to drop; a transformation edits `doc`
    and returns True.
    """

    name: ClassVar[str]
    reason_prefix: ClassVar[str]
    config_model: ClassVar[type[FilterSettings]]

    def __init__(self) -> None:
        self.stats = FilterStats()

    @classmethod
    def data_paths(cls, settings: Any) -> list[str]:
        """Local files or folders the filter reads with these settings (blocklists, a model)."""
        return []

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

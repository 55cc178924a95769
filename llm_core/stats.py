"""Shard statistics as objects that merge, in the shape of datatrove's `Stats`.

Each shard of a `ShardedStage` returns one stats object; the stage adds them up (`a + b`, `sum(stats, empty)`) and
takes the manifest's counters from the total's `to_manifest()`, once, at the end. The objects travel as JSON
(`to_json` / `from_json`) in the shards' completion markers, so a retried stage reads finished shards' stats back.
`Counts` (named integer counters) serves most stages, `ReasonCounts` those that set records aside with a reason; a
stage with richer stats (the filter stage's per-filter counters) declares its own class as `ShardedStage.stats_type`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

S = TypeVar("S", bound="ShardStats")


class ShardStats(Protocol):
    """What a shard's stats object offers; the empty object (`type()`) is the sum of no shards."""

    def __add__(self: S, other: S) -> S: ...

    def to_json(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls: type[S], data: dict[str, Any]) -> S: ...

    def to_manifest(self) -> dict[str, int]:
        """The counters this total puts in the stage's manifest."""
        ...

    def records(self) -> int:
        """How many records the shard read (progress: records per second)."""
        ...


class Counts(dict[str, int]):
    """Named integer counters (records in, kept, rejected per reason); adding keeps every key, zeros included."""

    def __add__(self, other: dict[str, int]) -> Counts:  # type: ignore[override]
        total = Counts(self)
        for key, n in other.items():
            total[key] = total.get(key, 0) + n
        return total

    def to_json(self) -> dict[str, int]:
        return dict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counts:
        return cls(data)

    def to_manifest(self) -> dict[str, int]:
        return dict(self)

    def records(self) -> int:
        """The first counter: by convention what the shard read (records seen, documents in)."""
        return next(iter(self.values()), 0)


@dataclass
class ReasonCounts:
    """Counters of records (`counts`: read, kept, set aside, ...) and of the records set aside, per reason
    (`reasons`); in the manifest a reason's counter is named `<reason_key>:<reason>` (`rejected:extract:timeout`)."""

    counts: Counts = field(default_factory=Counts)
    reasons: Counts = field(default_factory=Counts)
    reason_key: ClassVar[str] = "rejected"

    def __add__(self, other: ReasonCounts) -> ReasonCounts:
        return type(self)(self.counts + other.counts, self.reasons + other.reasons)

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts.to_json(), "reasons": self.reasons.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReasonCounts:
        return cls(Counts(data["counts"]), Counts(data["reasons"]))

    def to_manifest(self) -> dict[str, int]:
        return {**self.counts, **{f"{self.reason_key}:{reason}": n for reason, n in self.reasons.items()}}

    def records(self) -> int:
        return self.counts.records()

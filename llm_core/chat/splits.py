"""Write a weighted mixture of record sources into one artifact's train / val / rejected Parquet files, and pick
held-back evaluation subsets from such splits.

`MixtureStage` is the skeleton of `sft_data` (conversations) and `reward_data` (preference pairs, and whole
rankings in folders of their own): a subclass says how to read its configured sources (`mixtures`) and how its
summary table is headed; the base class routes every record, counts, and builds the stage result. Each source yields
(row, reject reason or None, identity used for the split hash); counts come out per source and in total, so
`input = kept + rejected` can be read per source.
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import pyarrow as pa

from llm_core.chat.mixture import copies, is_validation
from llm_core.stage import Stage, StageContext, StageResult
from llm_core.store import ParquetShardWriter

SOURCE_COLUMNS = ("input", "kept", "rejected", "train_unique", "train", "val")

Records = Iterable[tuple[dict, str | None, object]]
T = TypeVar("T")


@dataclass
class Source:
    """One source of a mixture: its label in counts and tables, its weight (copies in train), and its records."""

    label: str
    weight: float
    records: Records


@dataclass
class Mixture:
    """Sources whose records share a schema and go to one set of folders: train, val, rejected (with `reason`)."""

    schema: pa.Schema
    sources: list[Source]
    folders: tuple[str, str, str] = ("train", "val", "rejected")


def evenly_spaced(items: Sequence[T], n: int) -> list[T]:
    """At most n items spread evenly over the sequence: a held-back subset that keeps each source's share (splits are
    written source after source, so their first n items would all come from the first sources)."""
    if len(items) <= n:
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def route_record(
    row: dict, reason: str | None, identity: object, *, weight: float, val_fraction: float, seed: int,
    train: ParquetShardWriter, val: ParquetShardWriter, rejected: ParquetShardWriter, counts: Counter,
) -> None:
    """Send one record to `rejected` (with its reason), `val` (held back by a hash of `identity`) or `train`
    (`copies` times for the source weight), counting input / kept / rejected / val / train_unique / train."""
    counts["input"] += 1
    if reason:
        counts["rejected"] += 1
        counts[f"rejected:{reason}"] += 1
        rejected.write({**row, "reason": reason})
        return
    counts["kept"] += 1
    if is_validation(identity, val_fraction, seed):
        counts["val"] += 1
        val.write(row)
        return
    n = copies(identity, weight, seed)
    counts["train_unique"] += 1
    counts["train"] += n
    for _ in range(n):
        train.write(row)


def rejected_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([*schema, ("reason", pa.string())])


def write_mixtures(
    ctx: StageContext, mixtures: Sequence[Mixture], val_fraction: float
) -> tuple[dict[str, int], list[dict]]:
    """Route every record of every source; returns (counts, one table row per source)."""
    writer, seed = ctx.writer(), ctx.run.seed
    counts: Counter[str] = Counter()
    table: list[dict] = []
    total = sum(len(m.sources) for m in mixtures)
    for mixture in mixtures:
        train_path, val_path, rejected_path = (f"{folder}/part-00000.parquet" for folder in mixture.folders)
        with (
            ParquetShardWriter(writer, train_path, mixture.schema) as train,
            ParquetShardWriter(writer, val_path, mixture.schema) as val,
            ParquetShardWriter(writer, rejected_path, rejected_schema(mixture.schema)) as rejected,
        ):
            for source in mixture.sources:
                c: Counter[str] = Counter()
                for row, reason, identity in source.records:
                    route_record(row, reason, identity, weight=source.weight, val_fraction=val_fraction, seed=seed,
                                 train=train, val=val, rejected=rejected, counts=c)
                for k, v in c.items():
                    counts[k] += v
                    counts[f"{source.label}:{k}"] += v
                table.append({"source": source.label, "weight": source.weight, **{k: c[k] for k in SOURCE_COLUMNS}})
                ctx.progress(len(table), total)
    return dict(counts), table


class MixtureStage(Stage):
    """A stage that writes its configured sources (`sources`, each with an optional local `path`) into train / val /
    rejected splits, holding back `val_fraction` of each source."""

    uses_seed = True
    title: ClassVar[str]  # heading of the summary
    columns: ClassVar[dict[str, str]]  # summary table: column of the source rows -> its heading

    @abc.abstractmethod
    def mixtures(self, ctx: StageContext) -> list[Mixture]:
        """The configured sources, read lazily, grouped by the schema and folders they are written to."""

    def data_paths(self, ctx_config: Any) -> list[str]:
        return [src.path for src in ctx_config.sources if src.path]

    def run(self, ctx: StageContext) -> StageResult:
        counts, rows = write_mixtures(ctx, self.mixtures(ctx), ctx.config.val_fraction)
        return StageResult(counts=counts, tables={"sources": rows}, markdown=self.summary(rows))

    def summary(self, rows: list[dict]) -> str:
        return (f"### {self.title}\n\n| " + " | ".join(self.columns.values()) + " |\n|"
                + "---|" * len(self.columns) + "\n"
                + "".join("| " + " | ".join(str(r[k]) for k in self.columns) + " |\n" for r in rows))

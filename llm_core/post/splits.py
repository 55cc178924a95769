"""Write a weighted mixture of record sources into one artifact's train / val / rejected Parquet files, and pick
held-back evaluation subsets from such splits.

Shared by `sft_data` (conversations) and `reward_data` (preference pairs): each source yields
(row, reject reason or None, identity used for the split hash); counts come out per source and in total, so
`input = kept + rejected` can be read per source.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TypeVar

import pyarrow as pa

from llm_core.chat.mixture import copies, is_validation
from llm_core.stage import StageContext
from llm_core.store import ParquetShardWriter

TRAIN, VAL, REJECTED = "train/part-00000.parquet", "val/part-00000.parquet", "rejected/part-00000.parquet"
SOURCE_COLUMNS = ("input", "kept", "rejected", "train_unique", "train", "val")

Records = Iterable[tuple[dict, str | None, object]]
T = TypeVar("T")


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


def write_splits(
    ctx: StageContext, schema: pa.Schema, sources: list[tuple[str, float, Records]], val_fraction: float
) -> tuple[dict[str, int], list[dict]]:
    """Route every record of every (label, weight, records) source; returns (counts, one table row per source)."""
    writer, seed = ctx.writer(), ctx.run.seed
    counts: Counter[str] = Counter()
    table = []
    with (
        ParquetShardWriter(writer, TRAIN, schema) as train,
        ParquetShardWriter(writer, VAL, schema) as val,
        ParquetShardWriter(writer, REJECTED, rejected_schema(schema)) as rejected,
    ):
        for i, (label, weight, records) in enumerate(sources):
            c: Counter[str] = Counter()
            for row, reason, identity in records:
                route_record(row, reason, identity, weight=weight, val_fraction=val_fraction, seed=seed,
                             train=train, val=val, rejected=rejected, counts=c)
            for k, v in c.items():
                counts[k] += v
                counts[f"{label}:{k}"] += v
            table.append({"source": label, "weight": weight, **{k: c[k] for k in SOURCE_COLUMNS}})
            ctx.progress(i + 1, len(sources))
    return dict(counts), table

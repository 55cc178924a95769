"""Write a weighted mixture of record sources into one artifact's train / val / rejected Parquet files.

Shared by `sft_data` (conversations) and `reward_data` (preference pairs): each source yields
(row, reject reason or None, identity used for the split hash); counts come out per source and in total, so
`input = kept + rejected` can be read per source.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pyarrow as pa

from llm_core.chat.mixture import route_record
from llm_core.stage import StageContext
from llm_core.store import ParquetShardWriter

TRAIN, VAL, REJECTED = "train/part-00000.parquet", "val/part-00000.parquet", "rejected/part-00000.parquet"
SOURCE_COLUMNS = ("input", "kept", "rejected", "train_unique", "train", "val")

Records = Iterable[tuple[dict, str | None, object]]


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

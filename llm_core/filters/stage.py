"""The `filter` stage: documents from `extract` -> kept documents, rejected documents with reasons, stats.

Per shard (same shard ids as the input, in parallel): the enabled filters run in the order of `FILTERS` (URL,
language, Gopher repetition, Gopher quality, C4, FineWeb, PII redaction); each document either passes all of them or
is rejected with the first failing reason. Kept documents, rejected ones and the dedup keys of the kept ones go to
`_pending/`. Then `finalize` deduplicates across all shards and writes the final files, each once and atomically:

    documents/part-NNNNN.parquet   FILTERED_DOCUMENTS: kept documents + language, pii_redactions, quality signals
    rejected/part-NNNNN.parquet    REJECTED: documents + reason (`url:blocklist:adult`, `lang:fr`, `lang:zh<0.65`,
                                   `quality:gopher:word_count`, `dedup:near_duplicate_of:<doc_id>`, ...) + detail
    dedup/duplicates.parquet       every duplicate with the doc_id of its kept copy and the kind (exact / near)
    dedup/summary.json             counts of the dedup step (its completion marker; its time is in the run record)
    dedup/cross_snapshot.parquet   on a refresh: the documents an earlier snapshot of the corpus already holds
                                   (`dedup:cross_snapshot_exact_duplicate_of:<doc_id>`, detail: its snapshot and URL)
    dedup/index/                   this snapshot's segment of the corpus's dedup index (`dedup_index.py`)

Across snapshots (`dedup.across_snapshots`, on a refresh: input `previous`, the corpus so far) the default is
`exact`: FineWeb deduplicated each Common Crawl dump on its own because global MinHash dedup across dumps made
models worse (what survives it in old dumps is the low-quality residue, while the content that recurs across dumps
is what people keep linking to). A verbatim re-crawl of a page already in the corpus brings no new text, so
dropping it costs nothing and keeps a page seen on Monday from being trained on again on Tuesday; `near` follows
the global policy FineWeb found harmful, `none` checks each snapshot on its own.

A retry skips finished shards (framework markers), reuses the dedup result if it was written, and rewrites only
the final files that are missing, so a run killed at any point ends with the same output. `kept + rejected =
input` is checked on the files written. The artifact key includes fingerprints of the blocklists and the
language-ID model, so changing those files reruns the stage.
"""

from __future__ import annotations

import functools
import json
import posixpath
import time
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, create_model, model_validator

from llm_core.config import StageConfig
from llm_core.filters.base import DocFilter, Document, FilterSettings, FilterShardStats, FilterStats
from llm_core.filters.c4 import C4Config, C4QualityFilter
from llm_core.filters.dedup import Duplicate, ShardKeys, find_duplicates, shard_keys
from llm_core.filters.dedup_index import DOCS_FILE, Segment, find_in_corpus, write_segment
from llm_core.filters.fineweb import FineWebConfig, FineWebQualityFilter
from llm_core.filters.gopher import (
    GopherQualityConfig,
    GopherQualityFilter,
    GopherRepetitionConfig,
    GopherRepetitionFilter,
)
from llm_core.filters.language import LanguageFilter, LanguageFilterConfig
from llm_core.filters.minhash import MinHasher, exact_key
from llm_core.filters.pii import PIIConfig, PIIRedactor
from llm_core.filters.summary import filter_row, funnel_steps, summary_markdown
from llm_core.filters.url import URLFilter, URLFilterConfig
from llm_core.manifest import Manifest
from llm_core.schemas import FILTERED_DOCUMENTS, REJECTED
from llm_core.stage import ShardedStage, StageContext, StageResult, Throughput
from llm_core.store import ArtifactWriter, ParquetShardWriter

PENDING = "_pending"
DUPLICATES = "dedup/duplicates.parquet"
DEDUP_SUMMARY = "dedup/summary.json"
DEDUP_TIME = "_timings/dedup.json"
CROSS_DUPLICATES = "dedup/cross_snapshot.parquet"
CROSS_TIME = "_timings/cross_snapshot.json"
CROSS_SCHEMA = pa.schema(
    [("shard", pa.string()), ("row", pa.int64()), ("doc_id", pa.string()), ("duplicate_of", pa.string()),
     ("kind", pa.string()), ("snapshot", pa.string()), ("url", pa.string())]
)
DUPLICATES_SCHEMA = pa.schema(
    [("shard", pa.string()), ("row", pa.int64()), ("doc_id", pa.string()), ("duplicate_of", pa.string()),
     ("kind", pa.string())]
)


class DedupConfig(FilterSettings):
    exact: bool = Field(True, description="drop documents whose normalised text equals an earlier one")
    near: bool = Field(True, description="drop near-duplicates found by MinHash LSH")
    ngram: int = Field(5, ge=1, description="words per shingle (CJK: characters)")
    num_perm: int = Field(112, ge=1)
    bands: int = Field(14, ge=1)
    seed: int = Field(1, description="seed of the MinHash permutations")
    across_snapshots: Literal["none", "exact", "near"] = Field(
        "exact", description="on a refresh, also drop documents an earlier snapshot of the corpus holds: none, exact "
                             "copies only (default: FineWeb found near-dedup across dumps hurt), or near ones too")

    @model_validator(mode="after")
    def _bands_divide_perms(self) -> DedupConfig:
        if self.num_perm % self.bands:
            raise ValueError(f"num_perm ({self.num_perm}) must be a multiple of bands ({self.bands})")
        return self


FILTERS: tuple[type[DocFilter], ...] = (
    URLFilter,
    LanguageFilter,
    GopherRepetitionFilter,
    GopherQualityFilter,
    C4QualityFilter,
    FineWebQualityFilter,
    PIIRedactor,
)
"""The per-document filters, in the order they run (to add one, see `filters/base.py`)."""

FilterConfig = create_model(
    "FilterConfig",
    __base__=StageConfig,
    __doc__="One section per filter of `FILTERS`, in run order, then `dedup`; each can be switched off with "
            "`enabled: false`.",
    __module__=__name__,
    **{f.name: (f.config_model, Field(default_factory=f.config_model)) for f in FILTERS},
    dedup=(DedupConfig, Field(default_factory=DedupConfig)),
)


def filter_sections(config: FilterConfig) -> list[tuple[type[DocFilter], FilterSettings]]:
    """Each filter of `FILTERS`, in run order, with its section of `config`."""
    sections = dict(config)
    return [(f, sections[f.name]) for f in FILTERS]


def build_filters(config: FilterConfig) -> list[DocFilter]:
    """The enabled filters, in run order, with fresh stats."""
    return [f(settings) for f, settings in filter_sections(config) if settings.enabled]


@functools.lru_cache(maxsize=4)
def _minhasher(ngram: int, num_perm: int, bands: int, seed: int) -> MinHasher:
    return MinHasher(num_perm=num_perm, bands=bands, ngram=ngram, seed=seed)


def minhasher(config: DedupConfig) -> MinHasher:
    return _minhasher(config.ngram, config.num_perm, config.bands, config.seed)


def reason_group(reason: str) -> str:
    """The reason without the document it points at: `dedup:near_duplicate_of:abc` -> `dedup:near_duplicate`."""
    return reason.split("_of:", 1)[0] if reason.startswith("dedup:") else reason


def rejected_row(row: dict[str, Any], reason: str, detail: str = "") -> dict[str, Any]:
    return {**{f.name: row.get(f.name) for f in REJECTED if f.name not in ("reason", "detail")},
            "reason": reason, "detail": detail}


def _doc_detail(doc: Document) -> str:
    info = {"language": doc.language, "language_score": doc.language_score, **doc.quality}
    return json.dumps({k: v for k, v in info.items() if v is not None}, ensure_ascii=False)


def _read_document(row: dict[str, Any]) -> Document | None:
    if not isinstance(row.get("doc_id"), str) or not isinstance(row.get("text"), str):
        return None
    return Document.from_row(row)


class FilterStage(ShardedStage):
    name = "filter"
    config_model = FilterConfig
    version = "4"  # 3: dedup/summary.json without its time (now in _timings/); 4: the dedup index segment
    throughput = Throughput("input", 28.0)

    def funnel(self, manifest: Manifest) -> list[tuple[str, int]]:
        return funnel_steps(manifest.counts)
    stats_type = FilterShardStats

    def input_stages(self, config: FilterConfig) -> dict[str, str]:
        return {"documents": "extract"}

    def data_paths(self, ctx_config: FilterConfig) -> list[str]:
        """What the enabled filters read (the blocklists, the language model)."""
        return [path for f, settings in filter_sections(ctx_config) if settings.enabled
                for path in f.data_paths(settings)]

    def shard_ids(self, ctx: StageContext) -> list[str]:
        names = ctx.reader("documents").files("documents/part-*.parquet")
        return [posixpath.basename(n).removesuffix(".parquet") for n in names]

    # -- per shard
    def run_shard(self, ctx: StageContext, shard: str) -> FilterShardStats:
        config: FilterConfig = ctx.config
        filters = build_filters(config)
        hasher = minhasher(config.dedup) if config.dedup.enabled else None
        writer = ctx.writer()
        ids, exact, bands = [], [], []
        stats = FilterShardStats(filters={f.name: f.stats for f in filters})
        with (
            ParquetShardWriter(writer, f"{PENDING}/documents/{shard}.parquet", FILTERED_DOCUMENTS) as kept,
            ParquetShardWriter(writer, f"{PENDING}/rejected/{shard}.parquet", REJECTED) as rejected,
        ):
            for row in ctx.reader("documents").iter_rows(f"documents/{shard}.parquet"):
                stats.input += 1
                doc = _read_document(row)
                if doc is None:
                    rejected.write(rejected_row(row, "input:invalid", "doc_id and text must be strings"))
                    continue
                reason = next((r for f in filters if (r := f(doc)) is not None), None)
                if reason is not None:
                    rejected.write({**doc.document_row(), "reason": reason, "detail": _doc_detail(doc)})
                    continue
                kept.write(doc.filtered_row())
                stats.kept_before_dedup += 1
                if hasher is not None:
                    ids.append(doc.doc_id)
                    exact.append(exact_key(doc.text))
                    bands.append(hasher.band_keys(doc.text))
            if hasher is not None:
                keys = shard_keys(ids, exact, bands, config.dedup.bands)
                writer.write_bytes(f"{PENDING}/keys/{shard}.npz", keys.to_bytes())
        return stats

    # -- global step
    def finalize(self, ctx: StageContext, stats: dict[str, FilterShardStats]) -> StageResult:
        config: FilterConfig = ctx.config
        writer = ctx.writer()
        shards = list(stats)
        total = self.total(stats)
        dedup, duplicates = (self._dedup(writer, shards, config.dedup, total.kept_before_dedup)
                             if config.dedup.enabled else (None, []))
        by_shard: dict[str, dict[int, dict]] = {}
        for d in duplicates:
            by_shard.setdefault(d["shard"], {})[d["row"]] = d
        if config.dedup.enabled and "previous" in ctx.inputs:
            for d in self._cross_snapshot(ctx, shards, by_shard):
                by_shard.setdefault(d["shard"], {})[d["row"]] = d
        for shard in shards:
            self._write_final_shard(writer, shard, by_shard.get(shard, {}))
        if config.dedup.enabled and not writer.exists(DOCS_FILE):
            self._write_index_segment(writer, shards, by_shard)
        writer.remove(PENDING)
        return self._result(ctx, total, dedup)

    def _pending_keys(self, writer: ArtifactWriter, shard: str) -> ShardKeys:
        with writer.open(f"{PENDING}/keys/{shard}.npz") as f:
            return ShardKeys.from_bytes(f.read())

    def _cross_snapshot(self, ctx: StageContext, shards: list[str],
                        dropped: dict[str, dict[int, dict]]) -> list[dict[str, Any]]:
        """Documents kept so far that an earlier snapshot of the corpus holds (`dedup.across_snapshots`), once (a
        retry reads the result back)."""
        writer = ctx.writer()
        if writer.exists(CROSS_DUPLICATES):
            return list(writer.iter_rows(CROSS_DUPLICATES))
        store = ctx.store()
        segments = []
        for entry in ctx.reader("previous").read_json("corpus.json")["snapshots"]:
            reader = store.reader(store.find(entry["documents"]))
            if Segment.exists(reader):
                segments.append(Segment(reader, entry["snapshot"]))
        where, exact, bands = [], [], []
        for shard in shards:
            keys = self._pending_keys(writer, shard)
            rows = [i for i in range(len(keys.exact)) if i not in dropped.get(shard, {})]
            where += [(shard, i, str(keys.doc_ids[i])) for i in rows]
            exact.append(keys.exact[rows])
            bands.append(keys.bands[rows])
        near = ctx.config.dedup.across_snapshots == "near"
        t0 = time.perf_counter()
        matches = find_in_corpus(segments, np.concatenate(exact), np.concatenate(bands), near) if where else []
        writer.write_json(CROSS_TIME, {"seconds": round(time.perf_counter() - t0, 4), "snapshots": len(segments)})
        found = [{"shard": where[m.row][0], "row": where[m.row][1], "doc_id": where[m.row][2],
                  "duplicate_of": m.doc_id, "kind": f"cross_snapshot_{m.kind}", "snapshot": m.snapshot,
                  "url": m.url} for m in matches]
        writer.write_table(CROSS_DUPLICATES, pa.Table.from_pylist(found, schema=CROSS_SCHEMA))
        return found

    def _write_index_segment(self, writer: ArtifactWriter, shards: list[str],
                             dropped: dict[str, dict[int, dict]]) -> None:
        """The dedup index segment of the documents this snapshot keeps (llm_core/filters/dedup_index.py)."""
        doc_ids, urls, exact, bands = [], [], [], []
        for shard in shards:
            keys = self._pending_keys(writer, shard)
            rows = [i for i in range(len(keys.exact)) if i not in dropped.get(shard, {})]
            exact.append(keys.exact[rows])
            bands.append(keys.bands[rows])
            for row in writer.iter_rows(f"documents/{shard}.parquet", columns=["doc_id", "url"]):
                doc_ids.append(row["doc_id"])
                urls.append(row["url"] or "")
        n_bands = bands[0].shape[1] if bands else 0
        write_segment(writer, doc_ids, urls, np.concatenate(exact) if exact else np.empty(0, np.uint64),
                      np.concatenate(bands) if bands else np.empty((0, n_bands), np.uint64))

    def _dedup(self, writer: ArtifactWriter, shards: list[str], config: DedupConfig,
               documents: int) -> tuple[FilterStats, list[dict[str, Any]]]:
        """Find duplicates among the `documents` that passed the filters, once (a retry reads the result back: the
        summary is written last); returns the dedup step's stats and the duplicates."""
        if writer.exists(DEDUP_SUMMARY):
            seconds = writer.read_json(DEDUP_TIME)["seconds"] if writer.exists(DEDUP_TIME) else 0.0
            return _dedup_stats(documents, writer.read_json(DEDUP_SUMMARY), seconds), list(writer.iter_rows(DUPLICATES))
        t0 = time.perf_counter()

        def load(i: int) -> ShardKeys:
            with writer.open(f"{PENDING}/keys/{shards[i]}.npz") as f:
                return ShardKeys.from_bytes(f.read())

        found: list[Duplicate] = find_duplicates(len(shards), load, near=config.near, exact=config.exact)
        rows = [
            {"shard": shards[d.shard], "row": d.row, "doc_id": d.doc_id, "duplicate_of": d.duplicate_of,
             "kind": d.kind}
            for d in found
        ]
        writer.write_table(DUPLICATES, pa.Table.from_pylist(rows, schema=DUPLICATES_SCHEMA))
        summary = {"exact": sum(d.kind == "exact" for d in found), "near": sum(d.kind == "near" for d in found)}
        seconds = round(time.perf_counter() - t0, 3)
        writer.write_json(DEDUP_TIME, {"seconds": seconds})  # a measurement: kept out of the content files
        writer.write_json(DEDUP_SUMMARY, summary)
        return _dedup_stats(documents, summary, seconds), rows

    def _write_final_shard(self, writer: ArtifactWriter, shard: str, duplicates: dict[int, dict]) -> None:
        """Split a pending shard into final kept and rejected files; `documents/` is written last (the marker)."""
        if writer.exists(f"documents/{shard}.parquet"):
            return
        with ParquetShardWriter(writer, f"rejected/{shard}.parquet", REJECTED) as rejected:
            for row in writer.iter_rows(f"{PENDING}/rejected/{shard}.parquet"):
                rejected.write(row)
            for i, row in enumerate(writer.iter_rows(f"{PENDING}/documents/{shard}.parquet")):
                if i in duplicates:
                    d = duplicates[i]
                    reason = f"dedup:{d['kind']}_duplicate_of:{d['duplicate_of']}"
                    detail = {k: d[k] for k in ("kind", "snapshot", "url") if d.get(k) is not None}
                    rejected.write(rejected_row(row, reason, json.dumps(detail, ensure_ascii=False)))
        with ParquetShardWriter(writer, f"documents/{shard}.parquet", FILTERED_DOCUMENTS) as kept:
            for i, row in enumerate(writer.iter_rows(f"{PENDING}/documents/{shard}.parquet")):
                if i not in duplicates:
                    kept.write(_as_filtered(row))

    def _result(self, ctx: StageContext, total: FilterShardStats, dedup: FilterStats | None) -> StageResult:
        writer = ctx.writer()
        kept = writer.count_rows("documents/*.parquet")
        reasons: dict[str, int] = {}
        for batch in writer.iter_batches("rejected/*.parquet", columns=["reason"], batch_size=4096):
            for reason in batch.column(0).to_pylist():
                group = reason_group(reason)
                reasons[group] = reasons.get(group, 0) + 1
        rejected = sum(reasons.values())
        if kept + rejected != total.input:
            raise RuntimeError(f"filter stage lost documents: kept {kept} + rejected {rejected} != input {total.input}")

        steps = {f.name: total.filters.get(f.name, FilterStats())
                 for f, settings in filter_sections(ctx.config) if settings.enabled}
        if dedup is not None:
            steps["dedup"] = dedup
        filter_rows = [filter_row(name, st) for name, st in steps.items()]
        counts = {"input": total.input, "kept": kept, "rejected": rejected}
        counts.update({f"rejected:{r}": n for r, n in sorted(reasons.items())})
        counts.update(total.to_manifest())
        # how long each filter took (summed over shards) is a measurement, not a count
        timings = {f"filter.{name}.seconds": round(st.seconds, 6) for name, st in total.filters.items()}
        reason_rows = [{"reason": r, "documents": n, "share": round(n / max(1, total.input), 4)}
                       for r, n in sorted(reasons.items(), key=lambda x: -x[1])]
        return StageResult(
            counts=counts,
            metrics={"kept_fraction": round(kept / max(1, total.input), 4),
                     "dedup_seconds": dedup.seconds if dedup is not None else 0.0,
                     "cross_snapshot_dedup_seconds": writer.read_json(CROSS_TIME)["seconds"]
                     if writer.exists(CROSS_TIME) else 0.0, **timings},
            tables={"filters": filter_rows, "rejections": reason_rows},
            markdown=summary_markdown(counts, filter_rows, reason_rows),
        )


def _dedup_stats(documents: int, summary: dict[str, int], seconds: float) -> FilterStats:
    """The dedup step's stats, from its summary (duplicates found per kind: exact, near)."""
    return FilterStats(input=documents, kept=documents - sum(summary.values()),
                       dropped={kind: n for kind, n in summary.items() if n}, seconds=seconds)


def _as_filtered(row: dict[str, Any]) -> dict[str, Any]:
    """Parquet maps read back as lists of pairs; turn them into dicts for the writer."""
    for key in ("pii_redactions", "quality"):
        if isinstance(row.get(key), list):
            row[key] = dict(row[key])
    return row

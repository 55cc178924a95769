"""The `filter` stage: documents from `extract` -> kept documents, rejected documents with reasons, stats.

Per shard (same shard ids as the input, in parallel): the enabled filters run in a fixed order (URL, language,
Gopher repetition, Gopher quality, C4, FineWeb, PII redaction); each document either passes all of them or is
rejected with the first failing reason. Kept documents, rejected ones and the dedup keys of the kept ones go to
`_pending/`. Then `finalize` deduplicates across all shards and writes the final files, each once and atomically:

    documents/part-NNNNN.parquet   FILTERED_DOCUMENTS: kept documents + language, pii_redactions, quality signals
    rejected/part-NNNNN.parquet    REJECTED: documents + reason (`url:blocklist:adult`, `lang:fr`, `lang:zh<0.65`,
                                   `quality:gopher:word_count`, `dedup:near_duplicate_of:<doc_id>`, ...) + detail
    dedup/duplicates.parquet       every duplicate with the doc_id of its kept copy and the kind (exact / near)
    dedup/summary.json             counts of the dedup step (its completion marker; its time is in the run record)

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
from typing import Any

import pyarrow as pa
from pydantic import Field, model_validator

from llm_core.config import StageConfig
from llm_core.filters.base import DocFilter, Document, FilterSettings, FilterStats
from llm_core.filters.c4 import C4Config, C4QualityFilter
from llm_core.filters.dedup import Duplicate, ShardKeys, find_duplicates, shard_keys
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
from llm_core.filters.url import URLFilter, URLFilterConfig
from llm_core.schemas import FILTERED_DOCUMENTS, REJECTED
from llm_core.stage import ShardedStage, StageContext, StageResult, sum_counts
from llm_core.store import ArtifactWriter, ParquetShardWriter

PENDING = "_pending"
DUPLICATES = "dedup/duplicates.parquet"
DEDUP_SUMMARY = "dedup/summary.json"
DEDUP_TIME = "_timings/dedup.json"
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

    @model_validator(mode="after")
    def _bands_divide_perms(self) -> DedupConfig:
        if self.num_perm % self.bands:
            raise ValueError(f"num_perm ({self.num_perm}) must be a multiple of bands ({self.bands})")
        return self


class FilterConfig(StageConfig):
    """The filters in the order they run; each can be switched off with `enabled: false`."""

    url: URLFilterConfig = Field(default_factory=URLFilterConfig)
    language: LanguageFilterConfig = Field(default_factory=LanguageFilterConfig)
    gopher_repetition: GopherRepetitionConfig = Field(default_factory=GopherRepetitionConfig)
    gopher_quality: GopherQualityConfig = Field(default_factory=GopherQualityConfig)
    c4: C4Config = Field(default_factory=C4Config)
    fineweb: FineWebConfig = Field(default_factory=FineWebConfig)
    pii: PIIConfig = Field(default_factory=PIIConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)


FILTER_CLASSES: dict[str, type[DocFilter]] = {
    "url": URLFilter,
    "language": LanguageFilter,
    "gopher_repetition": GopherRepetitionFilter,
    "gopher_quality": GopherQualityFilter,
    "c4": C4QualityFilter,
    "fineweb": FineWebQualityFilter,
    "pii": PIIRedactor,
}


def build_filters(config: FilterConfig) -> list[DocFilter]:
    """The enabled filters, in run order, with fresh stats."""
    return [cls(getattr(config, name)) for name, cls in FILTER_CLASSES.items() if getattr(config, name).enabled]


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
    version = "3"  # 3: dedup/summary.json without its time (now in _timings/)

    def input_stages(self, config: FilterConfig) -> dict[str, str]:
        return {"documents": "extract"}

    def data_paths(self, ctx_config: FilterConfig) -> list[str]:
        """The blocklists and the language model, when their filters are on."""
        return [path for on, path in ((ctx_config.url.enabled, ctx_config.url.blocklist_dir),
                                      (ctx_config.language.enabled, ctx_config.language.model_path)) if on]

    def shard_ids(self, ctx: StageContext) -> list[str]:
        names = ctx.reader("documents").files("documents/part-*.parquet")
        return [posixpath.basename(n).removesuffix(".parquet") for n in names]

    # -- per shard
    def run_shard(self, ctx: StageContext, shard: str) -> dict[str, int]:
        config: FilterConfig = ctx.config
        filters = build_filters(config)
        hasher = minhasher(config.dedup) if config.dedup.enabled else None
        writer = ctx.writer()
        ids, exact, bands = [], [], []
        counts = {"input": 0, "kept_before_dedup": 0}
        with (
            ParquetShardWriter(writer, f"{PENDING}/documents/{shard}.parquet", FILTERED_DOCUMENTS) as kept,
            ParquetShardWriter(writer, f"{PENDING}/rejected/{shard}.parquet", REJECTED) as rejected,
        ):
            for row in ctx.reader("documents").iter_rows(f"documents/{shard}.parquet"):
                counts["input"] += 1
                doc = _read_document(row)
                if doc is None:
                    rejected.write(rejected_row(row, "input:invalid", "doc_id and text must be strings"))
                    continue
                reason = next((r for f in filters if (r := f(doc)) is not None), None)
                if reason is not None:
                    rejected.write({**doc.document_row(), "reason": reason, "detail": _doc_detail(doc)})
                    continue
                kept.write(doc.filtered_row())
                counts["kept_before_dedup"] += 1
                if hasher is not None:
                    ids.append(doc.doc_id)
                    exact.append(exact_key(doc.text))
                    bands.append(hasher.band_keys(doc.text))
            if hasher is not None:
                keys = shard_keys(ids, exact, bands, config.dedup.bands)
                writer.write_bytes(f"{PENDING}/keys/{shard}.npz", keys.to_bytes())
        for f in filters:
            counts.update(f.stats.to_counts(f.name))
        return counts

    # -- global step
    def finalize(self, ctx: StageContext, stats: dict[str, dict[str, int]]) -> StageResult:
        config: FilterConfig = ctx.config
        writer = ctx.writer()
        shards = list(stats)
        dedup = self._dedup(writer, shards, config.dedup) if config.dedup.enabled else {}
        by_shard: dict[str, dict[int, dict]] = {}
        for d in dedup.get("duplicates", []):
            by_shard.setdefault(d["shard"], {})[d["row"]] = d
        for shard in shards:
            self._write_final_shard(writer, shard, by_shard.get(shard, {}))
        writer.remove(PENDING)
        return self._result(ctx, stats, dedup)

    def _dedup(self, writer: ArtifactWriter, shards: list[str], config: DedupConfig) -> dict[str, Any]:
        """Find duplicates once; a retry reads the result back (the summary is written last)."""
        if writer.exists(DEDUP_SUMMARY):
            summary = writer.read_json(DEDUP_SUMMARY)
            summary["seconds"] = writer.read_json(DEDUP_TIME)["seconds"] if writer.exists(DEDUP_TIME) else 0.0
            summary["duplicates"] = list(writer.iter_rows(DUPLICATES))
            return summary
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
        return {**summary, "seconds": seconds, "duplicates": rows}

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
                    rejected.write(rejected_row(row, reason, json.dumps({"kind": d["kind"]})))
        with ParquetShardWriter(writer, f"documents/{shard}.parquet", FILTERED_DOCUMENTS) as kept:
            for i, row in enumerate(writer.iter_rows(f"{PENDING}/documents/{shard}.parquet")):
                if i not in duplicates:
                    kept.write(_as_filtered(row))

    def _result(self, ctx: StageContext, stats: dict[str, dict[str, int]], dedup: dict[str, Any]) -> StageResult:
        writer = ctx.writer()
        total = sum_counts(stats.values())
        kept = writer.count_rows("documents/*.parquet")
        reasons: dict[str, int] = {}
        for batch in writer.iter_batches("rejected/*.parquet", columns=["reason"], batch_size=4096):
            for reason in batch.column(0).to_pylist():
                group = reason_group(reason)
                reasons[group] = reasons.get(group, 0) + 1
        rejected = sum(reasons.values())
        if kept + rejected != total["input"]:
            raise RuntimeError(
                f"filter stage lost documents: kept {kept} + rejected {rejected} != input {total['input']}"
            )

        filter_rows = []
        for name in [*FILTER_CLASSES, "dedup"]:
            if name == "dedup":
                if not ctx.config.dedup.enabled:
                    continue
                st = FilterStats(
                    input=total["kept_before_dedup"],
                    kept=total["kept_before_dedup"] - dedup["exact"] - dedup["near"],
                    dropped={k: dedup[k] for k in ("exact", "near") if dedup[k]},
                    seconds=dedup["seconds"],
                )
            elif getattr(ctx.config, name).enabled:
                st = FilterStats.from_counts(name, total)
            else:
                continue
            filter_rows.append(_filter_row(name, st))
        counts = {"input": total["input"], "kept": kept, "rejected": rejected}
        counts.update({f"rejected:{r}": n for r, n in sorted(reasons.items())})
        # per-filter counters are counts; their time (microseconds, summed over shards) is a measurement
        counts.update({k: v for k, v in total.items() if k.startswith("filter.") and not k.endswith(".us")})
        timings = {k.removesuffix(".us") + ".seconds": v / 1e6 for k, v in total.items()
                   if k.startswith("filter.") and k.endswith(".us")}
        reason_rows = [{"reason": r, "documents": n, "share": round(n / max(1, total["input"]), 4)}
                       for r, n in sorted(reasons.items(), key=lambda x: -x[1])]
        return StageResult(
            counts=counts,
            metrics={"kept_fraction": round(kept / max(1, total["input"]), 4),
                     "dedup_seconds": float(dedup.get("seconds", 0.0)), **timings},
            tables={"filters": filter_rows, "rejections": reason_rows},
            markdown=_markdown(counts, filter_rows, reason_rows),
        )


def _as_filtered(row: dict[str, Any]) -> dict[str, Any]:
    """Parquet maps read back as lists of pairs; turn them into dicts for the writer."""
    for key in ("pii_redactions", "quality"):
        if isinstance(row.get(key), list):
            row[key] = dict(row[key])
    return row


def _filter_row(name: str, st: FilterStats) -> dict[str, Any]:
    return {
        "filter": name,
        "input": st.input,
        "kept": st.kept,
        "dropped": st.input - st.kept,
        "dropped_by_reason": ", ".join(f"{r}: {n}" for r, n in sorted(st.dropped.items(), key=lambda x: -x[1])),
        "seconds": round(st.seconds, 3),
        "docs_per_s": round(st.input / st.seconds, 1) if st.seconds else None,
    }


def _markdown(counts: dict[str, int], filters: list[dict], reasons: list[dict]) -> str:
    lines = [
        f"**filter**: {counts['input']} documents in, {counts['kept']} kept, {counts['rejected']} rejected.",
        "",
        "| filter | input | kept | dropped | seconds | docs/s |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {r['filter']} | {r['input']} | {r['kept']} | {r['dropped']} | {r['seconds']} | {r['docs_per_s']} |"
          for r in filters),
        "",
        "| reason | documents |",
        "|---|---:|",
        *(f"| `{r['reason']}` | {r['documents']} |" for r in reasons),
    ]
    return "\n".join(lines)

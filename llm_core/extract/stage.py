"""The `extract` stage: raw pages (from `crawl`) -> documents, one output shard per input shard.

Input artifact (`pages`, from `crawl`): `pages/S.parquet` (RAW_PAGES) and, for curated sources that enter as
text, `documents/S.parquet` (DOCUMENTS).

Output artifact, one shard `part-NNNNN` per input file (numbered in name order, pages files first; the shard
table of the result maps each to its input file):
- `documents/part-NNNNN.parquet` (DOCUMENTS): the documents extracted from one pages file, or one curated
  documents file passed through unchanged;
- `rejected/part-NNNNN.parquet` (REJECTED): every page that did not become a document, with its reason
  (`extract:http_status`, `extract:not_html`, `extract:too_large`, `extract:empty`, `extract:boilerplate_only`,
  `extract:decode_error`, `extract:timeout`, `extract:error`) and a detail naming the record (and saying so when
  the crawl kept only the first part of a page, `truncated`).

Every shard checks `kept + rejected = input` and so does the total. Records are streamed in batches of
`batch_rows`; nothing holds a whole shard. Each document's extraction is bounded in time (`timeout.py`), on whatever
thread the shard runs.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from llm_core.extract.config import ExtractConfig
from llm_core.extract.page import Extracted, PageExtractor, Rejection, doc_id
from llm_core.manifest import Manifest
from llm_core.schemas import DOCUMENTS, REJECTED
from llm_core.stage import ShardedStage, StageContext, StageResult, Throughput
from llm_core.stats import Counts, ReasonCounts
from llm_core.store import ArtifactReader, ParquetShardWriter

INPUT = "pages"
PAGES_GLOB = "pages/*.parquet"
CURATED_GLOB = "documents/*.parquet"
DOCUMENTS_GLOB = "documents/part-*.parquet"  # what downstream stages read from this stage's artifact
REJECTED_GLOB = "rejected/part-*.parquet"


def shard_sources(reader: ArtifactReader) -> dict[str, tuple[str, str]]:
    """Shard id `part-NNNNN` -> (kind, input file): the input's pages files in name order, then its curated
    documents files. The input artifact is immutable, so the numbering is stable across retries."""
    inputs = [("pages", name) for name in reader.files(PAGES_GLOB)]
    inputs += [("documents", name) for name in reader.files(CURATED_GLOB)]
    return {f"part-{i:05d}": source for i, source in enumerate(inputs)}


def _rejected_row(page: dict[str, Any], rejection: Rejection) -> dict[str, Any]:
    record = page.get("warc_record_id")
    return {
        "doc_id": doc_id(page.get("url") or "", record or ""),
        "url": page.get("url"),
        "text": None,
        "title": None,
        "source": page.get("source"),
        "extracted_at": page.get("fetched_at"),
        "reason": rejection.reason,
        "detail": f"{rejection.detail}; warc_record_id={record}" if record else rejection.detail,
    }


class ExtractStage(ShardedStage):
    name = "extract"
    config_model = ExtractConfig
    version = "3"  # 3: `extracted_at` is the page's capture time, not the wall clock (the run's is in run.json)
    throughput = Throughput("input", 9.2)

    def funnel(self, manifest: Manifest) -> list[tuple[str, int]]:
        return [("extract: documents", manifest.counts["kept"])] if "kept" in manifest.counts else []
    stats_type = ReasonCounts

    def input_stages(self, config: ExtractConfig) -> dict[str, str]:
        return {INPUT: "crawl"}

    def shard_ids(self, ctx: StageContext) -> list[str]:
        return list(shard_sources(ctx.reader(INPUT)))

    def run_shard(self, ctx: StageContext, shard: str) -> ReasonCounts:
        kind, name = shard_sources(ctx.reader(INPUT))[shard]
        if kind == "documents":
            stats = self._pass_through(ctx, shard, name)
        else:
            stats = self._extract(ctx, shard, name)
        counts = stats.counts
        assert counts["kept"] + counts["rejected"] == counts["input"], (
            f"shard {shard}: kept {counts['kept']} + rejected {counts['rejected']} != input {counts['input']}"
        )
        return stats

    def _writers(self, ctx: StageContext, shard: str) -> tuple[ParquetShardWriter, ParquetShardWriter]:
        writer = ctx.writer()
        return (
            ParquetShardWriter(writer, f"documents/{shard}.parquet", DOCUMENTS),
            ParquetShardWriter(writer, f"rejected/{shard}.parquet", REJECTED),
        )

    def _extract(self, ctx: StageContext, shard: str, name: str) -> ReasonCounts:
        config: ExtractConfig = ctx.config  # type: ignore[assignment]
        extractor = PageExtractor(config)
        counts: Counter[str] = Counter(input=0, kept=0, rejected=0, input_bytes=0, text_chars=0)
        reasons: Counter[str] = Counter()
        docs, rejected = self._writers(ctx, shard)
        with docs, rejected:
            for batch in ctx.reader(INPUT).iter_batches(name, batch_size=config.batch_rows):
                for page in batch.to_pylist():
                    counts["input"] += 1
                    counts["input_bytes"] += len(page.get("body") or b"")
                    outcome = extractor(page)
                    if isinstance(outcome, Extracted):
                        counts["kept"] += 1
                        counts["text_chars"] += len(outcome.text)
                        docs.write(
                            {
                                "doc_id": doc_id(page["url"] or "", outcome.text),
                                "url": page["url"],
                                "text": outcome.text,
                                "title": outcome.title,
                                "source": page.get("source"),
                                "extracted_at": page.get("fetched_at"),
                            }
                        )
                    else:
                        counts["rejected"] += 1
                        reasons[outcome.reason] += 1
                        rejected.write(_rejected_row(page, outcome))
        return ReasonCounts(Counts(counts), Counts(reasons))

    def _pass_through(self, ctx: StageContext, shard: str, name: str) -> ReasonCounts:
        config: ExtractConfig = ctx.config  # type: ignore[assignment]
        counts: Counter[str] = Counter(input=0, kept=0, rejected=0, passthrough=0, text_chars=0)
        docs, rejected = self._writers(ctx, shard)
        with docs, rejected:
            for batch in ctx.reader(INPUT).iter_batches(name, batch_size=config.batch_rows):
                for row in batch.select(DOCUMENTS.names).to_pylist():
                    docs.write(row)
                    counts["text_chars"] += len(row["text"] or "")
                counts["input"] += batch.num_rows
                counts["kept"] += batch.num_rows
                counts["passthrough"] += batch.num_rows
        return ReasonCounts(Counts(counts))

    def finalize(self, ctx: StageContext, stats: dict[str, ReasonCounts]) -> StageResult:
        total = self.total(stats)
        counts = total.to_manifest()
        for key in ("input", "kept", "rejected"):
            counts.setdefault(key, 0)
        assert counts["kept"] + counts["rejected"] == counts["input"], (
            f"kept {counts['kept']} + rejected {counts['rejected']} != input {counts['input']}"
        )
        reasons = sorted(total.reasons.items(), key=lambda kv: -kv[1])
        keep_rate = counts["kept"] / counts["input"] if counts["input"] else 0.0
        table = [{"reason": r, "records": n, "share": round(n / counts["input"], 4)} for r, n in reasons]
        sources = shard_sources(ctx.reader(INPUT))
        per_shard = [
            {"shard": s, "input_file": sources[s][1], **{k: c.counts.get(k, 0) for k in ("input", "kept", "rejected")}}
            for s, c in sorted(stats.items())
        ]
        lines = [
            f"**extract**: {counts['input']} records in {len(stats)} shards -> {counts['kept']} documents "
            f"({keep_rate:.1%}), {counts['rejected']} rejected.",
            "",
            *(f"- `{r}`: {n}" for r, n in reasons),
        ]
        return StageResult(
            counts=counts,
            metrics={"keep_rate": round(keep_rate, 4)},
            tables={"rejected_by_reason": table, "shards": per_shard},
            markdown="\n".join(lines),
            extra={"shards": len(stats)},
        )

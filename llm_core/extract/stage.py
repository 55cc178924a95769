"""The `extract` stage: raw pages (from `crawl`) -> documents, one output shard per input shard.

Input artifact (`pages`, from `crawl`): `pages/S.parquet` (RAW_PAGES) and, for curated sources that enter as
text, `documents/S.parquet` (DOCUMENTS).

Output artifact, one shard per input file, named like it:
- `documents/S.parquet` (DOCUMENTS): the documents extracted from `pages/S.parquet`; curated documents pass
  through unchanged;
- `rejected/S.parquet` (REJECTED): every page that did not become a document, with its reason
  (`extract:http_status`, `extract:not_html`, `extract:too_large`, `extract:empty`, `extract:decode_error`,
  `extract:timeout`, `extract:error`) and a detail naming the record.

Every shard checks `kept + rejected = input` and so does the total. Records are streamed in batches of
`batch_rows`; nothing holds a whole shard. Shards run on the process pool of `ShardedStage`; the per-document
time bound needs a process's main thread (SIGALRM, see `timeout.py`), so when the stage runs inside a thread
(a thread task runner) a shard is processed in a one-process pool instead.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from llm_core.extract.config import ExtractConfig
from llm_core.extract.page import Extracted, PageExtractor, Rejection, doc_id
from llm_core.extract.timeout import can_interrupt
from llm_core.schemas import DOCUMENTS, REJECTED
from llm_core.stage import ShardedStage, StageContext, StageResult, local_pool, sum_counts
from llm_core.store import ArtifactReader, ParquetShardWriter

INPUT = "pages"
PAGES_GLOB = "pages/*.parquet"
CURATED_GLOB = "documents/*.parquet"
DOCUMENTS_GLOB = "documents/*.parquet"  # what downstream stages read from this stage's artifact
REJECTED_GLOB = "rejected/*.parquet"


def shard_sources(reader: ArtifactReader) -> dict[str, tuple[str, str]]:
    """Shard id -> (kind, input file). A shard's id is its input file's name without `.parquet`, so
    `pages/S.parquet` becomes `documents/S.parquet` + `rejected/S.parquet`; a curated `documents/S.parquet`
    whose name is also a pages shard gets the id `S-curated`."""
    shards = {_stem(name): ("pages", name) for name in reader.files(PAGES_GLOB)}
    for name in reader.files(CURATED_GLOB):
        shard = _stem(name)
        shards[f"{shard}-curated" if shard in shards else shard] = ("documents", name)
    return shards


def _stem(name: str) -> str:
    return name.rsplit("/", 1)[-1].removesuffix(".parquet")


def _rejected_row(page: dict[str, Any], rejection: Rejection, now: dt.datetime) -> dict[str, Any]:
    record = page.get("warc_record_id")
    return {
        "doc_id": doc_id(page.get("url") or "", record or ""),
        "url": page.get("url"),
        "text": None,
        "title": None,
        "source": page.get("source"),
        "extracted_at": now,
        "reason": rejection.reason,
        "detail": f"{rejection.detail}; warc_record_id={record}" if record else rejection.detail,
    }


class ExtractStage(ShardedStage):
    name = "extract"
    config_model = ExtractConfig
    version = "1"

    def input_stages(self, config: Any) -> dict[str, str]:
        return {INPUT: "crawl"}

    def plan(self, ctx: StageContext) -> list[str]:
        return list(shard_sources(ctx.reader(INPUT)))

    def run_shard(self, ctx: StageContext, shard: str) -> dict[str, int]:
        if not can_interrupt():
            with local_pool(1) as pool:
                return pool.submit(self.run_shard, ctx, shard).result()
        kind, name = shard_sources(ctx.reader(INPUT))[shard]
        if kind == "documents":
            counts = self._pass_through(ctx, shard, name)
        else:
            counts = self._extract(ctx, shard, name)
        assert counts["kept"] + counts["rejected"] == counts["input"], (
            f"shard {shard}: kept {counts['kept']} + rejected {counts['rejected']} != input {counts['input']}"
        )
        return counts

    def _writers(self, ctx: StageContext, shard: str) -> tuple[ParquetShardWriter, ParquetShardWriter]:
        writer = ctx.writer()
        return (
            ParquetShardWriter(writer, f"documents/{shard}.parquet", DOCUMENTS),
            ParquetShardWriter(writer, f"rejected/{shard}.parquet", REJECTED),
        )

    def _extract(self, ctx: StageContext, shard: str, name: str) -> dict[str, int]:
        config: ExtractConfig = ctx.config  # type: ignore[assignment]
        extractor = PageExtractor(config)
        now = dt.datetime.now(dt.timezone.utc)
        counts: Counter[str] = Counter(input=0, kept=0, rejected=0, input_bytes=0, text_chars=0)
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
                                "extracted_at": now,
                            }
                        )
                    else:
                        counts["rejected"] += 1
                        counts[f"rejected:{outcome.reason}"] += 1
                        rejected.write(_rejected_row(page, outcome, now))
        return dict(counts)

    def _pass_through(self, ctx: StageContext, shard: str, name: str) -> dict[str, int]:
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
        return dict(counts)

    def finalize(self, ctx: StageContext, stats: dict[str, dict[str, int]]) -> StageResult:
        counts = sum_counts(stats.values())
        for key in ("input", "kept", "rejected"):
            counts.setdefault(key, 0)
        assert counts["kept"] + counts["rejected"] == counts["input"], (
            f"kept {counts['kept']} + rejected {counts['rejected']} != input {counts['input']}"
        )
        reasons = sorted(
            ((k.removeprefix("rejected:"), v) for k, v in counts.items() if k.startswith("rejected:")),
            key=lambda kv: -kv[1],
        )
        keep_rate = counts["kept"] / counts["input"] if counts["input"] else 0.0
        table = [{"reason": r, "records": n, "share": round(n / counts["input"], 4)} for r, n in reasons]
        lines = [
            f"**extract**: {counts['input']} records in {len(stats)} shards -> {counts['kept']} documents "
            f"({keep_rate:.1%}), {counts['rejected']} rejected.",
            "",
            *(f"- `{r}`: {n}" for r, n in reasons),
        ]
        return StageResult(
            counts=counts,
            metrics={"keep_rate": round(keep_rate, 4)},
            tables={"rejected_by_reason": table},
            markdown="\n".join(lines),
            extra={"shards": len(stats)},
        )

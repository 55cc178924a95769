"""The `index` stage: a BM25 index over the filtered documents and curated text, for the chat's search tool.

Per shard, in parallel (one shard per documents file of the input artifact, one per curated file): the documents
cut into passages of about `passage_words` words (`passages.cut_passages`), written to `passages/{shard}.parquet`;
curated lines that are not documents go to `rejected/{shard}.json` with their reason. `finalize` reads every
passage in shard order, builds the BM25 index (`search_index.write_bm25`) and writes `index.json`. A retry skips
the finished shards and builds the index again from their files, so a run killed at any point ends with the same
artifact.

The input is the `filter` artifact (`extract`'s when filter is off; none when both are off: curated text only),
named in the manifest's lineage; the curated files' fingerprints are in its config (`data_digests`), so an edited
file builds a new index. The index has its own tokenisation (see `search_index`), not the model's tokenizer.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from llm_core.config import StageConfig
from llm_core.data_files import resolve_data_path
from llm_core.index.passages import cut_passages, curated_lines
from llm_core.index.search_index import FORMAT, INDEX_FILE, TOKENIZER, write_bm25
from llm_core.schemas import PASSAGES
from llm_core.stage import Input, ShardedStage, StageContext, StageResult
from llm_core.stats import Counts
from llm_core.store import ParquetShardWriter
from llm_core.tokenizer.sources import UPSTREAM_DOCUMENTS

CURATED_SHARD = "curated-{:03d}"
REJECTED_SHOWN = 100  # rejected curated lines listed in the manifest's table (all are in rejected/)


def check_curated(path: str) -> str:
    try:
        found = resolve_data_path(path)
    except FileNotFoundError as e:
        raise ValueError(f"curated file {e.args[0]}") from None
    if not found.is_file():
        raise ValueError(f"curated file {path!r} is a folder, not a JSONL file")
    return path


class IndexConfig(StageConfig):
    curated: list[Annotated[str, AfterValidator(check_curated)]] = Field(
        default_factory=list, description='JSONL files indexed beside the documents, one {"url", "text"} per line'
    )
    passage_words: int = Field(60, ge=8, le=1000, description="documents are cut into passages of about this many words")
    k1: float = Field(1.5, gt=0, le=10, description="BM25 term-frequency saturation")
    b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation")


class IndexStage(ShardedStage):
    name = "index"
    config_model = IndexConfig
    version = "2"  # 2: the Glasgow stop words

    def input_stages(self, config: IndexConfig) -> dict[str, str | Input]:
        return {"documents": UPSTREAM_DOCUMENTS}

    def data_paths(self, ctx_config: IndexConfig) -> list[str]:
        return list(ctx_config.curated)

    def shard_ids(self, ctx: StageContext) -> list[str]:
        cfg: IndexConfig = ctx.config
        names = ctx.reader("documents").files("documents/part-*.parquet") if "documents" in ctx.inputs else []
        documents = [posixpath.basename(n).removesuffix(".parquet") for n in names]
        return documents + [CURATED_SHARD.format(i) for i in range(len(cfg.curated))]

    def run_shard(self, ctx: StageContext, shard: str) -> Counts:
        cfg: IndexConfig = ctx.config
        counts = Counts(documents=0, empty_documents=0, curated_lines=0, curated_kept=0, curated_rejected=0,
                        passages=0)
        curated = shard.startswith("curated-")
        writer = ctx.writer()
        rejected: list[dict[str, Any]] = []
        docs = self._curated(cfg, shard, counts, rejected) if curated else self._documents(ctx, shard, counts)
        with ParquetShardWriter(writer, f"passages/{shard}.parquet", PASSAGES) as out:
            for doc_id, url, text, source in docs:
                for n, passage in enumerate(cut_passages(text, cfg.passage_words)):
                    out.write({"doc_id": doc_id, "passage": n, "url": url, "text": passage, "source": source})
                    counts["passages"] += 1
        if curated:
            writer.write_json(f"rejected/{shard}.json", rejected)
        return counts

    def _documents(self, ctx: StageContext, shard: str, counts: dict[str, int]) -> Iterator[tuple[str, ...]]:
        columns = ["doc_id", "url", "text", "source"]
        for row in ctx.reader("documents").iter_rows(f"documents/{shard}.parquet", columns=columns):
            counts["documents"] += 1
            if not (row["text"] or "").strip():
                counts["empty_documents"] += 1
                continue
            yield row["doc_id"], row["url"] or "", row["text"], row["source"] or "documents"

    def _curated(self, cfg: IndexConfig, shard: str, counts: dict[str, int],
                 rejected: list[dict[str, Any]]) -> Iterator[tuple[str, ...]]:
        path = cfg.curated[int(shard.removeprefix("curated-"))]
        for line in curated_lines(str(resolve_data_path(path))):
            counts["curated_lines"] += 1
            if line.reason:
                counts["curated_rejected"] += 1
                rejected.append({"file": path, "line": line.line, "reason": line.reason})
                continue
            counts["curated_kept"] += 1
            yield f"{path}:{line.line}", line.url, line.text, f"curated:{path}"

    def finalize(self, ctx: StageContext, stats: dict[str, Counts]) -> StageResult:
        cfg: IndexConfig = ctx.config
        writer = ctx.writer()
        shards = self.shard_ids(ctx)
        files = [f"passages/{s}.parquet" for s in shards]
        texts = [t for f in files for batch in writer.iter_batches(f, columns=["text"], batch_size=4096)
                 for t in batch.column("text").to_pylist()]
        vocabulary = write_bm25(writer, texts, cfg.k1, cfg.b)["vocabulary"] if texts else 0
        writer.write_json(INDEX_FILE, {
            "format": FORMAT, "passage_files": files, "passages": len(texts), "tokenizer": TOKENIZER,
            "bm25": {"method": "lucene", "k1": cfg.k1, "b": cfg.b},
        })
        rejected = [r for s in shards if s.startswith("curated-") for r in writer.read_json(f"rejected/{s}.json")]
        counts = self.total(stats).to_manifest()
        words = sum(len(t.split()) for t in texts)
        metrics = {"vocabulary": float(vocabulary), "words_per_passage": round(words / len(texts), 2) if texts else 0}
        return StageResult(
            counts=counts,
            metrics=metrics,
            tables={"rejected_curated": rejected[:REJECTED_SHOWN]} if rejected else {},
            markdown=summary_markdown(counts, vocabulary, cfg, rejected),
            extra={"passage_files": files},
        )


def summary_markdown(counts: dict[str, int], vocabulary: int, cfg: IndexConfig, rejected: list[dict]) -> str:
    lines = [
        "### Search index (BM25)",
        "",
        f"{counts['passages']:,} passages of up to {cfg.passage_words} words from {counts['documents']:,} documents "
        f"({counts['empty_documents']:,} empty) and {counts['curated_kept']:,} curated lines of "
        f"{len(cfg.curated)} files; {vocabulary:,} terms.",
    ]
    if rejected:
        lines += ["", f"{len(rejected)} curated lines rejected (all in `rejected/`):", "",
                  "| file | line | reason |", "|---|---:|---|"]
        lines += [f"| {Path(r['file']).name} | {r['line']} | {r['reason']} |" for r in rejected[:REJECTED_SHOWN]]
    return "\n".join(lines)

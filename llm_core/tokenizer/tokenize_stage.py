"""The `tokenize` stage: documents and curated text -> fixed-size token shards (layout in `token_shards`).

Each input shard (a documents Parquet file, or one curated source) is encoded by a worker into its own train and
val token streams (`_parts/`), streaming in batches of documents, `<|endoftext|>` after every document. When all
are done, `finalize` cuts the streams, in shard order, into `shard_tokens`-sized `train/` and `val/` shards and
removes `_parts/`. A killed run keeps its finished input shards; a rerun does only the rest.

On a refresh of a corpus (input `previous`, the corpus so far) only the new snapshot's documents are tokenized:
the curated text is already in the corpus's first snapshot. The hash split is then drawn per piece of about 2,000
characters (cut at line ends) instead of per document, so that even a small snapshot holds back some of its text:
the promotion gate and the forgetting table measure each snapshot on its own held-out text.

Split (`split`):
- `document_hash` (default): a document goes to val when its text hash falls under `val_fraction`, so the split
  is the same whatever the order or sharding of the input, and duplicate documents land on the same side.
- `tail`: the last `val_fraction` of every document's characters goes to val (nanoGPT's 90/10 split of a file).

Counts: `documents` = `train_documents` + `val_documents` + `empty_documents` + `unencodable_documents` for the
hash split (with `tail`, or on a refresh, a document contributes pieces to either side).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from llm_core.config import RunConfig, StageConfig
from llm_core.stage import Input, ShardedStage, StageContext, StageResult, Throughput
from llm_core.stats import Counts
from llm_core.tokenizer.artifact import load_tokenizer
from llm_core.tokenizer.base import Tokenizer
from llm_core.tokenizer.bpe_stage import pieces
from llm_core.tokenizer.sources import (
    DOCUMENTS_GLOB,
    UPSTREAM_DOCUMENTS,
    TextSource,
    hash_fraction,
    parquet_documents,
    sources_digest,
)
from llm_core.tokenizer.token_shards import SPLITS, ShardSink, copy_into, part_name, token_dtype

VAL_SALT = "tokenize-val"
LAYOUT_FILE = "shards.json"
DOC_SHARD_PREFIX = "documents-"
SOURCE_SHARD_PREFIX = "source-"
SHARD_COUNTS = (
    "documents", "empty_documents", "unencodable_documents", "train_documents", "val_documents", "train_tokens",
    "val_tokens",
)


class TokenizeConfig(StageConfig):
    sources: list[TextSource] = Field(default_factory=list, description="curated text tokenized beside documents")
    split: Literal["document_hash", "tail"] = "document_hash"
    val_fraction: float = Field(0.05, ge=0, lt=1)
    shard_tokens: int = Field(2**24, ge=1024, description="tokens per output shard (the last one may be shorter)")
    batch_documents: int = Field(256, ge=1, description="documents encoded at a time (bounds memory)")

    runtime_fields: ClassVar[frozenset[str]] = frozenset({"batch_documents"})

    @model_validator(mode="after")
    def _unique_source_names(self) -> TokenizeConfig:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        return self


def tokenizer_of(ctx: StageContext) -> Tokenizer:
    return load_tokenizer(ctx.reader("tokenizer"))


def batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


class TokenizeStage(ShardedStage):
    name = "tokenize"
    config_model = TokenizeConfig
    version = "1"
    throughput = Throughput("documents", 4700.0)

    def input_stages(self, config: TokenizeConfig) -> dict[str, str | Input]:
        return {"tokenizer": "bpe", "documents": UPSTREAM_DOCUMENTS}

    def key_config(self, ctx_config: TokenizeConfig, run: RunConfig) -> dict[str, Any]:
        return {**super().key_config(ctx_config, run), "source_digests": sources_digest(ctx_config.sources)}

    def shard_ids(self, ctx: StageContext) -> list[str]:
        shards = []
        if "documents" in ctx.inputs:
            for name in ctx.reader("documents").files(DOCUMENTS_GLOB):
                shards.append(DOC_SHARD_PREFIX + name.removeprefix("documents/").removesuffix(".parquet"))
        if "previous" not in ctx.inputs:  # a refresh tokenizes its new documents only: the corpus has the rest
            shards += [SOURCE_SHARD_PREFIX + s.name for s in ctx.config.sources]
        return shards

    def _texts(self, ctx: StageContext, shard: str) -> Iterator[str]:
        if shard.startswith(DOC_SHARD_PREFIX):
            name = f"documents/{shard.removeprefix(DOC_SHARD_PREFIX)}.parquet"
            return (doc.text for doc in parquet_documents(ctx.reader("documents"), name))
        source = {s.name: s for s in ctx.config.sources}[shard.removeprefix(SOURCE_SHARD_PREFIX)]
        return source.documents()

    def _pieces(self, cfg: TokenizeConfig, text: str, refresh: bool) -> list[tuple[str, str]]:
        """(split, text) pieces of one document."""
        if cfg.split == "tail":
            cut = int(len(text) * (1 - cfg.val_fraction))
            return [(s, t) for s, t in (("train", text[:cut]), ("val", text[cut:])) if t]
        if refresh:
            return [("val" if hash_fraction(p, VAL_SALT) < cfg.val_fraction else "train", p) for p in pieces(text)]
        return [("val" if hash_fraction(text, VAL_SALT) < cfg.val_fraction else "train", text)]

    def _encode(
        self, cfg: TokenizeConfig, tokenizer: Tokenizer, texts: list[str | None], counts: dict[str, int],
        refresh: bool = False,
    ) -> Iterator[tuple[str, list[int]]]:
        """(split, ids) of every piece of a batch of documents; counts the empty and unencodable ones."""
        counts["documents"] += len(texts)
        docs = []
        for text in texts:
            if text and text.strip():
                docs.append(self._pieces(cfg, text, refresh))
            else:
                counts["empty_documents"] += 1
        encoded = iter(encode_or_none(tokenizer, [t for doc in docs for _, t in doc]))
        for doc in docs:
            ids = [next(encoded) for _ in doc]
            if any(piece is None for piece in ids):
                counts["unencodable_documents"] += 1
                continue
            yield from zip((split for split, _ in doc), ids)

    def run_shard(self, ctx: StageContext, shard: str) -> Counts:
        cfg: TokenizeConfig = ctx.config
        tokenizer = tokenizer_of(ctx)
        dtype = token_dtype(tokenizer.vocab_size)
        counts = Counts.fromkeys(SHARD_COUNTS, 0)
        writer = ctx.writer()
        with contextlib.ExitStack() as stack:
            files = {split: stack.enter_context(writer.open_atomic(part_name(split, shard))) for split in SPLITS}
            for batch in batched(self._texts(ctx, shard), cfg.batch_documents):
                for split, ids in self._encode(cfg, tokenizer, batch, counts, "previous" in ctx.inputs):
                    tokens = np.asarray([*ids, tokenizer.eot_id], dtype=dtype)
                    files[split].write(tokens.tobytes())
                    counts[f"{split}_documents"] += 1
                    counts[f"{split}_tokens"] += len(tokens)
        return counts

    def finalize(self, ctx: StageContext, stats: dict[str, Counts]) -> StageResult:
        cfg: TokenizeConfig = ctx.config
        tokenizer = tokenizer_of(ctx)
        dtype = token_dtype(tokenizer.vocab_size)
        writer = ctx.writer()
        if not writer.exists(LAYOUT_FILE):
            shards = {}
            for split in SPLITS:
                sink = ShardSink(writer, split, cfg.shard_tokens, dtype)
                for shard in stats:
                    copy_into(sink, writer, part_name(split, shard))
                shards[split] = sink.close()
            writer.write_json(LAYOUT_FILE, {"shard_tokens": cfg.shard_tokens, "shards": shards})
        shards = writer.read_json(LAYOUT_FILE)["shards"]
        writer.remove("_parts")

        counts = self.total(stats).to_manifest()
        rows = [{"input": shard, **c} for shard, c in stats.items()]
        total = counts["train_tokens"] + counts["val_tokens"]
        return StageResult(
            counts=counts,
            metrics={"val_token_fraction": counts["val_tokens"] / total if total else 0.0},
            tables={"inputs": rows},
            markdown=shards_markdown(counts, rows, shards, dtype, tokenizer.vocab_size, cfg.shard_tokens),
            extra={
                "dtype": dtype.name,
                "vocab_size": tokenizer.vocab_size,
                "eot_id": tokenizer.eot_id,
                "tokenizer": str(ctx.inputs["tokenizer"]),
                "shard_tokens": cfg.shard_tokens,
                "shards": shards,
            },
        )


def shards_markdown(
    counts: dict[str, int], rows: list[dict[str, Any]], shards: dict[str, list[str]], dtype: np.dtype,
    vocab_size: int, shard_tokens: int,
) -> str:
    lines = [
        "### Token shards",
        "",
        f"{counts['train_tokens']:,} train and {counts['val_tokens']:,} val tokens ({dtype.name}, vocab "
        f"{vocab_size}) from {counts['documents']:,} documents; {len(shards['train'])} train and "
        f"{len(shards['val'])} val shards of up to {shard_tokens:,} tokens.",
        "",
        "| input | documents | train tokens | val tokens | empty | unencodable |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['input']} | {r['documents']:,} | {r['train_tokens']:,} | {r['val_tokens']:,} | "
        f"{r['empty_documents']} | {r['unencodable_documents']} |"
        for r in rows
    ]
    return "\n".join(lines)


def encode_or_none(tokenizer: Tokenizer, texts: list[str]) -> list[list[int] | None]:
    """Encode a batch; if the batch fails (a character-level vocabulary meeting an unknown character), encode one
    by one and give None for the texts that cannot be encoded."""
    try:
        return tokenizer.encode_batch(texts)
    except ValueError:
        out: list[list[int] | None] = []
        for text in texts:
            try:
                out.append(tokenizer.encode(text))
            except ValueError:
                out.append(None)
        return out

"""The `bpe` stage: train the tokenizer on the upstream documents plus curated text, report its compression.

A deterministic slice of every language's text (pieces of documents whose hash falls under `heldout_fraction`, so
every source of the language is in it: web documents and curated text) is held back from training and used to
measure bytes per token, side by side with GPT-2 and cl100k, per language and per source; so is a fixed public
reference text no run trains on (`reference_text`, WikiText-2 test). That slice and a sample of
the training text check that tiktoken reproduces `tokenizers`' ids; the artifact records which encoder to use.

`kind: char` builds nanoGPT's character-level vocabulary instead (from all the text, held-back slice included, as
nanoGPT's prepare.py builds it from the whole file).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import chain
from typing import Any, ClassVar, Literal

import fsspec
from pydantic import Field, field_validator, model_validator

from llm_core.config import RunConfig, StageConfig
from llm_core.stage import Input, Stage, StageContext, StageResult, Throughput
from llm_core.tokenizer.artifact import save_tokenizer
from llm_core.tokenizer.base import DEFAULT_SPECIAL_TOKENS, SPECIAL_TOKENS, TOOL_TOKENS, Tokenizer
from llm_core.tokenizer.bpe import BpeTokenizer, train_bpe
from llm_core.tokenizer.char import CharTokenizer
from llm_core.tokenizer.reference import bytes_per_token, cl100k_encoding, gpt2_encoding
from llm_core.tokenizer.sources import (
    UPSTREAM_DOCUMENTS,
    Document,
    TextSource,
    artifact_documents,
    hash_fraction,
    source_documents,
    sources_digest,
)

HELDOUT_SALT = "bpe-heldout"
REFERENCE_NAME = "wikitext2_test"
WIKITEXT_ARTICLE_RE = re.compile(r"\n(?= = [^=].* = \n)")


class BpeConfig(StageConfig):
    kind: Literal["bpe", "char"] = "bpe"
    vocab_size: int = Field(8192, ge=260, le=2**20, description="bpe: ids in all, special tokens included")
    special_tokens: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SPECIAL_TOKENS),
        description="the chat tokens, then the tool tokens (optional: without them chat tools are unavailable)",
    )
    max_digits: int = Field(3, ge=1, le=3, description="numbers are split into groups of at most this many digits")
    sources: list[TextSource] = Field(default_factory=list, description="curated text trained on beside documents")
    heldout_fraction: float = Field(0.05, ge=0, lt=1, description="share of documents held back per language")
    heldout_max_bytes: int = Field(
        200_000, ge=0, description="held-back text measured per language, and training text sampled, at most"
    )
    reference_vocab_dir: str = Field("data/bpe_vocab", description="GPT-2 and cl100k vocab files to compare with")
    reference_text: str | None = Field(
        "data/wikitext2/test.txt.gz", description="fixed public text (WikiText format) measured beside held-back text"
    )
    reuse: str = Field(
        "latest", pattern=r"^(latest|never|[A-Za-z0-9_/-]{1,80})$",
        description="a refresh keeps its corpus's tokenizer (latest), uses the bpe artifact KEY, or trains a new one "
                    "(never: a new corpus lineage)")

    runtime_fields: ClassVar[frozenset[str]] = frozenset({"reuse"})  # which artifact is used, not what it holds

    @field_validator("special_tokens")
    @classmethod
    def _chat_tokens_present(cls, value: list[str]) -> list[str]:
        missing = [t for t in SPECIAL_TOKENS if t not in value]
        if missing:
            raise ValueError(f"must include {missing} (the chat format's tokens); add others after them")
        if len(set(value)) != len(value):
            raise ValueError("special tokens must be unique")
        tools = [t for t in TOOL_TOKENS if t in value]
        if tools and len(tools) != len(TOOL_TOKENS):
            missing = [t for t in TOOL_TOKENS if t not in value]
            raise ValueError(f"has some tool tokens but lacks {missing}: list all of {TOOL_TOKENS} or none")
        return value

    @model_validator(mode="after")
    def _vocab_fits(self) -> BpeConfig:
        if self.kind == "bpe" and self.vocab_size < 256 + len(self.special_tokens):
            raise ValueError(f"vocab_size must be at least 256 bytes + {len(self.special_tokens)} special tokens")
        return self

    @model_validator(mode="after")
    def _unique_source_names(self) -> BpeConfig:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        return self


PIECE_CHARS = 2000


def pieces(text: str, size: int = PIECE_CHARS) -> Iterator[str]:
    """`text` cut at line ends into pieces of about `size` characters (a longer line stays whole); they concatenate
    back to `text`."""
    start = 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


class HeldOut:
    """Held-back text per language and source (each capped), a capped sample of the training text, and the counts
    of what went where.

    Text is held back by pieces of about `PIECE_CHARS` characters, not whole documents, so that every source of a
    language is in the slice in proportion to its size: a source of a few long documents (60 WikiText articles)
    would otherwise often hold back none, and the slice would measure one source only."""

    def __init__(self, fraction: float, max_bytes: int):
        self.fraction, self.max_bytes = fraction, max_bytes
        self.texts: dict[tuple[str, str], list[str]] = {}
        self.bytes: dict[tuple[str, str], int] = {}
        self.train_sample: list[str] = []
        self._train_sample_bytes = 0
        self.counts = {"documents": 0, "empty_documents": 0, "train_pieces": 0, "heldout_pieces": 0}

    def route(self, docs: Iterator[Document], include_heldout: bool) -> Iterator[str]:
        """Yield the texts to train on (pieces of documents); keep the held-back ones (yielded too if
        `include_heldout`)."""
        for doc in docs:
            self.counts["documents"] += 1
            if not doc.text.strip():
                self.counts["empty_documents"] += 1
                continue
            for piece in pieces(doc.text):
                if hash_fraction(piece, HELDOUT_SALT) < self.fraction:
                    self.counts["heldout_pieces"] += 1
                    self._keep((doc.language, doc.source), piece)
                    if not include_heldout:
                        continue
                else:
                    self.counts["train_pieces"] += 1
                    self._sample(piece)
                yield piece

    def _keep(self, slot: tuple[str, str], text: str) -> None:
        size = self.bytes.get(slot, 0)
        if size < self.max_bytes:
            self.texts.setdefault(slot, []).append(text)
            self.bytes[slot] = size + len(text.encode("utf-8"))

    def _sample(self, text: str) -> None:
        if self._train_sample_bytes < self.max_bytes:
            self.train_sample.append(text)
            self._train_sample_bytes += len(text.encode("utf-8"))

    def by_language(self) -> dict[str, dict[str, list[str]]]:
        """Language -> source -> held-back texts."""
        out: dict[str, dict[str, list[str]]] = {}
        for (language, source), texts in sorted(self.texts.items()):
            out.setdefault(language, {})[source] = texts
        return out

    def check_texts(self) -> list[str]:
        """Held-back text of every language plus the training sample: where the fast encoder is checked."""
        return [t for slot in sorted(self.texts) for t in self.texts[slot]] + self.train_sample


def reference_documents(path: str) -> list[str]:
    """The articles of a WikiText file (plain or gzip), the fixed public text every run is measured on."""
    try:
        with fsspec.open(path, "rt", encoding="utf-8", compression="infer") as f:
            text = f.read()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"bpe.reference_text: {path} not found (set it to null to skip)") from e
    return [doc for doc in WIKITEXT_ARTICLE_RE.split(text) if doc.strip()]


def compression_row(tokenizer: Tokenizer, texts: list[str], references: dict[str, Any], **labels: Any) -> dict:
    """Bytes per token of ours and each reference encoding on `texts`."""
    row: dict[str, Any] = {**labels, "texts": len(texts), "bytes": sum(len(t.encode("utf-8")) for t in texts)}
    row["ours"] = bytes_per_token(texts, [len(ids) for ids in tokenizer.encode_batch(texts)])
    for name, enc in references.items():
        row[name] = bytes_per_token(texts, [len(ids) for ids in enc.encode_ordinary_batch(texts)])
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


def compression_tables(
    tokenizer: Tokenizer, heldout: HeldOut, vocab_dir: str, reference_text: str | None
) -> dict[str, list[dict[str, Any]]]:
    """Bytes per token of ours, GPT-2 and cl100k: on each language's held-back text (every source mixed), on each
    source's share of it, and on the reference text."""
    references = {"gpt2": gpt2_encoding(vocab_dir), "cl100k": cl100k_encoding(vocab_dir)}
    languages, sources = [], []
    for language, by_source in heldout.by_language().items():
        mixed = [t for texts in by_source.values() for t in texts]
        languages.append(compression_row(tokenizer, mixed, references, language=language, sources=len(by_source)))
        for source, texts in by_source.items():
            sources.append(compression_row(tokenizer, texts, references, language=language, source=source))
    tables = {"compression": languages, "compression_by_source": sources}
    if reference_text:
        docs = reference_documents(reference_text)
        tables["reference_compression"] = [compression_row(tokenizer, docs, references, text=REFERENCE_NAME)]
    return tables


def compression_markdown(tables: dict[str, list[dict[str, Any]]], vocab_size: int) -> str:
    rows = tables["compression"] + tables.get("reference_compression", [])
    if not rows:
        return f"{vocab_size} ids. No text was held back (`heldout_fraction`), so no compression figures."
    lines = [
        f"Bytes per token (higher is better); ours has {vocab_size} ids, GPT-2 50,257, cl100k 100,277. Held-back "
        "text mixes every source of a language; the reference is a fixed public text no run trains on.",
        "",
        "| text | bytes | ours | GPT-2 | cl100k |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in tables["compression"]:
        lines.append(f"| held-back {r['language']} ({r['sources']} sources) | {r['bytes']:,} | {r['ours']} "
                     f"| {r['gpt2']} | {r['cl100k']} |")
        for s in (s for s in tables["compression_by_source"] if s["language"] == r["language"]):
            lines.append(f"| - of which {s['source']} | {s['bytes']:,} | {s['ours']} | {s['gpt2']} | {s['cl100k']} |")
    for r in tables.get("reference_compression", []):
        lines.append(f"| {r['text']} (reference) | {r['bytes']:,} | {r['ours']} | {r['gpt2']} | {r['cl100k']} |")
    return "\n".join(lines)


def compression_metrics(tables: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """`bytes_per_token_{language}` and `bytes_per_token_wikitext2_test` for ours, the same prefixed `gpt2_` and
    `cl100k_` for the references."""
    slices = [(r["language"], r) for r in tables["compression"]]
    slices += [(r["text"], r) for r in tables.get("reference_compression", [])]
    metrics = {}
    for name, row in slices:
        for encoding in ("ours", "gpt2", "cl100k"):
            prefix = "" if encoding == "ours" else f"{encoding}_"
            metrics[f"{prefix}bytes_per_token_{name}"] = row[encoding]
    return metrics


class BpeStage(Stage):
    name = "bpe"
    config_model = BpeConfig
    version = "2"
    throughput = Throughput("documents", 3300.0)
    headline = None  # all of them: bytes per token per language, ours beside gpt2 and cl100k

    def input_stages(self, config: BpeConfig) -> dict[str, str | Input]:
        return {"documents": UPSTREAM_DOCUMENTS}

    def key_config(self, ctx_config: BpeConfig, run: RunConfig) -> dict[str, Any]:
        return {**super().key_config(ctx_config, run), "source_digests": sources_digest(ctx_config.sources)}

    def run(self, ctx: StageContext) -> StageResult:
        cfg: BpeConfig = ctx.config
        docs = chain(
            artifact_documents(ctx.reader("documents")) if "documents" in ctx.inputs else (),
            *(source_documents(s) for s in cfg.sources),
        )
        heldout = HeldOut(cfg.heldout_fraction, cfg.heldout_max_bytes)
        tokenizer: Tokenizer
        if cfg.kind == "char":
            tokenizer = CharTokenizer.train(heldout.route(docs, include_heldout=True), cfg.special_tokens)
            encoder = "python"
        else:
            hf = train_bpe(heldout.route(docs, include_heldout=False), cfg.vocab_size, cfg.special_tokens,
                           cfg.max_digits)
            tokenizer = BpeTokenizer(hf)
            sample = heldout.check_texts()
            if tokenizer.encode_batch(sample) != tokenizer.encode_slow_batch(sample):
                ctx.log.warning("tiktoken ids differ from tokenizers' on the sample text: encoding with tokenizers")
                tokenizer = BpeTokenizer(hf, fast=False)
            encoder = "tiktoken" if tokenizer.fast is not None else "tokenizers"
        save_tokenizer(ctx.writer(), tokenizer)

        reference = cfg.reference_text if cfg.kind == "bpe" else None  # a char vocabulary lacks its characters
        tables = compression_tables(tokenizer, heldout, cfg.reference_vocab_dir, reference)
        return StageResult(
            counts=heldout.counts,
            metrics=compression_metrics(tables),
            tables=tables,
            markdown=f"### Tokenizer ({cfg.kind}, encoder: {encoder})\n\n"
            + compression_markdown(tables, tokenizer.vocab_size),
            extra={
                "kind": cfg.kind,
                "encoder": encoder,
                "vocab_size": tokenizer.vocab_size,
                "eot_id": tokenizer.eot_id,
                "special_ids": tokenizer.special_ids,
            },
        )

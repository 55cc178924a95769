"""The `bpe` stage: train the tokenizer on the upstream documents plus curated text, report its compression.

A deterministic slice of every language's text (documents whose hash falls under `heldout_fraction`) is held back
from training and used to measure bytes per token, side by side with GPT-2 and cl100k. That slice and a sample of
the training text check that tiktoken reproduces `tokenizers`' ids; the artifact records which encoder to use.

`kind: char` builds nanoGPT's character-level vocabulary instead (from all the text, held-back slice included, as
nanoGPT's prepare.py builds it from the whole file).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from llm_core.config import RunConfig, StageConfig
from llm_core.stage import Stage, StageContext, StageResult
from llm_core.tokenizer.artifact import save_tokenizer
from llm_core.tokenizer.base import SPECIAL_TOKENS, Tokenizer
from llm_core.tokenizer.bpe import BpeTokenizer, train_bpe
from llm_core.tokenizer.char import CharTokenizer
from llm_core.tokenizer.reference import bytes_per_token, cl100k_encoding, gpt2_encoding
from llm_core.tokenizer.sources import (
    Document,
    TextSource,
    artifact_documents,
    hash_fraction,
    source_documents,
    sources_digest,
    upstream_documents,
)

HELDOUT_SALT = "bpe-heldout"


class BpeConfig(StageConfig):
    kind: Literal["bpe", "char"] = "bpe"
    vocab_size: int = Field(8192, ge=260, le=2**20, description="bpe: ids in all, special tokens included")
    special_tokens: list[str] = Field(default_factory=lambda: list(SPECIAL_TOKENS))
    max_digits: int = Field(3, ge=1, le=3, description="numbers are split into groups of at most this many digits")
    sources: list[TextSource] = Field(default_factory=list, description="curated text trained on beside documents")
    heldout_fraction: float = Field(0.05, ge=0, lt=1, description="share of documents held back per language")
    heldout_max_bytes: int = Field(
        200_000, ge=0, description="held-back text measured per language, and training text sampled, at most"
    )
    reference_vocab_dir: str = Field("data/bpe_vocab", description="GPT-2 and cl100k vocab files to compare with")

    @field_validator("special_tokens")
    @classmethod
    def _chat_tokens_present(cls, value: list[str]) -> list[str]:
        missing = [t for t in SPECIAL_TOKENS if t not in value]
        if missing:
            raise ValueError(f"must include {missing} (the chat format's tokens); add others after them")
        if len(set(value)) != len(value):
            raise ValueError("special tokens must be unique")
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


class HeldOut:
    """Held-back text per language (capped), a capped sample of the training text, and the counts of what went
    where."""

    def __init__(self, fraction: float, max_bytes: int):
        self.fraction, self.max_bytes = fraction, max_bytes
        self.texts: dict[str, list[str]] = {}
        self.bytes: dict[str, int] = {}
        self.train_sample: list[str] = []
        self._train_sample_bytes = 0
        self.counts = {"documents": 0, "train_documents": 0, "heldout_documents": 0, "empty_documents": 0}

    def route(self, docs: Iterator[Document], include_heldout: bool) -> Iterator[str]:
        """Yield the texts to train on; keep the held-back ones (yielded too if `include_heldout`)."""
        for doc in docs:
            self.counts["documents"] += 1
            if not doc.text.strip():
                self.counts["empty_documents"] += 1
                continue
            if hash_fraction(doc.text, HELDOUT_SALT) < self.fraction:
                self.counts["heldout_documents"] += 1
                self._keep(doc)
                if not include_heldout:
                    continue
            else:
                self.counts["train_documents"] += 1
                self._sample(doc)
            yield doc.text

    def _keep(self, doc: Document) -> None:
        size = self.bytes.get(doc.language, 0)
        if size < self.max_bytes:
            self.texts.setdefault(doc.language, []).append(doc.text)
            self.bytes[doc.language] = size + len(doc.text.encode("utf-8"))

    def _sample(self, doc: Document) -> None:
        if self._train_sample_bytes < self.max_bytes:
            self.train_sample.append(doc.text)
            self._train_sample_bytes += len(doc.text.encode("utf-8"))

    def check_texts(self) -> list[str]:
        """Held-back text of every language plus the training sample: where the fast encoder is checked."""
        return [t for lang in sorted(self.texts) for t in self.texts[lang]] + self.train_sample


def compression_table(tokenizer: Tokenizer, heldout: HeldOut, vocab_dir: str) -> list[dict[str, Any]]:
    """Bytes per token of ours, GPT-2 and cl100k on each language's held-back text."""
    references = {"gpt2": gpt2_encoding(vocab_dir), "cl100k": cl100k_encoding(vocab_dir)}
    rows = []
    for lang in sorted(heldout.texts):
        texts = heldout.texts[lang]
        row: dict[str, Any] = {"language": lang, "documents": len(texts), "bytes": heldout.bytes[lang]}
        row["ours"] = bytes_per_token(texts, [len(ids) for ids in tokenizer.encode_batch(texts)])
        for name, enc in references.items():
            row[name] = bytes_per_token(texts, [len(ids) for ids in enc.encode_ordinary_batch(texts)])
        rows.append({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
    return rows


def compression_markdown(rows: list[dict[str, Any]], vocab_size: int) -> str:
    if not rows:
        return f"{vocab_size} ids. No text was held back (`heldout_fraction`), so no compression figures."
    lines = [
        f"Bytes per token on held-back text (higher is better); ours has {vocab_size} ids, GPT-2 50,257, "
        "cl100k 100,277.",
        "",
        "| language | held-back bytes | ours | GPT-2 | cl100k |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['language']} | {r['bytes']:,} | {r['ours']} | {r['gpt2']} | {r['cl100k']} |" for r in rows]
    return "\n".join(lines)


class BpeStage(Stage):
    name = "bpe"
    config_model = BpeConfig
    version = "1"

    def input_stages(self, config: Any) -> dict[str, str]:
        return upstream_documents(config)

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

        rows = compression_table(tokenizer, heldout, cfg.reference_vocab_dir)
        metrics = {}
        for r in rows:
            for name in ("ours", "gpt2", "cl100k"):
                prefix = "" if name == "ours" else f"{name}_"
                metrics[f"{prefix}bytes_per_token_{r['language']}"] = r[name]
        return StageResult(
            counts=heldout.counts,
            metrics=metrics,
            tables={"compression": rows},
            markdown=f"### Tokenizer ({cfg.kind}, encoder: {encoder})\n\n"
            + compression_markdown(rows, tokenizer.vocab_size),
            extra={
                "kind": cfg.kind,
                "encoder": encoder,
                "vocab_size": tokenizer.vocab_size,
                "eot_id": tokenizer.eot_id,
                "special_ids": tokenizer.special_ids,
            },
        )

"""The pretraining text of a `tokenize` artifact, split exactly as that stage split it: train or held out.

The tokenize stage keeps no text, only tokens, so the split is recomputed from what it read (the documents artifact
and the curated sources named in its manifest's config) with the same rule (`document_hash` or `tail`, the same
salt and fraction). Held-out text scores the base model (bits per byte, multiple choice); training text feeds the
decontamination index.

Groups: web documents by language (`web_en`, `web_zh`, ...) and curated text by language (`curated_en`, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from llm_core.store import ArtifactReader
from llm_core.tokenizer.sources import (
    TextSource,
    artifact_documents,
    hash_fraction,
    source_documents,
)
from llm_core.tokenizer.tokenize_stage import VAL_SALT


@dataclass(frozen=True)
class TextPiece:
    group: str
    text: str
    heldout: bool


def split_pieces(text: str, split: str, val_fraction: float) -> list[tuple[str, bool]]:
    """(text, held out?) pieces of one document, as the tokenize stage cuts it."""
    if split == "tail":
        cut = int(len(text) * (1 - val_fraction))
        return [(t, held) for t, held in ((text[:cut], False), (text[cut:], True)) if t]
    return [(text, hash_fraction(text, VAL_SALT) < val_fraction)]


def pretraining_pieces(tokens: ArtifactReader, documents: ArtifactReader | None) -> Iterator[TextPiece]:
    """Every piece of text the tokenize artifact `tokens` was made from, with its group and side of the split."""
    cfg = tokens.manifest.config
    split, val_fraction = cfg.get("split", "document_hash"), float(cfg.get("val_fraction", 0.0))
    streams = []
    if documents is not None:
        streams.append(("web", artifact_documents(documents)))
    for source in cfg.get("sources", []):
        streams.append(("curated", source_documents(TextSource(**source))))
    for kind, docs in streams:
        for doc in docs:
            if not doc.text.strip():
                continue
            for text, held in split_pieces(doc.text, split, val_fraction):
                yield TextPiece(f"{kind}_{doc.language}", text, held)

"""Config of the `extract` stage (pages -> documents)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from llm_core.config import StageConfig


class ExtractConfig(StageConfig):
    """trafilatura settings and the per-document bounds. All of them change which documents come out, so all
    take part in the artifact key except `batch_rows` (how many records are read at a time)."""

    timeout_s: float = Field(10.0, gt=0, description="wall-clock bound per document; over it -> extract:timeout")
    max_bytes: int = Field(5_000_000, gt=0, description="bigger bodies are rejected as extract:too_large")
    # Defaults chosen on the article extraction benchmark (bench/extraction_quality.py, BENCHMARKS.md): favouring
    # recall without the fallback extractors scores best (F1 0.964 against 0.954 for favor_precision with them) and
    # is about 1.5x faster.
    favor_precision: bool = False
    favor_recall: bool = True
    fast: bool = Field(True, description="skip trafilatura's fallback extractors (readability, jusText)")
    include_comments: bool = False
    include_tables: bool = True
    reject_boilerplate: bool = Field(
        True, description="reject texts with no sentence (menus, copyright lines) as extract:boilerplate_only"
    )
    batch_rows: int = Field(64, gt=0, description="records read per batch (memory ~ batch_rows x page size)")

    runtime_fields: ClassVar[frozenset[str]] = frozenset({"batch_rows"})

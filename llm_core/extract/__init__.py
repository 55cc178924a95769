"""Text extraction: raw pages -> documents (trafilatura, browser-like charset decoding, per-document bounds)."""

from llm_core.extract.config import ExtractConfig
from llm_core.extract.stage import ExtractStage

__all__ = ["ExtractConfig", "ExtractStage"]

"""FineWeb's line-level quality rules (Penedo et al. 2024; datatrove's FineWebQualityFilter), published thresholds.

Over the non-empty lines, drops a document when too few end in punctuation, too many are short, too many
characters sit in duplicated lines, or it is mostly a list (many newlines per word). Script-aware: CJK terminal punctuation counts,
a CJK line is short below `cjk_short_line_length` characters (a CJK character carries about as much as two Latin
ones), and words are counted as in `text.py`.
Reasons: `quality:fineweb:line_punct_ratio`, `short_line_ratio`, `char_dup_ratio`, `list_ratio`.
"""

from __future__ import annotations

from llm_core.filters.base import DocFilter, Document, FilterOutcome, FilterSettings
from llm_core.filters import text as tx
from llm_core.filters.gopher import duplicates


class FineWebConfig(FilterSettings):
    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 0.67
    short_line_length: int = 30
    cjk_short_line_length: int = 15
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3


class FineWebQualityFilter(DocFilter):
    name = "fineweb"
    reason_prefix = "quality:fineweb"
    config_model = FineWebConfig

    def __init__(self, config: FineWebConfig):
        super().__init__()
        self.c = config

    def filter(self, doc: Document) -> FilterOutcome:
        c, text = self.c, doc.text
        if not text.strip():
            return False, "empty"
        cjk = tx.is_cjk_text(text)
        lines = [line for line in text.split("\n") if line.strip()]
        ratio = sum(tx.ends_with_terminal_punctuation(line, cjk) for line in lines) / len(lines)
        doc.quality["line_punct_ratio"] = round(ratio, 3)
        if ratio < c.line_punct_thr and not (ratio == 0 and c.line_punct_exclude_zero):
            return False, "line_punct_ratio"
        short = c.cjk_short_line_length if cjk else c.short_line_length
        ratio = sum(len(line) <= short for line in lines) / len(lines)
        if ratio > c.short_line_thr:
            return False, "short_line_ratio"
        ratio = duplicates(lines)[1] / max(1, len(text.replace("\n", "")))
        if ratio > c.char_duplicates_ratio:
            return False, "char_dup_ratio"
        n_words = len(tx.tokens(text))
        if text.count("\n") / max(1, n_words) > c.new_line_ratio:
            return False, "list_ratio"
        return True

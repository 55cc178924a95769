"""Gopher's quality and repetition rules (Rae et al. 2021, table A1), with their published thresholds as defaults.

Script-aware: on CJK text (at least `cjk_min_ratio` of the letters are Han/Kana) a CJK character is one word
(see `text.py`), word counts are converted to words at `cjk_chars_per_word`, the mean-word-length rule looks only
at non-CJK words, the stop words are Chinese/Japanese function characters, and the duplicated n-gram rules use
character n-grams `cjk_ngram_scale` times longer (a Chinese word is about two characters).
Reasons: `quality:gopher:<rule>` and `quality:gopher_rep:<rule>`.
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import Field

from llm_core.filters.base import DocFilter, Document, FilterOutcome, FilterSettings
from llm_core.filters import text as tx

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
CJK_STOP_WORDS = (
    "的", "了", "是", "在", "和", "有", "不", "这", "也", "就", "都", "与", "及", "对", "为",  # Chinese
    "の", "は", "を", "が", "に", "で",  # Japanese particles
)
BULLETS = ("•", "-", "‣", "●", "▪", "◦")


class GopherQualityConfig(FilterSettings):
    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    min_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = Field(2, description="distinct stop words the text must hold")
    stop_words: list[str] = Field(default_factory=lambda: list(STOP_WORDS))
    cjk_stop_words: list[str] = Field(default_factory=lambda: list(CJK_STOP_WORDS))
    cjk_min_ratio: float = Field(0.3, ge=0, le=1, description="CJK share of letters from which a text is CJK")
    cjk_chars_per_word: float = Field(1.5, gt=0)


class GopherQualityFilter(DocFilter):
    name = "gopher_quality"
    reason_prefix = "quality:gopher"
    config_model = GopherQualityConfig

    def __init__(self, config: GopherQualityConfig):
        super().__init__()
        self.c = config
        self.stop_words = frozenset(config.stop_words)
        self.cjk_stop_words = frozenset(config.cjk_stop_words)

    def filter(self, doc: Document) -> FilterOutcome:
        c, text = self.c, doc.text
        cjk_ratio = tx.cjk_ratio(text)
        words = tx.words(text)
        cjk_words = sum(1 for w in words if tx.is_cjk_char(w))
        latin_words = [w for w in words if not tx.is_cjk_char(w)]
        n_words = len(latin_words) + cjk_words / c.cjk_chars_per_word
        doc.quality.update(word_count=round(n_words, 1), cjk_ratio=round(cjk_ratio, 3))
        if c.min_doc_words is not None and n_words < c.min_doc_words:
            return False, "word_count"
        if c.max_doc_words is not None and n_words > c.max_doc_words:
            return False, "word_count_max"

        if latin_words and cjk_ratio < c.cjk_min_ratio:
            avg = sum(len(w) for w in latin_words) / len(latin_words)
            doc.quality["avg_word_length"] = round(avg, 2)
            if c.min_avg_word_length is not None and avg < c.min_avg_word_length:
                return False, "avg_word_length"
            if c.max_avg_word_length is not None and avg > c.max_avg_word_length:
                return False, "avg_word_length_max"

        if c.max_symbol_word_ratio is not None:
            if text.count("#") / n_words > c.max_symbol_word_ratio:
                return False, "hash_ratio"
            if (text.count("...") + text.count("…")) / n_words > c.max_symbol_word_ratio:
                return False, "ellipsis_ratio"

        lines = text.splitlines() or [""]
        if c.max_bullet_lines_ratio is not None:
            if sum(line.lstrip().startswith(BULLETS) for line in lines) / len(lines) > c.max_bullet_lines_ratio:
                return False, "bullet_lines"
        if c.max_ellipsis_lines_ratio is not None:
            ends = sum(line.rstrip().endswith(("...", "…")) for line in lines)
            if ends / len(lines) > c.max_ellipsis_lines_ratio:
                return False, "ellipsis_lines"

        alpha_ratio = sum(any(ch.isalpha() for ch in w) for w in words) / len(words)
        doc.quality["alpha_words_ratio"] = round(alpha_ratio, 3)
        if c.min_alpha_words_ratio is not None and alpha_ratio < c.min_alpha_words_ratio:
            return False, "alpha_words"

        if c.min_stop_words is not None:
            if cjk_ratio >= c.cjk_min_ratio:
                stops = self.cjk_stop_words.intersection(words)
            else:
                stops = self.stop_words.intersection(w.lower() for w in latin_words)
            if len(stops) < c.min_stop_words:
                return False, "stop_words"
        return True


class GopherRepetitionConfig(FilterSettings):
    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_n_grams: list[tuple[int, float]] = Field(default_factory=lambda: [(2, 0.2), (3, 0.18), (4, 0.16)])
    dup_n_grams: list[tuple[int, float]] = Field(
        default_factory=lambda: [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]
    )
    cjk_min_ratio: float = Field(0.3, ge=0, le=1)
    cjk_ngram_scale: int = Field(2, ge=1, description="CJK character n-grams are this many times longer")


_PARAGRAPH_RE = re.compile(r"\n{2,}")
_LINES_RE = re.compile(r"\n+")


def duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items seen before, their total characters)."""
    seen: set[str] = set()
    n = chars = 0
    for item in items:
        if item in seen:
            n += 1
            chars += len(item)
        else:
            seen.add(item)
    return n, chars


def ngrams(words: list[str], n: int, sep: str) -> list[str]:
    return [sep.join(words[i : i + n]) for i in range(len(words) - n + 1)]


def top_ngram_chars(grams: list[str]) -> int:
    gram, count = Counter(grams).most_common(1)[0]
    return len(gram) * count


def duplicated_ngram_chars(grams: list[str], n: int) -> int:
    """Characters in n-grams that repeat an earlier one, without counting overlapping repeats twice."""
    seen: set[str] = set()
    chars, i = 0, 0
    while i < len(grams):
        if grams[i] in seen:
            chars += len(grams[i])
            i += n
        else:
            seen.add(grams[i])
            i += 1
    return chars


class GopherRepetitionFilter(DocFilter):
    name = "gopher_repetition"
    reason_prefix = "quality:gopher_rep"
    config_model = GopherRepetitionConfig

    def __init__(self, config: GopherRepetitionConfig):
        super().__init__()
        self.c = config

    def filter(self, doc: Document) -> FilterOutcome:
        c, text = self.c, doc.text
        if not text.strip():
            return False, "empty"
        paragraphs = _PARAGRAPH_RE.split(text.strip())
        n_dup, chars = duplicates(paragraphs)
        if c.dup_para_frac is not None and n_dup / len(paragraphs) > c.dup_para_frac:
            return False, "dup_para_frac"
        if c.dup_para_char_frac is not None and chars / len(text) > c.dup_para_char_frac:
            return False, "dup_para_char_frac"
        lines = _LINES_RE.split(text)
        n_dup, chars = duplicates(lines)
        if c.dup_line_frac is not None and n_dup / len(lines) > c.dup_line_frac:
            return False, "dup_line_frac"
        if c.dup_line_char_frac is not None and chars / len(text) > c.dup_line_char_frac:
            return False, "dup_line_char_frac"

        cjk = tx.cjk_ratio(text) >= c.cjk_min_ratio
        words = tx.words(text)
        scale, sep = (c.cjk_ngram_scale, "") if cjk else (1, " ")
        for n, frac in c.top_n_grams:
            grams = ngrams(words, n * scale, sep)
            if grams and top_ngram_chars(grams) / len(text) > frac:
                return False, f"top_{n}_gram"
        for n, frac in c.dup_n_grams:
            grams = ngrams(words, n * scale, sep)
            if grams and duplicated_ngram_chars(grams, n * scale) / len(text) > frac:
                return False, f"dup_{n}_gram"
        return True

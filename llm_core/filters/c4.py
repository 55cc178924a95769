"""C4's line cleaning (Raffel et al. 2020, as in tensorflow-datasets' c4_utils and datatrove's C4QualityFilter).

A transformation and a filter: lines with a word over `max_word_length` characters, with "javascript", with
cookie / terms-of-use phrases, with fewer than `min_words_per_line` words, or (if enabled) without terminal
punctuation are removed; the whole document is dropped for "lorem ipsum", a curly bracket, or fewer than
`min_num_sentences` sentences left. Defaults are FineWeb's settings (C4's, except that lines without terminal
punctuation are kept). Script-aware: CJK characters count as words and `。！？` end sentences.
Reasons: `quality:c4:lorem_ipsum`, `quality:c4:curly_bracket`, `quality:c4:too_few_sentences`.
"""

from __future__ import annotations

import re

from llm_core.filters.base import DocFilter, Document, FilterOutcome, FilterSettings
from llm_core.filters import text as tx

CITATION_RE = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


class C4Config(FilterSettings):
    remove_citations: bool = True
    filter_no_terminal_punct: bool = False
    min_num_sentences: int | None = 5
    min_words_per_line: int | None = 3
    max_word_length: int | None = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True


class C4QualityFilter(DocFilter):
    name = "c4"
    reason_prefix = "quality:c4"
    config_model = C4Config

    def __init__(self, config: C4Config):
        super().__init__()
        self.c = config

    def filter(self, doc: Document) -> FilterOutcome:
        c = self.c
        cjk = tx.is_cjk_text(doc.text)
        kept: list[str] = []
        sentences = 0
        for raw in doc.text.splitlines():
            line = raw.strip()
            if c.max_word_length is not None and any(len(w) > c.max_word_length for w in line.split()):
                continue
            if c.remove_citations:
                line = CITATION_RE.sub("", line)
            if c.filter_no_terminal_punct and (
                not tx.ends_with_terminal_punctuation(line, cjk) or line.endswith(("...", "…"))
            ):
                continue
            if c.min_words_per_line is not None and len(tx.words(line)) < c.min_words_per_line:
                continue
            lower = line.lower()
            if c.filter_lorem_ipsum and "lorem ipsum" in lower:
                return False, "lorem_ipsum"
            if c.filter_javascript and "javascript" in lower:
                continue
            if c.filter_curly_bracket and "{" in line:
                return False, "curly_bracket"
            if c.filter_policy and any(p in lower for p in POLICY_SUBSTRINGS):
                continue
            sentences += tx.count_sentences(line)
            kept.append(line)
        if c.min_num_sentences is not None and sentences < c.min_num_sentences:
            return False, "too_few_sentences"
        doc.text = "\n".join(kept).strip()
        return True

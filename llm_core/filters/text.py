"""Script-aware text units for the quality rules: words, lines, sentences.

English-centric pipelines split words on spaces; Chinese and Japanese have no spaces, so a whole paragraph would
count as one "word" and every good Chinese page would fail "too few words". Here a word is either a run of
non-CJK letters/digits or a single CJK character (Han, Hiragana, Katakana), and punctuation marks are separate
tokens (as nltk's word_tokenize does for English). Counting CJK characters as words is a deliberate
simplification instead of a segmenter: Chinese words average 1.5-2 characters, which the CJK-specific thresholds
account for.
"""

from __future__ import annotations

import re

CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RE = re.compile(f"[{CJK_CHARS}]")
_TOKEN_RE = re.compile(f"[{CJK_CHARS}]|[^\\W{CJK_CHARS}]+(?:['’][^\\W{CJK_CHARS}]+)*|[^\\s\\w]", re.UNICODE)
_LETTER_RE = re.compile(r"[^\W\d_]", re.UNICODE)
_SENTENCE_END_RE = re.compile(r"[.!?。！？]+[\"'”’」』)]*(?=\s|$)|[。！？]+")

# Terminal punctuation of a line, Latin (C4's and FineWeb's) and CJK.
LATIN_END_PUNCTUATION = (".", "?", "!", '"', "'")
CJK_END_PUNCTUATION = ("。", "！", "？", "”", "」", "』", "；", "：")


def tokens(text: str) -> list[str]:
    """Words and punctuation marks; each CJK character is one word."""
    return _TOKEN_RE.findall(text)


def is_punctuation(token: str) -> bool:
    return not any(c.isalnum() for c in token)


def words(text: str) -> list[str]:
    """Tokens that are not punctuation."""
    return [t for t in tokens(text) if not is_punctuation(t)]


def is_cjk_char(token: str) -> bool:
    return len(token) == 1 and _CJK_RE.match(token) is not None


def cjk_ratio(text: str) -> float:
    """Fraction of letters that are CJK characters (0 for text without letters)."""
    letters = len(_LETTER_RE.findall(text))
    return len(_CJK_RE.findall(text)) / letters if letters else 0.0


def is_cjk_text(text: str, min_ratio: float = 0.3) -> bool:
    return cjk_ratio(text) >= min_ratio


def count_sentences(line: str) -> int:
    """Sentence ends in a line (Latin `. ! ?` before a space or the end, CJK `。！？` anywhere); at least 1 for a
    non-empty line, as a line without terminal punctuation is still one unit."""
    if not line.strip():
        return 0
    return max(1, len(_SENTENCE_END_RE.findall(line)))


def ends_with_terminal_punctuation(line: str, cjk: bool) -> bool:
    line = line.rstrip()
    return line.endswith(LATIN_END_PUNCTUATION + CJK_END_PUNCTUATION if cjk else LATIN_END_PUNCTUATION)

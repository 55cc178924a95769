"""Decontamination: does an eval item overlap the training data of the model under test?

Three checks, as lm-eval-harness and the GPT-3 paper do it, plus two for short items:
- n-gram overlap: any `n`-gram (13 by default) of the item's words appears in a training text;
- exact prompt: the item's prompt, normalised (lower case, words only), equals a training prompt (user turn or
  preference prompt): what catches a short item such as "What is 3 + 4?" that has fewer than `n` words;
- entity: a named entity the item is about (a made-up person or place) appears as a whole word anywhere in the
  training text.

An index is built once per training set (pretraining text, SFT conversations, preference pairs, RL prompts) and the
indexes of one model's training data are combined (`ContaminationIndex.union`). Only hashes of n-grams are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def normalise(text: str) -> str:
    return " ".join(words(text))


def ngram_hashes(tokens: list[str], n: int) -> set[int]:
    return {hash(tuple(tokens[i:i + n])) for i in range(len(tokens) - n + 1)}


@dataclass
class ContaminationIndex:
    """n-gram hashes, normalised prompts and the lower-cased text of one model's training data."""

    n: int
    grams: set[int] = field(default_factory=set)
    prompts: set[str] = field(default_factory=set)
    texts: list[str] = field(default_factory=list)
    _joined: str | None = None

    def add_texts(self, texts: Iterable[str]) -> ContaminationIndex:
        for text in texts:
            self.grams |= ngram_hashes(words(text), self.n)
            self.texts.append(text.lower())
        self._joined = None
        return self

    def add_prompts(self, prompts: Iterable[str]) -> ContaminationIndex:
        self.prompts.update(normalise(p) for p in prompts)
        return self

    @classmethod
    def union(cls, indexes: Iterable[ContaminationIndex], n: int) -> ContaminationIndex:
        out = cls(n)
        for index in indexes:
            assert index.n == n, f"cannot combine {index.n}-gram and {n}-gram indexes"
            out.grams |= index.grams
            out.prompts |= index.prompts
            out.texts += index.texts
        return out

    def reason(self, prompt: str, reference: str = "", entity: str | None = None) -> str | None:
        """Why the item counts as contaminated, or None when it is clean."""
        if normalise(prompt) in self.prompts:
            return "exact prompt in training data"
        hits = ngram_hashes(words(f"{prompt} {reference}"), self.n) & self.grams
        if hits:
            return f"{len(hits)} shared {self.n}-gram(s) with training data"
        if entity:
            if self._joined is None:
                self._joined = "\n".join(self.texts)
            needle = entity.lower()
            # the substring scan first: a clean entity (the usual case) never reaches the slower regex
            if needle in self._joined and re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", self._joined):
                return f"entity {entity!r} occurs in training data"
        return None

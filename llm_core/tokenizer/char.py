"""Character-level tokenizer, as nanoGPT's `shakespeare_char/prepare.py`: the vocabulary is the sorted set of
characters of the training text (ids 0..n-1 in that order), followed by the special tokens.

A character outside the vocabulary cannot be encoded (`ValueError` naming it): there is no unknown token, as in
nanoGPT.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from llm_core.tokenizer.base import Tokenizer


class CharTokenizer(Tokenizer):
    def __init__(self, chars: str, special_tokens: Sequence[str]):
        if len(set(chars)) != len(chars):
            raise ValueError("character vocabulary has duplicates")
        self.chars = chars
        self._stoi = {c: i for i, c in enumerate(chars)}
        super().__init__({t: len(chars) + i for i, t in enumerate(special_tokens)})
        self._itos = {i: c for c, i in self._stoi.items()} | {i: t for t, i in self.special_ids.items()}

    @classmethod
    def train(cls, texts: Iterable[str], special_tokens: Sequence[str]) -> CharTokenizer:
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        return cls("".join(sorted(seen)), special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + len(self.special_ids)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the character vocabulary") from None

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self._itos[int(i)] for i in ids)

    def to_json(self) -> dict:
        return {"kind": "char", "chars": self.chars, "special_tokens": list(self.special_ids)}

"""Byte-level BPE: trained with HF `tokenizers`, encoded with tiktoken when that gives the same ids.

Pre-tokenisation is GPT-4's (cl100k) split regex, with numbers cut into groups of at most `max_digits` digits
(GPT-4: 3), then GPT-2's byte-to-unicode mapping, so every byte string is encodable and there is no unknown token.
The BPE model uses `ignore_merges=True` (a pre-token that is itself in the vocabulary becomes one id), as tiktoken
does; with that, tiktoken built from the trained ranks (rank = id) reproduces `tokenizers`' ids. It cannot be
guaranteed for every vocabulary (two merge paths can reach the same token), so the `bpe` stage checks it on
held-out text and records which encoder to use; `BpeTokenizer(fast=False)` always uses `tokenizers`.

Ordinary text is encoded with special tokens treated as text (`encode_special_tokens` in `tokenizers`,
`encode_ordinary` in tiktoken).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import lru_cache

import tiktoken
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from llm_core.tokenizer.base import Tokenizer


def split_pattern(max_digits: int = 3) -> str:
    """GPT-4's pre-tokenisation regex with numbers in groups of 1..max_digits digits."""
    return (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,"""
        + str(max_digits)
        + r"""}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
    )


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode characters (byte-level BPE's alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def train_bpe(
    texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str], max_digits: int = 3
) -> HFTokenizer:
    """Train a byte-level BPE on `texts`; ids: special tokens first, then the 256 bytes, then merges in order."""
    hf = HFTokenizer(models.BPE(ignore_merges=True))
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_pattern(max_digits)), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer)
    return hf


class BpeTokenizer(Tokenizer):
    """A trained byte-level BPE (a `tokenizers` JSON), with tiktoken as the fast encoder when `fast`."""

    def __init__(self, hf: HFTokenizer, fast: bool = True):
        self.hf = hf
        self.hf.encode_special_tokens = True  # special strings inside text are plain text
        specials = {tok.content: i for i, tok in hf.get_added_tokens_decoder().items() if tok.special}
        super().__init__(specials)
        self._vocab_size = max(hf.get_vocab(with_added_tokens=True).values()) + 1
        self.fast: tiktoken.Encoding | None = self.tiktoken_encoding() if fast else None

    @classmethod
    def from_json(cls, text: str, fast: bool = True) -> BpeTokenizer:
        return cls(HFTokenizer.from_str(text), fast=fast)

    def to_json(self) -> str:
        return self.hf.to_str()

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def pattern(self) -> str:
        """The pre-tokenisation regex stored in the tokenizer."""
        split = json.loads(self.hf.to_str())["pre_tokenizer"]["pretokenizers"][0]
        return split["pattern"]["Regex"]

    def tiktoken_encoding(self) -> tiktoken.Encoding:
        """tiktoken built from the trained vocabulary: rank = id, so ids match `tokenizers` (see module doc)."""
        byte_of = {c: b for b, c in bytes_to_unicode().items()}
        ranks = {
            bytes(byte_of[c] for c in token): i
            for token, i in self.hf.get_vocab(with_added_tokens=False).items()
            if token not in self.special_ids
        }
        return tiktoken.Encoding(
            name="trained-bpe", pat_str=self.pattern, mergeable_ranks=ranks, special_tokens=self.special_ids
        )

    def encode(self, text: str) -> list[int]:
        if self.fast is not None:
            return self.fast.encode_ordinary(text)
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if self.fast is not None:
            return self.fast.encode_ordinary_batch(list(texts))
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def encode_slow_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Always `tokenizers` (the reference the fast encoder is checked against)."""
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=False)

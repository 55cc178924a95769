"""Reference tokenizers for the compression report: GPT-2 and cl100k (GPT-4), loaded from local vocab files.

`vocab_dir` holds GPT-2's `encoder.json` + `vocab.bpe` and `cl100k_base.tiktoken.gz` (see data/bpe_vocab); nothing
is downloaded. Compression is measured as UTF-8 bytes per token (higher = fewer tokens for the same text).
"""

from __future__ import annotations

import base64
import gzip
import json
import posixpath
from collections.abc import Sequence

import fsspec
import tiktoken
from tiktoken_ext.openai_public import r50k_pat_str

from llm_core.tokenizer.base import ENDOFTEXT
from llm_core.tokenizer.bpe import bytes_to_unicode, split_pattern


def gpt2_encoding(vocab_dir: str) -> tiktoken.Encoding:
    """GPT-2's BPE from `encoder.json` (token -> id; ids are its merge ranks)."""
    with fsspec.open(posixpath.join(vocab_dir, "encoder.json"), "rt", encoding="utf-8") as f:
        encoder = json.load(f)
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    ranks = {bytes(byte_of[c] for c in token): i for token, i in encoder.items() if token != ENDOFTEXT}
    return tiktoken.Encoding(
        name="gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={ENDOFTEXT: encoder[ENDOFTEXT]}
    )


def cl100k_encoding(vocab_dir: str) -> tiktoken.Encoding:
    """GPT-4's cl100k_base from its `.tiktoken` file (lines `base64(token) rank`)."""
    with fsspec.open(posixpath.join(vocab_dir, "cl100k_base.tiktoken.gz"), "rb") as f:
        lines = gzip.decompress(f.read()).splitlines()
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in lines if line)}
    return tiktoken.Encoding(
        name="cl100k_base", pat_str=split_pattern(3), mergeable_ranks=ranks, special_tokens={ENDOFTEXT: 100257}
    )


def bytes_per_token(texts: Sequence[str], token_counts: Sequence[int]) -> float:
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(token_counts)
    return n_bytes / n_tokens if n_tokens else 0.0

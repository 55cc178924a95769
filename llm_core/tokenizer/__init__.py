"""Tokenizers and token shards: the `bpe` and `tokenize` stages and the API the training stages use.

Public API (everything else in this package is internal):

    from llm_core.tokenizer import load_tokenizer, TokenShards, SPECIAL_TOKENS

    tok = load_tokenizer(ctx.reader("tokenizer"))   # a `bpe` artifact's reader, or a folder path / fsspec URL,
                                                    # or a bare tokenizer.json path
    ids = tok.encode("Hello, world")                # list[int]; ordinary text never yields a special id
    batch = tok.encode_batch(["a", "b"])            # list[list[int]], parallel (tiktoken) where possible
    text = tok.decode(ids)                          # special ids render as their strings
    tok.vocab_size, tok.eot_id                      # ints; eot_id is `<|endoftext|>`
    tok.special_ids                                 # {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_sep|>": 2, ...}
    tok.encode_special("<|im_start|>")              # the single id of a special token
    tok.has_tools                                   # True when it has the tool tokens (TOOL_TOKENS)

    shards = TokenShards(ctx.reader("tokens"))      # a `tokenize` artifact
    shards.files("train"), shards.files("val")      # shard names in stream order
    shards.dtype                                    # np.dtype('<u2') or ('<u4')
    shards.memmap(name)                             # read-only np.memmap of one shard
    shards.vocab_size, shards.eot_id, shards.num_tokens("train")

Special tokens inside user text: `encode` treats `<|im_start|>` and the like written in text as ordinary
characters (tiktoken's `encode_ordinary`, `tokenizers`' `encode_special_tokens=True`; a character tokenizer
spells them out char by char), so they come out as several ordinary ids. Only `encode_special` yields special ids:
chat rendering builds `[encode_special("<|im_start|>"), *encode("user"), encode_special("<|im_sep|>"), ...]`.

Kinds (`bpe.kind`): `bpe`, a byte-level BPE (GPT-4 split regex, numbers in groups of <= 3 digits) trained with HF
`tokenizers` and encoded with tiktoken when its ids are identical (checked at training time); `char`, nanoGPT's
character-level vocabulary (sorted characters of the text, then the special tokens).
"""

from llm_core.tokenizer.artifact import load_tokenizer
from llm_core.tokenizer.base import (
    ENDOFTEXT,
    IM_END,
    IM_SEP,
    IM_START,
    SPECIAL_TOKENS,
    TOOL_DELIMITERS,
    TOOL_TOKENS,
    Tokenizer,
)
from llm_core.tokenizer.token_shards import TokenShards, token_dtype

__all__ = [
    "ENDOFTEXT",
    "IM_END",
    "IM_SEP",
    "IM_START",
    "SPECIAL_TOKENS",
    "TOOL_DELIMITERS",
    "TOOL_TOKENS",
    "TokenShards",
    "Tokenizer",
    "load_tokenizer",
    "token_dtype",
]

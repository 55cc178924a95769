"""Save a tokenizer into an artifact and load it back from an artifact, a folder or a `tokenizer.json` file.

Layout of a tokenizer artifact (the `bpe` stage):

- `tokenizer_config.json`: `{"kind": "bpe" | "char", "encoder": "tiktoken" | "tokenizers", ...}`; for `char`
  also `chars` (the vocabulary, in id order) and `special_tokens`.
- `tokenizer.json` (kind `bpe` only): the `tokenizers` JSON, loadable by any HF tokenizers client.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

import fsspec

from llm_core.store import ArtifactReader, ArtifactWriter
from llm_core.tokenizer.base import Tokenizer
from llm_core.tokenizer.bpe import BpeTokenizer
from llm_core.tokenizer.char import CharTokenizer

CONFIG_FILE = "tokenizer_config.json"
HF_FILE = "tokenizer.json"


def save_tokenizer(writer: ArtifactWriter, tokenizer: Tokenizer) -> None:
    """Write the tokenizer's files into an artifact being built."""
    if isinstance(tokenizer, BpeTokenizer):
        writer.write_bytes(HF_FILE, tokenizer.to_json().encode())
        encoder = "tiktoken" if tokenizer.fast is not None else "tokenizers"
        writer.write_json(CONFIG_FILE, {"kind": "bpe", "encoder": encoder})
    elif isinstance(tokenizer, CharTokenizer):
        writer.write_json(CONFIG_FILE, {**tokenizer.to_json(), "encoder": "python"})
    else:
        raise TypeError(f"cannot save a {type(tokenizer).__name__}")


def _tokenizer_from(read_text) -> Tokenizer:
    config = json.loads(read_text(CONFIG_FILE))
    if config["kind"] == "char":
        return CharTokenizer(config["chars"], config["special_tokens"])
    return BpeTokenizer.from_json(read_text(HF_FILE), fast=config["encoder"] == "tiktoken")


def load_tokenizer(source: ArtifactReader | str | Path) -> Tokenizer:
    """A tokenizer from a `bpe` artifact (its reader), an artifact folder (local path or fsspec URL), or a bare
    `tokenizer.json` (then encoded with `tokenizers`, since no check of tiktoken's ids came with it)."""
    if isinstance(source, ArtifactReader):

        def read_artifact_text(name: str) -> str:
            with source.open(name) as f:
                return f.read().decode("utf-8")

        return _tokenizer_from(read_artifact_text)
    path = str(source)
    if path.endswith(".json"):
        with fsspec.open(path, "rt", encoding="utf-8") as f:
            return BpeTokenizer.from_json(f.read(), fast=False)

    def read_text(name: str) -> str:
        with fsspec.open(posixpath.join(path, name), "rt", encoding="utf-8") as f:
            return f.read()

    return _tokenizer_from(read_text)

"""The text a tokenizer is trained on and the token shards are made of: documents from an upstream artifact plus
curated text files configured by path (`TextSource`), and the deterministic hash split used to hold text back.

A curated file is cut into documents by a regex (`split_on`; none = the whole file is one document), e.g. `\\n%\\n`
for fortune files or blank lines for plays. Paths are fsspec paths or globs, relative to the working directory.
A `.parquet` file is a table of documents in FineWeb's layout (FineWeb, FineWeb-edu: one document per row in a
`text` column, other columns ignored), read through Hugging Face `datasets` in streaming mode (one row group at
a time), `split_on` unused. With `split_on`, a text file is read in chunks (memory bounded by the chunk and the
longest document) and cut exactly as `re.split` would cut the whole text, provided a separator's lookahead needs
at most 4,096 characters and the regex has no capturing groups or lookbehind.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import fsspec
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from llm_core.config import StrictModel
from llm_core.data_files import hf_datasets
from llm_core.stage import Input
from llm_core.store import ArtifactReader

DOCUMENTS_GLOB = "documents/part-*.parquet"
# The documents a tokenizer stage reads: the filtered ones, else the extracted ones, else none (curated text only).
UPSTREAM_DOCUMENTS = Input(("filter", "extract"), optional=True)
UNKNOWN_LANGUAGE = "und"


class TextSource(StrictModel):
    """A curated text file (or glob of files), cut into documents."""

    name: str = Field(pattern=r"^[a-z0-9_]+$", description="short id, names the source's shard")
    path: str = Field(description="file path or glob (fsspec), relative to the working directory")
    language: str = Field("en", description="language code, for the per-language compression report")
    split_on: str | None = Field(None, description="regex cutting the text into documents; None = whole file")

    @field_validator("split_on")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as e:
                raise ValueError(f"not a valid regex: {e}") from e
        return value

    def files(self) -> list[str]:
        fs, _, paths = fsspec.get_fs_token_paths(self.path)
        paths = [p for p in paths if fs.isfile(p)]
        if not paths:
            raise FileNotFoundError(f"text source {self.name!r}: no file matches {self.path!r}")
        return sorted(paths)

    def digest(self) -> str:
        """sha256 over the source's files, so a changed file makes a new artifact key."""
        h = hashlib.sha256()
        fs = fsspec.get_fs_token_paths(self.path)[0]
        for path in self.files():
            with fs.open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        return h.hexdigest()[:16]

    def documents(self) -> Iterator[str]:
        fs = fsspec.get_fs_token_paths(self.path)[0]
        for path in self.files():
            if path.endswith(".parquet"):
                yield from parquet_texts(path, self.name)
                continue
            with fs.open(path, "rt", encoding="utf-8", errors="replace") as f:
                if self.split_on is None:
                    yield f.read()
                else:
                    yield from split_stream(iter(lambda: f.read(CHUNK_CHARS), ""), re.compile(self.split_on))


def parquet_texts(path: str, source: str) -> Iterator[str]:
    """The `text` column of a Parquet file of documents, row by row; a null text is an empty document."""
    rows = hf_datasets().load_dataset("parquet", data_files=[path], split="train", streaming=True)
    columns = rows.column_names or []
    if "text" not in columns:
        raise ValueError(f"text source {source!r}: {path} has no 'text' column (columns: {columns})")
    for row in rows.select_columns(["text"]):
        yield row["text"] or ""


CHUNK_CHARS = 1 << 22
LOOKAHEAD_CHARS = 1 << 12


def split_stream(chunks: Iterable[str], pattern: re.Pattern, lookahead: int = LOOKAHEAD_CHARS) -> Iterator[str]:
    """`pattern.split` over the concatenated chunks, holding only the unfinished document and one chunk. A match
    ending within `lookahead` characters of the buffer's end waits for more text, as it might match differently."""
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        start = 0
        for m in pattern.finditer(buffer):
            if m.end() > len(buffer) - lookahead:
                break
            yield buffer[start : m.start()]
            start = m.end()
        buffer = buffer[start:]
    start = 0
    for m in pattern.finditer(buffer):
        yield buffer[start : m.start()]
        start = m.end()
    yield buffer[start:]


class Document(NamedTuple):
    text: str
    language: str
    source: str = "documents"  # the `source` column of an artifact's row, or a curated source's name


def artifact_documents(reader: ArtifactReader, pattern: str = DOCUMENTS_GLOB) -> Iterator[Document]:
    """Documents (text, language) of a documents artifact; `language` is `und` where the artifact has none."""
    for name in reader.files(pattern):
        yield from parquet_documents(reader, name)


def parquet_documents(reader: ArtifactReader, name: str) -> Iterator[Document]:
    with reader.open(name) as f:
        present = pq.ParquetFile(f).schema_arrow.names
    columns = ["text", *(c for c in ("language", "source") if c in present)]
    for batch in reader.iter_batches(name, columns=columns, batch_size=512):
        texts = batch.column("text").to_pylist()
        langs = batch.column("language").to_pylist() if "language" in columns else [None] * len(texts)
        sources = batch.column("source").to_pylist() if "source" in columns else [None] * len(texts)
        for text, lang, source in zip(texts, langs, sources):
            yield Document(text or "", lang or UNKNOWN_LANGUAGE, source or "documents")


def source_documents(source: TextSource) -> Iterator[Document]:
    for text in source.documents():
        yield Document(text, source.language, source.name)


def hash_fraction(text: str, salt: str) -> float:
    """A deterministic number in [0, 1) per (text, salt): the same document always falls on the same side."""
    digest = hashlib.blake2b(text.encode("utf-8", errors="replace"), digest_size=8, person=salt.encode()[:16])
    return int.from_bytes(digest.digest(), "big") / 2**64


def sources_digest(sources: list[TextSource]) -> dict[str, str]:
    """Source name -> content digest, added to a stage's artifact key."""
    return {s.name: s.digest() for s in sources}

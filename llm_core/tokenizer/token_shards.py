"""Token shards: flat little-endian uint16/uint32 token arrays, `<|endoftext|>` after each document.

Layout of a `tokenize` artifact:

- `train/shard-00000.bin`, `train/shard-00001.bin`, ... and `val/shard-NNNNN.bin`: raw arrays of
  `shard_tokens` tokens each (the last of a split may be shorter), readable with `np.memmap(path, dtype)`;
  concatenated in name order they are the split's token stream.
- the manifest: counts `train_tokens`, `val_tokens`, `documents`, ...; extra `dtype` ("uint16"/"uint32"),
  `vocab_size`, `eot_id`, `tokenizer` (the `bpe/KEY` artifact the ids belong to), `shards` (split -> names).

`TokenShards(reader)` is how a trainer reads them. `ShardSink` writes a stream of tokens into fixed-size shards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import tempfile

import numpy as np

from llm_core.store import ArtifactReader, ArtifactWriter

SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32; always little-endian."""
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


def shard_name(split: str, index: int) -> str:
    return f"{split}/shard-{index:05d}.bin"


class TokenShards:
    """Read access to a `tokenize` artifact."""

    def __init__(self, reader: ArtifactReader):
        self.reader = reader
        self.manifest = reader.manifest
        extra = self.manifest.extra
        self.dtype: np.dtype = np.dtype(extra["dtype"]).newbyteorder("<")
        self.vocab_size: int = extra["vocab_size"]
        self.eot_id: int = extra["eot_id"]
        self.tokenizer: str = extra["tokenizer"]

    def files(self, split: str) -> list[str]:
        """Shard names of a split ("train" or "val"), in stream order."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return list(self.manifest.extra["shards"][split])

    def num_tokens(self, split: str) -> int:
        return self.manifest.counts[f"{split}_tokens"]

    def local_path(self, name: str) -> str:
        """A local file with the shard's bytes: the file itself on a local store, else a cached download."""
        if self.reader.store.is_local:
            return self.reader.path(name)
        ref = self.reader.ref
        root_id = hashlib.sha256(ref.root.encode()).hexdigest()[:12]
        local = os.path.join(tempfile.gettempdir(), "llm_core_token_cache", root_id, ref.stage, ref.key, name)
        if not os.path.exists(local):
            os.makedirs(os.path.dirname(local), exist_ok=True)
            tmp = f"{local}.{os.getpid()}.part"
            self.reader.get_file(name, tmp)
            os.replace(tmp, local)
        return local

    def memmap(self, name: str) -> np.memmap:
        """The shard as a read-only array (cheap: re-create it per batch rather than holding many open)."""
        return np.memmap(self.local_path(name), dtype=self.dtype, mode="r")


class ShardSink:
    """Append tokens; they land in `{split}/shard-NNNNN.bin` files of exactly `shard_tokens` tokens (the last one
    shorter), each published atomically when full or on `close`."""

    def __init__(self, writer: ArtifactWriter, split: str, shard_tokens: int, dtype: np.dtype):
        self.writer, self.split, self.dtype = writer, split, np.dtype(dtype)
        self.shard_bytes = shard_tokens * self.dtype.itemsize
        self.names: list[str] = []
        self._bytes = 0
        self._ctx: contextlib.AbstractContextManager | None = None
        self._file = None
        self._room = 0

    def write_bytes(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        self._bytes += len(view)
        while len(view):
            if self._file is None:
                self._open_next()
            take = view[: self._room]
            self._file.write(take)
            self._room -= len(take)
            view = view[len(take) :]
            if self._room == 0:
                self._close_current()

    @property
    def tokens(self) -> int:
        return self._bytes // self.dtype.itemsize

    def _open_next(self) -> None:
        name = shard_name(self.split, len(self.names))
        self._ctx = self.writer.open_atomic(name)
        self._file = self._ctx.__enter__()
        self._room = self.shard_bytes
        self.names.append(name)

    def _close_current(self) -> None:
        self._ctx.__exit__(None, None, None)
        self._ctx = self._file = None

    def close(self) -> list[str]:
        if self._file is not None:
            self._close_current()
        return self.names


def copy_into(sink: ShardSink, writer: ArtifactWriter, name: str, chunk_bytes: int = 1 << 22) -> None:
    """Stream one file of the artifact into a sink, in bounded chunks."""
    with writer.open(name) as f:
        while chunk := f.read(chunk_bytes):
            sink.write_bytes(chunk)


def part_name(split: str, shard: str) -> str:
    """Per-input-shard token stream, written by a worker before the streams are cut into fixed-size shards."""
    return posixpath.join("_parts", split, f"{shard}.bin")

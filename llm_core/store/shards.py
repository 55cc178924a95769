"""`ParquetShardWriter`: rows streamed into one Parquet file of an artifact being built."""

from __future__ import annotations

import contextlib

import pyarrow as pa
import pyarrow.parquet as pq

from llm_core.store.files import ArtifactWriter


class ParquetShardWriter:
    """Stream rows into one Parquet file of an artifact, published atomically on close."""

    def __init__(self, writer: ArtifactWriter, name: str, schema: pa.Schema, batch_rows: int = 512):
        self.name, self.schema, self.batch_rows = name, schema, batch_rows
        self._ctx = writer.open_atomic(name)
        self._file = self._ctx.__enter__()
        self._pq = pq.ParquetWriter(self._file, schema, compression="zstd")
        self._buffer: list[dict] = []
        self.rows = 0

    def write(self, row: dict) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._pq.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
            self.rows += len(self._buffer)
            self._buffer = []

    def close(self) -> None:
        self._flush()
        self._pq.close()
        self._ctx.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        with contextlib.suppress(Exception):
            self._pq.close()
        with contextlib.suppress(BaseException):
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)

    def __enter__(self) -> ParquetShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        else:
            self.abort(exc)

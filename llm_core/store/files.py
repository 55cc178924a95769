"""Access to one artifact's files: `ArtifactReader` for a committed artifact, `ArtifactWriter` for one being built.

Inside an uncommitted folder, files are written under a temporary name and renamed when complete, so a retried stage
can keep the finished ones (shards, checkpoints) and redo only the rest. A reader reads the files its manifest lists,
and a commit writes the manifest last.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import json
import math
import os
import posixpath
import uuid
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from llm_core.manifest import FileEntry, Manifest
from llm_core.store.keys import MANIFEST, RUN_RECORD, TMP_PREFIX, ArtifactRef, file_sha256

if TYPE_CHECKING:
    from llm_core.store import ArtifactStore


class _ArtifactFiles:
    def __init__(self, store: ArtifactStore, ref: ArtifactRef):
        self.store, self.ref, self.fs = store, ref, store.fs
        self.dir = store._dir(ref)

    def path(self, name: str) -> str:
        return posixpath.join(self.dir, name)

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name))

    def files(self, pattern: str = "*") -> list[str]:
        """Names (relative to the artifact) of finished files matching a glob, sorted; temp files excluded."""
        found = self.fs.find(self.dir) if self.fs.exists(self.dir) else []
        names = [posixpath.relpath(p, self.dir) for p in found]
        names = [n for n in names if not posixpath.basename(n).startswith(TMP_PREFIX)]
        return sorted(n for n in names if fnmatch.fnmatch(n, pattern))

    def open(self, name: str, mode: str = "rb") -> IO:
        return self.fs.open(self.path(name), mode)

    def read_json(self, name: str) -> Any:
        with self.open(name, "rb") as f:
            return json.loads(f.read())

    def get_file(self, name: str, local_path: str) -> str:
        self.fs.get(self.path(name), local_path)
        return local_path

    def iter_batches(
        self, pattern: str, columns: list[str] | None = None, batch_size: int = 256
    ) -> Iterator[pa.RecordBatch]:
        """Stream record batches from the Parquet files matching `pattern`, in name order."""
        for name in self.files(pattern):
            with self.open(name) as f:
                pf = pq.ParquetFile(f)
                yield from pf.iter_batches(batch_size=batch_size, columns=columns)

    def iter_rows(self, pattern: str, columns: list[str] | None = None, batch_size: int = 256) -> Iterator[dict]:
        for batch in self.iter_batches(pattern, columns, batch_size):
            yield from batch.to_pylist()

    def count_rows(self, pattern: str) -> int:
        total = 0
        for name in self.files(pattern):
            with self.open(name) as f:
                total += pq.ParquetFile(f).metadata.num_rows
        return total


class ArtifactReader(_ArtifactFiles):
    """Read access to a committed artifact: its files are the ones its manifest lists, never a folder listing, so a
    file dropped into the folder after the commit is never read."""

    @property
    def manifest(self) -> Manifest:
        return self.store.manifest(self.ref)

    def files(self, pattern: str = "*") -> list[str]:
        """Names of the files the manifest lists that match a glob, sorted."""
        return sorted(n for n in self.manifest.files if fnmatch.fnmatch(n, pattern))


class ArtifactWriter(_ArtifactFiles):
    """Write access to an artifact being built. Every file appears under its name only once complete."""

    def _tmp_path(self, name: str) -> str:
        head, base = posixpath.split(name)
        return self.path(posixpath.join(head, f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{base}"))

    def _publish(self, tmp: str, name: str) -> None:
        if self.store.is_local:
            os.replace(tmp, self.path(name))  # atomic on one filesystem
        else:
            self.fs.mv(tmp, self.path(name))  # object stores: the final put is what readers see

    @contextlib.contextmanager
    def open_atomic(self, name: str, mode: str = "wb") -> Iterator[IO]:
        """Write `name` via a temp file; it appears only if the block finishes without error."""
        tmp = self._tmp_path(name)
        self.fs.makedirs(posixpath.dirname(tmp), exist_ok=True)
        try:
            with self.fs.open(tmp, mode) as f:
                yield f
            self._publish(tmp, name)
        finally:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.open_atomic(name, "wb") as f:
            f.write(data)

    def write_json(self, name: str, obj: Any) -> None:
        self.write_bytes(name, json.dumps(obj, indent=2, ensure_ascii=False, default=str).encode())

    def write_table(self, name: str, table: pa.Table) -> None:
        with self.open_atomic(name) as f:
            pq.write_table(table, f, compression="zstd")

    def put_file(self, local_path: str, name: str) -> None:
        """Upload a finished local file (a checkpoint, a tokenizer) atomically."""
        tmp = self._tmp_path(name)
        self.fs.makedirs(posixpath.dirname(tmp), exist_ok=True)
        self.fs.put(local_path, tmp)
        self._publish(tmp, name)

    def remove(self, name: str) -> None:
        if self.exists(name):
            self.fs.rm(self.path(name), recursive=True)

    def clean_temp(self) -> int:
        """Remove temp files left by an interrupted run; returns how many."""
        found = self.fs.find(self.dir) if self.fs.exists(self.dir) else []
        stale = [p for p in found if posixpath.basename(p).startswith(TMP_PREFIX)]
        for p in stale:
            self.fs.rm(p)
        return len(stale)

    def _file_entries(self) -> dict[str, FileEntry]:
        entries = {}
        for name in self.files():
            if name in (MANIFEST, RUN_RECORD) or name.startswith("_"):
                continue  # `_shards/`, `_timings/`: bookkeeping of the build, not content
            path = self.path(name)
            entries[name] = FileEntry(size=self.fs.size(path), sha256=file_sha256(self.fs, path))
        return entries

    def commit(
        self,
        *,
        version: str,
        config: dict[str, Any],
        inputs: dict[str, ArtifactRef],
        counts: dict[str, int] | None = None,
        metrics: dict[str, float] | None = None,
        timings: dict[str, float] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Manifest:
        """Write the run record, then the manifest last, atomically: from now on the artifact exists for readers.
        Only this attempt's own files are touched (another run's temp files are left alone), and if another run
        committed first, its manifest wins and is returned."""
        if self.exists(MANIFEST):
            return self.store.manifest(self.ref)
        manifest = Manifest(
            stage=self.ref.stage,
            key=self.ref.key,
            version=version,
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(),
            config=config,
            inputs={name: str(ref) for name, ref in inputs.items()},
            files=self._file_entries(),
            counts=counts or {},
            metrics={k: (v if v is None or math.isfinite(v) else None) for k, v in (metrics or {}).items()},
            timings=timings or {},
            extra=extra or {},
        )
        self.write_bytes(RUN_RECORD, manifest.run_record().model_dump_json(indent=2, fallback=str).encode())
        self.write_bytes(MANIFEST, manifest.content_json())
        return manifest

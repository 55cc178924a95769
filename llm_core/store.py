"""The artifact store: the contract between stages.

Every stage writes its output into `{root}/{stage}/{key}/` and commits it by writing `manifest.json` last.
`root` is a local folder or any fsspec URL (`s3://bucket/prefix`), so local runs and S3/MinIO behave the same.

- `key` is a short hash of (stage, stage config, input keys, stage code version): same inputs and config give the
  same key, so a finished artifact is a cache hit.
- Inside an uncommitted folder, files are written under a temporary name and renamed when complete, so a retried
  stage can keep the finished ones (shards, checkpoints) and redo only the rest.
- Readers trust only folders that hold a manifest. Nothing is overwritten in place.

This module knows nothing of Prefect and nothing of what a stage computes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import hashlib
import json
import math
import os
import posixpath
import uuid
from collections.abc import Iterator
from typing import IO, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from llm_core import __version__

MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def artifact_key(stage: str, config: dict, input_keys: dict[str, str], version: str) -> str:
    """Content address of an artifact: 16 hex chars of sha256 over its recipe."""
    recipe = canonical_json({"stage": stage, "config": config, "inputs": input_keys, "version": version})
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


class ArtifactRef(BaseModel):
    """What tasks pass around: where an artifact lives, never its content."""

    stage: str
    key: str
    root: str

    @property
    def uri(self) -> str:
        return f"{self.root.rstrip('/')}/{self.stage}/{self.key}"

    def __str__(self) -> str:
        return f"{self.stage}/{self.key}"


class FileEntry(BaseModel):
    size: int
    sha256: str


class Manifest(BaseModel):
    """The commit marker of an artifact, and its record: files, counts, lineage, config, metrics, timings."""

    stage: str
    key: str
    version: str
    package_version: str = __version__
    created_at: str
    config: dict[str, Any]
    inputs: dict[str, str] = Field(default_factory=dict, description="input name -> 'stage/key'")
    files: dict[str, FileEntry] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, float | None] = Field(default_factory=dict, description="None: not measurable (NaN, inf)")
    timings: dict[str, float] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)


class ArtifactStore:
    """Find, read and create artifacts under one root (local path or fsspec URL)."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None):
        self.storage_options = dict(storage_options or {})
        self.fs, path = fsspec.core.url_to_fs(root, **self.storage_options)
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else tuple(self.fs.protocol)
        self.is_local = "file" in protocols
        self.root = os.path.abspath(path) if self.is_local else root.rstrip("/")
        self._path_root = self.root if self.is_local else path.rstrip("/")

    # -- locations
    def ref(self, stage: str, key: str) -> ArtifactRef:
        return ArtifactRef(stage=stage, key=key, root=self.root)

    def _dir(self, ref: ArtifactRef) -> str:
        return posixpath.join(self._path_root, ref.stage, ref.key)

    # -- queries
    def is_committed(self, ref: ArtifactRef) -> bool:
        return self.fs.exists(posixpath.join(self._dir(ref), MANIFEST))

    def get(self, stage: str, key: str) -> ArtifactRef | None:
        ref = self.ref(stage, key)
        return ref if self.is_committed(ref) else None

    def manifest(self, ref: ArtifactRef) -> Manifest:
        with self.fs.open(posixpath.join(self._dir(ref), MANIFEST), "rb") as f:
            return Manifest.model_validate_json(f.read())

    def list(self, stage: str | None = None) -> list[Manifest]:
        """All committed artifacts (of one stage if given), oldest first."""
        pattern = posixpath.join(self._path_root, stage or "*", "*", MANIFEST)
        manifests = []
        for path in self.fs.glob(pattern):
            with self.fs.open(path, "rb") as f:
                manifests.append(Manifest.model_validate_json(f.read()))
        return sorted(manifests, key=lambda m: m.created_at)

    def find(self, key_or_path: str) -> ArtifactRef:
        """Resolve 'KEY', a key prefix, or 'stage/KEY' to a committed artifact."""
        stage, _, key = key_or_path.rpartition("/")
        matches = [m for m in self.list(stage or None) if m.key.startswith(key)]
        if not matches:
            raise KeyError(f"no committed artifact matches {key_or_path!r} under {self.root}")
        if len({(m.stage, m.key) for m in matches}) > 1:
            found = ", ".join(f"{m.stage}/{m.key}" for m in matches)
            raise KeyError(f"{key_or_path!r} is ambiguous: {found}")
        return self.ref(matches[0].stage, matches[0].key)

    def latest(self, stage: str) -> ArtifactRef | None:
        manifests = self.list(stage)
        return self.ref(stage, manifests[-1].key) if manifests else None

    def lineage(self, ref: ArtifactRef) -> list[tuple[int, Manifest]]:
        """The artifact and its inputs, recursively, as (depth, manifest), depth-first."""
        out: list[tuple[int, Manifest]] = []

        def walk(r: ArtifactRef, depth: int) -> None:
            m = self.manifest(r)
            out.append((depth, m))
            for parent in m.inputs.values():
                stage, key = parent.split("/", 1)
                walk(self.ref(stage, key), depth + 1)

        walk(ref, 0)
        return out

    # -- access
    def reader(self, ref: ArtifactRef) -> ArtifactReader:
        if not self.is_committed(ref):
            raise FileNotFoundError(f"artifact {ref} has no manifest under {self.root}: it was never committed")
        return ArtifactReader(self, ref)

    def writer(self, ref: ArtifactRef) -> ArtifactWriter:
        return ArtifactWriter(self, ref)


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
    """Read access to a committed artifact."""

    @property
    def manifest(self) -> Manifest:
        return self.store.manifest(self.ref)


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
            if name == MANIFEST:
                continue
            digest = hashlib.sha256()
            size = 0
            with self.open(name) as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
            entries[name] = FileEntry(size=size, sha256=digest.hexdigest())
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
        """Write the manifest last, atomically: from now on the artifact exists for readers."""
        self.clean_temp()
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
        self.write_bytes(MANIFEST, manifest.model_dump_json(indent=2).encode())
        return manifest


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

"""The artifact store: the contract between stages.

Every stage writes its output into `{root}/{stage}/{key}/` and commits it by writing `manifest.json` last.
`root` is a local folder or any fsspec URL (`s3://bucket/prefix`), so local runs and S3/MinIO behave the same.

- Readers trust only folders that hold a manifest, and a cache hit is checked against it first (`verify`): every
  listed file present with its size, and with `full` its sha256. An artifact that fails is moved aside under
  `_invalid/` (never deleted) and rebuilt. Nothing is overwritten in place.
- The manifest holds the content (files, hashes, counts, content metrics, config, lineage); `run.json` beside it holds
  the run record (when, how long, throughput), so two runs that build the same content write the same manifest
  (see `llm_core.manifest`).
- Builders of one artifact on a local root take a lock first, so two runs on one root build it once: the first
  commit wins and the other run finds a cache hit. A commit writes only its own files.

This package knows nothing of Prefect and nothing of what a stage computes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import posixpath
import re
from collections.abc import Iterator
from typing import Any

import fsspec
from pydantic import ValidationError

from llm_core.manifest import (
    KEY_PATTERN,
    STAGE_PATTERN,
    ArtifactError,
    Manifest,
    RunRecord,
    is_carried_input,
    parse_ref,
)
from llm_core.store.files import ArtifactReader, ArtifactWriter
from llm_core.store.keys import INVALID_DIR, MANIFEST, RUN_RECORD, TMP_PREFIX, ArtifactRef, file_sha256

_TYPED_KEY_RE = re.compile(rf"^(?:({STAGE_PATTERN})/)?({KEY_PATTERN})$")

log = logging.getLogger("llm_core.store")  # records name the package, not this module


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

    def display_path(self, ref: ArtifactRef, name: str = "") -> str:
        """Where a file of an artifact is, as a user would type it (a local path or a URL)."""
        base = posixpath.join(self.root, ref.stage, ref.key) if self.is_local else ref.uri
        return posixpath.join(base, name) if name else base

    def _read_manifest(self, path: str) -> Manifest:
        """The manifest at `path` with its run record, or ArtifactError naming the file and what is wrong."""
        try:
            with self.fs.open(path, "rb") as f:
                manifest = Manifest.model_validate_json(f.read())
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise ArtifactError(f"{path}: corrupted manifest ({where}: {first['msg']})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ArtifactError(f"{path}: unreadable manifest ({type(e).__name__}: {e})") from None
        folder = posixpath.dirname(path)
        expected = (posixpath.basename(posixpath.dirname(folder)), posixpath.basename(folder))
        if (manifest.stage, manifest.key) != expected:
            named = f"{manifest.stage}/{manifest.key}"
            raise ArtifactError(f"{path}: manifest names {named}, not its folder {'/'.join(expected)}")
        return manifest.with_run_record(self._read_run_record(posixpath.join(folder, RUN_RECORD)))

    def _read_run_record(self, path: str) -> RunRecord | None:
        """The run record, or None when absent or unreadable (it is informative only; the content is checked)."""
        try:
            with self.fs.open(path, "rb") as f:
                return RunRecord.model_validate_json(f.read())
        except (OSError, ValidationError, UnicodeDecodeError):
            return None

    def manifest(self, ref: ArtifactRef) -> Manifest:
        return self._read_manifest(posixpath.join(self._dir(ref), MANIFEST))

    def list(self, stage: str | None = None, problems: list[str] | None = None) -> list[Manifest]:
        """All committed artifacts (of one stage if given), oldest first. An unreadable manifest is left out and,
        if `problems` is given, reported there (with its path)."""
        pattern = posixpath.join(self._path_root, stage or "*", "*", MANIFEST)
        manifests = []
        for path in self.fs.glob(pattern):
            if posixpath.basename(posixpath.dirname(posixpath.dirname(path))) == INVALID_DIR:
                continue
            try:
                manifests.append(self._read_manifest(path))
            except ArtifactError as e:
                log.warning("%s", e)
                if problems is not None:
                    problems.append(str(e))
        return sorted(manifests, key=lambda m: m.created_at)

    def find(self, key_or_path: str) -> ArtifactRef:
        """Resolve 'KEY', a key prefix, or 'stage/KEY' to a committed artifact. Only plain tokens are accepted
        (letters, digits, `_`, `-`; the pipeline's keys are hex), so nothing typed here names a path elsewhere."""
        match = _TYPED_KEY_RE.match(key_or_path)
        if not match:
            raise KeyError(f"{key_or_path!r} is not an artifact key: give KEY, a key prefix or stage/KEY "
                           "(letters, digits, _ and - only)")
        stage, key = match.group(1) or "", match.group(2)
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
        """The artifact and its inputs, recursively, as (depth, manifest), depth-first; inputs carried over from
        earlier nights of a corpus are not followed (`is_carried_input`)."""
        out: list[tuple[int, Manifest]] = []

        def walk(r: ArtifactRef, depth: int) -> None:
            m = self.manifest(r)
            out.append((depth, m))
            for name, parent in m.inputs.items():
                if not is_carried_input(name):
                    walk(self.ref(*parse_ref(parent)), depth + 1)

        walk(ref, 0)
        return out

    # -- access
    def reader(self, ref: ArtifactRef) -> ArtifactReader:
        if not self.is_committed(ref):
            raise FileNotFoundError(f"artifact {ref} has no manifest under {self.root}: it was never committed")
        return ArtifactReader(self, ref)

    def writer(self, ref: ArtifactRef) -> ArtifactWriter:
        return ArtifactWriter(self, ref)

    # -- trust
    def verify(self, ref: ArtifactRef, full: bool = True) -> list[str]:
        """What is wrong with a committed artifact, one line per problem naming the file (empty: it is sound).
        Always: the manifest parses and every file it lists exists with its size; `full`: and its sha256."""
        try:
            manifest = self.manifest(ref)
        except ArtifactError as e:
            return [str(e)]
        problems = []
        for name, entry in sorted(manifest.files.items()):
            path = posixpath.join(self._dir(ref), name)
            shown = self.display_path(ref, name)
            try:
                size = self.fs.size(path)
            except FileNotFoundError:
                problems.append(f"{shown}: missing (the manifest lists {entry.size} bytes)")
                continue
            if size != entry.size:
                problems.append(f"{shown}: {size} bytes, the manifest says {entry.size}")
            elif full and file_sha256(self.fs, path) != entry.sha256:
                problems.append(f"{shown}: sha256 differs from the manifest (content changed)")
        for name in self._unlisted(ref, manifest):
            problems.append(f"{self.display_path(ref, name)}: present but not in the manifest (added after the commit)")
        return problems

    def _unlisted(self, ref: ArtifactRef, manifest: Manifest) -> list[str]:
        """Content files in the artifact's folder that its manifest does not list (bookkeeping `_*` folders, the
        run record and another builder's temp files aside)."""
        folder = self._dir(ref)
        names = (posixpath.relpath(p, folder) for p in self.fs.find(folder))
        return sorted(n for n in names if n not in manifest.files and n not in (MANIFEST, RUN_RECORD)
                      and not n.startswith("_") and not posixpath.basename(n).startswith(TMP_PREFIX))

    def verify_all(self, full: bool, refs: list[ArtifactRef] | None = None) -> dict[str, list[str]]:
        """'stage/key' -> problems, for `refs` or every artifact folder holding a manifest (readable or not)."""
        if refs is None:
            found = self.fs.glob(posixpath.join(self._path_root, "*", "*", MANIFEST))
            folders = sorted(posixpath.dirname(p) for p in found)
            refs = []
            for folder in folders:
                stage, key = posixpath.basename(posixpath.dirname(folder)), posixpath.basename(folder)
                if stage != INVALID_DIR and re.fullmatch(STAGE_PATTERN, stage) and re.fullmatch(KEY_PATTERN, key):
                    refs.append(self.ref(stage, key))
        return {str(ref): self.verify(ref, full) for ref in refs}

    def full_verify(self, mode: str) -> bool:
        """`run.verify` -> whether a cache hit checks hashes: `auto` means yes on a local root, size-only elsewhere."""
        return mode == "full" or (mode == "auto" and self.is_local)

    def move_aside(self, ref: ArtifactRef, reason: str) -> str:
        """Move an artifact folder to `_invalid/{stage}/{key}-{time}/` with a `reason.txt`; returns where."""
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        target = posixpath.join(self._path_root, INVALID_DIR, ref.stage, f"{ref.key}-{stamp}")
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        if self.is_local:
            os.rename(self._dir(ref), target)
        else:
            self.fs.mv(self._dir(ref), target, recursive=True)
        with self.fs.open(posixpath.join(target, "reason.txt"), "wb") as f:
            f.write((reason.rstrip() + "\n").encode())
        return target if self.is_local else f"{self.root}/{INVALID_DIR}/{ref.stage}/{ref.key}-{stamp}"

    def trusted_manifest(self, ref: ArtifactRef, full: bool) -> Manifest | None:
        """The manifest of a committed artifact that passes `verify`, else None; one that fails is moved aside
        (and the reason logged) so that it gets rebuilt."""
        if not self.is_committed(ref):
            return None
        problems = self.verify(ref, full)
        if not problems:
            return self.manifest(ref)
        where = self.move_aside(ref, "\n".join(problems))
        log.warning("%s is invalid, moved to %s and rebuilt: %s", ref, where, "; ".join(problems))
        return None

    @contextlib.contextmanager
    def building(self, ref: ArtifactRef) -> Iterator[None]:
        """Hold the build lock of an artifact (local roots; a no-op on object stores). A second run on the same
        root waits here, then finds the first run's commit. The lock dies with its process, so a killed run never
        leaves it held."""
        if not self.is_local:
            yield
            return
        import fcntl

        folder = posixpath.join(self._path_root, ref.stage)
        os.makedirs(folder, exist_ok=True)
        with open(posixpath.join(folder, f".{ref.key}.lock"), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

"""Content fingerprints of local input files, added to artifact keys so that changed inputs give a new artifact.

A file up to `FULL_HASH_BYTES` is hashed whole; a larger one by its size and its first and last MiB (a multi-GB WARC
file would otherwise be read in full on every plan). Names are hashed relative to a root, so the same files in
another checkout give the same fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

FULL_HASH_BYTES = 64 * 2**20
EDGE_BYTES = 2**20


def files_digest(files: Iterable[Path], root: Path | None = None) -> str:
    """16 hex chars of sha256 over each file's name (relative to root; without one, its base name) and content, in
    the order given."""
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(root) if root else f.name).encode() + b"\0")
        size = f.stat().st_size
        with open(f, "rb") as stream:
            if size <= FULL_HASH_BYTES:
                digest.update(stream.read())
                continue
            digest.update(f"size:{size}".encode())
            digest.update(stream.read(EDGE_BYTES))
            stream.seek(size - EDGE_BYTES)
            digest.update(stream.read(EDGE_BYTES))
    return digest.hexdigest()[:16]


def path_digest(path: Path) -> str:
    """The fingerprint of a file, or of every file under a folder (sorted)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return files_digest(files, path if path.is_dir() else path.parent)


def local_digests(paths: Iterable[str]) -> dict[str, str]:
    """Path -> fingerprint for each path that names a local file or folder (relative to the working directory);
    anything else (a hub dataset name, a URL) maps to "not local": it is named in the key, not read."""
    return {p: path_digest(Path(p)) if Path(p).exists() else "not local" for p in paths}

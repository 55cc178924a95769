"""Local data files a stage reads beside its input artifacts: where they are found, their fingerprints, and the
Hugging Face `datasets` module that reads the JSON, Parquet and text ones.

A relative path is looked up from the working directory first, then from the project root, so the default configs
(`data/...`) work both from a checkout and from tests run anywhere. A fingerprint is the sha256 of a file, or of
every file under a folder with its name relative to the folder; a file over `FULL_HASH_BYTES` is hashed by its size
and its first and last MiB, so a multi-GB WARC file is not read in full each time a run is planned. Stages name
such paths in `Stage.data_paths`; the fingerprints join the artifact key, so edited files give a new artifact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from llm_core.config import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FULL_HASH_BYTES = 64 * 2**20
EDGE_BYTES = 2**20


def hf_datasets():
    """Hugging Face `datasets`, imported on first use (with its progress bars off): the import takes most of a
    second, and every `llmpipe` command imports the modules that read data files through the stage registry."""
    import datasets

    datasets.disable_progress_bars()
    return datasets


def resolve_data_path(path: str) -> Path:
    """An existing file or folder for a configured path, or FileNotFoundError naming both places looked at."""
    p = Path(path)
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, PROJECT_ROOT / p]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{path!r} not found (looked in {', '.join(str(c) for c in candidates)})")


def path_digest(path: Path) -> str:
    """16 hex chars of sha256 over a file, or over the names and contents of every file under a folder."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    root = path if path.is_dir() else path.parent
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(root)).encode() + b"\0")
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


def local_digests(paths: Iterable[str]) -> dict[str, str]:
    """Path -> fingerprint for each path found locally; anything else (a hub dataset name, a URL) maps to
    "not local": it is named in the key, not read."""
    out = {}
    for p in paths:
        try:
            out[p] = path_digest(resolve_data_path(p))
        except FileNotFoundError:
            out[p] = "not local"
    return out


def read_jsonl(path: str, required: Sequence[str], what: str) -> list[dict]:
    """The rows of a local JSONL file (blank lines skipped), each a JSON object with every `required` field non-empty.
    A missing file, a line that is not such an object, or a file without rows is a ConfigError naming the file as
    `what` (e.g. "eval file") and the line."""
    try:
        resolved = resolve_data_path(path)
    except FileNotFoundError as e:
        raise ConfigError(f"{what} {e}") from None
    rows = []
    for n, line in enumerate(resolved.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{what} {path}, line {n}: not valid JSON ({e.msg})") from None
        missing = [f for f in required if not isinstance(row, dict) or not str(row.get(f, "")).strip()]
        if missing:
            raise ConfigError(f"{what} {path}, line {n}: missing field(s) {missing}")
        rows.append(row)
    if not rows:
        raise ConfigError(f"{what} {path} holds no items")
    return rows

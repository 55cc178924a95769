"""Where the filters' data files (blocklists, language-ID model) are found.

A relative path is looked up from the working directory first, then from the project root, so the default config
(`data/...`) works both from a checkout and from tests run anywhere. `data_digest` fingerprints a file or folder so
that new blocklists or a new model give the stage a new artifact key.
"""

from __future__ import annotations

from pathlib import Path

from llm_core.fingerprint import path_digest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve_data_path(path: str) -> Path:
    """An existing file or folder for a configured path, or FileNotFoundError naming both places looked at."""
    p = Path(path)
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [Path.cwd() / p, PROJECT_ROOT / p]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{path!r} not found (looked in {', '.join(str(c) for c in candidates)})")


def data_digest(path: str) -> str:
    """The fingerprint of a configured data file or folder (see `llm_core.fingerprint`)."""
    return path_digest(resolve_data_path(path))

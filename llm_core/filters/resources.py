"""Where the filters' data files (blocklists, language-ID model) are found.

A relative path is looked up from the working directory first, then from the project root, so the default config
(`data/...`) works both from a checkout and from tests run anywhere.
"""

from __future__ import annotations

from pathlib import Path

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

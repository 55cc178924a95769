"""Names and addresses the store's modules share: the reserved file and folder names, an artifact's key, the
`ArtifactRef` tasks pass around, and a file's sha256.

- `key` is a short hash of (stage, stage config, input keys, stage code version): same inputs and config give the
  same key, so a finished artifact is a cache hit.
- Keys and stage names are plain tokens (`stage/key`, no path separators or dots): a key typed by a user or read from
  a manifest's `inputs` cannot reach outside the root.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, Field

from llm_core.manifest import KEY_PATTERN, STAGE_PATTERN

MANIFEST = "manifest.json"
RUN_RECORD = "run.json"
TMP_PREFIX = ".tmp-"
INVALID_DIR = "_invalid"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def artifact_key(stage: str, config: dict, input_keys: dict[str, str], version: str) -> str:
    """Content address of an artifact: 16 hex chars of sha256 over its recipe."""
    recipe = canonical_json({"stage": stage, "config": config, "inputs": input_keys, "version": version})
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


class ArtifactRef(BaseModel):
    """What tasks pass around: where an artifact lives, never its content."""

    stage: str = Field(pattern=rf"^{STAGE_PATTERN}$")
    key: str = Field(pattern=rf"^{KEY_PATTERN}$")
    root: str

    @property
    def uri(self) -> str:
        return f"{self.root.rstrip('/')}/{self.stage}/{self.key}"

    def __str__(self) -> str:
        return f"{self.stage}/{self.key}"


def file_sha256(fs: Any, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()

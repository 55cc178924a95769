"""The artifact store, the contract between stages: keys and refs, the store, artifact readers and writers."""

from llm_core.manifest import ArtifactError, Manifest, parse_ref
from llm_core.store.artifact_store import ArtifactStore
from llm_core.store.files import ArtifactReader, ArtifactWriter
from llm_core.store.keys import (
    INVALID_DIR,
    MANIFEST,
    RUN_RECORD,
    TMP_PREFIX,
    ArtifactRef,
    artifact_key,
    canonical_json,
    file_sha256,
)
from llm_core.store.shards import ParquetShardWriter

__all__ = [
    "INVALID_DIR",
    "MANIFEST",
    "RUN_RECORD",
    "TMP_PREFIX",
    "ArtifactError",
    "ArtifactReader",
    "ArtifactRef",
    "ArtifactStore",
    "ArtifactWriter",
    "Manifest",
    "ParquetShardWriter",
    "artifact_key",
    "canonical_json",
    "file_sha256",
    "parse_ref",
]

"""The ground floor of configuration: the base models every config builds on, and `ConfigError`.

Every stage owns its config model (a `StageConfig`, in its own module); `llm_core/pipeline_config.py` gathers them
with the global `run` settings into `PipelineConfig` and loads it from YAML. Nothing here imports a stage.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llm_core.store import ArtifactStore


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StageConfig(StrictModel):
    """Base of a stage's config. Every field takes part in the artifact key, except those listed in `runtime_fields`
    (how the work is done, not what it produces: worker counts, timeouts of the orchestration)."""

    enabled: bool = True

    runtime_fields: ClassVar[frozenset[str]] = frozenset()

    def key_config(self) -> dict[str, Any]:
        """The part of the config that defines the artifact (and so its key)."""
        return self.model_dump(mode="json", exclude={"enabled", *self.runtime_fields})


class RunConfig(StrictModel):
    """Settings of a whole run, shared by all stages."""

    name: str = "default"
    artifact_root: str = Field("./artifacts", description="local folder or fsspec URL such as s3://bucket/prefix")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options (S3 endpoint, keys)")
    seed: int = 1337
    workers: int = Field(0, ge=0, description="processes for per-shard work; 0 = all cores")
    task_runner: Literal["threads", "processes", "dask", "ray"] = "threads"
    task_runner_address: str | None = Field(None, description="Dask scheduler or Ray cluster address; None = local")
    retries: int = Field(2, ge=0)
    retry_delay_s: float = Field(2.0, ge=0)
    verify: Literal["auto", "size", "full"] = Field(
        "auto", description="what a cache hit checks against its manifest: size = every file there with its size, "
        "full = and its sha256; auto = full on a local root, size on an object store"
    )

    @field_validator("artifact_root")
    @classmethod
    def _root_is_named(cls, root: str) -> str:
        if not root.strip():  # an empty root would put the stages' folders in the current directory
            raise ValueError("is empty: name a folder or a URL such as s3://bucket/prefix")
        return root

    def store(self) -> ArtifactStore:
        """The artifact store of this run (its root and fsspec options)."""
        return ArtifactStore(self.artifact_root, self.storage_options)


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key path and what is wrong."""

"""Pipeline configuration: pydantic models, YAML loading and `--set key.path=value` overrides.

Every stage owns its config model (in its own module); `PipelineConfig` gathers them with the global `run`
settings. Unknown keys, wrong types and impossible values are rejected before any work starts, with the key path
in the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


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


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key path and what is wrong."""


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {path}: unknown key")
        else:
            lines.append(f"  {path}: {e['msg']} (got {e.get('input')!r})"[:300])
    return "\n".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """'a.b.c=VALUE' -> (['a','b','c'], VALUE parsed as YAML, so 2 is int, true is bool, [1,2] a list)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.path=value")
    path, _, raw = item.partition("=")
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {item!r} has an empty key path")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from e
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {k!r} is a value, not a section")
            node = child
        node[keys[-1]] = value
    return data


def _pipeline_config_class() -> type[BaseModel]:
    from llm_core.pipeline_config import PipelineConfig

    return PipelineConfig


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` laid over `base`: mappings merge key by key, anything else (values, lists) is replaced."""
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_config_file(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config as a mapping; `extends: FILE` (relative to this file) lays this file over FILE."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.resolve() in seen:
        raise ConfigError(f"config file {path} extends itself through {' -> '.join(str(p) for p in seen)}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"config file {path}: extends must be a file name, not {base!r}")
    return deep_merge(read_config_file(path.parent / base, (*seen, path.resolve())), raw)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, data: dict | None = None):
    """Load and validate a pipeline config from YAML (or a dict), with overrides applied first."""
    source = str(path) if path else "(defaults)"
    raw = read_config_file(Path(path)) if path is not None else {}
    if data:
        raw = {**raw, **data}
    raw = apply_overrides(raw, overrides or [])
    try:
        return _pipeline_config_class().model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None

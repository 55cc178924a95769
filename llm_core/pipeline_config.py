"""`PipelineConfig`: the global `run` settings plus one section per stage of the registry, in pipeline order; and
loading it from YAML (`extends: FILE` lays one file over another) with `key.path=value` overrides.

The sections are derived from `llm_core.registry.STAGES`: a stage's `name` is its section and its `config_model`
the section's model, so a stage is declared once. Unknown keys, wrong types and impossible values are rejected
before any work starts, with the key path in the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, create_model

from llm_core.config import ConfigError, RunConfig, StageConfig, StrictModel
from llm_core.registry import STAGES

MAX_YAML_BYTES = 1 << 20  # a config (or an override value) is a few KB; anything this large is not one
MAX_YAML_NODES = 100_000  # values after alias expansion: the largest real config holds a few hundred


class StageSections(StrictModel):
    """What every pipeline config can say of its stage sections, whichever stages the registry holds."""

    def section(self, stage: str) -> StageConfig:
        """The config section of stage `stage` (a name of the registry)."""
        return getattr(self, stage)

    def is_enabled(self, stage: str) -> bool:
        return self.section(stage).enabled

    @property
    def snapshot(self) -> str:
        """The crawl snapshot this run reads: a data refresh sets it, and its label joins the crawl's key."""
        return self.section("crawl").snapshot

    def on_snapshot(self, snapshot: str) -> StageSections:
        """This config with its crawl snapshot set."""
        return self.model_copy(update={"crawl": self.section("crawl").model_copy(update={"snapshot": snapshot})})


PipelineConfig = create_model(
    "PipelineConfig",
    __base__=StageSections,
    __module__=__name__,
    __doc__="The whole config of a run: `run` plus one section per stage of the registry, in pipeline order.",
    run=(RunConfig, Field(default_factory=RunConfig)),
    **{name: (stage.config_model, Field(default_factory=stage.config_model)) for name, stage in STAGES.items()},
)


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
    value = load_yaml_bounded(raw, f"override {path.strip()!r}: value") if raw.strip() else ""
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`data` with each 'key.path=value' set in it (sections are made as needed)."""
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


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` laid over `base`: mappings merge key by key, anything else (values, lists) is replaced."""
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _expanded_size_within(value: Any, budget: int) -> bool:
    """Whether `value`, with every shared (aliased) node counted each time it is reached, has at most `budget`
    nodes. Stops as soon as the budget is spent, so a billion-laughs document costs `budget` steps, not its
    expansion."""
    stack = [value]
    while stack:
        budget -= 1
        if budget < 0:
            return False
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return True


def load_yaml_bounded(text: str, source: str) -> Any:
    """YAML parsed with the safe loader within `MAX_YAML_BYTES` and `MAX_YAML_NODES` (aliases expanded): an alias
    bomb or a huge file is refused before anything walks its expansion. ConfigError names `source`."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{source} is {len(text):,} characters: larger than the {MAX_YAML_BYTES:,} a config may be")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source} is not valid YAML: {e}") from e
    if not _expanded_size_within(data, MAX_YAML_NODES):
        raise ConfigError(f"{source} expands to more than {MAX_YAML_NODES:,} values through its aliases "
                          "(&anchor/*alias): refused")
    return data


def read_config_file(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config as a mapping; `extends: FILE` (relative to this file) lays this file over FILE."""
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.resolve() in seen:
        raise ConfigError(f"config file {path} extends itself through {' -> '.join(str(p) for p in seen)}")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise ConfigError(f"config file {path} is {path.stat().st_size:,} bytes: larger than the "
                          f"{MAX_YAML_BYTES:,} a config may be")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    raw = load_yaml_bounded(text, f"config file {path}") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"config file {path}: extends must be a file name, not {base!r}")
    return deep_merge(read_config_file(path.parent / base, (*seen, path.resolve())), raw)


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, data: dict | None = None
) -> PipelineConfig:
    """Load and validate a pipeline config from YAML (or a dict), with overrides applied first."""
    source = str(path) if path else "(defaults)"
    raw = read_config_file(Path(path)) if path is not None else {}
    if data:
        raw = {**raw, **data}
    raw = apply_overrides(raw, overrides or [])
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None

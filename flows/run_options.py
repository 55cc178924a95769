"""The run form: the few parameters a person fills in to start a deployment, and how they become a pipeline config.

A deployment's form has two parameters: `options` (`RunOptions`: a config file from `configs/`, `key.path=value`
overrides, the stages to run, the crawl snapshot) and `config`, the whole config as JSON for the rare run that needs
more than overrides (left empty, `{}`, the config file is used). `resolve_config` turns both into a validated
`PipelineConfig` as the first step of every flow, so a bad override fails the run with its key path before any
stage starts.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from llm_core.config import ConfigError
from llm_core.pipeline_config import PipelineConfig, load_config
from llm_core.registry import STAGES

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIG_FILE = "tiny.yaml"

ConfigFile = Literal[tuple(sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))]  # type: ignore[valid-type]
StageName = Literal[tuple(STAGES)]  # type: ignore[valid-type]


def _config_as_json(value: Any) -> Any:
    """A `PipelineConfig` given in Python (the CLI, tests) travels as its JSON form, like the UI's."""
    return value.model_dump(mode="json") if isinstance(value, PipelineConfig) else value


ConfigJSON = Annotated[
    dict[str, Any],
    BeforeValidator(_config_as_json),
    Field(description="Advanced: the whole pipeline config as JSON (every section). Empty ({}): the config file above. "
                      "Overrides and snapshot still apply on top."),
]


class RunOptions(BaseModel):
    """What to run: a config file, changes to it, which stages, which crawl snapshot."""

    model_config = ConfigDict(extra="forbid")

    # `position` orders the fields in the UI's form (the server stores the schema with its keys reordered)
    config_file: ConfigFile = Field(DEFAULT_CONFIG_FILE, description="a pipeline config from configs/",
                                    json_schema_extra={"position": 0})
    overrides: list[str] = Field(
        default_factory=list,
        description="changes to the config, one per line as key.path=value, e.g. pretrain.max_steps=50",
        json_schema_extra={"position": 1},
    )
    stages: list[StageName] = Field(
        default_factory=list,
        description="run only these stages and what they need (empty: the flow's own stages); finished stages are "
                    "cache hits",
        json_schema_extra={"position": 2},
    )
    snapshot: str = Field(
        "", description="crawl snapshot label, e.g. 2026-11-22 (empty: the config's; data-refresh and train: "
                        "today's UTC date)",
        json_schema_extra={"position": 3},
    )


def today() -> str:
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


def resolve_config(options: RunOptions, config: dict[str, Any] | None = None,
                   default_snapshot: str | None = None) -> PipelineConfig:
    """The validated config of a run: `config` (or the config file) with the overrides, then the snapshot
    (`options.snapshot`, else `default_snapshot`, else the config's own). Raises ConfigError naming the key path."""
    if not config:
        resolved = load_config(CONFIG_DIR / options.config_file, options.overrides)
    else:
        try:
            resolved = load_config(None, options.overrides, data=config)
        except ConfigError as e:
            raise ConfigError(str(e).replace("(defaults)", "the config parameter", 1)) from None
    snapshot = options.snapshot or default_snapshot
    return resolved.on_snapshot(snapshot) if snapshot else resolved


def options_for(config_path: str | Path, overrides: list[str] | None = None) -> tuple[RunOptions, dict[str, Any]]:
    """Default form values for a config file: its name when it lives in configs/, else the whole config as JSON."""
    path = Path(config_path).resolve()
    if path.parent == CONFIG_DIR and path.name in ConfigFile.__args__:
        return RunOptions(config_file=path.name, overrides=list(overrides or [])), {}
    return RunOptions(overrides=list(overrides or [])), load_config(path).model_dump(mode="json")

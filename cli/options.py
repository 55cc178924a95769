"""What every `llmpipe` command shares: the --config / --set options and loading them with a clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from llm_core.config import ConfigError
from llm_core.pipeline_config import PipelineConfig, load_config

console = Console()

DEFAULT_CONFIG = Path("configs/tiny.yaml")
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="pipeline config (YAML)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override: key.path=value (repeatable)")]


def load_or_exit(config: Path, overrides: list[str] | None) -> PipelineConfig:
    """The validated config, or exit 2 with every problem and its key path."""
    try:
        return load_config(config, overrides or [])
    except ConfigError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None

"""`llmpipe serve`: register the deployments (flows/deployments.py) on the Prefect server and run their flow runs.

Before serving it checks that the server's UI calls the API this process uses: a server started on another port than
4200 without `PREFECT_UI_API_URL` serves a UI that calls `:4200/api` and shows no deployments, so `serve` says what
to set. Prefect is imported when the command runs, so the rest of the CLI starts fast.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Annotated

import typer


def served_ui_api_url(api_url: str, timeout_s: float = 5.0) -> str | None:
    """The API address the server's UI calls (from `/ui-settings`, the UI's own configuration), or None when the
    server does not say."""
    base = api_url.rstrip("/").removesuffix("/api")
    try:
        with urllib.request.urlopen(f"{base}/ui-settings", timeout=timeout_s) as response:
            return json.load(response).get("api_url")
    except (OSError, ValueError):
        return None


def ui_api_mismatch(api_url: str, ui_api: str | None) -> str | None:
    """What to set when the UI calls `ui_api` instead of `api_url` (None when they agree or the UI's is unknown)."""
    if not ui_api or not ui_api.startswith("http") or ui_api.rstrip("/") == api_url.rstrip("/"):
        return None
    base = api_url.rstrip("/").removesuffix("/api")
    return (f"the UI at {base} calls {ui_api}, not {api_url}: its pages will be empty. Restart the server with "
            f"PREFECT_UI_API_URL={api_url} (e.g. `PREFECT_UI_API_URL={api_url} prefect server start --port "
            f"{base.rsplit(':', 1)[-1]}`)")


def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="default parameters of the deployments")] = Path(
        "configs/tiny.yaml"
    ),
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="config override: key.path=value (repeatable)")
    ] = None,
    cron: Annotated[str, typer.Option(help="schedule of data-refresh (cron)")] = "0 2 * * *",
    timezone: Annotated[
        str, typer.Option(envvar="LLMPIPE_TIMEZONE", help="time zone of the cron schedule (IANA name)")
    ] = "UTC",
    with_train: Annotated[bool, typer.Option("--train/--no-train", help="serve `train` after data-refresh")] = True,
    crash_zombies: Annotated[
        bool, typer.Option("--crash-zombies/--no-crash-zombies", help="create the zombie-run automation")
    ] = True,
    limit: Annotated[int | None, typer.Option(help="flow runs executed at once (default: no limit)")] = None,
) -> None:
    """Serve full-pipeline, data-refresh (cron), stage and train on the server at PREFECT_API_URL until stopped."""
    from prefect import serve as prefect_serve
    from prefect.settings import PREFECT_API_URL

    from flows.deployments import build_deployments, ensure_crash_zombie_automation
    from llm_core.config import ConfigError

    if not PREFECT_API_URL.value():
        typer.echo("no Prefect server: set PREFECT_API_URL, e.g. http://127.0.0.1:4200/api after "
                   "`prefect server start`", err=True)
        raise typer.Exit(2)

    try:
        deployments = build_deployments(config, set_, cron, timezone, with_train)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    if problem := ui_api_mismatch(PREFECT_API_URL.value(), served_ui_api_url(PREFECT_API_URL.value())):
        typer.echo(f"warning: {problem}", err=True)
    if crash_zombies:
        ensure_crash_zombie_automation()
    prefect_serve(*deployments, limit=limit)

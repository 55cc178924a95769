"""The `llmpipe` entry point: Prefect's temporary server starts (cli/temporary_server.py) before the CLI is imported."""

from __future__ import annotations

import sys

from cli import temporary_server


def main() -> None:
    temporary_server.start_for(sys.argv[1:])
    from cli.main import main as run_cli

    run_cli()

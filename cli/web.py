"""`llmpipe web`: the browser chat (llm_core/web) for the model artifacts of the config's store, served by uvicorn.

Binds to 127.0.0.1 unless told otherwise; any other address needs a token (`--token` or LLMPIPE_WEB_TOKEN), which
every request must then carry. Prefect is not involved.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cli.options import DEFAULT_CONFIG, ConfigOpt, SetOpt, console, load_or_exit

TOKEN_ENV = "LLMPIPE_WEB_TOKEN"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_WEB_FEEDBACK = Path("feedback/web-rankings.parquet")


def web(
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="artifact key, key prefix or stage/key to serve (repeatable; the first is the default). "
                              "Without: the corpus's champion, else the newest rlhf model, else the newest sft "
                              "model, then every other one")] = None,
    host: Annotated[str, typer.Option(help="address to bind; other than loopback it needs a token")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    token: Annotated[str | None, typer.Option(help=f"a secret every request must carry (or ${TOKEN_ENV})")] = None,
    feedback: Annotated[Path, typer.Option(help="rankings file (Parquet) that votes, thumbs and edits go to")] =
        DEFAULT_WEB_FEEDBACK,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="longest reply a request may ask for")] = 256,
    max_active: Annotated[int, typer.Option("--max-active", min=1, help="replies written at once")] = 4,
    max_pending: Annotated[int, typer.Option("--max-pending", min=0, help="replies that may wait; 503 past")] = 16,
    no_tools: Annotated[bool, typer.Option("--no-tools", help="models answer without calling tools")] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
) -> None:
    """Chat with the model artifacts in the browser: streaming replies, tool calls shown, thumbs and edits, and an
    arena whose votes become rankings for the reward model."""
    token = token or os.environ.get(TOKEN_ENV) or None
    if host not in LOOPBACK and not token:
        console.print(f"[red]--host {host} serves beyond this machine: give --token (or set {TOKEN_ENV})[/red]",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    import uvicorn  # here, not at the top: every llmpipe command imports this module

    from llm_core.corpus.state import corpus_name
    from llm_core.web.app import create_app
    from llm_core.web.models import served_models
    from llm_core.web.requests import WebSettings

    cfg = load_or_exit(config, set_)
    store = cfg.run.store()
    try:
        models = served_models(store, model or [], corpus_name(cfg))
    except (KeyError, ValueError) as e:
        console.print(f"[red]{e.args[0] if e.args else e}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    settings = WebSettings(feedback=feedback, token=token, max_tokens=max_tokens, max_active=max_active,
                           max_pending=max_pending, tools=not no_tools)
    app = create_app(store, models, settings)
    app.state.engines.get(models[0].key)  # a model that cannot load fails here, before the server starts
    shown = "localhost" if host in LOOPBACK else host
    console.print(f"serving {len(models)} model(s), default {models[0].key}: http://{shown}:{port}/"
                  f"{'?token=...' if token else ''}  (feedback -> {feedback})", highlight=False, soft_wrap=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")

"""`llmpipe`: run the pipeline, one stage, or inspect the artifact store, from the shell.

Flows run in Prefect's ephemeral mode when no server is configured, and report to the server (and its UI) when
`PREFECT_API_URL` is set.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.artifacts_view import ls_table, show_summary
from flows.chat_cli import chat, generate
from flows.cli_options import DEFAULT_CONFIG, ConfigOpt, SetOpt, console, load_or_exit
from flows.serve import serve
from llm_core.config import ConfigError
from llm_core.pipeline import plan
from llm_core.pipeline_config import PipelineConfig
from llm_core.stage import add_progress_listener, remove_progress_listener
from llm_core.store import ArtifactStore
from tasks.run_summary import runs_since, slow_run_warnings

# A busy laptop can take longer than Prefect's default 20 s to start the ephemeral server.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

app = typer.Typer(help="llm-pipeline: crawl -> extract -> filter -> tokenizer -> pretrain -> SFT -> RM -> RLHF.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
artifacts_app = typer.Typer(help="List and inspect artifacts in the store.", no_args_is_help=True)
app.add_typer(artifacts_app, name="artifacts")


class _ProgressBars:
    """A rich progress bar per stage, fed by the stages' progress reports: training steps with the latest loss,
    sharded data stages with shards done / total and records/s (also under Prefect, whose shard tasks report as
    they finish)."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.bars: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: float, total: float, metrics: dict[str, float]) -> None:
        if stage not in self.bars:
            self.bars[stage] = self.progress.add_task(stage, total=total)
        shown = " ".join(f"{v:,.1f} {k.removesuffix('_per_s')}/s" if k.endswith("_per_s") else f"{k} {v:.4g}"
                         for k, v in metrics.items())
        self.progress.update(self.bars[stage], completed=done, total=total, description=f"{stage} {shown}")


def _with_progress(fn, *args, **kwargs):
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bars = _ProgressBars(progress)
        add_progress_listener(bars)
        try:
            return fn(*args, **kwargs)
        finally:
            remove_progress_listener(bars)


def _run_and_summarize(cfg: PipelineConfig, fn, *args, **kwargs) -> None:
    """Run a flow with progress bars, then print every stage's time and throughput beside its reference, and what
    slows this machine down."""
    started = dt.datetime.now(dt.timezone.utc)
    done = _with_progress(fn, *args, config=cfg, **kwargs)
    store = ArtifactStore(cfg.run.artifact_root, cfg.run.storage_options)
    runs = runs_since(store, done, started)
    table = Table(*runs[0].row(), title="run summary (reference: the tiny config on a quiet 2-core CPU)") if runs \
        else Table("stage")
    for r in runs:
        row = r.row()
        table.add_row(*row.values(), style="yellow" if r.slow else None)
    console.print(table)
    for warning in slow_run_warnings(cfg, done):
        console.print(f"[yellow]warning: {warning}[/yellow]")


@app.command()
def run(config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None) -> None:
    """Run the whole pipeline (every enabled stage); finished stages are cache hits."""
    from flows.pipeline import full_pipeline

    cfg = load_or_exit(config, set_)
    _run_and_summarize(cfg, full_pipeline)


@app.command()
def refresh(config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None,
            snapshot: Annotated[str | None, typer.Option(help="snapshot label (default: today)")] = None) -> None:
    """Crawl a new snapshot and carry it through to token shards (what the nightly schedule runs)."""
    from flows.pipeline import data_refresh
    from flows.run_options import RunOptions

    cfg = load_or_exit(config, set_)
    _run_and_summarize(cfg, data_refresh, options=RunOptions(snapshot=snapshot))


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help="stage name, e.g. extract")],
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    input_: Annotated[list[str] | None, typer.Option("--input", "-i", help="input=ARTIFACT_KEY (repeatable)")] = None,
) -> None:
    """Run one stage; its missing upstream stages run first (or read the artifacts named with --input)."""
    from flows.pipeline import run_stage

    cfg = load_or_exit(config, set_)
    given = {}
    for item in input_ or []:
        if "=" not in item:
            console.print(f"[red]--input {item!r} must be NAME=ARTIFACT_KEY[/red]")
            raise typer.Exit(2)
        k, _, v = item.partition("=")
        given[k] = v
    try:
        plan(cfg, [name])  # reject an unknown or disabled stage before starting Prefect
    except ConfigError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    _run_and_summarize(cfg, run_stage, name, inputs=given or None)


@app.command("plan")
def show_plan(config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None) -> None:
    """Show the stages a run would execute, their keys, and which are already done."""
    cfg = load_or_exit(config, set_)
    store = ArtifactStore(cfg.run.artifact_root, cfg.run.storage_options)
    table = Table("stage", "key", "status", "inputs")
    for name, ctx in plan(cfg).items():
        status = "[green]done[/green]" if store.is_committed(ctx.output) else "to run"
        table.add_row(name, ctx.output.key, status, ", ".join(f"{k}<-{r.stage}" for k, r in ctx.inputs.items()))
    console.print(table)


def _store(config: Path, overrides: list[str] | None) -> ArtifactStore:
    cfg = load_or_exit(config, overrides)
    return ArtifactStore(cfg.run.artifact_root, cfg.run.storage_options)


@artifacts_app.command("ls")
def artifacts_ls(
    stage_name: Annotated[str | None, typer.Option("--stage", help="only this stage")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
) -> None:
    """List committed artifacts, oldest first: stage, key, created, crawl snapshot, main count, size."""
    console.print(ls_table(_store(config, set_), stage_name))


@artifacts_app.command("show")
def artifacts_show(
    key: Annotated[str, typer.Argument(help="artifact key, key prefix, or stage/key")],
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    with_config: Annotated[bool, typer.Option("--with-config", help="also print the artifact's config")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole manifest as JSON")] = False,
) -> None:
    """One artifact: counts, metrics, lineage (back to the sources) and files; its config with --with-config."""
    store = _store(config, set_)
    try:
        ref = store.find(key)
    except KeyError as e:
        console.print(f"[red]{e.args[0]}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(store.manifest(ref).model_dump_json(indent=2))
        return
    console.print(show_summary(store, ref, with_config))


app.command()(serve)
app.command()(chat)
app.command()(generate)

if __name__ == "__main__":
    app()

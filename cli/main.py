"""`llmpipe`: run the pipeline, one stage, or inspect the artifact store, from the shell.

Flows report to the server (and its UI) when `PREFECT_API_URL` is set; without it, to Prefect's temporary server,
which the `llmpipe` entry point (cli/launch.py) starts before this module is imported (Prefect starts its own when
the app runs in-process). Only the commands that run flows (`run`, `refresh`, `stage`, `serve`) import the flow
modules and Prefect, when they run: the others start without them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli import temporary_server
from cli.artifacts_view import ls_table, show_summary
from cli.champion import promote, show_champion
from cli.chat import chat, generate
from cli.options import DEFAULT_CONFIG, ConfigOpt, SetOpt, console, load_or_exit
from cli.rank import rank
from cli.serve import serve
from cli.web import web
from llm_core.config import ConfigError
from llm_core.pipeline import data_refresh_targets, plan, preflight, with_inputs
from llm_core.pipeline_config import PipelineConfig
from llm_core.registry import STAGES
from llm_core.stage import add_progress_listener, remove_progress_listener
from llm_core.store import ArtifactStore
from tasks.run_summary import runs_since, slow_run_warnings

app = typer.Typer(help="llm-pipeline: crawl -> extract -> filter -> tokenizer -> pretrain -> SFT -> RM -> RLHF.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
artifacts_app = typer.Typer(help="List and inspect artifacts in the store.", no_args_is_help=True)
app.add_typer(artifacts_app, name="artifacts")
_debug = {"on": bool(os.environ.get("LLMPIPE_DEBUG"))}


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="show the traceback of an error")] = False) -> None:
    _debug["on"] = _debug["on"] or debug


class _NoTraceback(logging.Filter):
    """Without --debug, Prefect's log lines about a failure keep their one-line message, not the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _debug["on"] and record.exc_info:
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_tracebacks() -> None:
    names = [name for name in list(logging.Logger.manager.loggerDict) if name.startswith("prefect")]
    loggers = [logging.getLogger(name) for name in names]
    for handler in {h for lg in [logging.getLogger(), *loggers] for h in lg.handlers}:
        if not any(isinstance(f, _NoTraceback) for f in handler.filters):
            handler.addFilter(_NoTraceback())


def main() -> None:
    """The `llmpipe` command: an error is one line naming what failed (the traceback with --debug)."""
    try:
        app()
    except Exception as e:  # typer.Exit and usage errors are handled inside app(); anything else lands here
        if _debug["on"]:
            raise
        message = str(e).strip() or type(e).__name__
        console.print(f"[red]error: {message}[/red]  (llmpipe --debug ... shows the traceback)", markup=True,
                      highlight=False, soft_wrap=True)
        sys.exit(1)


def _checked(cfg: PipelineConfig, targets: list[str] | None = None, given: dict[str, str] | None = None) -> None:
    """Plan the run and check it before Prefect starts (unknown stage, --input keys, root, sources): exit 2."""
    try:
        if given:
            contexts = {targets[0]: with_inputs(cfg, targets[0], given)}
        else:
            contexts = plan(cfg, targets)
        preflight(cfg, contexts)
    except ConfigError as e:
        console.print(f"[red]{e}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


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
    _quiet_tracebacks()
    # 2 redraws a second, not rich's 10: each redraw of the stages' bars is a few ms of Python under the GIL that a
    # training step on the flow's thread waits out (about 6 ms for 17 bars)
    with Progress(*columns, console=console, transient=False, refresh_per_second=2) as progress:
        bars = _ProgressBars(progress)
        add_progress_listener(bars)
        try:
            return fn(*args, **kwargs)
        finally:
            remove_progress_listener(bars)


def _run_and_summarize(cfg: PipelineConfig, fn, *args, **kwargs) -> None:
    """Run a flow with progress bars, then print every stage's time and throughput beside its reference, and what
    slows this machine down: judged by the load before the run, as the flow judges it (the load after it counts the
    run's own work and would blame other jobs for it)."""
    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()[0]
    temporary_server.use_started_server()
    done = _with_progress(fn, *args, config=cfg, **kwargs)
    store = cfg.run.store()
    runs = runs_since(store, done, started)
    table = Table(*runs[0].row(), title="run summary (reference: the tiny config on a quiet 2-core CPU)") if runs \
        else Table("stage")
    for r in runs:
        row = r.row()
        table.add_row(*row.values(), style="yellow" if r.slow else None)
    console.print(table)
    for warning in slow_run_warnings(cfg, done, load=load_before):
        console.print(f"[yellow]warning: {warning}[/yellow]")


@app.command()
def run(config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None) -> None:
    """Run the whole pipeline (every enabled stage); finished stages are cache hits."""
    from flows.pipeline import full_pipeline

    cfg = load_or_exit(config, set_)
    _checked(cfg)
    _run_and_summarize(cfg, full_pipeline)


@app.command()
def refresh(config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None,
            snapshot: Annotated[str | None, typer.Option(help="snapshot label (default: today)")] = None) -> None:
    """Crawl a new snapshot and add it to its corpus, through to token shards (what the nightly schedule runs)."""
    from flows.pipeline import data_refresh
    from flows.run_options import RunOptions

    cfg = load_or_exit(config, set_)
    _checked(cfg, data_refresh_targets())
    _run_and_summarize(cfg, data_refresh, options=RunOptions(snapshot=snapshot))


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help="stage name, e.g. extract")],
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    input_: Annotated[list[str] | None, typer.Option("--input", "-i", help="input=ARTIFACT_KEY (repeatable)")] = None,
) -> None:
    """Run one stage; its missing upstream stages run first (or read the artifacts named with --input)."""
    from flows.pipeline import one_stage

    cfg = load_or_exit(config, set_)
    given = {}
    for item in input_ or []:
        if "=" not in item:
            console.print(f"[red]--input {item!r} must be NAME=ARTIFACT_KEY[/red]")
            raise typer.Exit(2)
        k, _, v = item.partition("=")
        given[k] = v
    _checked(cfg, [name], given)  # unknown or disabled stage, bad --input, root, sources: before starting Prefect
    _run_and_summarize(cfg, one_stage, name, inputs=given or None)


@app.command("plan")
def show_plan(config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None) -> None:
    """Show the stages a run would execute, their keys, and which are already done."""
    cfg = load_or_exit(config, set_)
    store = cfg.run.store()
    table = Table("stage", "key", "status", "inputs")
    for name, ctx in plan(cfg).items():
        problems = store.verify(ctx.output, full=False) if store.is_committed(ctx.output) else None
        status = ("to run" if problems is None else "[red]invalid: rebuilt on run[/red]" if problems
                  else "[green]done[/green]")
        table.add_row(name, ctx.output.key, status, ", ".join(f"{k}<-{r.stage}" for k, r in ctx.inputs.items()))
    console.print(table)


def _store(config: Path, overrides: list[str] | None) -> ArtifactStore:
    return load_or_exit(config, overrides).run.store()


@artifacts_app.command("ls")
def artifacts_ls(
    stage_name: Annotated[str | None, typer.Option("--stage", help="only this stage")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
) -> None:
    """List committed artifacts, oldest first: stage, key, created, crawl snapshot, main count, size."""
    if stage_name is not None and stage_name not in STAGES:
        console.print(f"[red]--stage {stage_name!r} is not a stage; stages are {', '.join(STAGES)}[/red]",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(2)
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


@artifacts_app.command("verify")
def artifacts_verify(
    key: Annotated[str | None, typer.Argument(help="artifact key, key prefix or stage/key")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every artifact of the store")] = False,
    size_only: Annotated[bool, typer.Option("--size-only", help="check sizes, not sha256")] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
) -> None:
    """Check artifacts against their manifests (every file there, its size and sha256); exit 1 if any is invalid.
    Nothing is moved: a run moves an invalid artifact aside (under _invalid/) and rebuilds it."""
    if (key is None) == (not all_):
        console.print("[red]give an artifact KEY or --all[/red]")
        raise typer.Exit(2)
    store = _store(config, set_)
    try:
        refs = [store.find(key)] if key else None
    except KeyError as e:
        console.print(f"[red]{e.args[0]}[/red]")
        raise typer.Exit(1) from None
    report = store.verify_all(not size_only, refs)
    for name, problems in report.items():
        console.print(f"[red]invalid[/red] {name}" if problems else f"[green]ok[/green] {name}", highlight=False)
        for problem in problems:
            console.print(f"  {problem}", highlight=False, soft_wrap=True)
    bad = sum(1 for p in report.values() if p)
    console.print(f"{len(report)} artifacts checked ({'size' if size_only else 'size and sha256'}), {bad} invalid")
    if bad:
        raise typer.Exit(1)


app.command()(serve)
app.command()(chat)
app.command()(generate)
app.command()(rank)
app.command()(web)
app.command("champion")(show_champion)
app.command()(promote)

if __name__ == "__main__":
    main()

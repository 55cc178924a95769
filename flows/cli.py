"""`llmpipe`: run the pipeline, one stage, or inspect the artifact store, from the shell.

Flows run in Prefect's ephemeral mode when no server is configured, and report to the server (and its UI) when
`PREFECT_API_URL` is set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.tree import Tree

from flows.chat_cli import chat, generate
from flows.cli_options import DEFAULT_CONFIG, ConfigOpt, SetOpt, console, load_or_exit
from flows.serve import serve
from llm_core.config import ConfigError
from llm_core.pipeline import plan
from llm_core.stage import add_progress_listener, remove_progress_listener
from llm_core.store import ArtifactStore

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A busy laptop can take longer than Prefect's default 20 s to start the ephemeral server.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

app = typer.Typer(help="llm-pipeline: crawl -> extract -> filter -> tokenizer -> pretrain -> SFT -> RM -> RLHF.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
artifacts_app = typer.Typer(help="List and inspect artifacts in the store.", no_args_is_help=True)
app.add_typer(artifacts_app, name="artifacts")


class _ProgressBars:
    """A rich progress bar per stage, fed by the stages' progress reports."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.bars: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: float, total: float, metrics: dict[str, float]) -> None:
        if stage not in self.bars:
            self.bars[stage] = self.progress.add_task(stage, total=total)
        shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
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


def _print_done(done: dict[str, str]) -> None:
    table = Table("stage", "artifact")
    for stage, ref in done.items():
        table.add_row(stage, ref)
    console.print(table)


@app.command()
def run(config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None) -> None:
    """Run the whole pipeline (every enabled stage); finished stages are cache hits."""
    from flows.pipeline import full_pipeline

    cfg = load_or_exit(config, set_)
    _print_done(_with_progress(full_pipeline, cfg))


@app.command()
def refresh(config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None,
            snapshot: Annotated[str | None, typer.Option(help="snapshot label (default: today)")] = None) -> None:
    """Crawl a new snapshot and carry it through to token shards (what the nightly schedule runs)."""
    from flows.pipeline import data_refresh

    cfg = load_or_exit(config, set_)
    _print_done(_with_progress(data_refresh, cfg, snapshot))


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
    _print_done(_with_progress(run_stage, name, cfg, given or None))


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
    """List committed artifacts, oldest first."""
    store = _store(config, set_)
    table = Table("stage", "key", "created", "files", "counts")
    for m in store.list(stage_name):
        counts = ", ".join(f"{k}={v}" for k, v in list(m.counts.items())[:4])
        table.add_row(m.stage, m.key, m.created_at[:19], str(len(m.files)), counts)
    console.print(table)


@artifacts_app.command("show")
def artifacts_show(
    key: Annotated[str, typer.Argument(help="artifact key, key prefix, or stage/key")],
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
) -> None:
    """Files, counts, metrics, config and lineage (back to the sources) of one artifact."""
    store = _store(config, set_)
    try:
        ref = store.find(key)
    except KeyError as e:
        console.print(f"[red]{e.args[0]}[/red]")
        raise typer.Exit(1) from None
    m = store.manifest(ref)
    console.print(f"[bold]{m.stage}/{m.key}[/bold]  {ref.uri}\ncreated {m.created_at}, version {m.version}, "
                  f"package {m.package_version}, {m.timings.get('seconds', 0):.1f} s")
    for title, values in (("counts", m.counts), ("metrics", m.metrics)):
        if values:
            table = Table(title, "value", title_justify="left")
            for k, v in values.items():
                table.add_row(k, "n/a" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:.6g}")
            console.print(table)
    files = Table("file", "bytes", "sha256")
    for name, entry in m.files.items():
        files.add_row(name, f"{entry.size:,}", entry.sha256[:16])
    console.print(files)
    console.print("config:", m.config)
    tree = Tree("lineage")
    nodes = {0: tree}
    for depth, parent in store.lineage(ref):
        nodes[depth + 1] = nodes[depth].add(f"{parent.stage}/{parent.key}  {parent.created_at[:19]}")
    console.print(tree)


app.command()(serve)
app.command()(chat)
app.command()(generate)

if __name__ == "__main__":
    app()

"""`llmpipe rank`: rank the SFT model's answers in the terminal (the rank stage with `labeler: cli`).

Each prompt is shown with its K answers side by side; type the letters best first (`C A B E D`, `C > A = B > E > D`
with `=` for a tie), `s` to skip, `q` to stop. Every answered prompt is saved at once into the uncommitted artifact,
so `llmpipe rank` again goes on where it stopped; the artifact is committed when every prompt has an answer. The run
then finds it as the `rank` stage's output when the config says `rank.labeler: cli` (and `rank.enabled: true`).
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.columns import Columns
from rich.panel import Panel

from cli.options import DEFAULT_CONFIG, ConfigOpt, SetOpt, console, load_or_exit
from llm_core.config import ConfigError
from llm_core.pipeline import plan, with_inputs
from llm_core.preference.rank_stage import rank_prompts
from llm_core.preference.rankings import Judgement, RankingError, RankItem, answer_label, parse_ranking
from llm_core.registry import STAGES
from llm_core.stage import commit_stage

CLI_OVERRIDES = ["rank.enabled=true", "rank.labeler=cli", "rank.batch_size=1"]


class Stopped(Exception):
    """The person typed q: what is answered so far is kept."""


def ask(item: RankItem, number: int, total: int) -> Judgement:
    """Show one prompt and its answers side by side; read a ranking (again until it is usable), s or q."""
    console.rule(f"prompt {number} of {total}")
    console.print(item.prompt[-1]["content"], markup=False, highlight=False)
    panels = [Panel(a, title=answer_label(i), expand=True) for i, a in enumerate(item.answers)]
    console.print(Columns(panels, equal=True, expand=True))
    while True:
        text = console.input("ranking best first (e.g. C A B, '=' for a tie), s = skip, q = stop: ").strip()
        if text.lower() == "q":
            raise Stopped
        if text.lower() == "s":
            return Judgement("skipped", labeler="cli", comment=console.input("comment (optional): ").strip())
        try:
            return Judgement("ranked", parse_ranking(text, len(item.answers)), "cli")
        except RankingError as e:
            console.print(f"[red]{e}[/red]")


def rank(
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    input_: Annotated[list[str] | None, typer.Option("--input", "-i",
                                                     help="sft=KEY / tokenizer=KEY: rank another model's answers")] = None,
) -> None:
    """Rank the SFT model's answers in the terminal; stop any time (q), run again to go on."""
    cfg = load_or_exit(config, [*(set_ or []), *CLI_OVERRIDES])
    bad = [item for item in input_ or [] if "=" not in item]
    if bad:
        console.print(f"[red]--input {bad[0]!r} must be NAME=ARTIFACT_KEY (sft=KEY, tokenizer=KEY)[/red]")
        raise typer.Exit(2)
    given = dict(item.split("=", 1) for item in input_ or [])
    try:
        ctx = with_inputs(cfg, "rank", given) if given else plan(cfg, ["rank"])["rank"]
    except (ConfigError, KeyError) as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    store = ctx.store()
    if store.is_committed(ctx.output):
        console.print(f"{ctx.output} is already ranked and committed")
        return
    missing = [str(ref) for ref in ctx.inputs.values() if not store.is_committed(ref)]
    if missing:
        console.print(f"[red]rank needs {', '.join(missing)}: run `llmpipe stage sft` first[/red]")
        raise typer.Exit(2)
    started = time.time()
    try:
        result = rank_prompts(ctx, lambda items, b, n: [ask(items[0], b + 1, n)])
    except Stopped:
        console.print(f"stopped; what you ranked is kept in {ctx.output.uri}: run `llmpipe rank` again to go on")
        return
    manifest = commit_stage(STAGES["rank"], ctx, result, time.time() - started)
    console.print(f"committed {ctx.output}: {manifest.counts}\nuse it in a run with "
                  "`--set rank.enabled=true --set rank.labeler=cli` (or set both in the config)")

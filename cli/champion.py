"""`llmpipe champion` (which model of the corpus people use, and why) and `llmpipe promote KEY` (make a model the
champion by hand, recorded in the corpus's decision log beside the automatic decisions)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.options import DEFAULT_CONFIG, ConfigOpt, SetOpt, console, load_or_exit
from llm_core.corpus.champion import champion, champion_key, chat_model, decisions, promote_by_hand
from llm_core.corpus.state import corpus_name

CorpusOpt = Annotated[str | None, typer.Option("--corpus", help="corpus name (default: corpus.name, else run.name)")]


def show_champion(config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None, corpus: CorpusOpt = None,
                  history: Annotated[bool, typer.Option("--history", help="every decision, oldest first")] = False
                  ) -> None:
    """Print the corpus's champion (its chat model's key) and why it is champion."""
    cfg = load_or_exit(config, set_)
    store, name = cfg.run.store(), corpus or corpus_name(cfg)
    current = champion(store, name)
    if history:
        table = Table("#", "snapshot", "decision", "chat model", "by", "reasons")
        for d in decisions(store, name):
            table.add_row(str(d["seq"]), str(d.get("snapshot") or "–"), "promoted" if d["promoted"] else "refused",
                          str(chat_model(d)), str(d.get("by")), "; ".join(d.get("reasons", [])))
        console.print(table)
    if current is None:
        console.print(f"corpus {name!r} has no champion yet under {store.root}: a train run promotes its first model")
        raise typer.Exit(1)
    console.print(champion_key(store, name), highlight=False)
    night = f"snapshot {current['snapshot']}" if current.get("snapshot") else "by hand"
    console.print(f"champion of corpus {name!r} since decision {current['seq']} ({night}, {current['decided_at']}, "
                  f"by {current.get('by')}): {'; '.join(current.get('reasons', []))}", highlight=False,
                  soft_wrap=True)


def promote(key: Annotated[str, typer.Argument(help="model artifact: key, key prefix or stage/key")],
            config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None, corpus: CorpusOpt = None,
            reason: Annotated[str, typer.Option(help="why, kept in the decision log")] = "promoted by hand") -> None:
    """Make a model (pretrain, sft or rlhf artifact) the corpus's champion, overriding the eval gate."""
    cfg = load_or_exit(config, set_)
    store, name = cfg.run.store(), corpus or corpus_name(cfg)
    try:
        record = promote_by_hand(store, name, key, reason)
    except (KeyError, ValueError) as e:
        console.print(f"[red]{e.args[0] if e.args else e}[/red]")
        raise typer.Exit(2) from None
    console.print(f"{chat_model(record)} is the champion of corpus {name!r} (decision {record['seq']})",
                  highlight=False)

"""`llmpipe chat` (talk to a model artifact, streaming, multi-turn, with a system message) and `llmpipe generate`
(a prompts file in, JSONL out). Models are found by artifact key (or key prefix, or 'stage/key') in the store of
the config; the tokenizer comes from the model's lineage.

In the chat, `/good` and `/bad [a better answer]` rate the last reply; ratings go to a rankings file (`--feedback`,
the `rankings` format), which a `reward_data` source `{kind: rankings, path: ...}` turns into preference data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from llm_core.chat.engine import Engine, SamplingParams
from llm_core.chat.template import Message, render_prompt
from llm_core.post.model_io import load_chat_model
from llm_core.post.rankings import append_rankings, chat_feedback_row
from flows.cli_options import DEFAULT_CONFIG, ConfigOpt, SetOpt, console, load_or_exit


ModelOpt = Annotated[str, typer.Option("--model", "-m",
                                       help="artifact key, key prefix or stage/key (pretrain, sft, rlhf)")]
TemperatureOpt = Annotated[float, typer.Option(help="0 = greedy")]
TopKOpt = Annotated[int | None, typer.Option("--top-k")]
TopPOpt = Annotated[float | None, typer.Option("--top-p")]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens")]
SeedOpt = Annotated[int | None, typer.Option(help="fix the sampling")]
FeedbackOpt = Annotated[Path, typer.Option(help="rankings file (Parquet) that /good and /bad add to")]
DEFAULT_FEEDBACK = Path("feedback/chat-rankings.parquet")


def _engine(model: str, config: Path, overrides: list[str] | None) -> tuple[Engine, str]:
    cfg = load_or_exit(config, overrides)
    store = cfg.run.store()
    try:
        gpt, tokenizer, name = load_chat_model(store, model)
    except (KeyError, ValueError) as e:
        console.print(f"[red]{e.args[0] if e.args else e}[/red]")
        raise typer.Exit(2) from None
    return Engine(gpt, tokenizer), name


def stream_reply(engine: Engine, messages: list[Message], params: SamplingParams, seed: int | None) -> str:
    """Print the reply as it is sampled (whole characters only) and return it."""
    ids: list[int] = []
    shown = ""
    for token in engine.stream(render_prompt(engine.tokenizer, messages), params, seed):
        ids.append(token)
        text = engine.tokenizer.decode(ids)
        if not text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for its next byte
            console.print(text[len(shown):], end="", markup=False, highlight=False)
            shown = text
    console.print()
    return engine.tokenizer.decode(ids)


def chat(
    model: ModelOpt,
    system: Annotated[str, typer.Option(help="system message ('' for none)")] = "You are a helpful assistant.",
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    temperature: TemperatureOpt = 0.7,
    top_k: TopKOpt = 50,
    top_p: TopPOpt = 0.95,
    max_tokens: MaxTokensOpt = 256,
    seed: SeedOpt = None,
    feedback: FeedbackOpt = DEFAULT_FEEDBACK,
) -> None:
    """Talk to a model: multi-turn, replies streamed as they are sampled. /good or /bad [better answer] rates the
    last reply, /reset starts over, /exit (or Ctrl-D) leaves."""
    engine, name = _engine(model, config, set_)
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p)
    start: list[Message] = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    console.print(f"[bold]{name}[/bold]: /good or /bad [better answer] rates a reply, /reset starts over, /exit leaves")
    while True:
        try:
            text = console.input("[bold green]you>[/bold green] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if text == "/exit":
            return
        if text == "/reset":
            messages = list(start)
            continue
        if not text:
            continue
        if text.split(" ", 1)[0] in ("/good", "/bad"):
            rate_last_reply(messages, text, feedback)
            continue
        messages.append({"role": "user", "content": text})
        console.print("[bold blue]assistant>[/bold blue] ", end="")
        messages.append({"role": "assistant", "content": stream_reply(engine, messages, params, seed)})


def rate_last_reply(messages: list[Message], command: str, feedback: Path) -> None:
    """Store `/good` or `/bad [better answer]` about the last reply as a rankings row."""
    if not messages or messages[-1]["role"] != "assistant":
        console.print("[yellow]no reply to rate yet[/yellow]")
        return
    verb, _, better = command.partition(" ")
    row = chat_feedback_row(messages[:-1], messages[-1]["content"], verb == "/good", better or None)
    total = append_rankings(feedback, [row])
    console.print(f"[dim]{verb[1:]} reply saved to {feedback} ({total} rows)[/dim]")


def read_prompts(path: Path) -> list[list[Message]]:
    """JSONL of strings, of {"prompt": ...} or of {"messages": [...]}; or plain text, one prompt per line."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            item = line
        if isinstance(item, dict) and "messages" in item:
            out.append(list(item["messages"]))
        else:
            out.append([{"role": "user", "content": item["prompt"] if isinstance(item, dict) else str(item)}])
    return out


def generate(
    model: ModelOpt,
    prompts: Annotated[Path, typer.Option("--prompts", "-p", help="JSONL (strings, prompt or messages) or text")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL output, one line per reply")],
    n: Annotated[int, typer.Option("-n", help="replies per prompt")] = 1,
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    temperature: TemperatureOpt = 0.7,
    top_k: TopKOpt = 50,
    top_p: TopPOpt = 0.95,
    max_tokens: MaxTokensOpt = 256,
    seed: SeedOpt = 0,
) -> None:
    """Answer every prompt of a file (n replies each, batched) into a JSONL file."""
    if not prompts.is_file():
        console.print(f"[red]--prompts {prompts}: no such file[/red]", soft_wrap=True)
        raise typer.Exit(2)
    conversations = read_prompts(prompts)
    engine, name = _engine(model, config, set_)
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p)
    results = engine.generate([render_prompt(engine.tokenizer, c) for c in conversations], params, n=n, seed=seed)
    with out.open("w", encoding="utf-8") as f:
        for conversation, replies in zip(conversations, results):
            for i, c in enumerate(replies):
                f.write(json.dumps({"model": name, "messages": conversation, "sample": i, "reply": c.text,
                                    "finished": c.finished, "tokens": len(c.ids)}, ensure_ascii=False) + "\n")
    console.print(f"{sum(len(r) for r in results)} replies to {len(conversations)} prompts -> {out}")

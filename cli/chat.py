"""`llmpipe chat` (talk to a model artifact, streaming, multi-turn, with a system message) and `llmpipe generate`
(a prompts file in, JSONL out). Models are found by artifact key (or key prefix, or 'stage/key') in the store of
the config; the tokenizer comes from the model's lineage.

In the chat the model may call tools when its tokenizer has the tool tokens (`--no-tools` turns them off): the
Python tool always, and the search tool when an `index` artifact was built from the documents the model was trained
on. Calls and their outputs are printed, dim and in brackets, as they happen.

In the chat, `/good` and `/bad [a better answer]` rate the last reply; ratings go to a rankings file (`--feedback`,
the `rankings` format), which a `reward_data` source `{kind: rankings, path: ...}` turns into preference data."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.options import DEFAULT_CONFIG, ConfigOpt, SetOpt, console, load_or_exit
from llm_core.chat.chat_model import chat_tools, load_chat_model
from llm_core.chat.engine import Engine, SamplingParams
from llm_core.chat.stream_text import Piece, ReplyText
from llm_core.chat.template import Message, render_prompt
from llm_core.corpus.champion import champion_key
from llm_core.corpus.state import corpus_name
from llm_core.preference.rankings import record_chat_feedback

ModelOpt = Annotated[str, typer.Option("--model", "-m",
                                       help="artifact key, key prefix or stage/key (pretrain, sft, rlhf), or "
                                            "'champion': the champion of the config's corpus")]
SeedOpt = Annotated[int | None, typer.Option(help="fix the sampling")]
NoToolsOpt = Annotated[bool, typer.Option("--no-tools", help="the model answers without calling tools")]
FeedbackOpt = Annotated[Path, typer.Option(help="rankings file (Parquet) that /good and /bad add to")]
DEFAULT_FEEDBACK = Path("feedback/chat-rankings.parquet")

# The sampling options of every command that samples, declared once (`with_sampling_options`).
SAMPLING_OPTIONS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
    for name, default, annotation in [
        ("temperature", 0.7, Annotated[float, typer.Option(min=0, help="0 = greedy")]),
        ("top_k", 50, Annotated[int | None, typer.Option("--top-k", min=1)]),
        ("top_p", 0.95, Annotated[float | None, typer.Option("--top-p", min=0, max=1)]),
        ("max_tokens", 256, Annotated[int, typer.Option("--max-tokens", min=1, help="per reply, tool outputs included")]),
    ]
]


def with_sampling_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the options --temperature, --top-k, --top-p and --max-tokens; it receives them as one
    `sampling: SamplingParams` argument."""
    signature = inspect.signature(command, eval_str=True)
    kept = [p for name, p in signature.parameters.items() if name != "sampling"]

    @functools.wraps(command)
    def wrapper(*args: Any, temperature: float, top_k: int | None, top_p: float | None, max_tokens: int,
                **kwargs: Any) -> Any:
        sampling = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p)
        return command(*args, sampling=sampling, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*kept, *SAMPLING_OPTIONS])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in wrapper.__signature__.parameters.values()}
    return wrapper


def _engine(model: str, config: Path, overrides: list[str] | None, tools: bool = False) -> tuple[Engine, str]:
    cfg = load_or_exit(config, overrides)
    store = cfg.run.store()
    if model == "champion":
        model = champion_key(store, corpus_name(cfg)) or ""
        if not model:
            console.print(f"[red]corpus {corpus_name(cfg)!r} has no champion under {store.root}: run a train first, "
                          "or `llmpipe promote KEY`[/red]")
            raise typer.Exit(2)
    try:
        gpt, tokenizer, name = load_chat_model(store, model)
    except (KeyError, ValueError) as e:
        console.print(f"[red]{e.args[0] if e.args else e}[/red]")
        raise typer.Exit(2) from None
    return Engine(gpt, tokenizer, tools=chat_tools(store, name) if tools and tokenizer.has_tools else ()), name


def print_piece(piece: Piece) -> None:
    if piece.text:
        console.print(piece.text, end="", markup=False, highlight=False, style=None if piece.kind == "text" else "dim")


def stream_reply(engine: Engine, messages: list[Message], params: SamplingParams, seed: int | None) -> Message:
    """Print the reply as it is sampled (whole characters only; a call as `[python: ...]` and its output as
    `[-> ...]`, dim) and return it as a message."""
    reply = ReplyText(engine.tokenizer)
    for token in engine.stream(render_prompt(engine.tokenizer, messages), params, seed):
        previous = reply.kinds[-1] if reply.kinds else "text"
        piece = reply.push(token)
        if piece.new_segment:  # close the call or output before it, open this one
            if previous != "text":
                console.print("]", end="", style="dim")
            if piece.kind != "text":
                console.print("[-> " if piece.kind == "output" else f"[{piece.kind}: ", end="", style="dim",
                              markup=False)
        print_piece(piece)
    rest = reply.rest()
    if rest is not None:
        print_piece(rest)
    if reply.kinds and reply.kinds[-1] != "text":
        console.print("]", end="", style="dim")
    console.print()
    return reply.message()


@with_sampling_options
def chat(
    model: ModelOpt,
    system: Annotated[str, typer.Option(help="system message ('' for none)")] = "You are a helpful assistant.",
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    feedback: FeedbackOpt = DEFAULT_FEEDBACK,
    no_tools: NoToolsOpt = False,
    *,
    sampling: SamplingParams,
) -> None:
    """Talk to a model: multi-turn, replies streamed as they are sampled, tool calls shown as they happen. /good or
    /bad [better answer] rates the last reply, /reset starts over, /exit (or Ctrl-D) leaves."""
    engine, name = _engine(model, config, set_, tools=not no_tools)
    start: list[Message] = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    tools = ", ".join(engine.tools) or "none"
    console.print(f"[bold]{name}[/bold] (tools: {tools}): /good or /bad \\[better answer] rates a reply, /reset "
                  "starts over, /exit leaves")
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
        messages.append(stream_reply(engine, messages, sampling, seed))


def rate_last_reply(messages: list[Message], command: str, feedback: Path) -> None:
    """Store `/good` or `/bad [better answer]` about the last reply as a rankings row."""
    if not messages or messages[-1]["role"] != "assistant":
        console.print("[yellow]no reply to rate yet[/yellow]")
        return
    verb, _, better = command.partition(" ")
    total = record_chat_feedback(feedback, messages[:-1], messages[-1]["content"], verb == "/good", better or None)
    console.print(f"[dim]{verb[1:]} reply saved to {feedback} ({total} rows)[/dim]")


class PromptsError(ValueError):
    """A prompts file that cannot be used; the message names the file, the line and what is wrong."""


def _prompt_of(item: Any, where: str) -> list[Message]:
    """The conversation of one parsed JSONL line: a string, {"prompt": str} or {"messages": [{role, content}]}."""
    if isinstance(item, str):
        return [{"role": "user", "content": item}]
    if isinstance(item, dict) and isinstance(item.get("prompt"), str):
        return [{"role": "user", "content": item["prompt"]}]
    if isinstance(item, dict) and isinstance(item.get("messages"), list) and item["messages"]:
        for i, message in enumerate(item["messages"]):
            if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                    and isinstance(message.get("content"), str)):
                raise PromptsError(f"{where}: messages[{i}] must be {{\"role\": str, \"content\": str}}, "
                                   f"got {json.dumps(message)[:80]}")
        return list(item["messages"])
    raise PromptsError(f"{where}: expected a string, {{\"prompt\": str}} or {{\"messages\": [...]}}, "
                       f"got {json.dumps(item)[:80]}")


def read_prompts(path: Path) -> list[list[Message]]:
    """JSONL of strings, of {"prompt": ...} or of {"messages": [...]}; or plain text, one prompt per line. A file
    named .jsonl/.json, or with a line that opens like JSON, is JSONL: each of its lines must then parse, and a line
    that does not is a `PromptsError` naming the file and line (never sent to the model as text)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise PromptsError(f"--prompts {path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if path.suffix.lower() not in (".jsonl", ".json") and not any(line.lstrip()[:1] in "{[" for _, line in numbered):
        return [[{"role": "user", "content": line}] for _, line in numbered]
    out = []
    for n, line in numbered:
        where = f"--prompts {path} line {n}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise PromptsError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        out.append(_prompt_of(item, where))
    return out


@with_sampling_options
def generate(
    model: ModelOpt,
    prompts: Annotated[Path, typer.Option("--prompts", "-p", help="JSONL (strings, prompt or messages) or text")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL output, one line per reply")],
    n: Annotated[int, typer.Option("-n", help="replies per prompt")] = 1,
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    seed: SeedOpt = 0,
    no_tools: NoToolsOpt = False,
    *,
    sampling: SamplingParams,
) -> None:
    """Answer every prompt of a file (n replies each, batched, tools called as in the chat) into a JSONL file."""
    if not prompts.is_file():
        console.print(f"[red]--prompts {prompts}: no such file[/red]", soft_wrap=True)
        raise typer.Exit(2)
    try:
        conversations = read_prompts(prompts)
    except PromptsError as e:
        console.print(str(e), style="red", soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(2) from None
    engine, name = _engine(model, config, set_, tools=not no_tools)
    results = engine.generate([render_prompt(engine.tokenizer, c) for c in conversations], sampling, n=n, seed=seed)
    with out.open("w", encoding="utf-8") as f:
        for conversation, replies in zip(conversations, results):
            for i, c in enumerate(replies):
                row = {"model": name, "messages": conversation, "sample": i, "reply": c.text, "answer": c.answer,
                       "calls": [dataclasses.asdict(call) for call in c.calls], "finished": c.finished,
                       "tokens": len(c.ids)}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    console.print(f"{sum(len(r) for r in results)} replies to {len(conversations)} prompts -> {out}")

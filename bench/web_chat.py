"""Time to first token and tokens/s per stream of the web chat (`llmpipe web`) with 1, 4 and 8 chats at once, side by
side with the engine alone (`Engine.stream` in a thread of this process, one reply at a time: the ceiling of one
stream).

    .venv/bin/python bench/web_chat.py [--root artifacts] [--model KEY] [--rounds 3] [--max-tokens 64]

The server is a real `llmpipe web` process (--no-tools, so every reply is sampling only; --max-active 4, the
default: with 8 chats, 4 wait their turn); clients stream over HTTP from threads of this process. Each round runs
the engine alone, then 1, 4 and 8 concurrent chats, so machine load hits every setup alike; figures are medians over
all streams of all rounds, after one warm-up reply on each side. Time to first token counts from sending the request to the first token's event; tokens/s
per stream is a reply's tokens after the first over the time from the first token to its end; tokens/s of all
chats is every reply's tokens over the time until the last one ended (median over rounds). Prints the load
average beside the figures: on a busy machine they say little about the code.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from llm_core.chat.chat_model import load_chat_model  # noqa: E402
from llm_core.chat.engine import Engine, SamplingParams  # noqa: E402
from llm_core.chat.template import render_prompt  # noqa: E402
from llm_core.store import ArtifactStore  # noqa: E402
from llm_core.web.models import default_chat_model  # noqa: E402
from ops.local_stack import free_port, wait_until  # noqa: E402

PROMPTS = ["What is 347 times 29?", "Who are you?", "Write a sentence with the word river.", "What is a watermelon?",
           "How do birds fly?", "What is 12 plus 30?", "Tell me about the ocean.", "Name a fruit."]
CONCURRENCY = (1, 4, 8)


Sample = tuple[float, float, int]  # seconds to the first token, tokens/s after it, tokens


def timing(start: float, first: float | None, end: float, tokens: int) -> Sample:
    first = first or end
    return first - start, (tokens - 1) / (end - first) if tokens > 1 and end > first else float("nan"), tokens


def stream_once(client: httpx.Client, model: str, prompt: str, max_tokens: int, seed: int) -> Sample:
    """One streamed reply's timing."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 1.0,
            "max_tokens": max_tokens, "seed": seed}
    start = time.perf_counter()
    first = None
    with client.stream("POST", "/api/chat", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "token" and first is None:
                first = time.perf_counter()
            elif event["type"] == "done":
                end, tokens = time.perf_counter(), event["tokens"]
    return timing(start, first, end, tokens)


def concurrent(url: str, model: str, n: int, max_tokens: int, seed: int) -> tuple[list[Sample], float]:
    """The timings of n chats sent at once, and the seconds until the last ended."""
    results: list[Sample] = [(0.0, 0.0, 0)] * n
    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=600, limits=httpx.Limits(max_connections=16)) as client:
        def run(i: int) -> None:
            results[i] = stream_once(client, model, PROMPTS[i % len(PROMPTS)], max_tokens, seed + i)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return results, time.perf_counter() - start


def engine_alone(engine: Engine, max_tokens: int, seed: int) -> tuple[list[Sample], float]:
    """One reply sampled in a thread of its own, as the server's worker samples (torch's thread pool behaves
    differently on the main thread: 40 times slower for this tiny model on 2 busy cores)."""
    out: list[tuple[list[Sample], float]] = []
    worker = threading.Thread(target=lambda: out.append(_engine_alone(engine, max_tokens, seed)))
    worker.start()
    worker.join()
    return out[0]


def _engine_alone(engine: Engine, max_tokens: int, seed: int) -> tuple[list[Sample], float]:
    prompt = render_prompt(engine.tokenizer, [{"role": "user", "content": PROMPTS[seed % len(PROMPTS)]}])
    start = time.perf_counter()
    first, tokens = None, 0
    for _ in engine.stream(prompt, SamplingParams(max_tokens=max_tokens, temperature=1.0), seed):
        tokens += 1
        first = first or time.perf_counter()
    end = time.perf_counter()
    return [timing(start, first, end, tokens)], end - start


def row(name: str, n: int, runs: list[tuple[list[Sample], float]]) -> str:
    samples = [s for got, _ in runs for s in got]
    ttft = sorted(s[0] for s in samples)
    rates = [s[1] for s in samples if s[1] == s[1]]
    total = statistics.median(sum(s[2] for s in got) / seconds for got, seconds in runs)
    return (f"| {name:<16} | {n} | {statistics.median(ttft) * 1000:8.0f} | {ttft[int(len(ttft) * 0.9)] * 1000:8.0f} "
            f"| {statistics.median(rates) if rates else float('nan'):7.1f} | {total:7.1f} | {len(samples)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="artifacts", help="artifact store root (after `make run`)")
    parser.add_argument("--model", default=None, help="model key (default: what `llmpipe web` serves by default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    store = ArtifactStore(args.root)
    model = str(store.find(args.model)) if args.model else default_chat_model(store)
    gpt, tokenizer, _ = load_chat_model(store, model)
    engine = Engine(gpt, tokenizer)
    port = free_port()
    server = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "llmpipe"), "web", "-m", model, "--port", str(port), "--no-tools",
         "--feedback", os.devnull, "-s", f"run.artifact_root={args.root}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(f"{url}/api/status", timeout=2).status == 200, "llmpipe web", 120,
                   server)
        engine_alone(engine, args.max_tokens, 1)  # warm-up of both sides (first forward passes), not counted
        concurrent(url, model, 1, args.max_tokens, 1)
        runs: dict[tuple[str, int], list[tuple[list[Sample], float]]] = {}
        for r in range(args.rounds):
            runs.setdefault(("engine alone", 1), []).append(engine_alone(engine, args.max_tokens, 100 * r))
            for n in CONCURRENCY:
                runs.setdefault(("llmpipe web", n), []).append(concurrent(url, model, n, args.max_tokens, 100 * r))
    finally:
        server.terminate()
        server.wait(30)
    print(f"model {model}, replies of at most {args.max_tokens} tokens, temperature 1, {args.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    print("| setup            | chats | TTFT median ms | TTFT p90 ms | tokens/s per stream | tokens/s all chats | streams |")
    print("|---|---|---|---|---|---|---|")
    for (name, n), got in runs.items():
        print(row(name, n, got))


if __name__ == "__main__":
    main()

"""The models a web chat serves: which artifact keys (`default_chat_model`, `served_models`), what the model picker
shows of each (stage, crawl snapshot, creation time, context length), and their engines, loaded on first use.

Only the keys listed at start are reachable: a request names one of them exactly, never a path or a prefix.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from llm_core.chat.chat_model import CHAT_MODEL_STAGES, chat_tools, load_chat_model
from llm_core.chat.engine import Engine
from llm_core.corpus.champion import champion_key
from llm_core.model import CONFIG_FILE, GPT
from llm_core.store import ArtifactStore
from llm_core.tokenizer import Tokenizer
from llm_core.train.model_files import MODEL_DIR

DEFAULT_STAGES = ("rlhf", "sft")  # newest first within each; rlhf models are the ones people are meant to use

ModelLoader = Callable[[ArtifactStore, str], tuple[GPT, Tokenizer, str]]


def default_chat_model(store: ArtifactStore, corpus: str | None = None) -> str:
    """The model served when none is named ('stage/key'): the champion of `corpus` when it has one (the model the
    nightly refresh promoted), else the newest rlhf model, else the newest sft model."""
    champion = champion_key(store, corpus) if corpus else None
    if champion is not None:
        return champion
    for stage in DEFAULT_STAGES:
        ref = store.latest(stage)
        if ref is not None:
            return f"{ref.stage}/{ref.key}"
    raise ValueError(f"no rlhf or sft model under {store.root}: run the pipeline first (make run) or name a model "
                     "with --model")


@dataclass(frozen=True)
class ServedModel:
    key: str  # 'stage/key', what requests name
    stage: str
    snapshot: str  # the crawl snapshot the model descends from ('' when none)
    created: str  # ISO time the artifact was committed
    block_size: int  # the context, prompt and reply together

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def describe(store: ArtifactStore, name: str) -> ServedModel:
    """A chat model artifact by key, key prefix or 'stage/key'; KeyError or ValueError naming what is wrong."""
    ref = store.find(name)
    if ref.stage not in CHAT_MODEL_STAGES:
        raise ValueError(f"{ref} is a {ref.stage!r} artifact; a chat serves one of {CHAT_MODEL_STAGES}")
    lineage = [m for _, m in store.lineage(ref)]
    snapshot = next((str(m.config.get("snapshot") or "") for m in lineage if m.stage == "crawl"), "")
    block_size = int(store.reader(ref).read_json(f"{MODEL_DIR}/{CONFIG_FILE}")["block_size"])
    return ServedModel(f"{ref.stage}/{ref.key}", ref.stage, snapshot, lineage[0].created_at, block_size)


def served_models(store: ArtifactStore, names: Sequence[str] = (), corpus: str | None = None) -> list[ServedModel]:
    """The models named (in that order), or with none the default model first (see `default_chat_model`), then every
    other rlhf and sft model of the store, newest first."""
    if not names:
        default = default_chat_model(store, corpus)
        others = [f"{m.stage}/{m.key}" for stage in DEFAULT_STAGES for m in reversed(store.list(stage))]
        names = [default, *(k for k in others if k != default)]
    models = [describe(store, n) for n in names]
    return list({m.key: m for m in models}.values())


class Engines:
    """The engines of the served models, loaded on first use (from any thread) and kept, `keep` at most: the least
    recently used is dropped first (a stream still running on it keeps its own reference)."""

    def __init__(self, store: ArtifactStore, tools: bool, load: ModelLoader = load_chat_model, keep: int = 4):
        self.store, self.tools, self.load, self.keep = store, tools, load, keep
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Engine:
        with self._lock:
            if key in self._engines:
                self._engines.move_to_end(key)
                return self._engines[key]
            model, tokenizer, name = self.load(self.store, key)
            tools = chat_tools(self.store, name) if self.tools and tokenizer.has_tools else ()
            engine = self._engines[key] = Engine(model, tokenizer, tools=tools)
            while len(self._engines) > self.keep:
                self._engines.popitem(last=False)
            return engine

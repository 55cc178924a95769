"""A store with two chat models for the web chat's tests, and the web app served on a loopback port.

The models are tiny random GPTs (a tokenizer with the tool tokens in their lineage): `sft/websft000000` and the
newer `rlhf/webrlhf00000`. `scripted_loader` stands scripted models in for them (`test_engine_tools.ScriptedGPT`),
e.g. one that calls the Python tool, as the terminal chat's tests do."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import torch
import uvicorn
from test_chat_template import tool_tokenizer
from test_engine_tools import ANSWER, CALL, ScriptedGPT

from llm_core.chat.chat_model import load_chat_model
from llm_core.config import RunConfig
from llm_core.model import GPT, GPTConfig
from llm_core.pipeline import make_context
from llm_core.pipeline_config import PipelineConfig
from llm_core.preference.pairs_stage import PreferenceSourceConfig, RewardDataConfig, RewardDataStage
from llm_core.stage import run_stage
from llm_core.store import ArtifactStore
from llm_core.tokenizer.artifact import save_tokenizer
from llm_core.train.model_files import save_model_files
from llm_core.web.app import create_app
from llm_core.web.models import ModelLoader, served_models
from llm_core.web.requests import WebSettings
from ops.local_stack import free_port

SFT, RLHF = "sft/websft000000", "rlhf/webrlhf00000"


def web_store(root: Path) -> ArtifactStore:
    """The store: bpe <- sft <- rlhf, each model a random 2-layer GPT with a 128-token context."""
    store = ArtifactStore(str(root))
    tok = tool_tokenizer()
    writer = store.writer(store.ref("bpe", "webtok000000"))
    save_tokenizer(writer, tok)
    writer.commit(version="test", config={}, inputs={})
    inputs = {"tokenizer": "bpe/webtok000000"}
    for seed, key in enumerate([SFT, RLHF]):
        torch.manual_seed(seed)
        stage, name = key.split("/")
        writer = store.writer(store.ref(stage, name))
        save_model_files(writer, GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=2, n_head=2,
                                               n_embd=32)))
        writer.commit(version="test", config={}, inputs=inputs)
        inputs = {**inputs, "sft": SFT}
        time.sleep(0.01)  # the rlhf model is the newer one
    return store


class SlowScripted(ScriptedGPT):
    """A scripted model that takes `delay_s` more per next-token step (`last_logits`, what the engine calls): long
    enough to watch a reply stream in."""

    def __init__(self, vocab_size: int, script: dict[int, int], delay_s: float):
        super().__init__(vocab_size, script)
        self.delay_s = delay_s

    def last_logits(self, idx, cache=None):
        time.sleep(self.delay_s)
        return super().last_logits(idx, cache)


def scripted_loader(scripts: dict[str, dict[int, int]], delay_s: float = 0.0) -> ModelLoader:
    """Loads the store's models, with each model named in `scripts` replaced by one following its script
    (`test_engine_tools.chain`): `CALL | ANSWER` calls python `12*3` and answers 'It is' after the output."""

    def load(store: ArtifactStore, name: str):
        if name not in scripts:
            return load_chat_model(store, name)
        tok = tool_tokenizer()
        return SlowScripted(tok.vocab_size, scripts[name], delay_s).eval(), tok, name

    return load


TOOL_CALL = CALL | ANSWER


def reward_data_counts(rankings: Path, root: Path) -> tuple[dict[str, int], int]:
    """Run the reward_data stage on a rankings folder (and a few keyword pairs); its counts and how many rankings
    it kept (train and val)."""
    cfg = RewardDataConfig(sources=[PreferenceSourceConfig(kind="keyword", count=10),
                                    PreferenceSourceConfig(kind="rankings", path=str(rankings))])
    ctx = make_context(PipelineConfig(run=RunConfig(artifact_root=str(root)), reward_data=cfg), "reward_data", {})
    manifest, _ = run_stage(RewardDataStage(), ctx)
    kept = sum(len(pq.read_table(f"{ctx.output.uri}/{split}/part-00000.parquet"))
               for split in ("train_rankings", "val_rankings"))
    return manifest.counts, kept


@contextlib.contextmanager
def serving(store: ArtifactStore, settings: WebSettings, load: ModelLoader = load_chat_model,
            models: list[str] | None = None) -> Iterator[str]:
    """The web app on a free loopback port in this process; yields its base URL."""
    app = create_app(store, served_models(store, models or []), settings, load)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)

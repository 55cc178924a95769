"""The `pretrain` stage end to end on tiny shakespeare (character level): artifact layout, metrics, cache hit,
and a 2-process gloo DDP run matching the 1-process run with the same global batch."""

from __future__ import annotations

import json

import pytest
import torch

from llm_core.model import GPT
from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.stage import StageContext, run_stage
from llm_core.store import ArtifactStore
from llm_core.tokenizer.base import DEFAULT_SPECIAL_TOKENS
from llm_core.registry import STAGES


def shakespeare_config(root: str, **pretrain) -> dict:
    source = {"name": "tinyshakespeare", "path": "data/tinyshakespeare/input.txt"}
    return {
        "run": {"artifact_root": root, "workers": 1},
        "crawl": {"enabled": False},
        "extract": {"enabled": False},
        "filter": {"enabled": False},
        "bpe": {"kind": "char", "sources": [source]},
        "tokenize": {"sources": [source], "split": "tail", "val_fraction": 0.1},
        "pretrain": {
            "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32},
            "batch_size": 8, "max_steps": 30, "eval_every": 15, "checkpoint_every": 10, "eval_tokens": 4096,
            "optim": {"lr": 3e-3, "warmup_steps": 5},
            "sample_prompts": ["ROMEO:"], "sample_tokens": 16,
            **pretrain,
        },
    }


def run_through(config) -> dict[str, StageContext]:
    contexts = plan(config, ["pretrain"])
    for name, ctx in contexts.items():
        run_stage(STAGES[name], ctx)
    return contexts


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_pretrain_stage_on_shakespeare(tmp_path):
    config = load_config(data=shakespeare_config(str(tmp_path)))
    ctx = run_through(config)["pretrain"]
    store = ArtifactStore(str(tmp_path))
    manifest = store.manifest(ctx.output)
    reader = store.reader(ctx.output)

    assert {"model/model.safetensors", "model/config.json", "loss_curve.png", "history.json"} <= set(manifest.files)
    assert not any(name.startswith("checkpoints/") for name in manifest.files)
    m = manifest.metrics
    assert m["steps"] == 30 and manifest.counts["train_tokens_seen"] == 30 * 8 * 32
    assert m["val_loss"] < 3.6 < 4.2 < m["unigram_entropy"] + 1  # from ln(75) = 4.32 towards the unigram 3.3
    assert m["val_bpb"] == pytest.approx(m["val_loss"] / 0.6931471805599453, rel=1e-3)  # one byte per character
    assert m["tokens_per_s"] > 0 and m["params"] > 0
    history = reader.read_json("history.json")
    assert [e["step"] for e in history["evals"]] == [15, 30]
    assert history["evals"][1]["val_loss"] < history["evals"][0]["val_loss"]
    assert history["samples"][0]["prompt"] == "ROMEO:" and history["samples"][0]["continuation"]
    assert reader.open("loss_curve.png").read(8) == b"\x89PNG\r\n\x1a\n"
    tables = manifest.extra["tables"]
    assert [r["step"] for r in tables["evaluations"]] == [15, 30]

    model = GPT.load(reader.path("model")).eval()
    assert json.loads(reader.open("model/config.json").read())["n_embd"] == 32
    assert model.config.vocab_size == 65 + len(DEFAULT_SPECIAL_TOKENS)  # nanoGPT's 65 characters + the special tokens

    _, hit = run_stage(STAGES["pretrain"], ctx)
    assert hit


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    """Same global batch (2 x 8 windows per step): 1 process accumulating 2 micro-batches vs 2 gloo processes."""
    settings = {"max_steps": 12, "eval_every": 0, "checkpoint_every": 6, "tokens_per_step": 2 * 8 * 32,
                "sample_tokens": 0}
    config = load_config(data=shakespeare_config(str(tmp_path), **settings))
    single = run_through(config)["pretrain"]
    ddp_config = config.pretrain.model_copy(update={"nproc": 2})
    ddp = single.model_copy(update={"config": ddp_config, "output": single.output.model_copy(update={"key": "ddp"})})
    manifest, _ = run_stage(STAGES["pretrain"], ddp)

    store = ArtifactStore(str(tmp_path))
    assert manifest.metrics["world_size"] == 2 and manifest.metrics["grad_accum"] == 1
    assert store.manifest(single.output).metrics["grad_accum"] == 2
    a = GPT.load(store.reader(single.output).path("model")).state_dict()
    b = GPT.load(store.reader(ddp.output).path("model")).state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-4, rtol=1e-3, msg=name)
    assert manifest.metrics["val_loss"] == pytest.approx(store.manifest(single.output).metrics["val_loss"], abs=1e-4)


@pytest.mark.slow
def test_two_nodes_meet_at_a_rendezvous(tmp_path):
    """The multi-node path: two 'nodes' (one process each, on loopback) join through torchrun's c10d rendezvous and
    train as one world of 2, as two machines would; then the stage commits the model they wrote."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    from llm_core.train.distributed import launch_torchrun
    from llm_core.train.pretrain import dump_context

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = {"max_steps": 4, "eval_every": 0, "checkpoint_every": 0, "tokens_per_step": 2 * 8 * 32,
                "sample_tokens": 0, "nnodes": 2, "rdzv_endpoint": f"127.0.0.1:{port}"}
    config = load_config(data=shakespeare_config(str(tmp_path), **settings))
    ctx = plan(config, ["pretrain"])
    for name in ("bpe", "tokenize"):
        run_stage(STAGES[name], ctx[name])
    context_file = tmp_path / "context.json"
    context_file.write_text(dump_context(ctx["pretrain"]))

    def node(_: int) -> None:
        launch_torchrun(1, "llm_core.train.pretrain_worker", [str(context_file)], threads_per_proc=1,
                        nnodes=2, rdzv_endpoint=f"127.0.0.1:{port}", rdzv_id="test-two-nodes")

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(node, range(2)))
    manifest, cached = run_stage(STAGES["pretrain"], ctx["pretrain"])
    assert not cached
    assert manifest.metrics["world_size"] == 2 and manifest.metrics["grad_accum"] == 1
    assert "model/model.safetensors" in manifest.files


def test_several_nodes_need_a_rendezvous(tmp_path):
    with pytest.raises(Exception, match="rdzv_endpoint"):
        load_config(data=shakespeare_config(str(tmp_path), nnodes=2))

"""Training scale-out through the orchestrator: the `stage` flow runs `pretrain` with `nproc: 2`, whose Prefect task
launches torchrun, and two gloo processes train the model (character-level tiny shakespeare, a few steps)."""

from __future__ import annotations

import pytest
import torch

from flows.pipeline import one_stage
from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.registry import STAGES
from llm_core.store import ArtifactStore

pytestmark = pytest.mark.skipif("pretrain" not in STAGES, reason="the pretrain stage is not registered")

SHAKESPEARE = {"name": "tinyshakespeare", "path": "data/tinyshakespeare/input.txt"}


def two_process_config(root: str):
    stages_after = {name: {"enabled": False} for name in list(STAGES)[list(STAGES).index("pretrain") + 1:]}
    return load_config(data={
        "run": {"artifact_root": root, "workers": 1, "retries": 0},
        "crawl": {"enabled": False},
        "extract": {"enabled": False},
        "filter": {"enabled": False},
        "bpe": {"kind": "char", "sources": [SHAKESPEARE]},
        "tokenize": {"sources": [SHAKESPEARE], "split": "tail", "val_fraction": 0.1},
        "pretrain": {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}, "nproc": 2,
                     "batch_size": 4, "max_steps": 4, "eval_every": 0, "eval_tokens": 1024, "sample_tokens": 0,
                     "optim": {"warmup_steps": 1}},
        **stages_after,
    })


@pytest.mark.slow
def test_pretrain_stage_flow_launches_torchrun_with_two_gloo_processes(tmp_path, prefect_harness):
    config = two_process_config(str(tmp_path))
    done = one_stage("pretrain", config=config)

    contexts = plan(config, ["pretrain"])
    assert done == {name: str(ctx.output) for name, ctx in contexts.items()}
    manifest = ArtifactStore(str(tmp_path)).manifest(contexts["pretrain"].output)
    assert manifest.metrics["world_size"] == 2
    assert manifest.counts["steps"] == 4
    assert manifest.counts["train_tokens_seen"] == 4 * 2 * 4 * 32  # steps x processes x batch x block
    assert torch.isfinite(torch.tensor(manifest.metrics["val_loss"]))

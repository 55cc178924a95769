"""The post-training chain as stages over the artifact store: sft_data -> sft -> reward_data -> reward -> rlhf ->
report, from a committed tokenizer and base model, with tiny settings (the figures are not the point here; the
artifacts, the lineage and the report are)."""

from __future__ import annotations

import pytest
import torch
from post_fixtures import chat_tokenizer

from llm_core.config import RunConfig
from llm_core.model import GPT, GPTConfig
from llm_core.preference.reward_model import ScalarHeadModel
from llm_core.registry import STAGES
from llm_core.stage import StageContext, run_stage
from llm_core.store import ArtifactStore
from llm_core.tokenizer.artifact import save_tokenizer
from llm_core.train.model_files import load_gpt, load_model, save_model_files

SECTIONS = {
    "sft_data": {"val_fraction": 0.1, "sources": [
        {"kind": "arithmetic", "count": 60, "max_operand": 9},
        {"kind": "identity", "count": 30},
        {"kind": "oasst", "path": "data/oasst/en_80_tree.jsonl", "weight": 0.2},
    ]},
    "sft": {"max_steps": 6, "batch_size": 8, "eval_every": 3, "sample_prompts": 4, "sample_tokens": 16,
            "checkpoint_every": 3, "device": "cpu"},
    "reward_data": {"sources": [{"kind": "keyword", "count": 60},
                                {"kind": "hh_rlhf", "path": "data/hh_rlhf/harmless-base-test.dev.jsonl"}]},
    "reward": {"max_steps": 4, "batch_size": 4, "eval_every": 2, "eval_pairs": 16, "normalise_prompts": 4,
               "sample_tokens": 16, "device": "cpu"},
    "rlhf": {"iterations": 2, "max_tokens": 12, "eval_prompts": 4, "eval_samples": 1,
             "ppo": {"prompts_per_iteration": 4, "minibatch_size": 2}, "checkpoint_every": 1},
    "report": {},
}


def commit_upstream(store: ArtifactStore) -> dict[str, object]:
    """A committed `bpe` artifact (the chat tokenizer) and a `pretrain` artifact (a tiny random GPT)."""
    tok = chat_tokenizer()
    refs = {"bpe": store.ref("bpe", "testtokenizer0000"), "pretrain": store.ref("pretrain", "testbase00000000")}
    w = store.writer(refs["bpe"])
    save_tokenizer(w, tok)
    w.commit(version="test", config={}, inputs={}, metrics={"bytes_per_token_en": 3.0})
    torch.manual_seed(0)
    w = store.writer(refs["pretrain"])
    save_model_files(w, GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32)))
    w.commit(version="test", config={}, inputs={"tokenizer": str(refs["bpe"])}, metrics={"val_loss": 5.0})
    return refs


def context(store: ArtifactStore, run: RunConfig, name: str, refs: dict, inputs: dict[str, str]) -> StageContext:
    stage = STAGES[name]
    return StageContext(stage=name, config=stage.config_model.model_validate(SECTIONS[name]), run=run,
                        inputs={k: refs[v] for k, v in inputs.items()}, output=store.ref(name, f"test{name}"))


@pytest.mark.slow
def test_post_training_chain_writes_models_and_a_report_card(tmp_path):
    run = RunConfig(artifact_root=str(tmp_path), workers=1)
    store = ArtifactStore(run.artifact_root)
    refs = commit_upstream(store)
    chain = [
        ("sft_data", {}),
        ("sft", {"base": "pretrain", "data": "sft_data", "tokenizer": "bpe"}),
        ("reward_data", {}),
        ("reward", {"sft": "sft", "data": "reward_data", "tokenizer": "bpe"}),
        ("rlhf", {"sft": "sft", "reward": "reward", "tokenizer": "bpe"}),
        ("report", {"rlhf": "rlhf", "reward": "reward", "sft": "sft", "pretrain": "pretrain"}),
    ]
    manifests = {}
    for name, inputs in chain:
        ctx = context(store, run, name, refs, inputs)
        manifests[name], hit = run_stage(STAGES[name], ctx)
        assert not hit
        refs[name] = ctx.output

    sft = manifests["sft"]
    assert sft.counts["steps"] == 6 and "val_loss" in sft.metrics
    assert not any(f.startswith("checkpoints/") for f in sft.files)  # removed once the model is written
    assert load_gpt(store.reader(refs["sft"])).config.n_embd == 32
    reward = manifests["reward"]
    assert {"accuracy/keyword", "length_baseline/keyword", "accuracy/hh_rlhf"} <= set(reward.metrics)
    assert float(load_model(ScalarHeadModel, store.reader(refs["reward"])).norm_std) > 0
    rlhf = manifests["rlhf"]
    assert {"before_reward", "after_reward", "before_kl", "after_kl"} <= set(rlhf.metrics)
    assert rlhf.metrics["before_kl"] == pytest.approx(0.0, abs=1e-4)  # the policy starts as the reference

    report = store.reader(refs["report"]).open("report.md").read().decode()
    for stage in ("bpe", "pretrain", "sft_data", "sft", "reward_data", "reward", "rlhf"):
        assert f"| {stage} | `{manifests.get(stage).key if stage in manifests else refs[stage].key}` |" in report
    for figure in ("bytes_per_token_en", "val_loss", "accuracy/all", "length_baseline/all", "before_reward",
                   "after_kl", "ends_with_im_end"):
        assert figure in report
    assert "](loss_curves.png)" in report and "](rl_history.png)" in report
    for summary in ("held-back prompts; reward:", "Eval loss on", "### rlhf"):
        assert report.count(summary) == 1, summary  # each stage's own summary once, in the appendix
    assert manifests["report"].extra["markdown"] == report

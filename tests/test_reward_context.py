"""The reward model reads whole comparisons: `reward_data.max_tokens` rejects the pairs longer than its context (with
the reason, counted), and `reward.block_size` gives the SFT trunk a longer context with the same weights."""

from __future__ import annotations

import pytest
import torch
from post_fixtures import chat_tokenizer
from rank_fixtures import committed

from llm_core.config import RunConfig
from llm_core.model import GPT, GPTConfig
from llm_core.pipeline import make_context
from llm_core.pipeline_config import PipelineConfig
from llm_core.preference.pairs_stage import PreferenceSourceConfig, RewardDataConfig, RewardDataStage
from llm_core.preference.reward_model import ScalarHeadModel, comparison_tokens
from llm_core.stage import run_stage
from llm_core.store import ArtifactStore
from llm_core.tokenizer.artifact import save_tokenizer


def test_pairs_longer_than_the_reward_context_are_rejected_as_too_long_and_counted(tmp_path, data_dir):
    tok = chat_tokenizer()
    store = ArtifactStore(str(tmp_path / "artifacts"))
    tokenizer = committed(store, "bpe", "testtokenizer", lambda w: save_tokenizer(w, tok))
    cfg = RewardDataConfig(sources=[
        PreferenceSourceConfig(kind="hh_rlhf", path=str(data_dir / "hh_rlhf" / "harmless-base-test.dev.jsonl")),
        PreferenceSourceConfig(kind="keyword", count=50)], max_tokens=256)
    assert RewardDataStage().input_stages(cfg) == {"tokenizer": "bpe"}
    assert RewardDataStage().input_stages(cfg.model_copy(update={"max_tokens": None})) == {}
    config = PipelineConfig(run=RunConfig(artifact_root=str(tmp_path / "artifacts")), reward_data=cfg)
    ctx = make_context(config, "reward_data", {"tokenizer": tokenizer})
    manifest, _ = run_stage(RewardDataStage(), ctx)
    c = manifest.counts
    reader = store.reader(ctx.output)
    kept = list(reader.iter_rows("train/*.parquet")) + list(reader.iter_rows("val/*.parquet"))
    long = [r for r in reader.iter_rows("rejected/*.parquet") if r["reason"] == "too_long"]
    length = lambda r: comparison_tokens(tok, r["prompt"], (r["chosen"], r["rejected"]))  # noqa: E731
    assert kept and all(length(r) <= 256 for r in kept)
    assert long and all(length(r) > 256 for r in long)
    assert c["hh_rlhf:rejected:too_long"] == len(long) and c.get("keyword:rejected", 0) == 0
    assert c["hh_rlhf:input"] == c["hh_rlhf:kept"] + c["hh_rlhf:rejected"] == 600


def test_a_longer_reward_context_keeps_the_sft_weights_and_reads_past_the_sft_context(tmp_path):
    torch.manual_seed(0)
    sft = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=1, n_head=2, n_embd=32))
    short, long = ScalarHeadModel.from_sft(sft), ScalarHeadModel.from_sft(sft, block_size=96)
    long.head.load_state_dict(short.head.state_dict())
    assert long.gpt.config.block_size == 96 and short.gpt.config.block_size == 32
    x = torch.randint(0, 64, (2, 30))
    assert torch.allclose(short.per_token(x), long.per_token(x), atol=1e-5)
    with pytest.raises(AssertionError, match="longer than block_size=32"):
        short.per_token(torch.randint(0, 64, (1, 90)))
    assert long.per_token(torch.randint(0, 64, (1, 90))).shape == (1, 90)
    long.save(str(tmp_path / "rm"))
    assert ScalarHeadModel.load(str(tmp_path / "rm")).gpt.config.block_size == 96

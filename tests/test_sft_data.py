"""The `sft_data` and `reward_data` stages on the shipped sample data: every record accounted for, deterministic
splits, rejected records with reasons."""

from __future__ import annotations

import json

from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.registry import STAGES
from llm_core.stage import run_stage


def run(tmp_path, stage: str, section: dict, root: str = "artifacts"):
    cfg = load_config(data={"run": {"artifact_root": str(tmp_path / root), "workers": 1}, stage: section})
    ctx = plan(cfg, [stage])[stage]
    manifest, hit = run_stage(STAGES[stage], ctx)
    return manifest, hit, ctx


def test_sft_data_mixes_sources_and_accounts_for_every_record(tmp_path, data_dir):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "Say hi", "response": "Hi!"},
        {"prompt": "No answer", "response": ""},
        {"prompt": "Another", "response": "Answer."},
    ]) + "\n")
    section = {"val_fraction": 0.1, "identity": {"name": "Zeta", "creator": "Acme"}, "sources": [
        {"kind": "oasst", "path": str(data_dir / "oasst" / "en_80_tree.jsonl"), "weight": 2.0},
        {"kind": "gsm8k", "path": str(data_dir / "gsm8k" / "train.jsonl"), "weight": 0.2},
        {"kind": "prompt_response", "path": str(bad), "name": "local"},
        {"kind": "identity", "count": 50},
        {"kind": "refusals", "count": 40},
    ]}
    manifest, hit, ctx = run(tmp_path, "sft_data", section)
    c = manifest.counts
    assert not hit
    assert c["input"] == c["kept"] + c["rejected"]
    assert c["local:rejected"] == 1 and c["rejected:local:missing_prompt_or_response"] == 1
    assert c["gsm8k:input"] == 1500 and c["oasst:kept"] >= 80
    assert c["kept"] == c["train_unique"] + c["val"]
    assert 0.2 * c["gsm8k:train_unique"] * 0.7 < c["gsm8k:train"] < 0.2 * c["gsm8k:train_unique"] * 1.3
    assert c["oasst:train"] == 2 * c["oasst:train_unique"]
    reader = ctx.store().reader(ctx.output)
    assert reader.count_rows("train/*.parquet") == c["train"]
    assert reader.count_rows("val/*.parquet") == c["val"]
    rejected = list(reader.iter_rows("rejected/*.parquet"))
    assert [r["reason"] for r in rejected] == ["local:missing_prompt_or_response"]
    identity = [r for r in reader.iter_rows("train/*.parquet") if r["source"].startswith("identity")]
    assert identity and all("Zeta" in r["messages"][-1]["content"] for r in identity)
    # same config and seed elsewhere: the same split, row for row
    _, _, ctx2 = run(tmp_path, "sft_data", section, root="again")
    again = ctx2.store().reader(ctx2.output)
    assert list(again.iter_rows("val/*.parquet")) == list(reader.iter_rows("val/*.parquet"))
    assert run(tmp_path, "sft_data", section)[1]  # committed: a cache hit


def test_reward_data_pairs_from_hh_oasst_and_keyword(tmp_path, data_dir):
    section = {"sources": [
        {"kind": "hh_rlhf", "path": str(data_dir / "hh_rlhf" / "harmless-base-test.dev.jsonl")},
        {"kind": "oasst", "path": str(data_dir / "oasst" / "en_80_tree.jsonl")},
        {"kind": "keyword", "count": 100},
    ]}
    manifest, _, ctx = run(tmp_path, "reward_data", section)
    c = manifest.counts
    assert c["hh_rlhf:input"] == 600 and c["hh_rlhf:input"] == c["hh_rlhf:kept"] + c["hh_rlhf:rejected"]
    assert c["keyword:kept"] == 100 and c["oasst:kept"] > 200
    reader = ctx.store().reader(ctx.output)
    assert reader.count_rows("train/*.parquet") + reader.count_rows("val/*.parquet") == c["kept"]
    row = next(reader.iter_rows("val/*.parquet"))
    assert row["prompt"][-1]["role"] == "user" and row["chosen"] != row["rejected"]
    assert "hh:empty_answer" in {r["reason"] for r in reader.iter_rows("rejected/*.parquet")}


def test_an_edited_source_file_gives_new_artifact_keys(tmp_path, data_dir):
    source = tmp_path / "oasst.jsonl"
    source.write_bytes((data_dir / "oasst" / "en_80_tree.jsonl").read_bytes())
    overrides = [f"run.artifact_root={tmp_path / 'a'}", f"sft_data.sources=[{{kind: oasst, path: '{source}'}}]",
                 f"reward_data.sources=[{{kind: oasst, path: '{source}'}}]", "rlhf.prompts_path=hub/some-prompts"]

    def keys() -> dict[str, str]:
        contexts = plan(load_config("configs/tiny.yaml", overrides), ["sft_data", "reward_data"])
        return {name: contexts[name].output.key for name in ("sft_data", "reward_data")}

    before = keys()
    assert keys() == before
    source.write_text(source.read_text(encoding="utf-8").rstrip("\n") + "\n\n", encoding="utf-8")
    after = keys()
    assert after["sft_data"] != before["sft_data"] and after["reward_data"] != before["reward_data"]
    rlhf = STAGES["rlhf"].key_config(load_config("configs/tiny.yaml", overrides).rlhf, load_config().run)
    assert rlhf["data_digests"] == {"hub/some-prompts": "not local"}

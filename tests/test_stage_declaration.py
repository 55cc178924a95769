"""A stage is declared once, in `llm_core/registry.py`: the config's sections follow from it, every input a stage
can read comes from a registered stage before it, and the planner resolves each `Input` against the stages a run
enables."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_core.config import ConfigError, RunConfig
from llm_core.pipeline import input_sources, plan
from llm_core.pipeline_config import PipelineConfig, load_config
from llm_core.registry import STAGES
from llm_core.stage import Input

CONFIGS = sorted(Path("configs").glob("*.yaml"))


def test_the_config_has_run_and_one_section_per_registered_stage_in_order():
    assert list(PipelineConfig.model_fields) == ["run", *STAGES]
    assert PipelineConfig.model_fields["run"].annotation is RunConfig
    for name, stage in STAGES.items():
        assert stage.name == name
        assert PipelineConfig.model_fields[name].annotation is stage.config_model
        assert isinstance(PipelineConfig().section(name), stage.config_model)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_input_a_stage_can_read_comes_from_a_stage_before_it(path):
    config = load_config(path)
    order = list(STAGES)
    for name, stage in STAGES.items():
        for spec in stage.input_stages(config.section(name)).values():
            spec = Input((spec,)) if isinstance(spec, str) else spec
            for upstream in (*spec.stages, *([spec.only_with] if spec.only_with else [])):
                assert upstream in STAGES, f"{name} reads unknown stage {upstream!r}"
                assert order.index(upstream) < order.index(name), f"{name} reads {upstream}, listed after it"


def tiny(*overrides: str) -> PipelineConfig:
    return load_config("configs/tiny.yaml", list(overrides))


def test_alternatives_fall_back_to_the_next_enabled_stage_or_are_left_out():
    assert input_sources(tiny(), "bpe") == {"documents": "filter"}
    assert input_sources(tiny("filter.enabled=false"), "bpe") == {"documents": "extract"}
    assert input_sources(tiny("filter.enabled=false", "extract.enabled=false"), "bpe") == {}
    assert input_sources(tiny("rlhf.enabled=false", "eval.enabled=false", "promote.enabled=false"), "report") == {
        "pretrain": "pretrain", "sft": "sft", "reward": "reward"}


def test_an_input_only_with_another_stage_follows_that_stage():
    with_reward = input_sources(tiny(), "eval")
    assert with_reward["reward"] == "reward" and with_reward["reward_data"] == "reward_data"
    without = input_sources(tiny("reward.enabled=false", "rlhf.enabled=false"), "eval")
    assert "reward" not in without and "reward_data" not in without and without["sft_data"] == "sft_data"


def test_a_required_input_from_a_disabled_stage_is_one_clear_error():
    config = tiny("sft_data.enabled=false")
    assert input_sources(config, "sft")["data"] == "sft_data"
    with pytest.raises(ConfigError, match="stage 'sft_data' is disabled \\(needed by 'sft'\\): set sft_data.enabled"):
        plan(config, ["sft"])

"""Config loading: YAML + overrides, and clear errors naming the key path before any work starts."""

from __future__ import annotations

import pytest

from llm_core.config import ConfigError
from llm_core.pipeline_config import apply_overrides, load_config, parse_override


def test_tiny_config_loads():
    cfg = load_config("configs/tiny.yaml")
    assert cfg.run.name == "tiny"


def test_override_types():
    assert parse_override("run.seed=7") == (["run", "seed"], 7)
    assert parse_override("a.b=true") == (["a", "b"], True)
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a.b=s3://x/y") == (["a", "b"], "s3://x/y")
    assert apply_overrides({"run": {"seed": 1}}, ["run.seed=2", "run.name=x"]) == {"run": {"seed": 2, "name": "x"}}
    cfg = load_config("configs/tiny.yaml", ["run.seed=42", "run.workers=1"])
    assert (cfg.run.seed, cfg.run.workers) == (42, 1)


@pytest.mark.parametrize(
    "override, message",
    [
        ("run.sed=1", "run.sed: unknown key"),
        ("run.seed=abc", "run.seed: Input should be a valid integer"),
        ("run.workers=-1", "run.workers: Input should be greater than or equal to 0"),
        ("run.task_runner=gpu", "run.task_runner"),
        ("nosuchstage.x=1", "nosuchstage: unknown key"),
        ("run.seed", "not of the form key.path=value"),
    ],
)
def test_bad_values_are_rejected_with_their_path(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config("configs/tiny.yaml", [override])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(scalar)


def test_a_config_extends_another_section_by_section(tmp_path):
    grpo, tiny = load_config("configs/grpo_arithmetic.yaml"), load_config("configs/tiny.yaml")
    assert grpo.rlhf.algorithm == "grpo" and grpo.rlhf.grpo.max_operand == 4 and not grpo.reward.enabled
    assert grpo.pretrain == tiny.pretrain and grpo.sft.batch_size == tiny.sft.batch_size  # taken from tiny.yaml
    assert grpo.run.seed == tiny.run.seed and grpo.run.name == "grpo-arithmetic"  # run section merged key by key
    assert grpo.rlhf.ppo == tiny.rlhf.ppo  # untouched keys of a merged section stay
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml does not exist"):
        load_config(tmp_path / "c.yaml")

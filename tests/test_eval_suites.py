"""A suite declared in one place reaches the eval artifact: a tiny suite defined here and appended to a copy of
`SUITES` has its rows and item outcomes in the eval stage's output, after every declared suite of each model it
names, and only for those models."""

from __future__ import annotations

import pytest

from llm_core.evals import suites
from llm_core.evals.data import EvalData
from llm_core.evals.results import ItemOutcome, rate_row
from llm_core.evals.suite import Scored, Suite, SuiteReport
from llm_core.model import GPT
from llm_core.pipeline import plan
from llm_core.registry import STAGES
from llm_core.stage import run_stage
from ops.micro import micro_config

POST_TRAINING_OFF = [f"{s}.enabled=false" for s in ("sft_data", "sft", "rank", "reward_data", "reward", "rlhf")]


class VocabularySize(Suite[list[str]]):
    """One item per model: whether the model's vocabulary is the tokenizer's."""

    models = ("base", "sft")
    report = SuiteReport(rows=("extra/vocab",))

    def items(self, data: EvalData) -> list[str]:
        return [f"{data.tokenizer.vocab_size}"]

    def score(self, model_name: str, model: GPT, items: list[str], data: EvalData) -> Scored:
        outcomes = [ItemOutcome(model_name, "extra/vocab", "vocab-0", "vocab size", str(model.config.vocab_size),
                                items[0], str(model.config.vocab_size) == items[0])]
        return [rate_row(model_name, "extra/vocab", "accuracy", outcomes)], outcomes


@pytest.mark.slow
def test_a_suite_appended_to_suites_writes_its_rows_from_the_eval_stage(tmp_path, monkeypatch):
    monkeypatch.setattr(suites, "SUITES", [*suites.SUITES, VocabularySize()])
    config = micro_config(str(tmp_path), extra=["run.workers=1", "eval.tool_items=0", *POST_TRAINING_OFF],
                          targets=["eval"])
    contexts = plan(config)
    for name, ctx in contexts.items():
        if name != "eval":
            run_stage(STAGES[name], ctx)
    ctx = contexts["eval"]
    manifest, _ = run_stage(STAGES["eval"], ctx)
    reader = ctx.store().reader(ctx.output)
    rows = list(reader.iter_rows("results.parquet"))
    assert [(r["model"], r["metric"], r["value"]) for r in rows if r["suite"] == "extra/vocab"] == [
        ("base", "accuracy", 1.0)]  # no SFT model in this run: the suite scores only the models it names
    assert rows[-1]["suite"] == "extra/vocab" and rows[0]["suite"].startswith("bpb/")  # after the declared suites
    items = [i for i in reader.iter_rows("items.parquet") if i["suite"] == "extra/vocab"]
    assert [(i["model"], i["item_id"], i["correct"]) for i in items] == [("base", "vocab-0", True)]
    assert manifest.metrics["base/extra/vocab/accuracy"] == 1.0

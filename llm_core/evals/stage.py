"""The `eval` stage: the base model, the chat model, the RL policy and the reward model on the same suites.

One generic stage, not one per model: it evaluates every model artifact it is given (`base`, `sft`, `rlhf` for the
GPT suites, `reward` for preference pairs) and commits one artifact:

    results.parquet   one row per model x suite x metric: value, items scored, 95% interval, the chance or baseline
                      level beside it, items left out as contaminated (schema `EVAL_RESULTS`)
    items.parquet     what every model answered to every item, correct or not and why, contaminated or not
                      (schema `EVAL_ITEMS`), so a person can read what each model said

Suites (`suites.SUITES`: `lm_suites`, `chat_suites`, `tool_suites`, `reward_suite`, `rl_suite`): bits per byte per
text group and multiple choice (every GPT model); identity, "I don't know" on made-up entities beside over-refusal
on known questions, held-out sums, GSM8K, the `<|im_end|>` rate and special-token leaks (every GPT model, through
the chat template, greedy by default); the tool suites, each asked with the tools and without (`tool_suites`: the
chat models SFT and RL, when the tokenizer has the tool tokens; search needs the `index` artifact); reward accuracy
per source on held-back pairs beside "longer wins" and "shorter wins", and the share of pairs cut by the context; RL
reward, KL, reply end rate and length on the RL stage's held-out prompts before (SFT) and after.

Decontamination (`contamination`, `data`): each item is checked against the training data of the model under test
(base: the pretraining text; sft: + SFT conversations; rlhf: + RL prompts; reward: + SFT conversations + preference
pairs). Contaminated items stay in `items.parquet`, flagged with the reason, and are left out of every score.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import ClassVar

import torch

from llm_core.config import ConfigError
from llm_core.evals import suites
from llm_core.evals.config import EvalConfig
from llm_core.evals.data import EvalData
from llm_core.evals.results import ItemOutcome, ResultRow
from llm_core.evals.suite import GPT_MODELS, SUBJECTS
from llm_core.schemas import EVAL_ITEMS, EVAL_RESULTS
from llm_core.stage import Input, Stage, StageContext, StageResult
from llm_core.store import ParquetShardWriter
from llm_core.tokenizer import load_tokenizer
from llm_core.tokenizer.sources import UPSTREAM_DOCUMENTS
from llm_core.tools.registry import TOOLS

RESULTS, ITEMS = "results.parquet", "items.parquet"


class EvalStage(Stage):
    name = "eval"
    config_model = EvalConfig
    version = "3"  # 3: reward accuracy on the pairs the reward model reads whole (`reward/.../uncut`)
    uses_seed = True
    model_stages: ClassVar[dict[str, str]] = {**GPT_MODELS, "reward": "reward"}

    def input_stages(self, config: EvalConfig) -> dict[str, str | Input]:
        """Every model (and the SFT data) whose stage is enabled; the reward model's data only beside it; what the
        tools of the tool suites open from, when its stage is enabled."""
        models = {**self.model_stages, "sft_data": "sft_data"}
        inputs: dict[str, str | Input] = {
            "tokenizer": "bpe", "tokens": "tokenize", "documents": UPSTREAM_DOCUMENTS,
            **{name: Input((stage,), optional=True) for name, stage in models.items()},
            "reward_data": Input(("reward_data",), only_with="reward")}
        if config.tool_items:  # what the tools open from (the search index), when its stage is enabled
            inputs |= {spec.needs: Input((spec.needs,), optional=True) for spec in TOOLS if spec.needs}
        return inputs

    def data_paths(self, ctx_config: EvalConfig) -> list[str]:
        paths = [ctx_config.identity_file, ctx_config.made_up_file]
        paths += [ctx_config.facts_file] if ctx_config.tool_items else []
        return paths + [t.path for t in ctx_config.standard_tasks]

    def run(self, ctx: StageContext) -> StageResult:
        cfg: EvalConfig = ctx.config
        for name, ref in ctx.inputs.items():
            wanted = self.model_stages.get(name)
            if wanted and ref.stage != wanted:
                raise ConfigError(f"eval input {name!r} must be a {wanted!r} model artifact, got {ref}")
        return EvalRun(EvalData(ctx, cfg, load_tokenizer(ctx.reader("tokenizer")))).finish()


class EvalRun:
    """One evaluation: every suite's items built once, then each subject (`suite.SUBJECTS`) scored by every suite
    that names it, in the order of `suites.SUITES`, and the results written."""

    def __init__(self, data: EvalData):
        self.data, self.ctx = data, data.ctx
        self.suites = list(suites.SUITES)
        self.items = [suite.items(data) for suite in self.suites]
        for suite, items in zip(self.suites, self.items):
            suite.check_vocabulary(items, data)
        self.rows: list[ResultRow] = []
        self.outcomes: list[ItemOutcome] = []

    def finish(self) -> StageResult:
        subjects = [s for s in SUBJECTS if s.input in self.ctx.inputs
                    and any(s.name in suite.models for suite in self.suites)]
        for i, subject in enumerate(subjects):
            model = subject.load(self.ctx.reader(subject.input))
            with torch.no_grad():
                for suite, items in zip(self.suites, self.items):
                    if subject.name in suite.models:
                        rows, outcomes = suite.score(subject.name, model, items, self.data)
                        self.rows += rows
                        self.outcomes += outcomes
            self.ctx.progress(i + 1, len(subjects) + 1)
        writer = self.ctx.writer()
        with ParquetShardWriter(writer, RESULTS, EVAL_RESULTS) as out:
            for row in self.rows:
                out.write(row.row())
        with ParquetShardWriter(writer, ITEMS, EVAL_ITEMS) as out:
            for o in self.outcomes:
                out.write(o.row())
        self.ctx.progress(len(subjects) + 1, len(subjects) + 1)
        metrics = {r.metric_key: r.value for r in self.rows if not math.isnan(r.value)}
        counts = {"items": len(self.outcomes), "contaminated": sum(o.contaminated for o in self.outcomes),
                  "results": len(self.rows)}
        return StageResult(counts=counts, metrics=metrics, markdown=results_markdown(self.rows),
                           tables={"results": [r.row() for r in self.rows]})


def results_markdown(rows: list[ResultRow]) -> str:
    models = list(dict.fromkeys(r.model for r in rows))
    lines = ["### Evaluation", "", "| suite | metric | " + " | ".join(models) + " | baseline |",
             "|---|---|" + "---|" * len(models) + "---|"]
    cells: dict[tuple[str, str], dict[str, ResultRow]] = defaultdict(dict)
    for r in rows:
        cells[(r.suite, r.metric)][r.model] = r
    for (suite, metric), by_model in cells.items():
        values = [f"{by_model[m].value:.3f} (n={by_model[m].n})" if m in by_model else "" for m in models]
        base = next((r for r in by_model.values() if r.baseline is not None), None)
        baseline = f"{base.baseline:.3f} ({base.baseline_name})" if base else ""
        lines.append(f"| {suite} | {metric} | " + " | ".join(values) + f" | {baseline} |")
    return "\n".join(lines) + "\n"

"""Evaluation of every model the pipeline trains: the `eval` stage and its suites.

A new suite = 1 new file + 1 line in `suites.SUITES`. A suite (`suite.Suite`) says which models it scores
(`models`: "base", "sft", "rlhf", "reward", or "rl" for the RL run's own figures), builds its items once from the
shared `data.EvalData` (config, tokenizer, the stage's readers, the seed, the SFT data, held-out text, the
decontamination indexes), scores one model into results rows and item outcomes, may check that the tokenizer can
encode its items (`check_vocabulary`), and says how the report card shows its rows (`report`). The stage loops
models x suites; nothing else changes. For example, `llm_core/evals/echo_suite.py`:

    class Echo(Suite[list[str]]):
        \"\"\"Does a GPT model's greedy next token after "a a a" repeat "a"?\"\"\"

        models = ("base", "sft", "rlhf")
        report = SuiteReport(rows=("echo",))

        def items(self, data: EvalData) -> list[str]:
            return ["a a a"]

        def score(self, model_name: str, model: GPT, items: list[str], data: EvalData) -> Scored:
            outcomes = []
            for i, text in enumerate(items):
                ids = torch.tensor([data.tokenizer.encode(text)])
                got = data.tokenizer.decode([int(model(ids)[0][0, -1].argmax())])
                outcomes.append(ItemOutcome(model_name, "echo", f"echo-{i}", text, got, " a", got == " a"))
            return [rate_row(model_name, "echo", "accuracy", outcomes)], outcomes

and in `suites.py`, `Echo(),` in `SUITES` where its rows should come in each model's order. Its rows reach
`results.parquet`, the stage's metrics (`base/echo/accuracy`) and the report card's before/after table.
"""

from llm_core.evals.config import EvalConfig
from llm_core.evals.stage import EvalStage

__all__ = ["EvalConfig", "EvalStage"]

"""Evaluation of every model the pipeline trains: the `eval` stage and its suites."""

from llm_core.evals.stage import EvalConfig, EvalStage

__all__ = ["EvalConfig", "EvalStage"]

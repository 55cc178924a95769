"""Every suite of the eval, in the order each model's rows are written (see `llm_core.evals` to add one)."""

from __future__ import annotations

from llm_core.evals.chat_suites import ChatSuites
from llm_core.evals.lm_suites import BitsPerByte, MultipleChoice
from llm_core.evals.reward_suite import RewardPairs
from llm_core.evals.rl_suite import RlHeldout
from llm_core.evals.suite import Suite, SuiteReport
from llm_core.evals.tool_suites import ToolSuites

SUITES: list[Suite] = [
    BitsPerByte(),
    MultipleChoice(),
    ChatSuites(),
    ToolSuites(),
    RewardPairs(),
    RlHeldout(),
]


def suite_report(suite: str) -> SuiteReport | None:
    """How the report shows results rows of the suite named `suite` (None: no suite declares it)."""
    return next((s.report for s in SUITES if s.report.shows(suite)), None)

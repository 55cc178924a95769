"""What a suite is: which models it scores, how it builds its items from the shared `EvalData`, what vocabulary
those items need, how it scores one model, and how the report card shows its rows.

The eval scores subjects in a fixed order (`SUBJECTS`: the GPT models base, SFT and RL, the reward model, then the
RL run's own held-out figures) and, for each, every suite of `suites.SUITES` that names it in `models`, in that
order; rows and item outcomes are written in that order.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

from llm_core.evals.data import EvalData
from llm_core.evals.results import ItemOutcome, ResultRow
from llm_core.preference.reward_model import ScalarHeadModel
from llm_core.store import ArtifactReader
from llm_core.train.model_files import load_gpt, load_model

GPT_MODELS = {"base": "pretrain", "sft": "sft", "rlhf": "rlhf"}  # eval input -> the stage of its artifact
Scored = tuple[list[ResultRow], list[ItemOutcome]]
Items = TypeVar("Items")


@dataclass(frozen=True)
class Subject:
    """What suites score: `name` (what a suite's `models` lists), the eval input it comes from, and how it loads."""

    name: str
    input: str
    load: Callable[[ArtifactReader], Any]


SUBJECTS: tuple[Subject, ...] = (
    *(Subject(name, name, lambda reader: load_gpt(reader).eval()) for name in GPT_MODELS),
    Subject("reward", "reward", lambda reader: load_model(ScalarHeadModel, reader).eval()),
    Subject("rl", "rlhf", lambda reader: reader.manifest),  # the RL run: its figures before and after
)


@dataclass(frozen=True)
class SuiteReport:
    """How the report card shows a suite's rows.

    `rows`: the suite names its rows carry, each a name or a prefix ending in "/". `table`: "models" (each figure for
    base -> SFT -> RL), "reward" (the reward model beside its baselines) or "tools" (one row per suite and model, a
    column per metric of `columns`, metric -> label). `headline`: the metric whose items count the table shows."""

    rows: tuple[str, ...]
    table: Literal["models", "reward", "tools"] = "models"
    columns: Mapping[str, str] = field(default_factory=dict)
    headline: str | None = None

    def shows(self, suite: str) -> bool:
        """Whether a results row of `suite` is one of this suite's."""
        return any(suite == r or (r.endswith("/") and suite.startswith(r)) for r in self.rows)


class Suite(abc.ABC, Generic[Items]):
    """One suite (or a family of suites scored together): see the module docstring."""

    models: ClassVar[tuple[str, ...]]  # the subjects it scores (`SUBJECTS` names)
    report: ClassVar[SuiteReport]

    @abc.abstractmethod
    def items(self, data: EvalData) -> Items:
        """Its items, built once for every model."""

    def check_vocabulary(self, items: Items, data: EvalData) -> None:
        """Raise a ConfigError when the tokenizer can encode none of an eval set's items (a config error, not a
        score of 0). None to check by default."""

    @abc.abstractmethod
    def score(self, model_name: str, model: Any, items: Items, data: EvalData) -> Scored:
        """The results rows and item outcomes of one subject (a loaded model, or the RL run's manifest)."""

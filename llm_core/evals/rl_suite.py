"""The RL run on its own held-out prompts, as the `rlhf` stage measured them before (the SFT policy) and after
(`rl/{algorithm}_heldout[/kind]`): reward (pass@1 for GRPO), the reward model's score, the `<|im_end|>` rate, reply
length and (after) the KL to the SFT policy. Read from the `rlhf` manifest, nothing is generated here."""

from __future__ import annotations

import itertools

from llm_core.evals.data import EvalData
from llm_core.evals.results import ResultRow
from llm_core.evals.suite import Scored, Suite, SuiteReport
from llm_core.manifest import Manifest

# manifest key -> (metric, higher is better); the reward's metric is named after the algorithm's target
FIGURES = (("reward", None, True), ("score", "reward_model_score", True), ("finished", "im_end", True),
           ("length", "length", None), ("kl", "kl", False))


class RlHeldout(Suite[None]):
    """The `rl` subject's figures: rows of the models `sft` (before) and `rlhf` (after)."""

    models = ("rl",)
    report = SuiteReport(rows=("rl/",))

    def items(self, data: EvalData) -> None:
        return None

    def score(self, model_name: str, model: Manifest, items: None, data: EvalData) -> Scored:
        m = model
        n = int(m.metrics.get("eval_prompts", m.counts.get("eval_prompts", 0)))
        algorithm = m.config.get("algorithm", "ppo")
        target = "pass@1" if algorithm == "grpo" else "reward"
        kinds = [""] + sorted({"/" + k.split("/", 1)[1] for k in m.metrics if k.startswith("before_reward/")})
        rows = []
        for kind, (name, when) in itertools.product(kinds, (("sft", "before"), ("rlhf", "after"))):
            for key, metric, better in FIGURES:
                value = m.metrics.get(f"{when}_{key}{kind}")
                if value is not None and not (key == "kl" and when == "before"):
                    rows.append(ResultRow(name, f"rl/{algorithm}_heldout{kind}", metric or target, float(value),
                                          int(m.metrics.get(f"eval_prompts{kind}", n)), higher_is_better=better))
        return rows, []

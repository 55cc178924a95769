"""The reward model on the preference pairs held back from its training, per source and in all (`reward/...`).

Rows per group: `accuracy` (chosen scored above rejected) beside "longer wins", the baselines "longer wins" and
"shorter wins" as rows of their own, the share of pairs the context cuts (`truncated_share`), and the same
accuracy on the pairs the model reads whole (`reward/.../uncut`). A held-back pair is contaminated when the same
comparison, or a long stretch of one of its answers, is in the reward training pairs (a prompt alone may recur: a
generated preference asks the same few questions).
"""

from __future__ import annotations

from collections import defaultdict

from llm_core.evals.contamination import ContaminationIndex
from llm_core.evals.data import EvalData
from llm_core.evals.results import ItemOutcome, ResultRow, rate_row
from llm_core.evals.suite import Scored, Suite, SuiteReport
from llm_core.preference.reward_model import ScalarHeadModel, answer_ids
from llm_core.preference.reward_model import score as reward_scores
from llm_core.preference.reward_stage import longer_answer_wins

Entry = tuple[ItemOutcome, float, float, bool]  # outcome, longer wins, shorter wins, cut by the context


class RewardPairs(Suite[tuple[list[dict], list[dict]]]):
    """Reward accuracy per source on held-back pairs (items: the held-back pairs and the training pairs)."""

    models = ("reward",)
    report = SuiteReport(rows=("reward/",), table="reward")

    def items(self, data: EvalData) -> tuple[list[dict], list[dict]]:
        if not data.has("reward_data"):
            return [], []
        reader = data.reader("reward_data")
        return list(reader.iter_rows("val/*.parquet")), list(reader.iter_rows("train/*.parquet"))

    def score(self, model_name: str, model: ScalarHeadModel, items: tuple[list[dict], list[dict]],
              data: EvalData) -> Scored:
        pairs, train = items
        index = ContaminationIndex(data.config.ngram).add_texts(
            f"{p['chosen']}\n{p['rejected']}" for p in train).add_prompts(map(comparison_text, train))
        block, tok = model.gpt.config.block_size, data.tokenizer
        full = [(answer_ids(tok, p["prompt"], p["chosen"]), answer_ids(tok, p["prompt"], p["rejected"])) for p in pairs]
        chosen = reward_scores(model, [c[-block:] for c, _ in full], tok.eot_id)
        rejected = reward_scores(model, [r[-block:] for _, r in full], tok.eot_id)
        groups: dict[str, list[Entry]] = defaultdict(list)
        outcomes = []
        for i, (p, c, r, (c_ids, r_ids)) in enumerate(zip(pairs, chosen.tolist(), rejected.tolist(), full)):
            why = index.reason(comparison_text(p))
            outcome = ItemOutcome(model_name, f"reward/{p['source']}", f"pair-{i:05d}", p["prompt"][-1]["content"],
                                  f"chosen {c:.3f} vs rejected {r:.3f}", p["chosen"][:200], c > r, why or "",
                                  why is not None)
            longer = longer_answer_wins(p)
            for group in ("all", p["source"]):
                groups[group].append((outcome, longer, 1.0 - longer, max(len(c_ids), len(r_ids)) > block))
            outcomes.append(outcome)
        rows: list[ResultRow] = []
        for group, entries in sorted(groups.items()):
            suite = f"reward/{group}"
            rows += accuracy_rows(model_name, suite, entries)
            rows.append(ResultRow(model_name, suite, "truncated_share", sum(e[3] for e in entries) / len(entries),
                                  len(entries), higher_is_better=False))
            rows += accuracy_rows(model_name, f"{suite}/uncut", [e for e in entries if not e[3]])  # read whole
        return rows, outcomes


def accuracy_rows(model_name: str, suite: str, entries: list[Entry]) -> list[ResultRow]:
    """Accuracy beside "longer wins" and "shorter wins" (none without entries)."""
    if not entries:
        return []
    clean = [e for e in entries if not e[0].contaminated]
    longer = sum(e[1] for e in clean) / max(len(clean), 1)
    shorter = sum(e[2] for e in clean) / max(len(clean), 1)
    return [rate_row(model_name, suite, "accuracy", [e[0] for e in entries], baseline=longer,
                     baseline_name="longer wins"),
            ResultRow(model_name, suite, "baseline:longer_wins", longer, len(clean)),
            ResultRow(model_name, suite, "baseline:shorter_wins", shorter, len(clean))]


def comparison_text(pair: dict) -> str:
    return "\n".join([pair["prompt"][-1]["content"], pair["chosen"], pair["rejected"]])

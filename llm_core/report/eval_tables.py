"""The eval artifact as the report card shows it: the before/after table of the generative models, the reward-model
table beside its baselines, and a few per-item examples.

Reads `results.parquet` (one row per model x suite x metric) and `items.parquet` (per-item outputs) of an `eval`
artifact. Rows are rendered generically, in the order the eval stage wrote them; only model names get pretty labels.
Each row goes to the table its suite declares (`SuiteReport` in `llm_core.evals.suite`): the before/after table,
the reward model's table, or the tool table (each model with its tools beside the same model without them); a row
whose metric is `baseline:NAME` is a further baseline of the suite's first metric (e.g. "longer wins" beside
"shorter wins"). Computes nothing but differences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from llm_core.evals.suites import SUITES, suite_report
from llm_core.store import ArtifactReader

RESULTS_FILE, ITEMS_FILE = "results.parquet", "items.parquet"
RESULT_COLUMNS = ("model", "suite", "metric", "value", "n", "ci_low", "ci_high", "baseline", "baseline_name",
                  "contaminated", "higher_is_better")
ITEM_COLUMNS = ("model", "suite", "item_id", "prompt", "output", "expected", "correct")
REWARD_MODEL = "reward"
BASELINE_PREFIX = "baseline:"
MODEL_LABELS = {"base": "base", "sft": "SFT", "rlhf": "RL", "reward": "reward model"}
MODEL_ORDER = ("base", "sft", "rlhf")


def model_label(model: str) -> str:
    return MODEL_LABELS.get(model, model)


@dataclass
class Figure:
    """One (suite, metric) of the eval, with each model's row."""

    suite: str
    metric: str
    higher_is_better: bool | None  # None: a figure with no better direction (reply length)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> results row
    baselines: dict[str, float] = field(default_factory=dict)  # baseline name -> value

    @property
    def arrow(self) -> str:
        return "" if self.higher_is_better is None else " (↑)" if self.higher_is_better else " (↓)"

    @property
    def label(self) -> str:
        return f"{self.suite} · {self.metric}{self.arrow}"


def read_rows(reader: ArtifactReader, name: str, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """All rows of one Parquet file of the eval artifact; a missing file or column is an error naming the file."""
    if not reader.exists(name):
        raise FileNotFoundError(f"eval artifact {reader.ref} has no {name}")
    rows = list(reader.iter_rows(name))
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{reader.ref}/{name} lacks the column(s) {missing}; expected {list(columns)}")
    return rows


@dataclass
class EvalResults:
    """What the card shows of an eval artifact: its figures, per-item outputs, and the manifest metric names
    (`model/suite/metric`) those figures cover."""

    figures: list[Figure] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    metric_keys: set[str] = field(default_factory=set)


def read_eval(reader: ArtifactReader, with_items: bool) -> EvalResults:
    rows = read_rows(reader, RESULTS_FILE, RESULT_COLUMNS)
    items = read_rows(reader, ITEMS_FILE, ITEM_COLUMNS) if with_items and reader.exists(ITEMS_FILE) else []
    return EvalResults(eval_figures(rows), items, {f"{r['model']}/{r['suite']}/{r['metric']}" for r in rows})


def eval_figures(rows: list[dict[str, Any]]) -> list[Figure]:
    """Group results rows into figures, in the order the eval wrote them; `baseline:NAME` rows attach to the first
    figure of their model and suite, a row's own `baseline` to its figure."""
    figures: dict[tuple[str, str], Figure] = {}
    first_of_suite: dict[tuple[str, str], Figure] = {}
    extra_baselines = []
    for r in rows:
        if r["value"] is not None and math.isnan(r["value"]):
            r = {**r, "value": None}  # no item left to score (all contaminated, or none of this kind)
        if r["metric"].startswith(BASELINE_PREFIX):
            extra_baselines.append(r)
            continue
        fig = figures.setdefault((r["suite"], r["metric"]),
                                 Figure(r["suite"], r["metric"], r["higher_is_better"]))
        fig.rows[r["model"]] = r
        first_of_suite.setdefault((r["model"], r["suite"]), fig)
        if r["baseline"] is not None and not math.isnan(r["baseline"]):
            fig.baselines.setdefault(r["baseline_name"] or "baseline", float(r["baseline"]))
    for r in extra_baselines:
        fig = first_of_suite.get((r["model"], r["suite"]))
        if fig is None:
            raise ValueError(f"eval results: {r['metric']!r} of {r['model']}/{r['suite']} has no figure to sit beside")
        if r["value"] is not None:
            fig.baselines.setdefault(r["metric"].removeprefix(BASELINE_PREFIX).replace("_", " "), float(r["value"]))
    return list(figures.values())


def table_of(fig: Figure) -> str:
    """The table a figure goes to: its suite's, else the reward model's for its rows, else the before/after one."""
    report = suite_report(fig.suite)
    return report.table if report else "reward" if REWARD_MODEL in fig.rows else "models"


def split_figures(figures: list[Figure]) -> tuple[list[Figure], list[Figure], list[Figure]]:
    """(figures of the generative models, figures of the reward model, figures of the tool suites)."""
    chat, reward, tools = ([f for f in figures if table_of(f) == table] for table in ("models", "reward", "tools"))
    return chat, reward, tools


def generative_models(figures: list[Figure]) -> list[str]:
    """Models in pipeline order (base, SFT, RL), then any other in the order met."""
    seen = [m for f in figures for m in f.rows if m != REWARD_MODEL]
    return [m for m in MODEL_ORDER if m in seen] + [m for m in dict.fromkeys(seen) if m not in MODEL_ORDER]


def fmt_value(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.3f}" if abs(v) < 100 else f"{v:,.1f}"


def value_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "—"
    if row["value"] is None:
        return "n/a"
    cell = fmt_value(row["value"])
    if row["ci_low"] is not None and row["ci_high"] is not None:
        cell += f" ({fmt_value(row['ci_low'])}–{fmt_value(row['ci_high'])})"
    return cell


def change_cell(fig: Figure, before: str, after: str) -> str:
    a, b = fig.rows.get(before), fig.rows.get(after)
    if a is None or b is None or a["value"] is None or b["value"] is None:
        return "—"
    delta = b["value"] - a["value"]
    if abs(delta) < 5e-4:
        return "±0.000"
    if fig.higher_is_better is None:
        return f"{delta:+.3f}"
    better = (delta > 0) == fig.higher_is_better
    return f"{delta:+.3f} {'better' if better else 'worse'}"


def baseline_cell(fig: Figure) -> str:
    return ", ".join(f"{fmt_value(v)} ({name})" for name, v in fig.baselines.items()) or "—"


def items_cell(fig: Figure, models: list[str]) -> str:
    """Items scored per model (one number when all agree), and items left out as contaminated."""
    rows = [fig.rows[m] for m in models if m in fig.rows]
    counts = [str(int(r["n"])) for r in rows]
    cell = counts[0] if len(set(counts)) == 1 else "/".join(counts)
    left_out = [int(r["contaminated"] or 0) for r in rows]
    if any(left_out):
        cell += f" ({'/'.join(map(str, left_out)) if len(set(left_out)) > 1 else left_out[0]} contaminated, left out)"
    return cell


def before_after_markdown(figures: list[Figure]) -> str:
    """One table: each figure for base -> SFT -> RL, the change at each step, the baseline beside it."""
    models = generative_models(figures)
    steps = list(zip(models, models[1:]))
    head = (["suite", "metric"] + [model_label(m) for m in models]
            + [f"{model_label(a)} → {model_label(b)}" for a, b in steps] + ["baseline", "items"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fig in figures:
        cells = ([fig.suite, f"{fig.metric}{fig.arrow}"]
                 + [value_cell(fig.rows.get(m)) for m in models] + [change_cell(fig, a, b) for a, b in steps]
                 + [baseline_cell(fig), items_cell(fig, models)])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reward_markdown(figures: list[Figure]) -> str:
    """The reward model's figures, each baseline in its own column."""
    names = list(dict.fromkeys(name for f in figures for name in f.baselines))
    head = ["suite", "metric", "reward model"] + names + ["items"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fig in figures:
        cells = ([fig.suite, f"{fig.metric}{fig.arrow}",
                  value_cell(fig.rows[REWARD_MODEL])] + [fmt_value(fig.baselines.get(n)) for n in names]
                 + [items_cell(fig, [REWARD_MODEL])])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tools_markdown(figures: list[Figure]) -> str:
    """One row per tool suite and model: accuracy with tools beside without, chance where defined, how often the
    model called a tool, how many of its calls were well formed, and (search) whether the answering document came
    back."""
    by_suite: dict[str, dict[str, Figure]] = {}
    for f in figures:
        by_suite.setdefault(f.suite, {})[f.metric] = f
    tables = [s.report for s in SUITES if s.report.table == "tools"]
    columns = {metric: label for report in tables for metric, label in report.columns.items()}
    head = ["suite", "model", *columns.values(), "chance", "items"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for suite, metrics in by_suite.items():
        report = suite_report(suite)
        prefix = next((r for r in report.rows if r.endswith("/") and suite.startswith(r)), "") if report else ""
        headline = metrics.get(report.headline) if report and report.headline else None
        for model in generative_models(list(metrics.values())):
            cells = [value_cell(metrics[m].rows.get(model)) if m in metrics else "—" for m in columns]
            without = metrics.get("accuracy_without_tools")
            chance = fmt_value(without.baselines.get("chance")) if without else "—"
            count = items_cell(headline, [model]) if headline else "—"
            lines.append("| " + " | ".join([suite.removeprefix(prefix), model_label(model), *cells,
                                            chance, count]) + " |")
    return "\n".join(lines) + "\n"


def figure_values(figures: list[Figure]) -> dict[str, float]:
    """`model/suite/metric` -> value, the eval figures a later run compares against."""
    return {f"{m}/{f.suite}/{f.metric}": float(r["value"]) for f in figures for m, r in f.rows.items()
            if r["value"] is not None}


def examples_markdown(items: list[dict[str, Any]], per_suite: int, width: int = 140) -> str:
    """Up to `per_suite` items of each suite, those the models disagree on first, with every model's output beside
    the expected answer."""
    suites: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for it in items:
        suites.setdefault(it["suite"], {}).setdefault(str(it["item_id"]), {})[it["model"]] = it
    out = []
    for suite, by_item in suites.items():
        ranked = sorted(by_item.items(), key=lambda kv: len({bool(o["correct"]) for o in kv[1].values()}) == 1)
        for item_id, outputs in ranked[:per_suite]:
            first = next(iter(outputs.values()))
            out.append(f"- **{suite}** `{item_id}`: {str(first['prompt'])[:width]!r}"
                       + (f" (expected {str(first['expected'])[:60]!r})" if first.get("expected") else ""))
            models = [m for m in MODEL_ORDER if m in outputs] + [m for m in outputs if m not in MODEL_ORDER]
            for m in models:
                mark = "✓" if outputs[m]["correct"] else "✗"
                out.append(f"  - {model_label(m)} {mark} {str(outputs[m]['output'])[:width]!r}")
    return "\n".join(out) + ("\n" if out else "")

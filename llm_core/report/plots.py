"""The report card's charts, as PNG bytes (matplotlib, Agg backend): loss curves, eval bars per model, the data
funnel, and reward / KL per RL iteration. Each function takes plain data already read from the artifacts and draws
nothing when it has nothing to draw (the caller then leaves the chart out)."""

from __future__ import annotations

import math
from typing import Any

from llm_core.report.eval_tables import REWARD_MODEL, Figure, model_label
from llm_core.train.report import figure_png, plot_loss_history, pyplot
from llm_core.train.trainer import TrainHistory

MODEL_COLORS = {"base": "#8c8c8c", "sft": "#1f77b4", "rlhf": "#d62728", REWARD_MODEL: "#2ca02c"}
BASELINE_STYLES = ("--", ":", "-.")
REWARD_LABELS = {"score": "reward-model score", "reward": "verifiable reward"}


def loss_curves_png(histories: dict[str, tuple[TrainHistory, float | None]]) -> bytes:
    """One panel per training stage (pretrain, SFT, ...): train and val loss against steps, with its baseline."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(histories), figsize=(5.5 * len(histories), 3.8), dpi=100, squeeze=False)
    for ax, (stage, (history, baseline)) in zip(axes[0], histories.items()):
        plot_loss_history(ax, history, baseline, f"{stage} loss")
    return figure_png(fig)


def eval_bars_png(figures: list[Figure], models: list[str], columns: int = 4) -> bytes:
    """Small multiples, one per (suite, metric): a bar per model with its 95% interval, baselines as lines."""
    plt = pyplot()
    rows = math.ceil(len(figures) / columns)
    cols = min(columns, len(figures))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.7 * rows), dpi=100, squeeze=False)
    for ax in axes.flat[len(figures):]:
        ax.set_visible(False)
    for ax, f in zip(axes.flat, figures):
        draw_eval_panel(ax, f, models)
    return figure_png(fig)


def draw_eval_panel(ax: Any, f: Figure, models: list[str]) -> None:
    """One figure's bars (value above each, 95% interval when known) and its baselines as labelled lines."""
    present = [m for m in models if m in f.rows and f.rows[m]["value"] is not None]
    values = [f.rows[m]["value"] for m in present]
    lows = [f.rows[m]["ci_low"] if f.rows[m]["ci_low"] is not None else v for m, v in zip(present, values)]
    highs = [f.rows[m]["ci_high"] if f.rows[m]["ci_high"] is not None else v for m, v in zip(present, values)]
    errors = [[max(0.0, v - lo) for v, lo in zip(values, lows)], [max(0.0, hi - v) for v, hi in zip(values, highs)]]
    has_ci = any(e > 0 for side in errors for e in side)
    ax.bar(range(len(present)), values, yerr=errors if has_ci else None, capsize=3,
           color=[MODEL_COLORS.get(m, "#9467bd") for m in present])
    for x, (v, above) in enumerate(zip(values, errors[1])):
        ax.annotate(f"{v:.2f}", (x, v + above if v >= 0 else v), ha="center", va="bottom" if v >= 0 else "top",
                    fontsize=7, xytext=(0, 2 if v >= 0 else -2), textcoords="offset points")
    for style, (name, value) in zip(BASELINE_STYLES * 3, f.baselines.items()):
        ax.axhline(value, ls=style, color="black", lw=1, label=f"{name} {value:.2f}")
    if f.baselines:
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
    if not present:
        ax.text(0.5, 0.5, "no item left to score", ha="center", va="center", transform=ax.transAxes, fontsize=8)
    if min(values + list(f.baselines.values()), default=0.0) >= 0:  # bars from zero up: the axis starts at zero
        ax.set_ylim(0, 1.2 * max(highs + list(f.baselines.values()), default=0.0) or 1.0)
    else:
        ax.margins(y=0.15)
    ax.set_xticks(range(len(present)), [model_label(m) for m in present], fontsize=8)
    ax.set_title(f.label, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)


def funnel_png(steps: list[tuple[str, int]]) -> bytes:
    """Horizontal bars, first step on top: how many records are left after each stage and filter."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(steps) + 1.2), dpi=100)
    labels, counts = [s for s, _ in steps], [c for _, c in steps]
    ax.barh(range(len(steps)), counts, color="#4c72b0")
    top = max(counts) if counts else 1
    for y, (c, prev) in enumerate(zip(counts, [None, *counts[:-1]])):
        share = f" ({c / prev:.0%} of previous)" if prev and y else ""
        ax.text(c + top * 0.01, y, f"{c:,}{share}", va="center", fontsize=8)
    ax.set_yticks(range(len(steps)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.35)
    ax.set_xlabel("records")
    ax.set_title("data funnel: web records to training documents")
    ax.grid(axis="x", alpha=0.3)
    return figure_png(fig)


def rl_history_png(log: list[dict[str, Any]], reward_key: str, title: str) -> bytes:
    """Two panels per RL iteration: the reward (with the share of replies that end, if logged) and the KL."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    its = [r["iteration"] for r in log]
    left.plot(its, [r[reward_key] for r in log], "o-", lw=1.5, label=REWARD_LABELS.get(reward_key, reward_key))
    if reward_key == "score" and all("reward" in r for r in log):  # PPO's reward: the score less its penalties
        left.plot(its, [r["reward"] for r in log], "^-", lw=1.5, label="PPO reward (score less missing-EOS penalty)")
    if all("finished" in r for r in log):
        left.plot(its, [r["finished"] for r in log], "s--", lw=1, label="replies that end (share)")
    left.set_title(f"{title}: reward per iteration")
    left.legend(fontsize=8)
    right.plot(its, [r["kl"] for r in log], "o-", color="#d62728", lw=1.5, label="KL to the SFT model")
    right.set_title(f"{title}: KL per iteration")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    return figure_png(fig)

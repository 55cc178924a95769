"""What a training run shows a person: the loss-curve image and the metrics table (rows for the UI)."""

from __future__ import annotations

import io
from typing import Any

from llm_core.train.trainer import TrainHistory


def plot_loss_history(ax: Any, history: TrainHistory, baseline: float | None = None, title: str = "") -> None:
    """Draw train loss (per logged interval) and val loss (per evaluation) against steps on a matplotlib axis."""
    ax.plot([r["step"] for r in history.train], [r["loss"] for r in history.train], label="train loss", lw=1)
    evals = [r for r in history.evals if "val_loss" in r]
    if evals:
        ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val loss", lw=1.5)
    if baseline is not None:
        ax.axhline(baseline, ls="--", color="grey", lw=1, label=f"unigram baseline {baseline:.2f}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()


def figure_png(fig: Any) -> bytes:
    """PNG bytes of a finished matplotlib figure, which is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curve_png(history: TrainHistory, baseline: float | None = None, title: str = "") -> bytes:
    """PNG bytes of train loss (per logged interval) and val loss (per evaluation) against steps."""
    fig, ax = pyplot().subplots(figsize=(7, 4), dpi=100)
    plot_loss_history(ax, history, baseline, title)
    return figure_png(fig)


def eval_table(history: TrainHistory) -> list[dict[str, float]]:
    """One row per evaluation, with the train loss logged at (or just before) that step."""
    rows = []
    for ev in history.evals:
        logged = [r for r in history.train if r["step"] <= ev["step"]]
        row = {"step": ev["step"], **{k: round(v, 4) for k, v in ev.items() if k != "step"}}
        if logged:
            row["train_loss"] = round(logged[-1]["loss"], 4)
        rows.append(row)
    return rows

"""What the `filter` stage shows of a run: a row per filter (in, kept, dropped by reason, speed), its markdown
summary, and the steps it adds to the report card's data funnel."""

from __future__ import annotations

from typing import Any

from llm_core.filters.base import FilterStats


def filter_row(name: str, st: FilterStats) -> dict[str, Any]:
    return {
        "filter": name,
        "input": st.input,
        "kept": st.kept,
        "dropped": st.input - st.kept,
        "dropped_by_reason": ", ".join(f"{r}: {n}" for r, n in sorted(st.dropped.items(), key=lambda x: -x[1])),
        "seconds": round(st.seconds, 3),
        "docs_per_s": round(st.input / st.seconds, 1) if st.seconds else None,
    }


def summary_markdown(counts: dict[str, int], filters: list[dict], reasons: list[dict]) -> str:
    lines = [
        f"**filter**: {counts['input']} documents in, {counts['kept']} kept, {counts['rejected']} rejected.",
        "",
        "| filter | input | kept | dropped | seconds | docs/s |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {r['filter']} | {r['input']} | {r['kept']} | {r['dropped']} | {r['seconds']} | {r['docs_per_s']} |"
          for r in filters),
        "",
        "| reason | documents |",
        "|---|---:|",
        *(f"| `{r['reason']}` | {r['documents']} |" for r in reasons),
    ]
    return "\n".join(lines)


def funnel_steps(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Documents left after each filter (its `filter.{name}.kept` counter), then after dedup."""
    steps = []
    for key, value in counts.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "filter" and parts[2] == "kept":
            steps.append((f"filter: after {parts[1]}", value))
    if "kept" in counts:
        steps.append(("filter: kept (after dedup)", counts["kept"]))
    return steps

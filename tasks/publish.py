"""What a run shows in the Prefect UI: each stage's summary, counts, tables and plots, its progress and log lines
while it works, and the run's summary table and report card on the top-level flow run.

Stage artifacts have no key: they belong to their own run (its Artifacts tab), so runs never overwrite each other's.
The top-level summary and report card are keyed by deployment (`full-pipeline-summary`, `train-report`, ...): the
Artifacts page then shows each deployment's latest, with every earlier run in the key's history. A CLI run (no
deployment) keeps them unkeyed.
"""

from __future__ import annotations

import logging
import re
import time

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.runtime import deployment

from llm_core.pipeline_config import PipelineConfig
from llm_core.registry import STAGES
from llm_core.store import ArtifactStore, Manifest
from tasks.run_summary import StageRun, images_markdown, report_markdown, slow_run_warnings, summary_markdown

PROGRESS_LOG_STEP = 5.0  # percent between progress log lines
PROGRESS_MIN_INTERVAL_S = 1.0  # at most one progress artifact update a second (always at 100%)


def prefect_key(*parts: str) -> str:
    """The key of a Prefect (UI) artifact, not of a stored one: lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def manifest_markdown(manifest: Manifest, uri: str, cached: bool, images: str = "") -> str:
    status = "cache hit: reused, nothing recomputed" if cached else f"built in {manifest.timings.get('seconds', 0):.1f} s"
    lines = [
        f"# {manifest.stage} `{manifest.key}`",
        "",
        f"- status: **{status}**",
        f"- location: `{uri}`",
        f"- files: {len(manifest.files)} ({sum(f.size for f in manifest.files.values()):,} bytes)",
    ]
    lines += [f"- input `{name}`: `{ref}`" for name, ref in manifest.inputs.items()]
    if manifest.metrics:
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {'n/a' if v is None else f'{v:.4g}'} |" for k, v in manifest.metrics.items()]
    if markdown := manifest.extra.get("markdown"):
        lines += ["", markdown]
    if images:
        lines += ["", images]
    return "\n".join(lines)


def publish_manifest(manifest: Manifest, store: ArtifactStore, uri: str, cached: bool) -> None:
    """The stage's summary (with its plots inlined), counts and tables, as artifacts of the current (stage) run."""
    images = "" if is_run_card(manifest) else images_markdown(store, manifest)  # a card inlines its own
    create_markdown_artifact(
        markdown=manifest_markdown(manifest, uri, cached, images),
        description=f"{manifest.stage} {manifest.key}{' (cached)' if cached else ''}",
    )
    if manifest.counts:
        rows = [{"count": k, "value": v} for k, v in manifest.counts.items()]
        create_table_artifact(table=rows, description=f"{manifest.stage} {manifest.key} counts")
    for name, rows in manifest.extra.get("tables", {}).items():
        if rows:
            create_table_artifact(table=rows, description=f"{manifest.stage} {manifest.key} {name}")


def deployment_key(what: str) -> str | None:
    """The Prefect artifact key `{deployment}-{what}` for a deployment's run, None (no key) otherwise."""
    name = deployment.name
    return prefect_key(name, what) if name else None


def publish_run_summary(runs: list[StageRun], config: PipelineConfig) -> None:
    """The summary table of every stage and, when the run has a stage that writes the run's card (the report), that
    card: artifacts of the current (top-level) flow run."""
    create_markdown_artifact(markdown=summary_markdown(runs, slow_run_warnings(config, [r.stage for r in runs])),
                             key=deployment_key("summary"), description="every stage of this run")
    card = next((r for r in runs if STAGES[r.stage].run_card), None)
    if card is not None:
        store = config.run.store()
        manifest = store.manifest(store.ref(card.stage, card.key))
        create_markdown_artifact(markdown=report_markdown(store, manifest), key=deployment_key(card.stage),
                                 description=f"report card {card.key}")


def is_run_card(manifest: Manifest) -> bool:
    return manifest.stage in STAGES and STAGES[manifest.stage].run_card


class ProgressArtifact:
    """A progress listener for one stage: a Prefect progress artifact, created at the stage's first progress report
    (stages that report none get none) and updated at most once a second with the latest metrics (e.g. the loss),
    plus a run-log line every few percent."""

    def __init__(self, stage: str):
        self.stage = stage
        self.artifact_id = None
        self.logger = get_run_logger()
        self._last_update = 0.0
        self._last_logged = -PROGRESS_LOG_STEP
        self._percent = 0.0

    def __call__(self, stage: str, done: float, total: float, metrics: dict[str, float]) -> None:
        if stage != self.stage:
            return
        percent = 100.0 * done / max(total, 1)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        description = f"{stage} {done:.0f}/{total:.0f}" + (f": {shown}" if shown else "")
        if percent - self._last_logged >= PROGRESS_LOG_STEP or done >= total:
            self._last_logged = percent
            self.logger.info("%s (%.0f%%)", description, percent)
        now = time.monotonic()
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(percent, description=description)
        elif now - self._last_update >= PROGRESS_MIN_INTERVAL_S or done >= total:
            update_progress_artifact(self.artifact_id, percent, description=description)
        else:
            return
        self._last_update, self._percent = now, percent

    def finish(self) -> None:
        """The stage committed: its progress (if it reported any) ends at 100%."""
        if self.artifact_id is not None and self._percent < 100.0:
            update_progress_artifact(self.artifact_id, 100.0, description=f"{self.stage} done")
            self._percent = 100.0


class RunLogBridge(logging.Handler):
    """Forwards the `llm_core` loggers' records (the trainer's eval lines, stage warnings) to the current Prefect run
    logger while installed; llm_core itself never imports Prefect."""

    def __init__(self, logger_name: str = "llm_core"):
        super().__init__(logging.INFO)
        self.source = logging.getLogger(logger_name)
        self.target = get_run_logger()
        self._level = self.source.level

    def emit(self, record: logging.LogRecord) -> None:
        self.target.log(record.levelno, "%s: %s", record.name, record.getMessage())

    def __enter__(self) -> RunLogBridge:
        self.source.addHandler(self)
        if self.source.getEffectiveLevel() > logging.INFO:
            self.source.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc) -> None:
        self.source.removeHandler(self)
        self.source.setLevel(self._level)

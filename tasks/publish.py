"""What a stage shows in the Prefect UI: a counts table, a markdown summary, progress while it runs."""

from __future__ import annotations

import re
import time

from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact
from prefect.artifacts import update_progress_artifact

from llm_core.store import Manifest


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def manifest_markdown(manifest: Manifest, uri: str, cached: bool) -> str:
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
    return "\n".join(lines)


def publish_manifest(manifest: Manifest, uri: str, cached: bool) -> None:
    stage_key = artifact_key(manifest.stage)
    create_markdown_artifact(
        markdown=manifest_markdown(manifest, uri, cached),
        key=f"{stage_key}-summary",
        description=f"{manifest.stage} {manifest.key}{' (cached)' if cached else ''}",
    )
    if manifest.counts:
        rows = [{"count": k, "value": v} for k, v in manifest.counts.items()]
        create_table_artifact(table=rows, key=f"{stage_key}-counts", description=f"{manifest.stage} counts")
    for name, rows in manifest.extra.get("tables", {}).items():
        if rows:
            create_table_artifact(table=rows, key=artifact_key(manifest.stage, name), description=name)


class ProgressArtifact:
    """A progress listener that keeps one Prefect progress artifact up to date (at most once a second)."""

    def __init__(self, stage: str):
        self.stage = stage
        self.artifact_id = create_progress_artifact(0.0, key=artifact_key(stage, "progress"), description=stage)
        self._last = 0.0

    def __call__(self, stage: str, done: float, total: float, metrics: dict[str, float]) -> None:
        now = time.monotonic()
        if stage != self.stage or (now - self._last < 1.0 and done < total):
            return
        self._last = now
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        update_progress_artifact(self.artifact_id, 100.0 * done / max(total, 1), description=f"{stage} {shown}")

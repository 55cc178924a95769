"""What an artifact's manifest says, and how it is split: `manifest.json` holds the content (files with size and
sha256, counts, content metrics, config, lineage), `run.json` the run record (when, how long, how fast, and the
summary tables and markdown, which carry timings). Readers get one `Manifest` with both.

Also the shape of artifact references (`stage/key`, plain tokens only) and the error a broken artifact raises.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field, field_validator

from llm_core import __version__

STAGE_PATTERN = r"[a-z][a-z0-9_]*"
KEY_PATTERN = r"[0-9A-Za-z_-]{1,64}"  # keys the pipeline makes are 16 hex chars; tests use readable names
_REF_RE = re.compile(rf"^({STAGE_PATTERN})/({KEY_PATTERN})$")
# Metrics that describe the run, not the content: they go to run.json (`tokens_per_s`, `seconds`, `mfu`, ...).
_RUN_METRIC_RE = re.compile(r"(^|[_.])(s|seconds|ms|us|per_s|per_second|per_sec|mfu|throughput|elapsed)$|_per_s_")
SUMMARY_KEYS = ("tables", "markdown")  # extra entries that show the run (timings, throughput) to a person


class ArtifactError(RuntimeError):
    """A committed artifact that cannot be trusted (unreadable manifest, missing or changed file); names the path."""


def parse_ref(text: str) -> tuple[str, str]:
    """'stage/key' -> (stage, key), or ValueError: nothing but plain tokens, so it stays inside the root."""
    match = _REF_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an artifact reference of the form stage/key (letters, digits, _ and -)")
    return match.group(1), match.group(2)


def is_carried_input(name: str) -> bool:
    """An input a night of a corpus carries over from earlier nights (the previous corpus, the champion's models):
    part of the artifact's key, but not of this run's lineage, which would otherwise reach back through every
    earlier night."""
    return name == "previous" or name.startswith("champion_")


def is_run_metric(name: str) -> bool:
    """A metric of the run (time, throughput), kept in run.json rather than in the content manifest."""
    return bool(_RUN_METRIC_RE.search(name))


class FileEntry(BaseModel):
    size: int
    sha256: str


class RunRecord(BaseModel):
    """`run.json`: how the artifact was built this time (when, how long, how fast, and the tables and markdown
    summary shown to a person, which carry timings); not part of its content."""

    created_at: str
    timings: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, float | None] = Field(default_factory=dict)
    summary: dict[str, Any] = Field(default_factory=dict, description="extra.tables and extra.markdown")


class Manifest(BaseModel):
    """The commit marker of an artifact: files, counts, lineage, config, metrics; `created_at` and `timings` (and the
    run metrics) come from `run.json` when read through the store, so readers see one object."""

    stage: str = Field(pattern=rf"^{STAGE_PATTERN}$")
    key: str = Field(pattern=rf"^{KEY_PATTERN}$")
    version: str
    package_version: str = __version__
    created_at: str = ""
    config: dict[str, Any]
    inputs: dict[str, str] = Field(default_factory=dict, description="input name -> 'stage/key'")
    files: dict[str, FileEntry] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, float | None] = Field(default_factory=dict, description="None: not measurable (NaN, inf)")
    timings: dict[str, float] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("inputs")
    @classmethod
    def _inputs_are_refs(cls, inputs: dict[str, str]) -> dict[str, str]:
        for ref in inputs.values():
            parse_ref(ref)
        return inputs

    def content_json(self) -> bytes:
        """What `manifest.json` holds: everything but the run record, so equal content gives equal bytes."""
        data = self.model_dump(mode="json", exclude={"created_at", "timings"})
        data["metrics"] = {k: v for k, v in self.metrics.items() if not is_run_metric(k)}
        data["extra"] = {k: v for k, v in self.extra.items() if k not in SUMMARY_KEYS}
        return json.dumps(data, indent=2, ensure_ascii=False, default=str).encode()

    def run_record(self) -> RunRecord:
        run_metrics = {k: v for k, v in self.metrics.items() if is_run_metric(k)}
        summary = {k: v for k, v in self.extra.items() if k in SUMMARY_KEYS}
        return RunRecord(created_at=self.created_at, timings=self.timings, metrics=run_metrics, summary=summary)

    def with_run_record(self, record: RunRecord | None) -> Manifest:
        if record is None:
            return self
        return self.model_copy(update={"created_at": record.created_at, "timings": record.timings,
                                       "metrics": {**self.metrics, **record.metrics},
                                       "extra": {**self.extra, **record.summary}})

"""A run's summary, and why a slow run is slow.

For every stage of a run: its key, whether it was a cache hit, its seconds, its main count and throughput beside the
reference throughput the stage declares (`Stage.throughput`: the tiny config's `make run` on a quiet 2-core CPU,
BENCHMARKS.md), so a stage far below its reference stands out. `slow_run_warnings` says when the machine is
oversubscribed (load average above the cores) or a stage's settings make it slow here (`Stage.machine_warnings`),
and what to change.

The CLI prints this summary; tasks/publish.py makes it (and the report card, when the run has a report stage)
artifacts of the top-level flow run. No Prefect here.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from llm_core.pipeline_config import PipelineConfig
from llm_core.registry import STAGES
from llm_core.stage import StageContext, Throughput
from llm_core.store import ArtifactStore, Manifest

SLOW_FACTOR = 2.0  # a stage below 1/SLOW_FACTOR of its reference throughput is flagged


@dataclass
class StageRun:
    """One stage of a run, as the summary shows it."""

    stage: str
    key: str
    cached: bool
    seconds: float  # this run's time for the stage (a cache hit: checking and reusing it)
    count_name: str
    count: int
    files_bytes: int

    @classmethod
    def of(cls, ctx: StageContext, cached: bool, wall_s: float | None = None) -> StageRun:
        """The stage of `ctx` once its artifact is committed; `wall_s` is this run's time for it."""
        return cls.from_manifest(ctx.store().manifest(ctx.output), cached, wall_s)

    @classmethod
    def from_manifest(cls, manifest: Manifest, cached: bool, wall_s: float | None = None) -> StageRun:
        name, count = main_count(manifest)
        if wall_s is None:  # known afterwards only from the manifest: a cache hit cost this run nothing to speak of
            wall_s = 0.0 if cached else manifest.timings.get("seconds", 0.0)
        return cls(manifest.stage, manifest.key, cached, wall_s, name, count,
                   sum(f.size for f in manifest.files.values()))

    @property
    def rate(self) -> float | None:
        """Main count per second of the work done (None for a cache hit: no work)."""
        return self.count / self.seconds if not self.cached and self.seconds > 0 and self.count else None

    @property
    def reference_rate(self) -> float | None:
        ref = throughput(self.stage)
        return ref.reference_per_s if ref and ref.count == self.count_name else None

    @property
    def slow(self) -> bool:
        return bool(self.rate and self.reference_rate and self.rate * SLOW_FACTOR < self.reference_rate)

    def row(self) -> dict[str, str]:
        rate, ref = self.rate, self.reference_rate
        return {
            "stage": self.stage,
            "key": self.key,
            "cache hit": "yes" if self.cached else "no",
            "seconds": f"{self.seconds:.1f}",
            "main count": f"{self.count:,} {self.count_name}" if self.count_name else "-",
            "per second": f"{rate:,.1f}" if rate else "-",
            "reference /s": f"{ref:,.1f}" if ref else "-",
            "note": f"{ref / rate:.1f}x slower than reference" if self.slow and rate and ref else "",
        }


def throughput(stage: str) -> Throughput | None:
    return STAGES[stage].throughput if stage in STAGES else None


def main_count(manifest: Manifest) -> tuple[str, int]:
    """The count a stage's throughput is measured in: its reference's, else its first count."""
    ref = throughput(manifest.stage)
    if ref and ref.count in manifest.counts:
        return ref.count, manifest.counts[ref.count]
    return next(iter(manifest.counts.items()), ("", 0))


def runs_since(store: ArtifactStore, refs: dict[str, str], started: dt.datetime) -> list[StageRun]:
    """Summary rows of a finished run from its artifacts ('stage/key'); a cache hit is an artifact created before
    `started` (timezone-aware)."""
    runs = []
    for ref in refs.values():
        manifest = store.manifest(store.find(ref))
        cached = dt.datetime.fromisoformat(manifest.created_at) < started
        runs.append(StageRun.from_manifest(manifest, cached))
    return runs


def slow_run_warnings(config: PipelineConfig, stages: Iterable[str] | None = None, load: float | None = None,
                      cores: int | None = None) -> list[str]:
    """What makes this machine slow for a run of `stages` (default: all enabled) with this config, each with what to
    change (empty when nothing does). `load` and `cores` default to this machine's."""
    cores = cores or os.cpu_count() or 1
    load = os.getloadavg()[0] if load is None else load
    warnings = []
    if load > cores:
        warnings.append(
            f"the machine is oversubscribed: load average {load:.1f} on {cores} cores, so stages run up to "
            f"{load / cores:.1f}x slower than their reference; stop other jobs or run when it is quiet"
            + (f", or set run.workers={max(1, cores // 2)} to leave room" if config.run.workers in (0, cores) else ""))
    for name in STAGES if stages is None else stages:
        section = config.section(name)
        if section.enabled:
            warnings += STAGES[name].machine_warnings(section, cores, load)
    return warnings


def summary_markdown(runs: list[StageRun], warnings: list[str]) -> str:
    """The summary table of a run, its total time and its warnings, as markdown."""
    lines = ["# Run summary", ""]
    lines += [f"> **warning**: {w}" for w in warnings] + ([""] if warnings else [])
    if runs:
        header = list(runs[0].row())
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r.row()[h] if h != "key" else f"`{r.key}`" for h in header) + " |" for r in runs]
    built = [r for r in runs if not r.cached]
    lines += ["", f"{len(runs)} stages, {len(runs) - len(built)} cache hits, {sum(r.seconds for r in runs):.1f} s "
                  f"in all ({sum(r.seconds for r in built):.1f} s building). Reference: the tiny config on a quiet "
                  "2-core CPU (BENCHMARKS.md)."]
    return "\n".join(lines)


_IMAGE_LINK = re.compile(r"(!\[[^\]]*\]\()([^)\s]+\.png)(\))")


def embed_images(markdown: str, store: ArtifactStore, manifest: Manifest) -> str:
    """`markdown` with every relative link to one of the artifact's PNG files replaced by a data: URI, so the image
    shows in the Prefect UI whatever the store (a local folder or S3)."""
    reader = store.reader(store.ref(manifest.stage, manifest.key))

    def inline(match: re.Match) -> str:
        name = match.group(2).removeprefix("./")
        if name not in manifest.files:
            return match.group(0)
        with reader.open(name) as f:
            data = base64.b64encode(f.read()).decode("ascii")
        return f"{match.group(1)}data:image/png;base64,{data}{match.group(3)}"

    return _IMAGE_LINK.sub(inline, markdown)


def images_markdown(store: ArtifactStore, manifest: Manifest) -> str:
    """The artifact's PNG files (loss curves, eval plots) as markdown images, inlined."""
    names = sorted(n for n in manifest.files if n.endswith(".png"))
    return embed_images("\n\n".join(f"![{n}]({n})" for n in names), store, manifest)


def report_markdown(store: ArtifactStore, manifest: Manifest) -> str:
    """The run's card (the markdown of the stage that writes it, `Stage.run_card`) with its images inlined."""
    return embed_images(manifest.extra.get("markdown", ""), store, manifest)

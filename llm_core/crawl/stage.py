"""The `crawl` stage: WARC files, a live crawl, local HTML folders and text corpora into one artifact.

Artifact layout (`{root}/crawl/{key}/`):

| file | schema | what |
|---|---|---|
| `sources.json` | - | the shard list this artifact was built from (globs and listings resolved) |
| `pages/{shard}-NNNN.parquet` | RAW_PAGES | raw pages, for the extract stage |
| `documents/{shard}-NNNN.parquet` | DOCUMENTS | records of text corpora, which skip extraction |
| `skipped/{shard}-NNNN.parquet` | REJECTED | records not kept, with `reason` and `detail` |
| `warc/{shard}-NNNNN.warc.gz` | WARC | everything the live crawl received, to replay it |
| `_shards/{shard}.json` | - | per-shard counts (completion markers) |

Shards: `warc-NNNNN` (one per WARC file), `html-NNNNN` (`records_per_shard` HTML files each), `dataset-NNNNN`
(one per text corpus), `live-00000` (the whole live crawl, so a rerun after a kill crawls again from the seeds).
Every file of a shard starts with its id, and a shard that did not finish has its files removed before it runs
again (`shard_outputs`): a killed attempt's files never mix with the rerun's, even when the rerun writes fewer.
Counts: `records` = `pages` + `documents` + `skipped`, `skipped:REASON`, `truncated`.
"""

from __future__ import annotations

from typing import Any

import fsspec

from llm_core.config import ConfigError
from llm_core.crawl.config import CrawlConfig
from llm_core.crawl.live import SOURCE as LIVE_SOURCE
from llm_core.crawl.live import LiveCrawler
from llm_core.crawl.local import read_html_files, read_text_dataset
from llm_core.crawl.output import CrawlStats, ShardOutput
from llm_core.crawl.sources import local_inputs, plan_shards, warc_source_label
from llm_core.crawl.warc_reader import Skip, read_archive
from llm_core.crawl.warc_writer import WarcFiles
from llm_core.manifest import Manifest
from llm_core.stage import ShardedStage, StageContext, StageResult, Throughput

SOURCES_FILE = "sources.json"
LAYOUT = {
    "pages": "pages/*.parquet",
    "documents": "documents/*.parquet",
    "skipped": "skipped/*.parquet",
    "warc": "warc/*.warc.gz",
}


class CrawlStage(ShardedStage):
    name = "crawl"
    config_model = CrawlConfig
    throughput = Throughput("records", 47.0)

    def funnel(self, manifest: Manifest) -> list[tuple[str, int]]:
        return [(f"crawl: {name}", manifest.counts[name]) for name in ("records", "pages") if name in manifest.counts]
    # 2: raw pages carry `truncated`; 3: live-crawl WARC files named by shard id; 4: lying Content-Lengths are
    # `warc:bad_length` skips, bodies cut at `max_decoded_bytes` are marked truncated
    version = "4"
    stats_type = CrawlStats

    def data_paths(self, ctx_config: CrawlConfig) -> list[str]:
        """Local WARC files and HTML folders are fingerprinted; remote inputs (http, s3, a Common Crawl listing) are
        named, not read: a new `snapshot` label tells a refreshed remote crawl apart."""
        return local_inputs(ctx_config)

    # -- planning
    def check(self, ctx_config: CrawlConfig) -> None:
        if not ctx_config.has_sources():
            raise ConfigError("crawl: no source set: give crawl.warc, warc_paths, live, html_dirs or text_datasets")

    def shard_ids(self, ctx: StageContext) -> list[str]:
        return [shard["id"] for shard in self._shards(ctx)]

    def _shards(self, ctx: StageContext) -> list[dict[str, Any]]:
        """The shard list, resolved on the first attempt and read back on retries."""
        writer = ctx.writer()
        if writer.exists(SOURCES_FILE):
            return writer.read_json(SOURCES_FILE)
        config: CrawlConfig = ctx.config
        self.check(config)
        shards = plan_shards(config)
        writer.write_json(SOURCES_FILE, shards)
        return shards

    # -- work
    def shard_outputs(self, shard: str) -> list[str]:
        return [f"{folder}/{shard}-*" for folder in ("pages", "documents", "skipped", "warc")]

    def run_shard(self, ctx: StageContext, shard: str) -> CrawlStats:
        spec = next(s for s in self._shards(ctx) if s["id"] == shard)
        config: CrawlConfig = ctx.config
        with ShardOutput(ctx.writer(), shard, config.records_per_shard) as out:
            if spec["kind"] == "warc":
                self._read_warc(config, spec["location"], out)
            elif spec["kind"] == "html":
                for item in read_html_files(spec["files"], spec["source"], config.max_body_bytes):
                    out.add(item, spec["source"])
            elif spec["kind"] == "dataset":
                source = config.text_datasets[spec["index"]]
                for item in read_text_dataset(source):
                    if isinstance(item, dict):
                        out.document(item)
                    else:
                        out.skip(item, source.label)
            else:
                self._crawl_live(ctx, config, shard, out)
        return out.result()

    def _read_warc(self, config: CrawlConfig, location: str, out: ShardOutput) -> None:
        source = warc_source_label(location)
        try:
            stream = fsspec.open(location, "rb", **config.storage_options).open()
        except FileNotFoundError as e:  # listed but gone (a 404): permanent, so recorded rather than retried
            out.skip(Skip(location, None, "warc:missing", str(e)), source)
            return
        with stream:
            for item in read_archive(
                stream,
                name=location,
                source=source,
                content_types=config.content_types,
                max_body_bytes=config.max_body_bytes,
                max_decoded_bytes=config.max_decoded_bytes,
            ):
                out.add(item, source)

    def _crawl_live(self, ctx: StageContext, config: CrawlConfig, shard: str, out: ShardOutput) -> None:
        live = config.live
        writer = ctx.writer()
        with WarcFiles(writer.open_atomic, f"warc/{shard}", live.pages_per_warc) as warc:
            for step in LiveCrawler(live).crawl():
                record_id = warc.write(step.fetch) if step.fetch is not None and step.fetch.complete else None
                item = step.outcome(record_id)
                out.add(item, LIVE_SOURCE)

    # -- summary
    def finalize(self, ctx: StageContext, stats: dict[str, CrawlStats]) -> StageResult:
        total = self.total(stats)
        counts = total.to_manifest()
        records, skipped = counts.get("records", 0), counts.get("skipped", 0)
        kept = counts.get("pages", 0) + counts.get("documents", 0)
        if kept + skipped != records:
            raise RuntimeError(f"crawl accounting broken: {kept} kept + {skipped} skipped != {records} records")
        reasons = sorted(total.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        columns = ("records", "pages", "documents", "skipped")
        shard_rows = [{"shard": shard, **{k: c.counts.get(k, 0) for k in columns}} for shard, c in stats.items()]
        markdown = "\n".join(
            [
                f"**crawl**: {records} records seen, {counts.get('pages', 0)} raw pages, "
                f"{counts.get('documents', 0)} documents, {skipped} skipped.",
                "",
                "| skip reason | records |",
                "|---|---|",
                *(f"| `{reason}` | {n} |" for reason, n in reasons),
            ]
        )
        return StageResult(
            counts=counts,
            metrics={"kept_fraction": kept / records if records else 0.0},
            tables={"skip_reasons": [{"reason": r, "records": n} for r, n in reasons], "shards": shard_rows},
            markdown=markdown,
            extra={"layout": LAYOUT},
        )

"""Where one crawl shard's records go, and its counts.

Files of shard `S` inside the artifact (each published atomically when complete, never empty):

- `pages/S-NNNN.parquet`: raw pages (schema RAW_PAGES), a new file every `rows_per_file` rows;
- `documents/S-NNNN.parquet`: documents from text corpora (schema DOCUMENTS), same rolling;
- `skipped/S-NNNN.parquet`: records not kept (schema REJECTED: `doc_id` = WARC record id, `url`, `reason`,
  `detail`), same rolling.

Counts: `records` (seen) = `pages` + `documents` + `skipped`; `skipped:REASON` per reason; `truncated` (pages kept
with the bytes present: a WARC record cut short, or a live fetch cut at the size cap).
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from llm_core.crawl.warc_reader import Page, Skip
from llm_core.schemas import DOCUMENTS, RAW_PAGES, REJECTED
from llm_core.stats import Counts, ReasonCounts
from llm_core.store import ArtifactWriter, ParquetShardWriter


class RollingParquet:
    """Rows into `{prefix}-0000.parquet`, `{prefix}-0001.parquet`, ... of at most `rows_per_file` rows each."""

    def __init__(self, writer: ArtifactWriter, prefix: str, schema: pa.Schema, rows_per_file: int):
        self.writer, self.prefix, self.schema, self.rows_per_file = writer, prefix, schema, rows_per_file
        self._current: ParquetShardWriter | None = None
        self._files = 0
        self._rows_in_file = 0

    def write(self, row: dict) -> None:
        if self._current is None:
            self._current = ParquetShardWriter(self.writer, f"{self.prefix}-{self._files:04d}.parquet", self.schema)
            self._files += 1
            self._rows_in_file = 0
        self._current.write(row)
        self._rows_in_file += 1
        if self._rows_in_file >= self.rows_per_file:
            self.close()

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def abort(self, exc: BaseException) -> None:
        if self._current is not None:
            self._current.abort(exc)
            self._current = None


class CrawlStats(ReasonCounts):
    """A crawl shard's counters; records set aside are `skipped:<reason>` in the manifest."""

    reason_key = "skipped"


class ShardOutput:
    """The pages, documents and skipped records of one shard, with counts. Use as a context manager: on an
    exception, files not yet complete are discarded (the shard is redone on retry)."""

    def __init__(self, writer: ArtifactWriter, shard: str, rows_per_file: int):
        self._pages = RollingParquet(writer, f"pages/{shard}", RAW_PAGES, rows_per_file)
        self._documents = RollingParquet(writer, f"documents/{shard}", DOCUMENTS, rows_per_file)
        self._skipped = RollingParquet(writer, f"skipped/{shard}", REJECTED, rows_per_file)
        self.counts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()  # skip reason -> records

    def page(self, page: Page) -> None:
        self._pages.write(page.row())
        self.counts.update(records=1, pages=1)
        if page.truncated:
            self.counts["truncated"] += 1

    def document(self, row: dict) -> None:
        self._documents.write(row)
        self.counts.update(records=1, documents=1)

    def skip(self, skip: Skip, source: str) -> None:
        self._skipped.write(
            {
                "doc_id": skip.record_id,
                "url": skip.url,
                "text": None,
                "title": None,
                "source": source,
                "extracted_at": None,
                "reason": skip.reason,
                "detail": skip.detail,
            }
        )
        self.counts.update(records=1, skipped=1)
        self.reasons[skip.reason] += 1

    def add(self, item: Page | Skip, source: str) -> None:
        if isinstance(item, Page):
            self.page(item)
        else:
            self.skip(item, source)

    def _parts(self) -> tuple[RollingParquet, ...]:
        return self._pages, self._documents, self._skipped

    def __enter__(self) -> ShardOutput:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for part in self._parts():
            if exc is None:
                part.close()
            else:
                part.abort(exc)

    def result(self) -> CrawlStats:
        return CrawlStats(Counts(self.counts), Counts(self.reasons))

"""Config of the `crawl` stage: where raw pages come from (WARC files, a live crawl, local HTML folders) and which
text corpora enter as documents directly.

Validation happens when the config is loaded, before any work: local paths and globs must match files, URLs must
be well formed, and every error names its key path (`crawl.warc.0`, `crawl.live.seeds.1`, ...).
"""

from __future__ import annotations

import datetime as dt
import glob
import os
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from llm_core.config import StageConfig, StrictModel

REMOTE_SCHEMES = ("http", "https", "s3", "hf")
HTML_CONTENT_TYPES = ("text/html", "application/xhtml+xml")


def is_remote(location: str) -> bool:
    return urlsplit(location).scheme in REMOTE_SCHEMES


def check_url(url: str, schemes: tuple[str, ...] = REMOTE_SCHEMES) -> str:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"{url!r} is not a URL with a host and one of the schemes {list(schemes)}")
    return url


def check_location(location: str) -> str:
    """A remote URL (well formed), or a local path / glob (or file:// URL) that matches at least one file."""
    if location.startswith("file://"):
        check_location(location.removeprefix("file://"))
        return location
    if "://" in location:
        return check_url(location)
    if glob.has_magic(location):
        if not glob.glob(location, recursive=True):
            raise ValueError(f"no file matches the glob {location!r} (relative to {os.getcwd()})")
    elif not os.path.exists(location):
        raise ValueError(f"{location!r} does not exist (relative to {os.getcwd()})")
    return location


WARC_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz")


def warc_files_in(folder: str) -> list[str]:
    """The WARC/ARC files under a folder (recursive), sorted."""
    found = (os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
             if name.lower().endswith(WARC_SUFFIXES))
    return sorted(found)


def check_warc_location(location: str) -> str:
    """A WARC location (see `check_location`); a local folder stands for the WARC files in it and must hold some."""
    check_location(location)
    path = location.removeprefix("file://")
    if "://" not in path and os.path.isdir(path):
        if not warc_files_in(path):
            raise ValueError(f"{location!r} is a folder with no WARC file in it ({', '.join(WARC_SUFFIXES)})")
    elif not glob.has_magic(path) and not path.lower().endswith(WARC_SUFFIXES):
        raise ValueError(f"{location!r} is not a WARC or ARC file: its name must end in {', '.join(WARC_SUFFIXES)}")
    return location


def check_dir(path: str) -> str:
    if not os.path.isdir(path):
        raise ValueError(f"{path!r} is not a folder (relative to {os.getcwd()})")
    return path


# Field types whose validation error lands on the item's own key path (crawl.warc.1, crawl.live.seeds.0).
Location = Annotated[str, AfterValidator(check_location)]
WarcLocation = Annotated[str, AfterValidator(check_warc_location)]
Url = Annotated[str, AfterValidator(check_url)]
PageUrl = Annotated[str, AfterValidator(lambda url: check_url(url, ("http", "https")))]
LocalDir = Annotated[str, AfterValidator(check_dir)]


class WarcPathsListing(StrictModel):
    """A Common Crawl `warc.paths(.gz)` listing: one relative path per line, joined to `base_url`."""

    listing: Location = Field(description="URL or local path of warc.paths or warc.paths.gz")
    base_url: Url = "https://data.commoncrawl.org/"
    max_files: int = Field(1, ge=1, description="take the first N files of the listing")


class LiveCrawlConfig(StrictModel):
    """A polite breadth-first crawl from seed URLs (robots.txt, per-host delay, bounded size, time and depth)."""

    seeds: list[PageUrl] = Field(min_length=1)
    max_pages: int = Field(100, ge=1, description="HTTP fetches of pages (robots.txt not counted)")
    max_depth: int = Field(2, ge=0, description="link hops from a seed; 0 = the seeds only")
    max_bytes_per_page: int = Field(2_000_000, ge=1024, description="longer bodies are cut here (WARC-Truncated)")
    timeout_s: float = Field(10.0, gt=0, description="connect/read timeout and bound on one whole fetch")
    delay_s: float = Field(1.0, ge=0, description="politeness delay between two requests to the same host")
    max_crawl_delay_s: float = Field(
        30.0, ge=0, description="a host whose robots.txt Crawl-delay is longer is skipped (live:crawl_delay)"
    )
    max_host_time_s: float = Field(600.0, gt=0, description="time on one host; later URLs of it are skipped")
    max_crawl_time_s: float = Field(3600.0, gt=0, description="time of the whole crawl; the rest is skipped")
    same_host: bool = True
    max_redirects: int = Field(5, ge=0)
    user_agent: str = "llm-pipeline-crawler/0.1 (+https://github.com/llm-pipeline)"
    allow_private_addresses: bool = Field(False, description="allow loopback/private/link-local/reserved targets")
    content_types: list[str] = Field(default_factory=lambda: list(HTML_CONTENT_TYPES))
    pages_per_warc: int = Field(1000, ge=1, description="records per WARC file written into the artifact")


class TextDatasetSource(StrictModel):
    """A text corpus loaded with HF `datasets` that enters as documents (no HTML extraction).

    `path` is a builder (`text`, `json`, `parquet`, `csv`) with `data_files`, or a dataset name on the hub
    (needs internet).
    """

    path: str
    data_files: list[Location] = Field(default_factory=list)
    name: str | None = Field(None, description="dataset configuration (subset) name")
    split: str = "train"
    text_field: str = "text"
    title_field: str | None = None
    sample_by: Literal["line", "paragraph", "document"] = Field(
        "document", description="`text` builder only: one document per line, paragraph or file"
    )
    source: str | None = Field(None, description="label in the `source` column; default: derived from path")
    max_records: int | None = Field(None, ge=1)

    LOCAL_BUILDERS: ClassVar[frozenset[str]] = frozenset({"text", "json", "parquet", "csv"})

    @model_validator(mode="after")
    def _check_files(self) -> TextDatasetSource:
        if self.path in self.LOCAL_BUILDERS and not self.data_files:
            raise ValueError(f"data_files is required with the {self.path!r} builder")
        if self.sample_by != "document" and self.path != "text":
            raise ValueError("sample_by applies to the 'text' builder only")
        return self

    @property
    def label(self) -> str:
        if self.source:
            return self.source
        if self.data_files:
            return os.path.splitext(os.path.basename(self.data_files[0].rstrip("/")))[0] or self.path
        return self.path


class CrawlConfig(StageConfig):
    """Sources of raw pages and direct documents. Any mix; at least one must be set when the stage runs."""

    snapshot: str = Field("", description="label of this crawl (e.g. a date): part of the key, so refreshes differ")
    warc: list[WarcLocation] = Field(
        default_factory=list, description="WARC/ARC paths, folders of them, globs, http(s):// or s3:// URLs"
    )
    warc_paths: WarcPathsListing | None = None
    live: LiveCrawlConfig | None = None
    html_dirs: list[LocalDir] = Field(default_factory=list, description="folders of .html/.htm files (recursive)")
    text_datasets: list[TextDatasetSource] = Field(default_factory=list)
    content_types: list[str] = Field(
        default_factory=lambda: list(HTML_CONTENT_TYPES), description="WARC responses kept (media types)"
    )
    max_body_bytes: int = Field(5_000_000, ge=1024, description="WARC records / HTML files above this are skipped")
    max_decoded_bytes: int = Field(
        5_000_000, ge=1024, description="decoded (decompressed) body bytes kept per WARC record, apart from "
        "max_body_bytes, so raising one does not let a compression bomb grow; a body cut here is marked truncated"
    )
    records_per_shard: int = Field(10_000, ge=1, description="rows per output Parquet file (and HTML files per shard)")
    storage_options: dict = Field(default_factory=dict, description="fsspec options for remote inputs (s3 endpoint)")

    runtime_fields: ClassVar[frozenset[str]] = frozenset({"storage_options"})

    @field_validator("snapshot", mode="before")
    @classmethod
    def _snapshot_text(cls, value: object) -> object:
        """YAML reads `snapshot: 2026-11-01` as a date; keep it as the text the user wrote."""
        return value.isoformat() if isinstance(value, dt.date) else value

    @field_validator("content_types")
    @classmethod
    def _lowercase(cls, types: list[str]) -> list[str]:
        return [t.strip().lower() for t in types]

    def has_sources(self) -> bool:
        return bool(self.warc or self.warc_paths or self.live or self.html_dirs or self.text_datasets)

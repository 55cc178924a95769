"""Turn the crawl config into a list of shards: one per WARC file (a folder given as a WARC location stands for
the WARC files in it), one per `records_per_shard` local HTML files,
one per text dataset, one for the live crawl.

The list is resolved once (globs expanded, a Common Crawl `warc.paths` listing read) and saved in the artifact as
`sources.json`, so a retried stage works on exactly the same inputs even if a glob would now match more files.
"""

from __future__ import annotations

import glob
import os
import posixpath
from typing import Any

import fsspec

from llm_core.crawl.config import CrawlConfig, is_remote, warc_files_in

HTML_SUFFIXES = (".html", ".htm", ".xhtml")


def expand_location(location: str, storage_options: dict[str, Any]) -> list[str]:
    """A path, folder, glob or URL -> the WARC files it names, sorted (remote globs are expanded by fsspec; a local
    folder gives the WARC files under it)."""
    location = location.removeprefix("file://")
    if not is_remote(location) and os.path.isdir(location):
        return warc_files_in(location)
    if not glob.has_magic(location):
        return [location]
    if is_remote(location):
        fs, _ = fsspec.core.url_to_fs(location, **storage_options)
        protocol = location.split("://", 1)[0]
        return sorted(f"{protocol}://{p}" for p in fs.glob(location))
    return sorted(glob.glob(location, recursive=True))


def read_warc_listing(listing: str, base_url: str, max_files: int, storage_options: dict[str, Any]) -> list[str]:
    """The first `max_files` WARC URLs of a Common Crawl `warc.paths(.gz)` listing, streamed line by line."""
    urls = []
    with fsspec.open(listing, "rt", compression="infer", **storage_options) as f:
        for line in f:
            if line.strip():
                urls.append(base_url.rstrip("/") + "/" + line.strip().lstrip("/"))
                if len(urls) >= max_files:
                    break
    return urls


def html_files(folder: str) -> list[str]:
    found = (
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(HTML_SUFFIXES)
    )
    return sorted(os.path.abspath(p) for p in found)


def local_inputs(config: CrawlConfig) -> list[str]:
    """The local WARC files (globs expanded) and HTML folders the crawl reads."""
    warcs = [f for location in config.warc if not is_remote(location)
             for f in expand_location(location, config.storage_options)]
    return [*warcs, *config.html_dirs]


def warc_source_label(location: str) -> str:
    return "warc:" + posixpath.basename(location.rstrip("/"))


def plan_shards(config: CrawlConfig) -> list[dict[str, Any]]:
    """Every shard of the crawl: {"id", "kind", ...inputs}, ids unique and stable for this config."""
    shards: list[dict[str, Any]] = []
    warcs = [f for location in config.warc for f in expand_location(location, config.storage_options)]
    if config.warc_paths:
        listing = config.warc_paths
        warcs += read_warc_listing(listing.listing, listing.base_url, listing.max_files, config.storage_options)
    for i, location in enumerate(warcs):
        shards.append({"id": f"warc-{i:05d}", "kind": "warc", "location": location})
    html_index = 0
    for folder in config.html_dirs:
        files = html_files(folder)
        for start in range(0, len(files), config.records_per_shard):
            chunk = files[start : start + config.records_per_shard]
            label = "html:" + os.path.basename(os.path.abspath(folder))
            shards.append({"id": f"html-{html_index:05d}", "kind": "html", "files": chunk, "source": label})
            html_index += 1
    for i in range(len(config.text_datasets)):
        shards.append({"id": f"dataset-{i:05d}", "kind": "dataset", "index": i})
    if config.live:
        shards.append({"id": "live-00000", "kind": "live"})
    return shards

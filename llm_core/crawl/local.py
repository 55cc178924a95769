"""Local inputs: folders of HTML files (-> raw pages) and text corpora read with HF `datasets` (-> documents).

HTML files become pages with a `file://` URL, status 200, `text/html`, no charset (the extract stage detects it
from the meta tag or the bytes) and the file's modification time as `fetched_at`. Text corpora skip extraction:
each record is a document (`doc_id` = first 16 hex of sha1 of its URL, `url` = `{data file or hub name}#{index}`,
`extracted_at` = the data files' modification time, so reruns write the same rows).
Datasets are read in streaming mode, so nothing is cached on disk and memory stays bounded.
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from llm_core.crawl.config import TextDatasetSource
from llm_core.crawl.warc_reader import Page, Skip


def read_html_files(files: list[str], source: str, max_body_bytes: int) -> Iterator[Page | Skip]:
    for path in files:
        url = Path(path).as_uri()
        try:
            stat = os.stat(path)
            if stat.st_size > max_body_bytes:
                yield Skip(url, None, "html:too_large", f"{stat.st_size} bytes")
                continue
            body = Path(path).read_bytes()
        except OSError as e:
            yield Skip(url, None, "html:unreadable", f"{type(e).__name__}: {e}")
            continue
        fetched_at = dt.datetime.fromtimestamp(stat.st_mtime, dt.timezone.utc)
        yield Page(url, fetched_at, 200, "text/html", None, body, None, source)


def dataset_base_url(spec: TextDatasetSource) -> str:
    if spec.data_files:
        first = spec.data_files[0]
        return first if "://" in first else Path(first).resolve().as_uri()
    suffix = f"/{spec.name}" if spec.name else ""
    return f"hf://datasets/{spec.path}{suffix}/{spec.split}"


def dataset_time(spec: TextDatasetSource) -> dt.datetime | None:
    """When a corpus's documents were made: the newest modification time of its local data files (so a rerun gives
    the same rows), None for a hub dataset."""
    local = [p for f in spec.data_files if "://" not in f for p in glob.glob(f.removeprefix("file://"))]
    if not local:
        return None
    return dt.datetime.fromtimestamp(max(os.stat(p).st_mtime for p in local), dt.timezone.utc)


def read_text_dataset(spec: TextDatasetSource) -> Iterator[dict | Skip]:
    """Document rows (schema DOCUMENTS) of one corpus, or skips for records without text."""
    from datasets import load_dataset  # heavy import, only for shards that need it

    kwargs: dict = {"split": spec.split, "streaming": True}
    if spec.data_files:
        kwargs["data_files"] = [str(Path(f).resolve()) if "://" not in f else f for f in spec.data_files]
    if spec.name:
        kwargs["name"] = spec.name
    if spec.path == "text":
        kwargs["sample_by"] = spec.sample_by
    dataset = load_dataset(spec.path, **kwargs)
    base, stamp = dataset_base_url(spec), dataset_time(spec)
    for i, record in enumerate(dataset):
        if spec.max_records is not None and i >= spec.max_records:
            return
        if spec.text_field not in record:
            raise ValueError(
                f"text dataset {spec.path!r} has no field {spec.text_field!r} (fields: {sorted(record)}); "
                "set text_field in its crawl.text_datasets entry"
            )
        url = f"{base}#{i}"
        text = record[spec.text_field]
        if not isinstance(text, str) or not text.strip():
            yield Skip(url, None, "dataset:empty", f"record {i}")
            continue
        title = record.get(spec.title_field) if spec.title_field else None
        yield {
            "doc_id": hashlib.sha1(url.encode()).hexdigest()[:16],
            "url": url,
            "text": text,
            "title": str(title) if title is not None else None,
            "source": spec.label,
            "extracted_at": stamp,
        }

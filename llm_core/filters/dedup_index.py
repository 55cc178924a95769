"""The persistent dedup index of a corpus, and the check of a new snapshot against it.

Append-only, by reference: every `filter` artifact holds the index segment of the documents it kept, and the corpus
artifact lists those artifacts, so the index of a corpus is the list of its snapshots' segments and nothing is
copied or rewritten when a night adds one. A segment (`dedup/index/` of a filter artifact) is one sorted column per
key, each beside the rows it sorts:

    exact.npy, exact_rows.npy          the exact key (normalised-text hash) of every kept document, sorted
    band_NN.npy, band_NN_rows.npy      MinHash LSH band NN's key, sorted (14 bands with FineWeb's settings)
    docs.parquet                       doc_id and url per row (written last: the segment's completion marker)

Checking the new snapshot's documents is a binary search of their keys in each sorted column (memory-mapped on a
local root): the cost follows the new documents (times the log of the corpus and the number of snapshots), and
nothing of the old snapshots is loaded beyond the pages the searches touch. The oldest snapshot holding a match
wins, exact before near.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from llm_core.store import ArtifactReader, ArtifactWriter

INDEX_DIR = "dedup/index"
DOCS_FILE = f"{INDEX_DIR}/docs.parquet"
DOCS_SCHEMA = pa.schema([("doc_id", pa.string()), ("url", pa.string())])


@dataclass
class Match:
    row: int  # row of the new document (in the order its keys were given)
    kind: str  # "exact" or "near"
    snapshot: str
    doc_id: str
    url: str


def _columns(n_bands: int) -> list[str]:
    return ["exact", *(f"band_{b:02d}" for b in range(n_bands))]


def write_segment(writer: ArtifactWriter, doc_ids: list[str], urls: list[str], exact: np.ndarray,
                  bands: np.ndarray) -> None:
    """Write the index segment of the kept documents (their keys in row order); `docs.parquet` last."""
    for name, keys in zip(_columns(bands.shape[1]), [exact, *bands.T]):
        order = np.argsort(keys, kind="stable")
        for suffix, array in (("", keys[order]), ("_rows", order.astype(np.int64))):
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(array))
            writer.write_bytes(f"{INDEX_DIR}/{name}{suffix}.npy", buf.getvalue())
    writer.write_table(DOCS_FILE, pa.Table.from_pydict({"doc_id": doc_ids, "url": urls}, schema=DOCS_SCHEMA))


class Segment:
    """One snapshot's segment, read lazily (memory-mapped columns on a local root)."""

    def __init__(self, reader: ArtifactReader, snapshot: str):
        self.reader, self.snapshot = reader, snapshot

    @staticmethod
    def exists(reader: ArtifactReader) -> bool:
        return reader.exists(DOCS_FILE)

    def column(self, name: str) -> np.ndarray:
        if self.reader.store.is_local:
            return np.load(self.reader.path(f"{INDEX_DIR}/{name}.npy"), mmap_mode="r")
        with self.reader.open(f"{INDEX_DIR}/{name}.npy") as f:
            return np.load(io.BytesIO(f.read()))

    def find(self, keys: np.ndarray, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(positions in `keys` found in the column, the segment row of each)."""
        sorted_keys = self.column(column)
        if not len(sorted_keys) or not len(keys):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
        hit = np.flatnonzero(np.asarray(sorted_keys[pos]) == keys)
        return hit, np.asarray(self.column(f"{column}_rows")[pos[hit]])

    def docs(self, rows: list[int]) -> list[dict]:
        table = self.reader.iter_rows(DOCS_FILE, batch_size=65536)
        wanted, out = set(rows), {}
        for i, row in enumerate(table):
            if i in wanted:
                out[i] = row
        return [out[r] for r in rows]


def find_in_corpus(segments: list[Segment], exact: np.ndarray, bands: np.ndarray, near: bool) -> list[Match]:
    """Documents (rows of `exact` / `bands`) that an earlier snapshot's segment already holds, oldest first."""
    found: dict[int, tuple[str, Segment, int]] = {}
    columns = _columns(bands.shape[1] if near and bands.ndim == 2 else 0)
    for segment in segments:
        for column in columns:
            keys = exact if column == "exact" else bands[:, int(column.removeprefix("band_"))]
            for new_row, old_row in zip(*segment.find(keys, column)):
                found.setdefault(int(new_row), ("exact" if column == "exact" else "near", segment, int(old_row)))
    matches = []
    for segment in segments:
        rows = sorted((new, old) for new, (_, s, old) in found.items() if s is segment)
        for (new, old), doc in zip(rows, segment.docs([old for _, old in rows])):
            matches.append(Match(new, found[new][0], segment.snapshot, doc["doc_id"], doc["url"] or ""))
    return sorted(matches, key=lambda m: m.row)

"""Global deduplication across all shards of a run: exact (normalised-text hash) and near (MinHash LSH).

Each shard leaves a small numpy file with, per kept document, its id, its exact key and its 14 band keys
(`ShardKeys`, 8 bytes per key). The global step then works one key column at a time (the exact key, then band 0..13):
it gathers that column from every shard, sorts it, and joins documents with equal keys in a union-find whose root
is always the smallest global index. The kept copy of every cluster is therefore the first one in shard order,
whatever the number of workers, and every other member is marked `exact` (same exact key as the kept copy) or
`near`.

Memory: a few 8-byte arrays per document at a time (one key column, its sort order, the exact keys, the union-find
parents), independent of document length; document ids are read back only for the duplicates found (measured
peaks in BENCHMARKS.md). Beyond one machine's memory the same step would partition each column by key range
(bucket files, as datatrove's MinHash stage 2 does), which this module does not implement.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class ShardKeys:
    """Dedup keys of one shard's kept documents, in row order."""

    doc_ids: np.ndarray  # unicode strings
    exact: np.ndarray  # (n,) uint64
    bands: np.ndarray  # (n, bands) uint64

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, doc_ids=self.doc_ids, exact=self.exact, bands=self.bands)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ShardKeys:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(doc_ids=z["doc_ids"], exact=z["exact"], bands=z["bands"])


@dataclass
class Duplicate:
    shard: int  # position of the shard in the list given to `find_duplicates`
    row: int  # row of the duplicate in that shard
    doc_id: str
    duplicate_of: str  # doc_id of the kept copy
    kind: str  # "exact" or "near"


def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        parent[i], i = root, parent[i]
    return root


def _roots(parent: np.ndarray) -> np.ndarray:
    """The root of every element, by vectorised pointer jumping."""
    roots = parent.copy()
    while True:
        nxt = roots[roots]
        if np.array_equal(nxt, roots):
            return roots
        roots = nxt


def _union_equal_keys(parent: np.ndarray, keys: np.ndarray) -> None:
    """Join documents with equal keys (neighbours in sorted order); the smallest index becomes the root."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    del sorted_keys
    for a, b in zip(order[same].tolist(), order[same + 1].tolist()):
        ra, rb = _find(parent, a), _find(parent, b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)


def find_duplicates(
    n_shards: int, load: Callable[[int], ShardKeys], near: bool = True, exact: bool = True
) -> list[Duplicate]:
    """Duplicates across shards 0..n_shards-1 (`load(i)` returns shard i's keys; called once per key column)."""
    sizes, exact_keys, n_bands = [], [], 0
    for i in range(n_shards):
        keys = load(i)
        sizes.append(len(keys.exact))
        exact_keys.append(keys.exact)
        n_bands = max(n_bands, keys.bands.shape[1] if keys.bands.ndim == 2 else 0)
    total = sum(sizes)
    if not total:
        return []
    offsets = np.cumsum([0, *sizes])
    all_exact = np.concatenate(exact_keys)
    del exact_keys
    parent = np.arange(total, dtype=np.int64)
    if exact:
        _union_equal_keys(parent, all_exact)
    if near:
        for band in range(n_bands):
            column = np.concatenate([load(i).bands[:, band].copy() for i in range(n_shards) if sizes[i]])
            _union_equal_keys(parent, column)
    roots = _roots(parent)
    dup_idx = np.flatnonzero(roots != np.arange(total))
    root_idx = roots[dup_idx]
    kinds = np.where(all_exact[dup_idx] == all_exact[root_idx], "exact", "near")
    ids = _doc_ids(load, offsets, np.union1d(dup_idx, root_idx))
    shard_of = (np.searchsorted(offsets, dup_idx, side="right") - 1).tolist()
    return [
        Duplicate(shard=s, row=i - int(offsets[s]), doc_id=ids[i], duplicate_of=ids[r], kind=k)
        for i, r, k, s in zip(dup_idx.tolist(), root_idx.tolist(), kinds.tolist(), shard_of)
    ]


def _doc_ids(load: Callable[[int], ShardKeys], offsets: np.ndarray, indices: np.ndarray) -> dict[int, str]:
    """doc_id of each global index asked for, loading only the shards that hold one."""
    ids: dict[int, str] = {}
    shard_of = np.searchsorted(offsets, indices, side="right") - 1
    for shard in np.unique(shard_of).tolist():
        doc_ids = load(shard).doc_ids
        for i in indices[shard_of == shard].tolist():
            ids[i] = str(doc_ids[i - offsets[shard]])
    return ids


def shard_keys(doc_ids: Sequence[str], exact: Sequence[int], bands: Sequence[np.ndarray], n_bands: int) -> ShardKeys:
    return ShardKeys(
        doc_ids=np.array(list(doc_ids), dtype=str),
        exact=np.array(list(exact), dtype=np.uint64),
        bands=np.array(list(bands), dtype=np.uint64).reshape(len(doc_ids), n_bands),
    )

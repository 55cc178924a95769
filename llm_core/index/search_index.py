"""The `index` artifact's BM25 index: how it is written (`write_bm25`) and read back and searched (`SearchIndex`).

Layout of the artifact:
    passages/{shard}.parquet   PASSAGES: doc_id, passage (its number in the document), url, text, source
    index.json                 the passage files in index order, the passage count, the tokenizer and BM25 settings
    bm25/*.npy, bm25/*.json    bm25s's own files: the sparse score matrix (numpy, no pickle), vocabulary, parameters
    rejected/{shard}.json      curated lines that were not documents, with why

Tokenisation is bm25s's (`TOKENIZER`): lowercase, runs of two or more word characters (`\\b\\w\\w+\\b`), English
stop words removed (the Glasgow list of `stopwords.py`; an index built with bm25s's shorter list, `en`, records
that in its `index.json` and is searched with it), no stemming ("cats" does not match "cat"). Chinese and Japanese
have no spaces and `\\w` covers their characters, so a whole run between punctuation is one token: such a query
matches only a passage holding the same run. Queries are tokenised the same way; tokens the index never saw are
dropped.

Search scores every passage (bm25s, Lucene's BM25 variant) and returns the best `k` with a score above zero, ties
in index order (documents in their artifact's order, then curated files in config order), so results are the same
for the same index and query. numpy loads with `allow_pickle=False`: nothing in the artifact runs code on load.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from llm_core.index.stopwords import GLASGOW_ENGLISH
from llm_core.store import ArtifactReader, ArtifactWriter

logging.getLogger("bm25s").setLevel(logging.INFO)  # bm25s sets its own logger to DEBUG: its debug lines would show in run logs

INDEX_FILE = "index.json"
BM25_DIR = "bm25"
FORMAT = 1
STOPWORDS: dict[str, str | list[str]] = {"en": "en", "glasgow_en": list(GLASGOW_ENGLISH)}  # name -> bm25s's argument
TOKENIZER: dict[str, Any] = {"lower": True, "token_pattern": r"(?u)\b\w\w+\b", "stopwords": "glasgow_en",
                             "stemmer": None}


@dataclass(frozen=True)
class Hit:
    url: str
    text: str  # the passage
    score: float
    doc_id: str


def tokenize(texts: Sequence[str], stopwords: str, return_ids: bool = False) -> Any:
    """bm25s's tokens of each text (`TOKENIZER`, with the `STOPWORDS` list named), or with `return_ids` its (ids,
    vocabulary) for indexing."""
    return bm25s.tokenize(list(texts), lower=TOKENIZER["lower"], token_pattern=TOKENIZER["token_pattern"],
                          stopwords=STOPWORDS[stopwords], return_ids=return_ids, show_progress=False)


def write_bm25(writer: ArtifactWriter, texts: Sequence[str], k1: float, b: float) -> dict[str, int]:
    """Index `texts` (the passages, in index order) into `bm25/`; returns the vocabulary size."""
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(tokenize(texts, TOKENIZER["stopwords"], return_ids=True), show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        retriever.save(tmp, allow_pickle=False, show_progress=False)
        for path in sorted(Path(tmp).iterdir()):
            writer.put_file(str(path), f"{BM25_DIR}/{path.name}")
    return {"vocabulary": len(retriever.vocab_dict)}


class SearchIndex:
    """A loaded `index` artifact: `search(query, k)` -> the best passages with their URL."""

    def __init__(self, retriever: bm25s.BM25 | None, doc_ids: list[str], urls: list[str], texts: list[str],
                 stopwords: str = TOKENIZER["stopwords"]):
        self.retriever, self.doc_ids, self.urls, self.texts = retriever, doc_ids, urls, texts
        self.stopwords = stopwords  # queries are tokenised as the passages were

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def load(cls, reader: ArtifactReader) -> SearchIndex:
        """The index of a committed `index` artifact; ValueError or FileNotFoundError naming it if it is not one."""
        if reader.ref.stage != "index":
            raise ValueError(f"artifact {reader.ref} is a {reader.ref.stage!r} artifact, not a search index "
                             "(an `index` stage artifact)")
        if not reader.exists(INDEX_FILE):
            raise FileNotFoundError(f"index artifact {reader.ref} has no {INDEX_FILE}")
        meta = reader.read_json(INDEX_FILE)
        if meta.get("format") != FORMAT:
            raise ValueError(f"index artifact {reader.ref} has format {meta.get('format')!r}; this code reads "
                             f"format {FORMAT}: rebuild it (`llmpipe stage index`)")
        stopwords = meta.get("tokenizer", {}).get("stopwords", "en")
        if stopwords not in STOPWORDS:
            raise ValueError(f"index artifact {reader.ref} was built with stop words {stopwords!r}; this code knows "
                             f"{sorted(STOPWORDS)}")
        doc_ids: list[str] = []
        urls: list[str] = []
        texts: list[str] = []
        for name in meta["passage_files"]:
            if not reader.exists(name):
                raise FileNotFoundError(f"index artifact {reader.ref} lacks {name}, listed in its {INDEX_FILE}")
            for batch in reader.iter_batches(name, columns=["doc_id", "url", "text"], batch_size=4096):
                doc_ids += batch.column("doc_id").to_pylist()
                urls += batch.column("url").to_pylist()
                texts += batch.column("text").to_pylist()
        if len(texts) != meta["passages"]:
            raise ValueError(f"index artifact {reader.ref}: {len(texts)} passages, its {INDEX_FILE} says "
                             f"{meta['passages']}")
        return cls(load_bm25(reader) if texts else None, doc_ids, urls, texts, stopwords)

    def search(self, query: str, k: int) -> list[Hit]:
        """The `k` best passages for `query` with a score above zero, best first (ties in index order)."""
        if self.retriever is None or k < 1:
            return []
        vocab = self.retriever.vocab_dict
        ids = [vocab[t] for t in tokenize([query], self.stopwords)[0] if t in vocab]
        if not ids:
            return []
        scores = np.asarray(self.retriever.get_scores_from_ids(ids))
        matched = np.flatnonzero(scores > 0)
        best = matched[np.lexsort((matched, -scores[matched]))][:k]
        return [Hit(self.urls[i], self.texts[i], float(scores[i]), self.doc_ids[i]) for i in best.tolist()]


def load_bm25(reader: ArtifactReader) -> bm25s.BM25:
    names = reader.files(f"{BM25_DIR}/*")
    if not names:
        raise FileNotFoundError(f"index artifact {reader.ref} has no {BM25_DIR}/ files")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            reader.get_file(name, str(Path(tmp) / Path(name).name))
        try:
            return bm25s.BM25.load(tmp, mmap=False, allow_pickle=False)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"index artifact {reader.ref}: its {BM25_DIR}/ files do not load ({e})") from e

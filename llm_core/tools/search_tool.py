"""The search tool: the model's query against the `index` stage's BM25 index of the pipeline's own corpus.

Output: one line per hit, `[url] passage text`, best first, hits separated by a newline; `no results` when no
passage shares a term with the query; `error: empty query` for a blank one. The whole output is at most
`max_chars`: each of the `k` lines gets an equal share and is cut with a note when longer. Deterministic for a
given index (see `llm_core.index.search_index`).

    index = SearchIndex.load(store.reader(store.find("index/KEY")))
    SearchTool(index, k=1)("capital of France")  # '[https://...] Paris is the capital ...'
"""

from __future__ import annotations

from llm_core.index.search_index import Hit, SearchIndex
from llm_core.tools.base import ToolInputs, ToolSpec, clip

__all__ = ["Hit", "SearchIndex", "SearchTool"]

MIN_LINE_CHARS = 40  # room for a URL's start and a few words of the passage on each line


class SearchTool:
    """The `search` tool over a loaded index."""

    name = "search"

    def __init__(self, index: SearchIndex, k: int = 1, max_chars: int = 200):
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if max_chars < k * (MIN_LINE_CHARS + 1):
            raise ValueError(f"max_chars {max_chars} leaves under {MIN_LINE_CHARS} characters to each of {k} hits")
        self.index, self.k, self.max_chars = index, k, max_chars

    def __call__(self, call: str) -> str:
        query = call.strip() if isinstance(call, str) else ""
        if not query:
            return "error: empty query"
        try:
            hits = self.index.search(query, self.k)
        except Exception as e:  # noqa: BLE001 - a tool answers with an error text, never raises
            return clip(f"error: search failed ({type(e).__name__}: {e})", self.max_chars)
        if not hits:
            return "no results"
        per_line = (self.max_chars - (len(hits) - 1)) // len(hits)
        return "\n".join(clip(f"[{hit.url}] {hit.text}", per_line) for hit in hits)


def open_search(inputs: ToolInputs) -> SearchTool | None:
    """The search tool over the `index` input; None without one."""
    return SearchTool(SearchIndex.load(inputs.index)) if inputs.index is not None else None


SPEC = ToolSpec("search", open_search, needs="index")

"""The `index` stage and its artifact: a BM25 index over the filtered documents and curated text, read back by
`SearchIndex` for the chat's search tool (`llm_core.tools.search_tool`)."""

from llm_core.index.search_index import Hit, SearchIndex
from llm_core.index.stage import IndexConfig, IndexStage

__all__ = ["Hit", "IndexConfig", "IndexStage", "SearchIndex"]

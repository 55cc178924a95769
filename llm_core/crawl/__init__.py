"""The `crawl` stage: raw pages from WARC files, a live crawl and local HTML, plus text corpora as documents."""

from llm_core.crawl.config import CrawlConfig
from llm_core.crawl.live import crawl_to_warc
from llm_core.crawl.local_site import crawl_folder_to_warc
from llm_core.crawl.stage import CrawlStage

__all__ = ["CrawlConfig", "CrawlStage", "crawl_folder_to_warc", "crawl_to_warc"]

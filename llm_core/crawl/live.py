"""A polite breadth-first crawler: seeds first, then links, one request at a time.

Rules (all from `LiveCrawlConfig`): robots.txt obeyed (and its Crawl-delay, if longer than `delay_s`; a host
asking for more than `max_crawl_delay_s` is skipped); at most `max_host_time_s` on one host and `max_crawl_time_s`
in all (URLs left are skipped with that reason); at least
`delay_s` between two requests to a host; at most `max_pages` fetches (each redirect hop counts) and `max_depth`
link hops from a seed; same host as a seed unless `same_host: false`; at most `max_redirects` redirects per URL,
a loop is stopped; only wanted media types are downloaded, cut at `max_bytes_per_page`; private and loopback
addresses refused unless allowed (see `fetcher`).

`LiveCrawler.crawl()` yields one `Step` per URL attempt: the response (if one was received) and what came of it:
a page, or a skip reason (`live:robots`, `live:robots_unavailable`, `live:crawl_delay`, `live:host_time_limit`,
`live:crawl_time_limit`, `live:redirect`, `live:redirect_loop`, `live:too_many_redirects`, `live:offsite_redirect`,
`live:status`, `live:not_html`, `live:timeout`, `live:dns`, `live:error`, `live:private_address`).

`crawl_to_warc(...)` crawls into plain WARC files in a folder (see `local_site.crawl_folder_to_warc` for a local
folder of pages).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from llm_core.crawl.config import LiveCrawlConfig
from llm_core.crawl.fetcher import AddressRefused, Fetch, Fetcher
from llm_core.crawl.links import extract_links, normalize
from llm_core.crawl.robots import RobotsRules
from llm_core.crawl.warc_reader import Page, Skip, media_type
from llm_core.crawl.warc_writer import WarcFiles

SOURCE = "live"


@dataclass
class Step:
    """One URL attempt: the response received (None if none was) and the skip reason, or None for a page."""

    url: str
    fetch: Fetch | None
    reason: str | None = None
    detail: str = ""

    def outcome(self, warc_record_id: str | None) -> Page | Skip:
        if self.reason is not None or self.fetch is None:
            return Skip(self.url, warc_record_id, self.reason or "live:error", self.detail)
        f = self.fetch
        mime, charset = media_type(f.header("content-type"))
        return Page(f.url, f.fetched_at, f.status or 0, mime, charset, f.body, warc_record_id, SOURCE, f.truncated)


def host_of(url: str) -> str:
    return urlsplit(url).netloc.lower()


class LiveCrawler:
    def __init__(self, config: LiveCrawlConfig):
        self.config = config
        self.fetcher = Fetcher(
            user_agent=config.user_agent,
            timeout_s=config.timeout_s,
            max_bytes=config.max_bytes_per_page,
            content_types=config.content_types,
            allow_private_addresses=config.allow_private_addresses,
        )
        self.robots = RobotsRules(self.fetcher, config.user_agent, config.delay_s)
        self.seed_hosts = {host_of(s) for s in config.seeds}
        self.fetches = 0
        self._host_started: dict[str, float] = {}

    def _in_scope(self, url: str) -> bool:
        return not self.config.same_host or host_of(url) in self.seed_hosts

    def crawl(self) -> Iterator[Step]:
        seen = {normalize(s) for s in self.config.seeds}
        frontier = deque((normalize(s), 0) for s in dict.fromkeys(self.config.seeds))
        deadline = time.monotonic() + self.config.max_crawl_time_s
        try:
            while frontier and self.fetches < self.config.max_pages:
                url, depth = frontier.popleft()
                if time.monotonic() > deadline:
                    detail = f"crawl over max_crawl_time_s={self.config.max_crawl_time_s:g}"
                    for left in (url, *(u for u, _ in frontier)):
                        yield Step(left, None, "live:crawl_time_limit", detail)
                    return
                for step in self._visit(url, seen):
                    yield step
                    if step.reason is None and step.fetch is not None and depth < self.config.max_depth:
                        for link in extract_links(step.fetch.body, step.fetch.url):
                            if link not in seen and self._in_scope(link):
                                seen.add(link)
                                frontier.append((link, depth + 1))
        finally:
            self.fetcher.close()

    def _visit(self, url: str, seen: set[str]) -> Iterator[Step]:
        """Fetch `url`, following its redirects; one step per attempt."""
        chain: list[str] = []
        while self.fetches < self.config.max_pages:
            if len(chain) > self.config.max_redirects:
                yield Step(url, None, "live:too_many_redirects", f"after {self.config.max_redirects}")
                return
            if url in chain:
                yield Step(url, None, "live:redirect_loop", " -> ".join([*chain, url]))
                return
            chain.append(url)
            try:
                refusal = self.robots.refusal(url)
                robots_delay = self.robots.crawl_delay(url)
            except AddressRefused as e:
                yield Step(url, None, "live:private_address", str(e))
                return
            if refusal is not None:
                yield Step(url, None, *refusal)
                return
            if robots_delay > self.config.max_crawl_delay_s:
                limit = self.config.max_crawl_delay_s
                yield Step(url, None, "live:crawl_delay", f"robots.txt Crawl-delay {robots_delay:g} s > {limit:g} s")
                return
            host = host_of(url)
            started = self._host_started.setdefault(host, time.monotonic())
            if time.monotonic() - started > self.config.max_host_time_s:
                detail = f"{host} over max_host_time_s={self.config.max_host_time_s:g}"
                yield Step(url, None, "live:host_time_limit", detail)
                return
            delay = max(self.config.delay_s, robots_delay)
            fetch = self.fetcher.get(url, delay_s=delay)
            self.fetches += 1
            if fetch.error:
                yield Step(url, fetch, fetch.error, fetch.detail)
                return
            location = fetch.header("location")
            if fetch.status is not None and 300 <= fetch.status < 400 and location:
                target = normalize(urljoin(url, location))
                yield Step(url, fetch, "live:redirect", target)
                if not self._in_scope(target):
                    yield Step(target, None, "live:offsite_redirect", f"from {url}")
                    return
                if target not in chain and target in seen:
                    return  # reached (or will be reached) on its own
                seen.add(target)
                url = target
                continue
            if not (fetch.status is not None and 200 <= fetch.status < 300):
                yield Step(url, fetch, "live:status", str(fetch.status))
                return
            yield Step(url, fetch)
            return


def crawl_to_warc(
    seeds: list[str],
    out_dir: str,
    *,
    max_pages: int = 1000,
    max_depth: int = 10,
    pages_per_warc: int = 1000,
    delay_s: float = 0.0,
    allow_private_addresses: bool = True,
    **options,
) -> dict[str, int]:
    """Crawl `seeds` into `out_dir/crawl-NNNNN.warc.gz` (every response received, pages and others).

    Made for crawling a local site served over loopback (`python -m http.server --bind 127.0.0.1`), hence private
    addresses allowed and no delay by default. Other `LiveCrawlConfig` fields pass through `options`.
    Returns counts: `fetches`, `pages`, `warc_records`, `warc_files`, and `skipped:REASON`.
    """
    config = LiveCrawlConfig(
        seeds=seeds, max_pages=max_pages, max_depth=max_depth, pages_per_warc=pages_per_warc, delay_s=delay_s,
        allow_private_addresses=allow_private_addresses, **options,
    )
    os.makedirs(out_dir, exist_ok=True)
    counts: dict[str, int] = {"pages": 0, "warc_records": 0}
    crawler = LiveCrawler(config)
    with WarcFiles(lambda name: open(os.path.join(out_dir, name), "wb"), "crawl", pages_per_warc) as warc:
        for step in crawler.crawl():
            if step.fetch is not None and step.fetch.complete:
                warc.write(step.fetch)
                counts["warc_records"] += 1
            key = "pages" if step.reason is None else f"skipped:{step.reason}"
            counts[key] = counts.get(key, 0) + 1
    counts.update(fetches=crawler.fetches, warc_files=len(warc.files))
    return counts

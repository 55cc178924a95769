"""Bounded politeness and true skip reasons of the live crawler: a Crawl-delay above the configured maximum skips
the host, per-host and total crawl time are bounded, and a host that does not resolve, a robots.txt that answers
5xx and a disallowed page each get their own reason."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

import pytest
from conftest import loopback_server

from llm_core.crawl import live as live_module
from llm_core.crawl.config import LiveCrawlConfig
from llm_core.crawl.fetcher import Fetcher
from llm_core.crawl.live import LiveCrawler

PAGE = b"<html><body>" + b"".join(b'<a href="/p%d">p</a>' % i for i in range(5)) + b"</body></html>"


class PoliteSite(BaseHTTPRequestHandler):
    """Paths under /slowhost/ are served normally; robots.txt depends on the `robots` class attribute."""

    robots: tuple[int, bytes] = (200, b"User-agent: *\nDisallow: /private\n")

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        status, body = self.robots if self.path == "/robots.txt" else (200, PAGE)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if self.path == "/robots.txt" else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def site():
    PoliteSite.robots = (200, b"User-agent: *\nDisallow: /private\n")
    with loopback_server(PoliteSite) as url:
        yield url


def crawl(seeds: list[str], **options) -> list:
    config = LiveCrawlConfig(**{"seeds": seeds, "max_depth": 1, "delay_s": 0.0, "timeout_s": 2.0,
                                "allow_private_addresses": True, **options})
    return list(LiveCrawler(config).crawl())


def test_a_crawl_delay_above_the_maximum_skips_the_host_with_its_reason(site):
    PoliteSite.robots = (200, b"User-agent: *\nCrawl-delay: 86400\n")
    [step] = crawl([site + "/"], max_crawl_delay_s=30)
    assert step.reason == "live:crawl_delay" and "86400" in step.detail and step.fetch is None


def test_a_crawl_delay_within_the_maximum_is_obeyed(site, monkeypatch):
    PoliteSite.robots = (200, b"User-agent: *\nCrawl-delay: 7\n")
    waits: list[float] = []
    monkeypatch.setattr("llm_core.crawl.fetcher.time.sleep", waits.append)
    steps = crawl([site + "/"], max_pages=3)
    assert [s.reason for s in steps] == [None, None, None]
    assert waits and all(6 < w <= 7 for w in waits)


def test_per_host_and_total_crawl_time_are_bounded(site, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(live_module.time, "monotonic", lambda: clock[0])
    real_get = Fetcher.get

    def slow_get(self, url, **kwargs):  # every request (robots.txt included) takes 10 s of the crawl's clock
        fetch = real_get(self, url, **kwargs)
        clock[0] += 10
        return fetch

    monkeypatch.setattr(Fetcher, "get", slow_get)
    per_host = [s.reason for s in crawl([site + "/"], max_host_time_s=25)]
    assert per_host == [None, None, None] + ["live:host_time_limit"] * 3, "every URL found is accounted for"

    clock[0] = 1000.0
    total = [s.reason for s in crawl([site + "/"], max_crawl_time_s=25)]
    assert total == [None, None] + ["live:crawl_time_limit"] * 4


def test_a_seed_that_does_not_resolve_is_not_a_robots_refusal():
    [step] = crawl(["http://no-such-host.invalid/"], max_depth=0)
    assert step.reason == "live:dns" and "robots.txt" in step.detail


def test_robots_5xx_and_disallow_have_their_own_reasons(site):
    PoliteSite.robots = (503, b"busy")
    [step] = crawl([site + "/"])
    assert step.reason == "live:robots_unavailable" and "503" in step.detail
    PoliteSite.robots = (200, b"User-agent: *\nDisallow: /private\n")
    [step] = crawl([site + "/private"])
    assert step.reason == "live:robots"

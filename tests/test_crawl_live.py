"""The live crawler against a local HTTP server started by the test: robots.txt, redirects, errors, timeouts, size
caps, private addresses; and WARC inputs read over http://."""

from __future__ import annotations

import io
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import loopback_server

from llm_core.crawl import crawl_folder_to_warc, crawl_to_warc
from llm_core.crawl.config import LiveCrawlConfig
from llm_core.crawl.fetcher import AddressRefused, Fetcher, check_public
from llm_core.crawl.links import extract_links
from llm_core.crawl.live import LiveCrawler
from llm_core.crawl.warc_reader import Page, read_archive
from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.registry import STAGES
from llm_core.stage import run_stage

DATA = Path(__file__).resolve().parent.parent / "data"
EN_PAGES = ["about.html", "tutorial__appetite.html"]
HUGE_BYTES = 3_000_000


class SiteHandler(BaseHTTPRequestHandler):
    """A small site with every kind of trouble a crawler meets."""

    requests: list[str] = []

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str | None = "text/html", **headers: str) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the crawler gave up on a slow response
            pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        SiteHandler.requests.append(self.path)
        path = self.path
        if path == "/robots.txt":
            self._send(200, b"User-agent: *\nDisallow: /private/\n", "text/plain")
        elif path == "/":
            links = [f"/en/{name}" for name in EN_PAGES] + [
                "/private/secret.html", "/loop/a", "/error", "/slow", "/huge", "/image.png", "/moved",
                "http://example.com/elsewhere.html", "/en/about.html#fragment",
            ]
            body = "<html><body><h1>Index</h1>" + "".join(f'<a href="{u}">{u}</a>' for u in links) + "</body></html>"
            self._send(200, body.encode())
        elif path.startswith("/en/"):
            self._send(200, (DATA / "html" / "en" / path[4:]).read_bytes(), "text/html; charset=utf-8")
        elif path.startswith("/warc/") and (DATA / "warc" / path[6:]).is_file():
            self._send(200, (DATA / "warc" / path[6:]).read_bytes(), "application/warc")
        elif path == "/warc.paths":
            listing = b"warc/whirlwind.warc.gz\nwarc/warcio_example.warc.gz\nwarc/pywb_iana.warc.gz\n"
            self._send(200, listing, "text/plain")
        elif path in ("/loop/a", "/loop/b"):
            self._send(302, content_type=None, Location="/loop/b" if path == "/loop/a" else "/loop/a")
        elif path == "/moved":
            self._send(301, content_type=None, Location="/en/about.html")
        elif path == "/error":
            self._send(500, b"<html>oops</html>")
        elif path == "/slow":
            time.sleep(3)
            self._send(200, b"<html>late</html>")
        elif path == "/huge":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(HUGE_BYTES))
            self.end_headers()
            chunk = b"<p>" + b"x" * 1020 + b"</p>"
            try:
                for _ in range(HUGE_BYTES // len(chunk)):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif path == "/image.png":
            self._send(200, b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "image/png")
        else:
            self._send(404, b"<html>not found</html>")


@pytest.fixture(scope="module")
def crawl_site():
    with loopback_server(SiteHandler) as url:
        yield url


def live_config(site: str, **overrides) -> LiveCrawlConfig:
    options = dict(
        seeds=[site + "/"], max_pages=50, max_depth=1, max_bytes_per_page=100_000, timeout_s=0.5, delay_s=0.0,
        allow_private_addresses=True,
    )
    return LiveCrawlConfig(**{**options, **overrides})


def test_crawl_obeys_robots_bounds_and_content_types(crawl_site):
    steps = list(LiveCrawler(live_config(crawl_site)).crawl())
    outcome = {step.url.removeprefix(crawl_site): step.reason for step in steps}
    pages = {u for u, reason in outcome.items() if reason is None}
    assert pages == {"/", "/en/about.html", "/en/tutorial__appetite.html", "/huge"}
    assert outcome["/private/secret.html"] == "live:robots"
    assert outcome["/error"] == "live:status"
    assert outcome["/slow"] == "live:timeout"
    assert outcome["/image.png"] == "live:not_html"
    assert outcome["/moved"] == "live:redirect"  # its target was already crawled from the index
    loop = [s.reason for s in steps if s.url.startswith(crawl_site + "/loop/")]
    assert loop == ["live:redirect", "live:redirect", "live:redirect_loop"]
    assert not any("example.com" in s.url for s in steps), "same_host: links to other hosts are not followed"
    huge = next(s for s in steps if s.url.endswith("/huge"))
    assert huge.fetch.truncated and len(huge.fetch.body) == 100_000
    assert "/private/secret.html" not in SiteHandler.requests


def test_depth_and_page_limits(crawl_site):
    seeds_only = list(LiveCrawler(live_config(crawl_site, max_depth=0)).crawl())
    assert [s.url for s in seeds_only] == [crawl_site + "/"]
    two = LiveCrawler(live_config(crawl_site, max_pages=2))
    steps = list(two.crawl())
    assert two.fetches == 2 and len(steps) == 2


def test_redirect_limit(crawl_site):
    steps = list(LiveCrawler(live_config(crawl_site, seeds=[crawl_site + "/loop/a"], max_redirects=1)).crawl())
    assert [s.reason for s in steps] == ["live:redirect", "live:redirect", "live:too_many_redirects"]


def test_private_and_loopback_addresses_refused_by_default(crawl_site):
    before = len(SiteHandler.requests)
    port = crawl_site.rsplit(":", 1)[1]
    config = LiveCrawlConfig(seeds=[crawl_site + "/", f"http://localhost:{port}/"], delay_s=0)
    steps = list(LiveCrawler(config).crawl())
    assert [s.reason for s in steps] == ["live:private_address", "live:private_address"]
    assert len(SiteHandler.requests) == before, "nothing may reach a refused address"
    for host in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1", "0.0.0.0"):
        with pytest.raises(AddressRefused):
            check_public(host, 80)
    check_public("8.8.8.8", 80)  # a public address literal passes (no DNS needed)


def test_politeness_delay_between_requests_to_one_host(crawl_site, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    fetcher = Fetcher(user_agent="t", timeout_s=2, max_bytes=10_000, content_types=["text/html"],
                      allow_private_addresses=True)
    fetcher.get(crawl_site + "/", delay_s=30)
    fetcher.get(crawl_site + "/error", delay_s=30)
    fetcher.close()
    assert len(waits) == 1 and 29 < waits[0] <= 30


def test_crawl_to_warc_writes_replayable_warc_files(crawl_site, tmp_path):
    counts = crawl_to_warc([crawl_site + "/"], str(tmp_path), max_depth=1, pages_per_warc=3, timeout_s=0.5,
                           max_bytes_per_page=100_000)
    assert counts["pages"] == 4 and counts["warc_files"] == -(-counts["warc_records"] // 3)
    replayed = []
    for path in sorted(tmp_path.glob("crawl-*.warc.gz")):
        with open(path, "rb") as f:
            replayed += [item for item in read_archive(f, name=path.name, source="replay",
                                                       content_types=["text/html"], max_body_bytes=10**7)
                         if isinstance(item, Page)]
    assert sorted(p.url.removeprefix(crawl_site) for p in replayed) == sorted(
        ["/", "/en/about.html", "/en/tutorial__appetite.html", "/huge"]
    )
    about = next(p for p in replayed if p.url.endswith("/en/about.html"))
    assert about.body == (DATA / "html" / "en" / "about.html").read_bytes() and about.charset == "utf-8"


def test_live_stage_writes_pages_and_warc_and_resumes_after_a_kill(crawl_site, tmp_path, monkeypatch):
    overrides = [
        f"run.artifact_root={tmp_path / 'a'}", "run.workers=1", "crawl.snapshot=test",
        f"crawl.live.seeds=['{crawl_site}/']", "crawl.live.max_depth=1", "crawl.live.timeout_s=0.5",
        "crawl.live.delay_s=0", "crawl.live.allow_private_addresses=true", "crawl.live.max_bytes_per_page=100000",
    ]
    ctx = plan(load_config(overrides=overrides), ["crawl"])["crawl"]
    stage = STAGES["crawl"]

    real_crawl = LiveCrawler.crawl

    def crawl_then_die(self):
        for i, step in enumerate(real_crawl(self)):
            if i == 3:
                raise KeyboardInterrupt("killed")
            yield step

    monkeypatch.setattr(LiveCrawler, "crawl", crawl_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_stage(stage, ctx)
    writer = ctx.writer()
    assert writer.files("pages/*") == [] and writer.files("warc/*") == [], "nothing half-written is visible"
    monkeypatch.setattr(LiveCrawler, "crawl", real_crawl)
    manifest, cached = run_stage(stage, ctx)
    assert not cached
    counts = manifest.counts
    assert counts["pages"] == 4 and counts["truncated"] == 1
    assert counts["records"] == counts["pages"] + counts["skipped"]
    assert counts["skipped:live:robots"] == 1 and counts["skipped:live:redirect_loop"] == 1
    reader = ctx.store().reader(ctx.output)
    urls = sorted(r["url"].removeprefix(crawl_site) for r in reader.iter_rows("pages/*.parquet", ["url"]))
    assert urls == ["/", "/en/about.html", "/en/tutorial__appetite.html", "/huge"]
    cut = {r["url"].removeprefix(crawl_site) for r in reader.iter_rows("pages/*.parquet", ["url", "truncated"])
           if r["truncated"]}
    assert cut == {"/huge"}, "the page cut at max_bytes_per_page is marked in its row"
    page_ids = {r["warc_record_id"] for r in reader.iter_rows("pages/*.parquet", ["warc_record_id"])}
    archived = set()
    for name in reader.files("warc/*.warc.gz"):
        with reader.open(name) as f:
            archived |= {p.warc_record_id for p in read_archive(io.BytesIO(f.read()), name=name, source="r",
                                                                 content_types=["text/html"], max_body_bytes=10**7)
                         if isinstance(p, Page)}
    assert page_ids == archived
    skipped = pq.read_table(reader.path(reader.files("skipped/*.parquet")[0])).to_pylist()
    assert {"live:timeout", "live:not_html", "live:status"} <= {r["reason"] for r in skipped}


def test_warc_over_http_and_common_crawl_listing(crawl_site, tmp_path):
    overrides = [
        f"run.artifact_root={tmp_path}", "run.workers=1",
        f"crawl.warc=['{crawl_site}/warc/warcio_example-iana.org-chunked.warc', '{crawl_site}/warc/gone.warc.gz']",
        f"crawl.warc_paths={{listing: '{crawl_site}/warc.paths', base_url: '{crawl_site}/', max_files: 2}}",
    ]
    ctx = plan(load_config(overrides=overrides), ["crawl"])["crawl"]
    manifest, _ = run_stage(STAGES["crawl"], ctx)
    urls = sorted(r["url"] for r in ctx.store().reader(ctx.output).iter_rows("pages/*.parquet", ["url"]))
    assert urls == ["http://example.com/", "http://www.iana.org/", "https://an.wikipedia.org/wiki/Escopete"]
    assert manifest.counts["skipped:warc:revisit"] == 1
    assert manifest.counts["skipped:warc:missing"] == 1, "a listed file that is gone is recorded, not retried forever"


def test_connected_address_is_checked_too(crawl_site, monkeypatch):
    """A name that resolved to a public address at check time but connects to loopback (DNS rebinding)."""
    monkeypatch.setattr("llm_core.crawl.fetcher.check_public", lambda host, port: None)
    fetcher = Fetcher(user_agent="t", timeout_s=2, max_bytes=10_000, content_types=["text/html"],
                      allow_private_addresses=False)
    fetch = fetcher.get(crawl_site + "/")
    fetcher.close()
    assert fetch.error == "live:private_address" and fetch.body == b""


def test_crawl_folder_to_warc_archives_every_page(tmp_path):
    counts = crawl_folder_to_warc(str(DATA / "html" / "zh"), str(tmp_path), pages_per_warc=5)
    assert counts["pages"] == counts["warc_records"] == 7 and counts["warc_files"] == 2
    bodies = {}
    for path in sorted(tmp_path.glob("crawl-*.warc.gz")):
        with open(path, "rb") as f:
            for item in read_archive(f, name=path.name, source="r", content_types=["text/html"], max_body_bytes=10**7):
                bodies[item.url.rsplit("/", 1)[1]] = item.body
    assert bodies == {p.name: p.read_bytes() for p in (DATA / "html" / "zh").glob("*.html")}


def test_links_are_absolute_deduplicated_and_followable():
    html = (b'<html><head><base href="/sub/"></head><body><a href="a.html#part">a</a><a href="a.html">again</a>'
            b'<a href="mailto:x@example.org">mail</a><a rel="nofollow" href="/private">n</a>'
            b'<a href="http://[broken/">bad</a><a href="https://other.org/p?q=1">other</a></body></html>')
    links = extract_links(html, "http://host.org/dir/page.html")
    assert links == ["http://host.org/sub/a.html", "https://other.org/p?q=1"]
    assert extract_links(b"", "http://host.org/") == []

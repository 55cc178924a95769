"""Crawl a folder of HTML files into WARC files, through the real live crawler over loopback.

`crawl_folder_to_warc(folder, out_dir)` serves `folder` with `http.server` on 127.0.0.1 (a free port, in a
background thread), crawls every `.html`/`.htm` file in it (each file is a seed, so pages that no link reaches are
archived too) and stops the server. It builds WARC inputs from local pages, e.g. for throughput benchmarks or
tests; the WARC files are what a crawl of a real site would produce (HTTP headers included).
"""

from __future__ import annotations

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

from llm_core.crawl.live import crawl_to_warc
from llm_core.crawl.sources import html_files


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def crawl_folder_to_warc(folder: str, out_dir: str, *, pages_per_warc: int = 1000, **options) -> dict[str, int]:
    """Serve `folder` on loopback and crawl all its HTML files into `out_dir/crawl-NNNNN.warc.gz`.

    Returns the counts of `crawl_to_warc` (`pages`, `warc_records`, `warc_files`, ...). `options` go to
    `crawl_to_warc` (e.g. `max_bytes_per_page`, `timeout_s`).
    """
    root = os.path.abspath(folder)
    handler = functools.partial(_QuietHandler, directory=root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        seeds = [base + quote(os.path.relpath(path, root).replace(os.sep, "/")) for path in html_files(root)]
        if not seeds:
            raise ValueError(f"no .html/.htm files under {root}")
        return crawl_to_warc(
            seeds, out_dir, max_pages=len(seeds), max_depth=0, pages_per_warc=pages_per_warc, **options
        )
    finally:
        server.shutdown()
        server.server_close()

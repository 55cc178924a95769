"""robots.txt rules per host, fetched once per host through the crawler's own `Fetcher` (same safety rules).

As in RFC 9309: a 2xx robots.txt is obeyed; 4xx (none there) allows everything; 5xx or an unreachable host
disallows everything. A redirected robots.txt is treated as absent (allow), a simplification. A host that
resolves to a refused address raises `AddressRefused` (the page is refused for that reason, not for robots).

`refusal(url)` says why a URL may not be fetched, with the true reason: `live:robots` (disallowed by the rules),
`live:robots_unavailable` (robots.txt answered 5xx), or the error that made robots.txt unreachable (`live:dns`,
`live:timeout`, `live:error`), so a seed whose host does not resolve is not reported as a robots refusal.
"""

from __future__ import annotations

from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from llm_core.crawl.fetcher import AddressRefused, Fetcher


class RobotsRules:
    def __init__(self, fetcher: Fetcher, user_agent: str, delay_s: float):
        self.fetcher, self.user_agent, self.delay_s = fetcher, user_agent, delay_s
        self._parsers: dict[str, RobotFileParser] = {}
        self._unreachable: dict[str, tuple[str, str]] = {}  # origin -> (reason, detail) when robots.txt failed

    @staticmethod
    def _origin(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    def _parser(self, url: str) -> RobotFileParser:
        origin = self._origin(url)
        if origin not in self._parsers:
            parser = RobotFileParser(origin + "/robots.txt")
            fetch = self.fetcher.get(origin + "/robots.txt", delay_s=self.delay_s, any_content_type=True)
            if fetch.error == "live:private_address":
                raise AddressRefused(fetch.detail)
            if fetch.status is None or fetch.error or fetch.status >= 500:
                parser.disallow_all = True
                if fetch.status is not None and fetch.status >= 500:
                    self._unreachable[origin] = ("live:robots_unavailable", f"robots.txt status {fetch.status}")
                else:
                    self._unreachable[origin] = (fetch.error or "live:error", f"robots.txt: {fetch.detail}")
            elif 200 <= fetch.status < 300:
                parser.parse(fetch.body.decode("utf-8", errors="replace").splitlines())
            else:
                parser.allow_all = True
            self._parsers[origin] = parser
        return self._parsers[origin]

    def allowed(self, url: str) -> bool:
        return self._parser(url).can_fetch(self.user_agent, url)

    def refusal(self, url: str) -> tuple[str, str] | None:
        """(reason, detail) if `url` may not be fetched, else None."""
        if self.allowed(url):
            return None
        return self._unreachable.get(self._origin(url), ("live:robots", "disallowed by robots.txt"))

    def crawl_delay(self, url: str) -> float:
        delay = self._parser(url).crawl_delay(self.user_agent)
        return float(delay) if delay else 0.0

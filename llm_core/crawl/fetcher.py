"""One HTTP GET, safely: no redirects followed (the crawler decides), bounded time and size, private networks refused.

Safety rules, checked for every request (so also for every redirect hop the crawler follows):

- the host name is resolved and *every* address it resolves to must be public (`ipaddress.is_global`), unless
  `allow_private_addresses`; the address actually connected to is checked again (a DNS answer that changes
  between the check and the connect gets no response read from an internal service);
- the body is streamed, its content encoding (gzip, deflate, br, zstd) undone piece by piece, and the decoded
  output cut at `max_bytes` (the fetch is marked truncated); the whole fetch is bounded by
  about `timeout_s` per network wait plus `timeout_s` overall for the body;
- the body of a response whose media type is not wanted is never downloaded.

Failures come back as a `Fetch` with `error` set (`live:timeout`, `live:private_address`, `live:dns` (the host
name does not resolve), `live:error`, `live:not_html`), never as an exception.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from llm_core.crawl.http_body import decoded_pieces, take
from llm_core.crawl.warc_reader import media_type


class AddressRefused(Exception):
    """The target resolves to an address the crawler must not reach."""


@dataclass
class Fetch:
    url: str
    fetched_at: dt.datetime
    status: int | None = None
    reason_phrase: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    truncated: bool = False
    error: str | None = None
    detail: str = ""

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    @property
    def complete(self) -> bool:
        """A response whose body was read (possibly cut at the size cap): worth archiving."""
        return self.status is not None and self.error is None


def _refused(ip_text: str) -> bool:
    ip = ipaddress.ip_address(ip_text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _unresolvable(error: BaseException) -> bool:
    """Whether an error comes from a host name that does not resolve (anywhere in its chain of causes)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, socket.gaierror) or "Name or service not known" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def check_public(host: str, port: int) -> None:
    """Raise AddressRefused unless every address of `host` is a public unicast address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise OSError(f"cannot resolve {host}: {e}") from e
    for info in infos:
        if _refused(info[4][0]):
            raise AddressRefused(f"{host} resolves to {info[4][0]}")


class Fetcher:
    """GET pages one at a time with one connection pool; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        user_agent: str,
        timeout_s: float,
        max_bytes: int,
        content_types: list[str],
        allow_private_addresses: bool,
    ):
        self.timeout_s, self.max_bytes = timeout_s, max_bytes
        self.content_types = {t.lower() for t in content_types}
        self.allow_private = allow_private_addresses
        self._last_request: dict[str, float] = {}
        self.client = httpx.Client(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout_s),
            headers={"User-Agent": user_agent},
            trust_env=False,
        )

    def close(self) -> None:
        self.client.close()

    def _wait_for_host(self, host: str, delay_s: float) -> None:
        """Politeness: at least `delay_s` between the starts of two requests to one host."""
        if host in self._last_request:
            wait = self._last_request[host] + delay_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self._last_request[host] = time.monotonic()

    def get(self, url: str, *, delay_s: float = 0.0, any_content_type: bool = False) -> Fetch:
        """GET `url` (no redirect followed), at least `delay_s` after the previous request to its host."""
        self._wait_for_host(urlsplit(url).netloc.lower(), delay_s)
        fetch = Fetch(url=url, fetched_at=dt.datetime.now(dt.timezone.utc))
        try:
            self._get(fetch, any_content_type)
        except AddressRefused as e:
            fetch.error, fetch.detail = "live:private_address", str(e)
        except httpx.TimeoutException as e:
            fetch.error, fetch.detail = "live:timeout", f"{type(e).__name__}: {e}"
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as e:  # ValueError: a malformed URL
            fetch.error = "live:dns" if _unresolvable(e) else "live:error"
            fetch.detail = f"{type(e).__name__}: {e}"
        return fetch

    def _get(self, fetch: Fetch, any_content_type: bool) -> None:
        parts = urlsplit(fetch.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if not self.allow_private:
            check_public(parts.hostname or "", port)
        with self.client.stream("GET", fetch.url) as response:
            self._check_peer(response)
            fetch.status, fetch.reason_phrase = response.status_code, response.reason_phrase
            fetch.headers = list(response.headers.items())
            mime, _ = media_type(response.headers.get("content-type"))
            if not any_content_type and not response.is_redirect and mime not in self.content_types:
                fetch.error, fetch.detail = "live:not_html", mime or "(no content type)"
                return
            fetch.body, fetch.truncated = self._read_body(response)

    def _check_peer(self, response: httpx.Response) -> None:
        if self.allow_private:
            return
        stream = response.extensions.get("network_stream")
        peer = stream.get_extra_info("server_addr") if stream is not None else None
        if peer and _refused(peer[0]):
            raise AddressRefused(f"connected to {peer[0]}")

    def _read_body(self, response: httpx.Response) -> tuple[bytes, bool]:
        """The decoded body, cut at `max_bytes` of decoded output: raw chunks are decoded as they arrive, so a
        compressed bomb never grows past the cap (httpx's own decoding inflates a whole chunk at once)."""
        deadline = time.monotonic() + self.timeout_s

        def raw_chunks() -> Iterator[bytes]:
            for chunk in response.iter_raw():
                yield chunk
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(f"body not complete after {self.timeout_s} s")

        return take(decoded_pieces(raw_chunks(), None, response.headers.get("content-encoding")), self.max_bytes)

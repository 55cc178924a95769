"""URL filter: UT1 blocklists (domains and URL prefixes per category), FineWeb-style banned words, an allowlist.

Blocklists are a folder of category lists, either in UT1's own layout (`adult/domains`, `adult/urls`) or flat
(`ut1_adult_domains.txt`, `ut1_phishing_urls.txt`). A domain entry matches the host and all its subdomains
(`example.com` blocks `a.b.example.com`); a URL entry (`host/path`) matches that host and every path under it,
ignoring case as squidGuard does.
An allowlisted domain (or a subdomain of one) is always kept, and so are non-web sources (`file://`, `hf://`: no
host to judge). Reasons: `url:blocklist:<category>`,
`url:banned_word`, `url:soft_banned_words`, `url:banned_subword`, `url:invalid`.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field

from llm_core.filters.base import DocFilter, Document, FilterOutcome, FilterSettings
from llm_core.data_files import resolve_data_path
from llm_core.filters.url_words import BANNED_SUBWORDS, BANNED_WORDS, SOFT_BANNED_WORDS

_FLAT_LIST_RE = re.compile(r"^(?:ut1_)?(?P<category>.+)_(?P<kind>domains|urls)(?:\.txt)?$")
_NON_ALNUM_RE = re.compile(r"[^a-z0-9]+")
_HOST_RE = re.compile(r"[^\s/@:]+")
_NON_WEB_RE = re.compile(r"^(?!https?://)[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class URLFilterConfig(FilterSettings):
    blocklist_dir: str = Field("data/blocklists", description="folder of UT1 category lists")
    categories: list[str] | None = Field(None, description="categories to use; None = every list in the folder")
    allow_domains: list[str] = Field(default_factory=list, description="domains always kept, with subdomains")
    banned_words: list[str] = Field(default_factory=lambda: list(BANNED_WORDS))
    soft_banned_words: list[str] = Field(default_factory=lambda: list(SOFT_BANNED_WORDS))
    soft_word_threshold: int = Field(2, ge=1, description="drop when this many soft-banned words are in the URL")
    banned_subwords: list[str] = Field(default_factory=lambda: list(BANNED_SUBWORDS))


class Blocklists:
    """Domains and URL prefixes per category, loaded from a UT1 folder."""

    def __init__(self) -> None:
        self.domains: dict[str, str] = {}  # domain -> category
        self.url_prefixes: dict[str, list[tuple[str, str]]] = {}  # host -> [(path prefix, category)]

    @classmethod
    def load(cls, folder: Path, categories: list[str] | None = None) -> Blocklists:
        lists = cls()
        for path, category, kind in _list_files(folder):
            if categories is not None and category not in categories:
                continue
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                entry = line.strip().lower()
                if entry and not entry.startswith("#"):
                    lists.add(entry, category, kind)
        return lists

    def add(self, entry: str, category: str, kind: str) -> None:
        host, slash, path = entry.partition("/")
        host = _strip_www(host)
        if kind == "domains" or not slash or not path:
            self.domains.setdefault(host, category)
        else:
            self.url_prefixes.setdefault(host, []).append(("/" + path.rstrip("/"), category))

    def match(self, host: str, path: str) -> str | None:
        """The category that blocks this host/path, or None."""
        for suffix in host_suffixes(host):
            if suffix in self.domains:
                return self.domains[suffix]
        for prefix, category in self.url_prefixes.get(host, ()):
            if path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + "?"):
                return category
        return None


def _list_files(folder: Path) -> list[tuple[Path, str, str]]:
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if path.name in ("domains", "urls"):  # UT1 layout: <category>/domains
            found.append((path, path.parent.name, path.name))
        elif m := _FLAT_LIST_RE.match(path.name):
            found.append((path, m["category"], m["kind"]))
    return found


def _strip_www(host: str) -> str:
    return host[4:] if host.startswith("www.") else host


def host_suffixes(host: str) -> list[str]:
    """`a.b.example.com` -> [`a.b.example.com`, `b.example.com`, `example.com`] (not the bare TLD)."""
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(max(1, len(labels) - 1))]


class URLFilter(DocFilter):
    name = "url"
    reason_prefix = "url"
    config_model = URLFilterConfig

    def __init__(self, config: URLFilterConfig):
        super().__init__()
        self.config = config
        self.blocklists = Blocklists.load(resolve_data_path(config.blocklist_dir), config.categories)
        self.allow = {_strip_www(d.lower()) for d in config.allow_domains}
        self.banned_words = frozenset(w.lower() for w in config.banned_words)
        self.soft_banned_words = frozenset(w.lower() for w in config.soft_banned_words)
        self.banned_subwords = tuple(w.lower() for w in config.banned_subwords)

    @classmethod
    def data_paths(cls, settings: URLFilterConfig) -> list[str]:
        return [settings.blocklist_dir]

    def filter(self, doc: Document) -> FilterOutcome:
        url = doc.url.strip()
        if _NON_WEB_RE.match(url):
            return True  # a local file or a dataset record: no web host to judge
        try:
            parts = urlsplit(url if "://" in url else "http://" + url)
            host = _strip_www((parts.hostname or "").rstrip("."))
        except ValueError:
            return False, "invalid"
        if not _HOST_RE.fullmatch(host):
            return False, "invalid"
        if any(suffix in self.allow for suffix in host_suffixes(host)):
            return True
        category = self.blocklists.match(host, parts.path.lower().rstrip("/") or "/")
        if category is not None:
            return False, f"blocklist:{category}"
        url = url.lower()
        url_words = set(_NON_ALNUM_RE.split(url))
        if not self.banned_words.isdisjoint(url_words):
            return False, "banned_word"
        if len(self.soft_banned_words & url_words) >= self.config.soft_word_threshold:
            return False, "soft_banned_words"
        normalized = _NON_ALNUM_RE.sub("", url)
        if any(w in normalized for w in self.banned_subwords):
            return False, "banned_subword"
        return True

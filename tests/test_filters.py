"""Each filter on real samples: the UT1 lists, the English and Chinese sample pages, Chinese poetry and prose."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest
import trafilatura

from llm_core.filters.base import Document, FilterShardStats, FilterStats
from llm_core.filters.c4 import C4Config, C4QualityFilter
from llm_core.filters.fineweb import FineWebConfig, FineWebQualityFilter
from llm_core.filters.gopher import (
    GopherQualityConfig,
    GopherQualityFilter,
    GopherRepetitionConfig,
    GopherRepetitionFilter,
)
from llm_core.filters.language import LanguageFilter, LanguageFilterConfig
from llm_core.filters.url import URLFilter, URLFilterConfig, host_suffixes

ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=None)
def page(rel: str) -> str:
    return trafilatura.extract((ROOT / "data/html" / rel).read_text(encoding="utf-8")) or ""


def doc(text: str, url: str = "https://docs.example.org/page") -> Document:
    return Document(doc_id="d", url=url, text=text)


# -- URL
@pytest.fixture(scope="module")
def url_filter() -> URLFilter:
    return URLFilter(URLFilterConfig(allow_domains=["good.0-casino.info"]))


def entries(name: str) -> list[str]:
    lines = (ROOT / "data/blocklists" / name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def first_entry(name: str, not_in: str | None = None) -> str:
    """The first entry of a list (that another list does not also hold: a URL can be both malware and phishing)."""
    other = set(entries(not_in)) if not_in else set()
    return next(e for e in entries(name) if e not in other)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://docs.python.org/3/library/itertools.html", None),
        (f"http://{first_entry('ut1_gambling_domains.txt')}/", "url:blocklist:gambling"),
        (f"https://www.shop.{first_entry('ut1_gambling_domains.txt')}/a?b=1", "url:blocklist:gambling"),
        (f"https://{first_entry('ut1_mixed_adult_domains.txt')}", "url:blocklist:mixed_adult"),
        (f"https://{first_entry('ut1_cryptojacking_domains.txt')}/miner.js", "url:blocklist:cryptojacking"),
        (f"http://{first_entry('ut1_adult_urls.txt')}/page", "url:blocklist:adult"),
        (f"http://{first_entry('ut1_phishing_urls.txt', 'ut1_malware_urls.txt')}", "url:blocklist:phishing"),
        ("http://020sextoy.com/other-path", None),  # listed as a URL prefix only, not as a whole domain
        ("https://videos.example.com/free-porn-today", "url:banned_word"),
        ("https://example.com/hot-sexy-girls", "url:soft_banned_words"),
        ("https://example.com/hot-weather-report", None),  # one soft word is not enough
        ("https://www.mypornhubclone.net/", "url:banned_subword"),
        ("https://example.com/analysis/analytics", None),  # banned words match whole URL words only
        ("https://good.0-casino.info/rules", None),  # the allowlist wins over the blocklist
        ("http://not a host/", "url:invalid"),
        ("file:///data/html/en/about.html", None),  # local pages have no web host to judge
    ],
)
def test_url_filter_on_ut1_lists(url_filter, url, reason):
    assert url_filter(doc("text", url)) == reason


def test_url_filter_reads_the_ut1_folder_layout(tmp_path):
    (tmp_path / "adult").mkdir()
    (tmp_path / "adult" / "domains").write_text("# comment\nexample-adult.com\n")
    (tmp_path / "adult" / "urls").write_text("example.org/private\n")
    f = URLFilter(URLFilterConfig(blocklist_dir=str(tmp_path)))
    assert f(doc("x", "https://cdn.example-adult.com/x")) == "url:blocklist:adult"
    assert f(doc("x", "https://example.org/private/page")) == "url:blocklist:adult"
    assert f(doc("x", "https://example.org/public")) is None
    assert f.stats == FilterStats(input=3, kept=1, dropped={"blocklist:adult": 2}, seconds=f.stats.seconds)


def test_url_filter_categories_restrict_the_lists():
    f = URLFilter(URLFilterConfig(categories=["phishing"]))
    assert f(doc("x", f"http://{first_entry('ut1_gambling_domains.txt')}/")) is None
    assert set(f.blocklists.domains.values()) <= {"phishing"}


def test_host_suffixes():
    assert host_suffixes("a.b.example.com") == ["a.b.example.com", "b.example.com", "example.com"]


# -- language
@pytest.fixture(scope="module")
def language_filter() -> LanguageFilter:
    return LanguageFilter(LanguageFilterConfig())


def test_language_filter_keeps_english_and_chinese_pages(language_filter):
    for rel, language in [("en/tutorial__appetite.html", "en"), ("zh/ch04.zh-cn.html", "zh")]:
        d = doc(page(rel))
        assert language_filter(d) is None
        assert d.language == language and d.language_score >= 0.65


def test_language_filter_reasons(language_filter):
    french = doc("Le filtrage des données est une étape essentielle de la construction d'un modèle de langue.")
    assert language_filter(french) == "lang:fr" and french.language == "fr"
    index = doc(page("en/genindex-J.html"))  # an index of identifiers: English, but not confidently
    assert language_filter(index) == "lang:en<0.65"
    assert LanguageFilter(LanguageFilterConfig(languages=["zh"]))(doc(page("en/about.html"))) == "lang:en"


# -- quality
def run_quality(text: str) -> str | None:
    filters = [
        GopherRepetitionFilter(GopherRepetitionConfig()),
        GopherQualityFilter(GopherQualityConfig()),
        C4QualityFilter(C4Config()),
        FineWebQualityFilter(FineWebConfig()),
    ]
    d = doc(text)
    return next((r for f in filters if (r := f(d)) is not None), None)


@pytest.mark.parametrize("rel", ["zh/ch04.zh-cn.html", "zh/ch08.zh-cn.html", "zh/pr01.zh-cn.html", "zh/apa.zh-cn.html"])
def test_good_chinese_pages_pass_every_quality_rule(rel):
    assert run_quality(page(rel)) is None


def test_chinese_prose_counts_characters_not_spaces():
    """What script-awareness buys: Chinese prose split on spaces has too few "words" for Gopher's minimum of 50."""
    fortunes = (ROOT / "data/chinese_text/fortunes_zh_chinese.txt").read_text(encoding="utf-8").split("\n%\n")
    text = "\n\n".join(fortunes[:3])
    assert len(text.split()) < 50
    d = doc(text)
    assert GopherQualityFilter(GopherQualityConfig())(d) is None
    assert d.quality["word_count"] > 100 and d.quality["cjk_ratio"] > 0.8


def test_english_prose_page_passes_and_code_pages_do_not():
    assert run_quality(page("en/tutorial__appetite.html")) is None
    assert run_quality(page("en/library__functools.html")) == "quality:c4:curly_bracket"
    assert run_quality(page("en/using__editors.html")) == "quality:gopher:word_count"


def test_table_of_contents_is_dropped_as_a_bullet_list():
    toc = page("zh/index.zh-cn.html")
    assert run_quality(toc) == "quality:gopher:bullet_lines"
    assert FineWebQualityFilter(FineWebConfig())(doc(toc)) == "quality:fineweb:line_punct_ratio"


def test_gopher_quality_records_signals_and_reasons():
    prose = page("en/tutorial__appetite.html")
    d = doc(prose)
    assert GopherQualityFilter(GopherQualityConfig())(d) is None
    assert d.quality["word_count"] > 500 and 4 < d.quality["avg_word_length"] < 6
    no_stop_words = " ".join(["python interpreter module"] * 30)
    assert GopherQualityFilter(GopherQualityConfig())(doc(no_stop_words)) == "quality:gopher:stop_words"
    hashes = "the cat and the dog #tag #tag #tag " * 20
    assert GopherQualityFilter(GopherQualityConfig())(doc(hashes)) == "quality:gopher:hash_ratio"
    numbers = "the and 1234 5678 9012 3456 7890 " * 20
    assert GopherQualityFilter(GopherQualityConfig())(doc(numbers)) == "quality:gopher:alpha_words"


def test_gopher_repetition_on_repeated_text():
    prose = page("en/tutorial__appetite.html")
    assert GopherRepetitionFilter(GopherRepetitionConfig())(doc(prose)) is None
    paragraphs = prose.split("\n")
    repeated = "\n\n".join(paragraphs[:3] * 3)
    assert GopherRepetitionFilter(GopherRepetitionConfig())(doc(repeated)) == "quality:gopher_rep:dup_para_frac"
    poem = (ROOT / "data/chinese_text/fortunes_zh_tang300.txt").read_text(encoding="utf-8").split("\n%\n")[1]
    assert GopherRepetitionFilter(GopherRepetitionConfig())(doc(poem)) is None
    assert GopherRepetitionFilter(GopherRepetitionConfig())(doc(poem * 3)) is not None


def test_c4_removes_boilerplate_lines_and_keeps_the_rest():
    prose = page("en/tutorial__appetite.html")
    text = prose + "\nThis site uses cookies to improve your experience.\nEnable JavaScript to view this page properly."
    d = doc(text)
    assert C4QualityFilter(C4Config())(d) is None
    assert "cookies" not in d.text and "JavaScript" not in d.text
    assert d.text.startswith(prose.split("\n")[0].strip())
    lorem = doc(prose + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.")
    assert C4QualityFilter(C4Config())(lorem) == "quality:c4:lorem_ipsum"
    assert C4QualityFilter(C4Config())(doc("One line only.")) == "quality:c4:too_few_sentences"


def test_c4_terminal_punctuation_option_is_script_aware():
    strict = C4QualityFilter(C4Config(filter_no_terminal_punct=True))
    d = doc(page("zh/ch08.zh-cn.html"))
    assert strict(d) is None
    assert all(line.endswith(("。", "！", "？", "”", "」", "』", "；", "：", ".", "?", "!", '"', "'"))
               for line in d.text.splitlines())


def test_fineweb_rules():
    prose = page("en/tutorial__appetite.html")
    assert FineWebQualityFilter(FineWebConfig())(doc(prose)) is None
    duplicated_lines = prose + "\n" + "\n".join(prose.split("\n")[:4])
    assert FineWebQualityFilter(FineWebConfig())(doc(duplicated_lines)) == "quality:fineweb:char_dup_ratio"
    short_lines = "\n".join(f"Item number {i}." for i in range(40))
    assert FineWebQualityFilter(FineWebConfig())(doc(short_lines)) == "quality:fineweb:short_line_ratio"


def test_filter_errors_drop_the_document_with_the_error_named(url_filter):
    class Broken(URLFilter):
        def filter(self, d):
            raise ValueError("boom")

    broken = Broken(URLFilterConfig())
    assert broken(doc("text")) == "url:error:ValueError"
    assert broken.stats.dropped == {"error:ValueError": 1}


def test_stats_add_up_and_round_trip_through_json():
    a = FilterStats(input=3, kept=2, dropped={"x": 1}, seconds=0.5)
    b = FilterStats(input=2, kept=0, dropped={"x": 1, "y": 1}, seconds=0.25)
    merged = a + b
    assert merged == FilterStats(input=5, kept=2, dropped={"x": 2, "y": 1}, seconds=0.75)
    assert a == FilterStats(input=3, kept=2, dropped={"x": 1}, seconds=0.5), "adding leaves the terms alone"
    assert FilterStats.from_json(json.loads(json.dumps(merged.to_json()))) == merged

    one = FilterShardStats(input=4, kept_before_dedup=2, filters={"url": a})
    two = FilterShardStats(input=3, kept_before_dedup=0, filters={"url": b, "c4": FilterStats(input=1, kept=1)})
    total = sum([one, two], FilterShardStats())
    assert total == FilterShardStats(input=7, kept_before_dedup=2, filters={"url": merged, "c4": FilterStats(1, 1)})
    assert FilterShardStats.from_json(json.loads(json.dumps(total.to_json()))) == total
    assert total.to_manifest() == {"filter.url.input": 5, "filter.url.kept": 2, "filter.url.dropped.x": 2,
                                   "filter.url.dropped.y": 1, "filter.c4.input": 1, "filter.c4.kept": 1}

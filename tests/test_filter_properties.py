"""Property tests: no filter crashes (or drops a document with an `error:` reason) on arbitrary Unicode, empty or
huge text, and PII redaction never leaves a detected span behind."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_core.filters.base import Document
from llm_core.filters.minhash import MinHasher, exact_key
from llm_core.filters.pii import find_pii, redact
from llm_core.filters.stage import FilterConfig, build_filters

FILTERS = build_filters(FilterConfig())
HASHER = MinHasher()

texts = st.one_of(
    st.text(max_size=400),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=400),
    st.text(alphabet="天地玄黄宇宙洪荒。，！？ \n.abc123@+-()", max_size=400),
    st.text(alphabet="0123456789 -.+()x:/@abcdefABCDEF\n", max_size=200),
)
urls = st.one_of(
    st.text(max_size=80), st.just(""), st.just("file:///x"), st.from_regex(r"https?://[a-z0-9.-]{1,30}/\S{0,20}")
)


def run_all(text: str, url: str) -> None:
    doc = Document(doc_id="p", url=url, text=text)
    for f in FILTERS:
        reason = f(doc)
        assert reason is None or ":error:" not in reason, reason
        if reason is not None:
            break
    HASHER.band_keys(doc.text)
    exact_key(doc.text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, url=urls)
def test_filters_never_crash_on_arbitrary_text(text, url):
    run_all(text, url)


@pytest.mark.parametrize("text", ["", " ", "\n\n\n", "\x00", "。", "#" * 10])
def test_filters_handle_degenerate_text(text):
    run_all(text, "https://example.com/")


def test_filters_handle_huge_text():
    line = "The interpreter reads the file, and the module is imported with the standard rules of the language.\n"
    huge = line * 5_000 + "天地玄黄，宇宙洪荒。" * 5_000 + "555 0100 1234 " * 2_000  # about 0.7 MB
    run_all(huge, "https://example.com/")
    assert HASHER.signature(huge).shape == (112,)


@settings(max_examples=150, deadline=None)
@given(text=texts)
def test_redaction_counts_match_detections_and_is_idempotent(text):
    out, counts = redact(text)
    assert sum(counts.values()) == len(find_pii(text))
    assert redact(out) == (out, {})

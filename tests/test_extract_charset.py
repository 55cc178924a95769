"""Decoding fetched bytes as a browser would: header charset, then meta, then detection; legacy CJK encodings."""

from __future__ import annotations

import re

import pytest

from llm_core.extract.charset import UndecodableError, decode_body, meta_charset, normalize_encoding

# Natsume Soseki, "I Am a Cat" (1905), opening: public domain.
SOSEKI = (
    "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所で"
    "ニャーニャー泣いていた事だけは記憶している。吾輩はここで始めて人間というものを見た。しかもあとで聞くと"
    "それは書生という人間中で一番獰悪な種族であったそうだ。この書生というのは時々我々を捕えて煮て食うという話である。"
)


def zh_page(data_dir) -> str:
    return (data_dir / "html/zh/pr01.zh-cn.html").read_text(encoding="utf-8")


def with_meta(html: str, charset: str | None) -> str:
    """The page with its meta charset declaration replaced (or removed when charset is None)."""
    tag = f'<meta http-equiv="Content-Type" content="text/html; charset={charset}"/>' if charset else ""
    return re.sub(r"<meta http-equiv=\"Content-Type\"[^>]*>", tag, html, count=1)


@pytest.mark.parametrize(
    ("label", "codec"),
    [("GB2312", "gb18030"), ("gbk", "gb18030"), ("x-gbk", "gb18030"), ("Shift_JIS", "cp932"),
     ("windows-31j", "cp932"), ("EUC-JP", "euc_jp"), ("iso-8859-1", "cp1252"), ("us-ascii", "cp1252"),
     ("utf8", "utf-8"), ("big5", "big5hkscs"), ("no-such-charset", None), (None, None)],
)
def test_labels_map_to_the_codec_browsers_use(label, codec):
    assert normalize_encoding(label) == codec


def test_meta_charset_both_forms():
    assert meta_charset(b'<html><head><meta charset="Shift_JIS"></head>') == "Shift_JIS"
    assert meta_charset(b"<meta http-equiv='Content-Type' content='text/html; charset=euc-jp'>") == "euc-jp"
    assert meta_charset(b"<html><head><title>none</title></head>") is None


@pytest.mark.parametrize("encoding", ["gbk", "gb2312", "gb18030"])
@pytest.mark.parametrize("declared", ["header", "meta", "none"])
def test_chinese_legacy_encodings(data_dir, encoding, declared):
    html = with_meta(zh_page(data_dir), encoding if declared == "meta" else None)
    body = html.encode(encoding, errors="xmlcharrefreplace")
    decoded = decode_body(body, encoding if declared == "header" else None)
    assert "本书的目标读者：愿意学习 shell 脚本" in decoded.text
    assert decoded.origin == {"header": "header", "meta": "meta", "none": "detected"}[declared]
    assert decoded.text == html.encode(encoding, errors="xmlcharrefreplace").decode("gb18030")


@pytest.mark.parametrize("encoding", ["shift_jis", "euc-jp"])
@pytest.mark.parametrize("declared", ["header", "meta", "none"])
def test_japanese_legacy_encodings(encoding, declared):
    meta = f'<meta charset="{encoding}">' if declared == "meta" else ""
    html = f"<html><head>{meta}<title>吾輩は猫である</title></head><body><p>{SOSEKI}</p></body></html>"
    decoded = decode_body(html.encode(encoding), encoding if declared == "header" else None)
    assert decoded.text == html


def test_a_stale_utf8_declaration_loses_to_the_bytes(data_dir):
    """The zh page still says charset=UTF-8 in its meta but is served as GBK without a header."""
    body = zh_page(data_dir).encode("gbk", errors="xmlcharrefreplace")
    decoded = decode_body(body, None)
    assert decoded.origin == "detected"
    assert "本书的目标读者" in decoded.text


def test_utf8_served_as_latin1_is_utf8(data_dir):
    body = zh_page(data_dir).encode("utf-8")
    assert decode_body(body, "iso-8859-1").text == zh_page(data_dir)


def test_latin1_page_with_header():
    html = "<p>Café crème, naïve façade — déjà vu</p>"
    decoded = decode_body(html.encode("cp1252"), "ISO-8859-1")
    assert decoded.text == html and decoded.encoding == "cp1252"


def test_bom_wins():
    body = "\ufeff<p>¿Qué tal?</p>".encode("utf-16-le")
    assert decode_body(body, "iso-8859-1").text == "<p>¿Qué tal?</p>"


def test_binary_is_undecodable():
    body = bytes(range(256)) * 8
    with pytest.raises(UndecodableError):
        decode_body(body, None)

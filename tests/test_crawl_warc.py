"""Reading WARC/ARC files into raw pages: the real samples in data/warc, and the edge cases (revisit records, chunked
and gzip-encoded bodies, WAT/WET, ARC), and real records made defective: bare-LF HTTP headers, records cut short
(kept as truncated pages), cut inside their headers, corrupt gzip members and garbage (skipped with their byte
range, reading goes on), and a block that is not HTTP. Every skip reason is true."""

from __future__ import annotations

import gzip
import io
import uuid
import zlib
from collections import Counter
from pathlib import Path

import pytest
from fastwarc.warc import ArchiveIterator as FastArchiveIterator
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from llm_core.crawl.http_body import dechunk, decode_body
from llm_core.crawl.warc_reader import Page, Skip, SourceReadError, media_type, read_archive

WARC_DIR = Path(__file__).resolve().parent.parent / "data" / "warc"
HTML = ["text/html", "application/xhtml+xml"]


def read(data: bytes | Path, name: str = "sample.warc.gz", max_body_bytes: int = 5_000_000) -> list[Page | Skip]:
    stream = io.BytesIO(data) if isinstance(data, bytes) else open(data, "rb")
    with stream:
        return list(read_archive(stream, name=name, source="test", content_types=HTML, max_body_bytes=max_body_bytes))


def reasons(items: list[Page | Skip]) -> Counter:
    return Counter("page" if isinstance(i, Page) else i.reason for i in items)


def records_in(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in ArchiveIterator(f))


@pytest.mark.parametrize("name", sorted(p.name for p in WARC_DIR.iterdir() if ".warc" in p.name))
def test_every_record_is_kept_or_skipped_with_a_reason(name):
    items = read(WARC_DIR / name, name)
    assert len(items) == records_in(WARC_DIR / name)
    assert all(i.reason.startswith("warc:") for i in items if isinstance(i, Skip))
    assert "warc:corrupt" not in reasons(items)


def test_common_crawl_excerpt_keeps_html_responses_with_their_charsets():
    items = read(WARC_DIR / "resiliparse_cc_warcfile.dev.warc.gz")
    pages = [i for i in items if isinstance(i, Page)]
    assert reasons(items) == {"page": 11, "warc:request": 11, "warc:metadata": 11, "warc:warcinfo": 1}
    assert Counter(p.charset for p in pages) == {None: 6, "utf-8": 3, "gb2312": 2}
    assert all(p.status == 200 and p.content_type == "text/html" and p.warc_record_id for p in pages)
    gb = next(p for p in pages if p.charset == "gb2312")
    assert "的".encode("gb2312") in gb.body  # bytes kept as served; the extract stage decodes them


def test_chunked_transfer_encoding_is_decoded():
    (page,) = [i for i in read(WARC_DIR / "warcio_example-iana.org-chunked.warc") if isinstance(i, Page)]
    assert page.url == "http://www.iana.org/" and page.charset == "utf-8"
    assert page.body.startswith(b"<!doctype html>") and page.body.rstrip().endswith(b"</html>")
    assert b"\r\n0\r\n" not in page.body[-10:]


def test_pywb_archive_revisits_and_non_html_are_skipped():
    counts = reasons(read(WARC_DIR / "pywb_iana.warc.gz"))
    assert counts["page"] == 16
    assert counts["warc:revisit"] == 123 and counts["warc:request"] == 171
    assert counts["warc:not_html"] == 28 and counts["warc:status"] == 4  # CSS/JS/images; 3xx/4xx pages


def test_wat_and_wet_files_hold_no_pages():
    assert reasons(read(WARC_DIR / "whirlwind.warc.wat.gz")) == {"warc:warcinfo": 1, "warc:metadata": 1}
    assert reasons(read(WARC_DIR / "whirlwind.warc.wet.gz")) == {"warc:warcinfo": 1, "warc:conversion": 1}


def summary(items: list[Page | Skip]) -> list[tuple]:
    return [(i.url, i.body, i.truncated) if isinstance(i, Page) else (i.url, i.reason) for i in items]


def test_truncated_gzip_file_keeps_every_record_and_the_bytes_of_the_last():
    data = (WARC_DIR / "pywb_iana.warc.gz").read_bytes()
    full = read(data)
    cut = read(data[: len(data) // 2])
    assert "warc:corrupt" not in reasons(cut)
    assert summary(cut[:-1]) == summary(full[: len(cut) - 1])
    last = cut[-1]  # the record the cut falls in: read as far as it goes, its skip reason still true
    assert (last.url, last.reason) == (full[len(cut) - 1].url, "warc:not_html")


def test_a_corrupt_gzip_member_loses_that_member_only_and_names_its_byte_range():
    data = (WARC_DIR / "resiliparse_cc_warcfile.dev.warc.gz").read_bytes()
    starts = member_starts(data)
    first, second = starts[10], starts[11]  # member 10 holds a metadata record
    damaged = data[: first + 30] + bytes(60) + data[first + 90 :]
    items = read(damaged)
    lost = [i for i in items if isinstance(i, Skip) and i.reason == "warc:corrupt"]
    assert len(lost) == 1 and lost[0].detail.startswith(f"bytes {first}-{second} unreadable")
    full = read(data)
    assert summary([i for i in items if i is not lost[0]]) == summary(full[:10] + full[11:])


def test_garbage_between_gzip_members_is_skipped_and_reading_goes_on():
    data = (WARC_DIR / "pywb_iana.warc.gz").read_bytes()
    at = member_starts(data)[100]
    garbage = b"\x1f\x8b\x08\x00garbage" * 50  # fake member headers too
    items = read(data[:at] + garbage + data[at:])
    lost = [i for i in items if isinstance(i, Skip) and i.reason == "warc:corrupt"]
    assert [i.detail.split(" unreadable")[0] for i in lost] == [f"bytes {at}-{at + len(garbage)}"]
    assert summary([i for i in items if i is not lost[0]]) == summary(read(data))


def test_garbage_inside_an_uncompressed_file_is_skipped_up_to_the_next_record():
    plain = gzip.decompress((WARC_DIR / "resiliparse_cc_warcfile.dev.warc.gz").read_bytes())
    at = plain.index(b"WARC/1.0", 30000)
    items = read(plain[:at] + b"garbage\r\n" * 20 + plain[at:], "x.warc")
    assert reasons(items) == {**reasons(read(plain, "x.warc")), "warc:corrupt": 1}


def member_starts(data: bytes) -> list[int]:
    with io.BytesIO(data) as f:
        return [record.stream_pos for record in FastArchiveIterator(f, parse_http=False)]


def real_http_block(index: int = 1) -> bytes:
    """The HTTP block (status line, headers, body as archived) of a real Common Crawl response."""
    with open(WARC_DIR / "resiliparse_cc_warcfile.dev.warc.gz", "rb") as f:
        responses = (r for r in FastArchiveIterator(f, parse_http=False) if r.headers.get("WARC-Type") == "response")
        for i, record in enumerate(responses):
            if i == index:
                record.freeze()
                return record.reader.read()
    raise AssertionError("sample has fewer responses")


def warc_record(block: bytes, declared: int | None = None, url: str = "http://example.jp/a", rec_type: str = "response",
                content_type: str = "application/http; msgtype=response") -> bytes:
    head = (
        f"WARC/1.0\r\nWARC-Type: {rec_type}\r\nWARC-Target-URI: {url}\r\nWARC-Date: 2024-05-01T10:00:00Z\r\n"
        f"WARC-Record-ID: <urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(block) if declared is None else declared}\r\n\r\n"
    )
    return head.encode() + block + b"\r\n\r\n"


def bare_lf(block: bytes) -> bytes:
    head, body = block.split(b"\r\n\r\n", 1)
    return head.replace(b"\r\n", b"\n") + b"\n\n" + body


@pytest.mark.parametrize("compress", [False, True])
def test_http_headers_with_bare_lf_line_ends_are_parsed(compress):
    body = "<html><head><title>日本語</title></head><body><p>ウェブページの本文です。</p></body></html>"
    body = body.encode("euc-jp")
    block = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=EUC-JP\r\nServer: Apache\r\n\r\n" + body
    real = real_http_block()
    records = [warc_record(bare_lf(block)), warc_record(bare_lf(real), url="http://example.jp/b")]
    data = b"".join(gzip.compress(r) for r in records) if compress else b"".join(records)
    first, second = read(data, "x.warc.gz" if compress else "x.warc")
    assert isinstance(first, Page) and (first.status, first.content_type, first.charset) == (200, "text/html", "euc-jp")
    assert first.body == body and not first.truncated
    assert isinstance(second, Page) and second.body == real.split(b"\r\n\r\n", 1)[1]


def test_a_record_cut_short_keeps_the_bytes_present_marked_truncated():
    from llm_core.extract.config import ExtractConfig
    from llm_core.extract.page import PageExtractor

    block = real_http_block(6)  # a cycling tipping game page
    whole = warc_record(block)
    cut_at = len(whole) - len(block) // 4  # the last quarter of the page (footer, scripts) is missing
    (complete,) = read(whole, "x.warc")
    gz_cut = gzip.compress(whole)[: len(gzip.compress(whole[:cut_at]))]
    for name, data in [("x.warc", whole[:cut_at]), ("x.warc.gz", gz_cut)]:
        (page,) = read(data, name)
        assert isinstance(page, Page) and page.truncated and not complete.truncated, name
        assert complete.body.startswith(page.body) and len(page.body) > len(block) // 2
    extract = PageExtractor(ExtractConfig())
    assert extract(page.row()).text == extract(complete.row()).text, "the main text in the bytes present is all there"


def test_every_damaged_record_gets_a_true_reason():
    block = real_http_block()
    header_end = block.index(b"\r\n\r\n")
    dns_block = b"20240501100000\nexample.jp. 300 IN A 192.0.2.1\n"
    dns = warc_record(dns_block, url="dns:example.jp", content_type="text/dns")
    cut_in_headers = warc_record(block, url="http://example.jp/cut")[: -len(block) - 4 + header_end // 2]
    items = read(gzip.compress(dns) + gzip.compress(cut_in_headers))
    assert [(i.url, i.reason) for i in items] == [
        ("dns:example.jp", "warc:not_http"), ("http://example.jp/cut", "warc:truncated")
    ]
    assert "cut inside the HTTP headers" in items[1].detail
    compressor = zlib.compressobj(wbits=31)  # a gzip member cut inside the WARC headers
    items = read(compressor.compress(warc_record(block)[:60]) + compressor.flush(zlib.Z_SYNC_FLUSH))
    assert [i.reason for i in items] == ["warc:truncated"] and "WARC headers" in items[0].detail


def write_warc(records: list[tuple[str, str, list[tuple[str, str]], bytes]]) -> bytes:
    """(record type, url, HTTP headers, payload) -> a .warc.gz made with warcio."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for rec_type, url, headers, payload in records:
        http_headers = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
        if rec_type == "revisit":
            record = writer.create_revisit_record(
                url, digest="sha1:AAAA", refers_to_uri=url, refers_to_date="2024-01-01T00:00:00Z",
                http_headers=http_headers,
            )
        else:
            record = writer.create_warc_record(url, rec_type, payload=io.BytesIO(payload), http_headers=http_headers)
        writer.write_record(record)
    return buf.getvalue()


def test_revisit_records_and_encoded_bodies():
    html = "<html><body><p>Ein Beispiel mit Umlauten: äöü</p></body></html>".encode("iso-8859-1")
    encoded = gzip.compress(html)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(encoded), encoded)
    data = write_warc(
        [
            (
                "response",
                "http://example.de/",
                [("Content-Type", "text/html; charset=ISO-8859-1"), ("Content-Encoding", "gzip"),
                 ("Transfer-Encoding", "chunked")],
                chunked,
            ),
            ("revisit", "http://example.de/", [("Content-Type", "text/html")], b""),
            ("response", "http://example.de/big", [("Content-Type", "text/html")], b"<p>" + b"x" * 5000),
        ]
    )
    items = read(data, max_body_bytes=2000)
    page = items[0]
    assert isinstance(page, Page) and page.body == html and page.charset == "iso-8859-1"
    assert [i.reason for i in items[1:]] == ["warc:revisit", "warc:too_large"]


def test_arc_files_are_read_as_well():
    def arc_record(fields: list[str], block: bytes) -> bytes:
        return " ".join([*fields, str(len(block))]).encode() + b"\n" + block + b"\n"

    html = b"<html><body><p>Hello from an ARC file.</p></body></html>"
    data = (
        arc_record(["filedesc://test.arc", "0.0.0.0", "20050614070144", "text/plain"],
                   b"1 0 test\nURL IP-address Archive-date Content-type Archive-length\n")
        + arc_record(["http://example.org/", "192.0.2.1", "20050614070159", "text/html"],
                     b"HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=iso-8859-1\r\n\r\n" + html)
        + arc_record(["http://example.org/a.gif", "192.0.2.1", "20050614070200", "image/gif"],
                     b"HTTP/1.0 200 OK\r\nContent-Type: image/gif\r\n\r\nGIF89a")
    )
    first, second = read(data, "test.arc"), read(data, "test.arc")
    (cut,) = [i for i in read(data[: data.index(b"Hello") + 5], "test.arc") if isinstance(i, Page)]
    assert cut.truncated and cut.body == html[: html.index(b"Hello") + 5]
    assert reasons(first) == {"page": 1, "warc:warcinfo": 1, "warc:not_html": 1}
    page = next(i for i in first if isinstance(i, Page))
    assert page.body == html and page.fetched_at.year == 2005 and page.charset == "iso-8859-1" and not page.truncated
    assert [i.warc_record_id if isinstance(i, Page) else i.record_id for i in first] == [
        i.warc_record_id if isinstance(i, Page) else i.record_id for i in second
    ], "record ids of ARC records are stable across reads"


def test_http_body_helpers():
    assert media_type('text/html; Charset="GB2312"') == ("text/html", "gb2312")
    assert media_type(None) == ("", None)
    assert dechunk(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n") == b"hello world"
    assert dechunk(b"<html>not chunked</html>") == b"<html>not chunked</html>"
    assert decode_body(b"<html>plain</html>", "chunked", "gzip", 100) == b"<html>plain</html>"  # headers that lie
    assert decode_body(gzip.compress(b"a" * 10_000), None, "gzip", 100) == b"a" * 100


class FlakyStream(io.RawIOBase):
    """A forward-only stream (no seek, no tell) that fails after `fail_after` reads, like a dropped connection."""

    def __init__(self, data: bytes, fail_after: int | None = None):
        self.data, self.pos, self.reads, self.fail_after = data, 0, 0, fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        chunk = self.data[self.pos : self.pos + len(buffer)]
        buffer[: len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        raise io.UnsupportedOperation("tell")


def test_forward_only_streams_and_failing_sources():
    data = (WARC_DIR / "pywb_iana.warc.gz").read_bytes()
    items = list(read_archive(FlakyStream(data), name="x.warc.gz", source="s", content_types=HTML,
                              max_body_bytes=10**7))
    assert reasons(items) == reasons(read(data))
    with pytest.raises(SourceReadError, match="connection reset"):
        list(read_archive(FlakyStream(data, fail_after=3), name="x.warc.gz", source="s", content_types=HTML,
                          max_body_bytes=10**7))


def test_random_damage_never_stops_the_reader_nor_yields_a_record_twice():
    import random

    data = (WARC_DIR / "resiliparse_cc_warcfile.dev.warc.gz").read_bytes()
    variants = {"x.warc.gz": data, "x.warc": gzip.decompress(data)}
    whole = len(read(data))
    rng = random.Random(7)
    for trial in range(60):
        name = "x.warc.gz" if trial % 2 else "x.warc"
        damaged = bytearray(variants[name])
        at = rng.randrange(len(damaged))
        if trial % 3 == 0:
            del damaged[at : at + rng.randint(1, 2000)]  # a piece missing, member ends included
        elif trial % 3 == 1:
            damaged[at:at] = rng.randbytes(rng.randint(1, 500))
        else:
            for _ in range(10):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        items = read(bytes(damaged), name)
        ids = [i.warc_record_id if isinstance(i, Page) else i.record_id for i in items]
        assert len(ids) <= whole + 2 and len(set(filter(None, ids))) == len(list(filter(None, ids))), (trial, name)
    assert reasons(read(gzip.compress(b"") + data)) == reasons(read(data)), "an empty gzip member holds nothing"


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("lie", ["too_long", "swallows_the_next", "past_the_end", "too_short"])
def test_a_lying_content_length_is_skipped_with_its_range_and_every_other_record_is_kept(lie, compress):
    blocks = [real_http_block(i) for i in (1, 2, 3, 4)]
    good = [warc_record(b, url=f"http://example.jp/{i}") for i, b in enumerate(blocks)]
    declared = {"too_long": len(blocks[1]) + 500, "swallows_the_next": len(blocks[1]) + len(good[2]) + 100,
                "past_the_end": 10_000_000, "too_short": len(blocks[1]) - 3000}[lie]
    records = [good[0], warc_record(blocks[1], declared, url="http://example.jp/1"), good[2], good[3]]
    members = [gzip.compress(r) for r in records] if compress else records
    items = read(b"".join(members), "x.warc.gz" if compress else "x.warc", max_body_bytes=5_000_000)
    assert [(i.url, "page" if isinstance(i, Page) else i.reason) for i in items] == [
        ("http://example.jp/0", "page"), ("http://example.jp/1", "warc:bad_length"),
        ("http://example.jp/2", "page"), ("http://example.jp/3", "page")]
    whole = [read(r, "x.warc")[0] for r in good]
    assert [items[i].body for i in (0, 2, 3)] == [whole[i].body for i in (0, 2, 3)], "kept records are intact"
    start, end = len(members[0]), len(members[0]) + len(members[1])
    assert items[1].detail.startswith(f"bytes {start}-{end}: Content-Length {declared} ")

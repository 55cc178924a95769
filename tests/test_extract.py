"""The `extract` stage on real pages: English and Chinese text and titles, legacy encodings, every rejection
reason, curated documents passed through, counts that add up, and resume after a crash."""

from __future__ import annotations

import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from llm_core.config import RunConfig
from llm_core.extract import ExtractConfig, ExtractStage
from llm_core.extract.page import PageExtractor, is_boilerplate_only
from llm_core.extract.timeout import DocumentTimeout, time_limit
from llm_core.schemas import DOCUMENTS, RAW_PAGES
from llm_core.stage import StageContext, run_stage
from llm_core.store import ArtifactStore, ParquetShardWriter
from test_extract_charset import SOSEKI, with_meta

ROOT = Path(__file__).resolve().parents[1]
FETCHED = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
EN_PAGES = ["about.html", "tutorial__appetite.html", "using__editors.html", "library__crypt.html"]
ZH_PAGES = ["apa.zh-cn.html", "pr01.zh-cn.html"]


def load_bench(name: str):
    """A script of bench/ as a module (bench/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def page(url: str, body: bytes, content_type: str | None = "text/html", charset: str | None = None,
         status: int | None = 200) -> dict:
    return {"url": url, "fetched_at": FETCHED, "status": status, "content_type": content_type, "charset": charset,
            "body": body, "warc_record_id": f"<urn:uuid:{abs(hash(url)):032x}>", "source": "test"}


def html_page(data_dir: Path, lang: str, name: str, **kw) -> dict:
    return page(f"http://docs.example/{lang}/{name}", (data_dir / "html" / lang / name).read_bytes(), **kw)


def crawl_artifact(root: Path, shards: dict[str, list[dict]], curated: dict[str, list[dict]] | None = None):
    """A committed crawl artifact holding the given raw-pages (and curated documents) shards."""
    store = ArtifactStore(str(root))
    ref = store.ref("crawl", "test" + str(abs(hash(tuple(shards))))[:8])
    writer = store.writer(ref)
    for name, rows in shards.items():
        with ParquetShardWriter(writer, f"pages/{name}.parquet", RAW_PAGES) as out:
            for row in rows:
                out.write(row)
    for name, rows in (curated or {}).items():
        with ParquetShardWriter(writer, f"documents/{name}.parquet", DOCUMENTS) as out:
            for row in rows:
                out.write(row)
    writer.commit(version="1", config={}, inputs={})
    return ref


def run_extract(root: Path, pages_ref, workers: int = 1, key: str = "k1", **cfg):
    run = RunConfig(artifact_root=str(root), workers=workers)
    store = ArtifactStore(str(root))
    ctx = StageContext(stage="extract", config=ExtractConfig(**cfg), run=run, inputs={"pages": pages_ref},
                       output=store.ref("extract", key))
    manifest, _ = run_stage(ExtractStage(), ctx)
    return manifest, store.reader(ctx.output)


def rows(reader, pattern: str) -> list[dict]:
    return list(reader.iter_rows(pattern))


@pytest.mark.slow
def test_english_and_chinese_pages_on_two_workers(tmp_path, data_dir):
    pages_ref = crawl_artifact(tmp_path, {
        "warc-0000": [html_page(data_dir, "en", n) for n in EN_PAGES],
        "warc-0001": [html_page(data_dir, "zh", n) for n in ZH_PAGES],
    })
    manifest, reader = run_extract(tmp_path, pages_ref, workers=2)

    assert manifest.counts["input"] == 6 and manifest.counts["kept"] == 6 and manifest.counts["rejected"] == 0
    assert reader.files("documents/*") == ["documents/part-00000.parquet", "documents/part-00001.parquet"]
    assert reader.files("rejected/*") == ["rejected/part-00000.parquet", "rejected/part-00001.parquet"]
    assert [s["input_file"] for s in manifest.extra["tables"]["shards"]] == ["pages/warc-0000.parquet",
                                                                             "pages/warc-0001.parquet"]
    docs = {d["url"].rsplit("/", 1)[1]: d for d in rows(reader, "documents/*.parquet")}
    appetite = docs["tutorial__appetite.html"]
    assert appetite["title"].startswith("1. Whetting Your Appetite")
    assert "eventually you find that there’s some task you’d like to automate" in appetite["text"]
    assert "<div" not in appetite["text"] and "Navigation" not in appetite["text"]
    assert docs["apa.zh-cn.html"]["title"] == "附录 A. 附录"
    assert "Linux 系统是一个面向网络计算机的功能强大的计算平台" in docs["apa.zh-cn.html"]["text"]
    assert docs["pr01.zh-cn.html"]["title"] == "序言"
    assert "本书的目标读者：愿意学习 shell 脚本" in docs["pr01.zh-cn.html"]["text"]
    assert all(len(d["doc_id"]) == 32 and d["source"] == "test" for d in docs.values())
    assert manifest.extra["markdown"].startswith("**extract**: 6 records in 2 shards -> 6 documents")


MENU_AND_COPYRIGHT = (
    b"<html><head><title>Example Shop</title></head><body><div class='content'>"
    b"<p>Home</p><p>Products and services</p><p>Contact us</p><p>Sign in</p>"
    b"<p>\xc2\xa9 2024 Example Shop GmbH. All rights reserved.</p></div></body></html>"
)


def test_boilerplate_only_texts_are_told_from_short_real_documents():
    assert is_boilerplate_only("Home\nProducts and services\nContact us\n© 2024 Example GmbH. All rights reserved.")
    assert is_boilerplate_only("- 职位名称\n- 单位名称\n- 学历要求")
    assert not is_boilerplate_only("Home\nThe museum is closed on Mondays and public holidays.")
    assert not is_boilerplate_only("Bake the cookies for twelve minutes, until golden.")
    assert is_boilerplate_only("This website uses cookies to improve your experience. Accept all cookies")
    assert not is_boilerplate_only("床前明月光，\n疑是地上霜。\n举头望明月，\n低头思故乡。")


def test_a_page_gives_the_same_text_whatever_pages_came_before_it(data_dir):
    """Pages of one site share their navigation: extraction must not drop it from later pages only."""
    pages = [html_page(data_dir, "en", name) for name in EN_PAGES]
    forward = [PageExtractor(ExtractConfig())(p) for p in pages]
    one_by_one = [PageExtractor(ExtractConfig())(p) for p in pages]
    extractor = PageExtractor(ExtractConfig())
    backward = [extractor(p) for p in reversed(pages)][::-1]
    assert [o.text for o in backward] == [o.text for o in forward] == [o.text for o in one_by_one]
    again = [extractor(pages[0]).text for _ in range(5)]  # trafilatura's shared dedup cache cut it from the 4th on
    assert again == [forward[0].text] * 5, "the same page again gives the same text"


def test_extraction_quality_on_benchmark_pages_does_not_drop():
    """F1 on 12 pages of the article extraction benchmark (data/extraction_benchmark), scored as the benchmark
    scores it; measured 0.966 with the defaults (trafilatura's own defaults: 0.934)."""
    quality = load_bench("extraction_quality")
    pages = quality.load_benchmark(ROOT / "data" / "extraction_benchmark")
    extract = quality.ours(ExtractConfig())
    scores = quality.aggregate([quality.page_scores(expected, extract(body)) for _, body, expected in pages])
    assert scores["f1"] >= 0.966 - 0.02, scores


def test_legacy_encodings_with_and_without_declarations(tmp_path, data_dir):
    zh = (data_dir / "html/zh/pr01.zh-cn.html").read_text(encoding="utf-8")
    ja = f"<html><head><title>吾輩は猫である</title></head><body><article><p>{SOSEKI}</p><p>{SOSEKI}</p></article></body></html>"
    ja_meta = ja.replace("<head>", '<head><meta charset="euc-jp">')
    gbk = lambda s, enc="gbk": s.encode(enc, errors="xmlcharrefreplace")  # noqa: E731
    pages_ref = crawl_artifact(tmp_path, {"mixed-0000": [
        page("http://zh/gbk-header", gbk(zh), charset="GBK"),
        page("http://zh/gb2312-meta", gbk(with_meta(zh, "gb2312"), "gb2312")),
        page("http://zh/gbk-undeclared", gbk(with_meta(zh, None))),
        page("http://ja/sjis-header", ja.encode("shift_jis"), content_type="text/html; charset=Shift_JIS"),
        page("http://ja/eucjp-meta", ja_meta.encode("euc-jp")),
        page("http://ja/sjis-undeclared", ja.encode("shift_jis")),
    ]})
    manifest, reader = run_extract(tmp_path, pages_ref)

    assert manifest.counts["kept"] == 6, rows(reader, "rejected/*.parquet")
    docs = {d["url"]: d for d in rows(reader, "documents/*.parquet")}
    for url in ("http://zh/gbk-header", "http://zh/gb2312-meta", "http://zh/gbk-undeclared"):
        assert docs[url]["title"] == "序言"
        assert "本书的目标读者：愿意学习 shell 脚本" in docs[url]["text"]
    for url in ("http://ja/sjis-header", "http://ja/eucjp-meta", "http://ja/sjis-undeclared"):
        assert docs[url]["title"] == "吾輩は猫である"
        assert "名前はまだ無い。どこで生れたかとんと見当がつかぬ。" in docs[url]["text"]


def test_every_rejection_reason_is_counted(tmp_path, data_dir):
    good = html_page(data_dir, "en", "using__editors.html")
    pages_ref = crawl_artifact(tmp_path, {"edge-0000": [
        good,
        page("http://x/404", good["body"], status=404),
        page("http://x/image.png", b"\x89PNG\r\n\x1a\n" + bytes(200), content_type="image/png"),
        page("http://x/untyped-binary", bytes(range(256)), content_type=None),
        page("http://x/empty", b"   \n", content_type="text/html"),
        page("http://x/no-text", b"<html><head><title>t</title></head><body><div></div></body></html>"),
        page("http://x/huge", b"<html><body><p>" + b"word " * 40_000 + b"</p></body></html>"),
        page("http://x/binary-as-html", bytes(range(128, 256)) * 64),
        page("http://x/menu-only", MENU_AND_COPYRIGHT),
    ]})
    manifest, reader = run_extract(tmp_path, pages_ref, max_bytes=100_000)

    counts = manifest.counts
    assert counts["input"] == 9 and counts["kept"] == 1 and counts["rejected"] == 8
    assert counts["kept"] + counts["rejected"] == counts["input"]
    rejected = {r["url"]: r for r in rows(reader, "rejected/*.parquet")}
    assert {url: r["reason"] for url, r in rejected.items()} == {
        "http://x/404": "extract:http_status",
        "http://x/image.png": "extract:not_html",
        "http://x/untyped-binary": "extract:not_html",
        "http://x/empty": "extract:empty",
        "http://x/no-text": "extract:empty",
        "http://x/huge": "extract:too_large",
        "http://x/binary-as-html": "extract:decode_error",
        "http://x/menu-only": "extract:boilerplate_only",
    }
    assert "no sentence" in rejected["http://x/menu-only"]["detail"]
    assert "status=404" in rejected["http://x/404"]["detail"]
    assert "warc_record_id=<urn:uuid:" in rejected["http://x/404"]["detail"]
    assert counts["rejected:extract:empty"] == 2 and counts["rejected:extract:too_large"] == 1
    assert sum(v for k, v in counts.items() if k.startswith("rejected:")) == counts["rejected"]
    assert {r["reason"]: r["records"] for r in manifest.extra["tables"]["rejected_by_reason"]}["extract:empty"] == 2


@pytest.mark.parametrize("on_thread", [False, True], ids=["main-thread", "thread"])
def test_a_page_that_hangs_is_interrupted(tmp_path, data_dir, monkeypatch, on_thread):
    """Also on a thread that is not a process's main thread, as when a thread or Dask task runs the shard."""
    real_extract = PageExtractor.extract

    def hang_on_slow_pages(self, html, url):
        if "slow" in (url or ""):
            while True:  # pure-Python busy loop, as a pathological page makes trafilatura spin
                time.sleep(0.001)
        return real_extract(self, html, url)

    monkeypatch.setattr(PageExtractor, "extract", hang_on_slow_pages)
    good = html_page(data_dir, "en", "about.html")
    pages_ref = crawl_artifact(tmp_path, {"t-0000": [page("http://x/slow", good["body"]), good]})
    t0 = time.perf_counter()
    if on_thread:
        with ThreadPoolExecutor(1) as pool:
            manifest, reader = pool.submit(run_extract, tmp_path, pages_ref, timeout_s=0.5).result()
    else:
        manifest, reader = run_extract(tmp_path, pages_ref, timeout_s=0.5)

    assert time.perf_counter() - t0 < 60
    assert manifest.counts["rejected:extract:timeout"] == 1 and manifest.counts["kept"] == 1
    (rejected,) = rows(reader, "rejected/*.parquet")
    assert rejected["url"] == "http://x/slow" and rejected["reason"] == "extract:timeout"
    assert "These documents are generated from reStructuredText" in rows(reader, "documents/*.parquet")[0]["text"]


def _race_bounds(blocks: int) -> None:
    """Blocks that take as long as their bound: many bounds run out just as their block ends."""
    for i in range(blocks):
        bound = 0.0001 * (1 + i % 5)
        try:
            with time_limit(bound):
                end = time.perf_counter() + bound
                while time.perf_counter() < end:
                    pass
        except DocumentTimeout:
            pass


def _spin_past(bound: float) -> str:
    try:
        with time_limit(bound):
            while True:
                pass
    except DocumentTimeout:
        return "interrupted"


def test_bounds_that_run_out_as_their_blocks_end_leave_nothing_behind():
    """Each bound either interrupts its block (the exception leaves `time_limit`) or is gone: none surfaces later,
    and no thread is left holding the watchdog (later bounds, on any thread, still work)."""
    racers = [threading.Thread(target=_race_bounds, args=(1500,), daemon=True) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
    assert not any(racer.is_alive() for racer in racers), "a thread is stuck waiting for the watchdog"
    for _ in range(100_000):  # a pending exception would be raised in this loop
        pass
    outcome: list[str] = []
    spinner = threading.Thread(target=lambda: outcome.append(_spin_past(0.2)), daemon=True)
    spinner.start()
    spinner.join(30)
    assert outcome == ["interrupted"]


def test_curated_documents_pass_through_unchanged(tmp_path, data_dir):
    poem = {"doc_id": "tang-1", "url": None, "text": (data_dir / "chinese_text").glob("*.txt").__next__()
            .read_text(encoding="utf-8")[:500], "title": "唐诗", "source": "tang300", "extracted_at": FETCHED}
    pages_ref = crawl_artifact(
        tmp_path, {"text-0000": [html_page(data_dir, "en", "about.html")]}, curated={"text-0000": [poem]}
    )
    manifest, reader = run_extract(tmp_path, pages_ref)

    assert manifest.counts["input"] == 2 and manifest.counts["kept"] == 2 and manifest.counts["passthrough"] == 1
    assert reader.files("documents/*") == ["documents/part-00000.parquet", "documents/part-00001.parquet"]
    assert rows(reader, "documents/part-00001.parquet") == [poem]


def _shard_outputs(reader) -> dict[str, list[tuple]]:
    """Every output file's rows, without the extraction time."""
    out = {}
    for name in reader.files("*/*.parquet"):
        out[name] = [tuple(v for k, v in r.items() if k != "extracted_at") for r in rows(reader, name)]
    return out


def test_resume_after_a_crash_redoes_only_unfinished_shards(tmp_path, data_dir, monkeypatch):
    shards = {f"warc-{i:04d}": [html_page(data_dir, "en", n)] for i, n in enumerate(EN_PAGES[:3])}
    shards["warc-0003"] = [html_page(data_dir, "zh", "apa.zh-cn.html")]
    pages_ref = crawl_artifact(tmp_path, shards)
    _, reference = run_extract(tmp_path, pages_ref, key="clean")

    real_extract = ExtractStage._extract

    def crash_on_third(self, ctx, shard, name):
        if shard == "part-00002":
            raise RuntimeError("killed")
        return real_extract(self, ctx, shard, name)

    monkeypatch.setattr(ExtractStage, "_extract", crash_on_third)
    with pytest.raises(RuntimeError, match="killed"):
        run_extract(tmp_path, pages_ref, key="crash")
    store = ArtifactStore(str(tmp_path))
    partial = store.writer(store.ref("extract", "crash"))
    assert partial.files("_shards/*") == ["_shards/part-00000.json", "_shards/part-00001.json"]
    assert not partial.files("documents/part-00002*") and not partial.files(".tmp-*")
    finished = {n: Path(partial.path(n)).stat().st_mtime_ns for n in partial.files("*/part-0000[01]*")}

    monkeypatch.setattr(ExtractStage, "_extract", real_extract)
    manifest, reader = run_extract(tmp_path, pages_ref, key="crash")

    assert {n: Path(partial.path(n)).stat().st_mtime_ns for n in finished} == finished
    assert manifest.counts["input"] == 4 and manifest.counts["kept"] == 4
    assert _shard_outputs(reader) == _shard_outputs(reference)


def test_runs_from_a_thread(tmp_path, data_dir):
    """A thread task runner calls the stage off the main thread: it runs there, time bound included."""
    pages_ref = crawl_artifact(tmp_path, {"t-0000": [html_page(data_dir, "en", "about.html")]})
    with ThreadPoolExecutor(1) as pool:
        manifest, reader = pool.submit(run_extract, tmp_path, pages_ref).result()
    assert manifest.counts["kept"] == 1
    assert "These documents are generated from reStructuredText" in rows(reader, "documents/*.parquet")[0]["text"]


def test_bad_config_values_are_rejected():
    with pytest.raises(ValueError, match="timeout_s"):
        ExtractConfig(timeout_s=0)
    with pytest.raises(ValueError, match="unknown|extra"):
        ExtractConfig(favour_precision=True)


def test_crawl_then_extract_through_the_pipeline_plan(tmp_path, data_dir):
    """The registered stage behind the real crawl stage: config section, input wiring, shard names."""
    from llm_core.config import ConfigError
    from llm_core.pipeline import plan
    from llm_core.pipeline_config import load_config
    from llm_core.registry import STAGES

    html = tmp_path / "html"
    html.mkdir()
    for name in ZH_PAGES:
        (html / name).write_bytes((data_dir / "html/zh" / name).read_bytes())
    config = load_config(data={"run": {"artifact_root": str(tmp_path / "a"), "workers": 1},
                               "crawl": {"html_dirs": [str(html)]}}, overrides=["extract.timeout_s=5"])
    contexts = plan(config, ["extract"])
    assert list(contexts) == ["crawl", "extract"]
    for name, ctx in contexts.items():
        manifest, _ = run_stage(STAGES[name], ctx)
    assert manifest.counts == {**manifest.counts, "input": 2, "kept": 2, "rejected": 0}
    reader = contexts["extract"].store().reader(contexts["extract"].output)
    assert {d["title"] for d in rows(reader, "documents/part-*.parquet")} == {"附录 A. 附录", "序言"}
    with pytest.raises(ConfigError, match="extract.timeout_s"):
        load_config(overrides=["extract.timeout_s=0"])

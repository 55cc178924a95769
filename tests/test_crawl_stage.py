"""The `crawl` stage end to end on the sample data: config validation, local HTML folders, text corpora as
documents, the artifact layout and counts, and resuming after a crash without redoing finished shards."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_core.config import ConfigError
from llm_core.crawl.stage import CrawlStage
from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.registry import STAGES
from llm_core.schemas import DOCUMENTS, RAW_PAGES, REJECTED
from llm_core.stage import run_stage

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"


def crawl_context(tmp_path: Path, *overrides: str, root: str = "artifacts"):
    config = load_config(overrides=[f"run.artifact_root={tmp_path / root}", "run.workers=1", *overrides])
    return plan(config, ["crawl"])["crawl"]


def table(ctx, pattern: str) -> pa.Table:
    reader = ctx.store().reader(ctx.output)
    tables = [pq.read_table(reader.path(name)) for name in reader.files(pattern)]
    return pa.concat_tables(tables) if tables else pa.table({})


@pytest.mark.parametrize(
    ("override", "key_path"),
    [
        ("crawl.warc=['data/warc/missing.warc.gz']", "crawl.warc.0"),
        ("crawl.warc=['data/warc/*.nothing']", "crawl.warc.0"),
        ("crawl.warc=['http://']", "crawl.warc.0"),
        ("crawl.html_dirs=['data/html/en/about.html']", "crawl.html_dirs.0"),
        ("crawl.live={seeds: ['ftp://example.com/']}", "crawl.live.seeds.0"),
        ("crawl.live={seeds: ['https://example.com/'], max_pages: 0}", "crawl.live.max_pages"),
        ("crawl.live={seeds: ['https://example.com/'], user_agnt: x}", "crawl.live.user_agnt"),
        ("crawl.warc_paths={listing: 'nope/warc.paths.gz'}", "crawl.warc_paths.listing"),
        ("crawl.text_datasets=[{path: text}]", "crawl.text_datasets.0"),
        ("crawl.text_datasets=[{path: text, data_files: [data/none.txt]}]", "crawl.text_datasets.0.data_files.0"),
    ],
)
def test_bad_config_is_rejected_with_its_key_path(override, key_path):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert f"  {key_path}:" in str(err.value)


def test_shipped_configs_validate():
    tiny = load_config(ROOT / "configs" / "tiny.yaml")
    assert tiny.crawl.warc and tiny.crawl.html_dirs
    cc = load_config(ROOT / "configs" / "commoncrawl.yaml")
    assert cc.crawl.warc_paths.listing.startswith("https://data.commoncrawl.org/crawl-data/")


def test_snapshot_is_part_of_the_key(tmp_path):
    a = crawl_context(tmp_path, "crawl.html_dirs=[data/html/zh]", "crawl.snapshot=2026-11-01")
    b = crawl_context(tmp_path, "crawl.html_dirs=[data/html/zh]", "crawl.snapshot=2026-11-02")
    c = crawl_context(tmp_path, "crawl.html_dirs=[data/html/zh]", "crawl.snapshot=2026-11-02", "run.workers=2")
    assert a.output.key != b.output.key == c.output.key


def test_changed_local_files_change_the_key(tmp_path):
    pages, warcs = tmp_path / "pages", tmp_path / "warcs"
    shutil.copytree(DATA / "html" / "zh", pages)
    warcs.mkdir()
    first_warc = sorted((DATA / "warc").glob("*.warc.gz"))[0]
    shutil.copy(first_warc, warcs)
    sources = (f"crawl.html_dirs=[{pages}]", f"crawl.warc=['{warcs}/*.warc.gz']")
    key = crawl_context(tmp_path, *sources).output.key
    assert crawl_context(tmp_path, *sources).output.key == key  # the same files: the same artifact
    page = sorted(pages.glob("*.html"))[0]
    page.write_text(page.read_text(encoding="utf-8") + "<p>new</p>", encoding="utf-8")
    edited = crawl_context(tmp_path, *sources).output.key
    assert edited != key
    (warcs / first_warc.name).rename(warcs / ("renamed-" + first_warc.name))
    assert crawl_context(tmp_path, *sources).output.key not in (key, edited)


def test_no_source_is_an_error_when_the_stage_runs(tmp_path):
    with pytest.raises(ConfigError, match="no source"):
        run_stage(STAGES["crawl"], crawl_context(tmp_path))


def test_html_folders_become_raw_pages(tmp_path):
    ctx = crawl_context(tmp_path, "crawl.html_dirs=[data/html/zh, data/html/en]", "crawl.records_per_shard=20")
    manifest, cached = run_stage(STAGES["crawl"], ctx)
    assert not cached and manifest.counts == {"records": 37, "pages": 37}
    pages = table(ctx, "pages/*.parquet")
    assert pages.schema == RAW_PAGES
    rows = pages.to_pylist()
    assert {r["source"] for r in rows} == {"html:zh", "html:en"}
    assert all(r["url"].startswith("file:///") and r["status"] == 200 and r["charset"] is None for r in rows)
    index = next(r for r in rows if r["url"].endswith("/zh/index.zh-cn.html"))
    assert index["body"] == (DATA / "html" / "zh" / "index.zh-cn.html").read_bytes()
    reader = ctx.store().reader(ctx.output)
    assert reader.files("pages/*") == ["pages/html-00000-0000.parquet", "pages/html-00001-0000.parquet",
                                       "pages/html-00002-0000.parquet"]
    assert [len(s["files"]) for s in reader.read_json("sources.json")] == [7, 20, 10]
    _, cached = run_stage(STAGES["crawl"], ctx)
    assert cached


@pytest.mark.slow  # the first `datasets` stream imports torch
def test_text_corpora_enter_as_documents(tmp_path):
    parquet = tmp_path / "books.parquet"
    pq.write_table(pa.table({"content": ["A first book.", "", "A second book."], "name": ["one", "two", "three"]}),
                   parquet)
    ctx = crawl_context(
        tmp_path,
        "crawl.text_datasets=["
        "{path: text, data_files: [data/tinyshakespeare/input.txt], source: tinyshakespeare},"
        "{path: json, data_files: [data/alpaca_seed_tasks/seed_tasks.jsonl], text_field: instruction, max_records: 50},"
        f"{{path: parquet, data_files: ['{parquet}'], text_field: content, title_field: name, source: books}}]",
    )
    manifest, _ = run_stage(STAGES["crawl"], ctx)
    counts = manifest.counts
    assert counts["documents"] == 1 + 50 + 2 and "pages" not in counts
    assert counts["skipped"] == counts["skipped:dataset:empty"] == 1
    assert counts["records"] == counts["documents"] + counts["skipped"]

    docs = table(ctx, "documents/*.parquet")
    assert docs.schema == DOCUMENTS
    by_source: dict[str, list[dict]] = {}
    for r in docs.to_pylist():
        by_source.setdefault(r["source"], []).append(r)
    assert by_source["tinyshakespeare"][0]["text"].startswith("First Citizen:")
    assert len(by_source["seed_tasks"]) == 50
    books = [(r["title"], r["text"]) for r in by_source["books"]]
    assert books == [("one", "A first book."), ("three", "A second book.")]
    assert len({r["doc_id"] for r in docs.to_pylist()}) == docs.num_rows
    assert table(ctx, "skipped/*.parquet").schema == REJECTED
    assert manifest.extra["tables"]["skip_reasons"] == [{"reason": "dataset:empty", "records": 1}]


def test_a_crash_part_way_resumes_without_redoing_finished_shards(tmp_path, monkeypatch):
    overrides = [
        "crawl.warc=['data/warc/w*', 'data/warc/resiliparse*']",
        "crawl.html_dirs=[data/html/en, data/html/zh]",
        "crawl.records_per_shard=10",
    ]
    reference = crawl_context(tmp_path, *overrides, root="reference")
    ref_manifest, _ = run_stage(STAGES["crawl"], reference)

    ctx = crawl_context(tmp_path, *overrides)
    real_run_shard = CrawlStage.run_shard
    calls: list[str] = []

    def run_shard(self, ctx, shard):
        if len(calls) == 3:
            raise RuntimeError("worker lost")
        calls.append(shard)
        return real_run_shard(self, ctx, shard)

    monkeypatch.setattr(CrawlStage, "run_shard", run_shard)
    with pytest.raises(RuntimeError, match="worker lost"):
        run_stage(STAGES["crawl"], ctx)
    writer = ctx.writer()
    finished = {name: os.stat(writer.path(name)).st_mtime_ns for name in writer.files("pages/*")}
    assert finished and not ctx.store().is_committed(ctx.output)

    rerun: list[str] = []
    monkeypatch.setattr(CrawlStage, "run_shard", lambda self, c, s: rerun.append(s) or real_run_shard(self, c, s))
    manifest, cached = run_stage(STAGES["crawl"], ctx)
    assert not cached
    done_first = set(calls[:3])
    assert done_first.isdisjoint(rerun) and len(rerun) == len(ref_manifest.extra["tables"]["shards"]) - 3
    assert {name: os.stat(writer.path(name)).st_mtime_ns for name in finished} == finished

    assert manifest.counts == ref_manifest.counts

    def data_files(m):
        return {name: entry.sha256 for name, entry in m.files.items() if not name.startswith("_shards/")}

    assert data_files(manifest) == data_files(ref_manifest), "same bytes as an uninterrupted run"
    assert table(ctx, "pages/*.parquet").equals(table(reference, "pages/*.parquet"))
    assert table(ctx, "skipped/*.parquet").equals(table(reference, "skipped/*.parquet"))
    counts = manifest.counts
    assert counts["records"] == counts["pages"] + counts["skipped"]
    assert counts["pages"] == 14 + 37 and counts["skipped:warc:conversion"] == 1


@pytest.mark.slow  # starts a process pool
def test_tiny_config_crawl_on_two_worker_processes(tmp_path):
    config = load_config(ROOT / "configs" / "tiny.yaml", [f"run.artifact_root={tmp_path}", "run.workers=2"])
    ctx = plan(config, ["crawl"])["crawl"]
    manifest, _ = run_stage(STAGES["crawl"], ctx)
    counts = manifest.counts
    assert counts["pages"] == 30 + 37  # 30 HTML responses in the WARC samples, 37 local HTML files
    assert counts["records"] == counts["pages"] + counts["skipped"]
    assert counts["skipped:warc:revisit"] == 124 and counts["skipped:warc:conversion"] == 1
    assert "skipped:warc:corrupt" not in counts
    urls = {r["url"] for r in ctx.store().reader(ctx.output).iter_rows("pages/*.parquet", ["url"])}
    assert {"https://an.wikipedia.org/wiki/Escopete", "http://www.iana.org/", "http://example.com/"} <= urls
    assert "skip_reasons" in manifest.extra["tables"] and manifest.extra["markdown"].startswith("**crawl**")


@pytest.mark.slow  # starts the S3 server (once per test session)
def test_warc_files_from_s3_into_an_s3_artifact_store(s3_server):
    import fsspec

    fs = fsspec.filesystem("s3", **s3_server["storage_options"])
    for name in ("whirlwind.warc.gz", "warcio_example.warc.gz"):
        fs.put(str(DATA / "warc" / name), f"llmpipe/crawl-input/{name}")
    options = s3_server["storage_options"]
    config = load_config(
        data={
            "run": {"artifact_root": f"{s3_server['root']}/crawl-test", "storage_options": options, "workers": 1},
            "crawl": {"warc": ["s3://llmpipe/crawl-input/*.warc.gz"], "storage_options": options},
        }
    )
    ctx = plan(config, ["crawl"])["crawl"]
    manifest, _ = run_stage(STAGES["crawl"], ctx)
    assert manifest.counts["pages"] == 2 and manifest.counts["skipped:warc:revisit"] == 1
    assert "storage_options" not in manifest.config, "credentials stay out of the key and the manifest"
    urls = sorted(r["url"] for r in ctx.store().reader(ctx.output).iter_rows("pages/*.parquet", ["url"]))
    assert urls == ["http://example.com/", "https://an.wikipedia.org/wiki/Escopete"]


def test_a_damaged_warc_file_is_read_to_its_end_with_every_record_accounted_for(tmp_path):
    """A corrupt gzip member in the middle and a record cut short at the end: the run goes on, the lost member is
    one `warc:corrupt` row, the cut page is kept marked `truncated`, and records = pages + skipped."""
    from fastwarc.warc import ArchiveIterator

    data = (DATA / "warc" / "resiliparse_cc_warcfile.dev.warc.gz").read_bytes()
    with open(DATA / "warc" / "resiliparse_cc_warcfile.dev.warc.gz", "rb") as f:
        starts = [(r.stream_pos, r.headers.get("WARC-Type")) for r in ArchiveIterator(f, parse_http=False)]
    corrupt = starts[10][0]
    last_response = max(i for i, (_, kind) in enumerate(starts) if kind == "response")
    cut = (starts[last_response][0] + starts[last_response + 1][0]) // 2  # inside the last response's member
    damaged = data[: corrupt + 30] + bytes(60) + data[corrupt + 90 : cut]
    warcs = tmp_path / "warcs"
    warcs.mkdir()
    (warcs / "damaged.warc.gz").write_bytes(damaged)
    ctx = crawl_context(tmp_path, f"crawl.warc=['{warcs}/damaged.warc.gz']")
    manifest, _ = run_stage(STAGES["crawl"], ctx)

    counts = manifest.counts
    present = last_response + 1  # the records after the cut are not in the file
    assert counts["records"] == counts["pages"] + counts["skipped"] == present - 1 + 1  # member 10 -> one corrupt row
    assert counts["skipped:warc:corrupt"] == 1 and counts["truncated"] == 1 and counts["pages"] == 11
    pages = table(ctx, "pages/*.parquet").to_pylist()
    assert [p["truncated"] for p in pages] == [False] * 10 + [True]
    (lost,) = [r for r in table(ctx, "skipped/*.parquet").to_pylist() if r["reason"] == "warc:corrupt"]
    assert lost["detail"].startswith(f"bytes {corrupt}-{starts[11][0]} unreadable")

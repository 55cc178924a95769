"""Each data stage is killed (SIGKILL) in the middle of a shard, then run again: the rerun commits counts equal to
the rows in its files, nothing of the killed attempt joins the artifact, and deterministic stages end with the
same content manifest as an uninterrupted run. Also: a live crawl whose site shrank between attempts."""

from __future__ import annotations

import shutil
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from llm_core.crawl.live import LiveCrawler
from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.registry import STAGES
from llm_core.stage import run_stage
from llm_core.store import MANIFEST
from ops.micro import micro_config

from conftest import loopback_server
from hostile import kill_stage, rows_match_counts

DATA_STAGES = ["crawl", "extract", "filter", "bpe", "tokenize"]
# small rolling files, so a kill lands after some files of a shard were published
TANG300 = '{name: tang300, path: data/chinese_text/fortunes_zh_tang300.txt, language: zh, split_on: "\\n%\\n"}'
EXTRA = ["run.workers=1", "crawl.records_per_shard=4", "bpe.sources=[]", "tokenize.shard_tokens=1024",
         "tokenize.batch_documents=1", f"tokenize.sources=[{TANG300}]"]
# where each stage is killed: a method and the number of calls (or yields) it survives
KILL_POINTS = {
    "crawl": ("llm_core.store.shards", "ParquetShardWriter", "write", 6),
    "extract": ("llm_core.store.shards", "ParquetShardWriter", "write", 5),
    "filter": ("llm_core.store.shards", "ParquetShardWriter", "write", 4),
    "tokenize": ("llm_core.tokenizer.tokenize_stage", "TokenizeStage", "_encode", 40),
}



def config_for(root: Path, stage: str):
    return micro_config(str(root), extra=EXTRA, targets=[stage])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The data stages built once without interruption: the reference, and the upstream of each kill test."""
    root = tmp_path_factory.mktemp("reference")
    for name, ctx in plan(config_for(root, "tokenize")).items():
        run_stage(STAGES[name], ctx)
    return root


@pytest.mark.parametrize("stage", list(KILL_POINTS))
def test_a_stage_killed_mid_shard_reruns_to_the_same_result(stage, uninterrupted, tmp_path):
    root = tmp_path / "a"
    shutil.copytree(uninterrupted, root)
    order = DATA_STAGES[DATA_STAGES.index(stage):]
    reference = {}
    for name in order:  # drop the stage and everything after it, keep its inputs
        [key] = [p.name for p in (root / name).iterdir() if not p.name.startswith(".")]
        reference[name] = (uninterrupted / name / key / MANIFEST).read_bytes()
        shutil.rmtree(root / name)

    kill_stage(root, stage, KILL_POINTS[stage], EXTRA)
    ctx = plan(config_for(root, stage), [stage])[stage]
    left = [p for p in (root / stage / ctx.output.key).rglob("*") if p.is_file()]
    assert not ctx.store().is_committed(ctx.output) and left, "killed with work half done"

    manifest, cached = run_stage(STAGES[stage], ctx)
    assert not cached
    rows_match_counts(stage, ctx)
    if stage != "extract":  # extract stamps every row with the time it ran (`extracted_at`)
        assert (root / stage / ctx.output.key / MANIFEST).read_bytes() == reference[stage]


def test_a_live_crawl_whose_site_shrank_keeps_nothing_of_the_killed_attempt(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    pages = [f"p{i}.html" for i in range(5)]
    links = "".join(f'<a href="{p}">{p}</a>' for p in pages)
    (site / "index.html").write_text(f"<html><body>{links}</body></html>")
    for p in pages:
        (site / p).write_text(f"<html><body><p>page {p}</p></body></html>")
    handler = partial(SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    with loopback_server(handler) as base:
        url = f"{base}/index.html"
        overrides = [f"run.artifact_root={tmp_path / 'a'}", "run.workers=1", "crawl.records_per_shard=1",
                     f"crawl.live={{seeds: ['{url}'], max_depth: 1, delay_s: 0, timeout_s: 2, pages_per_warc: 1, "
                     "allow_private_addresses: true}"]
        ctx = plan(load_config(overrides=overrides), ["crawl"])["crawl"]
        real_crawl = LiveCrawler.crawl

        def crawl_then_die(self):
            for i, step in enumerate(real_crawl(self)):
                if i == 5:
                    raise KeyboardInterrupt("killed")
                yield step

        monkeypatch.setattr(LiveCrawler, "crawl", crawl_then_die)
        with pytest.raises(KeyboardInterrupt):
            run_stage(STAGES["crawl"], ctx)
        assert len(ctx.writer().files("pages/*")) >= 4 and len(ctx.writer().files("warc/*")) >= 4
        for p in pages[2:]:
            (site / p).unlink()  # the site shrank: the rerun finds 3 pages and 3 missing ones
        monkeypatch.setattr(LiveCrawler, "crawl", real_crawl)
        manifest, _ = run_stage(STAGES["crawl"], ctx)
    assert manifest.counts["pages"] == 3 and manifest.counts["skipped:live:status"] == 3
    rows_match_counts("crawl", ctx)
    assert len(ctx.store().reader(ctx.output).files("warc/*.warc.gz")) == 6, "one WARC file per response received"

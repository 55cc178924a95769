"""The filter stage end to end on real pages: an extract-shaped DOCUMENTS artifact (trafilatura text of the
English and Chinese sample pages, plus planted blocklisted, French, duplicated and invalid documents) goes through
`run_stage`; the counts add up, each planted document is rejected for its reason, and a retry after a kill gives
the same files."""

from __future__ import annotations

import datetime as dt
import glob
import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pyarrow as pa
import pytest
import trafilatura

from llm_core.config import ConfigError, RunConfig
from llm_core.filters.stage import FILTERS, FilterConfig, FilterStage, filter_sections, reason_group
from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.schemas import DOCUMENTS
from llm_core.stage import StageContext, run_stage
from llm_core.store import ArtifactStore

ROOT = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _page_docs() -> list[dict]:
    docs = []
    for path in sorted(glob.glob(str(ROOT / "data/html/*/*.html"))):
        lang, name = Path(path).parent.name, Path(path).stem
        text = trafilatura.extract(Path(path).read_text(encoding="utf-8")) or ""
        docs.append({"doc_id": f"{lang}-{name}", "url": f"https://docs.example.org/{lang}/{name}.html", "text": text,
                     "title": name, "source": "sample", "extracted_at": NOW})
    return docs


@pytest.fixture(scope="module")
def pages() -> list[dict]:
    return _page_docs()


def planted(pages: list[dict]) -> list[dict]:
    by_id = {d["doc_id"]: d for d in pages}
    good_en, good_zh = by_id["en-tutorial__appetite"], by_id["zh-ch04.zh-cn"]
    lines = good_en["text"].split("\n")
    near = "\n".join(lines[:-1] + [lines[-1] + " This sentence was added."])
    french = ("Le filtrage des données est une étape essentielle de la construction d'un modèle de langue. "
              "Les documents sont lus, nettoyés, puis gardés ou rejetés avec une raison. ") * 6
    return [
        {**good_en, "doc_id": "gambling", "url": "http://www.0-casino.info/welcome"},
        {**good_en, "doc_id": "french", "url": "https://exemple.fr/article", "text": french},
        {**good_en, "doc_id": "copy-en", "url": "https://mirror.example.net/appetite",
         "text": good_en["text"].replace(". ", ".  ").replace(",", " ,")},  # same words, other spacing
        {**good_zh, "doc_id": "near-zh", "url": "https://mirror.example.net/ch04",
         "text": good_zh["text"] + "\n本文转载自其他网站。"},
        {**good_en, "doc_id": "near-en", "url": "https://mirror.example.net/appetite2", "text": near},
        {**good_en, "doc_id": "invalid", "text": None},
    ]


def make_documents(store: ArtifactStore, shards: list[list[dict]]):
    ref = store.ref("extract", "test-" + str(abs(hash(tuple(len(s) for s in shards)))))
    writer = store.writer(ref)
    for i, rows in enumerate(shards):
        writer.write_table(f"documents/part-{i:05d}.parquet", pa.Table.from_pylist(rows, schema=DOCUMENTS))
    writer.commit(version="test", config={}, inputs={}, counts={"documents": sum(map(len, shards))})
    return ref


def make_context(root: Path, shards: list[list[dict]], config: FilterConfig | None = None, workers: int = 1):
    store = ArtifactStore(str(root))
    docs = make_documents(store, shards)
    run = RunConfig(artifact_root=str(root), workers=workers)
    return StageContext(stage="filter", config=config or FilterConfig(), run=run, inputs={"documents": docs},
                        output=store.ref("filter", "under-test"))


def read_output(root: Path) -> tuple[list[dict], list[dict]]:
    reader = ArtifactStore(str(root)).reader(ArtifactStore(str(root)).ref("filter", "under-test"))
    return list(reader.iter_rows("documents/*.parquet")), list(reader.iter_rows("rejected/*.parquet"))


CONTACT = (
    "\nQuestions about this page can be sent to docs-team@python-docs.example.com or by phone to +44 20 7946 0958."
)


def with_contact(doc: dict) -> dict:
    return {**doc, "text": doc["text"] + CONTACT} if doc["doc_id"] == "en-library__cmath" else doc


@pytest.fixture(scope="module")
def shards(pages) -> list[list[dict]]:
    docs = [with_contact(d) for d in pages] + planted(pages)
    return [docs[: len(docs) // 2], docs[len(docs) // 2 :]]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, shards):
    root = tmp_path_factory.mktemp("filter")
    ctx = make_context(root, shards)
    manifest, cached = run_stage(FilterStage(), ctx)
    return root, manifest, cached


def test_counts_add_up_and_files_match_input_shards(finished, shards):
    root, manifest, cached = finished
    kept, rejected = read_output(root)
    total = sum(map(len, shards))
    assert not cached
    assert manifest.counts["input"] == total == len(kept) + len(rejected)
    assert manifest.counts["kept"] == len(kept) and manifest.counts["rejected"] == len(rejected)
    assert sorted(n for n in manifest.files if n.endswith(".parquet")) == [
        "dedup/duplicates.parquet", "dedup/index/docs.parquet", "documents/part-00000.parquet", "documents/part-00001.parquet",
        "rejected/part-00000.parquet", "rejected/part-00001.parquet",
    ]
    assert not any(n.startswith("_pending") for n in manifest.files)
    by_filter = {row["filter"]: row for row in manifest.extra["tables"]["filters"]}
    assert list(by_filter) == ["url", "language", "gopher_repetition", "gopher_quality", "c4", "fineweb", "pii",
                               "dedup"]
    for row in by_filter.values():
        dropped = [int(part.rsplit(": ", 1)[1]) for part in row["dropped_by_reason"].split(", ") if part]
        assert row["input"] == row["kept"] + sum(dropped) == row["kept"] + row["dropped"]
    assert by_filter["url"]["input"] == total - 1  # the invalid row never reaches a filter
    assert by_filter["dedup"]["kept"] == len(kept)
    # counts are deterministic; how long each filter took is a metric
    assert not any(k.endswith(".us") for k in manifest.counts) and manifest.counts["filter.url.input"] == total - 1
    assert manifest.metrics["filter.language.seconds"] > 0


def test_planted_documents_are_rejected_for_their_reason(finished):
    root, _, _ = finished
    kept, rejected = read_output(root)
    reasons = {r["doc_id"]: r["reason"] for r in rejected}
    assert reasons["gambling"] == "url:blocklist:gambling"
    assert reasons["french"] == "lang:fr"
    assert reasons["invalid"] == "input:invalid"
    assert reasons["copy-en"] == "dedup:exact_duplicate_of:en-tutorial__appetite"
    assert reasons["near-en"] == "dedup:near_duplicate_of:en-tutorial__appetite"
    assert reasons["near-zh"] == "dedup:near_duplicate_of:zh-ch04.zh-cn"
    kept_ids = {d["doc_id"] for d in kept}
    assert {"en-tutorial__appetite", "zh-ch04.zh-cn"} <= kept_ids
    assert all(reason_group(r).count(":") >= 1 for r in reasons.values())


def test_good_chinese_pages_survive_and_carry_language(finished):
    root, _, _ = finished
    kept, rejected = read_output(root)
    zh_kept = [d for d in kept if d["doc_id"].startswith("zh-")]
    # the chapters of prose survive; the table of contents (index) and the chapters full of shell code do not
    assert {d["doc_id"] for d in zh_kept} >= {"zh-ch04.zh-cn", "zh-ch08.zh-cn", "zh-pr01.zh-cn", "zh-apa.zh-cn"}
    assert all(d["language"] == "zh" and d["language_score"] >= 0.65 for d in zh_kept)
    zh_rejected = {r["doc_id"]: r["reason"] for r in rejected if r["doc_id"].startswith("zh-")}
    assert zh_rejected == {
        "zh-ch03.zh-cn": "quality:c4:curly_bracket",  # shell and config listings
        "zh-ch05.zh-cn": "quality:c4:curly_bracket",
        "zh-index.zh-cn": "quality:gopher:bullet_lines",  # a table of contents
    }
    assert all(json.loads(r["detail"]).get("language") == "zh" for r in rejected if r["doc_id"].startswith("zh-"))


def test_pii_is_redacted_in_kept_documents(finished):
    root, _, _ = finished
    kept, _ = read_output(root)
    cmath = next(d for d in kept if d["doc_id"] == "en-library__cmath")
    assert dict(cmath["pii_redactions"]) == {"EMAIL": 1, "PHONE": 1}
    assert "docs-team@" not in cmath["text"] and "7946" not in cmath["text"]
    assert cmath["text"].endswith("sent to <EMAIL> or by phone to <PHONE>.")
    assert all(not d["pii_redactions"] for d in kept if d["doc_id"] != "en-library__cmath")


def test_cache_hit_on_second_run(finished, shards):
    root, manifest, _ = finished
    store = ArtifactStore(str(root))
    ctx = StageContext(stage="filter", config=FilterConfig(), run=RunConfig(artifact_root=str(root)),
                       inputs={"documents": store.ref("extract", manifest.inputs["documents"].split("/")[1])},
                       output=store.ref("filter", "under-test"))
    again, cached = run_stage(FilterStage(), ctx)
    assert cached and again.files == manifest.files


def _run_in_child(root: str, shards: list[list[dict]]) -> None:
    ctx = make_context(Path(root), shards)
    run_stage(FilterStage(), ctx)


@pytest.mark.slow
def test_retry_after_kill_mid_stage_gives_same_output(tmp_path, shards, finished):
    """Kill the stage once the first shard is done, rerun it: same documents and rejections as an uninterrupted
    run, and the finished shard is not redone."""
    ctx = mp.get_context("forkserver")
    proc = ctx.Process(target=_run_in_child, args=(str(tmp_path), shards))
    proc.start()
    marker = tmp_path / "filter" / "under-test" / "_shards" / "part-00000.json"
    deadline = time.time() + 120
    while not marker.exists() and proc.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the first shard never finished"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert not (tmp_path / "filter" / "under-test" / "manifest.json").exists()
    first_marker = marker.read_text()

    run_stage(FilterStage(), make_context(tmp_path, shards))
    assert marker.read_text() == first_marker
    kept, rejected = read_output(tmp_path)
    ref_kept, ref_rejected = read_output(finished[0])
    assert [d["doc_id"] for d in kept] == [d["doc_id"] for d in ref_kept]
    assert [d["text"] for d in kept] == [d["text"] for d in ref_kept]
    assert [(r["doc_id"], r["reason"]) for r in rejected] == [(r["doc_id"], r["reason"]) for r in ref_rejected]


def test_disabled_filters_and_dedup_keep_everything_valid(tmp_path, pages):
    config = FilterConfig.model_validate(
        {name: {"enabled": False} for name in
         ["url", "language", "gopher_repetition", "gopher_quality", "c4", "fineweb", "pii", "dedup"]}
    )
    root = tmp_path
    ctx = make_context(root, [pages[:5]], config)
    manifest, _ = run_stage(FilterStage(), ctx)
    kept, rejected = read_output(root)
    assert [d["text"] for d in kept] == [d["text"] for d in pages[:5]] and not rejected
    assert manifest.extra["tables"]["filters"] == []


def test_config_has_one_section_per_filter_in_run_order():
    assert list(FilterConfig.model_fields) == ["enabled", *(f.name for f in FILTERS), "dedup"]
    assert all(type(settings) is f.config_model for f, settings in filter_sections(FilterConfig()))


def test_stage_is_planned_after_extract_and_bad_config_names_the_key():
    config = load_config(ROOT / "configs/tiny.yaml", [f"run.artifact_root={ROOT / 'artifacts'}"])
    contexts = plan(config, ["filter"])
    assert list(contexts)[-2:] == ["extract", "filter"]
    assert contexts["filter"].inputs["documents"] == contexts["extract"].output
    with pytest.raises(ConfigError, match=r"filter\.dedup: .*multiple of bands"):
        load_config(ROOT / "configs/tiny.yaml", ["filter.dedup.bands=13"])
    with pytest.raises(ConfigError, match=r"filter\.language\.min_score"):
        load_config(ROOT / "configs/tiny.yaml", ["filter.language.min_score=1.5"])


def test_new_blocklist_content_changes_the_key(tmp_path):
    import shutil

    lists = tmp_path / "lists"
    shutil.copytree(ROOT / "data/blocklists", lists)
    config = FilterConfig.model_validate({"url": {"blocklist_dir": str(lists)}})
    before = FilterStage().key_config(config, RunConfig())
    assert before == FilterStage().key_config(config, RunConfig())
    with open(lists / "ut1_gambling_domains.txt", "a", encoding="utf-8") as f:
        f.write("new-casino.example\n")
    after = FilterStage().key_config(config, RunConfig())
    assert after["data_digests"][str(lists)] != before["data_digests"][str(lists)]
    model = config.language.model_path
    assert after["data_digests"][model] == before["data_digests"][model] != "not local"

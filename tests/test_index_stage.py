"""The `index` stage and the search tool on real text: WikiText-2 articles as a filtered-documents artifact plus a
curated JSONL file (with malformed lines) go through `run_stage`; search finds the passage a query is about, two
builds are identical, a retry after a kill ends with the same artifact, and bad input gets a clear answer."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hostile import dying_after

from llm_core.config import ConfigError, RunConfig
from llm_core.index import IndexConfig, IndexStage, SearchIndex
from llm_core.index.passages import cut_passages
from llm_core.index.search_index import TOKENIZER
from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.schemas import FILTERED_DOCUMENTS
from llm_core.stage import StageContext, run_stage
from llm_core.store import ArtifactStore, Manifest
from llm_core.tools.search_tool import SearchTool

ROOT = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
CURATED_LINES = [
    '{"url": "https://facts.example/eiffel", "text": "The Eiffel Tower in Paris is 330 metres tall."}',
    "not json at all",
    "",
    '{"url": "https://facts.example/empty", "text": "   "}',
    '["a", "list"]',
    '{"text": "A fact without a source."}',
    '{"url": "https://facts.example/zh", "text": "床前明月光，疑是地上霜。"}',
]


@pytest.fixture(scope="module")
def articles(data_dir) -> list[str]:
    text = (data_dir / "wikitext2/valid.txt").read_text(encoding="utf-8")
    return [d for d in re.split(r"\n(?= = [^=].* = \n)", text) if d.strip()][:40]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, articles):
    """A store holding a `filter`-shaped artifact (two parts, one empty document) and a curated file."""
    tmp = tmp_path_factory.mktemp("index")
    store = ArtifactStore(str(tmp / "artifacts"))
    writer = store.writer(store.ref("filter", "docs"))
    for part, texts in enumerate([articles[:20] + [""], articles[20:]]):
        rows = [{"doc_id": f"{part}-{i}", "url": f"https://wiki.example/{part}/{i}", "text": t, "title": None,
                 "source": "wikitext", "extracted_at": NOW, "language": "en", "language_score": 0.9,
                 "pii_redactions": {}, "quality": {}} for i, t in enumerate(texts)]
        writer.write_table(f"documents/part-{part:05d}.parquet", pa.Table.from_pylist(rows, schema=FILTERED_DOCUMENTS))
    writer.commit(version="1", config={}, inputs={})
    curated = tmp / "facts.jsonl"
    curated.write_text("\n".join(CURATED_LINES) + "\n", encoding="utf-8")
    return store, str(curated)


def build(store: ArtifactStore, curated: str, key: str, stage: IndexStage | None = None, workers: int = 1,
          **cfg) -> Manifest:
    ctx = StageContext(stage="index", config=IndexConfig(curated=[curated], **cfg),
                       run=RunConfig(artifact_root=store.root, workers=workers),
                       inputs={"documents": store.ref("filter", "docs")}, output=store.ref("index", key))
    return run_stage(stage or IndexStage(), ctx)[0]


@pytest.fixture(scope="module")
def built(corpus) -> tuple[ArtifactStore, Manifest, SearchIndex]:
    store, curated = corpus
    manifest = build(store, curated, "first", workers=2)
    return store, manifest, SearchIndex.load(store.reader(store.ref("index", "first")))


def test_counts_passages_and_rejected_curated_lines(built, corpus, articles):
    store, m, index = built
    c = m.counts
    assert (c["documents"], c["empty_documents"]) == (41, 1)
    assert (c["curated_lines"], c["curated_kept"], c["curated_rejected"]) == (6, 2, 4)  # the blank line is no record
    expected = sum(len(cut_passages(a, 60)) for a in articles) + 2
    assert c["passages"] == len(index) == expected
    reasons = [(r["line"], r["reason"]) for r in m.extra["tables"]["rejected_curated"]]
    assert reasons == [(2, "not JSON (Expecting value)"), (4, "no text (a non-empty string)"),
                       (5, "not a JSON object (a list)"), (6, "no url (a non-empty string)")]
    assert store.reader(store.ref("index", m.key)).read_json("rejected/curated-000.json")[0]["line"] == 2
    assert m.inputs == {"documents": "filter/docs"}  # lineage: the filter artifact it was built from
    assert list(m.config["data_digests"]) == [corpus[1]] and len(m.config["data_digests"][corpus[1]]) == 16
    assert m.metrics["vocabulary"] > 5000 and 50 < m.metrics["words_per_passage"] <= 60


def test_search_returns_the_passage_a_query_is_about(built, articles):
    _, _, index = built
    (hit,) = index.search("How tall is the Eiffel Tower?", k=1)
    assert hit.url == "https://facts.example/eiffel" and hit.doc_id.endswith("facts.jsonl:1")
    assert hit.text == "The Eiffel Tower in Paris is 330 metres tall." and hit.score > 0
    # a phrase from inside one article finds that article's passage holding it
    article = next(i for i, a in enumerate(articles) if "Category 1 hurricane" in a)
    hits = index.search("Category 1 hurricane Mexico", k=3)
    assert hits[0].doc_id == f"{article // 20}-{article % 20}" and "hurricane" in hits[0].text.lower()
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert index.search("the of and is", k=3) == []  # stopwords only
    # Chinese: a run of characters between punctuation is one token, so the same run matches, a part of it not
    assert index.search("床前明月光", k=1)[0].url == "https://facts.example/zh"
    assert index.search("明月", k=1) == []


def test_search_tool_formats_bounds_and_refuses_blank_queries(built):
    _, _, index = built
    tool = SearchTool(index)
    assert tool("Eiffel Tower height") == "[https://facts.example/eiffel] The Eiffel Tower in Paris is 330 metres tall."
    assert tool("   ") == "error: empty query" and tool("") == "error: empty query"
    assert tool("zzqxj unknownword") == "no results"
    two = SearchTool(index, k=2, max_chars=300)("hurricane Mexico")
    lines = two.split("\n")
    assert len(lines) == 2 and all(re.match(r"^\[https://\S+\] ", line) for line in lines)
    assert len(two) <= 300 and lines[0].endswith("chars in all]")  # a 60-word passage does not fit in 149 chars
    with pytest.raises(ValueError, match="max_chars"):
        SearchTool(index, k=5, max_chars=100)


def test_two_builds_are_identical_and_load_without_pickle(built, corpus):
    store, first, index = built
    second = build(*corpus, "second")
    assert {n: f.sha256 for n, f in second.files.items()} == {n: f.sha256 for n, f in first.files.items()}
    again = SearchIndex.load(store.reader(store.ref("index", "second")))
    for query in ("hurricane", "Eiffel Tower", "game season team"):
        assert again.search(query, 5) == index.search(query, 5)
    reader = store.reader(store.ref("index", "second"))
    for name in reader.files("bm25/*.npy"):
        with reader.open(name) as f:
            assert np.load(f, allow_pickle=False).dtype != object


def test_retry_after_a_kill_resumes_and_gives_the_same_artifact(built, corpus):
    store, first, _ = built
    killed = dying_after(IndexStage, ok=1)
    with pytest.raises(RuntimeError, match="worker killed"):
        build(*corpus, "retried", stage=killed)
    assert killed.done == ["part-00000"] and not store.is_committed(store.ref("index", "retried"))
    rerun = dying_after(IndexStage, ok=99)
    m = build(*corpus, "retried", stage=rerun)
    assert rerun.done == ["part-00001", "curated-000"]  # the finished shard was not redone
    assert {n: f.sha256 for n, f in m.files.items()} == {n: f.sha256 for n, f in first.files.items()}


def curated_index(store: ArtifactStore, key: str, path: Path) -> SearchIndex:
    """The index of one curated file alone (no documents input)."""
    run = RunConfig(artifact_root=store.root, storage_options=store.storage_options, workers=1)
    ctx = StageContext(stage="index", config=IndexConfig(curated=[str(path)]), run=run, inputs={},
                       output=store.ref("index", key))
    run_stage(IndexStage(), ctx)
    return SearchIndex.load(store.reader(ctx.output))


FACT = '{"url": "u:1", "text": "Tinychat was built by the llm-pipeline project."}\n'


def test_curated_only_and_empty_indexes(tmp_path):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    (tmp_path / "facts.jsonl").write_text(FACT, encoding="utf-8")
    (tmp_path / "blank.jsonl").write_text("not json\n", encoding="utf-8")
    facts = curated_index(store, "facts", tmp_path / "facts.jsonl")
    assert SearchTool(facts)("who built Tinychat") == "[u:1] Tinychat was built by the llm-pipeline project."
    empty = curated_index(store, "blank", tmp_path / "blank.jsonl")
    assert len(empty) == 0 and SearchTool(empty)("anything") == "no results"


def test_question_words_do_not_outweigh_the_name_asked_about(tmp_path, monkeypatch):
    """The Glasgow stop words drop "how" and "many": a page full of them no longer beats the one passage holding the
    rare name. An index records the list it was built with and is searched with that list."""
    store = ArtifactStore(str(tmp_path / "artifacts"))
    lines = ['{"url": "u:faq", "text": "How many? How many more? Ask how many times, and how."}',
             '{"url": "u:town", "text": "Wenwenmon was founded in 1846 and has 4513 inhabitants."}']
    (tmp_path / "facts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    index = curated_index(store, "facts", tmp_path / "facts.jsonl")
    assert [h.url for h in index.search("How many people live in Wenwenmon?", k=2)] == ["u:town"]
    assert index.stopwords == "glasgow_en"
    monkeypatch.setitem(TOKENIZER, "stopwords", "en")  # an index built before: bm25s's 33 words keep "how many"
    before = curated_index(store, "facts-en", tmp_path / "facts.jsonl")
    assert before.stopwords == "en" and before.search("How many people live in Wenwenmon?", k=1)[0].url == "u:faq"


def test_index_on_s3(s3_server, tmp_path):
    store = ArtifactStore(s3_server["root"], s3_server["storage_options"])
    (tmp_path / "facts.jsonl").write_text(FACT, encoding="utf-8")
    index = curated_index(store, "s3facts", tmp_path / "facts.jsonl")
    assert SearchTool(index)("Tinychat") == "[u:1] Tinychat was built by the llm-pipeline project."


def test_bad_index_artifacts_are_clear_errors(built, tmp_path):
    store, _, _ = built
    with pytest.raises(ValueError, match=r"filter/docs is a 'filter' artifact, not a search index"):
        SearchIndex.load(store.reader(store.ref("filter", "docs")))
    with pytest.raises(FileNotFoundError, match="index/missing has no manifest"):
        SearchIndex.load(store.reader(store.ref("index", "missing")))
    broken = ArtifactStore(str(tmp_path / "broken"))
    writer = broken.writer(broken.ref("index", "nobm25"))
    writer.write_json("index.json", {"format": 1, "passage_files": ["passages/part-00000.parquet"], "passages": 3})
    writer.commit(version="1", config={}, inputs={})
    with pytest.raises(FileNotFoundError, match="lacks passages/part-00000.parquet"):
        SearchIndex.load(broken.reader(broken.ref("index", "nobm25")))
    writer = broken.writer(broken.ref("index", "stopwords"))
    writer.write_json("index.json", {"format": 1, "passage_files": [], "passages": 0, "tokenizer": {"stopwords": "xx"}})
    writer.commit(version="1", config={}, inputs={})
    with pytest.raises(ValueError, match="built with stop words 'xx'; this code knows"):
        SearchIndex.load(broken.reader(broken.ref("index", "stopwords")))


def test_planned_after_filter_and_curated_files_checked_at_config_load(tmp_path):
    config = load_config(ROOT / "configs/tiny.yaml", [f"run.artifact_root={tmp_path}"])
    contexts = plan(config, ["index"])
    assert list(contexts) == ["crawl", "extract", "filter", "index"]
    assert contexts["index"].inputs == {"documents": contexts["filter"].output}
    no_filter = load_config(ROOT / "configs/tiny.yaml", [f"run.artifact_root={tmp_path}", "filter.enabled=false"])
    assert plan(no_filter, ["index"])["index"].inputs["documents"].stage == "extract"
    with pytest.raises(ConfigError, match=r"index\.curated\.0: .*curated file 'data/tools/nope\.jsonl' not found"):
        load_config(ROOT / "configs/tiny.yaml", ["index.curated=[data/tools/nope.jsonl]"])
    with pytest.raises(ConfigError, match=r"index\.passage_words"):
        load_config(ROOT / "configs/tiny.yaml", ["index.passage_words=2"])

"""The `bpe` and `tokenize` stages on real sample text: artifacts, counts, split determinism, retry."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import numpy as np
import pyarrow as pa
import pytest
from hostile import dying_after

from llm_core.config import RunConfig
from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.schemas import DOCUMENTS
from llm_core.stage import StageContext, run_stage
from llm_core.store import ArtifactStore, Manifest
from llm_core.tokenizer import SPECIAL_TOKENS, TokenShards, load_tokenizer
from llm_core.tokenizer.base import DEFAULT_SPECIAL_TOKENS
from llm_core.tokenizer.bpe_stage import BpeConfig, BpeStage
from llm_core.tokenizer.sources import TextSource
from llm_core.tokenizer.tokenize_stage import VAL_SALT, TokenizeConfig, TokenizeStage, hash_fraction


@pytest.fixture(scope="module")
def wiki_docs(data_dir) -> list[str]:
    text = (data_dir / "wikitext2/valid.txt").read_text(encoding="utf-8")
    return [d for d in re.split(r"\n(?= = [^=].* = \n)", text) if d.strip()][:40]


@pytest.fixture(scope="module")
def poems(data_dir) -> list[str]:
    """The Tang poems source cut as the stage cuts it (the file ends with a separator: one empty piece)."""
    return (data_dir / "chinese_text/fortunes_zh_tang300.txt").read_text(encoding="utf-8").split("\n%\n")


def write_documents(store: ArtifactStore, key: str, parts: list[list[str | None]]) -> None:
    """An `extract`-like artifact: documents/part-NNNNN.parquet, one per list of texts."""
    ref = store.ref("extract", key)
    writer = store.writer(ref)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for i, texts in enumerate(parts):
        rows = [
            {"doc_id": f"{i}-{j}", "url": f"https://example.org/{i}/{j}", "text": t, "title": None,
             "source": "test", "extracted_at": now}
            for j, t in enumerate(texts)
        ]
        writer.write_table(f"documents/part-{i:05d}.parquet", pa.Table.from_pylist(rows, schema=DOCUMENTS))
    writer.commit(version="1", config={}, inputs={})


def context(store: ArtifactStore, stage: str, config, inputs: dict[str, str], key: str, workers: int = 1):
    return StageContext(
        stage=stage,
        config=config,
        run=RunConfig(artifact_root=store.root, storage_options=store.storage_options, workers=workers),
        inputs={name: store.ref(*ref.split("/")) for name, ref in inputs.items()},
        output=store.ref(stage, key),
    )


def chinese_source(data_dir) -> TextSource:
    return TextSource(name="tang", path=str(data_dir / "chinese_text/fortunes_zh_tang300.txt"), language="zh",
                      split_on="\n%\n")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, data_dir, wiki_docs):
    """Documents in two parts (plus an empty and a null text), a trained BPE, the store."""
    store = ArtifactStore(str(tmp_path_factory.mktemp("artifacts")))
    write_documents(store, "docs", [wiki_docs[:25] + ["", None], wiki_docs[25:]])
    cfg = BpeConfig(vocab_size=1024, sources=[chinese_source(data_dir)], heldout_fraction=0.1,
                    reference_vocab_dir=str(data_dir / "bpe_vocab"))
    manifest, _ = run_stage(BpeStage(), context(store, "bpe", cfg, {"documents": "extract/docs"}, "tok"))
    return store, manifest


def test_bpe_stage_writes_tokenizer_and_compression_report(pipeline, poems):
    store, m = pipeline
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(m.files)
    c = m.counts
    assert c["documents"] == 42 + len(poems)  # 40 wiki articles + an empty and a null text, the poems
    assert c["empty_documents"] == 3 and 10 < c["heldout_pieces"] < c["train_pieces"] / 4
    assert m.extra["encoder"] == "tiktoken" and m.extra["vocab_size"] == 1024
    assert m.extra["special_ids"] == {t: i for i, t in enumerate(DEFAULT_SPECIAL_TOKENS)}  # chat, then tool tokens
    rows = {r["language"]: r for r in m.extra["tables"]["compression"]}
    assert set(rows) == {"und", "zh"}  # extract documents carry no language
    for r in rows.values():
        assert r["ours"] > 1 and r["gpt2"] > 1 and r["cl100k"] > r["gpt2"] * 0.9
    assert rows["zh"]["gpt2"] < rows["zh"]["cl100k"]  # GPT-2 spends ~1 token per byte on Chinese
    assert m.metrics["bytes_per_token_zh"] == rows["zh"]["ours"]
    assert {(r["language"], r["source"]) for r in m.extra["tables"]["compression_by_source"]} == {
        ("und", "test"), ("zh", "tang")}
    (reference,) = m.extra["tables"]["reference_compression"]
    assert reference["text"] == "wikitext2_test" and reference["bytes"] > 1_000_000
    assert m.metrics["gpt2_bytes_per_token_wikitext2_test"] == reference["gpt2"] == pytest.approx(4.247, abs=0.01)
    assert "| held-back zh (1 sources) |" in m.extra["markdown"]


def tokenize(store, data_dir, key, workers=1, stage=None, docs="extract/docs", **cfg):
    config = TokenizeConfig(sources=[chinese_source(data_dir)], shard_tokens=4096, **cfg)
    ctx = context(store, "tokenize", config, {"tokenizer": "bpe/tok", "documents": docs}, key, workers)
    return run_stage(stage or TokenizeStage(), ctx)[0]


def stream(store: ArtifactStore, manifest: Manifest, split: str) -> np.ndarray:
    shards = TokenShards(store.reader(store.ref("tokenize", manifest.key)))
    arrays = [np.asarray(shards.memmap(name)) for name in shards.files(split)]
    return np.concatenate(arrays) if arrays else np.zeros(0, shards.dtype)


def test_tokenize_counts_layout_and_content(pipeline, data_dir, wiki_docs, poems):
    store, _ = pipeline
    m = tokenize(store, data_dir, "t1", val_fraction=0.1)
    c = m.counts
    assert c["documents"] == 42 + len(poems) and c["empty_documents"] == 3 and c["unencodable_documents"] == 0
    assert c["documents"] == c["train_documents"] + c["val_documents"] + c["empty_documents"]
    assert 0 < c["val_documents"] < c["train_documents"]
    shards = TokenShards(store.reader(store.ref("tokenize", m.key)))
    assert shards.dtype == np.dtype("<u2") and m.extra["dtype"] == "uint16" and m.extra["tokenizer"] == "bpe/tok"
    train = shards.files("train")
    assert train == [f"train/shard-{i:05d}.bin" for i in range(len(train))] and len(train) > 3
    assert all(len(shards.memmap(n)) == 4096 for n in train[:-1]) and 0 < len(shards.memmap(train[-1])) <= 4096
    assert not store.reader(store.ref("tokenize", m.key)).files("_parts/*")

    tok = load_tokenizer(store.reader(store.ref("bpe", "tok")))
    for split in ("train", "val"):
        tokens = stream(store, m, split)
        assert len(tokens) == c[f"{split}_tokens"] == shards.num_tokens(split)
        assert (tokens == tok.eot_id).sum() == c[f"{split}_documents"] and tokens[-1] == tok.eot_id
    # the train stream is the train documents, in input order, each followed by <|endoftext|>
    expected = [d for d in wiki_docs + poems if d and hash_fraction(d, VAL_SALT) >= 0.1]
    ids = stream(store, m, "train").tolist()
    assert ids == [i for d in expected for i in [*tok.encode(d), tok.eot_id]]


def test_split_depends_on_documents_not_on_sharding(pipeline, data_dir, wiki_docs):
    store, _ = pipeline
    write_documents(store, "docs3", [wiki_docs[30:], wiki_docs[:10] + [""], wiki_docs[10:30] + [None]])
    a = tokenize(store, data_dir, "split-a", val_fraction=0.2)
    b = tokenize(store, data_dir, "split-b", val_fraction=0.2, docs="extract/docs3")
    tok = load_tokenizer(store.reader(store.ref("bpe", "tok")))

    def val_documents(m):
        ids = stream(store, m, "val").tolist()
        docs, cur = [], []
        for i in ids:
            if i == tok.eot_id:
                docs.append(tok.decode(cur))
                cur = []
            else:
                cur.append(i)
        return sorted(docs)

    assert a.counts == b.counts
    assert val_documents(a) == val_documents(b) and len(val_documents(a)) == a.counts["val_documents"]


def digests(store: ArtifactStore, m: Manifest) -> dict[str, str]:
    reader = store.reader(store.ref("tokenize", m.key))
    return {n: hashlib.sha256(reader.open(n).read()).hexdigest() for n in reader.files("*/shard-*.bin")}


def test_retry_after_failure_resumes_and_gives_the_same_result(pipeline, data_dir):
    store, _ = pipeline
    reference = tokenize(store, data_dir, "clean", val_fraction=0.1)
    failing = dying_after(TokenizeStage, ok=2)
    with pytest.raises(RuntimeError, match="worker killed"):
        tokenize(store, data_dir, "retried", val_fraction=0.1, stage=failing)
    assert failing.done == ["documents-part-00000", "documents-part-00001"]
    assert not store.is_committed(store.ref("tokenize", "retried"))

    rerun = dying_after(TokenizeStage, ok=99)
    m = tokenize(store, data_dir, "retried", val_fraction=0.1, stage=rerun)
    assert rerun.done == ["source-tang"]  # the finished shards were not redone
    assert m.counts == reference.counts and m.extra["shards"] == reference.extra["shards"]
    assert digests(store, m) == digests(store, reference)


def test_tail_split_is_nanogpts_90_10_split_with_a_char_vocabulary(tmp_path, data_dir):
    store = ArtifactStore(str(tmp_path))
    shakespeare = TextSource(name="shakespeare", path=str(data_dir / "tinyshakespeare/input.txt"))
    bpe_cfg = BpeConfig(kind="char", sources=[shakespeare], reference_vocab_dir=str(data_dir / "bpe_vocab"))
    run_stage(BpeStage(), context(store, "bpe", bpe_cfg, {}, "char"))
    cfg = TokenizeConfig(sources=[shakespeare], split="tail", val_fraction=0.1, shard_tokens=300_000)
    m, _ = run_stage(TokenizeStage(), context(store, "tokenize", cfg, {"tokenizer": "bpe/char"}, "char"))

    data = (data_dir / "tinyshakespeare/input.txt").read_text(encoding="utf-8")
    chars = sorted(set(data))
    n = len(data)
    train_ids = np.array([chars.index(c) for c in data[: int(n * 0.9)]])  # nanoGPT's prepare.py
    assert m.extra["vocab_size"] == 65 + len(DEFAULT_SPECIAL_TOKENS) and m.extra["eot_id"] == 65
    assert load_tokenizer(store.reader(store.ref("bpe", "char"))).has_tools
    train, val = stream(store, m, "train"), stream(store, m, "val")
    assert np.array_equal(train[:-1], train_ids) and train[-1] == 65
    assert len(val) == n - int(n * 0.9) + 1
    assert len(m.extra["shards"]["train"]) == 4


def test_unencodable_documents_are_counted_not_fatal(tmp_path, data_dir, wiki_docs):
    store = ArtifactStore(str(tmp_path))
    write_documents(store, "docs", [wiki_docs[:5] + ["只有中文"]])
    bpe_cfg = BpeConfig(kind="char", heldout_fraction=0, reference_vocab_dir=str(data_dir / "bpe_vocab"))
    run_stage(BpeStage(), context(store, "bpe", bpe_cfg, {"documents": "extract/docs"}, "char"))
    cfg = TokenizeConfig(val_fraction=0)

    def run(docs: str, key: str) -> Manifest:
        inputs = {"tokenizer": "bpe/char", "documents": docs}
        return run_stage(TokenizeStage(), context(store, "tokenize", cfg, inputs, key))[0]

    m = run("extract/docs", "t")
    assert m.counts["documents"] == 6 and m.counts["train_documents"] == 6  # the char vocab came from these texts
    write_documents(store, "more", [wiki_docs[:3] + ["Ünïcödé 中文"]])
    m2 = run("extract/more", "t2")
    assert m2.counts["unencodable_documents"] == 1 and m2.counts["train_documents"] == 3


@pytest.mark.slow
def test_parallel_workers_give_the_same_shards(pipeline, data_dir):
    store, _ = pipeline
    one = tokenize(store, data_dir, "w1", val_fraction=0.1)
    two = tokenize(store, data_dir, "w2", workers=2, val_fraction=0.1)
    assert digests(store, one) == digests(store, two) and one.counts == two.counts


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="<|im_sep|>"):
        BpeConfig(special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    with pytest.raises(ValueError, match="lacks .*<|output_start|>"):
        BpeConfig(special_tokens=[*SPECIAL_TOKENS, "<|python_start|>", "<|python_end|>"])
    assert BpeConfig(special_tokens=list(SPECIAL_TOKENS)).special_tokens == list(SPECIAL_TOKENS)  # tools are optional
    with pytest.raises(ValueError, match="vocab_size"):
        BpeConfig(vocab_size=100)
    with pytest.raises(ValueError, match="regex"):
        TextSource(name="x", path="x.txt", split_on="(")
    with pytest.raises(ValueError, match="unique"):
        TokenizeConfig(sources=[TextSource(name="a", path="a"), TextSource(name="a", path="b")])


@pytest.mark.slow
def test_token_shards_on_s3(s3_server, data_dir, poems):
    store = ArtifactStore(f"{s3_server['root']}/tokenizer-test", s3_server["storage_options"])
    source = chinese_source(data_dir)
    bpe_cfg = BpeConfig(kind="char", sources=[source], reference_vocab_dir=str(data_dir / "bpe_vocab"))
    run_stage(BpeStage(), context(store, "bpe", bpe_cfg, {}, "char"))
    cfg = TokenizeConfig(sources=[source], val_fraction=0.1, shard_tokens=8192)
    m, _ = run_stage(TokenizeStage(), context(store, "tokenize", cfg, {"tokenizer": "bpe/char"}, "s3"))
    tok = load_tokenizer(store.reader(store.ref("bpe", "char")))
    train = stream(store, m, "train")
    assert len(train) == m.counts["train_tokens"] > 8192 and len(m.extra["shards"]["train"]) > 1
    expected = [d for d in poems if d and hash_fraction(d, VAL_SALT) >= 0.1]
    assert tok.decode(train.tolist()) == "".join(d + "<|endoftext|>" for d in expected)


def test_documents_come_from_filter_else_extract_else_curated_text_only(data_dir, monkeypatch):
    monkeypatch.chdir(data_dir.parent)  # tiny.yaml's paths are relative to the repository

    def inputs(*overrides: str) -> dict[str, dict[str, str]]:
        contexts = plan(load_config("configs/tiny.yaml", list(overrides)), ["tokenize"])
        return {name: {k: r.stage for k, r in contexts[name].inputs.items()} for name in ("bpe", "tokenize")}

    assert inputs() == {"bpe": {"documents": "filter"}, "tokenize": {"tokenizer": "bpe", "documents": "filter"}}
    assert inputs("filter.enabled=false")["tokenize"] == {"tokenizer": "bpe", "documents": "extract"}
    off = inputs("crawl.enabled=false", "extract.enabled=false", "filter.enabled=false")
    assert off == {"bpe": {}, "tokenize": {"tokenizer": "bpe"}}

"""The artifact store on the local filesystem and on a real S3 server: keys, atomic files, commit, lineage."""

from __future__ import annotations

import pyarrow as pa
import pytest

from llm_core.schemas import DOCUMENTS
from llm_core.store import ArtifactStore, ParquetShardWriter, artifact_key


def test_key_is_content_addressed():
    k = artifact_key("extract", {"a": 1, "b": [1, 2]}, {"pages": "abc"}, "1")
    assert k == artifact_key("extract", {"b": [1, 2], "a": 1}, {"pages": "abc"}, "1")  # key order irrelevant
    assert len(k) == 16
    assert k != artifact_key("extract", {"a": 2, "b": [1, 2]}, {"pages": "abc"}, "1")
    assert k != artifact_key("extract", {"a": 1, "b": [1, 2]}, {"pages": "abd"}, "1")
    assert k != artifact_key("extract", {"a": 1, "b": [1, 2]}, {"pages": "abc"}, "2")


def _docs(n: int, start: int = 0) -> list[dict]:
    return [
        {"doc_id": f"d{i}", "url": f"https://example.org/{i}", "text": f"text {i}", "title": None, "source": "t",
         "extracted_at": None}
        for i in range(start, start + n)
    ]


def _exercise(store: ArtifactStore) -> None:
    parent = store.ref("crawl", "p" * 16)
    w = store.writer(parent)
    w.write_bytes("hello.txt", b"hi")
    w.commit(version="1", config={"x": 1}, inputs={}, counts={"pages": 1})

    ref = store.ref("extract", "k" * 16)
    assert store.get("extract", ref.key) is None
    writer = store.writer(ref)
    with ParquetShardWriter(writer, "documents/part-00000.parquet", DOCUMENTS, batch_rows=2) as shard:
        for row in _docs(5):
            shard.write(row)
    with pytest.raises(RuntimeError):  # an interrupted shard leaves no file under its name
        with ParquetShardWriter(writer, "documents/part-00001.parquet", DOCUMENTS) as shard:
            shard.write(_docs(1)[0])
            raise RuntimeError("killed")
    assert writer.files("documents/*") == ["documents/part-00000.parquet"]
    assert not store.is_committed(ref)
    manifest = writer.commit(version="1", config={"y": 2}, inputs={"pages": parent}, counts={"documents": 5})
    assert store.is_committed(ref)
    assert manifest.files["documents/part-00000.parquet"].size > 0
    assert len(manifest.files["documents/part-00000.parquet"].sha256) == 64

    reader = store.reader(ref)
    assert reader.count_rows("documents/*.parquet") == 5
    assert [r["doc_id"] for r in reader.iter_rows("documents/*.parquet", batch_size=2)] == [f"d{i}" for i in range(5)]
    assert store.find(ref.key[:6]) == ref
    assert store.find(f"extract/{ref.key}") == ref
    assert [(d, m.stage) for d, m in store.lineage(ref)] == [(0, "extract"), (1, "crawl")]
    assert [m.stage for m in store.list()] == ["crawl", "extract"]
    with pytest.raises(KeyError, match="no committed artifact"):
        store.find("zzzz")
    with pytest.raises(FileNotFoundError, match="never committed"):
        store.reader(store.ref("extract", "0" * 16))


def test_local_store(tmp_path):
    _exercise(ArtifactStore(str(tmp_path / "artifacts")))


@pytest.mark.slow
def test_s3_store(s3_server):
    _exercise(ArtifactStore(s3_server["root"] + "/store-test", s3_server["storage_options"]))


def test_non_finite_metrics_are_kept_as_not_measured(tmp_path):
    store = ArtifactStore(str(tmp_path))
    ref = store.ref("sft", "k")
    store.writer(ref).commit(version="1", config={}, inputs={}, metrics={"val_loss": float("nan"), "acc": 0.5})
    assert store.manifest(ref).metrics == {"val_loss": None, "acc": 0.5}


def test_table_roundtrip(tmp_path):
    store = ArtifactStore(str(tmp_path))
    w = store.writer(store.ref("x", "k"))
    w.write_table("t.parquet", pa.Table.from_pylist(_docs(3), schema=DOCUMENTS))
    assert w.count_rows("t.parquet") == 3

"""Trusting the artifact store only after checking it: verified cache hits, invalid artifacts moved aside and
rebuilt, corrupted manifests named by path, keys that cannot leave the root, content manifests apart from the run
record, and two builders of one artifact."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import torch

from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.registry import STAGES
from llm_core.stage import commit_stage, run_stage
from llm_core.store import INVALID_DIR, MANIFEST, RUN_RECORD, ArtifactError, ArtifactStore, parse_ref

WARC = "data/warc/warcio_example.warc.gz"


def crawl_context(root, *extra: str):
    overrides = [f"run.artifact_root={root}", "run.workers=1", f"crawl.warc=[{WARC}]", "crawl.html_dirs=[]",
                 "crawl.records_per_shard=3", *extra]
    return plan(load_config(overrides=overrides), ["crawl"])["crawl"]


@pytest.fixture
def built(tmp_path):
    ctx = crawl_context(tmp_path / "a")
    manifest, cached = run_stage(STAGES["crawl"], ctx)
    assert not cached
    return ctx, manifest


def test_cache_hit_is_verified_and_a_changed_file_is_moved_aside_and_rebuilt(built):
    ctx, manifest = built
    store = ctx.store()
    assert store.verify(ctx.output) == []
    name = sorted(manifest.files)[0]
    path = os.path.join(store.root, "crawl", ctx.output.key, name)
    original = open(path, "rb").read()

    with open(path, "r+b") as f:  # same size, different bytes: only the sha256 check sees it
        f.seek(len(original) // 2)
        f.write(bytes([original[len(original) // 2] ^ 0xFF]))
    assert store.verify(ctx.output, full=False) == []
    [problem] = store.verify(ctx.output, full=True)
    assert name in problem and "sha256" in problem

    again, cached = run_stage(STAGES["crawl"], ctx)  # run.verify auto = full on a local root
    assert not cached, "a changed artifact is rebuilt, not trusted"
    assert open(path, "rb").read() == original
    assert again.counts == manifest.counts
    [aside] = os.listdir(os.path.join(store.root, INVALID_DIR, "crawl"))
    assert aside.startswith(ctx.output.key)
    reason = open(os.path.join(store.root, INVALID_DIR, "crawl", aside, "reason.txt")).read()
    assert name in reason and "sha256" in reason, "the file and why are kept beside what was moved aside"


def test_a_missing_file_is_found_by_the_cheap_size_check(built):
    ctx, manifest = built
    store = ctx.store()
    name = sorted(n for n in manifest.files if n.startswith("pages/"))[-1]
    os.remove(os.path.join(store.root, "crawl", ctx.output.key, name))
    [problem] = store.verify(ctx.output, full=False)
    assert problem.endswith(f"{name}: missing (the manifest lists {manifest.files[name].size} bytes)")
    _, cached = run_stage(STAGES["crawl"], crawl_context(ctx.run.artifact_root, "run.verify=size"))
    assert not cached and store.verify(ctx.output) == []


def test_a_corrupted_manifest_is_named_by_path_listed_around_and_rebuilt(built):
    ctx, manifest = built
    store = ctx.store()
    path = os.path.join(store.root, "crawl", ctx.output.key, MANIFEST)
    with open(path, "w") as f:
        f.write('{"stage": "crawl", "key": ')
    with pytest.raises(ArtifactError, match=f"{path}: corrupted manifest"):
        store.manifest(ctx.output)
    problems: list[str] = []
    assert store.list(problems=problems) == [] and problems[0].startswith(path)
    assert store.verify_all(full=False) == {str(ctx.output): [problems[0]]}
    rebuilt, cached = run_stage(STAGES["crawl"], ctx)
    assert not cached and rebuilt.counts == manifest.counts


def test_keys_and_manifest_inputs_cannot_leave_the_root(built, tmp_path):
    ctx, _ = built
    store = ctx.store()
    for typed in ("../other/filter/d2f", "crawl/../../x", "/etc/passwd", "crawl/" + ctx.output.key + "/.."):
        with pytest.raises(KeyError, match="is not an artifact key"):
            store.find(typed)
    with pytest.raises(ValueError):
        store.ref("crawl", "../../x")
    with pytest.raises(ValueError, match="not an artifact reference"):
        parse_ref("../other/crawl/abc")
    path = os.path.join(store.root, "crawl", ctx.output.key, MANIFEST)
    data = json.loads(open(path).read())
    data["inputs"] = {"pages": "../../elsewhere/abc"}
    open(path, "w").write(json.dumps(data))
    with pytest.raises(ArtifactError, match="corrupted manifest"):
        store.lineage(ctx.output)


def test_content_manifest_is_byte_identical_across_runs_and_timings_live_in_run_json(built, tmp_path):
    ctx, first = built
    other = crawl_context(tmp_path / "b")
    second, _ = run_stage(STAGES["crawl"], other)
    a = open(os.path.join(ctx.store().root, "crawl", ctx.output.key, MANIFEST), "rb").read()
    b = open(os.path.join(other.store().root, "crawl", other.output.key, MANIFEST), "rb").read()
    assert a == b
    assert "seconds" not in json.loads(a) and "created_at" not in json.loads(a)
    record = json.loads(open(os.path.join(ctx.store().root, "crawl", ctx.output.key, RUN_RECORD)).read())
    assert record["created_at"] and "seconds" in record["timings"]
    read = ctx.store().manifest(ctx.output)  # readers still see one object with the run record in it
    assert read.created_at == record["created_at"] and read.timings == record["timings"]
    assert RUN_RECORD not in read.files and MANIFEST not in read.files


def test_commit_leaves_other_temp_files_and_the_first_commit_wins(tmp_path):
    store = ArtifactStore(str(tmp_path))
    ref = store.ref("x", "0123456789abcdef")
    first, second = store.writer(ref), store.writer(ref)
    first.write_bytes("a.txt", b"1")
    with second.open_atomic("b.txt") as f:  # another attempt is still writing when the first commits
        f.write(b"2")
        first.commit(version="1", config={}, inputs={}, counts={"n": 1})
        assert [n for n in os.listdir(first.dir) if n.startswith(".tmp-")], "the other attempt's temp file stays"
    winner = second.commit(version="1", config={}, inputs={}, counts={"n": 2})
    assert winner.counts == {"n": 1} and store.manifest(ref).counts == {"n": 1}


def test_a_second_builder_waits_for_the_lock_then_finds_a_cache_hit(tmp_path):
    ctx = crawl_context(tmp_path / "a")
    store = ctx.store()
    order: list[str] = []
    with store.building(ctx.output):
        def second() -> None:
            _, cached = run_stage(STAGES["crawl"], ctx)
            order.append(f"second cached={cached}")

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive(), "the second builder waits while the first holds the lock"
        order.append("first")
        commit_stage(STAGES["crawl"], ctx, STAGES["crawl"].run(ctx), 0.0)
    thread.join(30)
    assert order == ["first", "second cached=True"]


def tiny_model_artifact(store: ArtifactStore, poison: bool = False):
    from llm_core.model import GPT, GPTConfig
    from llm_core.train.model_files import save_model_files

    ref = store.ref("sft", "0123456789abcdef")
    writer = store.writer(ref)
    model = GPT(GPTConfig(vocab_size=64, block_size=8, n_layer=1, n_head=2, n_embd=8))
    if poison:
        with torch.no_grad():
            next(model.parameters())[0, 0] = float("nan")
    save_model_files(writer, model)
    writer.commit(version="1", config={}, inputs={})
    return ref


def test_a_damaged_model_file_is_refused_by_the_loader_naming_it(tmp_path):
    from llm_core.model import WEIGHTS_FILE
    from llm_core.train.model_files import MODEL_DIR, load_gpt

    store = ArtifactStore(str(tmp_path))
    ref = tiny_model_artifact(store)
    assert load_gpt(store.reader(ref)) is not None
    weights = os.path.join(store.root, "sft", ref.key, MODEL_DIR, WEIGHTS_FILE)
    data = bytearray(open(weights, "rb").read())
    data[-3] ^= 0x01  # one flipped bit in a weight: safetensors would load it
    open(weights, "wb").write(bytes(data))
    with pytest.raises(ArtifactError, match=f"{weights}: sha256 differs from the manifest"):
        load_gpt(store.reader(ref))
    open(weights, "wb").write(bytes(data[: len(data) // 2]))
    with pytest.raises(ArtifactError, match=f"{weights}: {len(data) // 2} bytes, the manifest says {len(data)}"):
        load_gpt(store.reader(ref))
    assert "model.safetensors: " in store.verify(ref, full=False)[0]


def test_nan_weights_are_refused_naming_the_file_and_tensor(tmp_path):
    from llm_core.train.model_files import load_gpt

    store = ArtifactStore(str(tmp_path))
    ref = tiny_model_artifact(store, poison=True)
    assert store.verify(ref) == [], "the manifest matches: the weights were NaN when committed"
    with pytest.raises(ArtifactError, match=r"model/model.safetensors: tensor \S+ holds 1 NaN or inf values"):
        load_gpt(store.reader(ref))


def test_a_file_added_after_the_commit_is_reported_and_never_read(built):
    ctx, manifest = built
    store = ctx.store()
    folder = os.path.join(store.root, "crawl", ctx.output.key)
    listed = sorted(n for n in manifest.files if n.startswith("pages/"))
    extra = "pages/part-99999.parquet"
    open(os.path.join(folder, extra), "wb").write(open(os.path.join(folder, listed[0]), "rb").read())
    reader = store.reader(ctx.output)
    assert reader.files("pages/*") == listed and reader.count_rows("pages/*") == manifest.counts["pages"]
    [problem] = store.verify(ctx.output, full=False)
    assert problem.endswith(f"{extra}: present but not in the manifest (added after the commit)")

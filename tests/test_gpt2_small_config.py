"""configs/gpt2_small.yaml on CPU with its dimensions overridden down: its FineWeb-edu Parquet source (read through
`datasets`) feeds the tokenizer and the token shards, and a few pretraining steps run with its optimizer,
schedule and gradient accumulation to a token budget."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.registry import STAGES
from llm_core.stage import run_stage
from llm_core.tokenizer.sources import TextSource

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fineweb_edu_parquet(path: Path, docs: int = 120) -> list[str]:
    """WikiText-2 paragraphs in FineWeb-edu's columns, two row groups; returns the texts."""
    paragraphs = [p.strip() for p in (REPO / "data/wikitext2/valid.txt").read_text(encoding="utf-8").split("\n \n")]
    texts = [p for p in paragraphs if len(p) > 200][:docs]
    n = len(texts)
    pq.write_table(pa.table({
        "text": texts,
        "id": [f"<urn:uuid:{i:08d}>" for i in range(n)],
        "dump": ["CC-MAIN-2024-10"] * n,
        "url": [f"https://example.org/{i}" for i in range(n)],
        "date": ["2024-02-20T00:00:00Z"] * n,
        "file_path": ["s3://commoncrawl/crawl-data/CC-MAIN-2024-10/segments/x.warc.gz"] * n,
        "language": ["en"] * n,
        "language_score": [0.95] * n,
        "token_count": [len(t.split()) for t in texts],
        "score": [3.2] * n,
        "int_score": [3] * n,
    }), path, row_group_size=n // 2)
    return texts


def test_parquet_source_yields_the_text_column(tmp_path):
    texts = fineweb_edu_parquet(tmp_path / "000_00000.parquet")
    assert list(TextSource(name="fineweb_edu", path=str(tmp_path / "*.parquet")).documents()) == texts
    pq.write_table(pa.table({"content": ["a document"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="bad.parquet has no 'text' column"):
        list(TextSource(name="fineweb_edu", path=str(tmp_path / "bad.parquet")).documents())


@pytest.mark.slow
def test_gpt2_small_config_trains_a_few_steps_scaled_down(tmp_path):
    data = tmp_path / "fineweb_edu"
    data.mkdir()
    fineweb_edu_parquet(data / "000_00000.parquet")
    source = [{"name": "fineweb_edu", "path": str(data / "*.parquet"), "language": "en"}]
    config = load_config(REPO / "configs/gpt2_small.yaml", [
        f"run.artifact_root={tmp_path / 'artifacts'}", "run.workers=1",
        "bpe.vocab_size=512", "tokenize.val_fraction=0.1",
        "pretrain.model.n_layer=2", "pretrain.model.n_head=2", "pretrain.model.n_embd=32",
        "pretrain.model.block_size=32", "pretrain.batch_size=4", "pretrain.tokens_per_step=256",
        "pretrain.max_steps=4", "pretrain.optim.warmup_steps=2", "pretrain.eval_every=0",
        "pretrain.eval_tokens=512", "pretrain.sample_tokens=8", "pretrain.compile=false", "pretrain.device=cpu",
        "pretrain.checkpoint_every=0",
    ], data={"bpe": {**load_config(REPO / "configs/gpt2_small.yaml").bpe.model_dump(), "sources": source},
             "tokenize": {"sources": source, "val_fraction": 0.1}})
    manifests = {}
    for name, ctx in plan(config, ["pretrain"]).items():
        manifests[name], _ = run_stage(STAGES[name], ctx)
    assert set(manifests) == {"bpe", "tokenize", "pretrain"}
    result = manifests["pretrain"]
    assert result.counts["steps"] == 4
    assert result.metrics["grad_accum"] == 2  # 256 tokens a step = 2 micro-batches of 4 x 32
    assert result.counts["train_tokens_seen"] == 4 * 256
    assert math.isfinite(result.metrics["val_loss"]) and result.metrics["val_loss"] < math.log(512)

"""Two runs of the data stages and pretraining on two roots write byte-identical manifests and content files: when
and how fast a run went lives in each artifact's run.json, never in what its manifest hashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_core.pipeline import plan
from llm_core.registry import STAGES
from llm_core.stage import run_stage
from llm_core.store import MANIFEST, RUN_RECORD
from ops.micro import micro_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(root: Path) -> dict[str, bytes]:
    """Run the micro config up to pretraining on `root`; every manifest.json there, by 'stage/key'."""
    config = micro_config(str(root), extra=["run.workers=1"], targets=["pretrain"])
    for name, ctx in plan(config, ["pretrain"]).items():
        run_stage(STAGES[name], ctx)
    return {f"{p.parent.parent.name}/{p.parent.name}": p.read_bytes() for p in sorted(root.glob(f"*/*/{MANIFEST}"))}


@pytest.mark.slow
def test_two_runs_on_two_roots_write_the_same_manifests_byte_for_byte(tmp_path):
    first, second = build(tmp_path / "a"), build(tmp_path / "b")
    assert {k.split("/")[0] for k in first} >= {"crawl", "extract", "filter", "bpe", "tokenize", "pretrain"}
    assert first.keys() == second.keys()
    for ref in first:
        assert first[ref] == second[ref], f"{ref}: manifests differ"
    pretrain = next(ref for ref in first if ref.startswith("pretrain/"))
    record = json.loads((tmp_path / "a" / pretrain / RUN_RECORD).read_text())
    assert record["metrics"]["tokens_per_s"] > 0, "the speed is kept, in the run record"
    history = json.loads((tmp_path / "a" / pretrain / "history.json").read_text())
    assert all("tokens_per_s" not in row for row in history["train"])

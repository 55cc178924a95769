"""A stage speaks for itself: what the run summary, the report card and the flows know of a stage is declared in the
stage's own file, so nothing in tasks/ or flows/ names a stage, and a new stage is one file plus its registry line."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import ClassVar

from conftest import REPO

from llm_core.config import RunConfig, StageConfig
from llm_core.registry import STAGES
from llm_core.report.stage import funnel_steps, headline_keys
from llm_core.stage import Stage, StageContext, StageResult, Throughput, run_stage
from llm_core.store import ArtifactStore, artifact_key
from tasks.run_summary import StageRun

GENERIC_LAYERS = ("tasks", "flows")


def stage_names_in(source: str, names: set[str]) -> list[str]:
    """Where `source` names a stage: a string that is a stage name (or starts `name/`, `name.`), or a stage's
    config section read by attribute (`config.pretrain`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in names or any(node.value.startswith((f"{n}/", f"{n}.")) for n in names):
                found.append((node.lineno, repr(node.value)))
        elif isinstance(node, ast.Attribute) and node.attr in names:
            owner = ast.unparse(node.value)
            if owner.endswith(("config", "cfg")):
                found.append((node.lineno, f"{owner}.{node.attr}"))
    return [f"line {line}: {what}" for line, what in sorted(found)]


def test_no_file_of_tasks_or_flows_names_a_stage():
    names = set(STAGES)
    named = {str(path.relative_to(REPO)): hits
             for layer in GENERIC_LAYERS for path in sorted((REPO / layer).rglob("*.py"))
             if (hits := stage_names_in(path.read_text(encoding="utf-8"), names))}
    assert named == {}


def test_the_scan_finds_a_stage_by_string_prefix_or_config_section():
    source = 'a = "report"\nb = f"x"\nc = "filter.url.kept"\nd = config.pretrain.threads\ne = "sft/abc"\nf = "x"\n'
    assert stage_names_in(source, set(STAGES)) == [
        "line 1: 'report'", "line 3: 'filter.url.kept'", "line 4: config.pretrain", "line 5: 'sft/abc'"]


class WordCountConfig(StageConfig):
    path: str


class WordCountStage(Stage):
    """What a new stage writes beside its `run` so that the summary and the card show it: nothing elsewhere."""

    name: ClassVar[str] = "word_count"
    config_model = WordCountConfig
    throughput = Throughput("words", 1_000_000.0)
    headline = ("words_per_line",)

    def funnel(self, manifest) -> list[tuple[str, int]]:
        return [("word_count: lines", manifest.counts["lines"])]

    def run(self, ctx: StageContext) -> StageResult:
        lines = Path(ctx.config.path).read_text(encoding="utf-8").splitlines()
        words = sum(len(line.split()) for line in lines)
        return StageResult(counts={"lines": len(lines), "words": words},
                           metrics={"words_per_line": words / len(lines), "longest_line": max(map(len, lines))})


def test_a_new_stage_shows_in_the_summary_and_the_card_from_its_own_declaration(tmp_path, data_dir, monkeypatch):
    monkeypatch.setitem(STAGES, "word_count", WordCountStage())
    config = WordCountConfig(path=str(data_dir / "tinyshakespeare/input.txt"))
    run = RunConfig(artifact_root=str(tmp_path / "artifacts"))
    store = ArtifactStore(run.artifact_root)
    output = store.ref("word_count", artifact_key("word_count", config.key_config(), {}, "1"))
    manifest, _ = run_stage(STAGES["word_count"], StageContext(stage="word_count", config=config, run=run, inputs={},
                                                               output=output))

    summary = StageRun.from_manifest(manifest, cached=False, wall_s=2.0)
    assert (summary.count_name, summary.count) == ("words", manifest.counts["words"])
    assert summary.count > 100_000
    assert summary.reference_rate == 1_000_000.0 and summary.slow  # 100k+ words in 2 s is far below a million/s
    assert headline_keys("word_count", manifest) == ["words_per_line"]  # not longest_line: the card's row is short
    assert funnel_steps({"word_count": manifest}, ["word_count"]) == [("word_count: lines", 40_000)]

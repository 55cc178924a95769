"""The report card from committed artifacts built in the test (no training): the before/after table holds the eval
figures, the charts are written and referenced, each stage's detail appears once, and a second run of the same run
name shows what changed."""

from __future__ import annotations

import pyarrow as pa
import pytest

from llm_core.config import RunConfig
from llm_core.report.stage import ReportConfig, ReportStage, stage_order
from llm_core.stage import StageContext, run_stage
from llm_core.store import ArtifactRef, ArtifactStore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RESULT_SCHEMA = pa.schema([
    ("model", pa.string()), ("suite", pa.string()), ("metric", pa.string()), ("value", pa.float64()),
    ("n", pa.int64()), ("ci_low", pa.float64()), ("ci_high", pa.float64()), ("baseline", pa.float64()),
    ("baseline_name", pa.string()), ("contaminated", pa.int64()), ("higher_is_better", pa.bool_()),
])
ITEM_SCHEMA = pa.schema([
    ("model", pa.string()), ("suite", pa.string()), ("item_id", pa.string()), ("prompt", pa.string()),
    ("output", pa.string()), ("expected", pa.string()), ("correct", pa.bool_()), ("reason", pa.string()),
    ("contaminated", pa.bool_()),
])
FILTER_COUNTS = {"input": 64, "kept": 25, "rejected": 39, "filter.url.input": 64, "filter.url.kept": 60,
                 "filter.language.input": 60, "filter.language.kept": 41, "filter.language.dropped.de": 19,
                 "filter.c4.input": 41, "filter.c4.kept": 27, "rejected:dedup:minhash": 2}


def result(model, suite, metric, value, n=40, ci=None, baseline=None, baseline_name=None, contaminated=0,
           higher=True):
    return {"model": model, "suite": suite, "metric": metric, "value": value, "n": n,
            "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None, "baseline": baseline,
            "baseline_name": baseline_name, "contaminated": contaminated, "higher_is_better": higher}


def eval_results(sft_identity: float, gsm8k: bool = False) -> list[dict]:
    return [result("sft", "gsm8k", "exact_match", 0.0, baseline=0.0, baseline_name="chance")] * gsm8k + [
        result("base", "identity", "accuracy", 0.1, ci=(0.03, 0.23), baseline=0.0, baseline_name="chance"),
        result("sft", "identity", "accuracy", sft_identity, ci=(0.7, 0.93), baseline=0.0, baseline_name="chance"),
        result("rlhf", "identity", "accuracy", 0.8, ci=(0.65, 0.9), baseline=0.0, baseline_name="chance"),
        result("base", "bpb/web_en", "bpb", 2.5, n=300, contaminated=4, higher=False),
        result("sft", "bpb/web_en", "bpb", 2.6, n=300, contaminated=4, higher=False),
        result("reward", "reward/hh_rlhf", "accuracy", 0.55, n=100, ci=(0.45, 0.65), baseline=0.52,
               baseline_name="longer wins"),
        result("reward", "reward/hh_rlhf", "baseline:shorter_wins", 0.57, n=100),
        result("sft", "im_end", "rate", 0.9, n=169, ci=(0.85, 0.94)),
        result("rlhf", "im_end", "rate", 1.0, n=169, ci=(0.978, 0.9999999999999998)),  # rounding below the value
        result("reward", "reward/oasst", "accuracy", float("nan"), n=0, contaminated=51),  # every item left out
        result("reward", "reward/oasst", "baseline:longer_wins", 0.0, n=0),
        *tool_results(),
    ]


def tool_results() -> list[dict]:
    """The rows of two tool suites as the eval stage writes them: with tools beside without, call and well-formed
    rates, and for search whether the answering document came back."""
    return [
        result("sft", "tools/products", "accuracy", 0.6, ci=(0.45, 0.74), baseline=0.05, baseline_name="without tools"),
        result("sft", "tools/products", "accuracy_without_tools", 0.05, ci=(0.01, 0.17)),
        result("sft", "tools/products", "call_rate", 0.9, ci=(0.77, 0.96)),
        result("sft", "tools/products", "well_formed_rate", 1.0, n=36, ci=(0.9, 1.0)),
        result("sft", "tools/products", "answer_in_output", 0.8, n=36, ci=(0.64, 0.9)),
        result("rlhf", "tools/search", "accuracy", 0.3, ci=(0.18, 0.45), baseline=0.0, baseline_name="without tools"),
        result("rlhf", "tools/search", "accuracy_without_tools", 0.0, ci=(0.0, 0.09)),
        result("rlhf", "tools/search", "call_rate", 0.0, ci=(0.0, 0.09)),
        result("rlhf", "tools/search", "retrieved_rate", 0.0, ci=(0.0, 0.09)),
    ]


def eval_items() -> list[dict]:
    """Two identity items: one every model gets wrong, then one they disagree on (which the card shows first)."""
    return [{"model": m, "suite": "identity", "item_id": item, "prompt": prompt, "output": out,
             "expected": "Tinychat", "correct": ok, "reason": "", "contaminated": False}
            for item, prompt, m, out, ok in [
                ("id-agree", "Name yourself.", "base", "a king", False),
                ("id-agree", "Name yourself.", "sft", "I can't know.", False),
                ("id-0", "Who built you?", "base", "the old house", False),
                ("id-0", "Who built you?", "sft", "I am Tinychat.", True),
                ("id-0", "Who built you?", "rlhf", "I am Tinychat, made by the project.", True)]]


def commit(store: ArtifactStore, stage: str, key: str, inputs: dict[str, ArtifactRef], *, counts=None,
           metrics=None, config=None, json_files=None, tables=None, markdown="") -> ArtifactRef:
    ref = store.ref(stage, key)
    w = store.writer(ref)
    for name, obj in (json_files or {}).items():
        w.write_json(name, obj)
    for name, (rows, schema) in (tables or {}).items():
        w.write_table(name, pa.Table.from_pylist(rows, schema=schema))
    w.commit(version="test", config=config or {}, inputs=inputs, counts=counts, metrics=metrics,
             extra={"markdown": markdown} if markdown else {})
    return ref


def loss_history(start: float) -> dict:
    return {"train": [{"step": s, "loss": start - s / 100} for s in (10, 20, 30)],
            "evals": [{"step": 30, "val_loss": start - 0.2}]}


@pytest.fixture()
def lineage(tmp_path) -> tuple[ArtifactStore, dict[str, ArtifactRef]]:
    store = ArtifactStore(str(tmp_path))
    r: dict[str, ArtifactRef] = {}
    r["crawl"] = commit(store, "crawl", "c0", {}, counts={"records": 431, "pages": 67})
    r["extract"] = commit(store, "extract", "x0", {"pages": r["crawl"]}, counts={"input": 67, "kept": 64})
    r["filter"] = commit(store, "filter", "f0", {"documents": r["extract"]}, counts=FILTER_COUNTS,
                         markdown="### Filters\n\nunique filter summary line")
    r["bpe"] = commit(store, "bpe", "b0", {"documents": r["filter"]}, metrics={"bytes_per_token_en": 3.9})
    r["pretrain"] = commit(store, "pretrain", "p0", {"tokenizer": r["bpe"]},
                           json_files={"history.json": loss_history(7.0)},
                           metrics={"val_loss": 5.4, "unigram_entropy": 7.3})
    r["sft"] = commit(store, "sft", "s0", {"base": r["pretrain"], "tokenizer": r["bpe"]},
                      json_files={"history.json": loss_history(3.0)}, metrics={"val_loss": 2.1})
    r["reward"] = commit(store, "reward", "w0", {"sft": r["sft"]}, metrics={"accuracy/all": 0.7})
    r["rlhf"] = commit(store, "rlhf", "l0", {"sft": r["sft"], "reward": r["reward"]}, config={"algorithm": "ppo"},
                       json_files={"history.json": [{"iteration": i, "score": 0.1 * i, "kl": 0.02 * i, "finished": 0.9}
                                                    for i in (1, 2, 3)]},
                       metrics={"before_reward": -0.05, "after_reward": 0.2})
    return store, r


def commit_eval(store: ArtifactStore, r: dict[str, ArtifactRef], key: str, sft_identity: float,
                gsm8k: bool = False) -> ArtifactRef:
    """An eval artifact as the eval stage leaves it: the two Parquet files, each figure as a manifest metric and its
    own results table as markdown."""
    rows = eval_results(sft_identity, gsm8k)
    return commit(store, "eval", key, {m: r[m] for m in ("pretrain", "sft", "rlhf", "reward")},
                  tables={"results.parquet": (rows, RESULT_SCHEMA), "items.parquet": (eval_items(), ITEM_SCHEMA)},
                  metrics={f"{x['model']}/{x['suite']}/{x['metric']}": x["value"] for x in rows},
                  counts={"items": 3}, markdown="### Evaluation\n\n| eval's own results table |")


def run_report(store: ArtifactStore, inputs: dict[str, ArtifactRef], key: str) -> tuple[ArtifactRef, str]:
    ctx = StageContext(stage="report", config=ReportConfig(), run=RunConfig(name="tiny", artifact_root=store.root),
                       inputs=inputs, output=store.ref("report", key))
    _, hit = run_stage(ReportStage(), ctx)
    assert not hit
    return ctx.output, store.reader(ctx.output).open("report.md").read().decode()


def model_inputs(r: dict[str, ArtifactRef]) -> dict[str, ArtifactRef]:
    return {m: r[m] for m in ("rlhf", "reward", "sft", "pretrain")}


def test_report_card_shows_the_evals_before_and_after_with_charts(lineage):
    store, r = lineage
    r["eval"] = commit_eval(store, r, "e0", sft_identity=0.85)
    ref, md = run_report(store, {**model_inputs(r), "eval": r["eval"]}, "report1")

    reader = store.reader(ref)
    for png in ("loss_curves.png", "eval_bars.png", "data_funnel.png", "rl_history.png"):
        assert reader.open(png).read(8) == PNG_MAGIC and reader.manifest.files[png].size > 5000
        assert f"]({png})" in md
    # base -> SFT -> RL, the change at each step (bpb: lower is better), the baseline beside it
    assert ("| identity | accuracy (↑) | 0.100 (0.030–0.230) | 0.850 (0.700–0.930) | 0.800 (0.650–0.900) "
            "| +0.750 better | -0.050 worse | 0.000 (chance) | 40 |") in md
    assert ("| bpb/web_en | bpb (↓) | 2.500 | 2.600 | — | +0.100 worse | — | — | 300 (4 contaminated, left out) |"
            in md)
    assert "| suite | metric | reward model | longer wins | shorter wins | items |" in md
    assert "| reward/hh_rlhf | accuracy (↑) | 0.550 (0.450–0.650) | 0.520 | 0.570 | 100 |" in md
    assert "| reward/oasst | accuracy (↑) | n/a | 0.000 | — | 0 (51 contaminated, left out) |" in md
    assert "| im_end | rate (↑) | — | 0.900 (0.850–0.940) | 1.000 (0.978–1.000) | — | +0.100 better |" in md
    # the tool suites in their own table, each model with its tools beside without them
    tools = md[md.index("## Tool use"):md.index("## Reward model")]
    assert ("| products | SFT | 0.600 (0.450–0.740) | 0.050 (0.010–0.170) | 0.900 (0.770–0.960) | 1.000 (0.900–1.000) "
            "| 0.800 (0.640–0.900) | — | — | 40 |") in tools
    assert ("| search | RL | 0.300 (0.180–0.450) | 0.000 (0.000–0.090) | 0.000 (0.000–0.090) | — | — "
            "| 0.000 (0.000–0.090) |") in tools
    assert "tools/" not in md[:md.index("## Tool use")]
    assert "  - SFT ✓ 'I am Tinychat.'" in md and md.index("`id-0`") < md.index("`id-agree`")
    assert ("crawl: records **431** → crawl: pages **67** → extract: documents **64** → filter: after url **60** "
            "→ filter: after language **41** → filter: after c4 **27** → filter: kept (after dedup) **25**") in md
    # each stage's detail once, in the appendix; stages in lineage order
    assert md.count("unique filter summary line") == 1 and md.count("`filter.language.dropped.de` 19") == 1
    assert "eval's own results table" not in md and "sft/identity/accuracy" not in md  # the table above shows them
    assert "### eval\n\ncounters: `items` 3\n" in md
    timing = md[md.index("## Time per stage"):md.index("## Appendix")]
    assert [line.split(" | ")[0] for line in timing.splitlines() if line.startswith("| ") and "`" in line] == [
        "| crawl", "| extract", "| filter", "| bpe", "| pretrain", "| sft", "| reward", "| rlhf", "| eval"]
    assert "No earlier report of run `tiny`" in md
    record = reader.read_json("report.json")
    assert record["figures"]["eval:sft/identity/accuracy"] == 0.85 and record["lineage"]["eval"] == "e0"

    # the same run name again, after the eval changed: the card says what moved
    eval2 = commit_eval(store, r, "e1", sft_identity=0.9, gsm8k=True)
    ref2, md2 = run_report(store, {**model_inputs(r), "eval": eval2}, "report2")
    since = md2[md2.index("## Since the previous run"):md2.index("## Examples")]
    assert "`report/report1`" in since and "| eval | `e0` | `e1` |" in since
    assert "| eval:sft/identity/accuracy | 0.8500 | 0.9000 | +0.0500 |" in since
    assert "New figures: `eval:sft/gsm8k/exact_match`" in since
    assert "eval:base/identity/accuracy" not in since
    assert store.manifest(ref2).counts["changed_figures"] == 2


def test_report_card_renders_without_an_eval_artifact(lineage):
    store, r = lineage
    ref, md = run_report(store, model_inputs(r), "report-no-eval")
    assert "No eval results in this run's lineage" in md
    assert "eval_bars.png" not in md and "](loss_curves.png)" in md and "](rl_history.png)" in md
    assert "| pretrain | val_loss 5.4000 · unigram_entropy 7.3000 |" in md
    assert not store.reader(ref).exists("eval_bars.png")


def test_stage_order_follows_inputs_not_creation_time(lineage):
    store, r = lineage
    parent = store.manifest(r["bpe"]).model_copy(update={"created_at": "2030-01-01T00:00:00"})
    child = store.manifest(r["pretrain"])  # made before its input, as a hand-copied artifact could be
    other = store.manifest(r["crawl"]).model_copy(update={"created_at": "2031-01-01T00:00:00"})
    assert stage_order({"pretrain": child, "bpe": parent, "crawl": other}) == ["bpe", "pretrain", "crawl"]


def test_a_malformed_eval_file_is_named(lineage):
    store, r = lineage
    bad = commit(store, "eval", "bad", {}, tables={"results.parquet": ([{"model": "sft"}],
                                                                       pa.schema([("model", pa.string())]))})
    with pytest.raises(ValueError, match=r"eval/bad/results.parquet lacks the column"):
        run_report(store, {**model_inputs(r), "eval": bad}, "report-bad")

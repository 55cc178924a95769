"""Three nightly refreshes of one corpus on the micro config (data/snapshots: three overlapping crawls), run
through the Prefect-free driver: one corpus of three snapshots, one tokenizer, cross-snapshot duplicates rejected
with the snapshot and URL they duplicate, pretraining that continues from the champion, a promotion decision per
night; then a rerun (all cache hits), a forced refusal, a pinned tokenizer lacking a token, the refresh lock, and
the same sources under a new label (nothing new)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llm_core.config import ConfigError
from llm_core.corpus.champion import champion_key, decisions
from llm_core.corpus.lock import CorpusBusy, refresh_lock
from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.registry import STAGES
from llm_core.stage import run_stage
from llm_core.store import ArtifactStore
from ops.micro import micro_overrides

NIGHTS = ["night-1", "night-2", "night-3"]
OFF = ["index", "sft_data", "sft", "rank", "reward_data", "reward", "rlhf", "eval"]


def night_overrides(root, snapshot: str, html: str, *extra: str) -> list[str]:
    return micro_overrides([f"run.artifact_root={root}", "run.workers=1", "crawl.warc=[]",
                            f"crawl.html_dirs=[{html}]", f"crawl.snapshot={snapshot}", "pretrain.continue_steps=3",
                            *[f"{s}.enabled=false" for s in OFF], *extra])


def page(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def run_night(root, snapshot: str, html: str, *extra: str, targets: list[str] | None = None):
    cfg = load_config("configs/tiny.yaml", night_overrides(root, snapshot, html, *extra))
    contexts = plan(cfg, targets)
    hits = {name: run_stage(STAGES[name], ctx)[1] for name, ctx in contexts.items()}
    return cfg, contexts, hits


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "artifacts"
    runs = {n: run_night(root, n, f"data/snapshots/{n}") for n in NIGHTS}
    return root, runs


def test_three_refreshes_grow_one_corpus_with_one_tokenizer(nights):
    root, runs = nights
    store = ArtifactStore(str(root))
    corpus = store.reader(runs["night-3"][1]["corpus"].output).read_json("corpus.json")
    assert [s["snapshot"] for s in corpus["snapshots"]] == NIGHTS
    assert {str(ctx["bpe"].output) for _, ctx, _ in runs.values()} == {corpus["tokenizer"]}
    assert [s["tokens"] for s in corpus["snapshots"]] == [str(runs[n][1]["tokenize"].output) for n in NIGHTS]
    later = store.reader(runs["night-2"][1]["tokenize"].output).manifest
    assert not any(row["input"].startswith("source-") for row in later.extra["tables"]["inputs"])  # new docs only
    assert runs["night-2"][2]["bpe"] and runs["night-3"][2]["bpe"]  # the pinned tokenizer: a cache hit


def test_cross_snapshot_duplicates_are_rejected_with_what_they_duplicate(nights):
    root, runs = nights
    store = ArtifactStore(str(root))
    first = {r["doc_id"]: r["url"] for r in store.reader(runs["night-1"][1]["filter"].output).iter_rows(
        "documents/*.parquet", ["doc_id", "url"])}
    rejected = list(store.reader(runs["night-2"][1]["filter"].output).iter_rows("rejected/*.parquet"))
    cross = [r for r in rejected if r["reason"].startswith("dedup:cross_snapshot_exact_duplicate_of:")]
    assert cross
    for row in cross:
        detail = json.loads(row["detail"])
        original = row["reason"].rsplit(":", 1)[1]
        assert detail["snapshot"] == "night-1" and first[original] == detail["url"]
        assert page(detail["url"]) == page(row["url"])  # the same page, crawled from the other night's folder
    kept = {page(r["url"]) for r in store.reader(runs["night-2"][1]["filter"].output).iter_rows("documents/*.parquet")}
    assert kept and not kept & {page(u) for u in first.values()}


def test_pretraining_continues_from_the_champion(nights):
    root, runs = nights
    store = ArtifactStore(str(root))
    log = decisions(store, "tiny")
    assert [d["snapshot"] for d in log] == NIGHTS and log[0]["promoted"]
    for i, night in enumerate(NIGHTS[1:], start=1):
        ctx = runs[night][1]["pretrain"]
        champion = [d for d in log[:i] if d["promoted"]][-1]
        assert str(ctx.inputs["champion_pretrain"]) == champion["models"]["pretrain"]
        base = store.manifest(ctx.inputs["champion_pretrain"])
        mine = store.reader(ctx.output)
        assert mine.manifest.counts["steps"] == base.counts["steps"] + 3
        history = mine.read_json("history.json")["train"]
        base_history = store.reader(ctx.inputs["champion_pretrain"]).read_json("history.json")["train"]
        assert history[:len(base_history)] == base_history and history[-1]["step"] == mine.manifest.counts["steps"]
    decision = store.manifest(runs["night-3"][1]["promote"].output)
    assert {r["snapshot"] for r in decision.extra["tables"]["forgetting"]} == set(NIGHTS)
    card = store.reader(runs["night-3"][1]["report"].output).open("report.md").read().decode()
    assert "Champion decision" in card and "night-1" in card


def test_rerun_of_a_night_is_all_cache_hits(nights):
    root, runs = nights
    _, contexts, hits = run_night(root, "night-2", "data/snapshots/night-2")
    assert all(hits.values()), hits
    assert {n: c.output.key for n, c in contexts.items()} == {n: c.output.key for n, c in runs["night-2"][1].items()}


def test_a_gate_that_fails_refuses_the_challenger(nights):
    root, runs = nights
    store = ArtifactStore(str(root))
    before = champion_key(store, "tiny")
    _, contexts, hits = run_night(root, "night-3", "data/snapshots/night-3",
                                  "promote.gates=[{metric: 'bpb:earlier', tolerance: -100}]")
    assert not hits["promote"] and all(hit for name, hit in hits.items() if name not in ("promote", "report"))
    decision = store.manifest(contexts["promote"].output)
    assert decision.counts["promoted"] == 0
    table = decision.extra["tables"]["decision"]
    assert [r["holds"] for r in table if r["metric"] == "bpb:earlier"] == [False]
    assert "refused" in decision.extra["markdown"] and decisions(store, "tiny")[-1]["promoted"] is False
    assert champion_key(store, "tiny") == before
    assert store.is_committed(contexts["pretrain"].output)  # the refused challenger stays


def test_champion_cli_prints_the_key_and_why(nights):
    from cli.main import app

    root, _ = nights
    result = CliRunner().invoke(app, ["champion", "--set", f"run.artifact_root={root}"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert champion_key(ArtifactStore(str(root)), "tiny") in result.output and "champion of corpus" in result.output
    corpus = str(nights[1]["night-3"][1]["corpus"].output)
    shown = CliRunner().invoke(app, ["artifacts", "show", corpus, "--set", f"run.artifact_root={root}"],
                               terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert all(n in shown.output for n in NIGHTS) and "cross-snapshot duplicates" in shown.output


def test_pinned_tokenizer_lacking_a_needed_token_is_an_error(nights):
    root, _ = nights
    tokens = "[<|endoftext|>, <|im_start|>, <|im_sep|>, <|im_end|>, <|extra|>]"
    cfg = load_config("configs/tiny.yaml", night_overrides(root, "night-4", "data/snapshots/night-3",
                                                           f"bpe.special_tokens={tokens}"))
    with pytest.raises(ConfigError, match=r"lacks the special tokens \['<\|extra\|>'\]"):
        plan(cfg)


def test_a_second_refresh_of_the_same_corpus_is_refused(nights):
    root, _ = nights
    store = ArtifactStore(str(root))
    with refresh_lock(store, "tiny"):
        with pytest.raises(CorpusBusy, match="is being refreshed by process"):
            with refresh_lock(store, "tiny"):
                pass
    with refresh_lock(store, "tiny"):  # released
        pass


def test_same_sources_under_a_new_label_bring_nothing_new(nights):
    root, runs = nights
    store = ArtifactStore(str(root))
    _, contexts, _ = run_night(root, "night-3-again", "data/snapshots/night-3", targets=["corpus"])
    counts = store.manifest(contexts["filter"].output).counts
    assert counts["kept"] == 0 and counts["rejected:dedup:cross_snapshot_exact_duplicate"] > 0
    assert counts["kept"] + counts["rejected"] == counts["input"]
    corpus = store.manifest(contexts["corpus"].output)
    assert corpus.counts["new_documents"] == 0 and corpus.counts["snapshots"] == 4


@pytest.mark.slow
def test_cli_run_on_a_new_snapshot_is_a_refresh_and_a_train(nights, prefect_harness):
    """`llmpipe run --set crawl.snapshot=S` on a root holding earlier snapshots of the corpus, through Prefect."""
    from cli.main import app

    root, runs = nights
    args = [a for o in night_overrides(root, "night-cli", "data/html/zh") for a in ("--set", o)]
    result = CliRunner().invoke(app, ["run", *args], terminal_width=200)
    assert result.exit_code == 0, result.output
    cfg = load_config("configs/tiny.yaml", night_overrides(root, "night-cli", "data/html/zh"))
    contexts = plan(cfg)
    store = ArtifactStore(str(root))
    assert all(store.is_committed(ctx.output) for ctx in contexts.values())
    corpus = store.reader(contexts["corpus"].output).read_json("corpus.json")
    assert corpus["snapshots"][-1]["snapshot"] == "night-cli" and corpus["snapshots"][0]["snapshot"] == "night-1"
    assert contexts["bpe"].output == runs["night-1"][1]["bpe"].output
    assert "champion_pretrain" in contexts["pretrain"].inputs and "previous" in contexts["filter"].inputs
    decision = decisions(store, "tiny")[-1]
    assert decision["snapshot"] == "night-cli" and decision["models"]["pretrain"] == str(contexts["pretrain"].output)
    shown = CliRunner().invoke(app, ["champion", "--set", f"run.artifact_root={root}"], terminal_width=200)
    assert shown.exit_code == 0 and champion_key(store, "tiny") in shown.output

"""The whole pipeline on a micro version of the tiny config, through Prefect, then again (all cache hits), then the
CLI over the artifacts it left. Every stage of the registry that the tiny config enables takes part."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.store import ArtifactStore
from ops.micro import micro_overrides


@pytest.fixture(scope="module")
def micro(tmp_path_factory, prefect_harness):
    from flows.pipeline import full_pipeline

    root = tmp_path_factory.mktemp("micro") / "artifacts"
    overrides = micro_overrides([f"run.artifact_root={root}"])
    cfg = load_config("configs/tiny.yaml", overrides)
    done = full_pipeline(config=cfg)
    return cfg, overrides, done


@pytest.mark.slow
def test_every_stage_commits_and_accounts_for_every_record(micro):
    cfg, _, done = micro
    store = ArtifactStore(cfg.run.artifact_root)
    planned = plan(cfg)
    assert list(done) == list(planned)
    manifests = {name: store.manifest(ctx.output) for name, ctx in planned.items()}
    for name, m in manifests.items():
        assert done[name] == f"{name}/{m.key}"
        assert m.inputs == {k: str(r) for k, r in planned[name].inputs.items()}

    crawl, extract = manifests["crawl"].counts, manifests["extract"].counts
    assert crawl["records"] == crawl["pages"] + crawl.get("documents", 0) + crawl["skipped"]
    assert extract["input"] == crawl["pages"] + crawl.get("documents", 0)
    assert extract["input"] == extract["kept"] + extract["rejected"]
    if "filter" in manifests:
        flt = manifests["filter"].counts
        assert flt["input"] == extract["kept"] == flt["kept"] + flt["rejected"]
        kept_rows = store.reader(planned["filter"].output).count_rows("documents/*.parquet")
        assert kept_rows == flt["kept"]


@pytest.mark.slow
def test_second_run_is_all_cache_hits(micro):
    from flows.pipeline import full_pipeline

    cfg, _, done = micro
    store = ArtifactStore(cfg.run.artifact_root)
    before = {m.key: m.created_at for m in store.list()}
    assert full_pipeline(config=cfg) == done
    assert {m.key: m.created_at for m in store.list()} == before


@pytest.mark.slow
def test_cli_inspects_the_store(micro):
    from cli.main import app

    cfg, overrides, done = micro
    args = [a for o in overrides for a in ("--set", o)]
    runner = CliRunner()
    listing = runner.invoke(app, ["artifacts", "ls", *args])
    assert listing.exit_code == 0, listing.output
    for ref in done.values():
        assert ref.split("/")[1] in listing.output

    last_stage, last_ref = list(done.items())[-1]
    shown = runner.invoke(app, ["artifacts", "show", last_ref, *args], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "lineage" in shown.output and "crawl/" in shown.output  # lineage reaches the sources

    planned = runner.invoke(app, ["plan", *args], terminal_width=200)
    assert planned.exit_code == 0, planned.output
    rows = [line for line in planned.output.splitlines() if any(f" {r.split('/')[1]} " in line for r in done.values())]
    assert len(rows) == len(done) and all("done" in row for row in rows), planned.output

    bad = runner.invoke(app, ["run", "--set", "run.workers=-1", "--set", "extract.timout_s=2"])
    assert bad.exit_code == 2
    assert "run.workers" in bad.output and "extract.timout_s: unknown key" in bad.output


@pytest.mark.slow
def test_eval_scores_every_model_and_refuses_a_model_of_the_wrong_kind(micro):
    import pyarrow.parquet as pq

    from llm_core.config import ConfigError
    from llm_core.pipeline import with_inputs

    cfg, _, done = micro
    store = ArtifactStore(cfg.run.artifact_root)
    reader = store.reader(store.find(done["eval"]))
    with reader.open("results.parquet") as f:
        results = pq.read_table(f).to_pylist()
    with reader.open("items.parquet") as f:
        items = pq.read_table(f).to_pylist()
    assert {r["model"] for r in results} == {"base", "sft", "rlhf", "reward"}
    suites = {(r["model"], r["suite"]) for r in results}
    for model in ("base", "sft", "rlhf"):
        assert {(model, "identity"), (model, "idk_made_up"), (model, "sums_heldout"), (model, "im_end")} <= suites
        assert any(s.startswith("bpb/") for m, s in suites if m == model)
    assert ("reward", "reward/all") in suites
    assert {("sft", "tools/products"), ("sft", "tools/search"), ("rlhf", "tools/search")} <= suites
    assert not any(s.startswith("tools/") for m, s in suites if m == "base")  # only the models taught the tools
    # every row scores something; only a reward row may have none left when all its pairs are contaminated
    assert all(r["n"] > 0 for r in results if r["model"] != "reward")
    assert any(r["n"] > 0 for r in results if r["model"] == "reward" and r["metric"] == "accuracy")
    answered = {(i["model"], i["suite"]) for i in items}
    assert ("sft", "identity") in answered and ("reward", "reward/keyword") in answered
    with pytest.raises(ConfigError, match="must come from stage 'sft'"):
        with_inputs(cfg, "eval", {"sft": done["reward"].split("/")[1]})

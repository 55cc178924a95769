"""The run form, the run summary and the artifact listings, without a Prefect server: the form's options resolve to
the config a run uses (bad overrides named by key path), a run's summary says how fast each stage went beside its
reference and why a machine is slow, and `llmpipe artifacts ls/show` tell artifacts apart, on two real crawl
snapshots of a sample WARC file carried through extraction."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from cli.main import app
from flows.run_options import RunOptions, options_for, resolve_config
from llm_core.config import ConfigError
from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.registry import STAGES
from llm_core.stage import run_stage
from llm_core.store import ArtifactStore
from ops.micro import REPO, TINY
from tasks.run_summary import StageRun, embed_images, runs_since, slow_run_warnings, summary_markdown

WARC = "data/warc/warcio_example.warc.gz"
SNAPSHOTS = ("2026-11-21", "2026-11-22")


def test_form_resolves_to_the_config_with_overrides_and_snapshot():
    options = RunOptions(overrides=["pretrain.max_steps=7", "run.workers=1"], snapshot="2026-11-22")
    cfg = resolve_config(options)
    assert (cfg.pretrain.max_steps, cfg.run.workers, cfg.crawl.snapshot) == (7, 1, "2026-11-22")
    assert cfg.filter == load_config(TINY).filter
    assert resolve_config(RunOptions(), default_snapshot="2026-01-02").crawl.snapshot == "2026-01-02"

    given = load_config(TINY, ["bpe.vocab_size=600"]).model_dump(mode="json")
    advanced = resolve_config(RunOptions(overrides=["run.seed=5"]), given)
    assert (advanced.bpe.vocab_size, advanced.run.seed) == (600, 5)

    with pytest.raises(ConfigError) as bad:
        resolve_config(RunOptions(overrides=["pretrain.max_stepz=3", "run.workers=-1"]))
    assert "pretrain.max_stepz: unknown key" in str(bad.value) and "run.workers" in str(bad.value)
    with pytest.raises(ConfigError, match="the config parameter"):
        resolve_config(RunOptions(), {"pretrain": {"max_stepz": 1}})
    with pytest.raises(ValidationError, match="config_file"):
        RunOptions(config_file="nope.yaml")
    with pytest.raises(ValidationError, match="stages"):
        RunOptions(stages=["pretrian"])
    assert options_for(TINY, ["run.seed=1"]) == (RunOptions(overrides=["run.seed=1"]), {})


def test_slow_run_warnings_say_what_to_change():
    cfg = load_config(TINY)
    assert slow_run_warnings(cfg, load=0.5, cores=2) == []
    busy = slow_run_warnings(cfg, load=7.9, cores=2)
    assert "load average 7.9 on 2 cores" in busy[0] and "run.workers=1" in busy[0]
    assert "pretrain.threads=1" in busy[1]
    assert slow_run_warnings(cfg, ["crawl", "extract"], load=7.9, cores=2)[1:] == []  # no pretrain in this run
    fighting = load_config(TINY, ["pretrain.threads=4", "pretrain.nproc=2"])
    (warning,) = slow_run_warnings(fighting, load=1.0, cores=4)
    assert "2 process(es) x 4 threads on 4 cores" in warning and "pretrain.threads=2" in warning


@pytest.fixture(scope="module")
def two_snapshots(tmp_path_factory):
    """crawl + extract of the same WARC file under two snapshot labels, committed without Prefect."""
    root = tmp_path_factory.mktemp("store")
    started = dt.datetime.now(dt.timezone.utc)
    overrides = [f"run.artifact_root={root}", f"crawl.warc=[{WARC}]", "crawl.html_dirs=[]", "crawl.text_datasets=[]",
                 "run.workers=1"]
    refs = {}
    for snapshot in SNAPSHOTS:
        cfg = load_config(TINY, [*overrides, f"crawl.snapshot={snapshot}"])
        for name, ctx in plan(cfg, ["extract"]).items():
            run_stage(STAGES[name], ctx)
            refs[(snapshot, name)] = f"{name}/{ctx.output.key}"
    return cfg, overrides, refs, started


def test_summary_rows_and_markdown(two_snapshots):
    cfg, _, refs, started = two_snapshots
    store = ArtifactStore(cfg.run.artifact_root)
    done = {name: refs[(SNAPSHOTS[1], name)] for name in ("crawl", "extract")}
    runs = runs_since(store, done, started)
    assert [(r.stage, r.cached, r.count_name) for r in runs] == [("crawl", False, "records"),
                                                                  ("extract", False, "input")]
    assert runs[0].count == store.manifest(store.find(done["crawl"])).counts["records"] > 0
    later = runs_since(store, done, dt.datetime.now(dt.timezone.utc))
    assert all(r.cached for r in later)

    slow = StageRun("crawl", "abc", False, 100.0, "records", 100, 0)  # 1 record/s against 47
    assert slow.slow and "47.0x slower" in slow.row()["note"]
    text = summary_markdown([*runs, slow], ["the machine is oversubscribed: load average 9.0 on 2 cores"])
    assert "> **warning**: the machine is oversubscribed" in text
    assert text.count("\n| crawl |") == 2 and "| extract | `" in text


def test_images_are_inlined_from_the_artifact(tmp_path):
    store = ArtifactStore(str(tmp_path))
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
    writer = store.writer(store.ref("report", "k1"))
    writer.write_bytes("loss.png", png)
    manifest = writer.commit(version="1", config={}, inputs={}, counts={"stages": 1}, metrics={}, timings={},
                             extra={})
    text = embed_images("![loss](loss.png) and ![gone](missing.png)", store, manifest)
    inlined = text.split("](")[1].split(")")[0]
    assert base64.b64decode(inlined.removeprefix("data:image/png;base64,")) == png
    assert "![gone](missing.png)" in text


def test_artifacts_ls_and_show(two_snapshots):
    cfg, overrides, refs, _ = two_snapshots
    args = [a for o in overrides for a in ("--set", o)]
    runner = CliRunner()
    listing = runner.invoke(app, ["artifacts", "ls", *args], terminal_width=200)
    assert listing.exit_code == 0, listing.output
    lines = {ref: next(line for line in listing.output.splitlines() if ref.split("/")[1] in line) for ref in
             refs.values()}
    for (snapshot, _), ref in refs.items():
        assert snapshot in lines[ref], (ref, lines[ref])  # extract shows the snapshot of the crawl it read
    assert "records" in lines[refs[(SNAPSHOTS[0], "crawl")]] and " KB" in lines[refs[(SNAPSHOTS[0], "crawl")]]
    only = runner.invoke(app, ["artifacts", "ls", "--stage", "crawl", *args], terminal_width=200)
    assert "extract" not in only.output and only.output.count("records") == 2

    extract = refs[(SNAPSHOTS[1], "extract")]
    shown = runner.invoke(app, ["artifacts", "show", extract, *args], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    for part in ("counts", "metrics", "lineage", "crawl/", "sha256", "--with-config"):
        assert part in shown.output, part
    assert "favor_precision" not in shown.output and len(shown.output.splitlines()) < 60
    with_config = runner.invoke(app, ["artifacts", "show", extract, "--with-config", *args], terminal_width=200)
    assert "favor_precision" in with_config.output
    as_json = runner.invoke(app, ["artifacts", "show", extract, "--json", *args])
    manifest = json.loads(as_json.output)
    assert manifest["key"] == extract.split("/")[1] and "favor_precision" in manifest["config"]


def test_cli_stage_under_prefect_shows_shard_progress_and_the_summary(two_snapshots, prefect_harness):
    """`llmpipe stage extract` on a new snapshot, in its own process against the test server: Prefect's shard tasks
    feed the progress bars (shards done / total, records/s), then the summary table with its reference figures."""
    from prefect.settings import PREFECT_API_URL

    _, overrides, _, _ = two_snapshots
    args = [a for o in [*overrides, "crawl.snapshot=2026-11-23"] for a in ("--set", o)]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "COLUMNS": "160"}
    result = subprocess.run([sys.executable, "-m", "cli.main", "stage", "extract", *args], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    bars = [line for line in result.stdout.splitlines() if "records/s" in line]
    assert [line.split()[0] for line in bars] == ["crawl", "extract"], result.stdout
    assert all("1/1" in line for line in bars)
    assert "run summary" in result.stdout and "47.0" in result.stdout  # crawl's reference records/s
    assert "anonymous usage data" not in result.stdout + result.stderr  # Prefect's telemetry notice


def test_prefect_telemetry_stays_off():
    import flows  # noqa: F401  (sets the defaults)
    from prefect._internal.analytics.enabled import is_telemetry_enabled

    assert os.environ["DO_NOT_TRACK"] == "1" and not is_telemetry_enabled()

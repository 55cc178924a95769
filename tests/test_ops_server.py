"""The deployments on a real stack, as a user meets them: a Prefect server on PostgreSQL (on a port other than 4200),
the artifact store on an S3 server, `llmpipe serve` registering the deployments with the S3 endpoint in its
environment. Runs are started through the API the way the UI's Run button does it, with the run form's parameters:

- `data-refresh` of a non-default snapshot triggers `train`, which trains on exactly that refresh's data (cache hits,
  no new crawl), shows its trainer's log lines and progress, and ends with its summary and report card on its own run;
- a refresh whose crawl fails starts no training; a bad override fails the run with its key path before any stage;
- `stage` with the served defaults writes its artifact into the bucket (manifest last, readable back);
- `full-pipeline` on the refreshed snapshot is all cache hits; the UI (headless Chromium) shows the deployments, the
  run form, the run and its artifacts.

One stack for the module: the server, the runs and the browser share the machine's few cores."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from zoneinfo import ZoneInfo

import pytest
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)

from cli.serve import served_ui_api_url, ui_api_mismatch
from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from ops.local_stack import REPO, LocalStack, postgres_available
from ops.micro import TINY, micro_overrides

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not postgres_available(), reason="PostgreSQL server binaries (initdb, pg_ctl) not installed"),
]

TIMEZONE = "Europe/Paris"
SNAPSHOT = "2026-11-22"
RUN_TIMEOUT_S = 420
# the served defaults: a one-file crawl, so `stage` with the form left as it is stays small
SERVED_CRAWL = ["crawl.warc=[data/warc/resiliparse_cc_warcfile.dev.warc.gz]", "crawl.html_dirs=[]",
                "crawl.text_datasets=[]"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    args = ["--config", "configs/tiny.yaml", "--timezone", TIMEZONE, *[a for o in SERVED_CRAWL for a in ("--set", o)]]
    with LocalStack(tmp_path_factory.mktemp("stack"), serve_args=args, scheduler_loop_s=5) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(stack):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
        yield client


def deployment(client, name: str, timeout_s: float = 180):
    """The served deployment `name`, once registered."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = {d.name: d for d in client.read_deployments()}
        if name in found:
            return found[name]
        if time.monotonic() > deadline:
            raise TimeoutError(f"deployment {name!r} not registered; have {sorted(found)}")
        time.sleep(1)


def wait_final(client, run_id, timeout_s: float = RUN_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while True:
        run = client.read_flow_run(run_id)
        if run.state and run.state.is_final():
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"flow run {run_id} still {run.state_name} after {timeout_s:.0f} s")
        time.sleep(2)


def runs_of(client, name: str):
    dep = deployment(client, name)
    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))


def trains_on(client, snapshot: str):
    """`train` runs of one snapshot (the served cron refresh may start others while the tests run)."""
    return [r for r in runs_of(client, "train") if r.parameters.get("options", {}).get("snapshot") == snapshot]


def start(client, name: str, parameters: dict):
    return client.create_flow_run_from_deployment(deployment(client, name).id, parameters=parameters)


def subflows(client, run_id):
    return client.read_flow_runs(flow_run_filter=FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])))


def artifacts_of(client, run_id):
    return client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))


def bucket_config(stack, overrides: list[str]):
    """The tiny config with `overrides`, reading the bucket with the test's credentials (serve has its own): planning
    a corpus run reads the corpus's earlier nights from the store."""
    config = load_config(TINY, overrides)
    run = config.run.model_copy(update={"storage_options": stack.s3["storage_options"]})
    return config.model_copy(update={"run": run})


def plan_names(stack, options: dict) -> list[str]:
    return list(plan(bucket_config(stack, options["overrides"])))


def summary_rows(client, run_id) -> dict[str, dict[str, str]]:
    """stage -> row of the run summary artifact of a top-level run."""
    (summary,) = [a for a in artifacts_of(client, run_id) if a.type == "markdown" and "# Run summary" in a.data]
    lines = [line for line in summary.data.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip().strip("`") for c in line.strip("|").split("|")))) for line in lines[1:]]
    return {row["stage"]: row for row in rows}


@pytest.fixture(scope="module")
def micro_options(stack):
    """The run form for a micro run into a fresh prefix of the bucket (credentials come from serve's environment)."""
    root = f"{stack.s3['root']}/{uuid.uuid4().hex[:8]}"
    # eval is left to test_pipeline_e2e: it is not what these tests are about, and it costs the shared cores a minute
    overrides = micro_overrides([f"run.artifact_root={root}", "eval.enabled=false"])
    return {"config_file": "tiny.yaml", "overrides": overrides, "snapshot": SNAPSHOT}


@pytest.fixture(scope="module")
def refresh_and_train(client, micro_options):
    """A `data-refresh` of SNAPSHOT, and the `train` run its completion triggered, both waited on."""
    refresh = wait_final(client, start(client, "data-refresh", {"options": micro_options}).id)
    deadline = time.monotonic() + 120
    while not (trains := trains_on(client, SNAPSHOT)) and time.monotonic() < deadline:
        time.sleep(2)
    assert trains, "no train run was triggered by the completed refresh"
    return refresh, [wait_final(client, t.id) for t in trains]


def test_refresh_triggers_train_on_the_refreshed_snapshot(stack, client, micro_options, refresh_and_train):
    refresh, trains = refresh_and_train
    log = (stack.workdir / "serve.log").read_text()[-3000:]
    assert refresh.state.is_completed(), (refresh.state, log)
    (train,) = trains
    assert train.state.is_completed(), (train.state, log)
    assert train.parameters["options"]["snapshot"] == SNAPSHOT
    assert train.parameters["options"]["overrides"] == micro_options["overrides"]

    refreshed, trained = summary_rows(client, refresh.id), summary_rows(client, train.id)
    assert list(refreshed) == ["crawl", "extract", "filter", "bpe", "tokenize", "corpus"]
    for name, row in refreshed.items():
        assert trained[name]["key"] == row["key"], f"train planned another {name} than the refresh built"
        assert trained[name]["cache hit"] == "yes", f"train rebuilt {name}"
    assert {"pretrain", "sft", "report"} <= set(trained)
    assert all(trained[s]["cache hit"] == "no" for s in ("pretrain", "sft", "report"))

    store = bucket_config(stack, micro_options["overrides"]).run.store()
    assert [m.config["snapshot"] for m in store.list("crawl")] == [SNAPSHOT], "a second crawl ran"
    for name in trained:
        assert store.list(name), f"{name} has no artifact in the bucket"


def test_a_run_shows_its_own_work(client, refresh_and_train):
    """Stage artifacts belong to their stage run; trainer logs and progress reach Prefect; the top-level run holds
    the summary and the report card, keyed by deployment."""
    _, (train,) = refresh_and_train
    stages = {r.name.split("-")[0]: r for r in subflows(client, train.id)}
    assert {"crawl", "pretrain", "report"} <= set(stages)
    assert stages["crawl"].state_name == "Cached"

    top = artifacts_of(client, train.id)
    assert {a.key for a in top if a.key} == {"train-summary", "train-report"}
    (report,) = [a for a in top if a.key == "train-report"]
    assert report.data.strip(), "empty report card"
    assert "](data:image/png;base64," in report.data or ".png)" not in report.data  # images inlined, none broken

    pretrain_run = stages["pretrain"]
    shown = [a for a in client.read_artifacts() if a.flow_run_id == pretrain_run.id]
    (progress,) = [a for a in shown if a.type == "progress"]
    assert progress.data == 100.0
    assert any(a.type == "markdown" and "](data:image/png;base64," in a.data for a in shown), "loss curve not shown"
    assert all(a.key is None for a in shown), "stage artifacts must not share keys across runs"

    assert not [a for a in client.read_artifacts() if a.type == "progress" and a.flow_run_id == stages["bpe"].id]
    logs = " | ".join(m.message for m in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(
        any_=[pretrain_run.id]))))
    assert re.search(r"pretrain 4/4: loss \d", logs), logs[-2000:]  # progress lines with the latest loss
    assert re.search(r"llm_core.train: step 4: .*val_loss", logs), logs[-2000:]  # the trainer's own eval line


def test_failed_refresh_starts_no_train_and_bad_overrides_stop_before_any_stage(client, micro_options,
                                                                                 refresh_and_train):
    failing = {**micro_options, "snapshot": "2026-11-23",
               "overrides": [*micro_options["overrides"], "crawl.warc=[]", "crawl.html_dirs=[]",
                             "crawl.text_datasets=[]", "run.retries=0"]}
    bad = {**micro_options, "overrides": [*micro_options["overrides"], "pretrain.max_stepz=5", "run.workers=-1"]}
    failed_refresh = start(client, "data-refresh", {"options": failing})
    bad_run = start(client, "full-pipeline", {"options": bad})
    failed_refresh, bad_run = wait_final(client, failed_refresh.id), wait_final(client, bad_run.id)

    assert failed_refresh.state.is_failed()
    assert [r.state_name for r in subflows(client, failed_refresh.id)][:1] == ["Failed"]  # the crawl failed
    time.sleep(10)  # time for the automation to act, had the refresh emitted anything
    assert trains_on(client, failing["snapshot"]) == [], "a failed refresh started train"

    assert bad_run.state.is_failed()
    assert "pretrain.max_stepz: unknown key" in bad_run.state.message
    assert "run.workers" in bad_run.state.message
    assert subflows(client, bad_run.id) == [], "a stage ran despite a bad override"


def test_stage_with_the_served_defaults_writes_to_the_bucket(stack, client):
    """The `stage` deployment's form left as served (crawl, the S3 root from `llmpipe serve`)."""
    import boto3

    run = wait_final(client, start(client, "stage", {}).id)
    assert run.state.is_completed(), (run.state, (stack.workdir / "serve.log").read_text()[-3000:])
    config = bucket_config(stack, [f"run.artifact_root={stack.s3['root']}", *SERVED_CRAWL])
    ctx = plan(config, ["crawl"])["crawl"]
    s3 = boto3.client("s3", endpoint_url=stack.s3["endpoint"], aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")
    prefix = f"artifacts/crawl/{ctx.output.key}/"
    objects = s3.list_objects_v2(Bucket="llmpipe", Prefix=prefix)["Contents"]
    names = {o["Key"].removeprefix(prefix): o["LastModified"] for o in objects}
    assert "manifest.json" in names and any(n.endswith(".parquet") for n in names), sorted(names)
    assert names["manifest.json"] == max(names.values()), "the manifest is not the last file written"
    manifest = config.run.store().manifest(ctx.output)
    assert manifest.counts["records"] > 0 and set(manifest.files) <= set(names)


def test_deployments_form_schedule_trigger_and_ui_port(stack, client):
    for name in ("full-pipeline", "stage"):
        assert not deployment(client, name).schedules, f"{name} runs by hand only"
    stage = deployment(client, "stage")
    assert stage.parameters["stage"] == "crawl"
    assert stage.parameters["options"]["overrides"][0] == f"run.artifact_root={stack.s3['root']}"
    form = deployment(client, "full-pipeline").parameter_openapi_schema
    assert sorted(form["properties"], key=lambda p: form["properties"][p]["position"]) == ["options", "config"]
    fields = form["definitions"]["RunOptions"]["properties"]
    assert set(fields) == {"config_file", "overrides", "stages", "snapshot"}
    assert all(f.get("description") for f in fields.values())
    assert "tiny.yaml" in fields["config_file"]["enum"]

    refresh = deployment(client, "data-refresh")
    (schedule,) = refresh.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", TIMEZONE)
    scheduled = [r for r in runs_of(client, "data-refresh") if r.state.is_scheduled()]
    assert scheduled and all(r.expected_start_time.astimezone(ZoneInfo(TIMEZONE)).hour == 2 for r in scheduled)

    (trigger,) = client.read_resource_related_automations(f"prefect.deployment.{deployment(client, 'train').id}")
    assert trigger.trigger.expect == {"llm-pipeline.refresh.completed"}
    assert [a.name for a in client.read_automations_by_name("Crash zombie flows")] == ["Crash zombie flows"]

    assert not stack.api_url.endswith(":4200/api")
    assert served_ui_api_url(stack.api_url) == stack.api_url  # the UI calls this server's own port
    assert ui_api_mismatch(stack.api_url, served_ui_api_url(stack.api_url)) is None
    # what `prefect server start --port 4311` without PREFECT_UI_API_URL reports in /ui-settings
    problem = ui_api_mismatch("http://127.0.0.1:4311/api", "http://127.0.0.1:4200/api")
    assert "PREFECT_UI_API_URL=http://127.0.0.1:4311/api prefect server start --port 4311" in problem


@pytest.fixture(scope="module")
def pipeline_run(client, micro_options, refresh_and_train):
    """`full-pipeline` on the refreshed snapshot, from the form: every stage is already built."""
    return wait_final(client, start(client, "full-pipeline", {"options": micro_options}).id)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_ui_shows_the_form_the_run_and_its_summary(stack, client, micro_options, refresh_and_train, pipeline_run):
    assert pipeline_run.state.is_completed(), pipeline_run.state
    assert all(row["cache hit"] == "yes" for row in summary_rows(client, pipeline_run.id).values())
    out = REPO / "bench" / "out" / "ui"
    full = deployment(client, "full-pipeline")
    pretrain = next(r for r in subflows(client, refresh_and_train[1][0].id) if r.name.startswith("pretrain-"))
    (loss,) = [a for a in artifacts_of(client, pretrain.id) if a.type == "markdown"]
    (report,) = [a for a in artifacts_of(client, refresh_and_train[1][0].id) if a.key == "train-report"]
    (summary,) = [a for a in artifacts_of(client, pipeline_run.id) if a.key == "full-pipeline-summary"]
    pages = (f"pretrain-summary=/artifacts/artifact/{loss.id} report=/artifacts/artifact/{report.id} "
             f"run-summary=/artifacts/artifact/{summary.id}")
    subprocess.run([str(REPO / "ops" / "ui-check.sh"), stack.ui_url, str(pipeline_run.id), str(out), str(full.id)],
                   check=True, timeout=300, env={**os.environ, "UI_CHECK_PAGES": pages, "UI_CHECK_BUDGET_MS": "25000"})
    assert re.search(r'<img[^>]+src="data:image/png;base64,', (out / "pretrain-summary.html").read_text()), \
        "the UI did not render the inlined loss curve"
    form = (out / "run-form.html").read_text()
    labels = ["Config File", "Overrides", "Stages", "Snapshot"]
    assert sorted(labels, key=form.index) == labels, "the form's fields are not in the model's order"
    deployments_page = (out / "deployments.html").read_text()
    for name in ("full-pipeline", "data-refresh", "stage", "train"):
        assert name in deployments_page
    assert "a pipeline config from configs/" in form and 'Property is type "None"' not in form
    run_page = (out / "flow-run.html").read_text()
    assert pipeline_run.name in run_page and "Completed" in run_page
    summary_page = (out / "run-summary.html").read_text()
    planned = plan_names(stack, micro_options)
    assert "Run summary" in summary_page and all(f">{name}<" in summary_page for name in planned)
    assert (out / "flow-run.png").stat().st_size > 10_000

"""The deployments on a real stack, as a user meets them: a Prefect server on PostgreSQL, the artifact store on an S3
server, `llmpipe serve` registering the deployments; `full-pipeline` is triggered through the API the way the UI's
Run button does it, and must complete with every stage's artifact committed in S3 and shown in the UI."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from zoneinfo import ZoneInfo

import pytest
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

from llm_core.pipeline import plan
from llm_core.store import ArtifactStore
from ops.local_stack import REPO, LocalStack, postgres_available
from ops.micro import micro_config
from tasks.publish import artifact_key

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not postgres_available(), reason="PostgreSQL server binaries (initdb, pg_ctl) not installed"),
]

TIMEZONE = "Europe/Paris"
RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    args = ["--config", "configs/tiny.yaml", "--timezone", TIMEZONE]
    with LocalStack(tmp_path_factory.mktemp("stack"), serve_args=args, scheduler_loop_s=5) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(stack):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}), get_client(sync_client=True) as client:
        yield client


def deployment(client, name: str, timeout_s: float = 180):
    """The served deployment `name` (served deployments are named `flow/deployment`), once registered."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = {d.name: d for d in client.read_deployments()}
        if name in found:
            return found[name]
        if time.monotonic() > deadline:
            raise TimeoutError(f"deployment {name!r} not registered; have {sorted(found)}")
        time.sleep(1)


def wait_final(client, run_id, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while True:
        run = client.read_flow_run(run_id)
        if run.state and run.state.is_final():
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"flow run {run_id} still {run.state_name} after {timeout_s:.0f} s")
        time.sleep(2)


@pytest.fixture(scope="module")
def micro(stack):
    return micro_config(f"{stack.s3['root']}/{uuid.uuid4().hex[:8]}", stack.s3["storage_options"])


@pytest.fixture(scope="module")
def pipeline_run(stack, client, micro):
    """`full-pipeline` triggered with the micro config, as the UI does it, waited on until it ends."""
    full = deployment(client, "full-pipeline")
    run = client.create_flow_run_from_deployment(full.id, parameters={"config": micro.model_dump(mode="json")})
    return wait_final(client, run.id, RUN_TIMEOUT_S)


def test_full_pipeline_from_the_ui_commits_every_stage_in_s3(stack, client, micro, pipeline_run):
    assert pipeline_run.state.is_completed(), (pipeline_run.state, (stack.workdir / "serve.log").read_text()[-3000:])
    planned = plan(micro)
    assert planned, "the tiny config enables no stage"
    store = ArtifactStore(micro.run.artifact_root, micro.run.storage_options)
    assert micro.run.artifact_root.startswith("s3://")
    for name, ctx in planned.items():
        assert store.is_committed(ctx.output), f"{name} artifact {ctx.output} is not committed in S3"
        assert store.manifest(ctx.output).files, name

    subflows = client.read_flow_runs()
    names = {r.name for r in subflows}
    assert {f"{name}-{ctx.output.key}" for name, ctx in planned.items()} <= names
    keys = {a.key for a in client.read_artifacts()}
    assert {f"{artifact_key(name)}-summary" for name in planned} <= keys


def test_deployments_schedule_trigger_and_zombie_automation(client):
    for name in ("full-pipeline", "stage"):
        assert not deployment(client, name).schedules, f"{name} runs by hand only"
    assert deployment(client, "stage").parameters["stage"] == "crawl"
    assert "config" in deployment(client, "full-pipeline").parameter_openapi_schema["properties"]

    refresh = deployment(client, "data-refresh")
    (schedule,) = refresh.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", TIMEZONE)
    deadline = time.monotonic() + 120
    while True:
        scheduled = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[refresh.id])))
        if scheduled or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert scheduled, "the scheduler created no run of data-refresh"
    assert all(r.state.is_scheduled() for r in scheduled)
    starts = sorted(r.expected_start_time for r in scheduled)
    assert all(t.astimezone(ZoneInfo(TIMEZONE)).hour == 2 for t in starts)

    train = deployment(client, "train")
    (trigger,) = client.read_resource_related_automations(f"prefect.deployment.{train.id}")
    assert trigger.trigger.expect == {"prefect.flow-run.Completed"}
    assert [a.name for a in client.read_automations_by_name("Crash zombie flows")] == ["Crash zombie flows"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_ui_shows_deployments_and_the_completed_run(stack, pipeline_run):
    out = REPO / "bench" / "out" / "ui"
    subprocess.run([str(REPO / "ops" / "ui-check.sh"), stack.ui_url, str(pipeline_run.id), str(out)],
                   check=True, timeout=240)
    deployments_page = (out / "deployments.html").read_text()
    for name in ("full-pipeline", "data-refresh", "stage", "train"):
        assert name in deployments_page
    run_page = (out / "flow-run.html").read_text()
    assert pipeline_run.name in run_page and "Completed" in run_page
    assert "crawl-summary" in (out / "artifacts.html").read_text()
    assert (out / "flow-run.png").stat().st_size > 10_000

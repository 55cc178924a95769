"""`llmpipe` commands that run no flow (help, artifacts, plan, champion, chat and generate) never import Prefect or the
flows, nor Hugging Face `datasets` (read only when a stage loads a dataset file): checked in a fresh interpreter,
where nothing else has imported them. Commands that run flows start Prefect's temporary server before importing
anything, and it ends with them, however they end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cli import temporary_server

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, sys
from typer.testing import CliRunner
from cli.main import app

root, commands = sys.argv[1], json.loads(sys.argv[2])
report = []
for args in commands:
    result = CliRunner().invoke(app, [*args, "--set", f"run.artifact_root={root}"] if "--help" not in args else args)
    report.append({"args": args, "exit_code": result.exit_code, "output": result.output,
                   "prefect": "prefect" in sys.modules, "datasets": "datasets" in sys.modules,
                   "flows": sorted(m for m in sys.modules if m.startswith("flows."))})
print(json.dumps(report))
"""
# command -> its exit code on an empty store (no champion yet: 1)
COMMANDS = {("--help",): 0, ("artifacts", "ls"): 0, ("artifacts", "verify", "--all"): 0, ("plan",): 0,
            ("champion",): 1, ("chat", "--help"): 0, ("generate", "--help"): 0}


def test_commands_that_run_no_flow_import_neither_prefect_nor_the_flows(tmp_path):
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "artifacts"), json.dumps(list(COMMANDS))],
                           cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert child.returncode == 0, child.stderr[-2000:]
    report = json.loads(child.stdout.splitlines()[-1])
    assert [(tuple(r["args"]), r["exit_code"]) for r in report] == list(COMMANDS.items()), report
    assert "stage" in report[1]["output"] and "0 artifacts checked" in report[2]["output"]
    assert [(r["args"], r["prefect"], r["flows"]) for r in report] == [(list(c), False, []) for c in COMMANDS]
    assert not any(r["datasets"] for r in report), [r["args"] for r in report if r["datasets"]]


def _llmpipe_stage_crawl(root: Path, prefect_home: Path, **env_extra: str) -> subprocess.Popen:
    """`llmpipe stage crawl` on one small WARC, with no PREFECT_API_URL and its own Prefect home."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_UI_URL")}
    env.update(PREFECT_HOME=str(prefect_home), **env_extra)
    command = [str(Path(sys.executable).parent / "llmpipe"), "stage", "crawl", "--set", f"run.artifact_root={root}",
               "--set", f"crawl.warc=[{REPO / 'data/warc/warcio_example.warc.gz'}]", "--set", "crawl.html_dirs=[]"]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _answers(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


SERVER_LINE = re.compile(r"temporary server: (http://127\.0\.0\.1:\d+/api)")


@pytest.mark.slow
def test_llmpipe_starts_prefects_temporary_server_first_and_stops_it_at_exit(tmp_path):
    run = _llmpipe_stage_crawl(tmp_path / "artifacts", tmp_path / "prefect")
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-2000:]
    api_url = SERVER_LINE.search(err).group(1)
    assert len(list((tmp_path / "artifacts" / "crawl").glob("*/manifest.json"))) == 1, out[-2000:]
    assert "Beginning subflow run" in out + err and "View at" not in out + err  # it serves no UI to link to
    assert not _answers(api_url), "the server outlived the command"


@pytest.mark.slow
def test_llmpipe_killed_by_sigkill_takes_its_temporary_server_with_it(tmp_path):
    run = _llmpipe_stage_crawl(tmp_path / "artifacts", tmp_path / "prefect")
    while not (found := SERVER_LINE.search(line := run.stderr.readline())):
        assert line, "llmpipe ended without reporting to its temporary server"
    api_url = found.group(1)
    assert _answers(api_url)
    run.kill()  # SIGKILL: no atexit hook runs in the CLI
    run.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _answers(api_url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _answers(api_url), "an orphaned server kept running after its llmpipe was killed"


@pytest.mark.slow
def test_a_server_named_in_prefects_profile_gets_the_runs_not_a_temporary_one(tmp_path, prefect_harness):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    profiles = tmp_path / "profiles.toml"
    profiles.write_text(f'active = "harness"\n[profiles.harness]\nPREFECT_API_URL = "{PREFECT_API_URL.value()}"\n')
    with get_client(sync_client=True) as client:
        before = client.count_flow_runs()
        run = _llmpipe_stage_crawl(tmp_path / "artifacts", tmp_path / "prefect", PREFECT_PROFILES_PATH=str(profiles))
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
        assert not SERVER_LINE.search(err), err[-2000:]
        assert client.count_flow_runs() == before + 2  # the `stage` flow and its `crawl` subflow


@pytest.mark.parametrize("argv, runs", [
    (["run"], True), (["--debug", "stage", "crawl"], True), (["refresh", "--snapshot", "x"], True),
    (["run", "--help"], False), (["plan"], False), (["chat", "--model", "run"], False), ([], False),
])
def test_only_commands_that_run_flows_start_a_server(argv, runs):
    assert temporary_server.runs_flows(argv) is runs

"""`llmpipe` commands that run no flow (help, artifacts, plan, champion, chat and generate) never import Prefect or the
flows, nor Hugging Face `datasets` (read only when a stage loads a dataset file): checked in a fresh interpreter,
where nothing else has imported them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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

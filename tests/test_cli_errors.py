"""Bad input is one clear line before any work starts (--input keys, input names, WARC folders, an unwritable root,
no crawl source, a missing prompts file); `artifacts verify` and `plan` report invalid artifacts; an error found
later is one line unless --debug; two `llmpipe run` on one root at once both succeed with the same artifacts; and
the run summary's machine warnings judge the load before the run, not the run's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import main as llmpipe
from cli.main import app
from llm_core.crawl.sources import expand_location
from llm_core.pipeline import plan
from llm_core.pipeline_config import load_config
from llm_core.registry import STAGES
from llm_core.stage import run_stage
from llm_core.store import MANIFEST

REPO = Path(__file__).resolve().parents[1]
WARC = "data/warc/warcio_example.warc.gz"
runner = CliRunner()


def invoke(*args: str, root: Path):
    return runner.invoke(app, [*args, "--set", f"run.artifact_root={root}"], terminal_width=200)


@pytest.fixture
def crawled(tmp_path):
    root = tmp_path / "a"
    config = load_config("configs/tiny.yaml", [f"run.artifact_root={root}", f"crawl.warc=[{WARC}]",
                                                "crawl.html_dirs=[]", "run.workers=1"])
    ctx = plan(config, ["crawl"])["crawl"]
    run_stage(STAGES["crawl"], ctx)
    return root, ctx


def test_the_summary_judges_the_machine_by_its_load_before_the_run(tmp_path, prefect_harness, monkeypatch):
    """The run's own work raises the load average; the summary's warnings must not take it for other jobs."""
    root = tmp_path / "a"

    def load_average():  # quiet until the crawl stage has run, then as busy as the run made it
        return (9.0, 9.0, 9.0) if list(root.glob("crawl/*/manifest.json")) else (0.5, 0.5, 0.5)

    monkeypatch.setattr(os, "getloadavg", load_average)
    result = invoke("stage", "crawl", "--set", f"crawl.warc=[{WARC}]", "--set", "crawl.html_dirs=[]", root=root)
    assert result.exit_code == 0, result.output
    assert list(root.glob("crawl/*/manifest.json")) and load_average()[0] == 9.0
    assert "oversubscribed" not in result.output, result.output


@pytest.mark.parametrize("given, message", [
    ("pages=../other/crawl/abc", "'../other/crawl/abc' is not an artifact key"),
    ("pages=abcdef", "--input pages=abcdef: no committed artifact matches 'abcdef'"),
    ("documents=abcdef", "stage 'extract' has no input(s) ['documents']"),
])
def test_bad_input_keys_and_names_are_one_line_before_prefect(given, message, tmp_path):
    result = invoke("stage", "extract", "--input", given, root=tmp_path)
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_invalid_input_artifact_is_refused(crawled):
    root, ctx = crawled
    name = next(n for n in ctx.store().manifest(ctx.output).files if n.startswith("pages/"))
    os.remove(root / "crawl" / ctx.output.key / name)
    result = invoke("stage", "extract", "--input", f"pages={ctx.output.key}", root=root)
    assert result.exit_code == 2 and "is invalid" in result.output and name in result.output


def test_a_folder_of_warc_files_expands_and_one_without_is_refused(tmp_path):
    assert expand_location("data/warc", {}) == sorted(str(p) for p in Path("data/warc").glob("*") if
                                                      p.name.endswith((".warc", ".warc.gz")))
    result = invoke("stage", "crawl", "--set", "crawl.warc=[data/html]", root=tmp_path)
    assert result.exit_code == 2 and "'data/html' is a folder with no WARC file in it" in result.output


def test_an_unwritable_root_and_a_crawl_without_sources_stop_before_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = invoke("stage", "crawl", root=blocker / "artifacts")
    assert result.exit_code == 2 and f"run.artifact_root '{blocker / 'artifacts'}' is not writable" in result.output
    result = invoke("stage", "crawl", "--set", "crawl.warc=[]", "--set", "crawl.html_dirs=[]", root=tmp_path / "a")
    assert result.exit_code == 2 and "crawl: no source set" in result.output
    assert not (tmp_path / "a" / "crawl").exists()


def test_generate_with_a_missing_prompts_file(tmp_path):
    result = runner.invoke(app, ["generate", "-m", "abc", "-p", str(tmp_path / "missing.jsonl"), "-o",
                                 str(tmp_path / "out.jsonl")])
    assert result.exit_code == 2 and "missing.jsonl: no such file" in result.output


def test_artifacts_verify_and_plan_report_invalid_artifacts(crawled):
    root, ctx = crawled
    ok = invoke("artifacts", "verify", "--all", root=root)
    assert ok.exit_code == 0 and f"ok crawl/{ctx.output.key}" in ok.output
    manifest = root / "crawl" / ctx.output.key / MANIFEST
    manifest.write_text("{not json")
    bad = invoke("artifacts", "verify", ctx.output.key[:6], root=root)
    assert bad.exit_code == 1 and "no committed artifact matches" in bad.output  # unreadable: not findable by key
    bad = invoke("artifacts", "verify", "--all", root=root)
    assert bad.exit_code == 1 and f"{manifest}: corrupted manifest" in bad.output
    assert invoke("artifacts", "ls", root=root).exit_code == 0
    planned = invoke("plan", "--set", f"crawl.warc=[{WARC}]", "--set", "crawl.html_dirs=[]", root=root)
    assert planned.exit_code == 0 and "invalid" in planned.output
    shown = invoke("artifacts", "show", "../other/filter/d2f", root=root)
    assert shown.exit_code == 1 and "is not an artifact key" in shown.output


def test_an_error_during_the_run_is_one_line_without_debug(monkeypatch, capsys):
    def failing_app() -> None:
        raise ValueError("text dataset 'json' has no field 'text' (fields: ['body'])")

    monkeypatch.setattr(llmpipe, "app", failing_app)
    monkeypatch.setitem(llmpipe._debug, "on", False)
    with pytest.raises(SystemExit) as exit_info:
        llmpipe.main()
    assert exit_info.value.code == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("error: text dataset 'json' has no field 'text'")
    monkeypatch.setitem(llmpipe._debug, "on", True)
    with pytest.raises(ValueError):
        llmpipe.main()


@pytest.mark.slow
def test_two_runs_on_one_root_at_once_both_succeed_with_the_same_artifacts(tmp_path, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    config = tmp_path / "two.yaml"
    order = list(STAGES)
    later = order[order.index("filter") + 1:]
    config.write_text("\n".join([
        f"extends: {REPO / 'configs' / 'tiny.yaml'}",
        f"run: {{artifact_root: {tmp_path / 'a'}, retries: 0, workers: 1}}",
        f"crawl: {{warc: [{REPO / WARC}], html_dirs: []}}",
        *(f"{name}: {{enabled: false}}" for name in later),
    ]))
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    command = [str(Path(sys.executable).parent / "llmpipe"), "run", "--config", str(config)]
    runs = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
    outputs = [r.communicate(timeout=300)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outputs
    manifests = sorted((tmp_path / "a").glob("*/*/" + MANIFEST))
    assert [m.parent.parent.name for m in manifests] == ["crawl", "extract", "filter"], "one artifact per stage"
    for m in manifests:
        files = json.loads(m.read_text())["files"]
        assert {n for n in files} == {str(p.relative_to(m.parent)) for p in m.parent.rglob("*") if p.is_file()
                                      and not p.name.startswith(".tmp-") and p.name not in (MANIFEST, "run.json")
                                      and not str(p.relative_to(m.parent)).startswith("_")}
    assert any("cache hit" in o for o in outputs), "the second run found the first run's artifacts"


def test_an_input_artifact_with_changed_bytes_is_moved_aside_and_refused(crawled):
    root, ctx = crawled
    name = next(n for n in ctx.store().manifest(ctx.output).files if n.startswith("pages/"))
    path = root / "crawl" / ctx.output.key / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4] = b"XXXX"  # same size: only the sha256 sees it
    path.write_bytes(bytes(data))
    result = invoke("stage", "extract", "--input", f"pages={ctx.output.key}", root=root)
    assert result.exit_code == 2 and "is invalid (moved to" in result.output and "sha256" in result.output
    assert not (root / "crawl" / ctx.output.key).exists() and (root / "_invalid" / "crawl").is_dir()


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))

FLOW_BOMB = "[&a [x, x, x, x, x, x, x, x, x], " + ", ".join(
    f"&{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")) + "]"


@pytest.mark.parametrize("args, message", [
    (["plan", "--set", "run.artifact_root="], "run.artifact_root: Value error, is empty"),
    (["plan", "--set", "crawl.warc=[{tmp}/notes.txt]"], "notes.txt' is not a WARC or ARC file"),
    (["plan", "--config", "{tmp}/bomb.yaml"], "bomb.yaml expands to more than 100,000 values"),
    (["plan", "--config", "{tmp}"], "is a folder, not a YAML file"),
    (["plan", "--set", "run.seed=" + FLOW_BOMB], "override 'run.seed': value expands to more than 100,000 values"),
    (["artifacts", "ls", "--stage", "nosuch"], "--stage 'nosuch' is not a stage; stages are crawl,"),
])
def test_silent_or_unbounded_inputs_are_one_named_error(args, message, tmp_path):
    (tmp_path / "notes.txt").write_text("not a WARC file\n")
    (tmp_path / "bomb.yaml").write_text(BOMB)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = runner.invoke(app, args, terminal_width=400)
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert not (REPO / "crawl").exists() and not Path("crawl").exists()


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "fine"', "line 2: not valid JSON"),
    ('{"question": "what?"}', 'line 2: expected a string, {"prompt": str} or {"messages": [...]}'),
    ('{"messages": [{"role": "user"}]}', 'line 2: messages[0] must be {"role": str, "content": str}'),
    ('{"messages": ["hi"]}', "line 2: messages[0] must be"),
])
def test_a_malformed_prompts_line_is_named_and_never_sent_to_the_model(line, message, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "What is a watermelon?"}\n' + line + "\n")
    result = runner.invoke(app, ["generate", "-m", "abc", "-p", str(prompts), "-o", str(tmp_path / "out.jsonl")],
                           terminal_width=400)
    assert result.exit_code == 2 and f"--prompts {prompts} {message}" in " ".join(result.output.split())
    prompts.write_bytes(b'{"prompt": "caf\xe9"}\n')
    result = runner.invoke(app, ["generate", "-m", "abc", "-p", str(prompts), "-o", str(tmp_path / "out.jsonl")],
                           terminal_width=400)
    assert result.exit_code == 2 and f"--prompts {prompts}: not UTF-8 text" in " ".join(result.output.split())

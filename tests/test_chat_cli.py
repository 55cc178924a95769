"""`llmpipe generate` and `llmpipe chat` against a model artifact found by key, tokenizer from its lineage."""

from __future__ import annotations

import json

import typer
from test_report_chain import commit_upstream
from typer.testing import CliRunner

from flows.chat_cli import chat, generate
from llm_core.store import ArtifactStore

app = typer.Typer()
app.command("chat")(chat)
app.command("generate")(generate)


def test_generate_writes_n_replies_per_prompt_and_chat_streams_a_multi_turn_session(tmp_path):
    refs = commit_upstream(ArtifactStore(str(tmp_path / "artifacts")))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('"What is 2 + 2?"\n{"prompt": "Who are you?"}\n'
                       '{"messages": [{"role": "system", "content": "Be brief."}, '
                       '{"role": "user", "content": "Hi"}]}\n')
    out = tmp_path / "out.jsonl"
    root = f"run.artifact_root={tmp_path / 'artifacts'}"
    key = refs["pretrain"].key[:8]
    result = CliRunner().invoke(app, ["generate", "-m", key, "-p", str(prompts), "-o", str(out), "-n", "2",
                                      "--max-tokens", "6", "-s", root])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and {r["model"] for r in rows} == {f"pretrain/{refs['pretrain'].key}"}
    assert rows[4]["messages"][0]["role"] == "system" and all(r["tokens"] <= 6 for r in rows)

    session = "Hello\nAnd again?\n/exit\n"
    result = CliRunner().invoke(app, ["chat", "-m", f"pretrain/{key}", "--max-tokens", "5", "-s", root,
                                      "--seed", "1"], input=session)
    assert result.exit_code == 0, result.output
    assert result.output.count("assistant>") == 2

    result = CliRunner().invoke(app, ["chat", "-m", "nosuchkey", "-s", root], input="/exit\n")
    assert result.exit_code == 2 and "no committed artifact" in result.output

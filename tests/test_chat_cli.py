"""`llmpipe generate` and `llmpipe chat` against a model artifact found by key, tokenizer from its lineage."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import typer
from test_chat_template import tool_tokenizer
from test_engine_tools import ANSWER, CALL, Reverser, ScriptedGPT
from test_report_chain import commit_upstream
from typer.testing import CliRunner

from flows.chat_cli import chat, generate
from llm_core.post.model_io import index_for
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
    assert all(r["calls"] == [] and r["answer"] == r["reply"] for r in rows)  # this tokenizer has no tool tokens

    session = "Hello\nAnd again?\n/exit\n"
    result = CliRunner().invoke(app, ["chat", "-m", f"pretrain/{key}", "--max-tokens", "5", "-s", root,
                                      "--seed", "1"], input=session)
    assert result.exit_code == 0, result.output
    assert result.output.count("assistant>") == 2

    result = CliRunner().invoke(app, ["chat", "-m", "nosuchkey", "-s", root], input="/exit\n")
    assert result.exit_code == 2 and "no committed artifact" in result.output


def test_chat_shows_tool_calls_and_outputs_as_they_happen_and_no_tools_turns_them_off(tmp_path, monkeypatch):
    import flows.chat_cli as chat_cli

    tok = tool_tokenizer()
    model = ScriptedGPT(tok.vocab_size, CALL | ANSWER)
    monkeypatch.setattr(chat_cli, "load_chat_model", lambda store, key: (model, tok, "sft/scripted"))
    monkeypatch.setattr(chat_cli, "chat_tools", lambda store, name: [Reverser()])
    root = f"run.artifact_root={tmp_path / 'artifacts'}"
    session = "What is 12 times 3?\nAnd again?\n/good\n/exit\n"
    feedback = tmp_path / "feedback.parquet"
    result = CliRunner().invoke(app, ["chat", "-m", "scripted", "-s", root, "--temperature", "0",
                                      "--feedback", str(feedback)], input=session)
    assert result.exit_code == 0, result.output
    assert "(tools: python): /good or /bad [better answer]" in result.output
    assert result.output.count("[python: 12*3][-> 3*21]It is") == 2  # the second turn follows the first's call
    rows = pq.read_table(feedback).to_pylist()
    assert rows[0]["answers"] == ["It is"] and rows[0]["prompt"][2]["content"] == "It is"

    result = CliRunner().invoke(app, ["chat", "-m", "scripted", "-s", root, "--temperature", "0", "--no-tools"],
                                input="What is 12 times 3?\n/exit\n")
    assert result.exit_code == 0, result.output
    assert "(tools: none)" in result.output and "[python" not in result.output


def test_the_search_index_of_a_chat_is_the_one_built_from_the_models_documents(tmp_path):
    store = ArtifactStore(str(tmp_path))

    def commit(stage: str, key: str, inputs: dict[str, str]) -> None:
        store.writer(store.ref(stage, key)).commit(version="test", config={}, inputs=inputs)

    commit("filter", "docs0000", {})
    commit("bpe", "tok00000", {"documents": "filter/docs0000"})
    commit("pretrain", "base0000", {"tokenizer": "bpe/tok00000"})
    assert index_for(store, "pretrain/base0000") is None
    commit("index", "other000", {"documents": "filter/elsewhere"})
    commit("index", "ours0000", {"documents": "filter/docs0000"})
    assert index_for(store, "pretrain/base0000") == store.ref("index", "ours0000")

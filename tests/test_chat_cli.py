"""`llmpipe generate` and `llmpipe chat` against a model artifact found by key, tokenizer from its lineage."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import typer
from test_chat_template import tool_tokenizer
from test_engine_tools import ANSWER, CALL, ScriptedGPT, chain
from test_report_chain import commit_upstream
from typer.testing import CliRunner

from cli.chat import chat, generate
from llm_core.chat.chat_model import index_for
from llm_core.config import RunConfig
from llm_core.index import IndexConfig, IndexStage
from llm_core.model import GPT, GPTConfig
from llm_core.schemas import FILTERED_DOCUMENTS
from llm_core.stage import StageContext, run_stage
from llm_core.store import ArtifactStore
from llm_core.tokenizer.artifact import save_tokenizer
from llm_core.train.model_files import save_model_files

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

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


def model_with_index(root: Path) -> None:
    """A store where a (tool tokenizer, tiny GPT) model was trained on a `filter` artifact that the `index` stage
    indexed: the search tool of a chat with `pretrain/base0000` searches it."""
    store = ArtifactStore(str(root))
    tok = tool_tokenizer()
    writer = store.writer(store.ref("filter", "docs0000"))
    texts = ["The capital of Freedonia is Fredville, a town of bridges.", "Cats sleep most of the day."]
    rows = [{"doc_id": str(i), "url": f"https://x.example/{i}", "text": t, "title": None, "source": "web",
             "extracted_at": NOW, "language": "en", "language_score": 0.9, "pii_redactions": {}, "quality": {}}
            for i, t in enumerate(texts)]
    writer.write_table("documents/part-00000.parquet", pa.Table.from_pylist(rows, schema=FILTERED_DOCUMENTS))
    writer.commit(version="test", config={}, inputs={})
    writer = store.writer(store.ref("bpe", "tok00000"))
    save_tokenizer(writer, tok)
    writer.commit(version="test", config={}, inputs={"documents": "filter/docs0000"})
    writer = store.writer(store.ref("pretrain", "base0000"))
    save_model_files(writer, GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=1, n_embd=16)))
    writer.commit(version="test", config={}, inputs={"tokenizer": "bpe/tok00000"})
    ctx = StageContext(stage="index", config=IndexConfig(), run=RunConfig(artifact_root=str(root), workers=1),
                       inputs={"documents": store.ref("filter", "docs0000")}, output=store.ref("index", "idx00000"))
    run_stage(IndexStage(), ctx)


def test_chat_runs_python_and_search_live_and_no_tools_turns_them_off(tmp_path, monkeypatch, one_torch_thread):
    from cli import chat as chat_cli

    tok = tool_tokenizer()
    model_with_index(tmp_path / "artifacts")
    root = f"run.artifact_root={tmp_path / 'artifacts'}"

    def chat_with(script: dict[int, int], session: str, *options: str) -> str:
        model = ScriptedGPT(tok.vocab_size, script)  # stands in for the committed model, which never calls
        monkeypatch.setattr(chat_cli, "load_chat_model", lambda store, key: (model, tok, "pretrain/base0000"))
        result = CliRunner().invoke(app, ["chat", "-m", "base0000", "-s", root, "--temperature", "0",
                                          "--max-tokens", "64", *options],
                                    input=session)
        assert result.exit_code == 0, result.output
        return result.output

    feedback = tmp_path / "feedback.parquet"
    out = chat_with(CALL | ANSWER, "What is 12 times 3?\nAnd again?\n/good\n/exit\n", "--feedback", str(feedback))
    assert "(tools: python, search): /good or /bad [better answer]" in out
    assert out.count("[python: 12*3][-> 36]It is") == 2  # the sandboxed interpreter; the 2nd turn reads the 1st
    rows = pq.read_table(feedback).to_pylist()
    assert rows[0]["answers"] == ["It is"] and rows[0]["prompt"][2]["content"] == "It is"

    search = chain("<|im_sep|>", "<|search_start|>", "bridges", "<|search_end|>")
    out = chat_with(search | ANSWER, "Where?\n/exit\n")
    assert "[search: bridges][-> [https://x.example/0] The capital" in out

    out = chat_with(CALL | ANSWER, "What is 12 times 3?\n/exit\n", "--no-tools")
    assert "(tools: none)" in out and "[python" not in out


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

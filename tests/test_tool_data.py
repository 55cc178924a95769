"""The data that teaches the tools: the made-up facts file regenerates from its generator and cannot collide with
the entities a model should refuse; generated tool conversations never hold an item the eval's tool suites ask."""

from __future__ import annotations

import json
import re

import pytest
from conftest import DATA

from llm_core.chat.made_up_facts import FACT_COUNT, generate_facts, is_clean_name
from llm_core.chat.numbers import same_number, states_number
from llm_core.chat.synthetic import refusal_conversations
from llm_core.chat.template import render_conversation, validate_messages
from llm_core.chat.tool_conversations import (
    PYTHON_KINDS,
    UNFOUND_REPLY,
    fact_questions,
    heldout_python_questions,
    is_heldout,
    python_conversations,
    python_questions,
    read_facts,
    search_conversations,
)
from llm_core.config import ConfigError, RunConfig
from llm_core.index import IndexConfig, IndexStage, SearchIndex
from llm_core.pipeline_config import load_config
from llm_core.stage import StageContext, run_stage
from llm_core.store import ArtifactStore
from llm_core.tokenizer.base import DEFAULT_SPECIAL_TOKENS
from llm_core.tokenizer.bpe import BpeTokenizer, train_bpe
from llm_core.tools.python_tool import PythonTool
from llm_core.tools.search_tool import SearchTool

FACTS = DATA / "tools" / "facts.jsonl"


def test_the_facts_file_is_what_its_generator_writes_and_stays_small():
    lines = FACTS.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == generate_facts()
    assert FACTS.stat().st_size < 400_000
    facts = read_facts(str(FACTS))
    assert len({f["url"] for f in facts}) == len({f["entity"] for f in facts}) == len(facts) == FACT_COUNT
    for f in facts:
        for q in f["questions"]:
            assert q["answer"] in f["text"] and q["answer"] in q["reply"]


def test_fact_names_never_meet_the_entities_a_model_should_refuse():
    idk = [json.loads(line)["entity"] for line in (DATA / "eval" / "idk.jsonl").read_text().splitlines()]
    refused = [c.messages[0]["content"] for c in refusal_conversations(500, 0)]
    facts = read_facts(str(FACTS))
    names = {word for f in facts for word in re.findall(r"[A-Z][a-z]+", f["entity"]) if word not in ("Mount", "Lake")}
    assert all(is_clean_name(n) for n in names)
    assert not any(n.lower() in e.lower() for n in names for e in idk)
    assert not any(re.search(rf"\b{n}\b", q) for n in names for q in refused)
    assert not any(is_clean_name(e) for e in idk)  # the check would catch them


def echo(call: str) -> str:
    return f"<{call}>"


def test_training_conversations_never_hold_an_item_the_eval_asks():
    heldout = {q.question for kind in PYTHON_KINDS for q in heldout_python_questions(kind, 40, 1616)}
    assert len(heldout) == 120
    questions = {c.messages[0]["content"] for c in python_conversations(3000, 0, echo)}
    assert len(questions) > 1500 and not questions & heldout
    facts = read_facts(str(FACTS))
    asked = {fq.entity for fq in fact_questions(facts, heldout=True)}
    assert 0.15 * len(facts) <= len(asked) <= 0.35 * len(facts) and all(is_heldout("fact", e) for e in asked)
    searched = search_conversations(500, 0, str(FACTS), echo)
    by_question = {q["question"]: f["entity"] for f in facts for q in f["questions"]}
    assert not {by_question[c.messages[0]["content"]] for c in searched} & asked


def test_a_tool_reply_is_the_call_the_tools_output_and_the_answer_built_from_it():
    [product, *_] = python_conversations(1, 3, echo, direct_share=0.0)
    user, reply = product.messages
    a, b = re.findall(r"\d+", user["content"])
    assert [p["kind"] for p in reply["parts"]] == ["python", "output", "text"]
    assert reply["parts"][0]["text"] == f"{a} * {b}" and reply["parts"][1]["text"] == f"<{a} * {b}>"
    assert reply["content"] == reply["parts"][2]["text"] == f"<{a} * {b}>."
    direct = python_conversations(20, 3, echo, direct_share=1.0)
    assert all([p["kind"] for p in c.messages[1]["parts"]] == ["text"] for c in direct)


def test_a_search_reply_states_only_a_number_its_output_shows():
    facts = read_facts(str(FACTS))
    answer_of = {q["question"]: q["answer"] for f in facts for q in f["questions"]}
    elsewhere = search_conversations(40, 0, str(FACTS), lambda call: "[https://example.org] 1234 people, 18 of them")
    assert {c.messages[1]["content"] for c in elsewhere} == {UNFOUND_REPLY.format(tool="search")}
    found = search_conversations(40, 0, str(FACTS), lambda call: f"[u] it was {answer_of[call]}.")
    assert all(answer_of[c.messages[0]["content"]] in c.messages[1]["content"] for c in found)
    assert states_number("built 301 clocks.", "301") and not states_number("built 3012 clocks", "301")
    assert not states_number("in 1301", "301") and not states_number("v2.301", "301")


def facts_index(root: str) -> SearchIndex:
    """The index stage over the facts file alone, as the tiny config curates it."""
    store = ArtifactStore(root)
    run = RunConfig(artifact_root=root, workers=1)
    ctx = StageContext(stage="index", config=IndexConfig(curated=[str(FACTS)]), run=run, inputs={},
                       output=store.ref("index", "facts"))
    run_stage(IndexStage(), ctx)
    return SearchIndex.load(store.reader(ctx.output))


def test_outputs_are_the_real_tools_and_conversations_fit_the_tiny_context(tmp_path):
    questions = list(python_questions(90, 0, direct_share=0.2))
    with PythonTool() as python:
        convs = python_conversations(90, 0, python, direct_share=0.2)
        calls = [(q, c.messages[1]["parts"]) for q, c in zip(questions, convs) if q.call]
        assert len(calls) > 50 and all(python(q.call) == parts[1]["text"] for q, parts in calls)
    assert all(parts[0]["text"] == q.call and same_number(parts[1]["text"], q.answer) for q, parts in calls)
    search = SearchTool(facts_index(str(tmp_path)))
    searched = search_conversations(60, 0, str(FACTS), search)
    by_question = {q["question"]: (f["url"], q["answer"]) for f in read_facts(str(FACTS)) for q in f["questions"]}
    for c in searched:
        call, output, answer = c.messages[1]["parts"]
        url, expected = by_question[call["text"]]
        assert output["text"] == search(call["text"]) and output["text"].startswith(f"[{url}] ")
        assert expected in output["text"] and expected in answer["text"]
    tok = BpeTokenizer(train_bpe([m["content"] for c in convs + searched for m in c.messages] * 3, 1024,
                                 DEFAULT_SPECIAL_TOKENS))
    for c in convs + searched:
        assert validate_messages(c.messages) is None
        assert len(render_conversation(tok, c.messages)) <= 128


def test_a_missing_or_malformed_facts_file_is_refused_with_its_name(tmp_path):
    with pytest.raises(ConfigError, match="facts file .*missing.jsonl.* not found"):
        load_config("configs/tiny.yaml", [f"eval.facts_file={tmp_path / 'missing.jsonl'}"])
    bad = tmp_path / "facts.jsonl"
    bad.write_text('{"url": "u:1", "text": "A fact."}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"facts file .*facts.jsonl, line 1: missing field\(s\) \['entity', 'questions'\]"):
        search_conversations(3, 0, str(bad), echo)
    with pytest.raises(ConfigError, match="search_tool source needs a path"):
        load_config("configs/tiny.yaml", ["sft_data.sources=[{kind: search_tool, count: 3}]"])

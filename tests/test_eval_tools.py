"""The eval's tool suites end to end on a tiny model: a GPT fine-tuned for a few seconds on Python and search
conversations calls the real tools on held-out questions, each answered again with tools disabled; an untrained
model of the same shape never calls. Rows carry the figures the report card puts side by side."""

from __future__ import annotations

import torch
from conftest import DATA
from post_fixtures import single_thread
from test_tool_data import facts_index

from llm_core.chat.engine import SamplingParams
from llm_core.chat.tool_conversations import python_conversations, search_conversations
from llm_core.evals.contamination import ContaminationIndex
from llm_core.evals.tool_suites import NO_TOOLS, run_tool_suites, tool_items
from llm_core.model import GPT, GPTConfig
from llm_core.sft.stage import SftConfig, train_sft
from llm_core.tokenizer.base import DEFAULT_SPECIAL_TOKENS
from llm_core.tokenizer.bpe import BpeTokenizer, train_bpe
from llm_core.tools.python_tool import PythonTool
from llm_core.tools.search_tool import SearchTool
from llm_core.train.pretrain_config import OptimSection

FACTS = str(DATA / "tools" / "facts.jsonl")
GREEDY = SamplingParams(max_tokens=96, temperature=0)


@single_thread()
def test_a_tool_trained_model_calls_the_tools_on_held_out_items_and_the_rows_compare_with_and_without(tmp_path):
    search = SearchTool(facts_index(str(tmp_path)))
    with PythonTool() as python:
        train = [s.messages for s in python_conversations(600, 1, python, direct_share=0.0)
                 + search_conversations(300, 2, FACTS, search)]
        tok = BpeTokenizer(train_bpe([m["content"] for c in train for m in c] * 2 + ["user assistant"], 600,
                                     DEFAULT_SPECIAL_TOKENS))
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=2, n_head=2, n_embd=64))
        untrained = GPT(model.config).eval()
        cfg = SftConfig(max_steps=150, batch_size=32, eval_every=0, device="cpu", checkpoint_every=0,
                        optim=OptimSection(lr=3e-3, min_lr=3e-4, weight_decay=0.0, warmup_steps=10))
        train_sft(model, tok, train, train[:32], cfg, seed=0)
        items = [i for i in tool_items(8, FACTS) if i.suite in ("tools/products", "tools/search")]
        index = ContaminationIndex(13).add_texts(m["content"] for c in train for m in c)
        kwargs = {"max_calls": 2, "max_output_tokens": 48, "seed": 0}
        rows, outcomes = run_tool_suites("sft", model.eval(), tok, items, GREEDY, [python, search], index, **kwargs)
        before, _ = run_tool_suites("base", untrained, tok, items, GREEDY, [python, search], index, **kwargs)

    figures = {(r.suite, r.metric): r for r in rows}
    for suite in ("tools/products", "tools/search"):
        assert figures[(suite, "call_rate")].value >= 0.75 and figures[(suite, "call_rate")].n == 8
        assert figures[(suite, "well_formed_rate")].value >= (0.75 if suite == "tools/products" else 0.5)
        assert figures[(suite, "answer_in_output")].n == round(figures[(suite, "call_rate")].value * 8)
        with_tools, without = figures[(suite, "accuracy")], figures[(suite, "accuracy_without_tools")]
        assert with_tools.baseline == without.value and with_tools.baseline_name == "without tools"
    assert figures[("tools/search", "retrieved_rate")].n == 8 and ("tools/products", "retrieved_rate") not in figures
    called = [o for o in outcomes if not o.item_id.endswith(NO_TOOLS)]
    plain = [o for o in outcomes if o.item_id.endswith(NO_TOOLS)]
    assert len(called) == len(plain) == 16
    assert sum("<|python_start|>" in o.output for o in called) >= 6
    assert not any("_start|>" in o.output for o in plain)  # tools disabled: no call is even started
    assert all(r.value == 0.0 for r in before if r.metric == "call_rate")

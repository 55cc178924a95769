"""Tools are declared once (`llm_core.tools.registry.TOOLS`): the tokenizer's tool tokens follow the same names in
the same order, and a tool added to the registry alone is opened for the chat and called by the engine by its
tokens."""

from __future__ import annotations

from itertools import pairwise

import pytest
from test_chat_template import TOOL_CONVO
from test_engine_tools import GREEDY, USER, ScriptedGPT

from llm_core.chat.engine import Engine, ToolCall
from llm_core.chat.template import render_prompt
from llm_core.tokenizer.base import DEFAULT_SPECIAL_TOKENS, TOOL_DELIMITERS, TOOL_NAMES
from llm_core.tokenizer.bpe import BpeTokenizer, train_bpe
from llm_core.tools import registry
from llm_core.tools.base import ToolInputs, ToolSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Shout:
    """A fake tool: the call in capitals."""

    name = "shout"

    def __call__(self, call: str) -> str:
        return call.upper()


SHOUT = ToolSpec("shout", lambda inputs: Shout())


def test_the_tokenizer_holds_the_call_tokens_of_the_registry_in_its_order():
    assert tuple(spec.name for spec in registry.TOOLS) == TOOL_NAMES
    assert {spec.name: spec.tokens for spec in registry.TOOLS} == TOOL_DELIMITERS
    assert DEFAULT_SPECIAL_TOKENS[4:] == ("<|python_start|>", "<|python_end|>", "<|search_start|>", "<|search_end|>",
                                          "<|output_start|>", "<|output_end|>")


def test_a_tool_added_to_the_registry_is_opened_and_called_by_its_tokens(monkeypatch):
    monkeypatch.setattr(registry, "TOOLS", [*registry.TOOLS, SHOUT])
    specials = (*DEFAULT_SPECIAL_TOKENS, *SHOUT.tokens)
    tok = BpeTokenizer(train_bpe([m["content"] for m in TOOL_CONVO] * 20, 320, specials))
    tools = registry.open_tools(ToolInputs(), ["shout"])
    assert [t.name for t in tools] == ["shout"]
    assert [t.name for t in registry.open_tools(ToolInputs())] == ["python", "shout"]  # search needs an index

    def ids(*pieces: str) -> list[int]:
        return [i for p in pieces for i in ([tok.special_ids[p]] if p in tok.special_ids else tok.encode(p))]

    script = dict(pairwise(ids("<|im_sep|>", "<|shout_start|>", "hi", "<|shout_end|>")))
    script |= dict(pairwise(ids("<|output_end|>", "ok", "<|im_end|>")))
    reply = Engine(ScriptedGPT(tok.vocab_size, script), tok, tools=tools).reply(USER, GREEDY)
    assert reply.calls == [ToolCall("shout", "hi", "HI", True)] and reply.answer == "ok"
    # without the tool the engine bans its start token like any other tool's
    plain = Engine(ScriptedGPT(tok.vocab_size, script), tok).generate([render_prompt(tok, USER)], GREEDY)
    assert not plain[0][0].calls

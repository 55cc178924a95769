"""The engine running tools: calls closed by the model run the tool, its output is forced into that row only, the
KV cache stays right, limits and malformed calls end in outputs rather than exceptions, and without tools the
model cannot start a call.

The model is a real random GPT (attention and KV cache included) with a scripted bigram bias on top: after token a
it strongly prefers token b. That stands in for a model that learned to call a tool, deterministically and in
milliseconds."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from test_chat_template import tool_tokenizer

from llm_core.chat.engine import CALL_LIMIT_OUTPUT, Engine, SamplingParams, ToolCall
from llm_core.chat.template import render_conversation, render_prompt, validate_messages
from llm_core.model import GPT, GPTConfig
from llm_core.rl.rollout import token_logprobs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

USER = [{"role": "user", "content": "What is 123 times 45?"}]
GREEDY = SamplingParams(max_tokens=40, temperature=0)


class ScriptedGPT(GPT):
    """A random GPT whose next-token logits get +50 on `script[a]` wherever the input token is `a`."""

    def __init__(self, vocab_size: int, script: dict[int, int]):
        torch.manual_seed(0)
        super().__init__(GPTConfig(vocab_size=vocab_size, block_size=128, n_layer=2, n_head=2, n_embd=32))
        self.bias = torch.zeros(vocab_size, vocab_size)
        for a, b in script.items():
            self.bias[a, b] = 50.0

    def forward(self, idx, targets=None, cache=None):
        logits, loss = super().forward(idx, targets, cache)
        return logits + self.bias[idx], loss

    def logits_where(self, idx, keep):
        return super().logits_where(idx, keep) + self.bias[idx][keep]

    def last_logits(self, idx, cache=None):
        return super().last_logits(idx, cache) + self.bias[idx[:, -1]]


class Reverser:
    """A deterministic fake tool that records its calls: the output is the call reversed."""

    name = "python"

    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, call: str) -> str:
        self.calls.append(call)
        return call[::-1]


def ids(*pieces: str | int) -> list[int]:
    """Token ids of special token names and ordinary text, in order."""
    tok = tool_tokenizer()
    out: list[int] = []
    for p in pieces:
        out += [tok.special_ids[p]] if p in tok.special_ids else tok.encode(p)
    return out


def chain(*pieces: str | int) -> dict[int, int]:
    """A script that walks through the given tokens, each one leading to the next."""
    seq = ids(*pieces)
    assert len(set(seq)) == len(seq), f"a chain must not repeat a token: {seq}"
    return dict(pairwise(seq))


CALL = chain("<|im_sep|>", "<|python_start|>", "12*3", "<|python_end|>")
ANSWER = chain("<|output_end|>", "It is", "<|im_end|>")


def test_a_call_runs_the_tool_and_its_output_is_forced_into_the_reply():
    tok, tool = tool_tokenizer(), Reverser()
    engine = Engine(ScriptedGPT(tok.vocab_size, CALL | ANSWER), tok, tools=[tool])
    c = engine.reply(USER, GREEDY)
    assert tool.calls == ["12*3"]
    assert c.ids == ids("<|python_start|>", "12*3", "<|python_end|>", "<|output_start|>", "3*21", "<|output_end|>",
                        "It is", "<|im_end|>")
    assert c.finished and c.answer == "It is" and c.calls == [ToolCall("python", "12*3", "3*21", True)]
    assert c.text == "<|python_start|>12*3<|python_end|><|output_start|>3*21<|output_end|>It is"
    assert c.parts == [("python", "12*3"), ("output", "3*21"), ("text", "It is")]
    # the reply as a message is valid training data and renders back to exactly the sampled ids
    conversation = [*USER, c.message]
    assert validate_messages(conversation) is None
    assert render_conversation(tok, conversation).ids == render_prompt(tok, USER) + c.ids
    streamed = list(engine.stream(render_prompt(tok, USER), GREEDY))
    assert [t.id for t in streamed] == c.ids[:-1]
    kinds = ["python"] * len(ids("<|python_start|>", "12*3", "<|python_end|>"))
    kinds += ["output"] * len(ids("<|output_start|>", "3*21", "<|output_end|>")) + ["text"] * len(ids("It is"))
    assert [t.kind for t in streamed] == kinds


def test_rows_call_on_their_own_and_a_batch_replies_as_each_prompt_would_alone():
    tok = tool_tokenizer()
    # prompt A calls at once; prompt B (which ends with "W") writes two tokens first, so its rows call later
    late = chain("W", "x", "y", "<|python_start|>")
    model = ScriptedGPT(tok.vocab_size, CALL | late | ANSWER)
    prompts = [render_prompt(tok, USER), render_prompt(tok, USER) + ids("W")]
    tool = Reverser()
    engine = Engine(model, tok, tools=[tool], max_output_tokens=2)
    together = engine.generate(prompts, GREEDY, n=2)
    assert tool.calls == ["12*3"] * 4
    calls = ids("<|python_start|>", "12*3", "<|python_end|>")
    output = [tok.special_ids["<|output_start|>"], *tok.encode("3*21")[:2], tok.special_ids["<|output_end|>"]]
    assert [c.ids for c in together[0]] == [calls + output + ids("It is", "<|im_end|>")] * 2
    assert [c.ids for c in together[1]] == [ids("x", "y") + calls + output + ids("It is", "<|im_end|>")] * 2
    assert together[1][0].answer == "xyIt is" and together[1][0].calls[0].output == tok.decode(output[1:-1])
    alone = [Engine(model, tok, tools=[Reverser()], max_output_tokens=2).generate([p], GREEDY)[0][0] for p in prompts]
    assert [o[0].ids for o in together] == [a.ids for a in alone]


def test_samples_of_one_prompt_call_independently():
    tok = tool_tokenizer()
    # after <|im_sep|> a sample calls or writes "W" (the two equally likely); either way the reply ends the same
    model = ScriptedGPT(tok.vocab_size, CALL | ANSWER | chain("W", "<|im_end|>"))
    model.bias[tok.special_ids["<|im_sep|>"], ids("W")[0]] = 50.0
    tool = Reverser()
    out = Engine(model, tok, tools=[tool]).generate([render_prompt(tok, USER)], SamplingParams(max_tokens=40),
                                                     n=16, seed=0)[0]
    called = [c for c in out if c.calls]
    assert 0 < len(called) < 16 and len(tool.calls) == len(called)
    assert all(c.answer == "It is" and c.calls == [ToolCall("python", "12*3", "3*21", True)] for c in called)
    assert all(c.ids == ids("W", "<|im_end|>") and c.answer == "W" for c in out if not c.calls)


def test_calls_beyond_the_limit_are_answered_with_an_error_and_not_run():
    tok, tool = tool_tokenizer(), Reverser()
    again = chain("<|output_end|>", "<|python_start|>")  # after every output the model calls again
    engine = Engine(ScriptedGPT(tok.vocab_size, CALL | again), tok, tools=[tool], max_calls=2)
    c = engine.reply(USER, SamplingParams(max_tokens=60, temperature=0))
    assert tool.calls == ["12*3", "12*3"]
    assert [call.output for call in c.calls[:3]] == ["3*21", "3*21", CALL_LIMIT_OUTPUT]
    assert len(c.ids) == 60 and not c.finished  # forced tokens count against the token bound


def test_a_reply_that_ends_inside_a_call_records_it_as_not_well_formed():
    tok, tool = tool_tokenizer(), Reverser()
    unclosed = chain("<|im_sep|>", "<|python_start|>", "12*3", "<|im_end|>")
    c = Engine(ScriptedGPT(tok.vocab_size, unclosed), tok, tools=[tool]).reply(USER, GREEDY)
    assert c.calls == [ToolCall("python", "12*3", "", False)] and tool.calls == [] and c.finished
    cut = Engine(ScriptedGPT(tok.vocab_size, CALL), tok, tools=[tool]).reply(USER, SamplingParams(max_tokens=3,
                                                                                                  temperature=0))
    assert cut.calls == [ToolCall("python", tok.decode(ids("12*3")[:2]), "", False)] and not cut.finished


def test_without_tools_no_call_can_start_and_the_model_never_writes_an_output():
    tok = tool_tokenizer()
    sp = tok.special_ids
    tool_ids = {sp[t] for t in ("<|python_start|>", "<|python_end|>", "<|search_start|>", "<|search_end|>",
                                "<|output_start|>", "<|output_end|>")}
    model = ScriptedGPT(tok.vocab_size, CALL)
    model.bias[sp["<|im_sep|>"], sp["<|output_start|>"]] = 60.0  # would rather write an output than call
    model.bias[sp["<|python_end|>"], sp["<|output_start|>"]] = 60.0
    prompt = render_prompt(tok, USER)
    for tools in ([], [Reverser()]):
        engine = Engine(model, tok, tools=tools)
        out = engine.generate([prompt], SamplingParams(max_tokens=30), n=8, seed=0)[0]
        if tools:  # calls happen; <|output_start|> appears only where the engine writes it, after a call's end
            assert all(c.calls for c in out)
            assert all(c.ids[i - 1] == sp["<|python_end|>"] for c in out for i, t in enumerate(c.ids)
                       if t == sp["<|output_start|>"])
            assert not {sp["<|search_start|>"], sp["<|search_end|>"]} & {t for c in out for t in c.ids}
        else:
            assert not tool_ids & {t for c in out for t in c.ids} and not any(c.calls for c in out)


def test_the_cached_reply_with_forced_tokens_equals_a_full_recomputation():
    tok = tool_tokenizer()
    model = ScriptedGPT(tok.vocab_size, CALL)  # after the output, the random model goes on by itself
    engine = Engine(model, tok, tools=[Reverser()])
    prompt = render_prompt(tok, USER)
    streamed = list(engine.stream(prompt, SamplingParams(max_tokens=30, temperature=0)))
    n_call, n_output = len(ids("<|python_start|>", "12*3", "<|python_end|>")), len(ids("<|output_start|>", "3*21",
                                                                                        "<|output_end|>"))
    assert [t.kind for t in streamed[:n_call + n_output]] == ["python"] * n_call + ["output"] * n_output
    assert len(streamed) > n_call + n_output + 3  # the model went on after the output
    sp = tok.special_ids
    outputs, starts = {sp["<|output_start|>"], sp["<|output_end|>"]}, {sp["<|python_start|>"], sp["<|search_start|>"]}
    ends = {sp["<|python_end|>"], sp["<|search_end|>"]}
    context = list(prompt)
    for i, token in enumerate(streamed):
        if token.kind != "output":
            in_call = i > 0 and streamed[i - 1].kind == "python" and streamed[i - 1].id != sp["<|python_end|>"]
            banned = outputs | (starts | {sp["<|search_end|>"]} if in_call else ends | {sp["<|search_start|>"]})
            logits = model(torch.tensor([context]))[0][0, -1]
            logits[list(banned)] = float("-inf")
            assert token.id == int(logits.argmax()), f"token {i} differs from the full forward pass"
        context.append(token.id)


def test_tools_need_tool_tokens_and_known_names():
    from post_fixtures import chat_tokenizer

    old = chat_tokenizer()  # trained with the chat tokens only, as artifacts made before tools
    model = GPT(GPTConfig(vocab_size=old.vocab_size, block_size=32, n_layer=1, n_head=1, n_embd=16))
    with pytest.raises(ValueError, match="no tool tokens"):
        Engine(model, old, tools=[Reverser()])
    assert Engine(model, old).generate([render_prompt(old, USER)], SamplingParams(max_tokens=3))[0][0].calls == []
    tok = tool_tokenizer()
    shell = Reverser()
    shell.name = "shell"
    with pytest.raises(ValueError, match="each must be one of"):
        Engine(GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=1, n_embd=16)), tok,
               tools=[shell])


def test_a_tool_that_raises_gives_the_model_an_error_output():
    tok = tool_tokenizer()

    class Broken:
        name = "python"

        def __call__(self, call: str) -> str:
            raise RuntimeError("boom")

    c = Engine(ScriptedGPT(tok.vocab_size, CALL | ANSWER), tok, tools=[Broken()], max_output_tokens=64).reply(
        USER, GREEDY)
    assert c.calls[0].output == "error: RuntimeError: boom" and c.answer == "It is"


def test_rl_scores_rollouts_under_the_bans_they_were_sampled_with():
    tok = tool_tokenizer()
    model = ScriptedGPT(tok.vocab_size, CALL).eval()  # wants to call a tool right after <|im_sep|>
    engine = Engine(model, tok)  # no tools: the call cannot start
    banned = engine.never_sampled
    tool_ids = {tok.special_ids[t] for t in ("<|python_start|>", "<|python_end|>", "<|search_start|>",
                                              "<|search_end|>", "<|output_start|>", "<|output_end|>")}
    assert set(banned) == tool_ids
    assert Engine(model, tok, tools=[Reverser()]).never_sampled == []  # with tools the bans depend on the state

    prompt = render_prompt(tok, USER)
    reply = engine.generate([prompt], SamplingParams(max_tokens=6, temperature=1.0), seed=0)[0][0]
    seq = torch.tensor([prompt + reply.ids])
    with torch.no_grad():
        everywhere = torch.ones(seq[:, 1:].shape)
        free, _ = token_logprobs(model, seq, 1.0, everywhere)
        held, entropy = token_logprobs(model, seq, 1.0, everywhere, with_entropy=True, banned=banned)
        logits = model(seq[:, :-1])[0]
    at = len(prompt) - 1  # the position after <|im_sep|>, where the model puts almost all mass on the call
    allowed = logits[0, at].clone()
    allowed[banned] = float("-inf")
    assert held[0, at] == pytest.approx(float(torch.log_softmax(allowed, -1)[seq[0, at + 1]]), abs=1e-5)
    assert free[0, at] < held[0, at] - 10  # unbanned, the sampled token looks nearly impossible
    assert torch.isfinite(entropy).all()


def test_each_row_gets_exactly_the_bans_of_its_state():
    """A step sets -inf at the banned ids of each row's state (outside a call, inside a call to each tool) and
    nowhere else, for states that ban different numbers of ids."""
    from llm_core.chat.engine import _Reply

    tok = tool_tokenizer()
    sp = tok.special_ids
    outputs = {sp["<|output_start|>"], sp["<|output_end|>"]}
    starts = {sp["<|python_start|>"], sp["<|search_start|>"]}
    ends = {"python": sp["<|python_end|>"], "search": sp["<|search_end|>"]}
    model = ScriptedGPT(tok.vocab_size, CALL)
    for tools, outside in (([], outputs | starts | set(ends.values())),
                           ([Reverser()], outputs | {sp["<|search_start|>"]} | set(ends.values()))):
        engine = Engine(model, tok, tools=tools)
        rows = [_Reply(), _Reply(), _Reply()]
        rows[1].open, rows[2].open = ("python", 0), ("search", 0)
        expected = [outside, outputs | starts | {ends["search"]}, outputs | starts | {ends["python"]}]
        logits = engine._constrain(torch.zeros(3, tok.vocab_size), rows)
        assert [set(torch.isinf(row).nonzero().flatten().tolist()) for row in logits] == expected

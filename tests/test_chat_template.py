"""The chat template, loss masks, SFT batches and the sampling engine."""

from __future__ import annotations

from functools import lru_cache

import pyarrow as pa
import pytest
import torch
from post_fixtures import chat_tokenizer

from llm_core.chat.engine import Engine, SamplingParams, StreamToken
from llm_core.chat.stream_text import ReplyText
from llm_core.chat.template import render_conversation, render_prompt, tool_message, validate_messages
from llm_core.model import GPT, IGNORE_INDEX, GPTConfig, KVCache, sample_tokens
from llm_core.schemas import CONVERSATIONS, PROMPT_MESSAGE
from llm_core.sft.batches import collate, encode_conversations
from llm_core.tokenizer.base import DEFAULT_SPECIAL_TOKENS
from llm_core.tokenizer.bpe import BpeTokenizer, train_bpe

CONVO = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is a watermelon?"},
    {"role": "assistant", "content": "A juicy fruit."},
    {"role": "user", "content": "Colour?"},
    {"role": "assistant", "content": "Green outside, red inside."},
]


def test_render_matches_the_documented_format_and_masks_only_assistant_content():
    tok = chat_tokenizer()
    r = render_conversation(tok, CONVO)
    assert tok.decode(r.ids) == (
        "<|endoftext|><|im_start|>system<|im_sep|>Be brief.<|im_end|>"
        "<|im_start|>user<|im_sep|>What is a watermelon?<|im_end|>"
        "<|im_start|>assistant<|im_sep|>A juicy fruit.<|im_end|>"
        "<|im_start|>user<|im_sep|>Colour?<|im_end|>"
        "<|im_start|>assistant<|im_sep|>Green outside, red inside.<|im_end|>"
    )
    trained = tok.decode([t for t, m in zip(r.ids, r.mask) if m])
    assert trained == "A juicy fruit.<|im_end|>Green outside, red inside.<|im_end|>"
    im_end, im_start, im_sep = (tok.special_ids[t] for t in ("<|im_end|>", "<|im_start|>", "<|im_sep|>"))
    masked_ids = {t for t, m in zip(r.ids, r.mask) if m}
    assert im_end in masked_ids
    assert im_start not in masked_ids and im_sep not in masked_ids
    role_header = tok.encode("assistant")
    assert not any(r.ids[i:i + len(role_header)] == role_header and r.mask[i] for i in range(len(r.ids)))


def test_user_text_cannot_forge_chat_tokens():
    tok = chat_tokenizer()
    r = render_conversation(tok, [{"role": "user", "content": "<|im_end|>"}, {"role": "assistant", "content": "ok"}])
    assert r.ids.count(tok.special_ids["<|im_end|>"]) == 2  # the two real turn ends only


def test_prompt_ends_with_the_assistant_header():
    tok = chat_tokenizer()
    ids = render_prompt(tok, CONVO[:2])
    assert tok.decode(ids).endswith("<|im_start|>user<|im_sep|>What is a watermelon?<|im_end|>"
                                    "<|im_start|>assistant<|im_sep|>")


def test_validate_messages_reasons():
    assert validate_messages(CONVO) is None
    assert validate_messages([]) == "empty"
    assert validate_messages(CONVO[:2]) == "no_final_answer"
    assert validate_messages([CONVO[2], CONVO[1]]) == "turns_not_alternating"
    assert validate_messages([{"role": "user", "content": " "}, CONVO[2]]) == "empty_message"


def test_padded_batches_keep_conversations_apart_and_pad_without_loss():
    tok = chat_tokenizer()
    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    enc = encode_conversations(tok, [CONVO, short], block_size=256)
    x, y = collate(enc.examples, pad_id=tok.eot_id)
    assert x.shape == y.shape == (2, len(enc.examples[0]) - 1)
    n_short = len(enc.examples[1]) - 1
    assert (y[1, n_short:] == IGNORE_INDEX).all()
    assert int((y[1] != IGNORE_INDEX).sum()) == sum(enc.examples[1].mask[1:])
    assert tok.decode(y[1][y[1] != IGNORE_INDEX].tolist()) == "Hello!<|im_end|>"


def test_long_conversations_are_cut_to_the_context():
    tok = chat_tokenizer()
    full = len(render_conversation(tok, CONVO))
    enc = encode_conversations(tok, [CONVO], block_size=full - 5)
    assert enc.truncated == 1 and len(enc.examples[0]) == full - 4
    assert encode_conversations(tok, [CONVO], block_size=8).no_target == 1


def test_top_p_and_top_k_restrict_the_candidates():
    logits = torch.tensor([[5.0, 4.0, 0.0, -1.0]]).repeat(200, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample_tokens(logits, top_k=2, generator=g).tolist()) <= {0, 1}
    assert set(SamplingParams(top_p=0.5).sample(logits, g).tolist()) == {0}
    assert sample_tokens(logits, temperature=0).tolist() == [0] * 200


def test_engine_samples_n_per_prompt_with_a_token_bound_and_matches_full_recompute():
    tok = chat_tokenizer()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32))
    engine = Engine(model, tok)
    prompts = [render_prompt(tok, CONVO[1:2]), render_prompt(tok, [{"role": "user", "content": "Hi"}])]
    out = engine.generate(prompts, SamplingParams(max_tokens=7), n=3, seed=0)
    assert [len(o) for o in out] == [3, 3]
    assert all(len(c.ids) <= 7 for o in out for c in o)
    greedy = engine.generate(prompts[:1], SamplingParams(max_tokens=6, temperature=0))[0][0]
    ids = list(prompts[0])
    for _ in range(len(greedy.ids)):  # the cached greedy reply equals argmax over full forward passes
        ids.append(int(model(torch.tensor([ids]))[0][0, -1].argmax()))
    assert ids[len(prompts[0]):] == greedy.ids
    streamed = list(engine.stream(prompts[0], SamplingParams(max_tokens=6, temperature=0)))
    assert [t.id for t in streamed] == [t for t in greedy.ids if t not in (tok.special_ids["<|im_end|>"], tok.eot_id)]
    assert {t.kind for t in streamed} == {"text"} and greedy.answer == greedy.text and greedy.calls == []


def test_prompts_of_different_lengths_share_a_batch_and_reply_as_they_would_alone():
    tok = chat_tokenizer()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32))
    engine = Engine(model, tok)
    prompts = [render_prompt(tok, [{"role": "user", "content": text}])
               for text in ("Hi", "What is the capital of France?", "2+2", "Tell me a story about a cat")]
    assert len({len(p) for p in prompts}) == 4
    batches = engine.batches([engine.fit_prompt(p, SamplingParams(max_tokens=8)) for p in prompts], 1)
    assert len(batches) == 1 and [len(prompts[i]) for i in batches[0]] == sorted(len(p) for p in prompts)
    greedy = SamplingParams(max_tokens=8, temperature=0)
    together = engine.generate(prompts, greedy)
    alone = [engine.generate([p], greedy)[0] for p in prompts]
    assert [[c.ids for c in o] for o in together] == [[c.ids for c in o] for o in alone]


class EndsOnOddArgmax(SamplingParams):
    """Greedy, except that a row whose best token is odd ends there: rows of one batch end at different steps,
    each by its own logits alone."""

    def __init__(self, tokenizer):
        super().__init__(max_tokens=12, temperature=0)
        object.__setattr__(self, "im_end", tokenizer.special_ids["<|im_end|>"])

    def sample(self, logits, generator=None):
        best = logits.argmax(dim=-1)
        return torch.where(best % 2 == 1, torch.full_like(best, self.im_end), best)


def test_rows_that_end_early_leave_the_batch_and_the_others_reply_as_they_would_alone():
    tok = chat_tokenizer()
    torch.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32))
    with torch.no_grad():  # weights far from the small init, so that the best token depends on the context
        for w in model.parameters():
            if w.dim() > 1:
                w.normal_(0, 1.0)
    engine = Engine(model, tok)
    prompts = [render_prompt(tok, [{"role": "user", "content": f"Question {i}: {'why ' * (i % 5)}?"}])
               for i in range(16)]
    params = EndsOnOddArgmax(tok)
    kept = []
    real_keep_rows = KVCache.keep_rows
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KVCache, "keep_rows", lambda cache, rows: kept.append(len(rows)) or real_keep_rows(cache, rows))
        together = engine.generate(prompts, params)
    alone = [engine.generate([p], params)[0] for p in prompts]
    lengths = sorted(len(o[0].ids) for o in together)
    assert kept and lengths[0] < lengths[-1]  # rows left the batch, and not all at once
    assert [o[0].ids for o in together] == [o[0].ids for o in alone]


def test_a_long_prompt_is_not_batched_where_its_neighbours_bound_would_not_fit():
    tok = chat_tokenizer()
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=1, n_embd=16))
    engine = Engine(model, tok)
    params = SamplingParams(max_tokens=40)
    short, long = [1] * 10, [2] * 50  # the long one is cut to leave half the block; the short one may use 40 tokens
    fitted = [engine.fit_prompt(p, params) for p in (long, short, short)]
    assert fitted == [([2] * 32, 32), ([1] * 10, 40), ([1] * 10, 40)]
    assert engine.batches(fitted, n=2) == [[1, 2], [0]]  # 32 + 40 > 64: the long prompt goes alone
    assert engine.batches(fitted[1:], n=2) == [[0, 1]]
    out = engine.generate([long, short], SamplingParams(max_tokens=40, temperature=0))
    assert len(out[0][0].ids) <= 32 and len(out[1][0].ids) <= 40


@lru_cache(maxsize=1)
def tool_tokenizer() -> BpeTokenizer:
    """A small byte-level BPE with the chat and the tool tokens (the bpe stage's default special tokens)."""
    texts = ["system user assistant", "What is 123 times 45? Let me compute. It is 5535.", "How many r?"] * 20
    return BpeTokenizer(train_bpe(texts, 320, DEFAULT_SPECIAL_TOKENS))


TOOL_CONVO = [
    {"role": "user", "content": "What is 123 times 45?"},
    tool_message([("text", "Let me compute."), ("python", "123*45"), ("output", "5535"), ("text", "It is 5535.")]),
]


def test_a_tool_call_renders_between_its_tokens_and_only_the_output_is_left_out_of_the_loss():
    tok = tool_tokenizer()
    assert TOOL_CONVO[1]["content"] == "Let me compute.It is 5535."
    r = render_conversation(tok, TOOL_CONVO)
    sp = tok.special_ids
    head = [sp["<|endoftext|>"], sp["<|im_start|>"], *tok.encode("user"), sp["<|im_sep|>"],
            *tok.encode("What is 123 times 45?"), sp["<|im_end|>"],
            sp["<|im_start|>"], *tok.encode("assistant"), sp["<|im_sep|>"]]
    text1, call = tok.encode("Let me compute."), [sp["<|python_start|>"], *tok.encode("123*45"), sp["<|python_end|>"]]
    output = [sp["<|output_start|>"], *tok.encode("5535"), sp["<|output_end|>"]]
    text2 = [*tok.encode("It is 5535."), sp["<|im_end|>"]]
    assert r.ids == head + text1 + call + output + text2
    assert r.mask == [0] * len(head) + [1] * len(text1 + call) + [0] * len(output) + [1] * len(text2)
    assert tok.decode(r.ids[len(head):]) == ("Let me compute.<|python_start|>123*45<|python_end|><|output_start|>5535"
                                             "<|output_end|>It is 5535.<|im_end|>")


def test_messages_without_parts_render_as_before_and_old_tokenizers_cannot_render_calls():
    tok = tool_tokenizer()
    plain = [{"role": "user", "content": "How many r?"}, {"role": "assistant", "content": "Three.", "parts": None}]
    without = [plain[0], {"role": "assistant", "content": "Three."}]
    assert render_conversation(tok, plain) == render_conversation(tok, without)
    with pytest.raises(KeyError, match="tool calls need"):
        render_conversation(chat_tokenizer(), TOOL_CONVO)
    assert not chat_tokenizer().has_tools and tok.has_tools


def test_validate_messages_checks_the_parts_of_tool_calls():
    user = TOOL_CONVO[0]
    assert validate_messages(TOOL_CONVO) is None

    def reason(parts, **changes):
        return validate_messages([user, {**tool_message(parts), **changes}])

    assert reason([("python", "1+1"), ("text", "2")]) == "call_without_output"
    assert reason([("text", "2"), ("python", "1+1")]) == "call_without_output"
    assert reason([("text", "It is"), ("output", "2"), ("text", " 2")]) == "output_without_call"
    assert reason([("text", "a"), ("shell", "ls"), ("output", ""), ("text", "b")]) == "bad_part_kind:shell"
    assert reason([("search", " "), ("output", "none"), ("text", "No idea.")]) == "empty_part"
    assert reason([("python", "1+1"), ("output", ""), ("text", "2")]) is None  # a tool may print nothing
    assert reason([("text", "2")], content="two") == "content_not_text_parts"
    assert reason([], content="2") == "empty_parts"
    assert validate_messages([{**user, "parts": [{"kind": "text", "text": user["content"]}]},
                              TOOL_CONVO[1]]) == "parts_not_on_assistant"


def test_tool_conversations_survive_the_parquet_round_trip_and_old_rows_read_as_no_parts():
    tok = tool_tokenizer()
    table = pa.Table.from_pylist([{"messages": TOOL_CONVO, "source": "tools"}], schema=CONVERSATIONS)
    (row,) = table.to_pylist()
    assert row["messages"][0]["parts"] is None and row["messages"][1]["parts"] == TOOL_CONVO[1]["parts"]
    assert render_conversation(tok, row["messages"]) == render_conversation(tok, TOOL_CONVO)
    old_schema = pa.schema([("messages", pa.list_(PROMPT_MESSAGE)), ("source", pa.string())])
    (old,) = pa.Table.from_pylist([{"messages": CONVO, "source": "oasst"}], schema=old_schema).to_pylist()
    assert "parts" not in old["messages"][0] and render_conversation(tok, old["messages"]) == render_conversation(
        tok, CONVO)


def test_streamed_pieces_add_up_to_the_reply_even_when_it_ends_inside_a_character():
    tok = chat_tokenizer()
    ids = tok.encode("ab日本")
    for end in range(1, len(ids) + 1):  # every cut, those inside 日 or 本 included
        reply = ReplyText(tok)
        pieces = [reply.push(StreamToken(i, "text")) for i in ids[:end]]
        rest = reply.rest()
        shown = "".join(p.text for p in pieces) + (rest.text if rest else "")
        assert shown == tok.decode(ids[:end]) == reply.message()["content"], end
        assert (rest is not None) == tok.decode(ids[:end]).endswith("\ufffd") and reply.rest() is None

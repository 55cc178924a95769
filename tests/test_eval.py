"""The eval stage's suites on real small models and data: a trained chat model beats an untrained one, planted
overlaps with training data are found and left out of the score, bad eval files are refused with their name, and
the standard multiple-choice formats load."""

from __future__ import annotations

import json
from functools import lru_cache

import pytest
import torch
from conftest import DATA
from post_fixtures import chat_tokenizer, single_thread, tiny_sft_model

from llm_core.chat.engine import SamplingParams
from llm_core.chat.synthetic import arithmetic_conversations, heldout_sums, identity_conversations
from llm_core.config import ConfigError
from llm_core.evals.chat_suites import identity_items, leaked_specials, made_up_items, run_chat_suites, sum_items
from llm_core.evals.contamination import ContaminationIndex
from llm_core.evals.lm_suites import heldout_mc_items, run_mc_suites, standard_items
from llm_core.evals.results import wilson_interval
from llm_core.model import GPT, GPTConfig
from llm_core.pipeline_config import load_config
from llm_core.sft.stage import SftConfig, train_sft
from llm_core.train.pretrain_config import OptimSection

IDENTITY = str(DATA / "eval" / "identity.jsonl")
MADE_UP = str(DATA / "eval" / "idk.jsonl")
GREEDY = SamplingParams(max_tokens=24, temperature=0)


def by_suite(rows):
    return {(r.suite, r.metric): r for r in rows}


def test_heldout_sums_are_never_generated_for_training():
    held = set(heldout_sums(9))
    assert 15 <= len(held) <= 35
    trained = {c.messages[0]["content"] for c in arithmetic_conversations(2000, 0, max_operand=9)}
    assert not trained & {f"What is {a} + {b}?" for a, b in held}


@lru_cache(maxsize=1)
@single_thread()
def worked_sums_model() -> GPT:
    """A 2-layer GPT trained from scratch for 300 steps on single-digit sums worked out step by step, the eval's
    held-out operand pairs left out (as the sft_data stage does)."""
    tok = chat_tokenizer()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=96, n_layer=2, n_head=4, n_embd=128))
    train = [s.messages for s in arithmetic_conversations(1500, 1, max_operand=9, worked=True)]
    cfg = SftConfig(max_steps=300, batch_size=32, eval_every=0, device="cpu", checkpoint_every=0,
                    optim=OptimSection(lr=3e-3, min_lr=3e-4, weight_decay=0.0, warmup_steps=20))
    train_sft(model, tok, train, train[:32], cfg, seed=0)
    return model.eval()


def test_trained_chat_models_beat_an_untrained_one_on_identity_and_held_out_sums(one_torch_thread):
    chat, tok = tiny_sft_model()
    torch.manual_seed(0)
    untrained = GPT(chat.config).eval()
    clean = ContaminationIndex(13)
    identity = identity_items(IDENTITY, "Tinychat")
    trained_id = by_suite(run_chat_suites("sft", chat, tok, identity, GREEDY, 1, clean, 0, 9)[0])
    untrained_id = by_suite(run_chat_suites("base", untrained, tok, identity, GREEDY, 1, clean, 0, 9)[0])
    assert trained_id[("identity", "accuracy")].n == untrained_id[("identity", "accuracy")].n == 30
    assert trained_id[("identity", "accuracy")].value >= 0.5 > untrained_id[("identity", "accuracy")].value
    assert trained_id[("im_end", "rate")].value > untrained_id[("im_end", "rate")].value

    sums = sum_items(9)
    index = ContaminationIndex(13).add_prompts(
        s.messages[0]["content"] for s in arithmetic_conversations(1500, 1, max_operand=9, worked=True))
    params = SamplingParams(max_tokens=64, temperature=0)
    trained = by_suite(run_chat_suites("sft", worked_sums_model(), tok, sums, params, 1, index, 0, 9)[0])
    before = by_suite(run_chat_suites("base", untrained, tok, sums, params, 1, index, 0, 9)[0])
    held_out = trained[("sums_heldout", "accuracy")]
    assert held_out.n == len(sums) and held_out.contaminated == 0  # none of them was in the training data
    # better than chance with 95% confidence (at least 4 of the 23): over training seeds 0-3, with the CPU kernels and
    # with torch's ops, this model scored 0.22-0.70, so a fixed bar near 0.3 tests the seed, not the learning
    assert held_out.ci_low > held_out.baseline > before[("sums_heldout", "accuracy")].value


def test_planted_overlaps_are_found_and_left_out_of_the_score(one_torch_thread):
    model, tok = tiny_sft_model()
    identity = identity_items(IDENTITY, "Tinychat")
    made_up = made_up_items(MADE_UP)
    sums = sum_items(4)
    planted_prompt = identity[0].prompt  # an eval phrasing copied into SFT data
    planted_entity = made_up[3].entity  # a made-up name that a web page mentions
    planted_sum = sums[0].prompt
    index = ContaminationIndex(13).add_texts([
        f"A short biography. {planted_entity} was a figure of local history.",
        *[m["content"] for s in identity_conversations("Tinychat", "x", 20, 0) for m in s.messages],
    ]).add_prompts([planted_prompt.upper(), planted_sum])
    rows, outcomes = run_chat_suites("sft", model, tok, identity + made_up + sums, GREEDY, 1, index, 0, 4)
    flagged = {o.item_id: o.reason for o in outcomes if o.contaminated}
    assert set(flagged) == {identity[0].item_id, made_up[3].item_id, sums[0].item_id}, flagged
    assert "exact prompt" in flagged[identity[0].item_id] and "entity" in flagged[made_up[3].item_id]
    table = by_suite(rows)
    english = [i for i in identity if i.suite == "identity"]
    assert table[("identity", "accuracy")].n == len(english) - 1
    assert table[("identity", "accuracy")].contaminated == 1
    assert table[("sums_heldout", "accuracy")].n == len(sums) - 1
    long_text = "the quick brown fox jumps over the lazy dog again and again until the sun goes down"
    assert ContaminationIndex(13).add_texts([f"intro {long_text} outro"]).reason(long_text) is not None
    assert ContaminationIndex(13).add_texts([long_text[:40]]).reason(long_text) is None


@pytest.mark.parametrize(("line", "message"), [
    ("not json", "line 1: not valid JSON"),
    (json.dumps({"id": "a"}), "missing field(s) ['prompt']"),
])
def test_a_malformed_eval_file_is_refused_with_its_name(tmp_path, line, message):
    bad = tmp_path / "identity.jsonl"
    bad.write_text(line + "\n")
    with pytest.raises(ConfigError) as err:
        load_config("configs/tiny.yaml", [f"eval.identity_file={bad}"])
    assert str(bad) in str(err.value) and message in str(err.value)
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/tiny.yaml", [f"eval.made_up_file={tmp_path / 'missing.jsonl'}"])


def test_standard_multiple_choice_formats_load_with_their_answers():
    formats = DATA / "eval" / "formats"
    hella = standard_items("hellaswag", str(formats / "hellaswag.jsonl"), 10)
    arc = standard_items("arc", str(formats / "arc.jsonl"), 10)
    piqa = standard_items("piqa", str(formats / "piqa.jsonl"), 10)
    lambada = standard_items("lambada", str(formats / "lambada.jsonl"), 10)
    assert [i.label for i in hella] == [0, 1, 2] and hella[1].choices[1].strip().startswith("dives in")
    assert [i.choices[i.label].strip() for i in arc] == ["the Sun", "sunlight", "0"]
    assert [len(i.choices) for i in piqa] == [2, 2, 2] and piqa[1].choices[piqa[1].label] == " add a few ice cubes."
    assert [i.choices[i.label].strip() for i in lambada] == ["room", "bed", "beach", "tea"]
    assert all(len(set(i.choices)) == len(i.choices) for i in hella + arc + piqa + lambada)
    with pytest.raises(ValueError, match="unknown multiple-choice format"):
        standard_items("mmlu", str(formats / "arc.jsonl"), 1)


def test_multiple_choice_on_heldout_text_is_scored_beside_chance(one_torch_thread):
    text = (DATA / "wikitext2" / "valid.txt").read_text(encoding="utf-8")[:60000]
    items = heldout_mc_items(text.split("\n \n"), 20, seed=3)
    assert {i.suite for i in items} == {"mc/cloze", "mc/next_sentence"}
    assert all(i.choices[i.label] not in i.choices[:i.label] for i in items)
    tok = chat_tokenizer()
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=96, n_layer=1, n_head=2, n_embd=32)).eval()
    rows, outcomes = run_mc_suites("base", model, tok, items, 1, ContaminationIndex(13))
    assert {r.suite for r in rows} == {"mc/cloze", "mc/next_sentence"}
    assert all(r.baseline == 0.25 and r.n == 20 and 0 <= r.value <= 1 for r in rows)
    assert len(outcomes) == len(items)


def test_wilson_interval_brackets_the_rate():
    low, high = wilson_interval(9, 10)
    assert low < 0.9 < high <= 1
    assert wilson_interval(0, 20)[0] == 0 and wilson_interval(0, 0) == (None, None)


def test_a_reply_stopping_at_a_stop_token_leaks_nothing_but_one_inside_it_does():
    tok = chat_tokenizer()
    im_start, im_end, eot = (tok.special_ids[t] for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"))
    text = tok.encode("Hello there")
    assert leaked_specials([*text, im_end], tok) == []
    assert leaked_specials([*text, eot], tok) == []  # the base model ends a document: a stop, not a leak
    assert leaked_specials(text, tok) == []  # cut at the token bound
    assert leaked_specials([*text, im_start, *text, eot], tok) == [im_start]
    assert leaked_specials([*text, eot, *text], tok) == [eot]  # only the last token can be the stop

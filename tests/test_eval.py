"""The eval stage's suites on real small models and data: a trained chat model beats an untrained one, planted
overlaps with training data are found and left out of the score, bad eval files are refused with their name, and
the standard multiple-choice formats load."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import DATA
from post_fixtures import chat_tokenizer, tiny_sft_model

from llm_core.chat.engine import SamplingParams
from llm_core.chat.synthetic import heldout_sums, identity_conversations, arithmetic_conversations
from llm_core.config import ConfigError, load_config
from llm_core.evals.chat_suites import identity_items, made_up_items, run_chat_suites, sum_items
from llm_core.evals.contamination import ContaminationIndex
from llm_core.evals.lm_suites import heldout_mc_items, run_mc_suites, standard_items
from llm_core.evals.results import wilson_interval
from llm_core.model import GPT, GPTConfig

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


def test_trained_chat_model_beats_an_untrained_one_on_identity_and_sums(one_torch_thread):
    model, tok = tiny_sft_model()
    torch.manual_seed(0)
    untrained = GPT(model.config).eval()
    items = identity_items(IDENTITY, "Tinychat") + sum_items(4)
    clean = ContaminationIndex(13)
    trained_rows = by_suite(run_chat_suites("sft", model, tok, items, GREEDY, 1, clean, 0, 4)[0])
    untrained_rows = by_suite(run_chat_suites("base", untrained, tok, items, GREEDY, 1, clean, 0, 4)[0])
    for suite in ("identity", "sums_heldout"):
        trained, before = trained_rows[(suite, "accuracy")], untrained_rows[(suite, "accuracy")]
        assert trained.n == before.n > 0
        assert trained.value > before.value, (suite, trained.value, before.value)
    assert trained_rows[("identity", "accuracy")].value >= 0.5
    assert trained_rows[("im_end", "rate")].value > untrained_rows[("im_end", "rate")].value


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

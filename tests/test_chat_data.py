"""Conversation and preference loaders on the shipped sample data, generated sets, the mixture, verifiable rewards."""

from __future__ import annotations

from collections import Counter

from llm_core.chat.loaders import (
    hh_pair,
    load_gsm8k,
    load_hh_rlhf,
    load_oasst,
    load_oasst_pairs,
    load_prompts,
    oasst_paths,
    parse_hh_transcript,
)
from llm_core.chat.mixture import copies, is_validation
from llm_core.chat.numbers import final_answer
from llm_core.chat.splits import evenly_spaced
from llm_core.chat.synthetic import (
    identity_conversations,
    keyword_pairs,
    refusal_conversations,
    requested_keyword,
)
from llm_core.chat.template import validate_messages
from llm_core.rl.verifiable_rewards import exact_answer, keyword

TREE = {
    "text": "Q1", "role": "prompter", "replies": [
        {"text": "worse", "role": "assistant", "rank": 1, "replies": []},
        {"text": "best", "role": "assistant", "rank": 0, "replies": [
            {"text": "Q2a", "role": "prompter", "replies": [{"text": "A2a", "role": "assistant", "replies": []}]},
            {"text": "Q2b", "role": "prompter", "replies": []},
            {"text": "Q2c", "role": "prompter", "deleted": True, "replies": []},
        ]},
    ],
}


def test_oasst_paths_follow_best_replies_and_every_user_branch():
    paths = [[m["content"] for m in p] for p in oasst_paths(TREE)]
    assert paths == [["Q1", "best", "Q2a", "A2a"], ["Q1", "best"]]


def test_oasst_sample_file_gives_valid_conversations_and_ranked_pairs(data_dir):
    samples = list(load_oasst(str(data_dir / "oasst" / "en_80_tree.jsonl")))
    assert len(samples) >= 80
    assert all(s.reject is None and validate_messages(s.messages) is None for s in samples)
    pairs = list(load_oasst_pairs(str(data_dir / "oasst" / "en_80_tree.jsonl")))
    assert len(pairs) > 200 and all(p.chosen != p.rejected for p in pairs if p.reject is None)
    assert all(p.prompt[-1]["role"] == "user" for p in pairs if p.reject is None)


def test_gsm8k_solutions_drop_calculator_notes_and_keep_the_answer(data_dir):
    samples = list(load_gsm8k(str(data_dir / "gsm8k" / "train.jsonl")))
    assert len(samples) == 1500
    first = samples[0].messages[1]["content"]
    assert "<<" not in first and first.endswith("#### 72") and final_answer(first) == "72"


def test_hh_transcripts_parse_into_shared_prompt_and_two_answers(data_dir):
    t = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: fine"
    assert [m["role"] for m in parse_hh_transcript(t)] == ["user", "assistant", "user", "assistant"]
    pair = hh_pair(t, t.replace("fine", "bad"))
    assert pair.reject is None and pair.chosen == "fine" and pair.rejected == "bad" and len(pair.prompt) == 3
    assert hh_pair(t, "\n\nHuman: other\n\nAssistant: bad").reject == "hh:prompts_differ"
    assert hh_pair("no transcript", t).reject == "hh:not_a_transcript"
    pairs = list(load_hh_rlhf(str(data_dir / "hh_rlhf" / "harmless-base-test.dev.jsonl")))
    reasons = Counter(p.reject for p in pairs)
    assert len(pairs) == 600 and reasons[None] >= 590


def test_prompt_lottery_loads_250_prompts(data_dir):
    prompts = load_prompts(str(data_dir / "oasst" / "prompt_lottery_en_250_text.jsonl"))
    assert len(prompts) == 250 and prompts[0] == "Can you tell me about GLaDOS?"


def test_generated_sets_are_deterministic_and_answer_from_config():
    a = identity_conversations("Zeta", "Acme Lab", 50, seed=3, chinese_share=0.5)
    assert a == identity_conversations("Zeta", "Acme Lab", 50, seed=3, chinese_share=0.5)
    assert all("Zeta" in s.messages[1]["content"] for s in a)
    assert {s.source for s in a} == {"identity_en", "identity_zh"}
    refusals = refusal_conversations(30, seed=1)
    assert all("don't know" in s.messages[1]["content"] or "not aware" in s.messages[1]["content"] for s in refusals)


def test_keyword_pairs_prefer_the_requested_word():
    for p in keyword_pairs(50, seed=0):
        word = requested_keyword(p.prompt[0]["content"])
        assert keyword(p.prompt[0]["content"], p.chosen, None) == 1.0
        assert keyword(p.prompt[0]["content"], p.rejected, None) == 0.0, (word, p.rejected)


def test_exact_answer_reward():
    assert exact_answer("What is 2 + 3?", "#### 5", "5") == 1.0
    assert exact_answer("", "so 1,200 in all.\n#### 1,200", "1200") == 1.0
    assert exact_answer("", "the answer is 7", "7") == 1.0
    assert exact_answer("", "#### 8", "5") == 0.0
    assert exact_answer("", "no idea", "5") == 0.0


def test_split_and_weights_are_deterministic():
    items = [{"n": i} for i in range(2000)]
    val = [is_validation(x, 0.1, 7) for x in items]
    assert val == [is_validation(x, 0.1, 7) for x in items]
    assert 150 < sum(val) < 250
    assert sum(copies(x, 2.0, 7) for x in items) == 4000
    assert 900 < sum(copies(x, 0.5, 7) for x in items) < 1100


def test_an_evaluation_subset_keeps_every_sources_share():
    pairs = [("hh", i) for i in range(60)] + [("oasst", i) for i in range(40)] + [("keyword", i) for i in range(40)]
    subset = evenly_spaced(pairs, 70)
    assert len(subset) == 70 and len(set(subset)) == 70
    assert Counter(source for source, _ in subset) == {"hh": 30, "oasst": 20, "keyword": 20}
    assert evenly_spaced(pairs[:5], 70) == pairs[:5]

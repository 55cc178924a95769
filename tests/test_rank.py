"""The rank stage without Prefect, and the reward model learning from rankings: typed rankings read and refused,
the model labeler end to end, ties and skips recorded, `llmpipe rank` in the terminal (resumable), chat feedback
as rankings, `reward_data` routing whole rankings by prompt, and the ranking losses."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from post_fixtures import chat_tokenizer
from rank_fixtures import committed, model_inputs, prompts_file, rank_context
from typer.testing import CliRunner

from llm_core.config import RunConfig
from llm_core.pipeline import make_context
from llm_core.pipeline_config import PipelineConfig
from llm_core.preference.pairs_stage import PreferenceSourceConfig, RewardDataConfig, RewardDataStage
from llm_core.preference.rank_stage import ITEMS_FILE, RANKINGS_FILE, RankStage
from llm_core.preference.rankings import (
    Judgement,
    RankingError,
    RankItem,
    chat_feedback_row,
    implied_pairs,
    parse_ranking,
    ranking_row,
    read_rankings,
    usable_rankings,
    write_rankings,
)
from llm_core.preference.reward_model import ScalarHeadModel, bradley_terry_loss, encode_answer, score
from llm_core.preference.reward_stage import (
    Comparison,
    RewardConfig,
    comparison_batch,
    comparison_loss,
    ranking_comparisons,
    train_reward_model,
)
from llm_core.stage import run_stage
from llm_core.store import ArtifactStore
from llm_core.train.model_files import load_gpt, save_model_files
from llm_core.train.pretrain_config import OptimSection


@pytest.mark.parametrize("text, expected", [
    ("C > A = B > E > D", [[2], [0, 1], [4], [3]]),
    ("cabed", [[2], [0], [1], [4], [3]]),
    ("2C, 2A, 2B, 2E, 2D", [[2], [0], [1], [4], [3]]),
])
def test_a_typed_ranking_is_read_best_first_with_ties(text, expected):
    assert parse_ranking(text, 5, prompt_no=2) == expected


@pytest.mark.parametrize("text, message", [
    ("C A B E", "answer(s) D not ranked"),
    ("C A B E D A", "answer A is ranked twice"),
    ("C A B E F", "there is no answer F"),
    ("3C 2A 2B 2E 2D", "answer 3C belongs to prompt 3, not to prompt 2"),
    ("", "no ranking given"),
    ("C ? A", "cannot read"),
    ("= C A B E D", "'=' must stand between two answers"),
])
def test_a_ranking_that_is_not_a_permutation_of_this_prompts_answers_is_refused(text, message):
    with pytest.raises(RankingError, match=re.escape(message)):
        parse_ranking(text, 5, prompt_no=2)


def test_k_answers_strictly_ordered_imply_k_choose_2_pairs_and_ties_none():
    assert len(implied_pairs([[i] for i in range(5)])) == 10
    assert implied_pairs([[1], [0, 2]]) == [(1, 0), (1, 2)]
    assert implied_pairs([[0, 1, 2]]) == []


def test_the_model_labeler_ranks_distinct_answers_and_records_ties(tmp_path, one_torch_thread):
    ctx = rank_context(tmp_path, labeler="model", judge="longer", answers=4, max_tokens=4)
    manifest, cached = run_stage(RankStage(), ctx)
    assert not cached
    rows = pq.read_table(f"{ctx.output.uri}/{RANKINGS_FILE}").to_pylist()
    assert len(rows) == 4 and all(r["status"] == "ranked" and r["labeler"] == "model:longer" for r in rows)
    for row in rows:
        assert len(set(row["answers"])) == len(row["answers"]) >= 2
        lengths = [len(row["answers"][i]) for i in row["ranking"]]
        assert lengths == sorted(lengths, reverse=True)
        tied = sum(1 for a, b in itertools.combinations(row["answers"], 2) if len(a) == len(b))
        assert len(row["pairs"]) == math.comb(len(row["answers"]), 2) - tied
    assert manifest.counts["pairs"] == sum(len(r["pairs"]) for r in rows)
    assert manifest.metrics["rankings"] == 4.0
    assert run_stage(RankStage(), ctx)[1], "a second run is a cache hit"
    assert all(r["ranked_at"] is None for r in rows), "a model's ranking is no event: it carries no time"
    (tmp_path / "again").mkdir()
    again = rank_context(tmp_path / "again", labeler="model", judge="longer", answers=4, max_tokens=4)
    run_stage(RankStage(), again)
    first, second = (Path(f"{c.output.uri}/{RANKINGS_FILE}").read_bytes() for c in (ctx, again))
    assert first == second, "a rerun on another root writes the same rankings, byte for byte"


def test_a_reward_model_can_be_the_judge(tmp_path, one_torch_thread):
    inputs = model_inputs(tmp_path / "artifacts")
    store = ArtifactStore(str(tmp_path / "artifacts"))
    judge = ScalarHeadModel.from_sft(load_gpt(store.reader(inputs["sft"])))
    committed(store, "reward", "testjudge", lambda w: save_model_files(w, judge))
    ctx = rank_context(tmp_path, labeler="model", judge="reward/testjudge")
    run_stage(RankStage(), ctx)
    tok = chat_tokenizer()
    for row in pq.read_table(f"{ctx.output.uri}/{RANKINGS_FILE}").to_pylist():
        scores = score(judge.eval(), [encode_answer(tok, row["prompt"], a, 64) for a in row["answers"]], tok.eot_id)
        assert row["ranking"] == sorted(range(len(scores)), key=lambda i: -float(scores[i]))
        assert row["labeler"] == "model:reward/testjudge"


def test_an_empty_prompt_source_is_refused_before_sampling(tmp_path):
    ctx = rank_context(tmp_path)
    ctx.config.prompts_path = str(prompts_file(tmp_path / "empty.jsonl", ["", "  "]))
    with pytest.raises(ValueError, match="holds no prompts"):
        run_stage(RankStage(), ctx)
    assert not ctx.writer().exists(ITEMS_FILE)


def test_people_labelers_are_not_run_by_the_plain_driver(tmp_path):
    with pytest.raises(RuntimeError, match="llmpipe rank"):
        run_stage(RankStage(), rank_context(tmp_path, labeler="cli"))


def test_llmpipe_rank_in_the_terminal_stops_and_goes_on_where_it_stopped(tmp_path, monkeypatch, one_torch_thread):
    from cli.main import app

    inputs = model_inputs(tmp_path / "artifacts")
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({
        "run": {"artifact_root": str(tmp_path / "artifacts")},
        "rank": {"prompts_path": str(prompts_file(tmp_path / "prompts.jsonl")), "prompts": 3, "answers": 3,
                 "max_tokens": 8},
    }))
    args = ["rank", "--config", str(config), "-i", f"sft={inputs['sft'].key}", "-i",
            f"tokenizer={inputs['tokenizer'].key}"]
    runner = CliRunner()
    first = runner.invoke(app, args, input="B A C\nA A B\nC > A = B\nq\n")
    assert first.exit_code == 0, first.output
    assert "answer A is ranked twice" in first.output and "run `llmpipe rank` again" in first.output
    second = runner.invoke(app, args, input="s\nnot useful\n")
    assert second.exit_code == 0, second.output
    assert second.output.count("prompt 3 of 3") == 1 and "prompt 1 of 3" not in second.output
    rows = read_rankings(next((tmp_path / "artifacts" / "rank").glob(f"*/{RANKINGS_FILE}")))
    assert [r["ranking"] for r in rows] == [[1, 0, 2], [2, 0, 1], []]
    assert [r["status"] for r in rows] == ["ranked", "ranked", "skipped"]
    assert rows[1]["tiers"] == [0, 1, 1] and rows[2]["comment"] == "not useful"
    assert {r["labeler"] for r in rows} == {"cli"}


def test_chat_thumbs_become_rankings_rows(tmp_path, one_torch_thread):
    from cli.main import app

    model_inputs(tmp_path / "artifacts")
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"run": {"artifact_root": str(tmp_path / "artifacts")}}))
    feedback = tmp_path / "feedback" / "chat.parquet"
    chat = ["chat", "-m", "sft/testrandomgpt", "--config", str(config), "--system", "", "--max-tokens", "4",
            "--seed", "0", "--feedback", str(feedback)]
    result = CliRunner().invoke(app, chat, input="/good\nhello\n/bad A better answer.\nhi\n/good\n/exit\n")
    assert result.exit_code == 0, result.output
    assert "no reply to rate yet" in result.output
    better, liked = read_rankings(feedback)
    assert better["prompt"] == [{"role": "user", "content": "hello"}] and better["answers"][1] == "A better answer."
    assert (better["status"], better["ranking"], better["rating"]) == ("ranked", [1, 0], -1)
    assert better["pairs"] == [{"chosen": 1, "rejected": 0}] and better["labeler"] == "chat"
    assert (liked["status"], liked["rating"], len(liked["answers"])) == ("rated", 1, 1)
    assert [m["content"] for m in liked["prompt"]][::2] == ["hello", "hi"]


def rankings_rows() -> list[dict]:
    """Rankings by length (longer first) of real prompts' answers: cut from OpenAssistant-like text."""
    text = ("The watermelon is a large fruit with a green rind and sweet red flesh that grows on a vine. "
            "Birds fly by flapping wings that push air down and back, and the shape of the wing gives lift.")
    words = text.split()
    rows = []
    for p in range(60):
        answers = [" ".join(words[p % 7:p % 7 + n]) for n in (3, 7, 12, 18)]
        prompt = [{"role": "user", "content": f"question {p}"}]
        rows.append(chat_feedback_row(prompt, answers[0], True))  # a rating, paired below with a thumbs down
        rows.append(chat_feedback_row(prompt, answers[1], False))
        rows.append(ranking_row(RankItem(prompt, answers, "test"), Judgement("ranked", [[3], [2], [1], [0]], "ui")))
    rows.append(ranking_row(RankItem([{"role": "user", "content": "skipped"}], ["a", "b"]),
                            Judgement("skipped", labeler="ui")))
    return rows


def test_reward_data_routes_whole_rankings_by_prompt_and_counts_every_row(tmp_path):
    path = tmp_path / "feedback.parquet"
    write_rankings(path, rankings_rows())
    cfg = RewardDataConfig(sources=[PreferenceSourceConfig(kind="keyword", count=20),
                                    PreferenceSourceConfig(kind="rankings", path=str(path))], val_fraction=0.2)
    config = PipelineConfig(run=RunConfig(artifact_root=str(tmp_path / "artifacts")), reward_data=cfg)
    assert RewardDataStage().input_stages(cfg) == {}
    ctx = make_context(config, "reward_data", {})
    manifest, _ = run_stage(RewardDataStage(), ctx)
    train = pq.read_table(f"{ctx.output.uri}/train_rankings/part-00000.parquet").to_pylist()
    val = pq.read_table(f"{ctx.output.uri}/val_rankings/part-00000.parquet").to_pylist()
    label = f"rankings:{path}"
    # 60 ranked prompts + 60 prompts whose up and down ratings make a ranking of two; the skipped row is rejected
    assert manifest.counts[f"{label}:input"] == 121 and manifest.counts[f"{label}:rejected:rankings:skipped"] == 1
    assert len(train) + len(val) == 120 and val
    assert not {r["prompt_id"] for r in train} & {r["prompt_id"] for r in val}, "a prompt is on one side only"
    rated = [r for r in train + val if r["labeler"] == "chat:ratings"]
    assert len(rated) == 60 and all(r["pairs"] == [{"chosen": 0, "rejected": 1}] for r in rated)
    assert manifest.counts["input"] == manifest.counts["kept"] + manifest.counts["rejected"]

    with_rank = RewardDataConfig(sources=[PreferenceSourceConfig(kind="rankings")])
    assert RewardDataStage().input_stages(with_rank) == {"rankings": "rank"}


def test_the_three_losses_agree_on_a_plain_pair_and_plackett_luce_scores_the_whole_order():
    r = torch.tensor([0.3, -0.2, 1.0, 0.4])
    pairs = comparison_batch([Comparison([[1, 2], [3]], [0, 1]), Comparison([[1], [2, 2]], [0, 1])], 0)
    plain = bradley_terry_loss(r[[0, 2]], r[[1, 3]], margin=0.0, center_coef=0.1)
    for kind in ("pairs", "all_pairs", "plackett_luce"):
        assert float(comparison_loss(r, pairs, kind, center_coef=0.1)) == pytest.approx(float(plain), rel=1e-6)
    order = comparison_batch([Comparison([[1], [2], [3]], [0, 1, 2])], 0)
    s = torch.tensor([2.0, 1.0, 0.0])
    expected = -((2 - math.log(math.exp(2) + math.exp(1) + 1)) + (1 - math.log(math.exp(1) + 1))) / 2
    assert float(comparison_loss(s, order, "plackett_luce")) == pytest.approx(expected, rel=1e-6)
    all_pairs = float(comparison_loss(s, order, "all_pairs"))
    assert all_pairs == pytest.approx(-(2 * math.log(1 / (1 + math.exp(-1))) + math.log(1 / (1 + math.exp(-2)))) / 3)


@pytest.mark.parametrize("loss", ["all_pairs", "plackett_luce"])
def test_a_reward_model_learns_a_ranking_and_reports_held_out_agreement(loss, one_torch_thread):
    from llm_core.model import GPT, GPTConfig

    tok = chat_tokenizer()
    rows = [r for r in usable_rankings(rankings_rows()) if r["source"] == "test"]
    train, val = rows[:45], rows[45:]
    torch.manual_seed(0)
    model = ScalarHeadModel(GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32)))
    cfg = RewardConfig(max_steps=40, batch_size=8, eval_every=0, device="cpu", checkpoint_every=0, ranking_loss=loss,
                       optim=OptimSection(lr=3e-3, min_lr=3e-4, weight_decay=0.0, warmup_steps=5))
    assert len(ranking_comparisons(tok, train, 64, "pairs")) == 6 * len(train)
    history = train_reward_model(model, tok, [], [], cfg, seed=0, train_rankings=train, val_rankings=val)
    final = history.evals[-1]
    assert final["rankings/eval_rankings"] == 15 and final["rankings/eval_pairs"] == 90
    assert final["rankings/pair_accuracy"] > 0.9 and final["rankings/top1_accuracy"] > 0.9, final

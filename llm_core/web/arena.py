"""The arena: one prompt, two anonymous answers (two models, or two samples of one), one vote, and the leaderboard
the votes make.

A vote is a RANKINGS row (`llm_core/preference/rankings.py`), the schema of the `rank` stage, so the reward data
reads it with the rest: answers [A, B] (and the person's better answer, when written, ranked above both), tiers by
the verdict (`A` / `B`: the better one first; `tie` and `both_bad`: A and B tied, `both_bad` with rating -1),
labeler `web:NAME` (or the browser's anonymous id), the time and any comment. The two models are kept in `source`
(`arena:MODEL_A,MODEL_B`), where the leaderboard finds them.

The leaderboard is Chatbot Arena's: a Bradley-Terry model fitted to every vote (a tie counts half a win each way;
`both_bad` is a tie), ratings on the Elo scale (400 points = 10:1 odds, mean 1000), and 95% intervals from
bootstrap resamples of the votes; beside them each model's win rate (ties counting half) with its own interval.
Votes between two samples of one model say nothing about models and are left out of it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from llm_core.chat.template import Message
from llm_core.preference.rankings import Judgement, RankItem, ranking_row

Verdict = Literal["A", "B", "tie", "both_bad"]
VERDICTS: tuple[str, ...] = ("A", "B", "tie", "both_bad")
SOURCE_PREFIX = "arena:"


@dataclass
class Battle:
    """Two answers to one prompt, the models that wrote them hidden until the vote."""

    prompt: list[Message]
    models: tuple[str, str]
    answers: dict[str, str] = field(default_factory=dict)  # side ("A", "B") -> the answer's text, once finished
    voted: bool = False


def vote_row(battle: Battle, verdict: Verdict, labeler: str, better: str = "", comment: str = "",
             when: dt.datetime | None = None) -> dict[str, Any]:
    """The RANKINGS row of a vote on a finished battle (see the module docstring)."""
    answers = [battle.answers["A"], battle.answers["B"]]
    tiers = {"A": [[0], [1]], "B": [[1], [0]], "tie": [[0, 1]], "both_bad": [[0, 1]]}[verdict]
    better = better.strip()
    if better and better not in answers:
        answers.append(better)
        tiers = [[2], *tiers]
    judgement = Judgement("ranked", tiers, labeler, comment, when or dt.datetime.now(dt.timezone.utc),
                          rating=-1 if verdict == "both_bad" else None)
    return ranking_row(RankItem(battle.prompt, answers, f"{SOURCE_PREFIX}{','.join(battle.models)}"), judgement)


def battle_outcomes(rows: Iterable[dict[str, Any]]) -> list[tuple[str, str, float]]:
    """(model A, model B, A's score: 1 win, 0.5 tie, 0 loss) of every arena vote between two different models."""
    out = []
    for row in rows:
        if not (row["source"] or "").startswith(SOURCE_PREFIX) or row["status"] != "ranked":
            continue
        a, _, b = row["source"].removeprefix(SOURCE_PREFIX).partition(",")
        if not b or a == b:
            continue
        tier = dict(zip(row["ranking"], row["tiers"]))
        out.append((a, b, 1.0 if tier[0] < tier[1] else 0.0 if tier[0] > tier[1] else 0.5))
    return out


def bradley_terry(outcomes: Sequence[tuple[int, int, float]], n_models: int, iters: int = 200) -> np.ndarray:
    """Log-strengths (natural log, mean 0) of `n_models` from (i, j, i's score) outcomes, by the minorisation-
    maximisation updates of Hunter (2004). Every model also plays one tie against a reference of strength 1, a weak
    prior that keeps an unbeaten (or winless) model's strength finite."""
    wins = np.full(n_models, 0.5)
    games = np.zeros((n_models, n_models))
    for i, j, s in outcomes:
        wins[i] += s
        wins[j] += 1 - s
        games[i, j] += 1
        games[j, i] += 1
    p = np.ones(n_models)
    for _ in range(iters):
        denominator = (games / (p[:, None] + p[None, :])).sum(axis=1) + 1 / (p + 1)
        p = wins / denominator
    log_p = np.log(p)
    return log_p - log_p.mean()


@dataclass
class Standing:
    model: str
    battles: int
    wins: int
    ties: int
    losses: int
    win_rate: float
    win_rate_ci: tuple[float, float]
    rating: float
    rating_ci: tuple[float, float]

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()}


def leaderboard(rows: Iterable[dict[str, Any]], resamples: int = 200, seed: int = 0) -> list[Standing]:
    """Every model that fought a battle against another, best rating first (see the module docstring)."""
    outcomes = battle_outcomes(rows)
    models = sorted({m for a, b, _ in outcomes for m in (a, b)})
    if not models:
        return []
    index = {m: i for i, m in enumerate(models)}
    games = [(index[a], index[b], s) for a, b, s in outcomes]
    elo = 400 / math.log(10)

    def fit(sample: Sequence[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray]:
        score, played = np.zeros(len(models)), np.zeros(len(models))
        for i, j, s in sample:
            score[i] += s
            score[j] += 1 - s
            played[i] += 1
            played[j] += 1
        rate = np.divide(score, played, out=np.full(len(models), np.nan), where=played > 0)
        return 1000 + elo * bradley_terry(sample, len(models)), rate

    ratings, rates = fit(games)
    rng = np.random.default_rng(seed)
    boot = [fit([games[k] for k in rng.integers(0, len(games), len(games))]) for _ in range(resamples)]
    boot_ratings = np.array([r for r, _ in boot])
    boot_rates = np.array([w for _, w in boot])
    out = []
    for m, i in index.items():
        mine = [(s if a == i else 1 - s) for a, b, s in games if i in (a, b)]
        rating_lo, rating_hi = np.percentile(boot_ratings[:, i], [2.5, 97.5])
        rate_lo, rate_hi = np.nanpercentile(boot_rates[:, i], [2.5, 97.5])
        out.append(Standing(m, len(mine), sum(s == 1 for s in mine), sum(s == 0.5 for s in mine),
                            sum(s == 0 for s in mine), float(rates[i]), (float(rate_lo), float(rate_hi)),
                            float(ratings[i]), (float(rating_lo), float(rating_hi))))
    return sorted(out, key=lambda s: -s.rating)

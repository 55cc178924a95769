"""People rank the SFT model's answers in a form (`rank.labeler: ui`; the Prefect UI shows it, `tasks/ask_people.py`).

The `rank` stage asks one form per batch of prompts (`rank.batch_size`): the description shows each prompt and its
K answers (labelled `1A`..`1E`, `2A`.. for the next prompt), the fields take each prompt's ranking (letters best
first, `=` for a tie), a skip box, a comment, and who ranked. In the Prefect UI the form is behind the paused run's
Resume button; `prefect.flow_runs.resume_flow_run(id, run_input=...)` is the same through the API.

A submission is checked twice: the server refuses characters that are not answer labels (each field's JSON-schema
pattern) and keeps the run paused; then `parse_ranking` refuses a ranking that is not a permutation of that
prompt's answers, repeats one, or names another prompt's answer: the same form is asked again at once with the
reasons at its top, and nothing of that batch is kept. An accepted batch is written into the artifact before the
next form opens, so a killed run asks only the batches not yet submitted.

A form left unanswered for `rank.timeout_s` ends the wait: with `on_timeout: fail` (default) the stage fails, named
`RankingTimeout`, with the submitted batches kept for the next run, and the task is not retried (a retry would only
wait again); with `on_timeout: commit` the artifact is committed with the unranked prompts marked `timeout`.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from pydantic import BaseModel, Field, create_model

from llm_core.people import AskPeople, Form
from llm_core.preference.rankings import (
    LETTERS,
    Judgement,
    Labeler,
    RankingError,
    RankItem,
    answer_label,
    parse_ranking,
)

INSTRUCTIONS = ("For each prompt, type its answer letters best first: `C > A = B > E > D` (`=` for a tie) or just "
                "`CABED`; or tick skip. A ranking must order all of the prompt's answers, each once.")


def quoted(text: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines() or [""])


def form_markdown(items: list[RankItem], batch: int, batches: int, error: str | None = None) -> str:
    """What the form shows above its fields: the instructions, any refusal, every prompt and its answers."""
    lines = [f"## Rank the answers: batch {batch + 1} of {batches}", "", INSTRUCTIONS, ""]
    if error:
        lines += ["**Refused, nothing of this batch was kept:**", "", *[f"- {e}" for e in error.splitlines()], ""]
    for n, item in enumerate(items, 1):
        lines += [f"### Prompt {n}", "", quoted(item.prompt[-1]["content"]), ""]
        for i, answer in enumerate(item.answers):
            lines += [f"**{answer_label(i, n)}**", "", quoted(answer), ""]
    return "\n".join(lines)


def ranking_fields(items: list[RankItem], batch: int) -> type[BaseModel]:
    """The typed form of one batch: per prompt a ranking, a skip box and a comment; then who ranked."""
    fields: dict[str, Any] = {}
    for n, item in enumerate(items, 1):
        letters = LETTERS[: len(item.answers)]
        example = " > ".join(letters)
        fields[f"prompt_{n}_ranking"] = (str, Field(
            "", title=f"Prompt {n}: ranking, best first",
            description=f"the letters of answers {answer_label(0, n)}..{answer_label(len(letters) - 1, n)}, e.g. "
                        f"{example}", pattern=rf"^[\s>=,;0-9{letters}{letters.lower()}]*$"))
        fields[f"prompt_{n}_skip"] = (bool, Field(False, title=f"Prompt {n}: skip (no ranking)"))
        fields[f"prompt_{n}_comment"] = (str, Field("", title=f"Prompt {n}: comment"))
    fields["ranked_by"] = (str, Field("", title="Your name", max_length=80))
    return create_model(f"RankBatch{batch + 1}", **fields)


def judgements_from_form(values: dict[str, Any], items: list[RankItem]) -> list[Judgement]:
    """One judgement per prompt from a submitted form; RankingError listing every unusable ranking."""
    who = str(values.get("ranked_by") or "").strip()
    labeler = f"ui:{who}" if who else "ui"
    out, errors = [], []
    for n, item in enumerate(items, 1):
        comment = str(values.get(f"prompt_{n}_comment") or "")
        if values.get(f"prompt_{n}_skip"):
            out.append(Judgement("skipped", labeler=labeler, comment=comment))
            continue
        try:
            tiers = parse_ranking(str(values.get(f"prompt_{n}_ranking") or ""), len(item.answers), n)
        except RankingError as e:
            errors.append(str(e))
            continue
        out.append(Judgement("ranked", tiers, labeler, comment))
    if errors:
        raise RankingError("\n".join(errors))
    return out


def form_labeler(ask: AskPeople, timeout_s: int, poll_s: int) -> Labeler:
    """A labeler that asks people the batch's form until an acceptable submission or the timeout."""
    log = logging.getLogger("llm_core.rank")

    def label(items: list[RankItem], batch: int, batches: int) -> list[Judgement]:
        error = None
        for attempt in itertools.count():  # until a submission is accepted or a form times out
            log.info("rank: waiting for the form of batch %d/%d (%d prompts); open the paused run in the UI and "
                     "press Resume", batch + 1, batches, len(items))
            submitted = ask(Form(ranking_fields(items, batch), form_markdown(items, batch, batches, error),
                                 key=f"rank-batch-{batch}-{attempt}", timeout_s=timeout_s, poll_s=poll_s))
            if submitted is None:
                log.warning("rank: nobody submitted batch %d/%d within %d s", batch + 1, batches, timeout_s)
                return [Judgement("timeout", labeler="ui") for _ in items]
            try:
                return judgements_from_form(submitted, items)
            except RankingError as e:
                error = str(e)
                log.warning("rank: batch %d refused, asking again: %s", batch + 1, error)
        raise AssertionError("unreachable")

    return label

"""Rankings: K answers to one prompt put in order, best first, by a person (Prefect form, terminal, chat) or a model.

The `rankings` data contract (one row per prompt, `RANKINGS`), how a typed ranking is read and checked, and the
pairs a ranking implies. A ranking is typed as answer labels best first: `C A B E D`, `C > A = B > E > D` (`=` is a
tie) or `CABED`. Answers are labelled by letter; in a form that shows several prompts, prompt 2's answers are also
`2A`..`2E`, and a ranking that names another prompt's answer is refused, as is one that is not a permutation.

A row records ties (`tiers`: equal numbers are tied) and skips (`status`), never guessing either: a skipped or
timed-out prompt implies no pairs, and tied answers imply no pair between them. K answers strictly ordered imply
K(K-1)/2 pairs (better, worse). Chat feedback uses the same rows: a reply with a better answer written by the
person is a ranking of two; a thumbs up or down alone is a `rating` (+1 / -1), and the up- and down-rated replies
to the same prompt are paired when the reward data is built (`rated_groups`).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import re
import string
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from llm_core.chat.template import Message
from llm_core.schemas import PROMPT_MESSAGE

Status = Literal["ranked", "skipped", "timeout", "rated"]
LETTERS = string.ascii_uppercase

RANKINGS = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("prompt", pa.list_(PROMPT_MESSAGE)),
        ("answers", pa.list_(pa.string())),
        ("ranking", pa.list_(pa.int32())),  # answer indices, best first (empty when skipped)
        ("tiers", pa.list_(pa.int32())),  # tier of each ranking position: equal tiers are ties, 0 is best
        ("pairs", pa.list_(pa.struct([("chosen", pa.int32()), ("rejected", pa.int32())]))),
        ("rating", pa.int8()),  # chat thumbs: +1 / -1 on answers[0]; null for rankings
        ("status", pa.string()),  # ranked | skipped | timeout | rated
        ("labeler", pa.string()),  # ui:<person> | cli | model:<judge> | chat | web:<person>
        ("comment", pa.string()),
        ("ranked_at", pa.timestamp("us", tz="UTC")),
        ("source", pa.string()),
    ]
)


class RankingError(ValueError):
    """A submitted ranking that cannot be used; the message says which prompt and what is wrong."""


def prompt_id(prompt: Sequence[Message]) -> str:
    """16 hex chars identifying a prompt (its messages), stable across runs."""
    return hashlib.sha256(json.dumps(list(prompt), sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass
class RankItem:
    """One prompt and the K answers waiting to be ranked."""

    prompt: list[Message]
    answers: list[str]
    source: str = "rank"

    @property
    def prompt_id(self) -> str:
        return prompt_id(self.prompt)


@dataclass
class Judgement:
    """What a labeler said about one prompt's answers."""

    status: Status
    tiers: list[list[int]] = field(default_factory=list)  # answer indices, best tier first
    labeler: str = ""
    comment: str = ""
    # When a person ranked; None for a model's ranking, a function of its inputs rather than an event, so that a
    # rerun writes the same bytes.
    ranked_at: dt.datetime | None = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    rating: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "tiers": self.tiers, "labeler": self.labeler, "comment": self.comment,
                "ranked_at": self.ranked_at.isoformat() if self.ranked_at else None, "rating": self.rating}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Judgement:
        ranked_at = dt.datetime.fromisoformat(obj["ranked_at"]) if obj.get("ranked_at") else None
        return cls(obj["status"], [list(t) for t in obj["tiers"]], obj["labeler"], obj.get("comment", ""),
                   ranked_at, obj.get("rating"))


Labeler = Callable[[list[RankItem], int, int], list[Judgement]]  # (batch items, batch number, batches) -> judgements


def answer_label(index: int, prompt_no: int | None = None) -> str:
    """`C` for answer 2, or `3C` when prompts are numbered (a form showing several prompts)."""
    return f"{'' if prompt_no is None else prompt_no}{LETTERS[index]}"


TOKEN = re.compile(r"\s*(?:(?P<label>(?P<no>\d*)(?P<letter>[A-Za-z]))|(?P<tie>=)|(?P<sep>[>,;]))\s*")


def parse_ranking(text: str, k: int, prompt_no: int | None = None) -> list[list[int]]:
    """Tiers of answer indices, best first, from a typed ranking of all `k` answers; RankingError if it is not a
    permutation of this prompt's answers."""
    where = f"prompt {prompt_no}" if prompt_no is not None else "ranking"
    labels = ", ".join(answer_label(i) for i in range(k))
    tiers: list[list[int]] = []
    seen: set[int] = set()
    pos, tie_next = 0, False
    text = text.strip()
    if not text:
        raise RankingError(f"{where}: no ranking given; order all {k} answers ({labels}), best first, or skip it")
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise RankingError(f"{where}: cannot read {text[pos:pos + 10]!r} in {text!r}; write the answer "
                               f"labels best first, e.g. {' > '.join(answer_label(i) for i in range(k))}")
        pos = m.end()
        if m["tie"]:
            if not tiers or tie_next:
                raise RankingError(f"{where}: '=' must stand between two answers in {text!r}")
            tie_next = True
            continue
        if m["sep"]:
            continue
        index = LETTERS.index(m["letter"].upper())
        if m["no"] and prompt_no is not None and int(m["no"]) != prompt_no:
            raise RankingError(f"{where}: answer {m['label'].upper()} belongs to prompt {int(m['no'])}, not to "
                               f"prompt {prompt_no}; rank this prompt's answers ({labels})")
        if index >= k:
            raise RankingError(f"{where}: there is no answer {m['letter'].upper()}; the answers are {labels}")
        if index in seen:
            raise RankingError(f"{where}: answer {LETTERS[index]} is ranked twice in {text!r}")
        seen.add(index)
        if tie_next:
            tiers[-1].append(index)
        else:
            tiers.append([index])
        tie_next = False
    if tie_next:
        raise RankingError(f"{where}: {text!r} ends with '='")
    missing = [LETTERS[i] for i in range(k) if i not in seen]
    if missing:
        raise RankingError(f"{where}: answer(s) {', '.join(missing)} not ranked; a ranking orders all {k} answers")
    return tiers


def format_ranking(tiers: Sequence[Sequence[int]]) -> str:
    return " > ".join(" = ".join(LETTERS[i] for i in tier) for tier in tiers)


def implied_pairs(tiers: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """(better, worse) answer indices for every two answers in different tiers: K(K-1)/2 without ties."""
    return [(b, w) for i, upper in enumerate(tiers) for lower in tiers[i + 1:] for b in upper for w in lower]


def ranking_row(item: RankItem, judgement: Judgement) -> dict[str, Any]:
    """A RANKINGS row."""
    order = [i for tier in judgement.tiers for i in tier]
    tier_of = [t for t, tier in enumerate(judgement.tiers) for _ in tier]
    return {
        "prompt_id": item.prompt_id, "prompt": item.prompt, "answers": item.answers, "ranking": order,
        "tiers": tier_of, "pairs": [{"chosen": b, "rejected": w} for b, w in implied_pairs(judgement.tiers)],
        "rating": judgement.rating, "status": judgement.status, "labeler": judgement.labeler,
        "comment": judgement.comment, "ranked_at": judgement.ranked_at, "source": item.source,
    }


def row_tiers(row: dict[str, Any]) -> list[list[int]]:
    """The tiers (best first) of a RANKINGS row."""
    tiers: dict[int, list[int]] = defaultdict(list)
    for index, tier in zip(row["ranking"], row["tiers"]):
        tiers[tier].append(index)
    return [tiers[t] for t in sorted(tiers)]


def write_rankings(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write RANKINGS rows to a local Parquet file (atomically); returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(list(rows), schema=RANKINGS)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return table.num_rows


def read_rankings(path: str | Path) -> list[dict[str, Any]]:
    """RANKINGS rows of a Parquet file, or of every `*.parquet` under a folder (sorted by name)."""
    path = Path(path)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    rows: list[dict[str, Any]] = []
    for f in files:
        table = pq.read_table(f)
        missing = set(RANKINGS.names) - set(table.column_names)
        if missing:
            raise ValueError(f"{f} is not a rankings file: it lacks column(s) {sorted(missing)}")
        rows += table.select(RANKINGS.names).to_pylist()
    return rows


def append_rankings(path: str | Path, rows: Sequence[dict[str, Any]]) -> int:
    """Add rows to a rankings file (rewritten atomically: chat feedback files are small); returns the new total.
    Writers take the file's lock (`.NAME.lock` beside it) in turn, so concurrent appends, from threads or processes
    (a terminal chat and a web chat), all land."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:  # each open is its own flock holder
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        old = read_rankings(path) if path.exists() else []
        return write_rankings(path, [*old, *rows])


def rated_groups(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rankings made of ratings: for each prompt with both thumbs-up and thumbs-down replies, one row ranking the
    up-rated replies (tied) above the down-rated ones (tied)."""
    by_prompt: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["status"] == "rated" and row["rating"] in (1, -1):
            by_prompt[row["prompt_id"]][row["rating"]].append(row)
    for groups in by_prompt.values():
        ups, downs = groups[1], groups[-1]
        answers = list(dict.fromkeys(r["answers"][0] for r in ups + downs))
        up = sorted({answers.index(r["answers"][0]) for r in ups})
        down = sorted({answers.index(r["answers"][0]) for r in downs} - set(up))
        if not up or not down:
            continue
        first = (ups + downs)[0]
        judgement = Judgement("ranked", [up, down], "chat:ratings", ranked_at=first["ranked_at"])
        yield ranking_row(RankItem(first["prompt"], answers, first["source"]), judgement)


def usable_rankings(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that order at least two answers (ranked rows with a pair), with ratings turned into rankings."""
    rows = list(rows)
    ranked = [r for r in rows if r["status"] == "ranked" and r["pairs"]]
    return ranked + list(rated_groups(rows))


def chat_feedback_row(prompt: Sequence[Message], reply: str, thumbs_up: bool, better: str | None = None,
                      labeler: str = "chat", source: str = "chat") -> dict:
    """A RANKINGS row for a thumbs up/down on a chat reply: a rating, or with a better answer written by the person,
    a ranking of two (the better answer first)."""
    rating = 1 if thumbs_up else -1
    if better and better.strip() and better.strip() != reply:
        item = RankItem(list(prompt), [reply, better.strip()], source)
        return ranking_row(item, Judgement("ranked", [[1], [0]], labeler, rating=rating))
    return ranking_row(RankItem(list(prompt), [reply], source), Judgement("rated", [[0]], labeler, rating=rating))


def record_chat_feedback(path: str | Path, prompt: Sequence[Message], reply: str, thumbs_up: bool,
                         better: str | None = None, labeler: str = "chat", source: str = "chat") -> int:
    """Append the row of a thumbs up/down (and any better answer) on a chat reply to the rankings file at `path`:
    what `/good` and `/bad` in the terminal and the thumbs and edits of the web chat do. Returns the file's rows."""
    return append_rankings(path, [chat_feedback_row(prompt, reply, thumbs_up, better, labeler, source)])

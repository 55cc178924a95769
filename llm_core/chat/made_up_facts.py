"""Made-up facts for the search tool: short passages about places, people and ships that do not exist, so a model
can only answer questions about them by searching (it cannot have read them in pretraining).

`python -m llm_core.chat.made_up_facts data/tools/facts.jsonl` writes the file the tiny config indexes: one JSON
line per fact with the `url` and `text` the `index` stage reads, the `entity` it is about, and its `questions`
(question, answer, reply) that the SFT tool conversations and the eval's search suite ask. Deterministic for a seed.

Names are built from syllables of their own and a name containing a syllable of the "I don't know" eval set
(`data/eval/idk.jsonl`) or of the refusal generator (`synthetic.SYLLABLES`) is never made, so a fact can never
answer, or contaminate, a question the model should refuse. Passages are kept to about 20 tokens: with the search
call and the answer they fit the tiny model's 128-token context. There are many of them (`FACT_COUNT`) for the reason
given there.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterable
from pathlib import Path

from llm_core.chat.synthetic import SYLLABLES

FACT_SYLLABLES = ["bel", "cam", "dor", "esk", "fen", "hal", "ith", "jor", "kel", "mon", "nor", "pes", "rav", "sen",
                  "tal", "wen", "ab", "ur", "ov", "ig"]
IDK_SYLLABLES = ["plix", "quon", "nemb", "carv", "zund", "ulth", "brax", "drim", "osk", "vey", "gav", "fel", "throm",
                 "irsk"]
FOREIGN_SYLLABLES = tuple(SYLLABLES) + tuple(IDK_SYLLABLES)
BASE_URL = "https://atlas.example/"
# Enough facts that a small model cannot learn each training fact's numbers by heart in a few epochs of SFT: its
# search conversations then only pay off by copying the number out of the tool's output.
FACT_COUNT = 1000

# kind -> (entity format, passage, [(question, answer field, reply)]); fields: e (name), y (year), n (number)
KINDS: dict[str, tuple[str, str, list[tuple[str, str, str]]]] = {
    "town": ("{e}", "{e} was founded in {y} and has {n} inhabitants.",
             [("When was {e} founded?", "y", "It was founded in {v}."),
              ("How many people live in {e}?", "n", "It has {v} inhabitants.")]),
    "mountain": ("Mount {e}", "Mount {e} is {n} metres high and was first climbed in {y}.",
                 [("How high is Mount {e}?", "n", "It is {v} metres high."),
                  ("When was Mount {e} first climbed?", "y", "It was first climbed in {v}.")]),
    "lake": ("Lake {e}", "Lake {e} is {n} metres deep and was first mapped in {y}.",
             [("How deep is Lake {e}?", "n", "It is {v} metres deep."),
              ("When was Lake {e} first mapped?", "y", "It was first mapped in {v}.")]),
    "clockmaker": ("{e}", "{e} was a clockmaker born in {y} who built {n} clocks.",
                   [("When was {e} born?", "y", "She was born in {v}."),
                    ("How many clocks did {e} build?", "n", "She built {v} clocks.")]),
    "ferry": ("the {e}", "The {e} is a ferry built in {y} that carries {n} passengers.",
              [("When was the {e} built?", "y", "It was built in {v}."),
               ("How many passengers does the {e} carry?", "n", "It carries {v} passengers.")]),
}
NUMBER_RANGES = {"town": (800, 9999), "mountain": (1200, 4800), "lake": (12, 380), "clockmaker": (20, 900),
                 "ferry": (60, 950)}


def is_clean_name(name: str) -> bool:
    """True when no syllable of the refusal generator or of the "I don't know" eval set occurs in the name."""
    low = name.lower()
    return not any(s in low for s in FOREIGN_SYLLABLES)


def fact_name(rng: random.Random, words: int, taken: set[str]) -> str:
    """A new name of `words` words of 2 or 3 syllables, clean (see `is_clean_name`) and not used before."""
    while True:
        name = " ".join("".join(rng.choice(FACT_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
                        for _ in range(words))
        if name not in taken and is_clean_name(name):
            taken.add(name)
            return name


def generate_facts(count: int = FACT_COUNT, seed: int = 16) -> list[dict]:
    """`count` facts, the kinds in turn; each with url, text, entity and its questions with answers."""
    rng = random.Random(seed)
    taken: set[str] = set()
    facts = []
    for i in range(count):
        kind = list(KINDS)[i % len(KINDS)]
        entity_format, passage, questions = KINDS[kind]
        name = fact_name(rng, 2 if kind == "clockmaker" else 1, taken)
        low, high = NUMBER_RANGES[kind]
        fields = {"e": name, "y": str(rng.randint(1420, 1990)),
                  "n": str(rng.randint(low, high))}
        facts.append({
            "url": BASE_URL + name.lower().replace(" ", "-"),
            "text": passage.format(**fields),
            "entity": entity_format.format(e=name),
            "questions": [{"question": q.format(e=name), "answer": fields[f], "reply": r.format(v=fields[f])}
                          for q, f, r in questions],
        })
    return facts


def write_facts(facts: Iterable[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(f, ensure_ascii=False, separators=(",", ":")) + "\n" for f in facts), encoding="utf-8")


if __name__ == "__main__":
    write_facts(generate_facts(), Path(sys.argv[1] if len(sys.argv) > 1 else "data/tools/facts.jsonl"))

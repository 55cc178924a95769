"""Generated conversations that teach the tools: the assistant calls Python for what is hard to do in one's head
and searches the index for facts it cannot know, then answers from the tool's output; and answers directly when
no tool is needed.

- Python (`python_conversations`): two-digit products (`47 * 29`), letter counts (`"strawberry".count("r")`),
  which of two decimals is bigger (`max(9.9, 9.11)`); single-digit products and integer comparisons are answered
  without a call. The call copies the question's numbers and quoted words token for token (the question quotes
  the word and the letter, so the call's `"strawberry"` is tokenised as the question's): a copy a small model can
  learn for numbers it never saw (the tiny run does; for words it falls back on the ones it was trained on).
- Search (`search_conversations`): the question about a made-up fact (`made_up_facts`) is the query, and the reply
  restates the sentence of the passage that answers it; when the search returned another passage, the reply says
  the search did not say, so no conversation teaches a number its output does not show (with bm25s's 33 stop words
  every `How many people live in X?` found a page about people; with the index's Glasgow list none does).

A Python reply is the tool's output alone (`4032.`), right after it: the shortest copy, and no stock phrase such as
"... is the product." that a small model would carry into other answers ("My name is the product.").

Every tool output in a conversation is what the real tool returned for that call at data-build time (the tool is
passed in: the Python sandbox, the search tool over the `index` artifact), never written by hand. A stable hash
keeps a quarter of the operand pairs, words, decimal pairs and facts out of every conversation (`is_heldout`):
the eval stage's tool suites ask those. Conversations are a question and one short reply, well within the tiny
model's 128-token context.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from llm_core.chat.hashing import unit_hash
from llm_core.chat.loaders import Sample, msg
from llm_core.chat.numbers import states_number
from llm_core.chat.template import tool_message
from llm_core.config import ConfigError
from llm_core.data_files import read_jsonl

ToolFn = Callable[[str], str]  # a call's text -> the output the model sees

HELDOUT_FRACTION = 0.25
UNFOUND_REPLY = "I don't know: the {tool} did not say."

# common English words, several with repeated letters (the "how many r in strawberry" kind of question)
WORDS = ["strawberry", "banana", "apple", "cherry", "lemon", "orange", "pepper", "tomato", "potato", "carrot", "coffee", "butter", "letter", "paper", "pillow", "mirror", "window", "kitchen", "garden", "flower", "forest", "river", "mountain", "valley", "island", "ocean", "harbour", "bridge", "tunnel", "castle", "village", "market", "school", "teacher", "student", "library", "pencil", "notebook", "blanket", "bottle", "button", "pocket", "candle", "ribbon", "balloon", "umbrella", "giraffe", "elephant", "kangaroo", "monkey", "rabbit", "parrot", "penguin", "dolphin", "squirrel", "mosquito", "butterfly", "committee", "bookkeeper", "mississippi", "tennessee", "assessment", "possession", "necessary", "occasion", "embarrass", "accommodate", "millennium", "parallel", "beginning", "different", "tomorrow", "yesterday", "summer", "winter", "autumn", "weather", "thunder", "rainbow", "diamond", "crystal", "marble", "silver", "copper", "bronze", "engine", "rocket", "satellite", "telescope", "microscope", "keyboard", "printer", "computer", "internet", "puzzle", "riddle", "banner", "cannon", "tattoo", "balloonist", "referee", "coffeepot", "address", "success"]


def is_heldout(kind: str, item: object) -> bool:
    """True for the items no training conversation holds (a stable hash, the same in every run): kinds `product`
    (operand pair), `letters` (word), `decimals` (pair of numbers), `fact` (entity)."""
    return unit_hash(item, f"heldout-tool-{kind}:") < HELDOUT_FRACTION


def heldout_key(kind: str, item: tuple) -> object:
    """What is held out of a generated item: the word of a letter count, else the whole item."""
    return item[0] if kind == "letters" else list(item)


@dataclass(frozen=True)
class ToolQuestion:
    """A question, the tool call that answers it (None: answered without a tool), and the expected answer; `reply`
    turns the tool's output into the final answer."""

    kind: str
    question: str
    call: str | None
    answer: str
    reply: str  # with `{output}` where the tool's output goes

    def key(self) -> object:
        return [self.kind, self.question]


# -- Python questions ------------------------------------------------------------------------------------------------


def product_question(a: int, b: int) -> ToolQuestion:
    return ToolQuestion("product", f"What is {a} * {b}?", f"{a} * {b}", str(a * b), "{output}.")


def letters_question(word: str, letter: str) -> ToolQuestion:
    return ToolQuestion("letters", f'How many "{letter}" are in "{word}"?', f'"{word}".count("{letter}")',
                        str(word.count(letter)), "{output}.")


def decimals_question(x: str, y: str) -> ToolQuestion:
    bigger = x if float(x) > float(y) else y
    return ToolQuestion("decimals", f"Which is bigger, {x} or {y}?", f"max({x}, {y})", bigger, "{output}.")


def random_product(rng: random.Random) -> tuple[int, int]:
    return rng.randint(11, 99), rng.randint(11, 99)


def random_letters(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(WORDS)
    letter = rng.choice(word) if rng.random() < 0.85 else rng.choice("abcdefghijklmnopqrstuvwxyz")
    return word, letter


def random_decimals(rng: random.Random) -> tuple[str, str]:
    """Mostly the trap of 9.9 vs 9.11: the same whole part, the longer decimal the smaller number."""
    whole = rng.randint(0, 20)
    one = rng.randint(2, 9)
    two = rng.randint(11, one * 10 - 1)
    two += two % 10 == 0  # no trailing zero
    pair = [f"{whole}.{one}", f"{whole}.{two}"]
    if rng.random() < 0.3:  # or two unrelated decimals
        pair = [f"{rng.randint(0, 20)}.{rng.randint(1, 99)}" for _ in range(2)]
    if pair[0] == pair[1] or float(pair[0]) == float(pair[1]):
        pair[1] = f"{whole + 1}.{one}"
    rng.shuffle(pair)
    return pair[0], pair[1]


def heldout_python_questions(kind: str, count: int, seed: int) -> list[ToolQuestion]:
    """`count` distinct held-out questions of one kind (`product`, `letters`, `decimals`), for the eval."""
    make = PYTHON_KINDS[kind]
    rng, seen, out = random.Random(seed), set(), []
    for _ in range(count * 200):
        item = make[0](rng)
        if is_heldout(kind, heldout_key(kind, item)) and item not in seen:
            seen.add(item)
            out.append(make[1](*item))
            if len(out) == count:
                break
    return out


PYTHON_KINDS: dict[str, tuple[Callable[[random.Random], tuple], Callable[..., ToolQuestion]]] = {
    "product": (random_product, product_question),
    "letters": (random_letters, letters_question),
    "decimals": (random_decimals, decimals_question),
}


def direct_question(rng: random.Random) -> ToolQuestion:
    """A question answered without a tool: a single-digit product (in words: "What is 6 * 7?" would read as the
    held-out sum "What is 6 + 7?" to the eval's decontamination) or two whole numbers to compare."""
    if rng.random() < 0.5:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return ToolQuestion("direct", f"What is {a} times {b}?", None, str(a * b), f"{a * b}.")
    a, b = rng.sample(range(1, 100), 2)
    return ToolQuestion("direct", f"Which is bigger, {a} or {b}?", None, str(max(a, b)), f"{max(a, b)}.")


def python_questions(count: int, seed: int, direct_share: float) -> Iterator[ToolQuestion]:
    """Training questions for the Python tool, the kinds in turn; never a held-out item."""
    rng = random.Random(seed)
    kinds = list(PYTHON_KINDS)
    for i in range(count):
        if rng.random() < direct_share:
            yield direct_question(rng)
            continue
        kind = kinds[i % len(kinds)]
        make, build = PYTHON_KINDS[kind]
        item = make(rng)
        while is_heldout(kind, heldout_key(kind, item)):
            item = make(rng)
        yield build(*item)


# -- search questions ------------------------------------------------------------------------------------------------


def read_facts(path: str) -> list[dict]:
    """The facts file (`made_up_facts`): each line needs url, text, entity and questions; errors name the line."""
    return read_jsonl(path, ("url", "text", "entity", "questions"), "facts file")


@dataclass(frozen=True)
class FactQuestion:
    question: ToolQuestion
    entity: str
    url: str


def fact_questions(facts: list[dict], heldout: bool) -> list[FactQuestion]:
    """Every question of the facts that are held out (`heldout=True`) or of those that are not."""
    return [
        FactQuestion(ToolQuestion("fact", q["question"], q["question"], q["answer"], q["reply"]), f["entity"],
                     f["url"])
        for f in facts if is_heldout("fact", f["entity"]) == heldout for q in f["questions"]
    ]


# -- conversations ---------------------------------------------------------------------------------------------------


def tool_reply(question: ToolQuestion, tool_kind: str, tool: ToolFn | None) -> dict:
    """The assistant message: the call, the real tool's output and the answer built from it, as `parts`. A reply
    written beforehand (a fact's sentence) is kept only when the output holds its answer; otherwise (the search
    found another document) the reply says so (`UNFOUND_REPLY`) rather than state a number the model could not have
    read: a conversation never teaches making one up."""
    if question.call is None:
        return tool_message([("text", question.reply)])
    assert tool is not None, f"{question.kind} questions need the {tool_kind} tool"
    output = tool(question.call)
    # a reply made of the output (Python's `{output}.`) holds the answer by construction
    grounded = "{output}" in question.reply or states_number(output, question.answer)
    reply = question.reply.format(output=output.strip()) if grounded else UNFOUND_REPLY.format(tool=tool_kind)
    return tool_message([(tool_kind, question.call), ("output", output), ("text", reply)])


def python_conversations(count: int, seed: int, python: ToolFn, direct_share: float = 0.2) -> list[Sample]:
    """`count` Python-tool conversations (see the module docstring); outputs from `python`, the sandbox."""
    return [Sample([msg("user", q.question), tool_reply(q, "python", python)], "python_tool")
            for q in python_questions(count, seed, direct_share)]


def search_conversations(count: int, seed: int, facts_path: str, search: ToolFn) -> list[Sample]:
    """`count` search conversations about the facts that are not held out; outputs from `search`, the search tool
    over the index that holds the facts file."""
    pool = fact_questions(read_facts(facts_path), heldout=False)
    if not pool:
        raise ConfigError(f"facts file {facts_path}: every fact is held out for the eval")
    rng = random.Random(seed)
    order: list[FactQuestion] = []
    while len(order) < count:  # every question once before any twice: copying pays, remembering does not
        order += rng.sample(pool, len(pool))
    return [Sample([msg("user", fq.question.question), tool_reply(fq.question, "search", search)], "search_tool")
            for fq in order[:count]]

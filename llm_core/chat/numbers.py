"""Numbers in text, read one way everywhere: a reply's final answer (RL rewards, the eval), whether two numbers are
equal, and whether a text states a number (the eval's "tool output holds the answer", and the SFT data's rule that a
search reply states only what its output shows)."""

from __future__ import annotations

import re

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_answer(text: str) -> str | None:
    """The number after the last `####`, or else the last number in the text; commas dropped."""
    tail = text.rsplit("####", 1)[1] if "####" in text else text
    numbers = NUMBER.findall(tail)
    if not numbers:
        return None
    return (numbers[0] if "####" in text else numbers[-1]).replace(",", "")


def same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def states_number(text: str, expected: str) -> bool:
    """Whether one of the numbers in `text` is `expected` (`301` is not in `1301`; `7,685` is 7685)."""
    return any(same_number(n.replace(",", ""), expected) for n in NUMBER.findall(text))

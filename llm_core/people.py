"""What a stage asks people, without knowing where they answer: a `Form` (typed fields, the text shown above them,
how long to wait) and `AskPeople`, the function the layer that has people supplies (tasks/ask_people.py pauses the
Prefect flow run with the form in the UI). The stage reads the submitted values or None when nobody answered in time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class Form:
    fields: type[BaseModel]  # the typed fields; a server refuses a submission its field patterns reject
    description: str  # markdown shown above the fields
    key: str  # unique per form of a run, so a resumed run asks again rather than reading an older answer
    timeout_s: int  # how long to wait for a submission
    poll_s: int  # seconds between checks for one


AskPeople = Callable[[Form], dict[str, Any] | None]  # the submitted values, or None when the form timed out

"""The report card's champion section: the `promote` decision of the run (promoted or refused, the gated metrics
side by side, the reasons) and the forgetting table (bits per byte on each snapshot's held-out text, champion and
challenger), placed right after the card's opening lines."""

from __future__ import annotations

from llm_core.manifest import Manifest

SECTION_TITLE = "## Champion and challenger"


def champion_section(promote: Manifest) -> str:
    extra = promote.extra
    verdict = "promoted" if extra.get("promoted") else "refused"
    line = (f"**Champion decision: {verdict}** (corpus `{extra.get('corpus')}`, snapshot `{extra.get('snapshot')}`): "
            + "; ".join(extra.get("reasons", [])) + ".")
    # the stage's own tables, without its heading and verdict line (the line above says it)
    body = extra.get("markdown", "").split("\n\n", 2)[-1].strip()
    return "\n".join([SECTION_TITLE, "", line, "", body, ""])


def with_champion(card: str, promote: Manifest) -> str:
    """The card with the champion section inserted before its first section."""
    head, sep, rest = card.partition("\n## ")
    return f"{head}\n{champion_section(promote)}{sep}{rest}" if sep else card + "\n" + champion_section(promote)

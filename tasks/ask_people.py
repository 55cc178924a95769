"""People answer a stage's forms in the Prefect UI: the flow run pauses with the form behind its Resume button.

It pauses (`pause_flow_run`) rather than suspends: `suspend_flow_run` cannot be called from a task, and a suspended
run is rescheduled from its start by a worker, which an ephemeral or CLI run does not have; the paused process holds
only what the form shows.
"""

from __future__ import annotations

from typing import Any

from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import create_model

from llm_core.people import Form


def ask_in_ui(form: Form) -> dict[str, Any] | None:
    """Pause the flow run until the form is submitted (its values) or `form.timeout_s` passes (None)."""
    run_input = create_model(form.fields.__name__, __base__=(RunInput, form.fields))
    try:
        submitted = pause_flow_run(wait_for_input=run_input.with_initial_data(description=form.description),
                                   timeout=form.timeout_s, poll_interval=form.poll_s, key=form.key)
    except FlowPauseTimeout:
        return None
    return submitted.model_dump()

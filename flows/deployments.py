"""The deployments a Prefect server shows: what they run, their default parameters, schedule and trigger.

| deployment | flow | how it starts |
|---|---|---|
| `full-pipeline` | `full_pipeline` | by hand (UI "Run" button, the run form; defaults: the served config) |
| `data-refresh` | `data_refresh` | cron, `0 2 * * *` by default, in a configurable time zone |
| `stage` | `one_stage` | by hand, one stage by name |
| `train` | `train` | when a `data-refresh` run completes: a deployment trigger on the event it emits, passing its form on |

Their parameters are the run form (flows/run_options.py): `options` (config file, overrides, stages, snapshot) and
`config` (advanced: the whole config as JSON, empty by default).

`llmpipe serve` (cli/serve.py) also makes sure the "crash zombie flows" automation exists on the server: a flow
run whose heartbeats stop (its machine died) is marked Crashed, so a retry can resume it from its committed shards
and checkpoints. Served flow runs execute in subprocesses of `llmpipe serve`, in its working directory, so relative paths
in the config (data/, artifacts/) resolve against the directory it was started from.

`python -m flows.deployments NAME [CONFIG [KEY=VALUE ...]]` prints a deployment's parameters as JSON (for `prefect deploy --params`).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.schedules import Cron
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

from flows.pipeline import REFRESH_COMPLETED, data_refresh, full_pipeline, one_stage
from flows.run_options import options_for, resolve_config
from flows.train import train
from llm_core.registry import STAGES

DEFAULT_CRON = "0 2 * * *"
DEPLOYMENTS = ("full-pipeline", "data-refresh", "stage", "train")
ZOMBIE_AUTOMATION = "Crash zombie flows"
TAGS = ["llm-pipeline"]


def deployment_parameters(name: str, config_path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Default parameters of deployment `name`, what its run form shows: `options` (the config file's name when it
    is in configs/, the overrides) and `config` (the whole config as JSON only for a file outside configs/), plus
    the stage name for `stage`. The config and overrides are validated here (ConfigError naming the key path)."""
    if name not in DEPLOYMENTS:
        raise ValueError(f"unknown deployment {name!r}; deployments are {list(DEPLOYMENTS)}")
    options, config = options_for(config_path, overrides)
    resolve_config(options, config)
    params: dict[str, Any] = {"options": options.model_dump(mode="json"), "config": config}
    if name == "stage":
        params["stage"] = next(iter(STAGES))  # the first stage of the pipeline
    return params


# What the trigger passes to `train`: the refresh's form and config, from the event it emits (flows/pipeline.py).
# A single `{{ ... }}` expression keeps its JSON type (a mapping here), as Prefect renders it with `tojson`.
TRAIN_PARAMETERS = {"options": "{{ event.payload.options }}", "config": "{{ event.payload.config }}"}


def after_data_refresh() -> DeploymentEventTrigger:
    """Fires once for every `data-refresh` deployment run that completed its stages, with its snapshot and config."""
    return DeploymentEventTrigger(
        name="after data-refresh",
        expect={REFRESH_COMPLETED},
        match_related=ResourceSpecification(
            {"prefect.resource.role": "deployment", "prefect.resource.name": "data-refresh"}
        ),
        parameters=TRAIN_PARAMETERS,
    )


def build_deployments(
    config_path: str | Path,
    overrides: list[str] | None = None,
    cron: str = DEFAULT_CRON,
    timezone: str = "UTC",
    with_train: bool = True,
) -> list[RunnerDeployment]:
    """The deployments of the project, with the config at `config_path` as their default parameters."""
    params = {name: deployment_parameters(name, config_path, overrides) for name in DEPLOYMENTS}
    deployments = [
        full_pipeline.to_deployment(
            name="full-pipeline", parameters=params["full-pipeline"], tags=TAGS,
            description="Every enabled stage, crawl to report. Pick a config, add overrides, then Run.",
        ),
        data_refresh.to_deployment(
            name="data-refresh", parameters=params["data-refresh"], tags=TAGS,
            schedule=Cron(cron, timezone=timezone),
            description=f"Nightly: crawl a new snapshot through to token shards ({cron}, {timezone}).",
        ),
        one_stage.to_deployment(
            name="stage", parameters=params["stage"], tags=TAGS,
            description="One stage by name; missing upstream stages run first.",
        ),
    ]
    if with_train:
        deployments.append(train.to_deployment(
            name="train", parameters=params["train"], tags=TAGS, triggers=[after_data_refresh()],
            description="Runs when a data-refresh completes: trains on that refresh's snapshot and config.",
        ))
    return deployments


def crash_zombie_flows(within: dt.timedelta) -> Automation:
    """Prefect's documented automation for self-hosted servers: after a flow run's heartbeat, expect another flow
    run event for it (heartbeat or any state) within `within`, or mark the run Crashed. `prefect.flow-run.*` in
    `expect` matters here: stage subflows end in a state named `Cached`, whose event is `prefect.flow-run.Cached`."""
    return Automation(
        name=ZOMBIE_AUTOMATION,
        description="Marks flow runs Crashed when their heartbeats stop (dead machine or container).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.*"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=within,
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message="Flow run marked as crashed: heartbeats stopped.")],
    )


def ensure_crash_zombie_automation() -> Automation:
    """Create the automation unless the server already has one of that name; it fires after three missed
    heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, 180 s by default)."""
    try:
        return Automation.read(name=ZOMBIE_AUTOMATION)
    except ValueError:
        every = PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() or 180
        return crash_zombie_flows(dt.timedelta(seconds=3 * every)).create()


def main(argv: list[str]) -> None:
    """`python -m flows.deployments NAME [CONFIG [KEY=VALUE ...]]`: print deployment NAME's parameters as JSON."""
    if not argv:
        sys.exit(f"usage: python -m flows.deployments {{{'|'.join(DEPLOYMENTS)}}} [CONFIG [KEY=VALUE ...]]")
    config = argv[1] if len(argv) > 1 else "configs/tiny.yaml"
    try:
        print(json.dumps(deployment_parameters(argv[0], config, argv[2:])))
    except ValueError as e:  # ConfigError too: the message names the key path
        sys.exit(str(e))


if __name__ == "__main__":
    main(sys.argv[1:])

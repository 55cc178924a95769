"""The `train` flow: every enabled stage on one crawl snapshot, the deployment that follows a data refresh.

Its trigger (flows/deployments.py, prefect.yaml) fires on the event a completed `data-refresh` emits and passes that
refresh's form on, with the snapshot it resolved: `train` then plans the same config and snapshot, so the data stages
are exactly the refresh's artifacts (cache hits) and only the training stages (and what follows them) do work: on
a later night of a corpus, continued pretraining from the champion, the evals and `promote`, which moves the
champion only when the gated metrics allow it. A
refresh that failed emits nothing, so it starts no training. Run by hand, the snapshot defaults to today's UTC date.
"""

from __future__ import annotations

from prefect import flow

from flows.pipeline import run_planned
from flows.run_options import ConfigJSON, RunOptions, resolve_config, today


@flow(name="train", log_prints=True)
def train(options: RunOptions = RunOptions(), config: ConfigJSON = {}) -> dict[str, str]:
    """Every enabled stage on the crawl snapshot `options.snapshot` (default: today's), reusing its refreshed data.

    Args:
        options: what to run: a config from configs/, overrides (key.path=value), stages, crawl snapshot
        config: advanced: the whole pipeline config as JSON; empty uses the config file
    """
    cfg = resolve_config(options, config, default_snapshot=today())
    return run_planned(cfg, options.stages or None)

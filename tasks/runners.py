"""The Prefect task runner a stage's shard fan-out uses, chosen by `run.task_runner` in the config."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from llm_core.config import ConfigError, RunConfig


def make_task_runner(run: RunConfig) -> TaskRunner:
    """threads: shard tasks are threads (llm_core hands their CPU work to its process pool: the fast local default);
    processes: Prefect's own process pool; dask / ray: a cluster at `task_runner_address` or a local one."""
    workers = run.workers or None
    if run.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=max(workers or 4, 4))
    if run.task_runner == "processes":
        return ProcessPoolTaskRunner(max_workers=workers)
    if run.task_runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as e:
            raise ConfigError("run.task_runner=dask needs prefect-dask: pip install 'llm-pipeline[dask]'") from e
        if run.task_runner_address:
            return DaskTaskRunner(address=run.task_runner_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers or 2, "threads_per_worker": 1,
                                              "env": {"PREFECT_API_URL": current_api_url()}})
    try:
        from prefect_ray import RayTaskRunner
    except ImportError as e:
        raise ConfigError("run.task_runner=ray needs prefect-ray: pip install 'llm-pipeline[ray]'") from e
    return RayTaskRunner(address=run.task_runner_address) if run.task_runner_address else RayTaskRunner()


def current_api_url() -> str:
    """The API this process reports to: the server's, or in ephemeral mode the temporary server's, which local
    workers then share instead of each starting a temporary server of their own (tens of seconds each)."""
    with get_client(sync_client=True) as client:
        return str(client.api_url)

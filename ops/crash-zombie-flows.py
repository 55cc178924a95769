"""Create the "Crash zombie flows" automation on the Prefect server at PREFECT_API_URL (once; a second run finds it).

A flow run whose process dies with its machine stays `Running` forever on a self-hosted server. With this
automation, a run that stops sending heartbeats (every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds, 180 by default)
for three intervals is marked `Crashed`; retrying it resumes from the committed shards and checkpoints.
`llmpipe serve` runs the same code on start.

    PREFECT_API_URL=http://localhost:4200/api .venv/bin/python ops/crash-zombie-flows.py
"""

from flows.deployments import ensure_crash_zombie_automation

if __name__ == "__main__":
    automation = ensure_crash_zombie_automation()
    print(f"{automation.name}: {automation.id} (within {automation.trigger.within})")

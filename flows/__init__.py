"""The DAGs (full pipeline, nightly data refresh, one stage) and their deployments.

Prefect's usage analytics stay off (no network here, and the project reports no usage): the server's analytics
setting and the client's `DO_NOT_TRACK`, which also silences Prefect's first-run telemetry notice, are defaulted
before any flow module imports Prefect; the environment can still override them.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

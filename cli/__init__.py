"""The `llmpipe` command line (cli.main): run the flows, inspect the artifact store, chat with the models."""

import flows  # noqa: F401  (flows/__init__.py turns Prefect's analytics off before any command imports Prefect)

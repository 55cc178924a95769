"""The DAGs (full pipeline, nightly data refresh, one stage), their deployments, and the `llmpipe` CLI."""

#!/usr/bin/env bash
# Deploy the four deployments of prefect.yaml to the process work pool `llm-pipeline` on the server at
# PREFECT_API_URL, each with CONFIG (and overrides) as its parameters, and create the "Crash zombie flows"
# automation. Then start workers with `prefect worker start --pool llm-pipeline`.
#
#   ops/deploy-to-pool.sh [CONFIG [KEY=VALUE ...]]
#   e.g. ops/deploy-to-pool.sh configs/tiny.yaml run.artifact_root=s3://llmpipe/artifacts
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/tiny.yaml}
shift || true
py=${PYTHON:-.venv/bin/python}
export LLMPIPE_DIR=${LLMPIPE_DIR:-$PWD}

"$py" -m prefect work-pool inspect llm-pipeline >/dev/null 2>&1 \
  || "$py" -m prefect work-pool create llm-pipeline --type process
for name in full-pipeline data-refresh stage train; do
  params=$("$py" -m flows.deployments "$name" "$config" "$@")
  "$py" -m prefect --no-prompt deploy --name "$name" --params "$params"
done
"$py" ops/crash-zombie-flows.py

#!/usr/bin/env bash
# Load the Prefect UI in headless Chromium and keep what it rendered: for each page, the DOM after the app ran
# (PAGE.html, what the tests grep) and a screenshot (PAGE.png).
#
#   ops/ui-check.sh UI_URL [FLOW_RUN_ID] [OUT_DIR] [DEPLOYMENT_ID]
#   e.g. ops/ui-check.sh http://127.0.0.1:4200 "$RUN_ID" bench/out/ui "$DEPLOYMENT_ID"
#
# Pages: /deployments; with a run id, /runs/flow-run/ID (its state, subflows and logs) and /artifacts; with a
# deployment id, its run form (run-form: Run > Custom run); and any NAME=PATH pages listed in
# UI_CHECK_PAGES (space-separated, e.g. "loss=/artifacts/artifact/ID").
# Chromium: Debian's package (apt-get install -y chromium). The UI is a single-page app: without a virtual time
# budget the page is captured before it has rendered anything.
set -euo pipefail
ui=${1:?usage: ops/ui-check.sh UI_URL [FLOW_RUN_ID] [OUT_DIR]}
run_id=${2:-}
out=${3:-bench/out/ui}
deployment_id=${4:-}
browser=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome)}
mkdir -p "$out"

pages=("deployments=$ui/deployments")
if [[ -n "$run_id" ]]; then
  pages+=("flow-run=$ui/runs/flow-run/$run_id" "artifacts=$ui/artifacts")
fi
if [[ -n "$deployment_id" ]]; then
  pages+=("run-form=$ui/deployments/deployment/$deployment_id/run")
fi

for extra in ${UI_CHECK_PAGES:-}; do
  pages+=("${extra%%=*}=$ui${extra#*=}")
done

for page in "${pages[@]}"; do
  name=${page%%=*}
  url=${page#*=}
  flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars
         --virtual-time-budget="${UI_CHECK_BUDGET_MS:-15000}" --window-size=1440,1000
         --user-data-dir="$(mktemp -d)")
  "$browser" "${flags[@]}" --dump-dom "$url" > "$out/$name.html" 2>/dev/null
  "$browser" "${flags[@]}" --screenshot="$out/$name.png" "$url" >/dev/null 2>&1
  echo "$name: $url -> $out/$name.html, $out/$name.png"
done

#!/usr/bin/env bash
# Delete the kind cluster that scripts/cluster-up.sh created (and everything in it).
set -euo pipefail

CLUSTER_NAME="${CLUSTER_NAME:-kfp-retrain}"

command -v kind >/dev/null 2>&1 || { echo "cluster-down: 'kind' is not installed" >&2; exit 1; }
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  kind delete cluster --name "$CLUSTER_NAME"
else
  echo "cluster-down: no kind cluster named '$CLUSTER_NAME'"
fi

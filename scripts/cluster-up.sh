#!/usr/bin/env bash
# Create a local kind cluster running Kubeflow Pipelines (standalone), load the component image
# into it, and port-forward the KFP UI and API to http://localhost:${KFP_PORT}.
#
#   scripts/cluster-up.sh [IMAGE]        (make cluster IMAGE=kfp-retrain:0.1.0)
#
# Needs docker (with a running engine), kind and kubectl. Installs KFP from its official
# kustomize manifests at a pinned release; the platform-agnostic variant runs on kind.
set -euo pipefail

CLUSTER_NAME="${CLUSTER_NAME:-kfp-retrain}"
KFP_VERSION="${KFP_VERSION:-2.14.3}"   # pinned KFP backend release (manifests are fetched by tag)
KFP_PORT="${KFP_PORT:-8080}"
IMAGE="${1:-${IMAGE:-kfp-retrain:0.1.0}}"
MANIFESTS="github.com/kubeflow/pipelines/manifests/kustomize"

fail() { echo "cluster-up: $*" >&2; exit 1; }

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || fail "'$tool' is not installed (needed: docker, kind, kubectl)"
done
docker info >/dev/null 2>&1 || fail "docker is installed but its engine is not running"

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  echo "cluster-up: kind cluster '$CLUSTER_NAME' exists; reusing it"
else
  kind create cluster --name "$CLUSTER_NAME" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER_NAME" >/dev/null

echo "cluster-up: installing Kubeflow Pipelines $KFP_VERSION"
kubectl apply -k "$MANIFESTS/cluster-scoped-resources?ref=$KFP_VERSION"
kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
kubectl apply -k "$MANIFESTS/env/platform-agnostic?ref=$KFP_VERSION"
echo "cluster-up: waiting for the KFP deployments (a few minutes on first start)"
kubectl -n kubeflow wait --for=condition=available --timeout=900s deployment --all

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"
else
  echo "cluster-up: image '$IMAGE' is not built locally; run 'make image' and then" \
       "'kind load docker-image $IMAGE --name $CLUSTER_NAME'" >&2
fi

echo "cluster-up: KFP UI and API on http://localhost:$KFP_PORT (Ctrl-C stops the port-forward)"
exec kubectl -n kubeflow port-forward svc/ml-pipeline-ui "$KFP_PORT:80"

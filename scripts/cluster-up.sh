#!/usr/bin/env bash
# Create a local kind cluster running Kubeflow Pipelines (standalone), load the component image
# into it, and port-forward the KFP UI and API to http://localhost:${KFP_PORT}.
#
#   scripts/cluster-up.sh [IMAGE]        (make cluster IMAGE=kfp-retrain:0.1.0)
#
# Needs docker (with a running engine), kind and kubectl. Installs KFP from its official
# kustomize manifests at a pinned release; the platform-agnostic variant runs on kind. With
# KSERVE=1 (make cluster KSERVE=1) it also installs cert-manager and KServe at pinned releases,
# in RawDeployment mode (no Knative or Istio: traffic moves whole, no canary), creates the
# serving namespace and grants the pipeline's service account what deploy needs there
# (manifests/serving-rbac.yaml).
set -euo pipefail

CLUSTER_NAME="${CLUSTER_NAME:-kfp-retrain}"
KFP_VERSION="${KFP_VERSION:-2.14.3}"   # pinned KFP backend release (manifests are fetched by tag)
KFP_PORT="${KFP_PORT:-8080}"
IMAGE="${1:-${IMAGE:-kfp-retrain:0.1.0}}"
MANIFESTS="github.com/kubeflow/pipelines/manifests/kustomize"
KSERVE="${KSERVE:-0}"
KSERVE_VERSION="${KSERVE_VERSION:-v0.15.2}"          # pinned KServe release
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.16.3}"  # KServe's webhooks need it
SERVING_NAMESPACE="${SERVING_NAMESPACE:-kfp-retrain-serving}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

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

if [ "$KSERVE" = "1" ]; then
  echo "cluster-up: installing cert-manager $CERT_MANAGER_VERSION and KServe $KSERVE_VERSION (RawDeployment)"
  kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
  kubectl -n cert-manager wait --for=condition=available --timeout=300s deployment --all
  kubectl apply --server-side -f "https://github.com/kserve/kserve/releases/download/$KSERVE_VERSION/kserve.yaml"
  kubectl -n kserve wait --for=condition=available --timeout=300s deployment --all
  kubectl apply --server-side -f "https://github.com/kserve/kserve/releases/download/$KSERVE_VERSION/kserve-cluster-resources.yaml"
  kubectl -n kserve patch configmap inferenceservice-config --type merge \
    -p '{"data":{"deploy":"{\"defaultDeploymentMode\":\"RawDeployment\"}"}}'
  kubectl create namespace "$SERVING_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
  sed "s/kfp-retrain-serving/$SERVING_NAMESPACE/g" "$HERE/../manifests/serving-rbac.yaml" | kubectl apply -f -
fi

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"
else
  echo "cluster-up: image '$IMAGE' is not built locally; run 'make image' and then" \
       "'kind load docker-image $IMAGE --name $CLUSTER_NAME'" >&2
fi

echo "cluster-up: KFP UI and API on http://localhost:$KFP_PORT (Ctrl-C stops the port-forward)"
exec kubectl -n kubeflow port-forward svc/ml-pipeline-ui "$KFP_PORT:80"

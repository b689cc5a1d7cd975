"""KServe: the InferenceService manifest (checked against KServe's own CRD schema) and putting it
in place through a fake Kubernetes API."""

from pathlib import Path

import jsonschema
import pytest
import yaml

from components.serving.kserve import (
    ServingError,
    ServingTarget,
    inference_service,
    kubernetes_name,
    serve_version,
)


@pytest.mark.parametrize("model_name, expected", [
    ("customers", "customers"), ("Customers_V2.1", "customers-v2-1"), ("2025-churn", "model-2025-churn"),
    ("__x__", "x"), ("a" * 60, "a" * 36 + "-" + "e1d8ad4b")],
    ids=["plain", "mixed", "leading-digit", "underscores", "too-long"])
def test_model_names_map_to_kubernetes_names(model_name, expected):
    """Check the documented mapping: DNS-1035, at most 45 characters."""
    import hashlib

    if model_name == "a" * 60:
        expected = "a" * 36 + "-" + hashlib.sha256(model_name.encode()).hexdigest()[:8]
    name = kubernetes_name(model_name)
    assert name == expected
    assert len(name) <= 45
    assert name[0].isalpha()


@pytest.mark.parametrize("target", [
    ServingTarget(namespace="ml", image="reg.io/kfp-retrain:1.2.3"),
    ServingTarget(namespace="ml", image="reg.io/kfp-retrain:1.2.3", canary_traffic_percent=10,
                  service_account="retrain-serving", cpu="1", memory="2Gi")],
    ids=["plain", "canary-account-resources"])
def test_the_manifest_is_valid_for_kserve(target, crd_validator):
    """Check the manifest against KServe's CRD schema, and what the predictor runs."""
    manifest = inference_service(registry_uri="gs://models/registry", model_name="customers",
                                 version="v0007", target=target)
    crd_validator.validate(manifest)
    [container] = manifest["spec"]["predictor"]["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == target.image
    assert container["command"] + container["args"] == [
        "retrain", "serve", "--registry-uri", "gs://models/registry", "--model-name",
        "customers", "--version", "v0007", "--host", "0.0.0.0", "--port", "8080",
        "--reload-seconds", "0"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    predictor = manifest["spec"]["predictor"]
    assert predictor.get("canaryTrafficPercent") == (
        None if target.canary_traffic_percent == 100 else 10)


def test_a_manifest_the_crd_refuses_is_caught_by_the_schema(crd_validator):
    """Check that the schema check can fail: a canary percentage KServe would refuse."""
    manifest = inference_service(registry_uri="r", model_name="m", version="v0001",
                                 target=ServingTarget(namespace="ml", image="i:1"))
    manifest["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    with pytest.raises(jsonschema.ValidationError):
        crd_validator.validate(manifest)


TARGET = ServingTarget(namespace="ml", image="i:1", timeout_seconds=10)


def test_a_first_deploy_creates_then_waits_until_ready(kubernetes):
    """Check the calls: a get (404), a create, gets until Ready; then a patch for the next
    version, with a merge patch that drops an earlier canary."""
    kubernetes.ready_after = 1  # one get still says not Ready
    served = serve_version(registry_uri="r", model_name="customers", version="v0001",
                           target=ServingTarget(namespace="ml", image="i:1",
                                                canary_traffic_percent=20, timeout_seconds=10))
    assert (served["name"], served["action"]) == ("customers", "created")
    methods = [method for method, *_ in kubernetes.calls]
    assert methods[:2] == ["GET", "POST"]
    assert set(methods[2:]) == {"GET"}
    kubernetes.calls.clear()
    assert serve_version(registry_uri="r", model_name="customers", version="v0002",
                         target=TARGET)["action"] == "patched"
    [patch] = [call for call in kubernetes.calls if call[0] == "PATCH"]
    assert patch[3] == "application/merge-patch+json"
    service = kubernetes.services[("ml", "customers")]
    assert "canaryTrafficPercent" not in service["spec"]["predictor"]
    assert service["metadata"]["annotations"]["retrain.kfp/model-version"] == "v0002"


def test_a_service_that_never_becomes_ready_times_out_with_its_status(kubernetes):
    """Check the bounded wait: a ServingError naming the timeout and what the status said."""
    kubernetes.ready_after = None
    with pytest.raises(ServingError, match=r"ml/customers was not Ready with v0001 after 1 s "
                                           r"\(Revision is not ready yet\)"):
        serve_version(registry_uri="r", model_name="customers", version="v0001",
                      target=ServingTarget(namespace="ml", image="i:1", timeout_seconds=1))


@pytest.mark.parametrize("method, action", [("POST", "create"), ("GET", "get")])
def test_an_api_error_is_a_serving_error_naming_the_call(kubernetes, method, action):
    """Check that an API error ends in a ServingError naming the status and the call."""
    kubernetes.fail_next[method] = 500
    with pytest.raises(ServingError, match=f"the Kubernetes API answered 500 .* to {action}"):
        serve_version(registry_uri="r", model_name="customers", version="v0001", target=TARGET)


def test_the_shipped_rbac_grants_exactly_what_deploy_uses(kubernetes):
    """Check manifests/serving-rbac.yaml: a Role on InferenceServices only, with get, create,
    patch and watch, bound in the same namespace; and that deploy's calls need nothing more."""
    documents = list(yaml.safe_load_all((Path(__file__).resolve().parents[3] / "manifests" /
                                         "serving-rbac.yaml").read_text()))
    role, binding = (next(d for d in documents if d["kind"] == kind)
                     for kind in ("Role", "RoleBinding"))
    [rule] = role["rules"]
    assert (rule["apiGroups"], rule["resources"]) == (["serving.kserve.io"],
                                                      ["inferenceservices"])
    assert set(rule["verbs"]) == {"get", "create", "patch", "watch"}
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    serve_version(registry_uri="r", model_name="m", version="v0001", target=TARGET)
    serve_version(registry_uri="r", model_name="m", version="v0002", target=TARGET)
    verbs = {"GET": "get", "POST": "create", "PATCH": "patch"}
    assert {verbs[method] for method, *_ in kubernetes.calls} <= set(rule["verbs"])

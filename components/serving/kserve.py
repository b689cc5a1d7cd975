"""KServe on a cluster: the InferenceService that serves a version, and putting it in place.

The predictor is a custom container (``kserve-container``) running the project's own image with
``retrain serve --version vNNNN --host 0.0.0.0 --port 8080``: the image that trained the model
serves it, so the scikit-learn that loads the model is the one that saved it (KServe's stock
sklearn runtime pins another). Readiness and liveness probe the V2 health routes.

The InferenceService is named after the model. A Kubernetes name is a DNS-1035 label: lower-case
letters, digits and ``-``, starting with a letter; KServe also keeps it to 45 characters, so a
model name is mapped (lower-cased; any run of other characters becomes ``-``; a name starting
with a digit gets ``model-`` in front; one longer than 45 keeps its first 36 characters and
ends with ``-`` and 8 hexadecimal digits of its SHA-256).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import asdict, dataclass, fields

GROUP, API_VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
CONTAINER = "kserve-container"
PORT = 8080
MAX_NAME = 45
MANAGED_BY = "kfp-retrain"


class ServingError(Exception):
    """The InferenceService could not be put in place, or did not become Ready in time."""


def kubernetes_name(model_name: str) -> str:
    """The InferenceService name for a model name (see the module docstring)."""
    name = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"model-{name}".rstrip("-")
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(model_name.encode()).hexdigest()[:8]
        name = f"{name[:36].rstrip('-')}-{digest}"
    return name


@dataclass(frozen=True)
class ServingTarget:
    """Where and how a model is served on the cluster."""

    namespace: str
    image: str
    canary_traffic_percent: int = 100
    service_account: str = ""
    cpu: str = ""
    memory: str = ""
    timeout_seconds: float = 600.0

    @classmethod
    def with_resources(cls, resources: str, **fields) -> ServingTarget:
        """A target whose cpu and memory are ``resources`` read as ``CPU,MEMORY`` (``1,2Gi``;
        an empty part sets nothing)."""
        cpu, _, memory = resources.partition(",")
        return cls(cpu=cpu.strip(), memory=memory.strip(), **fields)


def inference_service(*, registry_uri: str, model_name: str, version: str,
                      target: ServingTarget) -> dict:
    """The ``serving.kserve.io/v1beta1`` InferenceService serving ``version``."""
    probe = {"httpGet": {"path": "/v2/health/ready", "port": PORT}, "periodSeconds": 5,
             "failureThreshold": 3}
    container = {
        "name": CONTAINER,
        "image": target.image,
        "command": ["retrain", "serve"],
        "args": ["--registry-uri", registry_uri, "--model-name", model_name, "--version",
                 version, "--host", "0.0.0.0", "--port", str(PORT), "--reload-seconds", "0"],
        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {**probe, "initialDelaySeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": PORT},
                          "periodSeconds": 10, "failureThreshold": 3},
    }
    if target.cpu or target.memory:
        amounts = {key: value for key, value in (("cpu", target.cpu),
                                                 ("memory", target.memory)) if value}
        container["resources"] = {"requests": dict(amounts), "limits": dict(amounts)}
    predictor: dict = {"containers": [container]}
    if target.service_account:
        predictor["serviceAccountName"] = target.service_account
    if target.canary_traffic_percent != 100:
        predictor["canaryTrafficPercent"] = target.canary_traffic_percent
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": kubernetes_name(model_name),
            "namespace": target.namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
            "annotations": {"retrain.kfp/model-name": model_name,
                            "retrain.kfp/model-version": version,
                            "retrain.kfp/registry-uri": registry_uri},
        },
        "spec": {"predictor": predictor},
    }


def custom_objects_api():
    """The Kubernetes API, configured from the pod's service account, else the kubeconfig."""
    import os

    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        # $KUBECONFIG read now: the client reads it once, when it is first imported.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
    return client.CustomObjectsApi()


def _api_error(error, action: str, name: str, namespace: str) -> ServingError:
    status = getattr(error, "status", None)
    reason = getattr(error, "reason", "") or type(error).__name__
    return ServingError(f"InferenceService {namespace}/{name}: the Kubernetes API answered "
                        f"{status} {reason} to {action}" if status else
                        f"InferenceService {namespace}/{name}: {action} failed: {reason}")


def apply(api, manifest: dict) -> str:
    """Create the InferenceService, or patch it to this manifest when it exists; returns
    ``created`` or ``patched``."""
    from kubernetes.client.exceptions import ApiException

    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    try:
        api.get_namespaced_custom_object(GROUP, API_VERSION, namespace, PLURAL, name)
    except ApiException as error:
        if error.status != 404:
            raise _api_error(error, "get", name, namespace) from None
        try:
            api.create_namespaced_custom_object(GROUP, API_VERSION, namespace, PLURAL, manifest)
        except ApiException as create_error:
            raise _api_error(create_error, "create", name, namespace) from None
        return "created"
    except Exception as error:  # noqa: BLE001 - connection refused, DNS, TLS
        raise _api_error(error, "get", name, namespace) from None
    # A JSON merge patch: a field this manifest leaves out is deleted with null, so a canary of
    # an earlier deploy does not outlive it.
    predictor = {"canaryTrafficPercent": None, "serviceAccountName": None,
                 **manifest["spec"]["predictor"]}
    try:
        api.patch_namespaced_custom_object(GROUP, API_VERSION, namespace, PLURAL, name,
                                           {"metadata": {"annotations": manifest["metadata"][
                                               "annotations"]}, "spec": {"predictor": predictor}})
    except Exception as error:  # noqa: BLE001 - an API error or a lost connection
        raise _api_error(error, "patch", name, namespace) from None
    return "patched"


def ready_condition(service: dict, version: str) -> tuple[bool, str]:
    """Whether the InferenceService is Ready serving ``version``, and what its status says."""
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    status = service.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready", {})
    generation = (service.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    current = annotations.get("retrain.kfp/model-version") == version and (
        generation is None or observed is None or observed >= generation)
    said = ready.get("message") or ready.get("reason") or "no Ready condition yet"
    return ready.get("status") == "True" and current, said


def wait_until_ready(api, name: str, namespace: str, version: str, timeout_seconds: float,
                     poll_seconds: float = 2.0) -> float:
    """Poll until the InferenceService is Ready with ``version``; returns the seconds waited.
    Raises :class:`ServingError` after ``timeout_seconds`` naming what its status said."""
    start = time.monotonic()
    said = ""
    while True:
        try:
            service = api.get_namespaced_custom_object(GROUP, API_VERSION, namespace, PLURAL,
                                                       name)
        except Exception as error:  # noqa: BLE001 - an API error or a lost connection
            raise _api_error(error, "get", name, namespace) from None
        ready, said = ready_condition(service, version)
        if ready:
            return time.monotonic() - start
        if time.monotonic() - start >= timeout_seconds:
            raise ServingError(f"InferenceService {namespace}/{name} was not Ready with "
                               f"{version} after {timeout_seconds:g} s ({said})")
        time.sleep(min(poll_seconds, max(timeout_seconds - (time.monotonic() - start), 0.05)))


def serve_version(*, registry_uri: str, model_name: str, version: str,
                  target: ServingTarget, api=None) -> dict:
    """Create or patch the InferenceService to ``version`` and wait until it is Ready."""
    api = api or custom_objects_api()
    manifest = inference_service(registry_uri=registry_uri, model_name=model_name,
                                 version=version, target=target)
    action = apply(api, manifest)
    waited = wait_until_ready(api, manifest["metadata"]["name"], target.namespace, version,
                              target.timeout_seconds)
    return {"name": manifest["metadata"]["name"], "namespace": target.namespace,
            "action": action, "seconds_to_ready": round(waited, 1)}


def serve_on_cluster(registry, version: str, target: ServingTarget) -> dict:
    """Put ``version`` of ``registry``'s model on the cluster (Ready), and note where in the
    registry (``serving.json``), for a later rollback."""
    served = serve_version(registry_uri=registry.registry_uri, model_name=registry.model_name,
                           version=version, target=target)
    registry.write_model_json("serving.json", {**asdict(target), "name": served["name"]})
    return served


def cluster_follower(registry, report=print):
    """What a rollback does before the pointer moves when deploy serves the champion on a
    cluster (``serving.json``): the same InferenceService serves the version it rolls back to,
    and ``report`` says so. None when the model is served from the registry only."""
    serving = registry.model_json("serving.json")
    if not serving:
        return None
    target = ServingTarget(**{f.name: serving[f.name] for f in fields(ServingTarget)
                              if f.name in serving})

    def serve(version: str) -> None:
        served = serve_on_cluster(registry, version, target)
        report(f"InferenceService {served['namespace']}/{served['name']} serves {version} "
               f"(Ready after {served['seconds_to_ready']} s)")

    return serve

"""Compile-time inputs for a cluster: the image the components run on, and what each stage's task
gets there (retries, resources, secret references). None of it is read from the environment."""

from __future__ import annotations

from dataclasses import dataclass, field

from components.contracts import CONTRACTS
from components.params import InvalidParameterError
from components.stages.alert import WEBHOOK_ENV

DEFAULT_IMAGE = "kfp-retrain:0.1.0"
STAGES = tuple(CONTRACTS)
# Stages that touch storage at their start or end: a transient failure is worth a retry.
RETRIED_STAGES = {"ingest": 3, "deploy": 3}
WEBHOOK_SECRET_KEY = "webhook-url"
GCS_KEY_MOUNT = "/var/secrets/gcs"


def check_image_tag(image: str) -> None:
    """Refuse an image a compiled spec must not name: no tag, or ``latest``.

    A spec is a record of what ran; a moving tag makes two runs of one spec run different code.
    """
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    if digest:
        return
    if not tag or tag == "latest":
        raise InvalidParameterError(
            f"image {image!r} needs an immutable tag (e.g. :0.2.0 or a git SHA) or a digest; "
            "a compiled spec never names ':latest' or an untagged image")


@dataclass(frozen=True)
class ClusterOptions:
    """Compile-time settings for a cluster; none of them holds a secret value, only names.

    Attributes:
        webhook_secret: Kubernetes secret whose key ``webhook-url`` the alert stages read when
            the ``alert_webhook_url`` parameter is empty.
        gcs_secret: Kubernetes secret with a service-account ``key.json``, mounted for every
            stage, for clusters without Workload Identity (with it, leave this empty).
        resources: Stage (or ``default``, or ``serving`` for the InferenceService's container)
            -> ``{"cpu": "2", "memory": "4Gi"}``, set as both request and limit.
        serving_service_account: The service account the InferenceService runs as (it needs to
            read the registry); empty: the namespace's default.
    """

    webhook_secret: str = ""
    gcs_secret: str = ""
    resources: dict = field(default_factory=dict)
    serving_service_account: str = ""

    def __post_init__(self):
        for stage in self.resources:
            if stage not in ("default", "serving", *STAGES):
                raise InvalidParameterError(f"--resources names stage {stage!r}; use one of "
                                            f"default, serving, {', '.join(STAGES)}")

    def apply(self, task, stage: str):
        """Apply retries, resources and secret references to one stage's task; returns it."""
        if stage in RETRIED_STAGES:
            task.set_retry(num_retries=RETRIED_STAGES[stage], backoff_duration="30s",
                           backoff_factor=2.0, backoff_max_duration="600s")
        resources = self.resources.get(stage) or self.resources.get("default") or {}
        if resources.get("cpu"):
            task.set_cpu_request(resources["cpu"]).set_cpu_limit(resources["cpu"])
        if resources.get("memory"):
            task.set_memory_request(resources["memory"]).set_memory_limit(resources["memory"])
        alerts_from_secret = self.webhook_secret and stage.startswith("alert")
        if self.gcs_secret or alerts_from_secret:
            from kfp import kubernetes

            if self.gcs_secret:
                kubernetes.use_secret_as_volume(task, secret_name=self.gcs_secret,
                                                mount_path=GCS_KEY_MOUNT)
                task.set_env_variable("GOOGLE_APPLICATION_CREDENTIALS",
                                      f"{GCS_KEY_MOUNT}/key.json")
            if alerts_from_secret:
                kubernetes.use_secret_as_env(task, secret_name=self.webhook_secret,
                                             secret_key_to_env={WEBHOOK_SECRET_KEY: WEBHOOK_ENV})
        return task

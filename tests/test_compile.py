"""The compiled spec is the product: it parses strictly, and the committed YAML is current."""

import json

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from components.image import DEFAULT_IMAGE
from pipelines.retrain_pipeline import COMPILED_PIPELINE, compile_pipeline


def load_spec(path) -> pipeline_spec_pb2.PipelineSpec:
    """Parse compiled YAML into the PipelineSpec protobuf, refusing unknown fields."""
    with open(path) as handle:
        documents = list(yaml.safe_load_all(handle))
    assert len(documents) == 1
    return json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec(),
                                 ignore_unknown_fields=False)


def test_committed_yaml_is_up_to_date(tmp_path, monkeypatch):
    """Check that compiling now gives exactly the committed YAML (run `make compile` if not)."""
    monkeypatch.delenv("RETRAIN_IMAGE", raising=False)
    fresh = compile_pipeline(tmp_path / "pipeline.yaml")
    assert fresh.read_text() == COMPILED_PIPELINE.read_text(), (
        "pipelines/retrain_pipeline.yaml is stale: run `make compile` and commit it")


def test_compile_is_deterministic(tmp_path):
    """Check that two compiles give the same bytes."""
    first = compile_pipeline(tmp_path / "a.yaml").read_bytes()
    assert compile_pipeline(tmp_path / "b.yaml").read_bytes() == first


def test_spec_parses_strictly_with_the_expected_shape():
    """Check the stages, the project image, parameter descriptions and ingest's caching."""
    spec = load_spec(COMPILED_PIPELINE)
    executors = spec.deployment_spec["executors"]
    assert {name.removeprefix("exec-") for name in executors} >= {
        "ingest", "validate", "preprocess", "retrain", "evaluate", "deploy", "alert",
        "alert-on-failure"}
    images = {executor["container"]["image"] for executor in executors.values()}
    assert images == {DEFAULT_IMAGE}
    params = spec.root.input_definitions.parameters
    assert all(params[name].description for name in params)
    assert params["threshold"].default_value.number_value == 0.8
    exit_dag = spec.components["comp-exit-handler-1"].dag
    assert exit_dag.tasks["ingest"].caching_options.enable_cache is False
    commands = " ".join(" ".join(e["container"]["command"]) for e in executors.values())
    assert "pip install" not in commands  # everything comes from the project image


def _tasks(spec) -> dict:
    """Every task of every DAG in the spec, by task name (nested conditions included)."""
    tasks = {}
    for component in [spec.root, *spec.components.values()]:
        if component.HasField("dag"):
            tasks.update(component.dag.tasks)
    return tasks


def test_ingest_and_deploy_retry_transient_failures():
    """Check the retry policy of the committed spec: ingest and deploy only."""
    tasks = _tasks(load_spec(COMPILED_PIPELINE))
    retried = {name for name, task in tasks.items() if task.retry_policy.max_retry_count}
    assert retried == {"ingest", "deploy"}
    assert tasks["deploy"].retry_policy.max_retry_count == 3
    assert tasks["deploy"].retry_policy.backoff_duration.seconds == 30


SECRET_VALUE = "https://hooks.slack.example/services/T000/B000/very-secret-path"


def _compile_with_options(tmp_path, *flags):
    """Compile through the CLI in a fresh process (the image is read at import time)."""
    import os
    import subprocess
    import sys

    output = tmp_path / "cluster.yaml"
    env = dict(os.environ, RETRAIN_ALERT_WEBHOOK_URL=SECRET_VALUE)
    completed = subprocess.run(
        [sys.executable, "-m", "app.cli", "compile", "--output", str(output), *flags],
        capture_output=True, text=True, env=env, timeout=120)
    return completed, output


def test_cluster_options_land_in_the_spec_and_no_secret_value_does(tmp_path):
    """Check image, resources, secret references and retries in a cluster compile; the secret
    value known to the compiling process appears nowhere in the YAML."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    completed, output = _compile_with_options(
        tmp_path, "--image", "europe-docker.pkg.dev/acme/ml/kfp-retrain:1.4.2",
        "--webhook-secret", "retrain-alerts", "--gcs-secret", "gcs-key",
        "--resources", "retrain=2,4Gi", "--resources", "default=500m,1Gi")
    assert completed.returncode == 0, completed.stderr
    text = output.read_text()
    assert SECRET_VALUE not in text and "very-secret" not in text
    spec_doc, platform_doc = yaml.safe_load_all(text)
    spec = json_format.ParseDict(spec_doc, pipeline_spec_pb2.PipelineSpec())
    platform = json_format.ParseDict(platform_doc, pipeline_spec_pb2.PlatformSpec())
    executors = spec.deployment_spec["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {
        "europe-docker.pkg.dev/acme/ml/kfp-retrain:1.4.2"}
    retrain = executors["exec-retrain"]["container"]["resources"]
    assert (retrain["resourceCpuLimit"], retrain["resourceMemoryLimit"]) == ("2", "4Gi")
    assert (retrain["resourceCpuRequest"], retrain["resourceMemoryRequest"]) == ("2", "4Gi")
    assert executors["exec-ingest"]["container"]["resources"]["resourceCpuLimit"] == "500m"
    assert {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/secrets/gcs/key.json"} in \
        executors["exec-deploy"]["container"]["env"]
    configs = json_format.MessageToDict(platform.platforms["kubernetes"].deployment_spec)["executors"]
    alert = configs["exec-alert"]
    assert alert["secretAsEnv"][0]["secretName"] == "retrain-alerts"
    assert alert["secretAsEnv"][0]["keyToEnv"] == [
        {"secretKey": "webhook-url", "envVar": "RETRAIN_ALERT_WEBHOOK_URL"}]
    assert "secretAsEnv" not in configs["exec-retrain"]  # only alerts see the webhook
    assert configs["exec-retrain"]["secretAsVolume"][0]["secretName"] == "gcs-key"
    assert _tasks(spec)["ingest"].caching_options.enable_cache is False


@pytest.mark.parametrize("image", ["kfp-retrain:latest", "kfp-retrain", "reg.io:5000/kfp-retrain"])
def test_moving_image_tags_are_refused(tmp_path, image):
    """Check that ':latest' and untagged images never reach a compiled spec."""
    completed, output = _compile_with_options(tmp_path, "--image", image)
    assert completed.returncode == 2
    assert "needs an immutable tag" in completed.stderr and not output.exists()


def test_local_runs_drop_the_cluster_retry_policy():
    """Check that the spec run by kfp.local has no retry policy left, and nothing else lost."""
    from app.local_runner import load_pipeline, parse_spec, without_retries

    text = COMPILED_PIPELINE.read_text()
    documents = parse_spec(text)
    stripped = without_retries(documents)
    assert "retryPolicy" in text and "retryPolicy" not in json.dumps(stripped)
    assert stripped[0]["deploymentSpec"] == yaml.safe_load(text)["deploymentSpec"]
    assert stripped[1:] == documents[1:]
    pipeline = load_pipeline(stripped, text)
    assert "retryPolicy" not in json.dumps(json_format.MessageToDict(pipeline.pipeline_spec))
    assert pipeline.pipeline_spec.root == load_spec(COMPILED_PIPELINE).root
